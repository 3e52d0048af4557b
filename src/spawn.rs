//! The children failprobe starts: client adapters (`--clients exec:…`), the runbook's
//! `--before/--after` and `command=` triggers. Each is `sh -c COMMAND`:
//! - with an environment built for it (`environment`): PATH, HOME, LANG, LC_ALL and TMPDIR when
//!   set, the names given with `--pass-env`, and the caller's own `FAILPROBE_*` variables;
//!   nothing else of failprobe's (no AWS credentials, no password the caller did not give);
//! - as the leader of a session of its own (so of a process group), and in a cgroup v2 of its own
//!   (`failprobe-<pid>-<start>-<n>`) when the hierarchy is writable (root);
//! - ended with every descendant when failprobe is done with it (`Guard`), and when failprobe
//!   dies however it dies, SIGKILL included (the watchdog, below).
//!
//! Descendants that left the group (`setsid`, `set -m` job control) are found by the cgroup.
//! Without one (not root, no cgroup v2) they are found by session id: that catches job control,
//! not a `setsid`, which only a cgroup can follow.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

/// failprobe's own variables every child gets when they are set: what a shell and a program
/// need to run, nothing that grants anything.
const BASE_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// `--pass-env`: set once per run (`set_pass_env`), read by every spawn.
static PASS_ENV: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// The names `--pass-env` gives (`[probe] pass_env`): each child gets them when they are set.
pub(crate) fn set_pass_env(names: &[String]) {
    *PASS_ENV.write().unwrap_or_else(|e| e.into_inner()) = names.to_vec();
}

/// A name `--pass-env` accepts: a shell variable's.
pub(crate) fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    match first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        true => Ok(()),
        false => Err(format!("--pass-env `{name}` is not a variable name (letters, digits and _)")),
    }
}

