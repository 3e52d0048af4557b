//! SIGTERM, SIGHUP, a second signal, a shared --out and a recorder that cannot write: the
//! deployment is left as it was found and what was measured is kept.

use crate::common::*;
use failprobe::lab::Topology;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> Child {
    crate::common::failprobe_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn finish(child: Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let started = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if started.elapsed() > limit {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("failprobe did not exit within {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

fn signal(child: &Child, sig: i32) {
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn events(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("events.jsonl")).unwrap()
}

#[test]
fn sigterm_during_a_pause_resumes_the_primary_even_when_sent_twice() {
    let _turn = beside_others();
    let lab = TestLab::start(Topology::Replica);
    let primary = lab.primary_port();
    let pid = lab.lab.pid_of_port(primary).unwrap();
    let out = lab.out("run");
    let lab_dir = lab.lab_dir();
    let child = spawn(&[
        "run",
        "--lab",
        lab_dir.to_str().unwrap(),
        "--trigger",
        "pause=20s",
        "--warmup",
        "1s",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(wait_until(Duration::from_secs(15), || state(pid) == Some('T')), "the primary was never paused");
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(30));
    signal(&child, libc::SIGTERM);
    let o = finish(child, Duration::from_secs(20));
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert_ne!(state(pid), Some('T'), "the primary was left paused");
    let s = summary(&out);
    assert_eq!(s["interrupted"], true);
    assert_eq!(s["verdict"]["kind"], "incomplete");
    assert!(events(&out).contains("interrupted"));
    let _: () = redis::cmd("SET").arg("failprobe:after").arg(1).arg("EX").arg(5).query(&mut lab.conn(primary)).unwrap();
}

#[test]
fn sighup_stops_an_owned_lab_and_writes_the_partial_report() {
    let _turn = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let child = spawn(&[
        "run",
        "--lab-topology",
        "replica",
        "--trigger",
        "none",
        "--duration",
        "60s",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let lab_file = out.join("lab").join("lab.json");
    let probing = || std::fs::metadata(out.join("samples.csv")).is_ok_and(|m| m.len() > 20_000);
    assert!(wait_until(Duration::from_secs(30), probing), "the run never started probing");
    let lab: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&lab_file).unwrap()).unwrap();
    let pids: Vec<u32> = lab["nodes"].as_array().unwrap().iter().map(|n| n["pid"].as_u64().unwrap() as u32).collect();
    assert!(!pids.is_empty() && pids.iter().all(|p| state(*p).is_some()));
    signal(&child, libc::SIGHUP);
    let o = finish(child, Duration::from_secs(20));
    assert_eq!(code(&o), 2, "{}", explain(&o));
    for p in pids {
        assert!(matches!(state(p), None | Some('Z')), "lab process {p} survived SIGHUP");
    }
    let s = summary(&out);
    assert_eq!(s["interrupted"], true);
    assert!(u(&s["trials"][0]["writes"]["probes"]) > 50);
    assert!(out.join("report.html").exists());
}

#[test]
fn two_runs_never_share_an_output_directory() {
    let _turn = beside_others();
    let lab = TestLab::start(Topology::Replica);
    let target = format!("redis://{}", lab.primary_addr());
    let out = lab.out("shared");
    let observe = |d: &str| -> Vec<String> {
        ["run", "--target", &target, "--trigger", "none", "--duration", d, "--quiet", "--out", out.to_str().unwrap()]
            .map(String::from)
            .to_vec()
    };
    let first_args = observe("3s");
    let first = spawn(&first_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(wait_until(Duration::from_secs(10), || out.join("run.json").exists()));
    let second = failprobe(&observe("1s").iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&second), 2, "{}", explain(&second));
    assert!(String::from_utf8_lossy(&second.stderr).contains("choose another --out"), "{}", explain(&second));
    let first = finish(first, Duration::from_secs(20));
    assert_eq!(code(&first), 0, "{}", explain(&first));
    assert!(u(&summary(&out)["trials"][0]["writes"]["probes"]) > 200, "the first run's samples were kept whole");

    // A directory that holds someone else's files (no run.json) is not written into either.
    let foreign = lab.out("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let args = ["run", "--target", &target, "--trigger", "none", "--duration", "1s", "--quiet"];
    let o = failprobe(&[&args[..], &["--out", foreign.to_str().unwrap()]].concat());
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let names: Vec<_> = std::fs::read_dir(&foreign).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);
}

#[test]
fn a_recorder_that_cannot_write_stops_the_triggers() {
    let _turn = beside_others();
    use std::os::unix::process::CommandExt;
    let lab = TestLab::start(Topology::Replica);
    let target = format!("redis://{}", lab.primary_addr());
    let out = lab.out("full");
    let fired = lab.out("fired");
    let trigger = format!("command=echo x >> {}", fired.display());
    let mut cmd = crate::common::failprobe_command();
    cmd.args(["run", "--target", &target, "--trigger", &trigger, "--repeat", "5", "--yes", "--quiet"])
        .args(["--interval", "1ms", "--warmup", "1s", "--settle", "1s", "--out", out.to_str().unwrap()])
        .stdin(Stdio::null());
    // A disk that fills up: every file failprobe writes is limited to 300 kB, so samples.csv
    // fails after a second or two at 2 000 probes/s, while the small report files still fit.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 300_000, rlim_max: 300_000 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("recorder could not write") && err.contains("no further trigger"), "{err}");
    let fired = std::fs::read_to_string(&fired).unwrap_or_default().lines().count();
    assert!(fired < 5, "all 5 triggers fired although nothing was recorded");
    let s = summary(&out);
    assert_eq!(s["verdict"]["kind"], "incomplete");
}

/// `run --lab LAB --trigger none --duration 2s --quiet --out OUT` with `extra`, not waited for.
fn observe_in_background(lab: &TestLab, out: &Path, extra: &[&str]) -> Child {
    let lab_dir = lab.lab_dir();
    let args = ["run", "--lab", lab_dir.to_str().unwrap(), "--trigger", "none", "--duration", "2s", "--quiet"];
    spawn(&[&args[..], extra, &["--out", out.to_str().unwrap()]].concat())
}

/// The process group `pgid` has no live member left (zombies, which an init that does not reap
/// keeps, are dead).
fn group_gone(pgid: u32) -> bool {
    let members = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let fields: Vec<String> = stat.rsplit_once(')')?.1.split_whitespace().map(String::from).collect();
        // After the command name: state, ppid, pgrp.
        (fields.get(2)?.parse::<u32>().ok()? == pgid && fields[0] != "Z").then_some(())
    });
    members.count() == 0
}

/// SIGINT during `--before 'sleep 20'` ends the step's whole group at once (main 9794c7d took
/// 18.6 s), and `--after` still runs.
#[test]
fn sigint_during_before_ends_it_at_once_and_after_still_runs() {
    let lab = TestLab::start(Topology::Replica);
    let (out, started, resumed) = (lab.out("run"), lab.out("before.pid"), lab.out("after.ran"));
    let before = format!("echo $$ > {}; sleep 20", started.display());
    let after = format!("touch {}", resumed.display());
    let child = observe_in_background(&lab, &out, &["--before", &before, "--after", &after]);
    let leader = || std::fs::read_to_string(&started).ok().and_then(|s| s.trim().parse::<u32>().ok());
    assert!(wait_until(Duration::from_secs(20), || leader().is_some()), "--before never started");
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    signal(&child, libc::SIGINT);
    let o = finish(child, Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "SIGINT took {took:?} to end the run: {}", explain(&o));
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(resumed.exists(), "--after did not run after an interrupted --before: {}", explain(&o));
    assert!(group_gone(leader().unwrap()), "the --before step's process group outlived the run");
    let events = events(&out);
    assert!(events.contains(r#""step":"before""#) && events.contains(r#""status":"interrupted""#), "{events}");
}

/// SIGTERM while `--backup` waits on a slow BGSAVE: the wait is abandoned and said so (the
/// server finishes the save), `--after` runs, the run ends within seconds (main: 18.1 s).
#[test]
fn sigterm_during_a_slow_backup_abandons_the_wait_and_runs_after() {
    let lab = TestLab::start(Topology::Replica);
    let primary = lab.primary_port();
    let mut conn = lab.conn(primary);
    // 50 user keys at 200 ms each: a BGSAVE of 10 s.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("rdb-key-save-delay").arg(200_000).query(&mut conn).unwrap();
    for i in 0..50 {
        let _: () = redis::cmd("SET").arg(format!("slow:{i}")).arg(i).query(&mut conn).unwrap();
    }
    let (out, resumed) = (lab.out("run"), lab.out("after.ran"));
    let after = format!("touch {}", resumed.display());
    let child = observe_in_background(&lab, &out, &["--backup", "--after", &after]);
    let saving = || {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut conn).unwrap_or_default();
        info.contains("rdb_bgsave_in_progress:1")
    };
    assert!(wait_until(Duration::from_secs(30), saving), "the backup never started");
    let signalled = Instant::now();
    signal(&child, libc::SIGTERM);
    let o = finish(child, Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?} to end the run: {}", explain(&o));
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(resumed.exists(), "--after did not run after an interrupted backup");
    assert!(events(&out).contains("abandoned on interrupt: the server finishes the BGSAVE"), "{}", events(&out));
}
