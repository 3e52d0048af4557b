//! Issue 21: network faults as triggers, in a real Sentinel lab, as root (CI is): the node's
//! packets really vanish (nftables), and nothing of failprobe's stays behind on any way out,
//! while what it did not make is left exactly as it was.

use crate::common::{alone, code, explain, f, failprobe, failprobe_command, summary, u, TestLab};
use failprobe::lab::{Server, Topology};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn nft(args: &[&str]) -> String {
    let o = Command::new("nft").args(args).output().expect("nft is installed (scripts/install-servers.sh)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether the lab in `dir` has its table now (other labs, of other test processes, may have
/// theirs), and lo's qdiscs.
fn leftovers(dir: &Path) -> (bool, String) {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let table = failprobe::lab::fault_table(&dir);
    let exists = Command::new("nft").args(["list", "table", "inet", &table]).output().unwrap().status.success();
    let qdisc = Command::new("tc").args(["qdisc", "show", "dev", "lo"]).output().unwrap();
    (exists, String::from_utf8_lossy(&qdisc.stdout).into_owned())
}

fn assert_nothing_left(dir: &Path, when: &str) {
    let (table, qdisc) = leftovers(dir);
    assert!(!table, "{when}: the lab's table remains");
    assert!(qdisc.starts_with("qdisc noqueue 0: root"), "{when}: lo's qdisc changed: {qdisc}");
}

/// A table of someone else's, with a rule that matches nothing of ours: a fault must leave it
/// exactly as it was. Deleted when dropped, whatever the test did.
struct ForeignTable(String);

impl ForeignTable {
    fn new() -> Self {
        let name = format!("someone_else_{}", std::process::id());
        let script = format!(
            "table inet {name} {{\n  chain input {{\n    type filter hook input priority 10; policy accept;\n    ip daddr 192.0.2.77 counter drop\n  }}\n}}\n"
        );
        let mut child = Command::new("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
        ForeignTable(name)
    }

    fn listing(&self) -> String {
        nft(&["list", "table", "inet", &self.0])
    }
}

impl Drop for ForeignTable {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "inet", &self.0]).status();
    }
}

