//! report.html: one self-contained file (inline SVG and CSS, nothing fetched) for the people who
//! decide "maintenance window or acceptable blip?". Verdict first, evidence after.

use super::escape_html as esc;
use super::summary::{Percentiles, StreamSummary, Summary, TrialSummary};
use super::{write_one, Exporter, ReportData};
use crate::analysis::sentence::{self, error_counts};
use crate::duration::format_ms;
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

pub struct Html;

impl Exporter for Html {
    fn format(&self) -> &'static str {
        "html"
    }

    fn write(&self, dir: &Path, data: &ReportData) -> Result<Vec<PathBuf>> {
        write_one(dir, "report.html", render(data)?.as_bytes())
    }
}

const STYLE: &str = r#"
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1240px;padding:1.5em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#555;margin:0}.meta code{font-size:.95em}
.verdict{display:flex;gap:1.5em;align-items:flex-start;border-radius:8px;padding:1em 1.2em;margin:1.2em 0;border:2px solid}
.verdict.pass{background:#eefaf0;border-color:#2e9d46}.verdict.fail{background:#fdeeee;border-color:#c62828}.verdict.incomplete{background:#fff6e5;border-color:#e69500}.verdict.recovered{background:#eef3fb;border-color:#3b6ea8}
.badge{font-size:1.7em;font-weight:700;min-width:5.5em}.pass .badge{color:#1f7a35}.fail .badge{color:#b71c1c}.incomplete .badge{color:#a66b00}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:.6em 1.5em;flex:1}
.verdict>div:last-child{flex:1}.headline{margin:0 0 .6em;font-weight:600}.figure b{display:block;font-size:1.35em}.figure span{color:#555;font-size:.9em}.figure.warn b{color:#b71c1c}
ul.violations{margin:.6em 0 0;padding-left:1.2em;color:#b71c1c}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right}
th{background:#f5f5f7}td.l,th.l{text-align:left}tr.bad td{background:#fdeeee}
.plot{overflow-x:auto;border:1px solid #eee;margin:.6em 0}.plot svg{display:block;max-width:100%;height:auto}
.note{color:#555;font-size:.9em}ul.events{list-style:none;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.88em;padding-left:1.5em}
"#;

pub fn render(data: &ReportData) -> Result<String> {
    let s = data.summary();
    let plots: BTreeMap<&str, &String> = data.plots()?.iter().map(|(name, svg)| (*name, svg)).collect();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>failprobe: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&s.scenario)
    );
    let _ = writeln!(
        h,
        "<h1>failprobe report: {}</h1><p class=\"meta\">target <code>{}</code> · started {} · run <code>{}</code> · failprobe {}</p>",
        esc(&s.scenario),
        esc(&s.target),
        esc(&s.started_at),
        esc(&s.run_id),
        esc(&s.version)
    );
    if let Some(servers) = s.servers_line() {
        let _ = writeln!(h, "<p class=\"meta servers\">measured: {}</p>", esc(&servers));
    }
    verdict(&mut h, s);
    clients(&mut h, s);
    section(&mut h, "Timeline", "Latency of every probe (log scale, from its due time); crosses are failed probes by error class, shaded bands are outage windows, orange triangles are writes that were acknowledged and then lost.");
    plot(&mut h, &plots, "timeline.svg");
    outages(&mut h, s);
    plot(&mut h, &plots, "outages.svg");
    shards(&mut h, s);
    integrity(&mut h, s);
    keyspace(&mut h, s);
    latency(&mut h, s);
    plot(&mut h, &plots, "latency-percentiles.svg");
    events(&mut h, s);
    settings(&mut h, s);
    definitions(&mut h, s);
    h.push_str("</body></html>\n");
    Ok(h)
}

fn section(h: &mut String, title: &str, note: &str) {
    let _ = write!(h, "<h2>{}</h2>", esc(title));
    if !note.is_empty() {
        let _ = write!(h, "<p class=\"note\">{}</p>", esc(note));
    }
}

fn plot(h: &mut String, plots: &BTreeMap<&str, &String>, name: &str) {
    if let Some(svg) = plots.get(name) {
        let _ = writeln!(h, "<div class=\"plot\">{svg}</div>");
    }
}

fn errors_seen(s: &Summary) -> BTreeMap<String, u64> {
    sentence::sum_errors(s.trials.iter().flat_map(|t| [&t.writes.errors, &t.reads.errors]))
}

pub(super) fn verdict(h: &mut String, s: &Summary) {
    let class = s.verdict.kind.as_str();
    let word = s.verdict.word();
    let errors = errors_seen(s);
    let seen = if errors.is_empty() { "no errors".to_string() } else { error_counts(&errors) };
    // Every client measured counts, inside the budget or not: the headline names the others.
    let down = |w: &StreamSummary, r: &StreamSummary| !w.recovered || !r.recovered;
    let unrecovered = s
        .trials
        .iter()
        .filter(|t| down(&t.writes, &t.reads) || t.clients.iter().any(|c| down(&c.writes, &c.reads)))
        .count();
    let lost = s.lost_acked_writes();
    let unchecked = s.unchecked_write_logs();
    let _ = write!(
        h,
        "<section class=\"verdict {class}\"><div class=\"badge\">{word}</div><div><p class=\"headline\">{}</p><div class=\"figures\">",
        esc(&s.verdict.headline)
    );
    let figure = |h: &mut String, value: String, label: &str, warn: bool| {
        let class = if warn { "figure warn" } else { "figure" };
        let _ = write!(h, "<div class=\"{class}\"><b>{}</b><span>{}</span></div>", esc(&value), esc(label));
    };
    let outage_label = format!("longest outage (±{})", format_ms(s.resolution.outage_uncertainty_ms));
    figure(h, format_ms(s.longest_outage_ms()), &outage_label, s.longest_outage_ms() > 0.0);
    let lost_label = if unchecked > 0 {
        "acknowledged writes lost, all clients (some logs unread)"
    } else {
        "acknowledged writes lost, all clients"
    };
    figure(h, lost.to_string(), lost_label, lost > 0 || unchecked > 0);
    figure(h, seen, "what clients saw", !errors.is_empty());
    let recovered = if unrecovered > 0 { format!("{unrecovered} not recovered") } else { "all recovered".to_string() };
    figure(h, format!("{} trial(s)", s.trials.len()), &recovered, unrecovered > 0);
    h.push_str("</div>");
    let budget = match (s.budget.max_outage_ms, s.budget.max_lost_writes) {
        (None, None) => "No budget was set: the verdict only requires recovery.".to_string(),
        (o, l) => format!(
            "Budget: outage ≤ {}, lost acknowledged writes ≤ {}.",
            o.map(format_ms).unwrap_or_else(|| "any".into()),
            l.map(|n| n.to_string()).unwrap_or_else(|| "any".into())
        ),
    };
    let _ = write!(h, "<p class=\"note\">{}</p>", esc(&budget));
    if !s.budget.violations.is_empty() {
        h.push_str("<ul class=\"violations\">");
        for v in &s.budget.violations {
            let _ = write!(h, "<li>{}</li>", esc(v));
        }
        h.push_str("</ul>");
    }
    h.push_str("</div></section>\n");
}

fn trial_label(t: &TrialSummary) -> String {
    match &t.source {
        Some(src) => format!("{} ({src})", t.index),
        None => t.index.to_string(),
    }
}

fn outages(h: &mut String, s: &Summary) {
    section(h, "Outage windows", &format!("From the due time of the first failed probe to the completion of the first successful one after it; each ±{} (one probe interval). Times in ms from the run start.", format_ms(s.resolution.outage_uncertainty_ms)));
    let rows: Vec<_> = s
        .trials
        .iter()
        .flat_map(|t| [("writes", &t.writes), ("reads", &t.reads)].map(|(n, st)| (t, n, st)))
        .flat_map(|(t, n, st)| st.outages.iter().map(move |o| (t, n, o)))
        .collect();
    if rows.is_empty() {
        h.push_str("<p>No outage windows: every probe of every trial succeeded.</p>\n");
        return;
    }
    h.push_str("<table><tr><th>trial</th><th class=\"l\">stream</th><th>from ms</th><th>to ms</th><th>duration</th><th class=\"l\">recovered</th><th>failed probes</th><th class=\"l\">errors</th></tr>\n");
    for (t, n, o) in rows {
        let errors = error_counts(&o.errors);
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td>{}</td><td class=\"l\">{n}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            if o.recovered { "" } else { "bad" },
            esc(&trial_label(t)),
            o.start_ms,
            o.end_ms,
            format_ms(o.duration_ms),
            if o.recovered { "yes" } else { "no" },
            o.failed_probes,
            esc(&errors)
        );
    }
    h.push_str("</table>\n");
    let o = &s.outage_histogram_ms;
    let _ = writeln!(
        h,
        "<p class=\"note\">{} windows across all trials: p50 {}, p90 {}, p99 {}, max {}.</p>",
        o.count,
        format_ms(o.p50),
        format_ms(o.p90),
        format_ms(o.p99),
        format_ms(o.max)
    );
}

/// Per client profile (`--clients`): what it saw, and where its time went as a waterfall from
/// the trigger (writes on the upper lane, reads below; red while down; a mark per phase).
fn clients(h: &mut String, s: &Summary) {
    let extra = |c: &super::summary::ClientSummary| c.pubsub.is_some() || c.stream.is_some();
    if s.trials.iter().all(|t| t.clients.len() < 2 && !t.clients.iter().any(extra)) {
        return;
    }
    section(h, "What each client saw", "Client profiles measured side by side in the same trials (`--clients`); the rest of the report is the first one's. Marks: trigger, new primary, endpoint flip, old primary unreachable and stepped down, answered by the deposed old primary (hover for the time); a phase not observed has no mark.");
    h.push_str("<table><tr><th>trial</th><th class=\"l\">client</th><th class=\"l\">what it saw</th><th class=\"l\">where the time went</th></tr>\n");
    for t in &s.trials {
        for c in &t.clients {
            let missed = c.pubsub.as_ref().is_some_and(|p| p.missed > 0 || !p.resubscribed)
                || c.stream.as_ref().is_some_and(|p| p.lost != Some(0));
            let bad = !c.recovered() || c.integrity.lost_acked_writes > 0 || missed;
            let _ = writeln!(
                h,
                "<tr class=\"{}\"><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}<br><small>{}</small></td></tr>",
                if bad { "bad" } else { "" },
                esc(&trial_label(t)),
                esc(&super::client_name(c)),
                esc(&super::client_line(c)),
                waterfall_svg(t, c),
                esc(&crate::analysis::waterfall::describe(&c.phases)),
            );
        }
    }
    h.push_str("</table>\n");
}

fn waterfall_svg(t: &TrialSummary, c: &crate::analysis::summary::ClientSummary) -> String {
    let Some(start) = c.phases.first().and_then(|p| p.at_ms) else { return String::new() };
    let (from, to) = (start - 1000.0, t.ended_at_ms.max(start + 1.0));
    let (width, scale) = (480.0, 480.0 / (to - from));
    let x = |ms: f64| ((ms - from) * scale).clamp(0.0, width);
    let mut svg = format!("<svg width=\"{width}\" height=\"30\" role=\"img\"><rect x=\"0\" y=\"6\" width=\"{width}\" height=\"8\" fill=\"#e8f5e9\"/><rect x=\"0\" y=\"17\" width=\"{width}\" height=\"8\" fill=\"#e8f5e9\"/>");
    for (y, stream) in [(6, &c.writes), (17, &c.reads)] {
        for o in stream.outages.iter().filter(|o| o.end_ms >= from) {
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"8\" fill=\"#d32f2f\"><title>down {}</title></rect>",
                x(o.start_ms),
                (x(o.end_ms) - x(o.start_ms)).max(1.0),
                esc(&format_ms(o.duration_ms))
            );
        }
    }
    for p in c.phases.iter().filter(|p| !p.phase.is_stream()) {
        if let Some(at) = p.at_ms {
            let _ = write!(
                svg,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"2\" y2=\"29\" stroke=\"#333\" stroke-width=\"1.5\"><title>{1} +{2}</title></line>",
                x(at),
                esc(&p.name),
                esc(&format_ms(at - start))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Per shard (cluster) or node: who was down, for how long, and what was lost.
fn shards(h: &mut String, s: &Summary) {
    if s.trials.iter().all(|t| t.shards.is_empty()) {
        return;
    }
    section(h, "Shards", "Each shard is probed on its own keys and connections; the whole-target figures above count a moment as down when any shard was.");
    h.push_str("<table><tr><th>trial</th><th class=\"l\">shard</th><th>longest write outage</th><th>longest read outage</th><th class=\"l\">errors</th><th>acknowledged</th><th>lost</th><th>ghost</th><th>stale reads</th><th>seeded keys surviving</th></tr>\n");
    for t in &s.trials {
        for sh in &t.shards {
            let errors = error_counts(&sentence::sum_errors([&sh.writes.errors, &sh.reads.errors]));
            let bad = !sh.writes.recovered || !sh.reads.recovered || sh.integrity.lost_acked_writes > 0;
            let seeds = match (sh.integrity.surviving_seeded_keys, sh.integrity.seeded_keys) {
                (Some(s), Some(n)) if n > 0 => format!("{s} of {n} ({:.0} %)", s as f64 * 100.0 / n as f64),
                _ => "—".to_string(),
            };
            let _ = writeln!(
                h,
                "<tr class=\"{}\"><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if bad { "bad" } else { "" },
                esc(&trial_label(t)),
                esc(&sh.name),
                format_ms(sh.writes.longest_outage_ms),
                format_ms(sh.reads.longest_outage_ms),
                esc(&errors),
                sh.integrity.acked_writes,
                sh.integrity.lost_acked_writes,
                sh.integrity.ghost_writes,
                sh.integrity.stale_reads,
                esc(&seeds)
            );
        }
    }
    h.push_str("</table>\n");
}

fn integrity(h: &mut String, s: &Summary) {
    section(h, "Integrity", "After recovery the trial's write log is read from the primary. Lost: acknowledged to the client, then gone. Ghost: failed or timed out for the client, yet applied. Stale read: older than a write acknowledged before the read was sent.");
    h.push_str("<table><tr><th>trial</th><th>acknowledged</th><th>surviving</th><th>lost</th><th>ghost</th><th>unacknowledged</th><th>stale reads</th><th class=\"l\">log read from</th></tr>\n");
    for t in &s.trials {
        let i = &t.integrity;
        if !i.checked {
            let _ = writeln!(h, "<tr class=\"bad\"><td>{}</td><td>{}</td><td colspan=\"4\" class=\"l\">write log not read: loss unknown</td><td>{}</td><td></td></tr>", esc(&trial_label(t)), i.acked_writes, i.stale_reads);
            continue;
        }
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
            if i.lost_acked_writes > 0 { "bad" } else { "" },
            esc(&trial_label(t)),
            i.acked_writes,
            i.surviving_acked_writes,
            i.lost_acked_writes,
            crate::analysis::sentence::split_brain_part(i.split_brain_writes, i.split_brain_unknown),
            i.ghost_writes,
            i.unacked_writes,
            i.stale_reads,
            esc(i.log_server.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table>\n");
}

fn keyspace(h: &mut String, s: &Summary) {
    section(h, "Key counts", "DBSIZE just before the trigger and after recovery, without failprobe's own keys; then every database from INFO keyspace (a changed count is marked).");
    h.push_str("<table><tr><th>trial</th><th>before</th><th>after</th></tr>\n");
    let n = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "—".into());
    for t in &s.trials {
        let changed = matches!((t.keyspace.before, t.keyspace.after), (Some(a), Some(b)) if a != b);
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            if changed { "bad" } else { "" },
            esc(&trial_label(t)),
            n(t.keyspace.before),
            n(t.keyspace.after)
        );
        for (db, before, after) in t.keyspace.rows() {
            let _ = writeln!(
                h,
                "<tr class=\"{}\"><td>{} · db{db}</td><td>{}</td><td>{}</td></tr>",
                if t.keyspace.mismatch.contains(&db) { "bad" } else { "" },
                esc(&trial_label(t)),
                n(before),
                n(after)
            );
        }
    }
    h.push_str("</table>\n");
    for b in s.trials.iter().flat_map(|t| &t.backups) {
        let _ = writeln!(
            h,
            "<p>Backup: {} (failprobe never deletes it).</p>",
            esc(&sentence::backup(&b.how, &b.node, &b.status, b.took_ms, &b.name))
        );
    }
    if let Some(advice) = super::restore::advice(s) {
        let _ = writeln!(h, "<pre class=\"bad\">{}</pre>", esc(&advice));
    }
}

fn latency(h: &mut String, s: &Summary) {
    section(h, "Latency", &format!("Successful probes only, from their due time (no coordinated omission); HDR histograms at {} significant digits. Sent late: how long after its due time a probe actually left (p99).", s.resolution.histogram_significant_digits));
    h.push_str("<table><tr><th>trial</th><th class=\"l\">stream</th><th class=\"l\">phase</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>sent late p99</th></tr>\n");
    for t in &s.trials {
        for (name, st) in [("writes", &t.writes), ("reads", &t.reads)] {
            let mut rows: Vec<(&str, &Percentiles)> = vec![("all", &st.latency_ms)];
            if let Some(p) = &st.latency_by_phase_ms {
                rows.extend([("before", &p.before), ("during", &p.during), ("after", &p.after)]);
            }
            for (phase, p) in rows {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td class=\"l\">{name}</td><td class=\"l\">{phase}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&trial_label(t)),
                    p.count,
                    format_ms(p.p50),
                    format_ms(p.p90),
                    format_ms(p.p99),
                    format_ms(p.p999),
                    format_ms(p.max),
                    if phase == "all" { format_ms(st.send_lateness_ms.p99) } else { String::new() }
                );
            }
        }
    }
    h.push_str("</table>\n");
}

fn events(h: &mut String, s: &Summary) {
    section(h, "Trigger, topology and outage events", "Milliseconds from the run start.");
    for t in &s.trials {
        let _ = write!(h, "<h3>Trial {} — <code>{}</code></h3>", esc(&trial_label(t)), esc(&t.trigger.kind));
        if let Some(e) = &t.trigger.error {
            let _ = write!(h, "<p class=\"violations\">Trigger failed: {}</p>", esc(e));
        }
        if let Some(line) = super::markdown::aws_line(t) {
            let _ = write!(h, "<p>{}</p>", esc(&line));
        }
        h.push_str("<ul class=\"events\">");
        for e in &t.timeline {
            let _ = write!(h, "<li>{:>10.1} {}</li>", e.at_ms, esc(&e.what));
        }
        let _ = writeln!(h, "</ul><p class=\"note\">Ended: {}.</p>", esc(&t.end_reason));
    }
}

fn settings(h: &mut String, s: &Summary) {
    section(h, "Scenario and settings", "");
    let r = &s.resolution;
    let rows = [
        ("scenario", s.scenario.clone()),
        ("target", s.target.clone()),
        ("servers", s.servers_line().unwrap_or_else(|| "—".into())),
        ("run id (key namespace)", format!("failprobe:{{{}}}:", s.run_id)),
        ("started", s.started_at.clone()),
        ("probe interval", format_ms(s.probe.interval_ms)),
        ("probe deadline", format_ms(s.probe.timeout_ms)),
        ("budget: max outage", s.budget.max_outage_ms.map(format_ms).unwrap_or_else(|| "—".into())),
        ("budget: max lost writes", s.budget.max_lost_writes.map(|n| n.to_string()).unwrap_or_else(|| "—".into())),
        ("timestamp resolution", format!("{} µs", r.timestamp_us)),
        ("outage uncertainty", format!("±{}", format_ms(r.outage_uncertainty_ms))),
        ("send lateness p99", format_ms(r.send_lateness_p99_ms)),
        ("late threshold", format_ms(r.late_threshold_ms)),
        ("failprobe version", s.version.clone()),
    ];
    h.push_str("<table>");
    for (k, v) in rows {
        let _ = write!(h, "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>", esc(k), esc(&v));
    }
    h.push_str("</table>\n");
}

fn definitions(h: &mut String, s: &Summary) {
    section(h, "How to read this", "");
    h.push_str("<ul>");
    for d in super::markdown::definitions(s) {
        let _ = write!(h, "<li>{}</li>", esc(&d.replace("**", "")));
    }
    h.push_str("</ul>\n");
}
