//! The fleet's account: a row per target read from its own summary, and one verdict for the
//! fleet, whose headline names every target that failed, lost writes or has a client that never
//! recovered, and the servers measured.

use crate::analysis::summary::{describe_engines, Summary, Verdict};
use crate::duration::format_ms;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FleetSummary {
    pub version: String,
    pub name: String,
    pub started_at: String,
    pub targets: Vec<TargetRow>,
    /// Decided once here; the terminal, summary.json, report.md/html and the exit code read it.
    pub verdict: Verdict,
}

/// One target of the fleet, as its own report tells it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TargetRow {
    pub name: String,
    /// Its own report, relative to the fleet's directory.
    pub dir: String,
    /// The target as probed (no password), empty when the run never started.
    pub target: String,
    /// The engines measured: `Redis 7.0.15`.
    pub servers: Option<String>,
    pub trigger: String,
    /// The target's own verdict, its headline covering each of its clients.
    pub verdict: Verdict,
    /// Over trials, clients and both streams (ms); `None` when nothing was measured.
    pub longest_outage_ms: Option<f64>,
    /// The client whose outage that was.
    pub worst_client: Option<String>,
    /// Clients still down when a trial ended.
    pub not_recovered: Vec<String>,
    pub lost_acked_writes: u64,
    pub ghost_writes: u64,
    /// Probes sent late, over every client and stream: the target's own schedule's health.
    pub late_probes: u64,
}

impl TargetRow {
    /// A target whose run measured something.
    pub fn from_summary(name: &str, s: &Summary) -> TargetRow {
        let clients = s.trials.iter().flat_map(|t| &t.clients);
        let mut worst: Option<(f64, &str)> = None;
        let mut not_recovered: Vec<String> = Vec::new();
        let (mut ghost, mut late) = (0, 0);
        for c in clients {
            for st in [&c.writes, &c.reads] {
                if worst.is_none_or(|(ms, _)| st.longest_outage_ms > ms) {
                    worst = Some((st.longest_outage_ms, &c.name));
                }
                late += st.late;
            }
            if (!c.writes.recovered || !c.reads.recovered) && !not_recovered.contains(&c.name) {
                not_recovered.push(c.name.clone());
            }
            ghost += if c.integrity.checked { c.integrity.ghost_writes } else { 0 };
        }
        let mut triggers: Vec<&str> = s.trials.iter().map(|t| t.trigger.kind.as_str()).collect();
        triggers.dedup();
        TargetRow {
            name: name.to_string(),
            dir: name.to_string(),
            target: s.target.clone(),
            servers: describe_engines(&s.servers),
            trigger: triggers.join(", "),
            verdict: s.verdict.clone(),
            longest_outage_ms: worst.map(|(ms, _)| ms),
            worst_client: worst.filter(|(ms, _)| *ms > 0.0).map(|(_, c)| c.to_string()),
            not_recovered,
            lost_acked_writes: s.lost_acked_writes(),
            ghost_writes: ghost,
            late_probes: late,
        }
    }

    /// A target whose run stopped before it measured anything (its lab did not start, its
    /// report could not be written): no verdict, and why.
    pub fn failed(name: &str, why: &str) -> TargetRow {
        TargetRow {
            name: name.to_string(),
            dir: name.to_string(),
            target: String::new(),
            servers: None,
            trigger: String::new(),
            verdict: Verdict {
                kind: "incomplete".into(),
                headline: format!("INCOMPLETE ({why}: no verdict)"),
                exit_code: crate::error::EXIT_USAGE,
                incomplete_reason: Some(why.to_string()),
            },
            longest_outage_ms: None,
            worst_client: None,
            not_recovered: Vec::new(),
            lost_acked_writes: 0,
            ghost_writes: 0,
            late_probes: 0,
        }
    }

    /// "2.31 s (pinned)", "none", or "—" when nothing was measured.
    pub fn outage_text(&self) -> String {
        match (self.longest_outage_ms, &self.worst_client) {
            (None, _) => "—".to_string(),
            (Some(ms), _) if ms <= 0.0 => "none".to_string(),
            (Some(ms), Some(client)) => format!("{} ({client})", format_ms(ms)),
            (Some(ms), None) => format_ms(ms),
        }
    }
}

/// The fleet's verdict: FAIL when a target failed its budget (or has a client that never
/// recovered under its budget: its own verdict says so), else INCOMPLETE when a target has no
/// verdict, else PASS when every target had a budget and passed, else RECOVERED.
pub fn decide(rows: &[TargetRow]) -> Verdict {
    let any = |kind: &str| rows.iter().any(|r| r.verdict.kind == kind);
    let (kind, exit_code) = if any("fail") {
        ("fail", 1)
    } else if any("incomplete") {
        ("incomplete", crate::error::EXIT_USAGE)
    } else if rows.iter().all(|r| r.verdict.kind == "pass") {
        ("pass", 0)
    } else {
        ("recovered", 0)
    };
    let incomplete = rows.iter().filter(|r| r.verdict.kind == "incomplete").map(|r| r.name.clone()).collect::<Vec<_>>();
    Verdict {
        kind: kind.into(),
        headline: headline(kind, rows),
        exit_code,
        incomplete_reason: (kind == "incomplete").then(|| format!("no verdict for {}", incomplete.join(", "))),
    }
}

