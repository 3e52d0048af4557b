//! The fleet's report in each format, from one `FleetSummary`: a row's cells are formatted once
//! (`cells`) and each format lays them out; each target's own report sits in its directory.

use super::summary::{FleetSummary, TargetRow};
use crate::report::escape_html;
use anyhow::Result;
use std::path::{Path, PathBuf};

const HEADERS: [&str; 8] =
    ["target", "verdict", "trigger", "longest outage", "acked writes lost", "not recovered", "late probes", "servers"];

fn cells(r: &TargetRow) -> [String; 8] {
    [
        r.name.clone(),
        r.verdict.word().to_string(),
        if r.trigger.is_empty() { "—".into() } else { r.trigger.clone() },
        r.outage_text(),
        match r.ghost_writes {
            0 => r.lost_acked_writes.to_string(),
            g => format!("{} ({g} ghost)", r.lost_acked_writes),
        },
        if r.not_recovered.is_empty() { "—".into() } else { r.not_recovered.join(", ") },
        r.late_probes.to_string(),
        r.servers.clone().unwrap_or_else(|| "—".into()),
    ]
}

/// The headline, then the table with aligned columns, then each target's own headline.
pub fn terminal(s: &FleetSummary) -> String {
    let rows: Vec<[String; 8]> = s.targets.iter().map(cells).collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).chain([HEADERS[i].len()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..HEADERS.len()).map(width).collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = format!("{}\n", s.verdict.headline);
    out.push_str(&line(HEADERS.to_vec()));
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    for t in &s.targets {
        out.push_str(&format!("  {}: {}\n", t.name, t.verdict.headline));
    }
    out
}

pub fn markdown(s: &FleetSummary) -> String {
    let cell = |c: &str| c.replace('|', "\\|");
    let mut md = format!("# failprobe fleet: {}\n\n**{}**\n\n", s.name, cell(&s.verdict.headline));
    md.push_str(&format!("| {} |\n|{}\n", HEADERS.join(" | "), "---|".repeat(HEADERS.len())));
    for t in &s.targets {
        let mut c = cells(t).map(|c| cell(&c));
        c[0] = format!("[{}]({}/report.md)", c[0], t.dir);
        md.push_str(&format!("| {} |\n", c.join(" | ")));
    }
    md.push_str("\n## Each target\n\n");
    for t in &s.targets {
        md.push_str(&format!("- **{}**: {}\n", cell(&t.name), cell(&t.verdict.headline)));
    }
    md.push_str(&format!("\nfailprobe {} · started {}\n", s.version, s.started_at));
    md
}

pub fn html(s: &FleetSummary) -> String {
    let mut h = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>failprobe fleet: {name}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.fail{{color:#b00}}.incomplete{{color:#a60}}</style>\n\
         </head><body>\n<h1>failprobe fleet: {name}</h1>\n<p class=\"{kind}\"><strong>{headline}</strong></p>\n<table>\n<tr>",
        name = escape_html(&s.name),
        kind = escape_html(&s.verdict.kind),
        headline = escape_html(&s.verdict.headline),
    );
    for head in HEADERS {
        h.push_str(&format!("<th>{head}</th>"));
    }
    h.push_str("</tr>\n");
    for t in &s.targets {
        let c = cells(t).map(|c| escape_html(&c));
        let link = format!("<a href=\"{}/report.html\">{}</a>", escape_html(&t.dir), c[0]);
        h.push_str(&format!("<tr class=\"{}\"><td>{link}</td>", escape_html(&t.verdict.kind)));
        for v in &c[1..] {
            h.push_str(&format!("<td>{v}</td>"));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<h2>Each target</h2>\n<ul>\n");
    for t in &s.targets {
        h.push_str(&format!("<li><b>{}</b>: {}</li>\n", escape_html(&t.name), escape_html(&t.verdict.headline)));
    }
    h.push_str(&format!(
        "</ul>\n<p>failprobe {} · started {}</p>\n</body></html>\n",
        s.version,
        escape_html(&s.started_at)
    ));
    h
}

/// summary.json, report.md and report.html in the fleet's directory, each whole or absent.
pub fn write(dir: &Path, s: &FleetSummary) -> Result<Vec<PathBuf>> {
    let files = [
        ("summary.json", serde_json::to_string_pretty(s)? + "\n"),
        ("report.md", markdown(s)),
        ("report.html", html(s)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        crate::file::write_file(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}
