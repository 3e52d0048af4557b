//! The HdrHistogram percentile curve of probe latency, before / during / after the trigger,
//! merged across trials: x is the percentile on the usual 1/(1-p) log axis.

use super::plot_err;
use crate::analysis::Analysis;
use crate::sample::Stream;
use anyhow::Result;
use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::prelude::*;

pub(crate) const SIZE: (u32, u32) = (1200, 380);

/// (label, colour, histogram) per curve of one stream: by phase when there was a trigger.
pub(crate) fn curves(a: &Analysis, stream: Stream) -> Vec<(&'static str, RGBColor, Histogram<u64>)> {
    let mut all = crate::analysis::histogram::new_histogram();
    let mut phases = [all.clone(), all.clone(), all.clone()];
    let mut any_phase = false;
    for ((_, s), h) in &a.histograms {
        if *s != stream {
            continue;
        }
        let _ = all.add(h.all.unpack());
        if let Some(p) = &h.phases {
            any_phase = true;
            for (acc, h) in phases.iter_mut().zip(p) {
                let _ = acc.add(h.unpack());
            }
        }
    }
    if !any_phase {
        return vec![("all probes", BLUE, all)];
    }
    let [before, during, after] = phases;
    vec![("before trigger", BLUE, before), ("during", RED, during), ("after recovery", super::GREEN, after)]
}

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, a: &Analysis) -> Result<()> {
    let panels = root.split_evenly((1, 2));
    for (area, stream) in panels.iter().zip(Stream::ALL) {
        draw_panel(area, a, stream).map_err(plot_err)?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    a: &Analysis,
    stream: Stream,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let curves = curves(a, stream);
    let points: Vec<Vec<(f64, f64)>> = curves.iter().map(|(_, _, h)| percentile_points(h)).collect();
    let x_max = points.iter().flatten().map(|p| p.0).fold(2.0, f64::max).ceil();
    let y_max = points.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let y_min = points.iter().flatten().map(|p| p.1).fold(f64::MAX, f64::min).clamp(0.001, 1.0) / 1.5;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} latency by percentile", stream.name()), (super::FONT_FAMILY, 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency ms (from due time)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|v| format!("{v}"))
        .draw()?;
    for ((label, color, _), pts) in curves.iter().zip(points) {
        if pts.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((super::FONT_FAMILY, 11))
        .draw()?;
    Ok(())
}

/// (log10(1/(1-p)), ms) along the histogram's percentile iteration.
pub(crate) fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let cap = (h.len() as f64).log10() + 0.3;
    h.iter_quantiles(5)
        .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1000.0))
        .filter(|(q, _)| *q < 1.0)
        .map(|(q, ms)| ((1.0 / (1.0 - q)).log10().min(cap), ms))
        .collect()
}

fn percentile_label(x: f64) -> String {
    match x.round() as i32 {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        n => format!("99.{}%", "9".repeat((n - 2) as usize)),
    }
}
