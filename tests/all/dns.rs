//! DNS on the timeline and the `dns-cache=D` profile, against a real DNS server on loopback
//! (hickory-server) and a primary/replica pair on two loopback addresses sharing a port, so a
//! name's answer decides which node a client reaches (as with a managed primary endpoint).

use crate::common::dns::DnsServer;
use crate::common::*;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

const OLD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const NEW: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn linked(ip: Ipv4Addr, port: u16) -> bool {
    let client = redis::Client::open(format!("redis://{ip}:{port}")).unwrap();
    let Ok(mut conn) = client.get_connection() else { return false };
    let info: String = redis::cmd("INFO").arg("replication").query(&mut conn).unwrap_or_default();
    info.contains("master_link_status:up")
}

fn events(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn at_ms(e: &Value) -> f64 {
    f(&e["at_us"]) / 1000.0
}

/// When the client's write stream was last seen recovering in the trial (its last outage's end).
fn writes_recovered_ms(client: &Value) -> f64 {
    let w = &client["writes"];
    assert_eq!(w["recovered"], true, "{} did not recover: {w}", client["name"]);
    f(&w["outages"].as_array().unwrap().last().expect("an outage")["end_ms"])
}

#[test]
fn a_dns_flip_is_on_the_timeline_failprobe_follows_it_and_dns_cache_waits_out_its_cache() {
    let _turn = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let port = port_free_on_both(OLD, NEW);
    let _old = redis_on(dir.path(), OLD, port, None);
    let _new = redis_on(dir.path(), NEW, port, Some(OLD));
    for _ in 0..200 {
        if linked(NEW, port) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(linked(NEW, port), "the replica on {NEW} never synced within 10 s");

    // TTL 1 s: the answer itself is short-lived; a client that keeps it 5 s does so on its own.
    let dns = Arc::new(DnsServer::start("db", OLD, 1));
    let flip_file = dir.path().join("flip");
    let flipped = dns.flip_when_created(&flip_file, NEW);
    // The planned failover an endpoint's owner does: promote, demote, and 200 ms later the
    // name follows (the DNS update trails the promotion, as on a managed endpoint).
    let trigger = format!(
        "command=redis-cli -h {NEW} -p {port} REPLICAOF NO ONE >/dev/null && \
         redis-cli -h {OLD} -p {port} REPLICAOF {NEW} {port} >/dev/null && sleep 0.2 && touch {}",
        flip_file.display()
    );
    let out = dir.path().join("run");
    let mut cmd = failprobe_command();
    cmd.args(["run", "--target", &format!("redis://{}:{port}", dns.name)])
        .args(["--dns-server", &dns.addr.to_string(), "--clients", "failprobe,dns-cache=5s"])
        .args(["--trigger", &trigger, "--yes", "--quiet", "--warmup", "6s", "--settle", "1s", "--max-trial", "12s"])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null());
    let o = cmd.output().unwrap();
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(flipped.join().unwrap().is_some(), "the trigger never asked for the flip");

    let events = events(&out);
    let finished = events.iter().find(|e| e["type"] == "trigger_finish").map(at_ms).expect("trigger finished");
    // The command exits right after `touch`; the test's server flips within 2 ms of it.
    let flip_ms = finished;
    let answers: Vec<&Value> = events.iter().filter(|e| e["type"] == "dns_answer").collect();
    assert_eq!(answers.first().unwrap()["to"], OLD.to_string(), "{answers:?}");
    assert_eq!(answers.first().unwrap()["ttl_s"], 1);
    let change = answers.iter().find(|e| e["from"] == OLD.to_string()).expect("the flip on the timeline");
    assert_eq!(change["to"], NEW.to_string());
    assert!(change["name"].as_str().unwrap().starts_with("db.failprobe.test"));
    // Asked every second: seen within the second after it happened (+ a lookup's time).
    let seen_after = at_ms(change) - flip_ms;
    assert!((-20.0..1300.0).contains(&seen_after), "flip seen {seen_after} ms after it happened");

    let s = summary(&out);
    let clients = s["trials"][0]["clients"].as_array().unwrap();
    let (own, cached) = (&clients[0], &clients[1]);
    assert_eq!(own["name"], "failprobe");
    assert_eq!(cached["name"], "dns-cache=5s");
    // failprobe asks the server on every reconnect: back within its reconnect backoff (≤ 200 ms)
    // of the flip.
    let own_back = writes_recovered_ms(own) - flip_ms;
    assert!((-20.0..500.0).contains(&own_back), "failprobe back {own_back} ms after the flip");
    // dns-cache=5s looked the name up when its connection first failed, at the demotion (the
    // old answer, ~200 ms before the flip), and kept it 5 s: back 5 s after that lookup, so
    // 4.8-6 s after the flip and 5-6 s after the trigger started.
    let started = events.iter().find(|e| e["type"] == "trigger_start").map(at_ms).unwrap();
    let cached_back = writes_recovered_ms(cached);
    assert!(
        (4800.0..6000.0).contains(&(cached_back - flip_ms)),
        "dns-cache back {} ms after the flip",
        cached_back - flip_ms
    );
    assert!(
        (5000.0..6000.0).contains(&(cached_back - started)),
        "dns-cache back {} ms after the trigger",
        cached_back - started
    );
    eprintln!(
        "flip seen +{seen_after:.0} ms; failprobe back +{own_back:.0} ms; dns-cache=5s back +{:.0} ms after the flip",
        cached_back - flip_ms
    );
    let phases = cached["phases"].as_array().unwrap();
    assert!(phases.iter().any(|p| p["name"] == "DNS answer changed" && p["at_ms"].is_number()), "{phases:?}");
    // Its errors while it waited: it reached the demoted node (READONLY, or ROLE refusing it).
    let errors = &cached["writes"]["errors"];
    assert!(errors["readonly"].as_u64().unwrap_or(0) > 0, "{errors}");
}

#[test]
fn dns_server_is_checked_and_never_reaches_redis_rs() {
    let bad = failprobe(&["run", "--target", "redis://db.failprobe.test:6379", "--dns-server", "not-an-address"]);
    assert_eq!(code(&bad), 2, "{}", explain(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--dns-server `not-an-address`"), "{}", explain(&bad));
    let rs = failprobe(&[
        "run",
        "--target",
        "redis://db.failprobe.test:6379",
        "--dns-server",
        "127.0.0.1:5353",
        "--clients",
        "failprobe,redis-rs",
    ]);
    assert_eq!(code(&rs), 2, "{}", explain(&rs));
    assert!(String::from_utf8_lossy(&rs.stderr).contains("redis-rs"), "{}", explain(&rs));
    let mc = failprobe(&["run", "--target", "memcache://cache.failprobe.test:11211", "--dns-server", "127.0.0.1:5353"]);
    assert_eq!(code(&mc), 2, "{}", explain(&mc));
    assert!(String::from_utf8_lossy(&mc.stderr).contains("memcached"), "{}", explain(&mc));
}
