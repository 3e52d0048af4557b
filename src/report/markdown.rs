//! report.md: the page a team pastes into a maintenance ticket.

use super::summary::{StreamSummary, Summary, TrialSummary};
use super::{write_one, Exporter, ReportData};
use crate::analysis::sentence::{self, error_counts};
use crate::duration::format_ms;
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub(crate) struct Markdown;

impl Exporter for Markdown {
    fn format(&self) -> &'static str {
        "md"
    }

    fn write(&self, dir: &Path, data: &ReportData) -> anyhow::Result<Vec<PathBuf>> {
        write_one(dir, "report.md", render(data.summary())?.as_bytes())
    }
}

pub fn render(s: &Summary) -> Result<String, std::fmt::Error> {
    let mut md = String::new();
    write_header(&mut md, s)?;
    if let Some(advice) = super::restore::advice(s) {
        writeln!(md, "## Keys changed: restore\n\n{advice}")?;
    }
    for t in &s.trials {
        write_trial(&mut md, t)?;
    }
    write_definitions(&mut md, s)?;
    Ok(md)
}

fn write_header(md: &mut String, s: &Summary) -> std::fmt::Result {
    writeln!(md, "# failprobe report: {}\n", s.scenario)?;
    writeln!(
        md,
        "**{}** — longest outage {}, {} acknowledged writes lost by all clients{} over {} trial(s).\n",
        s.verdict(),
        format_ms(s.longest_outage_ms()),
        s.lost_acked_writes(),
        match s.unchecked_write_logs() {
            0 => String::new(),
            n => format!(" ({n} write log(s) not read: their loss unknown)"),
        },
        s.trials.len()
    )?;
    for v in &s.budget.violations {
        writeln!(md, "- {v}")?;
    }
    if !s.budget.violations.is_empty() {
        writeln!(md)?;
    }
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(md, "| target | `{}` |", s.target)?;
    if let Some(servers) = s.servers_line() {
        writeln!(md, "| servers | {} |", servers.replace('|', "\\|"))?;
    }
    writeln!(md, "| started | {} |", s.started_at)?;
    writeln!(md, "| keys | `failprobe:{{{}}}:*` (TTL set on every key) |", s.run_id)?;
    writeln!(
        md,
        "| probe | every {} per stream, deadline {}, writes acknowledged {} |",
        format_ms(s.probe.interval_ms),
        format_ms(s.probe.timeout_ms),
        match s.probe.write_ack.as_str() {
            "plain" => "when the primary answers (plain)".to_string(),
            level => format!("after {level}"),
        }
    )?;
    let budget = |v: Option<String>| v.unwrap_or_else(|| "—".into());
    writeln!(
        md,
        "| budget | max outage {}, max lost writes {} |",
        budget(s.budget.max_outage_ms.map(format_ms)),
        budget(s.budget.max_lost_writes.map(|n| n.to_string()))
    )?;
    let h = &s.outage_histogram_ms;
    if h.count > 0 {
        writeln!(
            md,
            "| outage windows | {} across all trials: p50 {}, p90 {}, p99 {}, max {} |",
            h.count,
            format_ms(h.p50),
            format_ms(h.p90),
            format_ms(h.p99),
            format_ms(h.max)
        )?;
    }
    writeln!(md)
}