/// `FAIL — 10 targets (Redis 7.0.15 ×9, memcached 1.6.21) — failed: orders — NOT RECOVERED:
/// orders (pinned) — 296 acknowledged writes lost on orders — longest outage 2.31 s on sessions
/// (failprobe)`: every target that needs a look, by name, in the first line.
fn headline(kind: &str, rows: &[TargetRow]) -> String {
    let word = match kind {
        "fail" => "FAIL",
        "incomplete" => "INCOMPLETE",
        "pass" => "PASS",
        _ => "RECOVERED",
    };
    let mut parts = vec![format!("{word} — {} target{}{}", rows.len(), plural(rows.len()), engines_part(rows))];
    let named =
        |f: &dyn Fn(&TargetRow) -> bool| rows.iter().filter(|r| f(r)).map(|r| r.name.as_str()).collect::<Vec<_>>();
    for (label, names) in
        [("failed", named(&|r| r.verdict.kind == "fail")), ("no verdict", named(&|r| r.verdict.kind == "incomplete"))]
    {
        if !names.is_empty() {
            parts.push(format!("{label}: {}", names.join(", ")));
        }
    }
    let unrecovered: Vec<String> = rows
        .iter()
        .filter(|r| !r.not_recovered.is_empty())
        .map(|r| format!("{} ({})", r.name, r.not_recovered.join(", ")))
        .collect();
    if !unrecovered.is_empty() {
        parts.push(format!("NOT RECOVERED: {}", unrecovered.join(", ")));
    }
    let lost: u64 = rows.iter().map(|r| r.lost_acked_writes).sum();
    if lost > 0 {
        let on = named(&|r| r.lost_acked_writes > 0).join(", ");
        parts.push(format!("{lost} acknowledged write{} lost on {on}", plural(lost as usize)));
    }
    let longest = rows
        .iter()
        .filter(|r| r.longest_outage_ms.is_some_and(|ms| ms > 0.0))
        .max_by(|a, b| a.longest_outage_ms.partial_cmp(&b.longest_outage_ms).unwrap_or(std::cmp::Ordering::Equal));
    match longest {
        Some(r) => parts.push(format!("longest outage {} on {}", r.outage_text(), r.name)),
        None if rows.iter().any(|r| r.longest_outage_ms.is_some()) => parts.push("no outage".to_string()),
        None => {}
    }
    parts.join(" — ")
}

/// " (Redis 7.0.15 ×9, memcached 1.6.21)": each engine and how many targets run it.
fn engines_part(rows: &[TargetRow]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for s in rows.iter().filter_map(|r| r.servers.as_deref()) {
        match counts.iter_mut().find(|(e, _)| *e == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    let text: Vec<String> =
        counts.iter().map(|(e, n)| if *n > 1 { format!("{e} ×{n}") } else { e.to_string() }).collect();
    match text.is_empty() {
        true => String::new(),
        false => format!(" ({})", text.join(", ")),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, kind: &str, outage: f64, lost: u64, not_recovered: &[&str]) -> TargetRow {
        let mut r = TargetRow::failed(name, "x");
        r.verdict.kind = kind.into();
        r.servers = Some("Redis 7.0.15".into());
        r.longest_outage_ms = Some(outage);
        r.worst_client = (outage > 0.0).then(|| "failprobe".to_string());
        r.lost_acked_writes = lost;
        r.not_recovered = not_recovered.iter().map(|s| s.to_string()).collect();
        r
    }

    #[test]
    fn the_headline_names_every_target_that_needs_a_look_and_the_servers() {
        let rows = [
            row("a", "recovered", 0.0, 0, &[]),
            row("b", "recovered", 2310.0, 87, &["pinned"]),
            row("c", "recovered", 0.0, 0, &[]),
        ];
        let v = decide(&rows);
        assert_eq!(v.exit_code, 0);
        assert_eq!(
            v.headline,
            "RECOVERED — 3 targets (Redis 7.0.15 ×3) — NOT RECOVERED: b (pinned) — 87 acknowledged writes lost on b — longest outage 2.31 s (failprobe) on b"
        );
        let quiet = decide(&[row("a", "pass", 0.0, 0, &[])]);
        assert_eq!(quiet.headline, "PASS — 1 target (Redis 7.0.15) — no outage");
    }

    #[test]
    fn a_failed_target_fails_the_fleet_before_one_without_a_verdict() {
        let rows = [row("a", "incomplete", 0.0, 0, &[]), row("b", "fail", 9000.0, 0, &[])];
        let v = decide(&rows);
        assert_eq!((v.kind.as_str(), v.exit_code), ("fail", 1));
        assert!(
            v.headline.starts_with("FAIL — 2 targets (Redis 7.0.15 ×2) — failed: b — no verdict: a"),
            "{}",
            v.headline
        );
        let v = decide(&[row("a", "incomplete", 0.0, 0, &[]), row("b", "pass", 0.0, 0, &[])]);
        assert_eq!((v.kind.as_str(), v.exit_code), ("incomplete", 2));
    }
}
