//! timeline.svg: latency of every probe over time, failed probes marked, outage windows shaded,
//! trigger and topology changes as vertical markers. One panel per trial and stream.

use super::summary::{Summary, TrialSummary};
use super::Exporter;
use crate::record::{Recorder, Stream};
use anyhow::anyhow;
use plotters::prelude::*;

pub struct Timeline;

const PANEL_HEIGHT: u32 = 260;
const WIDTH: u32 = 1200;
/// Points per panel at most: one per pixel column and outcome keeps large runs readable.
const COLUMNS: usize = 1100;

impl Exporter for Timeline {
    fn file_name(&self) -> &'static str {
        "timeline.svg"
    }

    fn render(&self, s: &Summary, rec: &Recorder) -> anyhow::Result<Vec<u8>> {
        let panels = (s.trials.len() * 2).max(1);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, PANEL_HEIGHT * panels as u32)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
            let areas = root.split_evenly((panels, 1));
            for (i, t) in s.trials.iter().enumerate() {
                for (j, stream) in Stream::ALL.iter().enumerate() {
                    draw_panel(&areas[i * 2 + j], s, t, *stream, rec).map_err(|e| anyhow!("plotting: {e}"))?;
                }
            }
            root.present().map_err(|e| anyhow!("{e}"))?;
        }
        Ok(svg.into_bytes())
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    s: &Summary,
    t: &TrialSummary,
    stream: Stream,
    rec: &Recorder,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let samples = rec.samples(t.index, stream);
    let x0 = t.started_at_ms / 1000.0;
    let x1 = (t.ended_at_ms / 1000.0).max(x0 + 0.001);
    // Log scale: sub-millisecond latency and a 250 ms timeout are both readable.
    let y_max = s.probe.timeout_ms * 1.5;
    let y_min = 0.05;
    let st = if stream == Stream::Write { &t.writes } else { &t.reads };
    let lost = if stream == Stream::Write && t.integrity.checked {
        format!(" · {} acknowledged writes lost", t.integrity.lost_acked_writes)
    } else {
        String::new()
    };
    let caption = format!(
        "trial {} · {} · trigger {} · longest outage {}{lost}",
        t.index,
        stream.name(),
        t.trigger.kind,
        crate::duration::format_ms(st.longest_outage_ms)
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
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
        let color = if o.recovered { RED.mix(0.15) } else { RED.mix(0.3) };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(o.start_ms / 1000.0, y_min), (o.end_ms / 1000.0, y_max)],
            color.filled(),
        )))?;
    }
    let (ok, failed) = downsample(&samples, x0, x1);
    let clamp = |y: f64| y.clamp(y_min, y_max);
    chart.draw_series(ok.into_iter().map(|(x, y)| Circle::new((x, clamp(y)), 1, BLUE.filled())))?;
    chart.draw_series(failed.into_iter().map(|x| Cross::new((x, s.probe.timeout_ms), 3, RED.stroke_width(1))))?;
    if stream == Stream::Write {
        let lost = lost_writes(&samples, rec.events(t.index));
        chart.draw_series(lost.iter().map(|s| {
            TriangleMarker::new((s.scheduled_us as f64 / 1e6, clamp(s.latency_us as f64 / 1000.0)), 4, ORANGE.filled())
        }))?;
    }
    let mut marks: Vec<(f64, RGBColor, &str)> = Vec::new();
    marks.extend(t.trigger.started_at_ms.map(|ms| (ms, BLACK, "trigger")));
    marks.extend(t.trigger.finished_at_ms.map(|ms| (ms, RGBColor(90, 90, 90), "trigger done")));
    marks.extend(t.topology.iter().skip(1).map(|c| (c.at_ms, RGBColor(0, 140, 0), "new primary")));
    for (i, (ms, color, label)) in marks.into_iter().enumerate() {
        let x = ms / 1000.0;
        chart.draw_series(LineSeries::new([(x, y_min), (x, y_max)], color.stroke_width(2)))?;
        // Stagger labels so close markers stay legible.
        let y = y_max / 1.6f64.powi(i as i32 % 3 + 1);
        chart.draw_series(std::iter::once(Text::new(
            format!(" {label}"),
            (x, y),
            ("sans-serif", 12).into_font().color(&color),
        )))?;
    }
    Ok(())
}

const ORANGE: RGBColor = RGBColor(255, 140, 0);

/// Acknowledged writes missing from the write log read back after recovery.
fn lost_writes<'a>(
    samples: &'a [crate::record::Sample],
    events: &[crate::record::Event],
) -> Vec<&'a crate::record::Sample> {
    let Some(present) = events.iter().rev().find_map(|e| match &e.kind {
        crate::record::EventKind::WriteLog { present, .. } => Some(present),
        _ => None,
    }) else {
        return Vec::new();
    };
    samples.iter().filter(|s| s.ok() && !crate::record::sample::ranges_contain(present, s.seq)).collect()
}

/// Highest latency of successful probes per pixel column, and columns with a failed probe.
fn downsample(samples: &[crate::record::Sample], x0: f64, x1: f64) -> (Vec<(f64, f64)>, Vec<f64>) {
    let width = (x1 - x0) / COLUMNS as f64;
    let mut ok: Vec<Option<f64>> = vec![None; COLUMNS + 1];
    let mut failed = vec![false; COLUMNS + 1];
    for s in samples {
        let x = s.scheduled_us as f64 / 1e6;
        let col = (((x - x0) / width).max(0.0) as usize).min(COLUMNS);
        if s.ok() {
            let ms = s.latency_us as f64 / 1000.0;
            ok[col] = Some(ok[col].map_or(ms, |m: f64| m.max(ms)));
        } else {
            failed[col] = true;
        }
    }
    let x_of = |c: usize| x0 + (c as f64 + 0.5) * width;
    let ok_points = ok.iter().enumerate().filter_map(|(c, v)| v.map(|ms| (x_of(c), ms))).collect();
    let failed_points = failed.iter().enumerate().filter(|(_, f)| **f).map(|(c, _)| x_of(c)).collect();
    (ok_points, failed_points)
}
