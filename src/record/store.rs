//! On-disk form of a run: `run.json` (meta), `samples.csv` (one row per probe) and
//! `events.jsonl`. Writers flush at least once a second so a crash loses at most the last second.

use crate::file::write_file;
use crate::sample::{Event, Record, RunMeta, Sample};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

pub(crate) const META_FILE: &str = "run.json";
pub(crate) const SAMPLES_FILE: &str = "samples.csv";
pub(crate) const EVENTS_FILE: &str = "events.jsonl";

pub struct RunWriter {
    samples: csv::Writer<BufWriter<File>>,
    events: BufWriter<File>,
}

impl RunWriter {
    pub fn create(dir: &Path, meta: &RunMeta) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let meta_json = serde_json::to_vec_pretty(&crate::secret::scrub_meta(meta.clone()))?;
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

/// An output directory claimed for one run. Two runs given the same `--out` must not
/// truncate each other's files: the directory is created new (or must be empty), and a lock
/// file made with create-new semantics decides a race. A run that stops before it recorded
/// anything gives the directory back.
pub struct OutClaim {
    dir: PathBuf,
    created: bool,
    kept: bool,
}

pub(crate) const LOCK_FILE: &str = "failprobe.lock";

/// `<prefix>-<local time>`, with `-2`, `-3`… when a run of the same second already took it: two
/// runs started together get two directories (the claim still decides a true race).
pub fn default_out(prefix: &str) -> PathBuf {
    let base = format!("{prefix}-{}", chrono::Local::now().format("%Y%m%d-%H%M%S"));
    (1..1000)
        .map(|n| if n == 1 { PathBuf::from(&base) } else { PathBuf::from(format!("{base}-{n}")) })
        .find(|p| !p.exists())
        .unwrap_or_else(|| PathBuf::from(base))
}

impl OutClaim {
    pub fn claim(dir: &Path) -> Result<Self, String> {
        let taken =
            |why: &str| format!("{} {why}; choose another --out (measurements are never overwritten)", dir.display());
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let created = match std::fs::create_dir(dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut entries =
                    std::fs::read_dir(dir).map_err(|e| taken(&format!("exists and cannot be read ({e})")))?;
                if entries.next().is_some() {
                    return Err(taken(if dir.join(META_FILE).exists() {
                        "already holds a run"
                    } else {
                        "is not empty"
                    }));
                }
                false
            }
            Err(e) => return Err(format!("creating {}: {e}", dir.display())),
        };
        let lock = std::fs::OpenOptions::new().write(true).create_new(true).open(dir.join(LOCK_FILE));
        match lock {
            Ok(mut f) => {
                let _ = writeln!(f, "pid {}", std::process::id());
                Ok(Self { dir: dir.to_path_buf(), created, kept: false })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(taken("is being used by another run")),
            Err(e) => Err(format!("claiming {}: {e}", dir.display())),
        }
    }

