//! `failprobe compare A B`: two runs side by side with deltas (engine 6.2 vs 7.1, a client
//! setting before and after), in the terminal and as one HTML file.

use super::escape_html as esc;
use super::summary::Summary;
use crate::duration::format_ms;
use std::fmt::Write;

pub struct Row {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    /// Milliseconds or a count.
    pub is_ms: bool,
}

impl Row {
    fn show(&self, v: f64) -> String {
        if self.is_ms {
            format_ms(v)
        } else {
            format!("{v:.0}")
        }
    }

    fn delta(&self) -> String {
        let d = self.b - self.a;
        let sign = if d > 0.0 {
            "+"
        } else if d < 0.0 {
            "−"
        } else {
            "±"
        };
        let pct = if self.a != 0.0 { format!(" ({sign}{:.0} %)", (d / self.a * 100.0).abs()) } else { String::new() };
        format!("{sign}{}{pct}", self.show(d.abs()))
    }
}

fn per_trial(s: &Summary, f: impl Fn(&super::summary::TrialSummary) -> f64) -> Vec<f64> {
    s.trials.iter().map(f).collect()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

pub fn rows(a: &Summary, b: &Summary) -> Vec<Row> {
    let longest = |s: &Summary| per_trial(s, |t| t.writes.longest_outage_ms.max(t.reads.longest_outage_ms));
    let lost = |s: &Summary| per_trial(s, |t| t.integrity.lost_acked_writes as f64);
    let failed = |s: &Summary| per_trial(s, |t| (t.writes.failed + t.reads.failed) as f64);
    let p99 = |s: &Summary| per_trial(s, |t| t.writes.latency_ms.p99.max(t.reads.latency_ms.p99));
    let ms = |metric: &str, a: f64, b: f64| Row { metric: metric.to_string(), a, b, is_ms: true };
    let n = |metric: &str, a: f64, b: f64| Row { metric: metric.to_string(), a, b, is_ms: false };
    let mut rows = vec![
        n("trials", a.trials.len() as f64, b.trials.len() as f64),
        ms("longest outage (worst trial)", max(&longest(a)), max(&longest(b))),
        ms("longest outage (mean over trials)", mean(&longest(a)), mean(&longest(b))),
        ms("outage windows p50", a.outage_histogram_ms.p50, b.outage_histogram_ms.p50),
        ms("outage windows p99", a.outage_histogram_ms.p99, b.outage_histogram_ms.p99),
        n("outage windows", a.outage_histogram_ms.count as f64, b.outage_histogram_ms.count as f64),
        n("lost acknowledged writes (total)", lost(a).iter().sum(), lost(b).iter().sum()),
        n(
            "ghost writes (total)",
            per_trial(a, |t| t.integrity.ghost_writes as f64).iter().sum(),
            per_trial(b, |t| t.integrity.ghost_writes as f64).iter().sum(),
        ),
        n(
            "stale reads (total)",
            per_trial(a, |t| t.integrity.stale_reads as f64).iter().sum(),
            per_trial(b, |t| t.integrity.stale_reads as f64).iter().sum(),
        ),
        n("failed probes (total)", failed(a).iter().sum(), failed(b).iter().sum()),
        ms("probe latency p99 (worst trial)", max(&p99(a)), max(&p99(b))),
    ];
    rows.extend(client_rows(a, b));
    rows
}

/// Every client profile or adapter measured in both runs: its own outage, loss and failures,
/// so that two runs differing only in an adapter's settings show what the settings changed.
fn client_rows(a: &Summary, b: &Summary) -> Vec<Row> {
    let mut rows = Vec::new();
    for name in common_clients(a, b) {
        let of = |s: &Summary, f: &dyn Fn(&super::summary::ClientSummary) -> f64| -> Vec<f64> {
            s.trials.iter().filter_map(|t| t.clients.iter().find(|c| c.name == name)).map(f).collect()
        };
        let longest = |c: &super::summary::ClientSummary| c.writes.longest_outage_ms.max(c.reads.longest_outage_ms);
        let lost = |c: &super::summary::ClientSummary| c.integrity.lost_acked_writes as f64;
        let failed = |c: &super::summary::ClientSummary| (c.writes.failed + c.reads.failed) as f64;
        let row = |metric: &str, a: f64, b: f64, is_ms| Row { metric: format!("{name}: {metric}"), a, b, is_ms };
        rows.push(row("longest outage (worst trial)", max(&of(a, &longest)), max(&of(b, &longest)), true));
        rows.push(row("lost acknowledged writes", of(a, &lost).iter().sum(), of(b, &lost).iter().sum(), false));
        rows.push(row("failed probes", of(a, &failed).iter().sum(), of(b, &failed).iter().sum(), false));
        // `--probe pubsub` in both runs: what its subscriber missed, and its longest gap.
        let subscribed = |s: &Summary| of(s, &|c| f64::from(u8::from(c.pubsub.is_some()))).iter().any(|n| *n > 0.0);
        if subscribed(a) && subscribed(b) {
            let missed = |c: &super::summary::ClientSummary| c.pubsub.as_ref().map_or(0.0, |p| p.missed as f64);
            let gap = |c: &super::summary::ClientSummary| c.pubsub.as_ref().map_or(0.0, |p| p.longest_gap_ms);
            rows.push(row("pub/sub messages missed", of(a, &missed).iter().sum(), of(b, &missed).iter().sum(), false));
            rows.push(row("pub/sub longest gap (worst trial)", max(&of(a, &gap)), max(&of(b, &gap)), true));
        }
    }
    rows
}

/// The client names of A's first trial that B measured too, in A's order.
fn common_clients(a: &Summary, b: &Summary) -> Vec<String> {
    let names = |s: &Summary| -> Vec<String> {
        s.trials.first().map(|t| t.clients.iter().map(|c| c.name.clone()).collect()).unwrap_or_default()
    };
    let in_b = names(b);
    names(a).into_iter().filter(|n| in_b.contains(n)).collect()
}

/// "redis-py: A (redis-py 8.1.0; retries=0) · B (redis-py 8.1.0; retries=3)" for every common
/// client whose library, version or settings differ.
fn client_differences(a: &Summary, b: &Summary) -> Vec<String> {
    let described = |s: &Summary, name: &str| {
        s.trials.first().and_then(|t| t.clients.iter().find(|c| c.name == name)).map(super::client_name)
    };
    common_clients(a, b)
        .into_iter()
        .filter_map(|name| {
            let (da, db) = (described(a, &name)?, described(b, &name)?);
            (da != db).then(|| format!("A {da} · B {db}"))
        })
        .collect()
}

/// The run's servers line, or why there is none.
fn measured(s: &Summary) -> String {
    s.servers_line().unwrap_or_else(|| "not recorded (a run made before failprobe read its servers)".into())
}

pub fn terminal(a_name: &str, b_name: &str, a: &Summary, b: &Summary) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "A: {a_name} ({}, {})\nB: {b_name} ({}, {})\n", a.scenario, a.verdict(), b.scenario, b.verdict());
    for (run, s) in [("A", a), ("B", b)] {
        let _ = writeln!(out, "{run} measured: {}", measured(s));
    }
    for d in client_differences(a, b) {
        let _ = writeln!(out, "clients differ: {d}");
    }
    let _ = writeln!(out, "{:<44} {:>12} {:>12}  B − A", "", "A", "B");
    for r in rows(a, b) {
        let _ = writeln!(out, "{:<44} {:>12} {:>12}  {}", r.metric, r.show(r.a), r.show(r.b), r.delta());
    }
    out
}

