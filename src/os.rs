//! Signals only to processes failprobe has verified: a pid is a server of the kind failprobe
//! measures (redis-server, valkey-server, a sentinel, memcached) that listens on the exact
//! address and port we act on (two servers may share a port on different addresses). `kill(2)` with pid 0 or -1 signals whole process groups or every process, and a pid
//! read from a file or typed by hand may have been reused by anything: both are refused here.

use anyhow::{anyhow, Result};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

/// Process names (`/proc/PID/comm`) of the servers failprobe may signal.
pub(crate) const SERVER_NAMES: [&str; 5] =
    ["redis-server", "redis-sentinel", "valkey-server", "valkey-sentinel", "memcached"];

/// A pid as typed or read from a file, before anything is known about it.
pub(crate) fn checked_pid(raw: u64) -> Result<libc::pid_t, String> {
    match libc::pid_t::try_from(raw) {
        Ok(pid) if pid >= 1 => Ok(pid),
        // 0 is our own process group, -1 (what 4294967295 becomes) every process we may signal.
        _ => Err(format!("pid {raw} is not a process id (1 to {})", libc::pid_t::MAX)),
    }
}

/// What the process is, when it is a server listening on one of `addrs` (what the target's
/// host resolves to, with its port); otherwise why it is not.
pub(crate) fn identify(raw_pid: u64, addrs: &[SocketAddr]) -> Result<String, String> {
    identify_as(raw_pid, addrs, &SERVER_NAMES)
}

/// `identify` for a process named one of `names` (the lab's own endpoint is a failprobe process).
pub(crate) fn identify_as(raw_pid: u64, addrs: &[SocketAddr], names: &[&str]) -> Result<String, String> {
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
    // Its sockets are read in its own namespace, the target's address is reached in ours: the
    // same only when it is one namespace (a container's 127.0.0.1 is not this machine's).
    let netns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    if netns(&pid.to_string()) != netns("self") {
        return Err(format!("pid {pid} ({comm}) is in another network namespace than failprobe"));
    }
    let listening = listeners(pid).map_err(|e| format!("pid {pid} ({comm}): cannot read its sockets: {e}"))?;
    for at in addrs {
        if let Some(socket) = listening.iter().find(|l| serves(**l, *at)) {
            let how = match socket.ip().is_unspecified() {
                true => format!(" (its wildcard listener {socket})"),
                false => String::new(),
            };
            return Ok(format!("{comm} pid {pid} listening on {at}{how}"));
        }
    }
    let mut sockets: Vec<String> = listening.iter().map(SocketAddr::to_string).collect();
    sockets.sort_unstable();
    let wanted: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    Err(format!(
        "pid {pid} ({comm}) listens on [{}], not on the target's {}",
        sockets.join(", "),
        match wanted.as_slice() {
            [] => "address (it resolved to none)".to_string(),
            [one] => one.clone(),
            many => format!("addresses {}", many.join(", ")),
        }
    ))
}

/// Whether a socket listening on `listener` accepts connections to `target`: the same address
/// and port, or a wildcard of the same family on this port when `target` is this machine's.
/// A dual-stack `[::]` listener counts only for IPv6: whether it takes IPv4 depends on a
/// socket option /proc does not show.
fn serves(listener: SocketAddr, target: SocketAddr) -> bool {
    if listener.port() != target.port() {
        return false;
    }
    let (l, t) = (listener.ip().to_canonical(), target.ip().to_canonical());
    l == t || (l.is_unspecified() && l.is_ipv4() == t.is_ipv4() && is_local(t))
}

/// An address of this machine (in failprobe's network namespace): binding to it succeeds.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Sends `signal` to `pid` after `identify` confirmed it is the server at one of `addrs`.
pub fn signal_verified(raw_pid: u64, addrs: &[SocketAddr], signal: libc::c_int) -> Result<String> {
    signal_verified_as(raw_pid, addrs, signal, &SERVER_NAMES)
}

