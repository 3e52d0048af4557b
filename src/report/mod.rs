//! Reports never talk to servers: they turn the analysis (summary, histograms, plot series) into
//! files, one exporter per format behind one trait.

pub mod compare;
pub mod hgrm;
pub mod html;
pub mod json;
pub mod junit;
pub(crate) mod markdown;
pub mod plot;
pub mod png;
pub(crate) mod restore;
pub use crate::analysis::summary;
pub mod svg;
pub mod terminal;

use crate::analysis::Analysis;
use crate::file::write_file;
use anyhow::Result;
use std::path::{Path, PathBuf};
use summary::Summary;

/// Everything an exporter may use.
pub struct ReportData {
    pub analysis: Analysis,
    /// The SVG plots, drawn once for timeline.svg & co. and for the HTML report.
    plots: std::cell::OnceCell<Vec<(&'static str, String)>>,
}

impl ReportData {
    pub fn new(analysis: Analysis) -> Self {
        Self { analysis, plots: Default::default() }
    }

    pub fn summary(&self) -> &Summary {
        &self.analysis.summary
    }

    pub fn plots(&self) -> Result<&[(&'static str, String)]> {
        if let Some(p) = self.plots.get() {
            return Ok(p);
        }
        let drawn = svg::render_all(self)?;
        Ok(self.plots.get_or_init(|| drawn))
    }
}

pub(crate) trait Exporter {
    /// Short name for `--format`.
    fn format(&self) -> &'static str;
    /// Writes this format's file(s) into `dir`; returns what it wrote.
    fn write(&self, dir: &Path, data: &ReportData) -> Result<Vec<PathBuf>>;
}

/// Helper for exporters that produce one file from bytes.
pub(crate) fn write_one(dir: &Path, name: &str, bytes: &[u8]) -> Result<Vec<PathBuf>> {
    let path = dir.join(name);
    write_file(&path, bytes)?;
    Ok(vec![path])
}

#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Only these formats; all when empty.
    pub formats: Vec<Format>,
    /// Also draw PNG images of the plots.
    pub png: bool,
}

/// `failprobe report --format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Md,
    Html,
    Svg,
    Hgrm,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Md => "md",
            Format::Html => "html",
            Format::Svg => "svg",
            Format::Hgrm => "hgrm",
        }
    }
}

/// Extra outputs, for `run`, `report`, `merge` and `demo`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct OutputArgs {
    /// Also draw the plots as PNG (timeline.png, latency-percentiles.png, outages.png).
    #[arg(long)]
    pub png: bool,
    /// Write JUnit XML here: one test case per budget check per trial.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Append a Markdown summary here (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    pub summary_md: Option<PathBuf>,
}

impl OutputArgs {
    pub fn report_options(&self, formats: Vec<Format>) -> ReportOptions {
        ReportOptions { formats, png: self.png }
    }

    pub fn ci(&self) -> CiOutputs {
        CiOutputs { junit: self.junit.clone(), summary_md: self.summary_md.clone() }
    }
}

fn exporters(options: &ReportOptions) -> Vec<Box<dyn Exporter>> {
    let mut all: Vec<Box<dyn Exporter>> = vec![
        Box::new(json::Json),
        Box::new(markdown::Markdown),
        Box::new(html::Html),
        Box::new(svg::Svg),
        Box::new(hgrm::Hgrm),
    ];
    if options.png {
        all.push(Box::new(png::Png));
    }
    all.retain(|e| {
        options.formats.is_empty() || e.format() == "png" || options.formats.iter().any(|f| f.as_str() == e.format())
    });
    all
}

/// Writes the report files into `dir`; returns the summary and the paths written.
pub fn write_reports(dir: &Path, analysis: Analysis, options: &ReportOptions) -> Result<(Summary, Vec<PathBuf>)> {
    let data = ReportData::new(analysis);
    let mut written = Vec::new();
    for e in exporters(options) {
        written.extend(e.write(dir, &data)?);
    }
    Ok((data.analysis.summary, written))
}

/// Where to put the CI formats, if anywhere.
#[derive(Clone, Debug, Default)]
pub struct CiOutputs {
    pub junit: Option<PathBuf>,
    pub summary_md: Option<PathBuf>,
}

impl CiOutputs {
    pub fn write(&self, summary: &Summary) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        if let Some(p) = &self.junit {
            write_plain(p, junit::junit(summary).as_bytes())?;
            out.push(p.clone());
        }
        if let Some(p) = &self.summary_md {
            // $GITHUB_STEP_SUMMARY is shared by the job's steps: append, never replace.
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            f.write_all(junit::step_summary(summary).as_bytes())?;
            out.push(p.clone());
        }
        Ok(out)
    }
}

