use super::{summary::Summary, Exporter};
use crate::record::Recorder;

pub struct Json;

impl Exporter for Json {
    fn file_name(&self) -> &'static str {
        "summary.json"
    }

    fn render(&self, summary: &Summary, _: &Recorder) -> anyhow::Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(summary)?;
        v.push(b'\n');
        Ok(v)
    }
}
