//! CI formats: JUnit XML (`--junit FILE`: one test case per budget check per trial, failing
//! exactly when failprobe's exit code is non-zero) and a GitHub-style step summary in Markdown
//! (`--summary-md FILE`).

use super::escape_html as esc;
use super::summary::Summary;
use crate::analysis::sentence;
use crate::duration::format_ms;
use std::fmt::Write;

pub fn junit(s: &Summary) -> String {
    let mut cases = String::new();
    let mut failures = 0;
    let mut tests = 0;
    for c in &s.budget.checks {
        tests += 1;
        let class = match &c.shard {
            Some(shard) => format!("{}.trial{}.{shard}", s.scenario, c.trial),
            None => format!("{}.trial{}", s.scenario, c.trial),
        };
        let _ = write!(cases, r#"    <testcase classname="{}" name="{}" time="0">"#, esc(&class), esc(&c.name));
        if c.passed {
            let _ = write!(cases, "<system-out>{}</system-out>", esc(&c.measured));
        } else {
            failures += 1;
            let msg = format!("{}; budget {}", c.measured, c.limit);
            let _ = write!(cases, r#"<failure message="{}" type="budget">{}</failure>"#, esc(&msg), esc(&msg));
        }
        cases.push_str("</testcase>\n");
    }
    // An interrupted run has no verdict and exits 2: CI must see a failure, not a pass.
    tests += 1;
    let _ = write!(cases, r#"    <testcase classname="{}" name="run completed" time="0">"#, esc(&s.scenario));
    if let Some(reason) = &s.verdict.incomplete_reason {
        failures += 1;
        let msg = format!("{reason}: no verdict");
        let _ = write!(cases, r#"<failure message="{}" type="incomplete">{}</failure>"#, esc(&msg), esc(&msg));
    }
    cases.push_str("</testcase>\n");
    // What was measured, where JUnit keeps facts about a suite.
    let properties = match s.servers_line() {
        Some(servers) => {
            format!("    <properties><property name=\"servers\" value=\"{}\"/></properties>\n", esc(&servers))
        }
        None => String::new(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"failprobe\" tests=\"{tests}\" failures=\"{failures}\">\n  \
         <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" timestamp=\"{}\">\n{properties}{cases}  </testsuite>\n</testsuites>\n",
        esc(&s.scenario),
        esc(&s.started_at),
    )
}

/// A short Markdown block for `$GITHUB_STEP_SUMMARY`.
pub(crate) fn step_summary(s: &Summary) -> String {
    let mut md = String::new();
    let icon = match s.verdict.kind.as_str() {
        "pass" | "recovered" => "✅",
        "fail" => "❌",
        _ => "⚠️",
    };
    let _ = writeln!(md, "### {icon} failprobe: {} — {}\n", s.scenario, s.verdict());
    if let Some(servers) = s.servers_line() {
        let _ = writeln!(md, "Measured: {servers}\n");
    }
    let _ =
        writeln!(md, "| trial | trigger | longest write outage | longest read outage | lost acked writes | errors |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for t in &s.trials {
        let errors = sentence::error_counts(&sentence::sum_errors([&t.writes.errors, &t.reads.errors]));
        let lost = if t.integrity.checked { t.integrity.lost_acked_writes.to_string() } else { "unknown".into() };
        let _ = writeln!(
            md,
            "| {} | `{}` | {}{} | {}{} | {lost} | {} |",
            t.index,
            t.trigger.kind,
            format_ms(t.writes.longest_outage_ms),
            if t.writes.recovered { "" } else { " (not recovered)" },
            format_ms(t.reads.longest_outage_ms),
            if t.reads.recovered { "" } else { " (not recovered)" },
            if errors.is_empty() { "—" } else { &errors }
        );
    }
    for v in &s.budget.violations {
        let _ = writeln!(md, "\n- ❌ {v}");
    }
    let _ =
        writeln!(md, "\nOutage windows are ±{} (one probe interval).", format_ms(s.resolution.outage_uncertainty_ms));
    md
}
