//! `fis=`: the real aws-sdk-fis client in failprobe, over HTTP, against the FIS emulator in
//! common/fis.rs, beside the ElastiCache emulator; both wired to a real Sentinel lab, so the
//! experiment's "AZ power interruption" really fails the probed group over.

use crate::common::elasticache::Emulator;
use crate::common::fis::{Fis, AZ_POWER};
use crate::common::*;
use failprobe::lab::{NodeKind, Topology, MASTER_NAME};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const GROUP: &str = "fp-rg";
const TEMPLATE: &str = "EXTazpower0001";

/// A Sentinel lab that is ElastiCache group `GROUP`, and a FIS template interrupting its AZ
/// power for `duration` (a real Sentinel failover once the experiment runs).
fn az_power_lab(duration: Duration) -> (TestLab, Emulator, Fis) {
    let lab = TestLab::start(Topology::Sentinel);
    let mut emu = Emulator::start();
    let nodes = lab.lab.nodes();
    let sentinel = nodes.iter().find(|n| n.kind == NodeKind::Sentinel).expect("a sentinel");
    crate::common::elasticache::know_lab(&lab.lab);
    emu.add_sentinel_group(GROUP, &lab.lab.redis_ports(), sentinel.port, MASTER_NAME);
    let fis = Fis::start();
    fis.add_az_power_template(TEMPLATE, GROUP, duration);
    fis.fail_over_through(sentinel.addr(), MASTER_NAME);
    (lab, emu, fis)
}

fn env(emu: &Emulator, fis: &Fis) -> Vec<(&'static str, String)> {
    let mut env = emu.env();
    env.push(fis.env());
    env
}