/// `signal_verified` for a process named one of `names`.
pub(crate) fn signal_verified_as(
    raw_pid: u64,
    addrs: &[SocketAddr],
    signal: libc::c_int,
    names: &[&str],
) -> Result<String> {
    let who = identify_as(raw_pid, addrs, names).map_err(|e| anyhow!("not signalled: {e}"))?;
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

/// The TCP addresses `pid` listens on: its socket inodes (/proc/PID/fd) matched against the
/// listening sockets of its own network namespace (/proc/PID/net/tcp and tcp6).
fn listeners(pid: libc::pid_t) -> std::io::Result<Vec<SocketAddr>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else { continue };
        let link = link.to_string_lossy();
        if let Some(inode) = link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
            inodes.insert(inode.to_string());
        }
    }
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is fields[1] (ADDR:PORT in hex), st is fields[3] (0A = LISTEN),
            // inode is fields[9].
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
                continue;
            };
            if *state == "0A" && inodes.contains(*inode) {
                found.extend(parse_proc_addr(local));
            }
        }
    }
    Ok(found)
}

/// `0100007F:18EB` (tcp) or 32 hex digits and a port (tcp6): the address is printed as 32-bit
/// words in the kernel's byte order, so each word's native bytes are the address's bytes.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in addr.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
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

/// From now on, files and directories this process creates are its owner's only (umask 077).
pub(crate) fn private_files() {
    // SAFETY: umask(2) cannot fail and has no memory-safety preconditions.
    unsafe { libc::umask(0o077) };
}

/// `dir` (which may have existed, empty, before the run) readable by its owner only.
pub(crate) fn make_private(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| anyhow!("making {} private: {e}", dir.display()))
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
        let at = [SocketAddr::from(([127, 0, 0, 1], 6379))];
        assert!(identify(me, &at).unwrap_err().contains("failprobe itself"));
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        // Right after fork the child may still carry our name; either way it is refused by name.
        let err = identify(child.id() as u64, &at).unwrap_err();
        assert!(err.contains("not a redis-server"), "{err}");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn listeners_match_their_own_address_and_wildcards_their_own_family() {
        assert_eq!(parse_proc_addr("0100007F:18F6"), Some(SocketAddr::from(([127, 0, 0, 1], 6390))));
        let v6_loopback = "00000000000000000000000001000000:18EB";
        assert_eq!(parse_proc_addr(v6_loopback), Some("[::1]:6379".parse().unwrap()));
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(serves(at("127.0.0.1:6390"), at("127.0.0.1:6390")));
        assert!(!serves(at("127.0.0.1:6390"), at("127.0.0.2:6390")), "another loopback address");
        assert!(!serves(at("127.0.0.1:6390"), at("127.0.0.1:6391")));
        assert!(serves(at("0.0.0.0:6390"), at("127.0.0.2:6390")), "a wildcard serves local addresses");
        assert!(!serves(at("0.0.0.0:6379"), at("192.0.2.10:6379")), "not a remote one (TEST-NET-1)");
        assert!(!serves(at("[::]:6379"), at("127.0.0.1:6379")), "a v6 wildcard counts for v6 only");
        assert!(serves(at("[::]:6379"), at("[::1]:6379")));
        assert!(serves(at("[::ffff:127.0.0.1]:6379"), at("127.0.0.1:6379")), "a v4-mapped listener");
    }

    #[test]
    fn the_listener_found_is_the_one_on_the_exact_address() {
        let a = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
        let port = a.local_addr().unwrap().port();
        let me = checked_pid(std::process::id() as u64).unwrap();
        let found = listeners(me).unwrap();
        assert!(found.contains(&SocketAddr::from(([127, 0, 0, 3], port))), "{found:?}");
        assert!(!found.iter().any(|l| serves(*l, SocketAddr::from(([127, 0, 0, 4], port)))));
    }
}
