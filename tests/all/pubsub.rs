//! Issue 24: `--probe pubsub` on the Sentinel lab. failprobe publishes a numbered message on each
//! client's channel on the probe clock; each client's subscriber records what it receives. The
//! figures in summary.json are checked against samples.csv counted again here, and the
//! subscriptions against the timeline.

use crate::common::*;
use failprobe::lab::Topology;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// The client's acknowledged publishes and the messages its subscriber received (with the
/// number of receipts), from samples.csv.
fn publishes_and_deliveries(dir: &Path, client: &str) -> (BTreeSet<u64>, Vec<u64>) {
    let mut r = csv::Reader::from_path(dir.join("samples.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (stream, seq, outcome, c) = (col("stream"), col("seq"), col("outcome"), col("client"));
    let own = if client == "failprobe" { "" } else { client };
    let (mut acked, mut delivered) = (BTreeSet::new(), Vec::new());
    for rec in r.records().map(|r| r.unwrap()).filter(|r| &r[c] == own) {
        let n: u64 = rec[seq].parse().unwrap();
        match &rec[stream] {
            "publish" if &rec[outcome] == "ok" => {
                acked.insert(n);
            }
            "deliver" => delivered.push(n),
            _ => {}
        }
    }
    (acked, delivered)
}

fn pubsub_of<'a>(s: &'a Value, client: &str) -> &'a Value {
    let clients = s["trials"][0]["clients"].as_array().unwrap();
    let c = clients.iter().find(|c| c["name"] == client).unwrap_or_else(|| panic!("{client} in {clients:?}"));
    &c["pubsub"]
}

#[test]
fn a_subscriber_through_a_sentinel_failover_resubscribes_and_its_gap_is_counted_exactly() {
    let lab = TestLab::start(Topology::Sentinel);
    let old = lab.primary_addr();
    let (o, out) = lab.run(
        "failover",
        &["--trigger", "sentinel", "--clients", "failprobe", "--probe", "pubsub", "--max-lost-messages", "100000"],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let p = pubsub_of(&s, "failprobe");
    // Counted again from the samples: the acknowledged publishes from its first delivery on
    // that it never received.
    let (acked, delivered) = publishes_and_deliveries(&out, "failprobe");
    let received: BTreeSet<u64> = delivered.iter().copied().collect();
    let first = *received.first().expect("the subscriber received messages");
    let missed = acked.iter().filter(|n| **n >= first && !received.contains(n)).count() as u64;
    assert_eq!(u(&p["missed"]), missed, "{p}");
    assert_eq!(u(&p["delivered"]), received.len() as u64, "{p}");
    assert_eq!(u(&p["duplicates"]), (delivered.len() - received.len()) as u64, "{p}");
    assert_eq!(u(&p["acknowledged"]), acked.len() as u64, "{p}");
    assert!(received.len() > 100, "a subscriber for the whole trial at 10 ms: {p}");
    // Sentinel closes the demoted primary's subscribers: the subscription was lost, made again.
    assert_eq!(p["resubscribed"], true, "{p}");
    assert!(u(&p["subscriptions_lost"]) >= 1, "{p}");
    let without = f(&p["longest_without_subscription_ms"]);
    assert!(without > 0.0 && without < 5_000.0, "{p}");
    // A gap of N messages lasts at least N intervals of the publish clock.
    let interval_ms = f(&s["probe"]["interval_ms"]);
    assert!(f(&p["longest_gap_ms"]) >= u(&p["longest_gap_messages"]) as f64 * interval_ms - 0.01, "{p}");
    assert!(u(&p["longest_gap_messages"]) <= missed, "{p}");
    // Made again on the new primary, after it lost the old one.
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let subscriptions: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "subscription")
        .collect();
    let lost = subscriptions.iter().position(|e| e["subscribed"] == false).expect("a loss on the timeline");
    let again = subscriptions[lost..].iter().find(|e| e["subscribed"] == true).expect("subscribed again");
    assert_eq!(subscriptions[0]["server"], old.as_str(), "first on the old primary: {subscriptions:?}");
    assert_ne!(again["server"], old.as_str(), "again elsewhere than the old primary: {subscriptions:?}");
    let check = s["budget"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains("--max-lost-messages")));
    let check = check.unwrap_or_else(|| panic!("{}", s["budget"]));
    assert_eq!(check["measured"], format!("{missed} acknowledged messages missed"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("pub/sub"), "{}", explain(&o));
}