fn write_plain(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// Exit code for CI: 0 within budget (or recovered, without one), 1 budget exceeded or a stream
/// that never recovered, 2 no verdict. Read from the one verdict, like every other output.
pub fn exit_code(summary: &Summary) -> i32 {
    summary.verdict.exit_code
}

/// One client profile's trial in a line: "pinned: writes NOT RECOVERED (down 7.86 s at the
/// end: readonly ×786, reset ×1); reads no outage; 296 of 1308 acknowledged writes lost".
pub(crate) fn client_line(c: &summary::ClientSummary) -> String {
    let stream = |name: &str, st: &summary::StreamSummary| {
        let errors = crate::analysis::sentence::error_counts(&st.errors);
        let errors = if errors.is_empty() { String::new() } else { format!(": {errors}") };
        match st.outages.last() {
            Some(o) if !o.recovered => {
                format!("{name} NOT RECOVERED (down {} at the end{errors})", crate::duration::format_ms(o.duration_ms))
            }
            Some(_) => format!("{name} longest outage {}{errors}", crate::duration::format_ms(st.longest_outage_ms)),
            None => format!("{name} no outage"),
        }
    };
    let i = &c.integrity;
    let loss = if i.checked {
        let ghosts = if i.ghost_writes > 0 { format!(", {} ghost", i.ghost_writes) } else { String::new() };
        let split = crate::analysis::sentence::split_brain_part(i.split_brain_writes, i.split_brain_unknown);
        format!("{} of {} acknowledged writes lost{split}{ghosts}", i.lost_acked_writes, i.acked_writes)
    } else {
        "loss unknown (write log unreadable)".to_string()
    };
    let loss = match crate::analysis::sentence::split_brain(i) {
        Some(window) => format!("{loss}; {window}"),
        None => loss,
    };
    let faults: String = c.adapter_faults.iter().map(|f| format!("; adapter {f}")).collect();
    let held = match &c.connections {
        Some(nodes) => {
            let each: Vec<String> = nodes.iter().map(|(node, n)| format!("{n} on {node}")).collect();
            format!("; connections at the end: {}", each.join(", "))
        }
        None => String::new(),
    };
    let (writes, reads) = (stream("writes", &c.writes), stream("reads", &c.reads));
    let pubsub = c.pubsub.as_ref().map(|p| format!("; {}", p.sentence())).unwrap_or_default();
    let stream = c.stream.as_ref().map(|p| format!("; {}", p.sentence())).unwrap_or_default();
    format!("{}: {writes}; {reads}; {loss}{pubsub}{stream}{held}{faults}", client_name(c))
}

/// `redis-py-default (redis-py 8.1.0; mode=direct socket_timeout=0.25)` for an adapter, else
/// the profile's name.
pub(crate) fn client_name(c: &summary::ClientSummary) -> String {
    let (Some(library), Some(version)) = (&c.library, &c.version) else { return c.name.clone() };
    let settings = match &c.settings {
        Some(serde_json::Value::Object(map)) if !map.is_empty() => {
            // The name its connections carry is the run's, not a setting of the library: shown,
            // every comparison of two runs would say the clients differ.
            let pairs: Vec<String> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "client_name")
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            let text = pairs.join(" ");
            let text = match text.char_indices().nth(200) {
                Some((at, _)) => format!("{}…", &text[..at]),
                None => text,
            };
            format!("; {text}")
        }
        _ => String::new(),
    };
    format!("{} ({library} {version}{settings})", c.name)
}

pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::analysis::tests::{event, meta};
    use crate::analysis::Analyzer;
    use crate::sample::{Budget, EventKind};

    #[test]
    fn every_output_shows_the_one_verdict() {
        // Fewer trials than planned: no verdict, in every output and in the exit code.
        let mut a = Analyzer::new(meta(3, Budget::default()));
        event(&mut a, 0, 0, EventKind::TrialStart);
        event(&mut a, 0, 1_000, EventKind::TrialEnd { reason: "observed".into() });
        let s = a.finish().summary;
        assert_eq!(super::exit_code(&s), 2);
        assert!(super::terminal::final_summary(&s).starts_with("INCOMPLETE"));
        assert!(super::junit::junit(&s).contains(r#"type="incomplete""#));
        assert!(super::junit::step_summary(&s).contains("INCOMPLETE"));
        // A trigger that failed.
        let mut a = Analyzer::new(meta(1, Budget { max_outage_ms: Some(1000.0), ..Default::default() }));
        event(&mut a, 0, 0, EventKind::TrialStart);
        event(&mut a, 0, 10, EventKind::TriggerStart { kind: "kill".into(), detail: "kill".into() });
        event(&mut a, 0, 20, EventKind::TriggerError { message: "no such process".into() });
        event(&mut a, 0, 1_000, EventKind::TrialEnd { reason: "recovered".into() });
        let s = a.finish().summary;
        assert_eq!(super::exit_code(&s), 2);
        assert!(super::junit::junit(&s).contains("trigger of trial 0 failed"));
        // A client outside the budget that never recovered: named in every output's headline.
        let s = crate::analysis::tests::two_clients(Budget::default());
        let headline = &s.verdict.headline;
        assert!(headline.contains("; pinned NOT RECOVERED"), "{headline}");
        assert_eq!(super::exit_code(&s), 0, "the budget (failprobe's own) decides the exit code");
        assert!(super::terminal::final_summary(&s).starts_with(headline.as_str()));
        assert!(super::markdown::render(&s).unwrap().contains(&format!("**{headline}**")));
        let mut html = String::new();
        super::html::verdict(&mut html, &s);
        assert!(html.contains(&super::escape_html(headline)), "report.html headline");
        assert!(html.contains("1 not recovered"), "the trials figure counts every client");
        assert!(super::junit::step_summary(&s).contains(headline.as_str()));
    }

    /// Split-brain writes, said by the one renderer in every output: the headline, the client
    /// lines (terminal, report.md, report.html), the integrity figures, the budget checks
    /// (JUnit), the definitions.
    #[test]
    fn every_output_counts_split_brain_writes_among_the_lost() {
        use crate::analysis::split_brain::silent_failure;
        let s = silent_failure::summary(Budget::default());
        let part = "25 acknowledged writes (25 of them split-brain)";
        assert!(s.verdict.headline.contains(part), "{}", s.verdict.headline);
        let window = "the deposed old primary 127.0.0.1:1 kept acknowledging writes for 240.0 ms";
        let terminal = super::terminal::final_summary(&s);
        assert!(terminal.contains(window) && terminal.contains("(25 of them split-brain)"), "{terminal}");
        let md = super::markdown::render(&s).unwrap();
        assert!(md.contains(window) && md.contains("**split-brain write**"), "{md}");
        let definitions = super::markdown::definitions(&s);
        assert!(definitions.iter().any(|d| d == crate::analysis::sentence::SPLIT_BRAIN_DEFINITION));
        assert!(super::junit::step_summary(&s).contains(part));
        let all = Budget { max_lost_writes: Some(0), clients: vec!["all".into()], ..Default::default() };
        let s = silent_failure::summary(all);
        let junit = super::junit::junit(&s);
        assert!(junit.contains("25 acknowledged writes lost (25 of them split-brain); budget 0"), "{junit}");
        let json = serde_json::to_value(&s.trials[0].clients[1].integrity).unwrap();
        assert_eq!((json["lost_acked_writes"].as_u64(), json["split_brain_writes"].as_u64()), (Some(25), Some(25)));
    }

    #[test]
    fn the_timeline_draws_every_client() {
        let a = crate::analysis::tests::two_clients_analysis(Budget::default());
        let s = &a.summary;
        let svg =
            super::plot::svg(super::plot::timeline::size(s), |root| super::plot::timeline::draw(root, s, &a)).unwrap();
        assert!(svg.contains("failprobe outage"), "the first client's bands named");
        assert!(svg.contains("pinned outage, NOT RECOVERED"), "the second client's bands drawn and named");
    }

    #[test]
    fn the_timeline_image_stays_bounded_for_many_trials() {
        let mut a = Analyzer::new(meta(40, Budget::default()));
        for t in 0..40 {
            event(&mut a, t, t as u64 * 1000, EventKind::TrialStart);
            event(&mut a, t, t as u64 * 1000 + 500, EventKind::TrialEnd { reason: "observed".into() });
        }
        let (w, h) = super::plot::timeline::size(&a.finish().summary);
        // 80 panels asked for; at most 24 drawn (1200 × 6240 px, about 22 MB of pixels).
        assert!(u64::from(w) * u64::from(h) <= 1200 * 24 * 260, "{w} x {h}");
    }
}