fn fis_args(extra: &[&str]) -> Vec<String> {
    let trigger = format!("fis={TEMPLATE}");
    let base = ["--replication-group", GROUP, "--aws-poll", "200ms", "--trigger", &trigger];
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn run(lab: &TestLab, emu: &Emulator, fis: &Fis, name: &str, extra: &[&str]) -> (std::process::Output, PathBuf) {
    let args = fis_args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.run_with_env(name, &args, &env(emu, fis))
}

/// This trial's events of the experiment, in AWS's order: (class, message).
fn experiment_events(trial: &Value, id: &str) -> Vec<(String, String)> {
    let events = trial["aws"]["events"].as_array().unwrap_or_else(|| panic!("no AWS events: {trial}"));
    let of = events.iter().filter(|e| e["source"] == id);
    of.map(|e| (e["class"].as_str().unwrap().to_string(), e["message"].as_str().unwrap().to_string())).collect()
}

/// The FIS operations a text names.
fn operations_named(text: &str) -> Vec<String> {
    let ops = ["StartExperiment", "GetExperimentTemplate", "GetExperiment", "StopExperiment"];
    let words: Vec<&str> = text.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    ops.iter().filter(|op| words.contains(op)).map(|op| op.to_string()).collect()
}

#[test]
fn fis_is_refused_without_yes_then_makes_the_calls_it_showed_and_puts_the_experiment_on_the_timeline() {
    // Sentinel labs behind the emulators need the machine: two failing over at once starve.
    let _turn = alone();
    let (lab, emu, fis) = az_power_lab(Duration::from_secs(3));
    let old_primary = lab.primary_port();

    let (o, out) = run(&lab, &emu, &fis, "unconfirmed", &[]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let shown = String::from_utf8_lossy(&o.stderr).to_string();
    let start = format!("StartExperiment experimentTemplateId={TEMPLATE}");
    for expected in [start.as_str(), AZ_POWER, "duration=PT3S"] {
        assert!(shown.contains(expected), "the confirmation names {expected}: {shown}");
    }
    assert!(shown.contains(&format!("replicationgroup:{GROUP} (ALL)")), "and the target: {shown}");
    assert_eq!(fis.calls(), ["GetExperimentTemplate"], "unconfirmed, only the template is read");
    assert!(fis.experiments().is_empty());
    assert!(!out.exists(), "nothing written unconfirmed");

    // A template FIS does not know is refused before anything is started or written, in AWS's words.
    let unknown = ["--replication-group", GROUP, "--trigger", "fis=EXTnosuch", "--yes"];
    let (o, out) = lab.run_with_env("unknown", &unknown, &env(&emu, &fis));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("GetExperimentTemplate: ResourceNotFoundException"), "{}", explain(&o));
    assert!(said.contains("no such experiment template here"), "{}", explain(&o));
    assert_eq!(code(&o), 2, "an error: no verdict");
    assert!(!out.exists());
    assert_eq!(fis.calls(), ["GetExperimentTemplate"; 2]);

    let (o, out) = run(&lab, &emu, &fis, "confirmed", &["--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_ne!(lab.primary_port(), old_primary, "the experiment really failed the lab over");
    // Every call made is one the confirmation named; the experiment was started once and,
    // having completed, never stopped.
    let calls = fis.calls();
    let named = operations_named(&shown);
    assert!(calls.iter().all(|c| named.contains(c)), "calls {calls:?}, shown {named:?}");
    assert_eq!(calls.iter().filter(|c| *c == "StartExperiment").count(), 1, "{calls:?}");
    assert!(calls.iter().any(|c| c == "GetExperiment"), "{calls:?}");
    assert!(!calls.iter().any(|c| c == "StopExperiment"), "{calls:?}");
    assert!(emu.calls().iter().all(|c| c.starts_with("Describe")), "ElastiCache was only read: {:?}", emu.calls());
    let experiment = &fis.experiments()[0];
    assert_eq!(experiment.history, ["initiating", "running", "completed"]);

    let s = summary(&out);
    let t = &s["trials"][0];
    assert_eq!(t["trigger"]["kind"], "fis", "{}", t["trigger"]);
    assert!(t["trigger"]["error"].is_null(), "{}", t["trigger"]);
    let events = experiment_events(t, &experiment.id);
    let classes: Vec<&str> = events.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(classes, ["other", "experiment-running", "experiment-ended"], "{events:?}");
    assert!(events[0].1.ends_with(&format!("template {TEMPLATE}: initiating")), "{events:?}");
    assert!(events[2].1.ends_with("completed: Experiment completed."), "{events:?}");
    // On the run's clock: running while the trigger waited, ended when it finished.
    let at = |class: &str| {
        let all = t["aws"]["events"].as_array().unwrap();
        f(&all.iter().find(|e| e["source"] == experiment.id.as_str() && e["class"] == class).unwrap()["at_ms"])
    };
    let (started, finished) = (f(&t["trigger"]["started_at_ms"]), f(&t["trigger"]["finished_at_ms"]));
    assert!(at("experiment-running") > started && at("experiment-running") < finished);
    assert!((at("experiment-ended") - finished).abs() < 1_000.0, "{} vs {finished}", at("experiment-ended"));
    assert!(!t["writes"]["outages"].as_array().unwrap().is_empty(), "the probes saw the failover: {}", t["writes"]);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("FIS experiment of template"), "report.md lists the experiment's states");
}

fn spawn(lab: &TestLab, emu: &Emulator, fis: &Fis, out: &Path, extra: &[&str]) -> Child {
    let (lab_dir, out) = (lab.lab_dir().to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let mut cmd = failprobe_command();
    cmd.args(["run", "--lab", &lab_dir, "--quiet", "--warmup", "1s", "--settle", "1s", "--out", &out, "--yes"]);
    cmd.args(fis_args(extra)).envs(env(emu, fis));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
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

/// The run's output, or SIGKILL and a failure when it does not exit in time.
fn finish(child: Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    if !wait_until(limit, || waiter.is_finished()) {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("failprobe did not exit within {limit:?}");
    }
    waiter.join().unwrap()
}

#[test]
fn sigterm_during_the_experiment_stops_it_and_the_report_is_still_written() {
    let _turn = alone();
    let (lab, emu, fis) = az_power_lab(Duration::from_secs(120));
    let out = lab.out("sigterm");
    let child = spawn(&lab, &emu, &fis, &out, &[]);
    let running = || fis.experiments().first().is_some_and(|e| e.status == "running");
    assert!(wait_until(Duration::from_secs(60), running), "the experiment never ran: {:?}", fis.experiments());
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = finish(child, Duration::from_secs(40));
    assert_eq!(code(&o), 2, "{}", explain(&o));

    let experiment = &fis.experiments()[0];
    assert_eq!(experiment.history, ["initiating", "running", "stopping", "stopped"], "{:?}", fis.calls());
    assert_eq!(fis.calls().iter().filter(|c| *c == "StopExperiment").count(), 1, "{:?}", fis.calls());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&format!("stopped FIS experiment {}: stopped", experiment.id)), "{}", explain(&o));
    let s = summary(&out);
    assert_eq!(s["interrupted"], true);
    // The stop's states reached the timeline before the recorder closed.
    let events = experiment_events(&s["trials"][0], &experiment.id);
    assert_eq!(events.last().map(|(c, _)| c.as_str()), Some("experiment-ended"), "{events:?}");
    assert!(events.last().unwrap().1.ends_with("stopped: Experiment stopped."), "{events:?}");
}

#[test]
fn an_experiment_longer_than_max_trial_is_stopped_by_the_trigger() {
    let _turn = alone();
    let (lab, emu, fis) = az_power_lab(Duration::from_secs(120));
    let started = Instant::now();
    let (o, out) = run(&lab, &emu, &fis, "max-trial", &["--yes", "--max-trial", "6s"]);
    assert!(started.elapsed() < Duration::from_secs(60), "the run waited {:?}", started.elapsed());
    let experiment = &fis.experiments()[0];
    assert_eq!(experiment.history, ["initiating", "running", "stopping", "stopped"], "{}", explain(&o));
    assert_eq!(fis.calls().iter().filter(|c| *c == "StopExperiment").count(), 1, "{:?}", fis.calls());
    let s = summary(&out);
    let t = &s["trials"][0];
    let error = t["trigger"]["error"].as_str().unwrap_or_else(|| panic!("a trigger error: {}", t["trigger"]));
    assert!(error.contains("still running after --max-trial 6s"), "{error}");
    assert!(error.contains("stopped it (StopExperiment): stopped"), "{error}");
    let events = experiment_events(t, &experiment.id);
    assert_eq!(events.last().map(|(c, _)| c.as_str()), Some("experiment-ended"), "{events:?}");
    // A trigger that did not complete gives no verdict.
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("INCOMPLETE (the trigger of trial 0 failed"),
        "{}",
        explain(&o)
    );
}