fn write_trial(md: &mut String, t: &TrialSummary) -> std::fmt::Result {
    writeln!(md, "## Trial {} — trigger `{}`\n", t.index, t.trigger.kind)?;
    if let Some(e) = &t.trigger.error {
        writeln!(md, "Trigger failed: {e}\n")?;
    }
    writeln!(md, "Ended: {}.\n", t.end_reason)?;
    writeln!(
        md,
        "| stream | probes | failed | late | outages | longest | recovered | errors seen | p50 | p99 | p99.9 | max |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    for (name, st) in [("writes", &t.writes), ("reads", &t.reads)] {
        stream_row(md, &format!("{name} (whole target)"), st)?;
    }
    for sh in &t.shards {
        for (name, st) in [("writes", &sh.writes), ("reads", &sh.reads)] {
            stream_row(md, &format!("{} {name}", sh.name), st)?;
        }
    }
    writeln!(md)?;
    let outages: Vec<_> = [("writes", &t.writes), ("reads", &t.reads)]
        .into_iter()
        .flat_map(|(n, st)| st.outages.iter().map(move |o| (n, o)))
        .collect();
    if !outages.is_empty() {
        writeln!(md, "Outage windows (± one interval):\n\n| stream | from | to | duration | probes failed | errors |\n|---|---|---|---|---|---|")?;
        for (n, o) in outages {
            let errors = error_counts(&o.errors);
            writeln!(
                md,
                "| {n} | {:.1} ms | {:.1} ms{} | {} | {} | {} |",
                o.start_ms,
                o.end_ms,
                if o.recovered { "" } else { " (not recovered)" },
                format_ms(o.duration_ms),
                o.failed_probes,
                errors
            )?;
        }
        writeln!(md)?;
    }
    let i = &t.integrity;
    if i.checked {
        writeln!(md, "Integrity (write log read from {}): {} acknowledged, **{} lost**{}, {} ghost (unacknowledged yet applied), {} stale reads.\n",
            i.log_server.as_deref().unwrap_or("?"), i.acked_writes, i.lost_acked_writes, sentence::split_brain_part(i.split_brain_writes, i.split_brain_unknown), i.ghost_writes, i.stale_reads)?;
    } else {
        writeln!(md, "Integrity: the write log could not be read; loss unknown. {} stale reads.\n", i.stale_reads)?;
    }
    for sh in &t.shards {
        if let (Some(s), Some(n)) = (sh.integrity.surviving_seeded_keys, sh.integrity.seeded_keys) {
            writeln!(md, "Seeded keys on {}: {s} of {n} survived byte-identical.\n", sh.name)?;
        }
        if sh.integrity.lost_acked_writes > 0 {
            writeln!(md, "{}: {} acknowledged writes lost.\n", sh.name, sh.integrity.lost_acked_writes)?;
        }
    }
    if let [c] = t.clients.as_slice() {
        if let Some(p) = &c.pubsub {
            writeln!(md, "{}.\n", p.sentence())?;
        }
        if let Some(p) = &c.stream {
            writeln!(md, "{}.\n", p.sentence())?;
        }
    }
    if t.clients.len() > 1 {
        writeln!(md, "What each client profile saw (`--clients`; the table above is the first one's):\n")?;
        for c in &t.clients {
            writeln!(md, "- {}", super::client_line(c))?;
            if !c.phases.is_empty() {
                writeln!(md, "  - where the time went: {}", crate::analysis::waterfall::describe(&c.phases))?;
            }
        }
        writeln!(md)?;
    }
    if let Some(line) = aws_line(t) {
        writeln!(md, "{line}\n")?;
    }
    for b in &t.backups {
        writeln!(
            md,
            "Backup: {} (failprobe never deletes it).\n",
            sentence::backup(&b.how, &b.node, &b.status, b.took_ms, &b.name)
        )?;
    }
    if t.keyspace.before.is_some() || t.keyspace.after.is_some() {
        let k = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        writeln!(
            md,
            "Keys (DBSIZE without failprobe's own): before {}, after {}.\n",
            k(t.keyspace.before),
            k(t.keyspace.after)
        )?;
    }
    let rows = t.keyspace.rows();
    if !rows.is_empty() {
        writeln!(md, "| database | keys before | keys after | |\n|---|---|---|---|")?;
        let k = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        for (db, before, after) in rows {
            let flag = if t.keyspace.mismatch.contains(&db) { "**MISMATCH**" } else { "" };
            writeln!(md, "| db{db} | {} | {} | {flag} |", k(before), k(after))?;
        }
        writeln!(md)?;
    }
    if !t.timeline.is_empty() {
        writeln!(md, "Timeline (ms from run start):\n")?;
        for e in &t.timeline {
            writeln!(md, "- `{:>10.1}` {}", e.at_ms, e.what)?;
        }
        writeln!(md)?;
    }
    Ok(())
}

