//! End to end against real redis-server / redis-sentinel processes on loopback.

use crate::common::*;
use failprobe::lab::{Server, Topology};
use std::collections::HashSet;

#[test]
fn no_fault_means_no_outage_no_loss_exit_0() {
    let lab = TestLab::start(Topology::Replica);
    let (o, out) =
        lab.run("run", &["--trigger", "none", "--duration", "2s", "--max-outage", "1ms", "--max-lost-writes", "0"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let t = &s["trials"][0];
    for stream in ["writes", "reads"] {
        assert_eq!(u(&t[stream]["failed"]), 0, "{stream}");
        assert!(u(&t[stream]["probes"]) >= 150, "2 s at 10 ms: {}", t[stream]["probes"]);
        assert!(t[stream]["outages"].as_array().unwrap().is_empty());
        assert!(f(&t[stream]["latency_ms"]["p50"]) > 0.0);
    }
    assert_eq!(t["integrity"]["checked"], true);
    assert_eq!(u(&t["integrity"]["lost_acked_writes"]), 0);
    assert_eq!(u(&t["integrity"]["stale_reads"]), 0);
    assert_eq!(u(&t["integrity"]["acked_writes"]), u(&t["writes"]["ok"]));
    assert_eq!(s["budget"]["passed"], true);
}

#[test]
fn pause_of_the_primary_is_one_outage_of_the_pause_length() {
    let lab = TestLab::start(Topology::Replica);
    let (o, out) = lab.run("run", &["--trigger", "pause=1.5s", "--interval", "5ms"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let t = &summary(&out)["trials"][0];
    // Tolerance: one interval (5 ms) + 25 ms for reconnect and scheduling on a busy 2-core CI.
    for stream in ["writes", "reads"] {
        let outages = t[stream]["outages"].as_array().unwrap();
        assert_eq!(outages.len(), 1, "{stream}: {outages:?}");
        let d = f(&outages[0]["duration_ms"]);
        assert!((d - 1500.0).abs() <= 30.0, "{stream} outage {d} ms, expected 1500 ± 30");
        assert_eq!(outages[0]["recovered"], true);
        assert!(u(&outages[0]["errors"]["timeout"]) > 0, "{stream}: {:?}", outages[0]["errors"]);
    }
    assert_eq!(u(&t["integrity"]["lost_acked_writes"]), 0);
}

#[test]
fn sentinel_failover_loses_writes_and_failprobe_counts_them_exactly() {
    let lab = TestLab::start(Topology::Sentinel);
    let old_primary = lab.primary_port();
    let (o, out) = lab.run("run", &["--trigger", "sentinel"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let t = &s["trials"][0];
    let new_primary = lab.primary_port();
    assert_ne!(new_primary, old_primary);
    let topology = t["topology"].as_array().unwrap();
    let last = topology.last().unwrap()["primary"].as_str().unwrap();
    assert_eq!(last, lab.addr(new_primary), "{topology:?}");
    assert!(t["trigger"]["finished_at_ms"].is_number());

    // Read the log on the new primary ourselves and compare.
    let run_id = s["run_id"].as_str().unwrap();
    let log: Vec<u64> = redis::cmd("LRANGE")
        .arg(format!("failprobe:{{{run_id}}}:t0:log"))
        .arg(0)
        .arg(-1)
        .query(&mut lab.conn(new_primary))
        .unwrap();
    let present: HashSet<u64> = log.into_iter().collect();
    let acked = acked_writes(&out, 0);
    let lost = acked.iter().filter(|s| !present.contains(s)).count() as u64;
    let i = &t["integrity"];
    assert_eq!(u(&i["acked_writes"]), acked.len() as u64);
    assert_eq!(u(&i["lost_acked_writes"]), lost);
    assert_eq!(u(&i["acked_writes"]), u(&i["surviving_acked_writes"]) + u(&i["lost_acked_writes"]));
}

#[test]
fn kill_of_the_primary_with_sentinel_recovers_in_seconds() {
    let lab = TestLab::start(Topology::Sentinel);
    let (o, out) = lab.run("run", &["--trigger", "kill", "--max-outage", "10s"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let t = &summary(&out)["trials"][0];
    let w = &t["writes"];
    assert_eq!(w["recovered"], true);
    let longest = f(&w["longest_outage_ms"]);
    assert!((1000.0..=4000.0).contains(&longest), "write outage {longest} ms, expected 1-4 s");
    assert!(w["errors"]["refused"].as_u64().unwrap_or(0) > 0, "{:?}", w["errors"]);
    // Where the time went: the sentinels' +odown (down-after 1 s) after the kill, then the new
    // primary; the writes came back after both.
    let phases = t["clients"][0]["phases"].as_array().unwrap();
    let at = |name: &str| phases.iter().find(|p| p["name"] == name).and_then(|p| p["at_ms"].as_f64());
    let (killed, detected) = (at("trigger started").unwrap(), at("failure detected").expect("+odown observed"));
    assert!((900.0..3000.0).contains(&(detected - killed)), "+odown {} ms after the kill", detected - killed);
    let announced = at("new primary announced").unwrap();
    assert!(detected <= announced && announced <= at("writes recovered").unwrap() + 1000.0, "{phases:?}");
}

#[test]
fn kill_without_sentinel_is_unrecovered_and_fails_the_budget() {
    let lab = TestLab::start(Topology::Replica);
    let (o, out) = lab.run("run", &["--trigger", "kill", "--max-outage", "1s", "--max-trial", "3s"]);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let s = summary(&out);
    let w = &s["trials"][0]["writes"];
    assert_eq!(w["recovered"], false);
    let outages = w["outages"].as_array().unwrap();
    assert_eq!(outages.last().unwrap()["recovered"], false);
    assert!(f(&w["longest_outage_ms"]) >= 2500.0);
    assert_eq!(s["budget"]["passed"], false);
    assert!(!s["budget"]["violations"].as_array().unwrap().is_empty());
}

#[test]
fn failover_run_leaves_other_keys_untouched() {
    let lab = TestLab::start(Topology::Sentinel);
    let primary = lab.primary_port();
    let mut conn = lab.conn(primary);
    let value = |i: u32| -> Vec<u8> { (0..64u32).map(|j| ((i * 31 + j * 7) % 256) as u8).collect() };
    for i in 0..1000u32 {
        let _: () = redis::cmd("SET").arg(format!("app:{i}")).arg(value(i)).query(&mut conn).unwrap();
    }
    let _: () = redis::cmd("WAIT").arg(1).arg(2000).query(&mut conn).map(|_: i64| ()).unwrap();
    let (o, out) = lab.run("run", &["--trigger", "sentinel"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    assert_eq!(s["trials"][0]["keyspace"]["before"], 1000);
    assert_eq!(s["trials"][0]["keyspace"]["after"], 1000);

    let mut conn = lab.conn(lab.primary_port());
    for i in 0..1000u32 {
        let got: Vec<u8> = redis::cmd("GET").arg(format!("app:{i}")).query(&mut conn).unwrap();
        assert_eq!(got, value(i), "app:{i} changed");
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    for k in keys {
        if k.starts_with("app:") {
            continue;
        }
        assert!(k.starts_with("failprobe:{"), "failprobe created {k} outside its namespace");
        let ttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut conn).unwrap();
        assert!(ttl > 0, "{k} has no TTL");
    }
}

/// `--write-ack wait=1`: a write counts once WAIT says the replica has it, in the same round
/// trip. Through a Sentinel failover that makes every acknowledged write one the new primary
/// already held: none is lost, where plain writes lose those the old primary took last. Writes
/// the demoted primary took alone fail as `ack-timeout` instead of being acknowledged.
#[test]
fn sentinel_failover_with_wait_1_loses_no_acknowledged_write() {
    let lab = sentinel_failover_with_and_without_wait(Server::Redis);
    // COORDINATED is Valkey 9's: refused on Redis before anything is written or fired.
    let (o, out) = lab.run("coordinated", &["--trigger", "sentinel=coordinated"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs Valkey 9.0 or later on every sentinel") && err.contains("runs redis 7."), "{err}");
    assert!(!out.exists(), "nothing may be written");
}

/// Valkey 9: the plain SENTINEL FAILOVER and WAIT 1 as on Redis, then `SENTINEL FAILOVER …
/// COORDINATED` (built on FAILOVER: writes paused until the replica caught up) over two trials.
#[test]
fn valkey_sentinel_failover_plain_wait_1_and_coordinated() {
    let lab = sentinel_failover_with_and_without_wait(Server::Valkey);
    // The `pinned` client would stay on READONLY for --max-trial (FAILOVER closes no client).
    let args =
        ["--trigger", "sentinel=coordinated", "--repeat", "2", "--clients", "failprobe", "--max-lost-writes", "0"];
    let (o, out) = lab.run("coordinated", &args);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    for t in s["trials"].as_array().unwrap() {
        let fired = t["timeline"].as_array().unwrap().iter().any(|e| {
            e["what"].as_str().unwrap().starts_with("trigger finished: SENTINEL FAILOVER failprobe COORDINATED")
        });
        assert!(fired, "{}", t["timeline"]);
        assert_eq!(t["writes"]["recovered"], true, "{}", t["writes"]);
        assert!(u(&t["integrity"]["acked_writes"]) > 100, "{}", t["integrity"]);
        assert_eq!(u(&t["integrity"]["lost_acked_writes"]), 0, "{}", t["integrity"]);
        eprintln!("coordinated: writes down {} ms", f(&t["writes"]["longest_outage_ms"]));
    }
}

/// SENTINEL FAILOVER plain, then with `--write-ack wait=1` (no acknowledged write lost), both
/// loss figures side by side in compare. Returns the lab for more runs.
fn sentinel_failover_with_and_without_wait(server: Server) -> TestLab {
    let lab = TestLab::start_on(Topology::Sentinel, server);
    let (plain, plain_out) = lab.run("plain", &["--trigger", "sentinel"]);
    assert_eq!(code(&plain), 0, "{}", explain(&plain));
    let (o, out) = lab.run("wait", &["--trigger", "sentinel", "--write-ack", "wait=1", "--max-lost-writes", "0"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    assert_eq!(s["probe"]["write_ack"], "wait=1:200ms");
    assert_eq!(summary(&plain_out)["probe"]["write_ack"], "plain");
    let i = &s["trials"][0]["integrity"];
    assert!(u(&i["acked_writes"]) > 100, "{i}");
    assert_eq!(u(&i["lost_acked_writes"]), 0, "{i}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("acknowledged after wait=1:200ms"));
    // Both loss figures side by side.
    let html = out.with_file_name("compare.html");
    let cmp =
        failprobe(&["compare", plain_out.to_str().unwrap(), out.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&cmp.stdout);
    let row =
        text.lines().find(|l| l.starts_with("lost acknowledged writes (total)")).unwrap_or_else(|| panic!("{text}"));
    let figures: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(figures[5], "0", "B (wait=1) lost none: {row}");
    eprintln!("{row}");
    lab
}