/// A child's whole environment: `BASE_ENV`, then `--pass-env`, then `vars` (the caller's own,
/// which win).
fn environment(vars: &[(&str, String)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |name: &str, value: OsString| {
        env.retain(|(n, _)| n != name);
        env.push((name.into(), value));
    };
    let pass = PASS_ENV.read().unwrap_or_else(|e| e.into_inner()).clone();
    for name in BASE_ENV.iter().copied().chain(pass.iter().map(String::as_str)) {
        if let Some(value) = std::env::var_os(name) {
            set(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        set("PATH", DEFAULT_PATH.into());
    }
    for (name, value) in vars {
        set(name, value.into());
    }
    env
}

/// The leader runs this first. It leaves a watcher in the group that reads the watchdog pipe
/// (fd 3) until end of file, which comes only when failprobe has exited, however it exited; the
/// watcher then kills the cgroup ($1, when there is one) and the group. Then it closes fd 3 and
/// becomes the command ($2). Why not PR_SET_PDEATHSIG: it fires when the *thread* that forked
/// exits (tokio's blocking threads exit when idle, `block_in_place` moves workers), which would
/// kill a healthy adapter mid-run; and it reaches the `sh` alone, never its group, nor the
/// descendants that left it. The watcher also keeps the group alive, so its id is not reused
/// while failprobe may still signal it.
const WRAPPER: &str = r#"(read -r _ <&3; [ -z "$1" ] || echo 1 >"$1/cgroup.kill"; kill -9 0) </dev/null >/dev/null 2>&1 &
exec 3<&-; exec sh -c "$2""#;

/// The read end of a pipe whose write end failprobe holds, close-on-exec, until it exits:
/// nothing is ever written, so a reader sees end of file exactly when failprobe is gone.
fn watchdog() -> std::io::Result<RawFd> {
    static PIPE: OnceLock<Result<RawFd, i32>> = OnceLock::new();
    let made = PIPE.get_or_init(|| {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
        }
        // Above the standard fds (failprobe may have been started with some closed), so a
        // child's stdio never lands on them. Both stay open for failprobe's lifetime.
        // SAFETY: fcntl on fds this function owns.
        let high = |fd: RawFd| unsafe {
            let moved = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
            libc::close(fd);
            moved
        };
        let (read, write) = (high(fds[0]), high(fds[1]));
        match read >= 0 && write >= 0 {
            true => Ok(read),
            false => Err(libc::EMFILE),
        }
    });
    made.map_err(std::io::Error::from_raw_os_error)
}

/// Starts `sh -c command` as described above; stdout and stderr piped, stdin as given. The child
/// is killed when its `tokio` handle is dropped, everything it started when the guard is.
pub(crate) fn shell(
    command: &str,
    vars: &[(&str, String)],
    stdin: impl Fn() -> Stdio,
) -> std::io::Result<(tokio::process::Child, Guard)> {
    match spawn_in(Cgroup::create(), command, vars, stdin()) {
        Ok(started) => Ok(started),
        // Joining it failed (a hierarchy that takes no process here): sessions from now on.
        Err((true, _)) => {
            CGROUPS_UNUSABLE.store(true, Ordering::Relaxed);
            spawn_in(None, command, vars, stdin()).map_err(|(_, e)| e)
        }
        Err((false, e)) => Err(e),
    }
}

/// `shell` in `cgroup`; the error says whether there was a cgroup.
fn spawn_in(
    cgroup: Option<Cgroup>,
    command: &str,
    vars: &[(&str, String)],
    stdin: Stdio,
) -> Result<(tokio::process::Child, Guard), (bool, std::io::Error)> {
    let in_cgroup = cgroup.is_some();
    let watchdog = watchdog().map_err(|e| (false, e))?;
    let mut guard = Guard { sid: None, cgroup };
    let procs = match &guard.cgroup {
        Some(c) => Some(c.open_procs().map_err(|e| (true, e))?),
        None => None,
    };
    let procs_fd = procs.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let cgroup_arg = guard.cgroup.as_ref().map(|c| c.dir.clone().into_os_string()).unwrap_or_default();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(WRAPPER)
        .arg("failprobe-child")
        .arg(cgroup_arg)
        .arg(command)
        .env_clear()
        .envs(environment(vars))
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, write, dup2) on fds
    // opened before the fork; no allocation.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Into the cgroup before exec: nothing the command starts can be outside it.
            if let Some(fd) = procs_fd {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // dup2 leaves the copy without close-on-exec: the wrapper's fd 3.
            if libc::dup2(watchdog, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| (in_cgroup, e))?;
    drop(procs);
    guard.sid = child.id().and_then(|id| libc::pid_t::try_from(id).ok()).filter(|id| *id > 1);
    Ok((child, guard))
}

/// Ends a child's session and cgroup, everything in them, when dropped (or at `kill`).
pub(crate) struct Guard {
    /// The leader's pid: its session's and its process group's id.
    sid: Option<libc::pid_t>,
    cgroup: Option<Cgroup>,
}

impl Guard {
    /// SIGKILL to everything the child started, now; the cgroup is removed once empty.
    pub(crate) fn kill(&mut self) {
        match self.cgroup.take() {
            // The cgroup holds the group and everything that left it: nothing else to signal
            // (a group id is only safe to signal while failprobe knows the group still exists).
            Some(cgroup) => cgroup.kill_and_remove(),
            None => {
                if let Some(sid) = self.sid {
                    // SAFETY: killpg(2) has no memory-safety preconditions; sid > 1. The watcher
                    // keeps the group alive until this very signal, so its id was not reused.
                    unsafe { libc::killpg(sid, libc::SIGKILL) };
                    kill_session(sid);
                }
            }
        }
        self.sid = None;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGKILL to every process of session `sid` (those that left the group by job control), a few
/// rounds in case one was forking. A session's id cannot be reused while it has a member.
fn kill_session(sid: libc::pid_t) {
    for _ in 0..5 {
        let members = session_members(sid);
        if members.is_empty() {
            return;
        }
        for pid in members {
            // SAFETY: kill(2) has no memory-safety preconditions; pid > 1 and in that session.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Live processes whose session is `sid` (`/proc/PID/stat` field 6).
fn session_members(sid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<libc::pid_t>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state, ppid, pgrp, session
        if fields.first() != Some(&"Z") && fields.get(3).and_then(|s| s.parse().ok()) == Some(sid) && pid > 1 {
            out.push(pid);
        }
    }
    out
}

/// A cgroup v2 of one child: `<root>/failprobe-<pid>-<start time>-<n>`, the owner named so that a
/// later failprobe can tell a leftover of a dead one (`sweep_stale`).
struct Cgroup {
    dir: PathBuf,
}

/// Prefix of every cgroup failprobe makes.
const PREFIX: &str = "failprobe-";
/// No writable cgroup v2 here: children are tracked by session.
static CGROUPS_UNUSABLE: AtomicBool = AtomicBool::new(false);

impl Cgroup {
    /// None when there is no writable cgroup v2 hierarchy (then failprobe stops trying).
    fn create() -> Option<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        if CGROUPS_UNUSABLE.load(Ordering::Relaxed) {
            return None;
        }
        let Some(root) = v2_root() else {
            CGROUPS_UNUSABLE.store(true, Ordering::Relaxed);
            return None;
        };
        let me = std::process::id();
        let start = crate::os::start_time(me as u64).unwrap_or(0);
        let dir = root.join(format!("{PREFIX}{me}-{start}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        if let Err(e) = std::fs::create_dir(&dir) {
            tracing::debug!("no cgroup for children ({}: {e}); their sessions are tracked instead", dir.display());
            CGROUPS_UNUSABLE.store(true, Ordering::Relaxed);
            return None;
        }
        // Once per process, off the caller's path: what a failprobe killed by SIGKILL left.
        SWEPT.call_once(|| {
            let root = root.to_path_buf();
            std::thread::spawn(move || sweep_stale(&root));
        });
        Some(Self { dir })
    }

    fn open_procs(&self) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new().write(true).open(self.dir.join("cgroup.procs"))
    }

    /// Kills every member; the directory is removed in the background once they are gone.
    fn kill_and_remove(self) {
        kill_members(&self.dir);
        std::thread::spawn(move || remove_when_empty(&self.dir));
    }
}

/// `cgroup.kill` (Linux >= 5.14), else SIGKILL to each pid of `cgroup.procs` until it is empty.
fn kill_members(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for _ in 0..20 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<libc::pid_t> = procs.lines().filter_map(|l| l.trim().parse().ok()).filter(|p| *p > 1).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: kill(2) has no memory-safety preconditions; pid > 1, a member just read.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// rmdir, retried while killed members are still exiting (EBUSY), for up to 2 s.
fn remove_when_empty(dir: &Path) {
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(20)),
            _ => return,
        }
    }
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid system).
fn v2_root() -> Option<&'static Path> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        let mount =
            mounts.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|f| f.get(2) == Some(&"cgroup2"))?;
        let dir = PathBuf::from(mount.get(1)?);
        dir.join("cgroup.procs").exists().then_some(dir)
    })
    .as_deref()
}

