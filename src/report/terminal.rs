//! The terminal: the summary at the end of a run (the live line is `run::status`).

use super::summary::Summary;
use crate::analysis::sentence::{self, error_counts};
use crate::analysis::waterfall;
use crate::duration::format_ms;

pub fn final_summary(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!("{}: {} trial(s) against {}\n", s.verdict(), s.trials.len(), s.target));
    if let Some(servers) = s.servers_line() {
        out.push_str(&format!("  measured: {servers}\n"));
    }
    for t in &s.trials {
        out.push_str(&format!("  trial {} [{}]", t.index, t.trigger.kind));
        if let Some(e) = &t.trigger.error {
            out.push_str(&format!(" trigger failed: {e};"));
        }
        for (name, st) in [("writes", &t.writes), ("reads", &t.reads)] {
            let errors = error_counts(&st.errors);
            out.push_str(&format!(
                "  {name}: longest outage {}{} ({} failed of {}{}{})",
                format_ms(st.longest_outage_ms),
                if st.recovered { "" } else { " NOT RECOVERED" },
                st.failed,
                st.probes,
                if errors.is_empty() { String::new() } else { format!(": {errors}") },
                if st.late > 0 { format!(", {} late", st.late) } else { String::new() },
            ));
        }
        let i = &t.integrity;
        if i.checked {
            let level = match s.probe.write_ack.as_str() {
                "plain" => String::new(),
                level => format!(" (acknowledged after {level})"),
            };
            out.push_str(&format!(
                "\n    integrity: {} acked{level}, {} lost{}, {} ghost, {} stale reads",
                i.acked_writes,
                i.lost_acked_writes,
                sentence::split_brain_part(i.split_brain_writes, i.split_brain_unknown),
                i.ghost_writes,
                i.stale_reads
            ));
        } else {
            out.push_str("\n    integrity: not checked (write log unreadable)");
        }
        for (db, before, after) in t.keyspace.rows().into_iter().filter(|(db, _, _)| t.keyspace.mismatch.contains(db)) {
            let n = |v: Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
            out.push_str(&format!("\n    keys MISMATCH in db{db}: {} before, {} after", n(before), n(after)));
        }
        out.push('\n');
        // With one client its pub/sub figures have no client line to go on.
        if let [c] = t.clients.as_slice() {
            if let Some(p) = &c.pubsub {
                out.push_str(&format!("    {}\n", p.sentence()));
            }
            if let Some(p) = &c.stream {
                out.push_str(&format!("    {}\n", p.sentence()));
            }
        }
        if t.clients.len() > 1 {
            for c in &t.clients {
                out.push_str(&format!("    client {}\n", super::client_line(c)));
                if !c.phases.is_empty() {
                    out.push_str(&format!("      where the time went: {}\n", waterfall::describe(&c.phases)));
                }
            }
        }
    }
    let h = &s.outage_histogram_ms;
    if h.count > 0 {
        out.push_str(&format!(
            "  outage windows: {} · p50 {} · p99 {} · max {} (±{})\n",
            h.count,
            format_ms(h.p50),
            format_ms(h.p99),
            format_ms(h.max),
            format_ms(s.resolution.outage_uncertainty_ms)
        ));
    }
    for v in &s.budget.violations {
        out.push_str(&format!("  budget: {v}\n"));
    }
    for b in s.trials.iter().flat_map(|t| &t.backups) {
        out.push_str(&format!("  backup: {}\n", sentence::backup(&b.how, &b.node, &b.status, b.took_ms, &b.name)));
    }
    if let Some(advice) = super::restore::advice(s) {
        for line in advice.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}
