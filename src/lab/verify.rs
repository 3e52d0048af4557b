//! lab.json is a file anyone who can write the lab directory can edit: nothing in it is acted on
//! before it is checked against what runs. A process is this lab's when it is a server (or the
//! lab's endpoint) listening on the node's own address and port *and* running in the lab directory
//! (every node is started there, and redis and sentinels chdir to their `dir`, which is it). A
//! program is started only when it is the server binary `lab up` would have found.

use super::node::{Node, NodeKind};
use crate::os::SERVER_NAMES;
use anyhow::{bail, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The process names a node of `kind` may run as.
fn names(kind: NodeKind) -> &'static [&'static str] {
    match kind {
        NodeKind::Endpoint => &["failprobe"],
        _ => &SERVER_NAMES,
    }
}

/// The process's working directory, when we may read it.
fn cwd(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// What `pid` is when it is `node`'s process in the lab in `dir` (canonical); else why not.
pub(crate) fn node_process(node: &Node, dir: &Path) -> Result<String, String> {
    let who = crate::os::identify_as(node.pid as u64, &[node.addr()], names(node.kind))?;
    match cwd(node.pid) {
        Some(d) if d == dir => Ok(who),
        Some(d) => Err(format!("{who}, but it runs in {}, not in the lab's directory", d.display())),
        None => Err(format!("{who}, but its directory cannot be read")),
    }
}

/// Whether `pid` is a live server (of any lab, or none): lab.json naming one that is not this
/// lab's is a record pointing at someone else's server, not merely a stale pid.
pub(crate) fn is_a_server(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    SERVER_NAMES.contains(&comm.trim()) && crate::os::start_time(pid as u64).is_some()
}

/// The process exists and has not exited (a zombie has).
pub(crate) fn is_running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z")
}

/// Sends `signal` to `pid` once it is verified to be a process of the lab in `dir` listening on
/// `addr` (checked again right before: a pid found a moment ago may have exited since).
pub(crate) fn signal_lab_process(
    pid: u32,
    addr: SocketAddr,
    kind: NodeKind,
    dir: &Path,
    signal: i32,
) -> Result<String> {
    if cwd(pid).as_deref() != Some(dir) {
        bail!("pid {pid} does not run in the lab's directory: not signalled");
    }
    crate::os::signal_verified_as(pid as u64, &[addr], signal, names(kind))
}

/// A process running in the lab directory, found whatever lab.json says.
pub(crate) struct Found {
    pub pid: u32,
    pub addr: SocketAddr,
    pub kind: NodeKind,
    pub who: String,
}

/// Every server (and endpoint) that runs in `dir` and listens on a loopback address and port
/// its command line names: the lab's own processes, even those lab.json lost or misnames.
pub(crate) fn lab_processes(dir: &Path) -> Vec<Found> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || cwd(pid).as_deref() != Some(dir) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let kind = match comm.trim() {
            "failprobe" => NodeKind::Endpoint,
            "memcached" => NodeKind::Memcached,
            c if SERVER_NAMES.contains(&c) => NodeKind::Redis,
            _ => continue,
        };
        // redis titles itself `redis-server ADDRESS:PORT`; memcached and the endpoint keep
        // their arguments. Each number is only a candidate: identify checks the listener.
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).into_owned();
        for addr in candidate_addrs(&cmdline) {
            if let Ok(who) = crate::os::identify_as(pid as u64, &[addr], names(kind)) {
                found.push(Found { pid, addr, kind, who });
                break;
            }
        }
    }
    found
}

/// A node's program from lab.json, before it is started: the binary `lab up` looks for this
/// kind of node (by that name), and either the one PATH finds now or one in a directory only
/// root or we can write (a `.servers/valkey/bin`). A script named in lab.json is never run.
/// The directories of the path as named must be ours as well: a link in one that others could
/// write might be swapped between this check and the start.
pub(crate) fn check_program(node: &Node) -> Result<()> {
    let Some(program) = &node.program else { return Ok(()) };
    let wanted = match (node.kind, node.server) {
        (NodeKind::Redis, server) => server.server_program(),
        (NodeKind::Sentinel, server) => server.sentinel_program().0,
        // memcached and the endpoint are started by name / as failprobe: the field is unused.
        (NodeKind::Memcached | NodeKind::Endpoint, _) => return Ok(()),
    };
    let refuse = |why: &str| -> Result<()> {
        bail!(
            "lab node {}: lab.json names program {}, {why}; not started (lab.json is edited or from another machine: run `failprobe lab down` and `lab up` again)",
            node.name,
            program.display()
        )
    };
    if !program.is_absolute() || program.file_name().and_then(|n| n.to_str()) != Some(wanted) {
        return refuse(&format!("not the {wanted} a {} lab runs", node.server.name()));
    }
    let Ok(real) = program.canonicalize() else { return refuse("which does not exist") };
    let on_path = super::find_program(wanted, None).ok().and_then(|p| p.canonicalize().ok());
    if !program.parent().is_some_and(only_trusted_write) {
        return refuse("whose directory others can write (a link there could be swapped)");
    }
    if on_path.as_deref() == Some(real.as_path()) || only_trusted_write(&real) {
        return Ok(());
    }
    refuse(&format!("which is not the {wanted} on PATH and lies where others can write"))
}

