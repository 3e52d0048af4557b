//! The local event history: every event failprobe has fetched, kept past AWS's 14 days.
//!
//! A JSON-lines file, one event per line, deduplicated by (date, source, message). Chosen over
//! SQLite because it needs no C library, `grep`/`jq` read it, and appending is all it ever does.
//! Writers take an exclusive `flock` on `<file>.lock` and re-read the file under it, so concurrent
//! runs never write an event twice; each batch is one `write` followed by `fsync`, and a line cut
//! short by a crash is skipped on reading (its event is fetched and appended again next time).

use super::events::AwsEvent;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `$FAILPROBE_HISTORY`, else `$XDG_STATE_HOME/failprobe/elasticache-events.jsonl`, else under
/// `~/.local/state`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("FAILPROBE_HISTORY") {
        return PathBuf::from(p);
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("failprobe").join("elasticache-events.jsonl")
}

pub struct Merged {
    /// Everything in the history after the merge, oldest first.
    pub events: Vec<AwsEvent>,
    pub added: usize,
    /// Lines that could not be read (a write cut short); they are left in place.
    pub damaged_lines: usize,
}

/// Adds the events the history does not have yet and returns the whole history.
pub fn merge(path: &Path, fetched: &[AwsEvent]) -> Result<Merged> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _lock = lock(path)?;
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    // A write cut inside a multi-byte character damages that line only, not the file.
    let text = String::from_utf8_lossy(&bytes);
    let (known, damaged_lines) = parse(&text);
    let new: Vec<&AwsEvent> =
        fetched.iter().filter(|e| !known.contains(*e)).collect::<BTreeSet<_>>().into_iter().collect();
    if !new.is_empty() {
        let mut batch = String::new();
        if !text.is_empty() && !text.ends_with('\n') {
            batch.push('\n'); // finish a line a crash cut short, so ours start on their own
        }
        for e in &new {
            batch.push_str(&serde_json::to_string(e)?);
            batch.push('\n');
        }
        file.seek(SeekFrom::End(0))?;
        file.write_all(batch.as_bytes()).with_context(|| format!("appending to {}", path.display()))?;
        file.sync_all()?;
    }
    let added = new.len();
    let mut events: Vec<AwsEvent> = known.into_iter().chain(new.into_iter().cloned()).collect();
    events.sort();
    Ok(Merged { events, added, damaged_lines })
}

/// Reads the history without changing it.
pub fn load(path: &Path) -> Result<Vec<AwsEvent>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes)).0.into_iter().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn parse(text: &str) -> (BTreeSet<AwsEvent>, usize) {
    let mut known = BTreeSet::new();
    let mut damaged = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<AwsEvent>(line) {
            Ok(e) => {
                known.insert(e);
            }
            Err(_) => damaged += 1,
        }
    }
    (known, damaged)
}

/// Held until dropped (closing the file releases the lock).
fn lock(path: &Path) -> Result<File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
        .with_context(|| format!("opening {}", Path::new(&name).display()))?;
    // Other writers hold it for a read and one append; one that hangs must not hang us.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a descriptor we own, without blocking.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::WouldBlock {
            return Err(err).context("locking the event history");
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{} is held by another process for more than {LOCK_WAIT:?} (another `failprobe events` still running?)",
                Path::new(&name).display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn event(n: i64) -> AwsEvent {
        AwsEvent {
            date: Utc.timestamp_opt(1_800_000_000 + n, 0).unwrap(),
            source_type: "cache-cluster".into(),
            source_id: "c-001".into(),
            message: format!("Cache node 000{n} restarted"),
        }
    }

    #[test]
    fn merging_twice_adds_nothing_and_a_cut_line_is_survived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h/events.jsonl");
        assert_eq!(merge(&path, &[event(1), event(2)]).unwrap().added, 2);
        assert_eq!(merge(&path, &[event(2), event(1)]).unwrap().added, 0);
        // A crash in the middle of a write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"date\":\"2027-01-15T08:00:00Z\",\"message\":\"\xc3").unwrap(); // cut inside a character
        let m = merge(&path, &[event(3), event(1)]).unwrap();
        assert_eq!((m.added, m.damaged_lines, m.events.len()), (1, 1, 3));
        assert_eq!(load(&path).unwrap(), vec![event(1), event(2), event(3)]);
    }

    #[test]
    fn concurrent_writers_never_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let batch: Vec<AwsEvent> = (0..50).map(event).collect();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (path, batch) = (path.clone(), batch.clone());
                std::thread::spawn(move || merge(&path, &batch).unwrap().added)
            })
            .collect();
        let added: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(added, 50);
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 50);
    }
}