    /// The run recorded something: the directory is its, whatever happens next.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for OutClaim {
    fn drop(&mut self) {
        if self.kept || self.dir.join(META_FILE).exists() {
            return;
        }
        let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
        if self.created {
            // Only what this run put there (an owned lab's files); never a directory we found.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A stored run: its meta in memory; its events and samples read on demand, one at a time, so
/// a run of any length (a week of probes, a topology check every second) can be reported.
pub struct StoredRun {
    pub dir: PathBuf,
    pub meta: RunMeta,
}

/// Reads a run back. A last line cut short by a crash is skipped, not fatal.
pub fn read_run(dir: &Path) -> Result<StoredRun> {
    let meta_path = dir.join(META_FILE);
    let meta: RunMeta = serde_json::from_slice(
        &std::fs::read(&meta_path).with_context(|| format!("{} is not a failprobe output directory", dir.display()))?,
    )
    .with_context(|| format!("reading {}", meta_path.display()))?;
    let events = dir.join(EVENTS_FILE);
    File::open(&events).with_context(|| format!("opening {}", events.display()))?;
    Ok(StoredRun { dir: dir.to_path_buf(), meta })
}

impl StoredRun {
    /// The events in the order they were recorded.
    pub fn events(&self) -> Result<EventReader> {
        let path = self.dir.join(EVENTS_FILE);
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(EventReader { lines: BufReader::new(file).lines(), path, line: 0, pending_error: None })
    }

    /// The samples in the order they were recorded.
    pub fn samples(&self) -> Result<SampleReader> {
        let path = self.dir.join(SAMPLES_FILE);
        let reader = csv::Reader::from_path(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(SampleReader { rows: reader.into_deserialize(), path, row: 1, pending_error: None })
    }
}

pub struct SampleReader {
    rows: csv::DeserializeRecordsIntoIter<File, Sample>,
    path: PathBuf,
    row: usize,
    pending_error: Option<anyhow::Error>,
}

impl Iterator for SampleReader {
    type Item = Result<Sample>;

    fn next(&mut self) -> Option<Result<Sample>> {
        loop {
            self.row += 1;
            match self.rows.next() {
                // Only the very last row may be damaged (cut by a crash mid-write).
                None => return None,
                Some(Ok(s)) => return Some(self.pending_error.take().map_or(Ok(s), Err)),
                Some(Err(e)) => {
                    if let Some(earlier) = self.pending_error.take() {
                        return Some(Err(earlier));
                    }
                    self.pending_error = Some(anyhow::anyhow!("{}: row {}: {e}", self.path.display(), self.row));
                }
            }
        }
    }
}

pub struct EventReader {
    lines: std::io::Lines<BufReader<File>>,
    path: PathBuf,
    line: usize,
    pending_error: Option<anyhow::Error>,
}

impl Iterator for EventReader {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        loop {
            self.line += 1;
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => return Some(Err(anyhow::anyhow!("{}: line {}: {e}", self.path.display(), self.line))),
            };
            if line.trim().is_empty() {
                continue;
            }
            // Only the very last line may be damaged (cut by a crash mid-write).
            if let Some(earlier) = self.pending_error.take() {
                return Some(Err(earlier));
            }
            match serde_json::from_str(&line) {
                Ok(e) => return Some(Ok(e)),
                Err(e) => {
                    self.pending_error = Some(anyhow::anyhow!("{}: line {}: {e}", self.path.display(), self.line))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stream_and_only_a_cut_last_line_is_forgiven() {
        let dir = tempfile::tempdir().unwrap();
        let meta = r#"{"version":"t","scenario":"t","run_id":"r","target":"t","started_at":"x","interval_us":1,"timeout_us":1,"triggers":[],"budget":{"max_outage_ms":null,"max_lost_writes":null},"lab":null}"#;
        std::fs::write(dir.path().join(META_FILE), meta).unwrap();
        let good = r#"{"at_us":1,"trial":0,"type":"trial_start"}"#;
        let read = |text: &str| {
            std::fs::write(dir.path().join(EVENTS_FILE), text).unwrap();
            read_run(dir.path()).unwrap().events().unwrap().collect::<Result<Vec<_>>>()
        };
        assert_eq!(read(&format!("{good}\n\n{good}\n{{\"at_us\":")).unwrap().len(), 2, "a cut last line");
        let err = read(&format!("{good}\n{{broken\n{good}\n")).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn default_names_of_the_same_second_differ_and_a_claim_is_exclusive() {
        let parent = tempfile::tempdir().unwrap();
        let prefix = parent.path().join("failprobe").display().to_string();
        let first = default_out(&prefix);
        let claim = OutClaim::claim(&first).unwrap();
        let second = default_out(&prefix);
        // Unless the clock's second turned in between, the name gets a suffix.
        assert_ne!(first, second);
        assert!(OutClaim::claim(&first).is_err(), "a claimed directory is claimed once");
        drop(claim);
        assert!(!first.exists(), "a claim that recorded nothing gives its directory back");
    }
}