/// What AWS says next to what the probes saw, in one sentence (report.md and report.html).
pub(crate) fn aws_line(t: &TrialSummary) -> Option<String> {
    let aws = t.aws.as_ref()?;
    let at = |v: Option<f64>| v.map(|ms| format!("{ms:.1} ms")).unwrap_or_else(|| "not logged".into());
    let mut line = format!(
        "AWS ({} events, at AWS's timestamps): failover completed {}, recovery finished {}; writes back for good {}",
        aws.events.len(),
        at(aws.failover_completed_at_ms),
        at(aws.recovery_finished_at_ms),
        at(aws.writes_recovered_at_ms)
    );
    if let Some(lag) = aws.completion_lag_ms {
        let (how, d) = if lag >= 0.0 { ("after", lag) } else { ("before", -lag) };
        line.push_str(&format!(" — AWS logged completion {} {how} clients could write again", format_ms(d)));
    }
    Some(line + ".")
}

fn stream_row(md: &mut String, name: &str, st: &StreamSummary) -> std::fmt::Result {
    let errors = error_counts(&st.errors);
    let l = &st.latency_ms;
    writeln!(
        md,
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        st.probes,
        st.failed,
        st.late,
        st.outages.len(),
        format_ms(st.longest_outage_ms),
        if st.recovered { "yes" } else { "**no**" },
        if errors.is_empty() { "—" } else { &errors },
        format_ms(l.p50),
        format_ms(l.p99),
        format_ms(l.p999),
        format_ms(l.max)
    )
}

fn write_definitions(md: &mut String, s: &Summary) -> std::fmt::Result {
    writeln!(md, "## How to read this\n")?;
    for d in definitions(s) {
        writeln!(md, "- {d}")?;
    }
    Ok(())
}

/// What each figure means and how precise it is; report.md and report.html both use these
/// (Markdown emphasis with `**`).
pub(crate) fn definitions(s: &Summary) -> Vec<String> {
    let r = &s.resolution;
    let mut out = vec![
        format!("An **outage window** is a run of consecutive failed probes of one stream, by scheduled time: from the scheduled time of the first failed probe to the completion of the first successful one after it. It may have started up to one interval ({}) earlier.", format_ms(r.outage_uncertainty_ms)),
        format!("**Latency** is of successful probes, measured from the time each probe was due (no coordinated omission); percentiles from HDR histograms at {} significant digits. Timestamps have 1 µs resolution; 99 % of probes left within {} of their due time.", r.histogram_significant_digits, format_ms(r.send_lateness_p99_ms)),
        format!("A probe is **late** when it was sent more than {} after it was due (failprobe itself fell behind).", format_ms(r.late_threshold_ms)),
        "**Lost** writes were acknowledged to the client but are missing from the primary's write log after recovery; **ghost** writes failed or timed out for the client yet were applied; a **stale read** returned a value older than a write acknowledged before the read was sent.".to_string(),
    ];
    if s.trials
        .iter()
        .any(|t| t.clients.iter().map(|c| &c.integrity).chain([&t.integrity]).any(|i| i.split_brain_first_ms.is_some()))
    {
        out.push(crate::analysis::sentence::SPLIT_BRAIN_DEFINITION.to_string());
    }
    if s.trials.iter().any(|t| t.aws.is_some()) {
        out.push("ElastiCache events are placed at AWS's own timestamps (millisecond resolution), which carry any offset between AWS's clock and this machine's; failprobe fetched each a poll interval or more later.".to_string());
    }
    out
}
