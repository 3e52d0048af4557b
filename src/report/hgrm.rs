//! Histograms that travel: each histogram as an HdrHistogram percentile distribution (`.hgrm`,
//! the text the standard HdrHistogram plotter reads, values in milliseconds) and all of them in
//! one HdrHistogram V2 interval log (`histograms.hlog`, compressed, tagged) for merging.

use super::{Exporter, ReportData};
use crate::analysis::histogram::Packed;
use crate::file::write_file;
use anyhow::{anyhow, Context, Result};
use base64::Engine;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) struct Hgrm;

pub const DIR: &str = "histograms";
pub(crate) const LOG_FILE: &str = "histograms.hlog";
const PHASES: [&str; 3] = ["before", "during", "after"];

impl Exporter for Hgrm {
    fn format(&self) -> &'static str {
        "hgrm"
    }

    fn write(&self, dir: &Path, data: &ReportData) -> Result<Vec<PathBuf>> {
        let out_dir = dir.join(DIR);
        std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        let named = named_histograms(data);
        let mut written = Vec::new();
        for (name, h) in &named {
            let path = out_dir.join(format!("{name}.hgrm"));
            write_file(&path, percentile_distribution(&h.unpack(), 1000.0).as_bytes())?;
            written.push(path);
        }
        let log = out_dir.join(LOG_FILE);
        write_file(&log, &interval_log(&named, data.summary())?)?;
        written.push(log);
        Ok(written)
    }
}

/// `trial0-writes`, `trial0-writes-during`, ..., `outages`: every histogram of the run, in µs.
/// Packed: each is unpacked only while it is written.
pub(crate) fn named_histograms(data: &ReportData) -> Vec<(String, Packed)> {
    let mut out = Vec::new();
    for ((trial, stream), h) in &data.analysis.histograms {
        let base = format!("trial{trial}-{}", stream.name());
        out.push((base.clone(), h.all.clone()));
        if let Some(phases) = &h.phases {
            for (phase, h) in PHASES.iter().zip(phases) {
                out.push((format!("{base}-{phase}"), h.clone()));
            }
        }
    }
    out.push(("outages".to_string(), Packed::pack(&data.analysis.outages)));
    out
}

/// The classic `outputPercentileDistribution` text (5 ticks per half distance). `scale` divides
/// recorded values (µs) into the unit shown (1000 → ms).
pub(crate) fn percentile_distribution(h: &Histogram<u64>, scale: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let _ = writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / scale, h.stdev() / scale);
    let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / scale, h.len());
    // HdrHistogram's sub-bucket count: the power of two that holds 2 × 10^sigfig values.
    let sub_buckets = (2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil().exp2() as u64;
    let _ = writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), sub_buckets);
    out
}

fn interval_log(named: &[(String, Packed)], summary: &crate::analysis::summary::Summary) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let start = chrono::DateTime::parse_from_rfc3339(&summary.started_at)
            .map(std::time::SystemTime::from)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut builder = IntervalLogWriterBuilder::new();
        builder.add_comment(&format!("failprobe {} run {}: values in microseconds", summary.version, summary.run_id));
        builder.with_start_time(start).with_base_time(start);
        let mut log = builder.begin_log_with(&mut bytes, &mut serializer).map_err(|e| anyhow!("hlog: {e}"))?;
        for (name, h) in named {
            log.write_histogram(&h.unpack(), Duration::ZERO, Duration::ZERO, Tag::new(name))
                .map_err(|e| anyhow!("hlog {name}: {e:?}"))?;
        }
    }
    Ok(bytes)
}

/// Reads a V2 interval log back: (tag, histogram) per entry.
pub fn read_log(bytes: &[u8]) -> Result<Vec<(String, Histogram<u64>)>> {
    let mut out = Vec::new();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let LogEntry::Interval(ilh) = entry.map_err(|e| anyhow!("hlog: {e:?}"))? else { continue };
        let raw = base64::engine::general_purpose::STANDARD.decode(ilh.encoded_histogram())?;
        let h: Histogram<u64> = de.deserialize(&mut raw.as_slice()).map_err(|e| anyhow!("hlog: {e:?}"))?;
        out.push((ilh.tag().map(|t| t.as_str().to_string()).unwrap_or_default(), h));
    }
    Ok(out)
}
