//! Reports never talk to servers: they turn the recorder's `Summary` (and, for plots, its
//! samples) into files, one exporter per format behind one trait.

pub mod json;
pub mod markdown;
pub mod summary;
pub mod svg;
pub mod terminal;

use crate::record::store::write_file;
use crate::record::Recorder;
use anyhow::Result;
use std::path::{Path, PathBuf};
use summary::Summary;

pub trait Exporter {
    fn file_name(&self) -> &'static str;
    fn render(&self, summary: &Summary, recorder: &Recorder) -> Result<Vec<u8>>;
}

pub fn exporters() -> Vec<Box<dyn Exporter>> {
    vec![Box::new(json::Json), Box::new(markdown::Markdown), Box::new(svg::Timeline)]
}

/// Writes every report file into `dir`; returns their paths.
pub fn write_reports(dir: &Path, recorder: &Recorder) -> Result<(Summary, Vec<PathBuf>)> {
    let summary = recorder.summary();
    let mut written = Vec::new();
    for e in exporters() {
        let path = dir.join(e.file_name());
        write_file(&path, &e.render(&summary, recorder)?)?;
        written.push(path);
    }
    Ok((summary, written))
}

/// Exit code for CI: 0 within budget, 1 budget exceeded, 2 interrupted (no verdict).
pub fn exit_code(summary: &Summary) -> i32 {
    if summary.interrupted {
        // An interrupted run has no verdict.
        crate::error::EXIT_USAGE
    } else if summary.budget.passed {
        crate::error::EXIT_PASS
    } else {
        crate::error::EXIT_BUDGET
    }
}
