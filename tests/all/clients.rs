//! Client profiles side by side on a real Sentinel lab: what failprobe's own client sees next to
//! what an application written the common way sees.

use crate::common::*;
use failprobe::lab::Topology;
use std::collections::HashSet;

#[test]
fn profiles_that_do_not_fit_the_target_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cases = [
        ("memcache://127.0.0.1:1", "failprobe,redis-rs", "`redis-rs` client profile is for Redis targets"),
        ("memcache://127.0.0.1:1", "failprobe,pinned", "`pinned` client profile is for Redis targets"),
        ("redis://127.0.0.1:1", "failprobe,lettuce", "unknown client profile `lettuce`"),
    ];
    for (target, clients, why) in cases {
        let args = ["run", "--target", target, "--clients", clients, "--trigger", "none", "--quiet", "--out"];
        let o = failprobe(&[&args[..], &[out.to_str().unwrap()]].concat());
        assert_eq!(code(&o), 2, "{target} {clients}: {}", explain(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{target} {clients}: {}", explain(&o));
        assert!(!out.exists(), "nothing is recorded before the checks pass");
    }
    let args = ["run", "--target", "redis://127.0.0.1:1", "--budget-clients", "pinned", "--clients", "failprobe"];
    let o = failprobe(&[&args[..], &["--trigger", "none", "--quiet"]].concat());
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--budget-clients names `pinned`, which is not measured"));
}

#[test]
fn a_pinned_client_stays_on_the_demoted_primary_while_failprobe_recovers() {
    let lab = TestLab::start(Topology::Sentinel);
    let old_primary = lab.primary_port();
    let clients = "failprobe,pinned,redis-rs";
    let args = ["--trigger", "sentinel", "--clients", clients, "--budget-clients", "all", "--max-trial", "8s"];
    let (o, out) = lab.run("run", &args);
    // The pinned client never recovers: covered by the budget, it fails the run.
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let s = summary(&out);
    let t = &s["trials"][0];
    let clients = t["clients"].as_array().unwrap();
    let names: Vec<&str> = clients.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["failprobe", "pinned", "redis-rs"]);
    let (own, pinned) = (&clients[0], &clients[1]);
    // The redis crate's Sentinel support names the primary once; its ConnectionManager then
    // keeps to that address, reconnects there after the step-down and stays on READONLY.
    let crate_client = &clients[2];
    assert!(!crate_client["writes"]["recovered"].as_bool().unwrap(), "{}", crate_client["writes"]);
    assert!(u(&crate_client["writes"]["errors"]["readonly"]) > 50, "{}", crate_client["writes"]["errors"]);
    assert_eq!(own["writes"], t["writes"], "the trial's own figures are failprobe's");
    assert!(own["writes"]["recovered"].as_bool().unwrap());
    assert!(f(&own["writes"]["longest_outage_ms"]) < 1000.0, "{}", own["writes"]);
    assert!(!pinned["writes"]["recovered"].as_bool().unwrap(), "{}", pinned["writes"]);
    assert!(u(&pinned["writes"]["errors"]["readonly"]) > 50, "{}", pinned["writes"]["errors"]);
    // The old primary stepped down (Sentinel made it a replica) and it is on the timeline.
    let timeline: Vec<&str> = t["timeline"].as_array().unwrap().iter().map(|e| e["what"].as_str().unwrap()).collect();
    let step_down = format!("old primary {} stepped down (now slave)", lab.addr(old_primary));
    assert!(timeline.contains(&step_down.as_str()), "{timeline:?}");
    assert!(s["budget"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v.as_str().unwrap().contains("pinned writes")));
    // Each profile's writes are checked against its own log on the new primary.
    let run_id = s["run_id"].as_str().unwrap();
    let log: Vec<u64> = redis::cmd("LRANGE")
        .arg(format!("failprobe:{{{run_id}}}:t0:pinned:log"))
        .arg(0)
        .arg(-1)
        .query(&mut lab.conn(lab.primary_port()))
        .unwrap();
    let present: HashSet<u64> = log.into_iter().collect();
    let acked: Vec<u64> = acked_writes_of(&out, 0, Some("pinned"));
    let lost = acked.iter().filter(|s| !present.contains(s)).count() as u64;
    assert_eq!(u(&pinned["integrity"]["acked_writes"]), acked.len() as u64);
    assert_eq!(u(&pinned["integrity"]["lost_acked_writes"]), lost);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("client pinned: writes NOT RECOVERED"), "{text}");
    let phase = |c: &serde_json::Value, name: &str| {
        let p = c["phases"].as_array().unwrap().iter().find(|p| p["name"].as_str().unwrap().starts_with(name)).cloned();
        p.unwrap_or_else(|| panic!("no phase `{name}` in {}", c["phases"]))["at_ms"].as_f64()
    };
    let announced = phase(pinned, "new primary announced").expect("Sentinel's announcement is observed");
    let down = phase(pinned, "writes down").unwrap();
    // Down by the step-down (a probe that timed out on a loaded machine can put it earlier,
    // even before the announcement; never later).
    assert!(announced > 0.0 && down <= phase(pinned, "old primary stepped down").unwrap() + 300.0);
    let names: Vec<&str> = pinned["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"endpoint flipped"), "no endpoint in this lab: the phase is left out, {names:?}");
    assert!(text.contains("where the time went: trigger started +0 µs"), "{text}");
}

