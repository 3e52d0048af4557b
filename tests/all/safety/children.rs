//! The children failprobe starts (adapters, --before/--after, command=): they end with the run,
//! also when failprobe is killed, also when they left its process group; they see only the
//! environment built for them; an adapter answering an id twice is a fault, however often.

use crate::common::*;
use failprobe::lab::Topology;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn unruly(name: &str, mode: &str, arg: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/adapters/unruly.py");
    format!("exec:{name}=python3 {script} {mode} {arg}")
}

/// Live processes whose command line starts with `prefix` (the shells that quote it aside).
fn running(prefix: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
            .replace('\0', " ");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if cmdline.starts_with(prefix) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// True when nothing runs `prefix` within `limit`; what still does is killed (a failed test
/// leaves nothing behind).
fn none_within(prefix: &str, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if running(prefix).is_empty() {
            return true;
        }
        if Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    running(prefix).iter().for_each(|pid| unsafe {
        libc::kill(*pid, libc::SIGKILL);
    });
    false
}

fn adapter<'a>(s: &'a Value, name: &str) -> &'a Value {
    let clients = s["trials"][0]["clients"].as_array().unwrap();
    clients.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no client {name} in {clients:?}"))
}

#[test]
fn an_adapter_that_ignores_end_of_input_dies_with_a_killed_failprobe() {
    let lab = TestLab::start(Topology::Replica);
    let pidfile = lab.out("adapter.pid");
    let exec = unruly("stubborn", "ignore-eof", pidfile.to_str().unwrap());
    let (lab_dir, out) = (lab.lab_dir(), lab.out("run"));
    let mut failprobe = failprobe_command()
        .args(["run", "--lab", lab_dir.to_str().unwrap(), "--trigger", "none", "--duration", "30s", "--quiet"])
        .args(["--clients", "failprobe", "--clients", &exec, "--out", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    while !pidfile.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid: i32 = std::fs::read_to_string(&pidfile).expect("the adapter started").parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    failprobe.kill().unwrap();
    failprobe.wait().unwrap();
    let alive = || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "));
    let until = Instant::now() + Duration::from_secs(5);
    while alive() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survived = alive();
    if survived {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(!survived, "the adapter outlived a SIGKILLed failprobe");
}

#[test]
fn hooks_whose_children_leave_the_group_end_with_the_run() {
    let lab = TestLab::start(Topology::Replica);
    // Neither redirects its output: the hook is done when its shell exits, and what it left
    // running is ended then. One leaves the group by setsid, one by bash's job control.
    let cases = [
        ("setsid", "setsid sleep 300.123 &", "sleep 300.123"),
        ("job", "bash -c 'set -m; sleep 300.124 &'", "sleep 300.124"),
    ];
    for (name, before, marker) in cases {
        let (o, _) = lab.run(name, &["--trigger", "none", "--duration", "1s", "--max-trial", "3s", "--before", before]);
        assert!(none_within(marker, Duration::from_secs(3)), "{name}: the hook's child outlived the run");
        assert_eq!(code(&o), 0, "{name}: {}", explain(&o));
    }
}

#[test]
fn a_background_job_without_redirection_is_not_taken_for_hung() {
    let lab = TestLab::start(Topology::Replica);
    let started = Instant::now();
    let (o, out) =
        lab.run("bg", &["--trigger", "none", "--duration", "1s", "--max-trial", "20s", "--before", "sleep 100.125 &"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let step = events.lines().find(|l| l.contains("\"runbook_step\"")).unwrap_or_else(|| panic!("{events}"));
    assert!(step.contains("exit status: 0") && !step.contains("not finished"), "{step}");
    assert!(none_within("sleep 100.125", Duration::from_secs(3)), "the background job outlived the run");
}

fn environment(file: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// `env` output (NAME=value lines) as JSON.
fn shell_environment(file: &Path) -> Value {
    let text = std::fs::read_to_string(file).unwrap();
    let map: serde_json::Map<String, Value> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    Value::Object(map)
}

#[test]
fn adapters_and_hooks_see_only_their_environment_and_what_pass_env_names() {
    const PW: &str = "Children-Pw-7";
    let lab = TestLab::start(Topology::Replica);
    let port = lab.primary_port();
    let at = lab.addr(port);
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg(PW).query(&mut lab.conn(port)).unwrap();
    let (adapter_env, hook_env, trigger_env) = (lab.out("adapter.json"), lab.out("hook.env"), lab.out("trigger.env"));
    let exec = unruly("env", "env", adapter_env.to_str().unwrap());
    let (before, trigger) =
        (format!("env > {}", hook_env.display()), format!("command=env > {}", trigger_env.display()));
    let target = format!("redis://{at}");
    let out = lab.out("run");
    let args = ["run", "--target", &target, "--trigger", &trigger, "--yes", "--quiet", "--warmup", "1s", "--settle"];
    let more = ["1s", "--clients", "failprobe", "--clients", &exec, "--before", &before, "--pass-env", "FP_PASSED"];
    let env = [
        ("FAILPROBE_PASSWORD", PW.to_string()),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-1".to_string()),
        ("AWS_SESSION_TOKEN", "aws-token-1".to_string()),
        ("FP_PASSED", "arrived".to_string()),
        ("FP_NOT_PASSED", "stayed".to_string()),
    ];
    let o = failprobe_env(&[&args[..], &more, &["--out", out.to_str().unwrap()]].concat(), &env);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let adapter = environment(&adapter_env);
    assert_eq!(adapter["FAILPROBE_PASSWORD"], PW, "the adapter gets the target's own password");
    assert!(adapter["FAILPROBE_TARGET"].as_str().unwrap().starts_with(&target), "{adapter}");
    for (what, seen) in
        [("adapter", adapter), ("hook", shell_environment(&hook_env)), ("trigger", shell_environment(&trigger_env))]
    {
        assert_eq!(seen["FP_PASSED"], "arrived", "{what}: {seen}");
        assert!(!seen.to_string().contains("aws-"), "{what} sees AWS credentials: {seen}");
        assert!(seen.get("FP_NOT_PASSED").is_none(), "{what}: {seen}");
        assert!(seen["PATH"].is_string(), "{what}: {seen}");
        if what != "adapter" {
            assert!(!seen.to_string().contains(PW), "{what} sees the password: {seen}");
        }
    }
}

#[test]
fn an_adapter_that_answers_an_id_twice_is_broken() {
    let lab = TestLab::start(Topology::Replica);
    let exec = unruly("twice", "twice", "20");
    let (o, out) =
        lab.run("twice", &["--trigger", "none", "--duration", "2s", "--clients", "failprobe", "--clients", &exec]);
    assert_eq!(code(&o), 0, "the budget covers failprobe alone: {}", explain(&o));
    let s = summary(&out);
    let bad = adapter(&s, "twice");
    let fault = bad["adapter_faults"][0].as_str().unwrap_or_else(|| panic!("no fault in {bad}"));
    assert!(fault.contains("answered id") && fault.contains("twice"), "{fault}");
    assert!(u(&bad["writes"]["errors"]["adapter"]) > 0, "{}", bad["writes"]["errors"]);
}

/// failprobe's CPU time so far (utime + stime, in clock ticks).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[test]
fn a_flood_of_repeated_answers_is_one_fault_and_costs_little() {
    let lab = TestLab::start(Topology::Replica);
    let exec = unruly("flood", "flood", "20");
    let (lab_dir, out) = (lab.lab_dir(), lab.out("flood"));
    let started = Instant::now();
    let child = failprobe_command()
        .args(["run", "--lab", lab_dir.to_str().unwrap(), "--trigger", "none", "--duration", "4s", "--quiet"])
        .args(["--warmup", "1s", "--settle", "1s", "--clients", "failprobe", "--clients", &exec])
        .args(["--out", out.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let mut ticks = 0;
    while !waiter.is_finished() {
        ticks = cpu_ticks(pid).unwrap_or(ticks);
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = waiter.join().unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(code(&o), 0, "{}", explain(&o));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = ticks as f64 / hz;
    assert!(cpu < 0.5 * wall, "failprobe used {cpu:.2} s of CPU in {wall:.2} s");
    let s = summary(&out);
    let fault = adapter(&s, "flood")["adapter_faults"][0].as_str().unwrap_or_default().to_string();
    assert!(fault.contains("twice"), "{s}");
}
