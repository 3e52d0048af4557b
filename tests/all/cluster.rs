//! Redis Cluster: 3 primaries + 3 replicas on loopback, every shard probed at once.

use crate::common::*;
use failprobe::lab::{Server, Topology};
use serde_json::Value;

/// Six servers and a prober per test are a lot for a 2-core machine: a starved scheduler shows up
/// as outages on shards that were never touched. These tests have the machine to themselves.
fn turn() -> Alone {
    alone()
}

fn shards(s: &Value) -> &Vec<Value> {
    s["trials"][0]["shards"].as_array().expect("per-shard sections")
}

#[test]
fn cluster_failover_is_a_short_blip_on_its_shard_only() {
    cluster_failover_blip(Server::Redis);
}

#[test]
fn valkey_cluster_failover_is_a_short_blip_on_its_shard_only() {
    cluster_failover_blip(Server::Valkey);
}

fn cluster_failover_blip(server: Server) {
    let _turn = turn();
    let lab = TestLab::start_on(Topology::Cluster, server);
    let junit = lab.out("junit.xml");
    let (o, out) = lab.run(
        "run",
        &["--trigger", "cluster-failover", "--shard", "1", "--max-outage", "1s", "--junit", junit.to_str().unwrap()],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let junit = std::fs::read_to_string(junit).unwrap();
    for shard in ["shard0", "shard1", "shard2"] {
        assert!(junit.contains(&format!("trial0.{shard}\"")), "a JUnit case per shard: {junit}");
    }
    let s = summary(&out);
    let shards = shards(&s);
    assert_eq!(shards.len(), 3);
    for sh in shards {
        let name = sh["name"].as_str().unwrap();
        assert!(u(&sh["writes"]["probes"]) > 100, "{name} was probed");
        assert_eq!(u(&sh["integrity"]["lost_acked_writes"]), 0, "{name}");
        assert_eq!(sh["integrity"]["checked"], true);
        let longest = f(&sh["writes"]["longest_outage_ms"]);
        if name == "shard1" {
            // A manual failover pauses the old primary's clients until the replica took over:
            // tens to a few hundred ms here; well under a second.
            assert!(longest < 1000.0, "shard1 write outage {longest} ms");
        } else {
            // Other shards keep their slots. Under load on 2 cores a node may still answer
            // CLUSTERDOWN for a moment while the cluster state converges (seen: 1-2 probes,
            // ~20 ms, in 2 of 5 suite runs; never when run alone): at most that, nothing else.
            for stream in ["writes", "reads"] {
                for o in sh[stream]["outages"].as_array().unwrap() {
                    let classes: Vec<&String> = o["errors"].as_object().unwrap().keys().collect();
                    assert_eq!(classes, ["clusterdown"], "{name} {stream}: only a CLUSTERDOWN blip: {o}");
                    assert!(f(&o["duration_ms"]) < 200.0, "{name} {stream} must not see an outage: {o}");
                }
            }
        }
    }
    let topology = s["trials"][0]["topology"].as_array().unwrap();
    assert!(topology.len() >= 2, "slot owner change on the timeline: {topology:?}");
    let (first, last) =
        (topology[0]["primary"].as_str().unwrap(), topology.last().unwrap()["primary"].as_str().unwrap());
    let shard1 = |layout: &str| layout.split_whitespace().find(|p| p.starts_with("shard1=")).unwrap().to_string();
    assert_ne!(shard1(first), shard1(last));
}

#[test]
fn cluster_kill_of_a_shard_primary_is_an_outage_of_seconds_on_that_shard() {
    let _turn = turn();
    let lab = TestLab::start(Topology::Cluster);
    // Beside failprobe, the redis crate's own async ClusterClient (it never settles here, so the
    // trial lasts --max-trial).
    let args = ["--trigger", "kill", "--shard", "0", "--max-trial", "8s", "--clients", "failprobe,redis-rs"];
    let (o, out) = lab.run("run", &args);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let shards = shards(&s);
    let shard0 = &shards[0];
    assert_eq!(shard0["writes"]["recovered"], true);
    let longest = f(&shard0["writes"]["longest_outage_ms"]);
    assert!((1500.0..=4000.0).contains(&longest), "shard0 write outage {longest} ms, expected 1.5-4 s");
    assert!(shard0["writes"]["errors"]["refused"].as_u64().unwrap_or(0) > 0, "{}", shard0["writes"]["errors"]);
    // The other shards: whatever they saw is reported (CLUSTERDOWN while slots are uncovered).
    for sh in &shards[1..] {
        assert_eq!(sh["writes"]["recovered"], true);
        for o in sh["writes"]["outages"].as_array().unwrap() {
            assert!(o["errors"].as_object().unwrap().keys().all(|k| k == "clusterdown" || k == "tryagain"), "{o}");
        }
    }
    // The whole cluster was down at least as long as its worst shard.
    let t = &s["trials"][0];
    assert!(f(&t["writes"]["longest_outage_ms"]) >= longest);
    // Where the time went: the cluster flagged the primary FAIL (node timeout 1 s, seen by a
    // CLUSTER NODES poll every second) before the replica took over.
    let (own, crate_client) = (&t["clients"][0], &t["clients"][1]);
    let phase = |c: &serde_json::Value, name: &str| {
        c["phases"].as_array().unwrap().iter().find(|p| p["name"] == name).and_then(|p| p["at_ms"].as_f64())
    };
    let killed = phase(own, "trigger started").unwrap();
    let detected = phase(own, "failure detected").expect("cluster FAIL observed");
    assert!((900.0..4000.0).contains(&(detected - killed)), "FAIL {} ms after the kill", detected - killed);
    assert!(t["timeline"].as_array().unwrap().iter().any(|e| e["what"].as_str().unwrap().contains("flagged fail")));
    // The crate's client: its GETs are back once the replica took over; its writes (MULTI/EXEC)
    // meet MOVED inside the aborted transaction, which it neither follows nor learns from.
    assert_eq!(crate_client["name"], "redis-rs");
    assert_eq!(crate_client["reads"]["recovered"], true, "{}", crate_client["reads"]);
    assert!(u(&crate_client["writes"]["errors"]["moved"]) > 0, "{}", crate_client["writes"]["errors"]);
}

#[test]
fn cluster_failover_of_a_shard_without_replica_is_refused_before_anything_is_written() {
    let _turn = turn();
    let lab = TestLab::start(Topology::Cluster);
    // Kill shard 2's replica and wait until the cluster has marked it failed (node timeout 1 s):
    // CLUSTER SLOTS then lists no replica for that shard.
    let shard2_primary = {
        let mut c = lab.conn(lab.primary_port());
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).unwrap();
        let owner_of_last = slots
            .iter()
            .find_map(|r| match r {
                redis::Value::Array(p) if redis::from_redis_value_ref::<i64>(&p[1]).ok() == Some(16383) => {
                    Some(p.clone())
                }
                _ => None,
            })
            .unwrap();
        let node = |v: &redis::Value| match v {
            redis::Value::Array(n) => redis::from_redis_value_ref::<i64>(&n[1]).unwrap() as u16,
            _ => panic!("node"),
        };
        let replica = node(&owner_of_last[3]);
        let pid = lab.lab.pid_of_port(replica).unwrap();
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        node(&owner_of_last[2])
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut lab.conn(shard2_primary)).unwrap();
        let unreplicated = slots.iter().any(|r| matches!(r, redis::Value::Array(p) if p.len() == 3));
        if unreplicated {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the cluster never marked the replica failed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = lab.out("run");
    let o = failprobe(&[
        "run",
        "--target",
        &lab.lab.target_url(),
        "--trigger",
        "cluster-failover",
        "--shard",
        "2",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("shard 2"), "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no replica"), "{}", explain(&o));
    assert!(!out.exists(), "nothing may be written");
}

#[test]
fn a_shard_that_does_not_exist_is_refused_before_anything_is_written() {
    let _turn = turn();
    let lab = TestLab::start(Topology::Cluster);
    let (o, out) = lab.run("run", &["--trigger", "cluster-failover", "--shard", "7"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no shard 7"), "{}", explain(&o));
    assert!(!out.exists(), "nothing may be written");
    let (o, _) = lab.run("run", &["--trigger", "sentinel"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    // SHUTDOWN … FAILOVER is Valkey 9's: refused on Redis 7 before anything is written.
    let (o, out) = lab.run("shutdown", &["--trigger", "shutdown-failover", "--yes"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs Valkey 9.0 or later"), "{}", explain(&o));
    assert!(!out.exists(), "nothing may be written");
}

/// Valkey 9's `SHUTDOWN FAILOVER` on a shard's primary: it hands its slots to its replica and
/// exits (the lab starts it again between trials). Nothing acknowledged is lost, the other
/// shards keep serving.
#[test]
fn valkey_shutdown_failover_hands_the_shard_over_without_loss() {
    let _turn = turn();
    let lab = TestLab::start_on(Topology::Cluster, Server::Valkey);
    let args = ["--trigger", "shutdown-failover", "--shard", "1", "--repeat", "2", "--yes", "--max-lost-writes", "0"];
    let (o, out) = lab.run("run", &args);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    for t in s["trials"].as_array().unwrap() {
        let fired = t["timeline"].as_array().unwrap().iter().any(|e| {
            let what = e["what"].as_str().unwrap();
            what.starts_with("trigger finished: SHUTDOWN FAILOVER on") && what.contains("is now the primary")
        });
        assert!(fired, "{}", t["timeline"]);
    }
    for sh in s["trials"].as_array().unwrap().iter().flat_map(|t| t["shards"].as_array().unwrap()) {
        let name = sh["name"].as_str().unwrap();
        assert_eq!(u(&sh["integrity"]["lost_acked_writes"]), 0, "{name}");
        assert_eq!(sh["writes"]["recovered"], true, "{name}");
        let longest = f(&sh["writes"]["longest_outage_ms"]);
        eprintln!("{name}: longest write outage {longest} ms");
        if name == "shard1" {
            // Measured 0.8-1.7 s: the old primary closes its connections when it exits, and a
            // client finds the new owner at its next slot-map refresh.
            assert!(longest < 5000.0, "shard1 write outage {longest} ms");
        }
    }
}
