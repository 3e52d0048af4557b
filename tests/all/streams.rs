//! Issue 24: `--probe stream` on the Sentinel lab. failprobe appends numbered entries to the
//! trial's stream (XADD) and a consumer group reads them. The appends the run reports lost are
//! checked against the stream as this test reads it back from the new primary itself.

use crate::common::*;
use failprobe::lab::Topology;
use std::collections::BTreeSet;
use std::path::Path;

/// Sequence numbers of the acknowledged appends, from samples.csv.
fn acked_appends(dir: &Path) -> BTreeSet<u64> {
    let mut r = csv::Reader::from_path(dir.join("samples.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (stream, seq, outcome) = (col("stream"), col("seq"), col("outcome"));
    r.records()
        .map(|r| r.unwrap())
        .filter(|r| &r[stream] == "append" && &r[outcome] == "ok")
        .map(|r| r[seq].parse().unwrap())
        .collect()
}

/// The `seq` of every entry of the trial's stream, read by this test from `primary`.
fn entries_on(lab: &TestLab, out: &Path) -> BTreeSet<u64> {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    let key = format!("failprobe:{{{}}}:t0:stream", meta["run_id"].as_str().unwrap());
    let mut conn = lab.conn(lab.primary_port());
    // failprobe's stream carries its TTL, like every key it writes.
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
    assert!(ttl > 0, "{key}: PTTL {ttl}");
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query(&mut conn).unwrap();
    entries
        .into_iter()
        .filter_map(|(_, fields)| fields.into_iter().find(|(f, _)| f == "seq").map(|(_, v)| v.parse().unwrap()))
        .collect()
}

fn stream_of(s: &serde_json::Value) -> serde_json::Value {
    s["trials"][0]["clients"][0]["stream"].clone()
}

#[test]
fn appends_lost_in_a_sentinel_failover_are_counted_exactly_and_none_with_wait() {
    let lab = TestLab::start(Topology::Sentinel);
    let (o, out) = lab.run("plain", &["--trigger", "sentinel", "--clients", "failprobe", "--probe", "stream"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let p = stream_of(&summary(&out));
    let (acked, present) = (acked_appends(&out), entries_on(&lab, &out));
    let lost = acked.difference(&present).count() as u64;
    assert!(acked.len() > 100, "{p}");
    assert_eq!(u(&p["acknowledged"]), acked.len() as u64, "{p}");
    assert_eq!(u(&p["lost"]), lost, "{p}");
    // The group read what the stream holds, each entry once or more; none left unread.
    assert!(u(&p["consumed"]) > 100, "{p}");
    assert_eq!(u(&p["never_read"]), 0, "{p}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("acknowledged appends lost"), "{}", explain(&o));
    eprintln!("plain: {lost} of {} acknowledged appends lost: {p}", acked.len());

    let (o, out) = lab.run(
        "wait",
        &["--trigger", "sentinel", "--clients", "failprobe", "--probe", "stream", "--write-ack", "wait=1:1s"],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let p = stream_of(&summary(&out));
    let (acked, present) = (acked_appends(&out), entries_on(&lab, &out));
    assert!(acked.len() > 100, "{p}");
    assert_eq!(acked.difference(&present).count(), 0, "WAIT 1 acknowledged nothing it lost");
    assert_eq!(u(&p["lost"]), 0, "{p}");
}

#[test]
fn streams_where_they_cannot_be_measured_are_refused_before_anything_runs() {
    let cases = [
        ("redis+cluster://127.0.0.1:1", "failprobe", "does not probe a cluster yet"),
        ("memcache://127.0.0.1:1", "failprobe", "memcached has no streams"),
        ("redis://127.0.0.1:1", "pinned", "include `failprobe` in --clients"),
    ];
    for (target, clients, why) in cases {
        let o = failprobe(&["run", "--target", target, "--clients", clients, "--probe", "stream", "--trigger", "none"]);
        assert_eq!(code(&o), 2, "{target}: {}", explain(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{target}: {}", explain(&o));
    }
}
