//! The timeline: latency of every probe over time (log scale), failed probes marked by error
//! class, outage windows shaded, lost acknowledged writes in orange, trigger and primary changes
//! as labelled vertical lines; with several client profiles, each one's outages in its own
//! colour. One panel per trial and stream, and per shard or node when the target has several.

use super::{plot_err, GREEN, GREY, ORANGE};
use crate::analysis::series::Series;
use crate::analysis::summary::{Integrity, ShardSummary, StreamSummary, Summary, TrialSummary};
use crate::analysis::{Analysis, MAX_PANELS};
use crate::sample::{AwsClass, ErrorClass, Stream};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

pub(crate) const WIDTH: u32 = 1200;
pub(crate) const PANEL_HEIGHT: u32 = 260;

/// One plot: a stream of a trial, for the whole target or for one of its shards.
struct Panel<'a> {
    trial: &'a TrialSummary,
    shard: Option<&'a ShardSummary>,
    stream: Stream,
}

impl Panel<'_> {
    fn stream_summary(&self) -> &StreamSummary {
        let (w, r) = match self.shard {
            Some(sh) => (&sh.writes, &sh.reads),
            None => (&self.trial.writes, &self.trial.reads),
        };
        if self.stream == Stream::Write {
            w
        } else {
            r
        }
    }

    fn integrity(&self) -> &Integrity {
        self.shard.map(|s| &s.integrity).unwrap_or(&self.trial.integrity)
    }
}

// At most MAX_PANELS panels; the tables of report.md/html cover every trial and shard.
fn panels(s: &Summary) -> Vec<Panel<'_>> {
    let mut out = all_panels(s);
    if out.len() > MAX_PANELS {
        tracing::warn!("timeline: drawing the first {MAX_PANELS} of {} panels", out.len());
        out.truncate(MAX_PANELS);
    }
    out
}

fn all_panels(s: &Summary) -> Vec<Panel<'_>> {
    let mut out = Vec::new();
    for trial in &s.trials {
        let shards: Vec<Option<&ShardSummary>> =
            if trial.shards.is_empty() { vec![None] } else { trial.shards.iter().map(Some).collect() };
        for shard in shards {
            out.extend(Stream::ALL.map(|stream| Panel { trial, shard, stream }));
        }
    }
    out
}

pub fn size(summary: &Summary) -> (u32, u32) {
    (WIDTH, PANEL_HEIGHT * panels(summary).len().max(1) as u32)
}

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Summary, a: &Analysis) -> Result<()> {
    let panels = panels(s);
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (area, panel) in areas.iter().zip(&panels) {
        let key = (panel.trial.index, panel.shard.map(|sh| sh.name.clone()), panel.stream);
        draw_panel(area, s, panel, a.series.get(&key)).map_err(plot_err)?;
    }
    Ok(())
}

/// A colour per error class, so "what clients saw" is visible at a glance.
/// AWS event markers: a colour no error class uses.
const AWS_COLOR: RGBColor = RGBColor(128, 0, 160);

