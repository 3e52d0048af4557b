//! summary.json: the summary as CI reads it (fields are added, never renamed).

use super::{write_one, Exporter, ReportData};
use std::path::{Path, PathBuf};

pub(crate) struct Json;

impl Exporter for Json {
    fn format(&self) -> &'static str {
        "json"
    }

    fn write(&self, dir: &Path, data: &ReportData) -> anyhow::Result<Vec<PathBuf>> {
        let mut v = serde_json::to_vec_pretty(data.summary())?;
        v.push(b'\n');
        write_one(dir, "summary.json", &v)
    }
}