fn client<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["clients"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

fn timeline(t: &Value) -> Vec<String> {
    t["timeline"].as_array().unwrap().iter().map(|e| e["what"].as_str().unwrap().to_string()).collect()
}

/// Done-when 2: `blackhole` of the Sentinel lab's primary. failprobe's client is back within
/// detection plus promotion (down-after 1 s); `pinned` (no timeout of its own beyond the
/// probe's) stays stalled, on timeouts, not refusals, for the whole fault; the timeline names
/// the fault, the detection and the new primary; nothing is left and a foreign table is intact.
#[test]
fn blackhole_of_the_sentinel_primary_is_silent_and_healed() {
    blackhole_on(Server::Redis);
}

#[test]
fn blackhole_of_a_valkey_sentinel_primary_is_silent_and_healed() {
    blackhole_on(Server::Valkey);
}

fn blackhole_on(server: Server) {
    let _alone = alone();
    let lab = TestLab::start_on(Topology::Sentinel, server);
    let foreign = ForeignTable::new();
    let before = foreign.listing();
    let old = lab.primary_addr();
    let args = ["--trigger", "blackhole=6s", "--clients", "failprobe,pinned", "--max-trial", "15s"];
    let (o, out) = lab.run("blackhole", &args);
    assert_ne!(code(&o), 2, "{}", explain(&o));
    assert_nothing_left(&lab.lab_dir(), "after the run");
    assert_eq!(foreign.listing(), before, "a table failprobe did not make was changed");
    let s = summary(&out);
    let t = &s["trials"][0];
    let own = client(t, "failprobe");
    assert!(own["writes"]["recovered"].as_bool().unwrap(), "{}", own["writes"]);
    let own_outage = f(&own["writes"]["longest_outage_ms"]);
    assert!((500.0..5000.0).contains(&own_outage), "detection + promotion, not the fault: {own_outage} ms");
    assert!(u(&own["writes"]["errors"]["timeout"]) > 0, "{}", own["writes"]["errors"]);
    assert!(own["writes"]["errors"].get("refused").is_none(), "silent: no RST: {}", own["writes"]["errors"]);
    let pinned = client(t, "pinned");
    let stalled = &pinned["reads"];
    assert!(f(&stalled["longest_outage_ms"]) >= 5500.0, "pinned stalls for the whole fault: {stalled}");
    assert!(stalled["errors"].get("refused").is_none(), "{}", stalled["errors"]);
    let events = timeline(t);
    let has = |what: &str| events.iter().any(|e| e.contains(what));
    assert!(has(&format!("network fault blackhole on {old} injected")), "{events:?}");
    assert!(has(&format!("network fault blackhole on {old} healed")), "{events:?}");
    // The switch, from the sentinels' announcement or (first, on a loaded machine) from the
    // topology poll asking them: a primary other than the blackholed one.
    let switched =
        events.iter().any(|e| e.contains("+switch-master") || (e.starts_with("primary is") && !e.contains(&old)));
    assert!(has("failure detected by sentinel") && switched, "{events:?}");
}

/// A partition leaves the old primary reachable to its clients: `pinned` keeps writing into it
/// and loses what it wrote there. With `min-replicas-to-write 1` and a lag of 1 s the isolated
/// primary refuses writes (NOREPLICAS) soon after the cut, so far fewer are lost.
#[test]
fn a_partitioned_primary_keeps_acknowledging_unless_min_replicas_bounds_it() {
    let _alone = alone();
    let lost = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut args = vec!["run", "--lab-topology", "sentinel", "--quiet", "--warmup", "1s", "--settle", "1s"];
        args.extend(["--trigger", "partition=5s", "--clients", "failprobe,pinned", "--max-trial", "12s"]);
        args.extend(extra);
        args.extend(["--out", out.to_str().unwrap()]);
        let o = failprobe(&args);
        assert_ne!(code(&o), 2, "{}", explain(&o));
        let s = summary(&out);
        let t = &s["trials"][0];
        let pinned = client(t, "pinned").clone();
        let cut_ms = f(&t["trigger"]["started_at_ms"]);
        assert_nothing_left(&out.join("lab"), "after the run");
        (u(&pinned["integrity"]["lost_acked_writes"]), pinned, cut_ms)
    };
    let (unprotected, pinned, _) = lost(&[]);
    // 5 s of partition at 10 ms: the old primary took them all, and lost them at the heal; those
    // it took after Sentinel announced the new primary are split-brain writes.
    assert!(unprotected > 300, "writes acknowledged by the isolated primary and lost: {unprotected}");
    let split = u(&pinned["integrity"]["split_brain_writes"]);
    assert!(split > 100 && split <= unprotected, "split-brain {split} of {unprotected} lost: {}", pinned["integrity"]);
    let (protected, pinned, cut_ms) = lost(&["--min-replicas-to-write", "1", "--min-replicas-max-lag", "1s"]);
    assert!(u(&pinned["writes"]["errors"]["noreplicas"]) > 100, "{}", pinned["writes"]["errors"]);
    // The primary notices the missing replica within max-lag (1 s) plus its 1 s ping period:
    // what it acknowledged after that is none, so the split-brain window (if any) ends by then.
    assert!(protected < 300 && protected * 2 < unprotected, "protected {protected}, unprotected {unprotected}");
    let i = &pinned["integrity"];
    if let Some(last) = i.get("split_brain_last_ms").and_then(Value::as_f64) {
        assert!(last - cut_ms <= 2_500.0, "split-brain writes up to {last} ms, the cut at {cut_ms} ms: {i}");
    }
}

