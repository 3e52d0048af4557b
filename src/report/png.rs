//! The same plots as PNG (`--png`), drawn with the embedded font: works with no fonts installed.

use super::plot::{self, outages, percentiles, timeline};
use super::{Exporter, ReportData};
use anyhow::Result;
use std::path::{Path, PathBuf};

pub(crate) struct Png;

impl Exporter for Png {
    fn format(&self) -> &'static str {
        "png"
    }

    fn write(&self, dir: &Path, data: &ReportData) -> Result<Vec<PathBuf>> {
        let s = data.summary();
        let paths = [dir.join("timeline.png"), dir.join("latency-percentiles.png"), dir.join("outages.png")];
        plot::png(&paths[0], timeline::size(s), |root| timeline::draw(root, s, &data.analysis))?;
        plot::png(&paths[1], percentiles::SIZE, |root| percentiles::draw(root, &data.analysis))?;
        plot::png(&paths[2], outages::SIZE, |root| outages::draw(root, s))?;
        Ok(paths.to_vec())
    }
}