pub fn html(a_name: &str, b_name: &str, a: &Summary, b: &Summary) -> String {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>failprobe comparison</title><style>\
         body{font-family:-apple-system,\"Segoe UI\",Helvetica,Arial,sans-serif;max-width:960px;margin:0 auto;padding:1.5em}\
         table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:.3em .7em;text-align:right}th.l,td.l{text-align:left}\
         th{background:#f5f5f7}td.worse{background:#fdeeee}td.better{background:#eefaf0}</style></head><body>\n",
    );
    let _ = write!(
        h,
        "<h1>failprobe comparison</h1><p><b>A</b>: {} — {} ({})<br><b>B</b>: {} — {} ({})</p>",
        esc(a_name),
        esc(&a.scenario),
        esc(a.verdict()),
        esc(b_name),
        esc(&b.scenario),
        esc(b.verdict())
    );
    let _ = write!(
        h,
        "<table class=\"servers\"><tr><th class=\"l\"></th><th class=\"l\">servers measured</th></tr>\
         <tr><td class=\"l\">A</td><td class=\"l\">{}</td></tr><tr><td class=\"l\">B</td><td class=\"l\">{}</td></tr></table>",
        esc(&measured(a)),
        esc(&measured(b))
    );
    for d in client_differences(a, b) {
        let _ = write!(h, "<p>Clients differ: {}</p>", esc(&d));
    }
    h.push_str("<table><tr><th class=\"l\">metric</th><th>A</th><th>B</th><th>B − A</th></tr>\n");
    for r in rows(a, b) {
        // Every metric here is "lower is better" except the trial count.
        let class = if r.metric == "trials" || r.a == r.b {
            ""
        } else if r.b > r.a {
            "worse"
        } else {
            "better"
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            esc(&r.metric),
            esc(&r.show(r.a)),
            esc(&r.show(r.b)),
            esc(&r.delta())
        );
    }
    h.push_str("</table></body></html>\n");
    h
}
