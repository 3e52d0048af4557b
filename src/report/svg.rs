//! The plots as standalone SVG files: timeline.svg, latency-percentiles.svg, outages.svg.

use super::plot::{self, outages, percentiles, timeline};
use super::{write_one, Exporter, ReportData};
use anyhow::Result;
use std::path::{Path, PathBuf};

pub(crate) struct Svg;

impl Exporter for Svg {
    fn format(&self) -> &'static str {
        "svg"
    }

    fn write(&self, dir: &Path, data: &ReportData) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for (name, svg) in data.plots()? {
            out.extend(write_one(dir, name, svg.as_bytes())?);
        }
        Ok(out)
    }
}

/// (file name, SVG document) of every plot; the HTML report inlines the same documents.
pub(super) fn render_all(data: &ReportData) -> Result<Vec<(&'static str, String)>> {
    let s = data.summary();
    Ok(vec![
        ("timeline.svg", plot::svg(timeline::size(s), |root| timeline::draw(root, s, &data.analysis))?),
        ("latency-percentiles.svg", plot::svg(percentiles::SIZE, |root| percentiles::draw(root, &data.analysis))?),
        ("outages.svg", plot::svg(outages::SIZE, |root| outages::draw(root, s))?),
    ])
}