pub(crate) fn class_color(c: ErrorClass) -> RGBColor {
    match c {
        ErrorClass::Timeout => RGBColor(200, 0, 0),
        ErrorClass::Refused => RGBColor(140, 0, 160),
        ErrorClass::Reset => RGBColor(200, 0, 120),
        ErrorClass::Readonly => RGBColor(0, 90, 200),
        ErrorClass::Loading | ErrorClass::Masterdown | ErrorClass::Noreplicas => RGBColor(160, 110, 0),
        ErrorClass::Dns | ErrorClass::Tls | ErrorClass::Auth => RGBColor(0, 0, 0),
        _ => RGBColor(120, 120, 120),
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &Summary,
    panel: &Panel,
    series: Option<&Series>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (t, stream) = (panel.trial, panel.stream);
    let shard = panel.shard.map(|sh| sh.name.as_str());
    let x0 = t.started_at_ms / 1000.0;
    let x1 = (t.ended_at_ms / 1000.0).max(x0 + 0.001);
    // Log scale: sub-millisecond latency and a 250 ms timeout are both readable.
    let y_max = s.probe.timeout_ms * 1.5;
    let y_min = 0.05;
    let st = panel.stream_summary();
    let integrity = panel.integrity();
    let lost = if stream == Stream::Write && integrity.checked {
        format!(" · {} acknowledged writes lost", integrity.lost_acked_writes)
    } else {
        String::new()
    };
    let source = t.source.as_deref().map(|s| format!(" · {s}")).unwrap_or_default();
    let caption = format!(
        "trial {}{source} · {}{} · trigger {} · longest outage {}{lost}",
        t.index,
        shard.map(|s| format!("{s} ")).unwrap_or_default(),
        stream.name(),
        t.trigger.kind,
        crate::duration::format_ms(st.longest_outage_ms)
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (super::FONT_FAMILY, 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since run start")
        .y_desc("latency ms (from due time)")
        .y_label_formatter(&|v| format!("{v}"))
        .light_line_style(WHITE)
        .draw()?;
    for o in &st.outages {
        let color = if o.recovered { RED.mix(0.12) } else { RED.mix(0.3) };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(o.start_ms / 1000.0, y_min), (o.end_ms / 1000.0, y_max)],
            color.filled(),
        )))?;
    }
    let mut has_legend = false;
    // Every client profile measured (`--clients`): each one's outages in a colour of its own,
    // the first's (the red above) named beside them. Whole-target panels only.
    if t.clients.len() > 1 && panel.shard.is_none() {
        for (k, c) in t.clients.iter().enumerate() {
            let st = if stream == Stream::Write { &c.writes } else { &c.reads };
            if st.outages.is_empty() {
                continue;
            }
            has_legend = true;
            let color = if k == 0 { RED } else { CLIENT_COLORS[(k - 1) % CLIENT_COLORS.len()] };
            let band = |recovered: bool| color.mix(if recovered { 0.12 } else { 0.3 }).filled();
            let label = format!("{} {}", c.name, if st.recovered { "outage" } else { "outage, NOT RECOVERED" });
            let rects =
                st.outages.iter().filter(|_| k > 0).map(|o| {
                    Rectangle::new([(o.start_ms / 1000.0, y_min), (o.end_ms / 1000.0, y_max)], band(o.recovered))
                });
            chart
                .draw_series(rects)?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], color.mix(0.3).filled()));
        }
    }
    let (ok, failed) = series.map(points).unwrap_or_default();
    has_legend |= !failed.is_empty();
    let clamp = |y: f64| y.clamp(y_min, y_max);
    chart.draw_series(ok.into_iter().map(|(x, y)| Circle::new((x, clamp(y)), 1, BLUE.filled())))?;
    for (class, xs) in failed {
        let color = class_color(class);
        chart
            .draw_series(xs.into_iter().map(|x| Cross::new((x, s.probe.timeout_ms), 3, color.stroke_width(1))))?
            .label(class.as_str())
            .legend(move |(x, y)| Cross::new((x, y), 3, color.stroke_width(1)));
    }
    if let Some(series) = series.filter(|_| stream == Stream::Write) {
        let lost: Vec<(u64, u32)> = series.lost().collect();
        if !lost.is_empty() {
            has_legend = true;
            chart
                .draw_series(lost.iter().map(|&(at_us, latency_us)| {
                    TriangleMarker::new((at_us as f64 / 1e6, clamp(latency_us as f64 / 1000.0)), 4, ORANGE.filled())
                }))?
                .label("acknowledged, then lost")
                .legend(|(x, y)| TriangleMarker::new((x, y), 4, ORANGE.filled()));
        }
    }
    let mut marks: Vec<(f64, RGBColor, &str)> = Vec::new();
    marks.extend(t.trigger.started_at_ms.map(|ms| (ms, BLACK, "trigger")));
    marks.extend(t.trigger.finished_at_ms.map(|ms| (ms, GREY, "trigger done")));
    marks.extend(t.topology.iter().skip(1).map(|c| (c.at_ms, GREEN, "new primary")));
    // AWS's own account, at AWS's timestamps: the steps of its failover / reboot sequence.
    let aws_steps = t.aws.iter().flat_map(|a| &a.events).filter_map(|e| {
        let label = match e.class {
            AwsClass::FailoverStarted => "AWS: failover called",
            AwsClass::FailoverCompleted => "AWS: failover completed",
            AwsClass::NodeRecovered => "AWS: recovery finished",
            AwsClass::NodeShutdown => "AWS: node shutdown",
            AwsClass::NodeRebooted => "AWS: node restarted",
            AwsClass::ExperimentRunning => "AWS: FIS fault running",
            AwsClass::ExperimentEnded => "AWS: FIS experiment ended",
            _ => return None,
        };
        Some((e.at_ms, AWS_COLOR, label))
    });
    let mut seen_labels = Vec::new();
    marks.extend(aws_steps.filter(|(_, _, l)| {
        // The same step logged for the group and for a member cluster: one marker.
        let first = !seen_labels.contains(l);
        seen_labels.push(*l);
        first
    }));
    // Stagger labels in time order, four rows, so neighbouring markers never share a row.
    marks.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (i, (ms, color, label)) in marks.into_iter().enumerate() {
        let x = ms / 1000.0;
        chart.draw_series(LineSeries::new([(x, y_min), (x, y_max)], color.stroke_width(2)))?;
        let y = y_max / 1.6f64.powi(i as i32 % 4 + 1);
        let font = (super::FONT_FAMILY, 12).into_font().color(&color);
        chart.draw_series(std::iter::once(Text::new(format!(" {label}"), (x, y), font)))?;
    }
    if !has_legend {
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font((super::FONT_FAMILY, 11))
        .draw()?;
    Ok(())
}

/// Outage bands of the client profiles after the first, one colour each (none an error class's).
const CLIENT_COLORS: [RGBColor; 4] =
    [RGBColor(0, 150, 150), RGBColor(110, 60, 200), RGBColor(150, 110, 0), RGBColor(60, 140, 60)];

type Failed = Vec<(ErrorClass, Vec<f64>)>;

/// The highest latency of successful probes per bucket, and per error class the buckets with a
/// failed probe (x in seconds on the run clock).
fn points(series: &Series) -> (Vec<(f64, f64)>, Failed) {
    let mut ok = Vec::new();
    let mut failed: std::collections::BTreeMap<ErrorClass, Vec<f64>> = Default::default();
    for (at_us, b) in series.buckets() {
        let x = at_us as f64 / 1e6;
        if b.has_ok() {
            ok.push((x, b.max_ok_us as f64 / 1000.0));
        }
        for class in b.failed_classes() {
            failed.entry(class).or_default().push(x);
        }
    }
    (ok, failed.into_iter().collect())
}
