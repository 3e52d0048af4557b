//! Signals only to processes failprobe has verified: a pid is a server of the kind failprobe
//! measures (redis-server, valkey-server, a sentinel, memcached) that listens on the port we
//! act on. `kill(2)` with pid 0 or -1 signals whole process groups or every process, and a pid
//! read from a file or typed by hand may have been reused by anything: both are refused here.

use anyhow::{anyhow, Result};
use std::collections::HashSet;

/// Process names (`/proc/PID/comm`) of the servers failprobe may signal.
const SERVER_NAMES: [&str; 5] = ["redis-server", "redis-sentinel", "valkey-server", "valkey-sentinel", "memcached"];

/// A pid as typed or read from a file, before anything is known about it.
pub(crate) fn checked_pid(raw: u64) -> Result<libc::pid_t, String> {
    match libc::pid_t::try_from(raw) {
        Ok(pid) if pid >= 1 => Ok(pid),
        // 0 is our own process group, -1 (what 4294967295 becomes) every process we may signal.
        _ => Err(format!("pid {raw} is not a process id (1 to {})", libc::pid_t::MAX)),
    }
}

/// What the process is, when it is a server listening on `port`; otherwise why it is not.
pub(crate) fn identify(raw_pid: u64, port: u16) -> Result<String, String> {
    identify_as(raw_pid, port, &SERVER_NAMES)
}

/// `identify` for a process named one of `names` (the lab's own endpoint is a failprobe process).
pub(crate) fn identify_as(raw_pid: u64, port: u16, names: &[&str]) -> Result<String, String> {
    let pid = checked_pid(raw_pid)?;
    if pid as u32 == std::process::id() {
        return Err(format!("pid {pid} is failprobe itself"));
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .map_err(|_| format!("pid {pid}: no such process"))?;
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string)));
    if state.as_deref() == Some("Z") {
        return Err(format!("pid {pid} ({comm}) has exited"));
    }
    if !names.contains(&comm.as_str()) {
        return Err(format!(
            "pid {pid} is `{comm}`, not a {} process: failprobe signals only the server it measures",
            names.join(", ")
        ));
    }
    let listening = listening_ports(pid).map_err(|e| format!("pid {pid} ({comm}): cannot read its sockets: {e}"))?;
    if !listening.contains(&port) {
        let mut ports: Vec<u16> = listening.into_iter().collect();
        ports.sort_unstable();
        return Err(format!("pid {pid} ({comm}) listens on {ports:?}, not on the target's port {port}"));
    }
    Ok(format!("{comm} pid {pid} listening on port {port}"))
}

/// Sends `signal` to `pid` after `identify` confirmed it is the server on `port`.
pub fn signal_verified(raw_pid: u64, port: u16, signal: libc::c_int) -> Result<String> {
    signal_verified_as(raw_pid, port, signal, &SERVER_NAMES)
}

/// `signal_verified` for a process named one of `names`.
pub(crate) fn signal_verified_as(raw_pid: u64, port: u16, signal: libc::c_int, names: &[&str]) -> Result<String> {
    let who = identify_as(raw_pid, port, names).map_err(|e| anyhow!("not signalled: {e}"))?;
    let pid = checked_pid(raw_pid).map_err(|e| anyhow!(e))?;
    // SAFETY: kill(2) has no memory-safety preconditions; pid is a verified single process.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(anyhow!("signal {signal} to {who}: {}", std::io::Error::last_os_error()));
    }
    Ok(who)
}