#[test]
fn a_subscriber_pinned_to_a_killed_primary_is_reported_never_resubscribed_to_the_end() {
    let lab = TestLab::start(Topology::Sentinel);
    let (o, out) = lab.run(
        "killed",
        &["--trigger", "kill", "--clients", "failprobe,pinned", "--probe", "pubsub", "--max-trial", "6s"],
    );
    // pinned is outside the budget: failprobe's own recovery decides the exit code.
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let pinned = pubsub_of(&s, "pinned");
    assert_eq!(pinned["resubscribed"], false, "{pinned}");
    let (acked, delivered) = publishes_and_deliveries(&out, "pinned");
    let last = *delivered.iter().max().expect("pinned received messages before the kill");
    let to_the_end = acked.iter().filter(|n| **n > last).count() as u64;
    assert!(to_the_end > 100, "publishes went on after the kill: {pinned}");
    assert_eq!(u(&pinned["missed_at_end"]), to_the_end, "{pinned}");
    let own = pubsub_of(&s, "failprobe");
    assert_eq!(own["resubscribed"], true, "{own}");
    let headline = s["verdict"]["headline"].as_str().unwrap();
    assert!(headline.contains("pinned") && headline.contains("subscriber NOT RESUBSCRIBED"), "{headline}");
    assert!(headline.contains(&format!("missed {} messages", u(&pinned["missed"]))), "{headline}");
}

#[test]
fn pubsub_where_nothing_would_be_measured_is_refused_before_anything_runs() {
    let cases = [
        ("redis+cluster://127.0.0.1:1", "failprobe", "does not probe a cluster yet"),
        ("memcache://127.0.0.1:1", "failprobe", "memcached has no pub/sub"),
        ("redis://127.0.0.1:1", "failprobe,redis-rs", "the `redis-rs` client profile cannot subscribe yet"),
    ];
    for (target, clients, why) in cases {
        let o = failprobe(&["run", "--target", target, "--clients", clients, "--probe", "pubsub", "--trigger", "none"]);
        assert_eq!(code(&o), 2, "{target}: {}", explain(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{target}: {}", explain(&o));
    }
}

/// Protocol 2: each adapter subscribes with its own library. The ready adapters' subscriptions
/// are recorded through the failover (how many messages each missed is its library's, printed);
/// deaf.py's listener dies with its connection and is reported never resubscribed, with the
/// messages it missed to the end. A protocol-1 adapter cannot subscribe:
/// the run says so rather than measure nothing for it.
#[test]
fn adapters_subscribe_with_their_library_and_one_that_never_resubscribes_is_named() {
    let lab = TestLab::start(Topology::Sentinel);
    let root = env!("CARGO_MANIFEST_DIR");
    let python = format!("{root}/adapters/.venv/bin/python");
    let redis_py = format!("exec:redis-py={root}/adapters/redis-py/run");
    let deaf = format!("exec:deaf={python} {root}/tests/adapters/deaf.py");
    let ready = ["ioredis", "node-redis", "go-redis"].map(|a| format!("exec:{a}={root}/adapters/{a}/run"));
    let mut args = vec!["--trigger", "sentinel", "--probe", "pubsub", "--clients", "failprobe"];
    for exec in [&redis_py, &deaf].into_iter().chain(&ready) {
        args.extend(["--clients", exec.as_str()]);
    }
    let (o, out) = lab.run("adapters", &args);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let deafened = pubsub_of(&s, "deaf");
    assert_eq!(deafened["resubscribed"], false, "{deafened}");
    let (acked, delivered) = publishes_and_deliveries(&out, "deaf");
    let last = *delivered.iter().max().expect("deaf received messages before the failover");
    assert_eq!(u(&deafened["missed_at_end"]), acked.iter().filter(|n| **n > last).count() as u64, "{deafened}");
    assert!(u(&deafened["missed_at_end"]) > 0, "{deafened}");
    let headline = s["verdict"]["headline"].as_str().unwrap();
    let deaf_clause = headline.split("; deaf ").nth(1).unwrap_or_default();
    assert!(deaf_clause.contains("subscriber NOT RESUBSCRIBED"), "{headline}");
    for name in ["redis-py", "ioredis", "node-redis", "go-redis"] {
        let library = pubsub_of(&s, name);
        assert!(u(&library["delivered"]) > 100, "{name}'s messages recorded: {library}");
        eprintln!("{name}: {library}");
    }

    let leaky = format!("exec:leaky={python} {root}/tests/adapters/leaky.py");
    let (o, _) =
        lab.run("protocol-1", &["--trigger", "none", "--duration", "1s", "--probe", "pubsub", "--clients", &leaky]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot subscribe"), "{}", explain(&o));
}