/// Cgroups of failprobes that are gone (no process with that pid and start time): a failprobe
/// killed by SIGKILL leaves one per child; its watcher killed the members it could, and what is
/// left (a member that escaped the group, on a kernel without `cgroup.kill`) is killed here.
fn sweep_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name.strip_prefix(PREFIX).and_then(parse_owner) else { continue };
        if crate::os::start_time(owner.0) != Some(owner.1) {
            kill_members(&entry.path());
            remove_when_empty(&entry.path());
        }
    }
}

/// `<pid>-<start>-<n>` → (pid, start).
fn parse_owner(rest: &str) -> Option<(u64, u64)> {
    let mut parts = rest.split('-');
    let (pid, start, n) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?);
    (n.parse::<u64>().is_ok() && parts.next().is_none()).then_some((pid, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Live processes whose command line starts with `marker` (the shells that quote it aside).
    fn with_marker(marker: &str) -> Vec<libc::pid_t> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<libc::pid_t>().ok()) else { continue };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            if !zombie && String::from_utf8_lossy(&cmdline).replace('\0', " ").starts_with(marker) {
                out.push(pid);
            }
        }
        out
    }

    fn gone_within(marker: &str, limit: Duration) -> bool {
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if with_marker(marker).is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in with_marker(marker) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        false
    }

    #[tokio::test]
    async fn a_child_sees_only_what_it_is_given() {
        let vars = [("FAILPROBE_TARGET", "redis://x".to_string()), ("PATH", "/usr/bin:/bin".to_string())];
        let (child, _guard) = shell("env", &vars, Stdio::null).unwrap();
        let out = child.wait_with_output().await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let names: Vec<&str> = text.lines().filter_map(|l| l.split_once('=').map(|(n, _)| n)).collect();
        // PWD is the shell's own.
        let allowed = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PWD", "FAILPROBE_TARGET"];
        assert!(names.iter().all(|n| allowed.contains(n)), "{text}");
        assert!(text.contains("FAILPROBE_TARGET=redis://x\n") && text.contains("PATH=/usr/bin:/bin\n"), "{text}");
    }

    #[test]
    fn pass_env_takes_variable_names_only() {
        assert!(check_env_name("AWS_PROFILE").is_ok() && check_env_name("_x1").is_ok());
        for bad in ["", "1A", "A=B", "A B", "Ä"] {
            assert!(check_env_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn descendants_that_left_the_group_end_with_the_guard() {
        // One leaves by setsid, one by bash's job control; both keep the pipes open.
        let command = "setsid sleep 300.211 & bash -c 'set -m; sleep 300.212 & echo started'";
        let (mut child, guard) = shell(command, &[], Stdio::null).unwrap();
        assert!(child.wait().await.unwrap().success());
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while with_marker("sleep 300.21").len() < 2 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(with_marker("sleep 300.21").len(), 2, "both sleeps started");
        drop(guard);
        assert!(gone_within("sleep 300.21", Duration::from_secs(3)), "a descendant outlived its guard");
    }

    #[tokio::test]
    async fn without_a_cgroup_job_control_is_found_by_session() {
        let command = "bash -c 'set -m; sleep 300.203 & echo started'";
        let (mut child, mut guard) = spawn_in(None, command, &[], Stdio::null()).unwrap();
        assert!(child.wait().await.unwrap().success());
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while with_marker("sleep 300.203").is_empty() && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        guard.kill();
        assert!(gone_within("sleep 300.203", Duration::from_secs(3)), "the job outlived its session");
    }

    #[test]
    fn cgroups_of_a_failprobe_that_is_gone_are_emptied_and_removed() {
        assert_eq!(parse_owner("12-345-0"), Some((12, 345)));
        assert_eq!(parse_owner("12-345"), None);
        let Some(root) = v2_root() else { return };
        // Our own pid with a start time that is not ours: a failprobe that is gone.
        let dir = root.join(format!("{PREFIX}{}-1-{}", std::process::id(), 9_000_000 + std::process::id()));
        let mut sleeper = std::process::Command::new("sleep").arg("300.204").spawn().unwrap();
        // Another test's first spawn sweeps too, and may remove it before it is joined.
        let joined = (0..5).any(|_| {
            let _ = std::fs::create_dir(&dir);
            std::fs::write(dir.join("cgroup.procs"), sleeper.id().to_string()).is_ok()
        });
        if !joined {
            let _ = sleeper.kill();
            let _ = sleeper.wait();
            return; // not root: the session fallback is tested above
        }
        sweep_stale(root);
        let status = sleeper.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
}