/// The process's start time (clock ticks after boot, /proc/PID/stat field 22): with the pid, it
/// names one process for good, so a pid verified once can be recognised cheaply later.
pub(crate) fn start_time(raw_pid: u64) -> Option<u64> {
    let pid = checked_pid(raw_pid).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Signals a process verified earlier (`signal_verified`) when it is still that process (same
/// start time): the SIGCONT after a pause must not wait on a full check, nor hit a new process.
pub(crate) fn signal_same_process(raw_pid: u64, started: u64, signal: libc::c_int) -> Result<()> {
    if start_time(raw_pid) != Some(started) {
        return Err(anyhow!("pid {raw_pid} is no longer the process failprobe verified"));
    }
    let pid = checked_pid(raw_pid).map_err(|e| anyhow!(e))?;
    // SAFETY: kill(2) has no memory-safety preconditions; pid is the verified single process.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(anyhow!("signal {signal} to pid {pid}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The TCP ports `pid` listens on: its socket inodes (/proc/PID/fd) matched against the
/// listening sockets of /proc/net/tcp and tcp6.
fn listening_ports(pid: libc::pid_t) -> std::io::Result<HashSet<u16>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else { continue };
        let link = link.to_string_lossy();
        if let Some(inode) = link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
            inodes.insert(inode.to_string());
        }
    }
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is fields[1] (ADDR:PORT in hex), st is fields[3] (0A = LISTEN),
            // inode is fields[9].
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
                continue;
            };
            if *state != "0A" || !inodes.contains(*inode) {
                continue;
            }
            if let Some(port) = local.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok()) {
                ports.insert(port);
            }
        }
    }
    Ok(ports)
}

/// SIGINT, SIGTERM and SIGHUP: `timeout`, a CI cancel and a dropped ssh session mean the same
/// as Ctrl-C, and get the same clean-up (resume, restore, lab stop, partial report).
pub(crate) struct StopSignals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Must be called inside the tokio runtime. A signal whose handler cannot be installed keeps
    /// its default action (and a warning says so).
    pub(crate) fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let one = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot handle {name}: {e}");
                None
            }
        };
        Self {
            int: one(SignalKind::interrupt(), "SIGINT"),
            term: one(SignalKind::terminate(), "SIGTERM"),
            hup: one(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// The next stop signal's name.
    pub async fn next(&mut self) -> &'static str {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.int) => "SIGINT",
            _ = recv(&mut self.term) => "SIGTERM",
            _ = recv(&mut self.hup) => "SIGHUP",
        }
    }
}

/// Process-wide signal dispositions, set once at start: SIGPIPE ignored (a write to a reset TLS
/// socket or a closed pipe is an error to handle, not a reason to die mid-failover), and
/// SIGXFSZ ignored (a file size limit makes the write fail with EFBIG, which the recorder
/// reports, instead of killing the run with a paused primary).
pub fn set_signal_dispositions() {
    // SAFETY: setting SIG_IGN before any thread starts has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Ends a process group failprobe created (`process_group(0)`: its id is the leader's pid) when
/// dropped, unless disarmed: a command's or an adapter's children must not outlive it.
pub(crate) struct GroupGuard {
    pgid: Option<u32>,
    armed: bool,
}

impl GroupGuard {
    pub(crate) fn new(pgid: Option<u32>) -> Self {
        Self { pgid, armed: true }
    }

    /// The group ended on its own: nothing to do.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// SIGKILL to the whole group now.
    pub(crate) fn kill(&mut self) {
        let Some(pgid) = self.pgid.filter(|_| self.armed) else { return };
        // The group's id is its leader's pid, which cannot be handed to another process while
        // the group still has members.
        if let Ok(pgid) = checked_pid(pgid as u64) {
            // SAFETY: killpg(2) has no memory-safety preconditions; pgid >= 1.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_that_mean_groups_or_everyone_are_refused() {
        assert!(checked_pid(0).is_err());
        assert!(checked_pid(4_294_967_295).is_err());
        assert!(checked_pid(i32::MAX as u64 + 1).is_err());
        assert_eq!(checked_pid(1), Ok(1));
    }

    #[test]
    fn a_process_that_is_not_a_server_is_named_and_refused() {
        let me = std::process::id() as u64;
        assert!(identify(me, 1).unwrap_err().contains("failprobe itself"));
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        // Right after fork the child may still carry our name; either way it is refused by name.
        let err = identify(child.id() as u64, 6379).unwrap_err();
        assert!(err.contains("not a redis-server"), "{err}");
        let _ = child.kill();
        let _ = child.wait();
    }
}
