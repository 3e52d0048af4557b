//! On-disk form of a run: `run.json` (meta), `samples.csv` (one row per probe) and
//! `events.jsonl`. Writers flush at least once a second so a crash loses at most the last second.

use super::{Event, Record, RunMeta, Sample};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub const META_FILE: &str = "run.json";
pub const SAMPLES_FILE: &str = "samples.csv";
pub const EVENTS_FILE: &str = "events.jsonl";

pub struct RunWriter {
    samples: csv::Writer<BufWriter<File>>,
    events: BufWriter<File>,
}

impl RunWriter {
    pub fn create(dir: &Path, meta: &RunMeta) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let meta_json = serde_json::to_vec_pretty(meta)?;
        write_file(&dir.join(META_FILE), &meta_json)?;
        let samples = create(&dir.join(SAMPLES_FILE))?;
        let events = create(&dir.join(EVENTS_FILE))?;
        Ok(Self { samples: csv::Writer::from_writer(samples), events })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        match record {
            Record::Sample(s) => self.samples.serialize(s).context("writing samples.csv"),
            Record::Event(e) => {
                serde_json::to_writer(&mut self.events, e)?;
                self.events.write_all(b"\n").context("writing events.jsonl")
            }
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        self.samples.flush().context("flushing samples.csv")?;
        self.events.flush().context("flushing events.jsonl")
    }
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 16, f))
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    // Write beside, then rename: a crash never leaves a half-written report behind.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub struct StoredRun {
    pub dir: PathBuf,
    pub meta: RunMeta,
    pub samples: Vec<Sample>,
    pub events: Vec<Event>,
}

/// Reads a run back. A last line cut short by a crash is skipped, not fatal.
pub fn read_run(dir: &Path) -> Result<StoredRun> {
    let meta_path = dir.join(META_FILE);
    let meta: RunMeta = serde_json::from_slice(
        &std::fs::read(&meta_path).with_context(|| format!("{} is not a failprobe output directory", dir.display()))?,
    )
    .with_context(|| format!("reading {}", meta_path.display()))?;
    let samples = read_samples(&dir.join(SAMPLES_FILE))?;
    let events = read_events(&dir.join(EVENTS_FILE))?;
    Ok(StoredRun { dir: dir.to_path_buf(), meta, samples, events })
}

fn read_samples(path: &Path) -> Result<Vec<Sample>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    let mut pending_error = None;
    for (i, row) in reader.deserialize::<Sample>().enumerate() {
        match row {
            Ok(s) => {
                if let Some(e) = pending_error.take() {
                    return Err(e);
                }
                out.push(s)
            }
            // Only the very last row may be damaged (cut by a crash mid-write).
            Err(e) => pending_error = Some(anyhow::anyhow!("{}: row {}: {e}", path.display(), i + 2)),
        }
    }
    Ok(out)
}

fn read_events(path: &Path) -> Result<Vec<Event>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let lines: Vec<String> = BufReader::new(file).lines().collect::<Result<_, _>>()?;
    let last = lines.len().saturating_sub(1);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(e) => out.push(e),
            Err(_) if i == last => {}
            Err(e) => anyhow::bail!("{}: line {}: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}
