//! One failprobe command at a time per lab directory: `lab up`, `run --lab` and `lab down` hold
//! an exclusive `flock` on `<dir>/.lock` while they use the lab. Two `lab up` at once would
//! otherwise pick ports, start servers and write lab.json over each other, and a `lab down`
//! during a run would stop the servers it measures.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

pub(crate) const LOCK_FILE: &str = ".lock";

/// Held until dropped (the kernel also releases it when the process ends, however it ends).
pub(crate) struct LabLock {
    _file: File,
}

impl LabLock {
    /// Takes the lock without waiting: a second user is told who holds it, not queued behind a
    /// run that may last an hour.
    pub(crate) fn acquire(dir: &Path) -> Result<LabLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock(2) on a file descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                bail!("locking {}: {err}", path.display());
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                h => h.to_string(),
            };
            bail!("lab in {} is in use by {holder}; try again when it has finished", dir.display());
        }
        // Who holds it, for the message above. Written after locking: only the holder writes.
        let _ = file.set_len(0).and_then(|_| file.rewind());
        let _ = writeln!(file, "pid {} ({})", std::process::id(), command_line());
        Ok(LabLock { _file: file })
    }
}

/// `failprobe lab up`, `failprobe run`: the program and its subcommand, enough to recognise it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).take(2).collect();
    let words = match args.first().map(String::as_str) {
        Some("lab") => args.len(),
        Some(a) if !a.starts_with('-') => 1,
        _ => 0,
    };
    let mut line = "failprobe".to_string();
    for a in &args[..words] {
        line.push(' ');
        line.push_str(a);
    }
    line
}