fn wait_for(path: &Path, text: &str, limit: Duration) {
    let until = Instant::now() + limit;
    while !std::fs::read_to_string(path).unwrap_or_default().contains(text) {
        assert!(Instant::now() < until, "{} never said {text}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every way out heals: SIGTERM and SIGINT while a fault is held (no duration: until the trial
/// ends), and a SIGKILLed run's table removed by `lab down` and by the next `lab up`.
#[test]
fn every_way_out_heals_the_network() {
    let _alone = alone();
    let tmp = tempfile::tempdir().unwrap();
    let lab_dir = tmp.path().join("lab");
    let up = |dir: &Path| {
        let o = failprobe(&["lab", "up", "--topology", "replica", "--dir", dir.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", explain(&o));
    };
    up(&lab_dir);
    let foreign = ForeignTable::new();
    let before = foreign.listing();
    let faulted = |name: &str, trigger: &str| {
        let out = tmp.path().join(name);
        let child = failprobe_command()
            .args(["run", "--lab", lab_dir.to_str().unwrap(), "--trigger", trigger, "--quiet", "--warmup", "1s"])
            .args(["--max-trial", "60s", "--out", out.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(&out.join("events.jsonl"), "\"injected\"", Duration::from_secs(30));
        assert!(leftovers(&lab_dir).0, "the fault is in place");
        child
    };
    for (signal, name) in [(libc::SIGTERM, "sigterm"), (libc::SIGINT, "sigint")] {
        let child = faulted(name, "blackhole");
        unsafe { libc::kill(child.id() as i32, signal) };
        let o = child.wait_with_output().unwrap();
        assert_eq!(code(&o), 2, "interrupted: {}", explain(&o));
        assert_nothing_left(&lab_dir, name);
        let events = std::fs::read_to_string(tmp.path().join(name).join("events.jsonl")).unwrap();
        assert!(events.contains("\"healed\""), "the heal is on the timeline: {events}");
    }
    // SIGKILL: nothing can run; `lab down` removes what it left.
    let mut child = faulted("sigkill", "partition");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(leftovers(&lab_dir).0, "a SIGKILLed run leaves its table");
    let o = failprobe(&["lab", "down", "--dir", lab_dir.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_nothing_left(&lab_dir, "lab down");
    // ... and so does the next `lab up` in the same directory.
    up(&lab_dir);
    let mut child = faulted("sigkill-again", "blackhole");
    child.kill().unwrap();
    child.wait().unwrap();
    // The servers outlive the run: stop them without `lab down`, as a reboot would.
    let lab = serde_json::from_str::<Value>(&std::fs::read_to_string(lab_dir.join("lab.json")).unwrap()).unwrap();
    for n in lab["nodes"].as_array().unwrap() {
        unsafe { libc::kill(u(&n["pid"]) as i32, libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(leftovers(&lab_dir).0);
    up(&lab_dir);
    assert_nothing_left(&lab_dir, "the next lab up");
    let o = failprobe(&["lab", "down", "--dir", lab_dir.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(foreign.listing(), before, "a table failprobe did not make was changed");
}

/// Without CAP_NET_ADMIN (root with it taken out of the bounding set) the trigger is refused
/// before anything runs, saying what is missing; and a network fault needs a lab.
#[test]
fn a_network_fault_without_the_privilege_or_a_lab_is_refused_before_anything_runs() {
    let lab = TestLab::start(Topology::Replica);
    let out = lab.out("unprivileged");
    let o = Command::new("setpriv")
        .args(["--bounding-set", "-net_admin", "--inh-caps", "-net_admin"])
        .arg(env!("CARGO_BIN_EXE_failprobe"))
        .args(["run", "--lab", lab.lab_dir().to_str().unwrap(), "--trigger", "blackhole", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("CAP_NET_ADMIN"), "{}", explain(&o));
    assert!(!out.exists(), "nothing was written");
    assert_nothing_left(&lab.lab_dir(), "a refused fault");
    let target = format!("redis://{}", lab.primary_addr());
    let o = failprobe(&[
        "run",
        "--target",
        &target,
        "--trigger",
        "partition",
        "--out",
        lab.out("no-lab").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("acts on a lab's network only"), "{}", explain(&o));
}

/// `netem=loss=P%`: a share of the primary's outgoing packets lost, the gray failure: probes
/// fail now and then (timeouts), nothing fails over, and the rule is gone afterwards.
#[test]
fn netem_loss_makes_a_gray_failure_and_is_removed() {
    let _alone = alone();
    let lab = TestLab::start(Topology::Replica);
    let (o, out) = lab.run("netem", &["--trigger", "netem=loss=30%,for=4s", "--max-trial", "15s"]);
    assert_ne!(code(&o), 2, "{}", explain(&o));
    assert_nothing_left(&lab.lab_dir(), "after netem");
    let t = &summary(&out)["trials"][0];
    let failed = u(&t["reads"]["failed"]) + u(&t["writes"]["failed"]);
    assert!(failed > 10, "lost packets show as failed probes: {}", t["reads"]);
    assert!(timeline(t).iter().any(|e| e.contains("loss 30%")), "{:?}", timeline(t));
}
