//! How long outage windows last across trials: a histogram of their durations and the
//! cumulative distribution, with p50, p99 and max marked.

use super::plot_err;
use crate::report::summary::Summary;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub(crate) const SIZE: (u32, u32) = (1200, 360);

pub(crate) fn durations_ms(s: &Summary) -> Vec<f64> {
    let mut d: Vec<f64> =
        s.trials.iter().flat_map(|t| t.writes.outages.iter().chain(&t.reads.outages)).map(|o| o.duration_ms).collect();
    d.sort_by(f64::total_cmp);
    d
}

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, s: &Summary) -> Result<()> {
    let d = durations_ms(s);
    if d.is_empty() {
        root.draw(&Text::new(
            "No outage windows: every probe succeeded.",
            (40, 40),
            (super::FONT_FAMILY, 18).into_font(),
        ))
        .map_err(plot_err)?;
        return Ok(());
    }
    let panels = root.split_evenly((1, 2));
    histogram(&panels[0], &d, s).map_err(plot_err)?;
    cdf(&panels[1], &d, s).map_err(plot_err)?;
    Ok(())
}

fn x_range(d: &[f64]) -> (f64, f64) {
    let max = d.last().copied().unwrap_or(1.0);
    (0.0, (max * 1.1).max(1.0))
}

fn histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &[f64],
    s: &Summary,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (x0, x1) = x_range(d);
    let bins = 30usize;
    let width = (x1 - x0) / bins as f64;
    let mut counts = vec![0u32; bins];
    for v in d {
        counts[((v - x0) / width).floor().clamp(0.0, (bins - 1) as f64) as usize] += 1;
    }
    let y_max = counts.iter().copied().max().unwrap_or(1) + 1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("outage windows, writes and reads ({} across {} trials)", d.len(), s.trials.len()),
            (super::FONT_FAMILY, 16),
        )
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(x0..x1, 0u32..y_max)?;
    chart.configure_mesh().x_desc("duration ms").y_desc("windows").draw()?;
    chart.draw_series(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| {
        let left = x0 + i as f64 * width;
        Rectangle::new([(left, 0), (left + width, *c)], RED.mix(0.6).filled())
    }))?;
    Ok(())
}

fn cdf<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &[f64],
    s: &Summary,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (x0, x1) = x_range(d);
    let mut chart = ChartBuilder::on(area)
        .caption("cumulative distribution", (super::FONT_FAMILY, 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(40)
        .build_cartesian_2d(x0..x1, 0.0..1.05)?;
    chart.configure_mesh().x_desc("duration ms").y_desc("fraction of windows ≤ x").draw()?;
    let n = d.len() as f64;
    let steps: Vec<(f64, f64)> =
        d.iter().enumerate().flat_map(|(i, v)| [(*v, i as f64 / n), (*v, (i + 1) as f64 / n)]).collect();
    chart.draw_series(LineSeries::new(steps, BLUE.stroke_width(2)))?;
    let h = &s.outage_histogram_ms;
    // Labels at different heights: p50, p99 and max often coincide with few trials.
    for (i, (label, v)) in [("p50", h.p50), ("p99", h.p99), ("max", h.max)].into_iter().enumerate() {
        chart.draw_series(LineSeries::new([(v, 0.0), (v, 1.05)], BLACK.mix(0.6).stroke_width(1)))?;
        let text = format!("{label} {} ", crate::duration::format_ms(v));
        let style = TextStyle::from((super::FONT_FAMILY, 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        chart.draw_series(std::iter::once(Text::new(text, (v, 0.15 + 0.12 * i as f64), style)))?;
    }
    Ok(())
}