/// `scenarios/local-endpoint-failover.toml` (a 5 s lag, longer than the ~2-5 s the lab's old
/// primary takes to step down, so the order is fixed): the flip is on the timeline when the
/// endpoint made it, failprobe's own client follows it at once, `pinned` reconnects to the
/// demoted node and stays on READONLY; the run's own lab (and its endpoint process) is gone
/// afterwards.
#[test]
fn through_a_lagging_endpoint_failprobe_follows_the_flip_and_pinned_stays_on_readonly() {
    let _turn = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/local-endpoint-failover.toml");
    let clients = "--clients=failprobe,pinned,redis-rs";
    let args = ["run", scenario, clients, "--quiet", "--out", out.to_str().unwrap()];
    // The scenario names its clients; the test harness's FAILPROBE_CLIENTS must not win.
    let o = failprobe_command().args(args).env_remove("FAILPROBE_CLIENTS").output().unwrap();
    assert_eq!(code(&o), 1, "pinned never recovers and the budget covers all: {}", explain(&o));
    let s = summary(&out);
    let t = &s["trials"][0];
    let at = |what: &str| {
        let entry = t["timeline"].as_array().unwrap().iter().find(|e| e["what"].as_str().unwrap().contains(what));
        f(&entry.unwrap_or_else(|| panic!("no `{what}` in {}", t["timeline"]))["at_ms"])
    };
    let (finished, flipped) = (at("trigger finished"), at("flipped: new connections go to"));
    // The endpoint polls the sentinels every 100 ms, then waits the lag.
    assert!((5000.0..5600.0).contains(&(flipped - finished)), "flip {flipped} ms, trigger finished {finished} ms");
    let stepped_down = at("stepped down (now slave)");
    assert!(stepped_down < flipped, "the lab's old primary stepped down after the 5 s lag: {}", t["timeline"]);
    let (own, pinned) = (&t["clients"][0], &t["clients"][1]);
    assert!(own["writes"]["recovered"].as_bool().unwrap(), "{}", own["writes"]);
    // Down from the step-down (its connection closed, the endpoint still on the old node) to
    // the flip, then back at once: within 300 ms of the flip (reconnect back-off ≤ 200 ms).
    for o in own["writes"]["outages"].as_array().unwrap() {
        assert!(f(&o["end_ms"]) <= flipped + 300.0, "failprobe still down 300 ms after the flip: {o}");
    }
    assert!(!pinned["writes"]["recovered"].as_bool().unwrap(), "{}", pinned["writes"]);
    let last = pinned["writes"]["outages"].as_array().unwrap().last().unwrap().clone();
    assert!(f(&last["start_ms"]) <= stepped_down + 300.0, "{last}");
    assert!(u(&last["errors"]["readonly"]) > 100, "{last}");
    // Behind the endpoint failprobe sees no Sentinel announcement: not observed, not guessed.
    let phase = |name: &str| {
        let p = pinned["phases"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned();
        p.unwrap_or_else(|| panic!("no phase `{name}` in {}", pinned["phases"]))["at_ms"].as_f64()
    };
    assert_eq!(phase("new primary announced"), None);
    assert_eq!((phase("endpoint flipped"), phase("old primary stepped down")), (Some(flipped), Some(stepped_down)));
    // The redis crate's ConnectionManager with its defaults keeps its connection on READONLY, as
    // `pinned` does: reconnected to the demoted node when the step-down closed it, it stays.
    let redis_rs = &t["clients"][2];
    assert_eq!(redis_rs["name"], "redis-rs");
    assert!(!redis_rs["writes"]["recovered"].as_bool().unwrap(), "{}", redis_rs["writes"]);
    assert!(u(&redis_rs["writes"]["errors"]["readonly"]) > 100, "{}", redis_rs["writes"]);
    // Both wrote into the old primary until it stepped down: acknowledged, then lost.
    assert!(u(&own["integrity"]["lost_acked_writes"]) > 0, "{}", own["integrity"]);
    let lab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lab/lab.json")).unwrap()).unwrap();
    let endpoint = lab["nodes"].as_array().unwrap().iter().find(|n| n["kind"] == "endpoint").unwrap().clone();
    let pid = u(&endpoint["pid"]);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&cmdline).contains("endpoint"), "the endpoint process {pid} outlived its run");
}

/// Behind an endpoint with no lag every client fails at the old primary's step-down and is back
/// a moment later: the trial must last the settle time past the step-down, or it ends with
/// their outage unseen and their lost writes uncounted (it did: "recovered", lost 0, streams
/// NOT RECOVERED after a 30 ms outage).
#[test]
fn a_trial_settles_after_the_old_primary_steps_down() {
    let _turn = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = [
        "run",
        "--lab-topology",
        "endpoint",
        "--trigger",
        "sentinel",
        "--clients",
        "failprobe,pinned",
        "--settle",
        "1s",
        "--warmup",
        "2s",
        "--max-trial",
        "20s",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = failprobe_command().args(args).output().unwrap();
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let events: Vec<serde_json::Value> = std::fs::read_to_string(out.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |kind: &str| events.iter().find(|e| e["type"] == kind).map(|e| u(&e["at_us"]));
    let (stepped_down, ended) = (at("step_down").expect("the step-down is seen"), at("trial_end").unwrap());
    assert!(ended >= stepped_down + 1_000_000, "trial ended {} ms after the step-down", (ended - stepped_down) / 1000);
    let s = summary(&out);
    for c in s["trials"][0]["clients"].as_array().unwrap() {
        assert!(c["writes"]["recovered"].as_bool().unwrap() && c["reads"]["recovered"].as_bool().unwrap(), "{c}");
        assert!(u(&c["integrity"]["lost_acked_writes"]) > 0, "writes into the old primary until it stepped down: {c}");
    }
}