/// The file and every directory above it are owned by root or by us and writable by no one
/// else, or (a directory like /tmp) writable by others but sticky: there no one else may
/// rename or remove what root or we own, and the next component is checked for that. Whoever
/// could replace the program could already act as root or as us.
fn only_trusted_write(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = unsafe { libc::geteuid() };
    path.ancestors().all(|p| {
        std::fs::metadata(p).is_ok_and(|m| {
            let sticky_dir = m.is_dir() && m.mode() & 0o1000 != 0 && p != path;
            (m.uid() == 0 || m.uid() == me) && (m.mode() & 0o022 == 0 || sticky_dir)
        })
    })
}

/// The addresses a lab process's command line names (`127.x.y.z:PORT` in a redis title;
/// `-l IP -p PORT`, `--ip IP --port PORT`): every loopback address it names (and 127.0.0.1, a
/// lab from before per-node addresses) with every port. A few at most; each only a candidate.
fn candidate_addrs(cmdline: &str) -> Vec<SocketAddr> {
    let tokens: Vec<&str> = cmdline.split(['\0', ' ', ':']).filter(|t| !t.is_empty()).take(64).collect();
    let mut ips: Vec<std::net::Ipv4Addr> =
        tokens.iter().filter_map(|t| t.parse().ok()).filter(|ip: &std::net::Ipv4Addr| ip.is_loopback()).collect();
    ips.push(std::net::Ipv4Addr::LOCALHOST);
    ips.dedup();
    let ports = tokens.iter().filter_map(|t| t.parse::<u16>().ok()).filter(|p| *p > 0);
    ports.flat_map(|p| ips.iter().map(move |ip| SocketAddr::from((*ip, p)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Server;

    fn node(kind: NodeKind, server: Server, program: &str) -> Node {
        let mut n = Node::memcached("n", std::net::Ipv4Addr::LOCALHOST, 1);
        (n.kind, n.server, n.program) = (kind, server, Some(program.into()));
        n
    }

    #[test]
    fn a_program_is_the_server_lab_up_would_run_or_nothing() {
        let on_path = crate::lab::find_program("redis-server", None).expect("redis-server on PATH");
        let on_path = on_path.to_str().unwrap();
        assert!(check_program(&node(NodeKind::Redis, Server::Redis, on_path)).is_ok());
        // The right file by the wrong name: a sentinel must be started as redis-sentinel.
        let err = check_program(&node(NodeKind::Sentinel, Server::Redis, on_path)).unwrap_err().to_string();
        assert!(err.contains(on_path) && err.contains("not the redis-sentinel"), "{err}");
        for (program, says) in [("redis-server", "not the redis-server"), ("/bin/sh", "not the redis-server")] {
            let err = check_program(&node(NodeKind::Redis, Server::Redis, program)).unwrap_err().to_string();
            assert!(err.contains(says), "{program}: {err}");
        }
        let missing = "/nonexistent/redis-server";
        let err = check_program(&node(NodeKind::Redis, Server::Redis, missing)).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        // memcached and the endpoint are never started from lab.json's program.
        assert!(check_program(&node(NodeKind::Memcached, Server::Redis, "/bin/sh")).is_ok());
    }

    /// A checkout under /tmp (world-writable but sticky) is ours; a directory anyone may write
    /// is not (CI clones into such a place: its .servers/valkey/bin must pass).
    #[test]
    fn a_sticky_tmp_is_trusted_above_our_own_directory_and_an_open_one_is_not() {
        use std::os::unix::fs::PermissionsExt;
        let ours = tempfile::tempdir_in("/tmp").unwrap();
        let program = ours.path().join("valkey-server");
        std::fs::write(&program, "").unwrap();
        assert!(only_trusted_write(&program), "{}", program.display());
        std::fs::set_permissions(ours.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!only_trusted_write(&program), "a directory anyone may write");
    }

    /// lab.json's node names become file names in the lab directory: only `lab up`'s own.
    #[test]
    fn only_the_names_lab_up_gives_are_taken_from_lab_json() {
        use crate::lab::node::is_lab_name;
        for ok in ["redis-1", "sentinel-3", "memcached-2", "redis-6", "endpoint"] {
            assert!(is_lab_name(ok), "{ok}");
        }
        for bad in ["../../etc/x", "/tmp/a", "redis-", "redis-1/../x", "sentinel-123", "endpoint-1", "evil"] {
            assert!(!is_lab_name(bad), "{bad}");
        }
    }
}
