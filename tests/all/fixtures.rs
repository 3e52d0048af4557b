//! Stored runs (tests/fixtures, recorded on real labs by scripts/make-fixtures.sh) rebuilt with
//! `failprobe report` and checked format by format. No servers: the figures are recomputed here
//! from samples.csv and events.jsonl the plain way (every sample in memory, sorted), and must
//! agree with what the streaming analysis wrote.

use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A copy of the fixture in a temporary directory, reported with every output.
fn rebuild(name: &str) -> (tempfile::TempDir, PathBuf, Output) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    for file in ["run.json", "samples.csv", "events.jsonl"] {
        std::fs::copy(Path::new(FIXTURES).join(name).join(file), dir.join(file)).unwrap();
    }
    let (junit, step) = (dir.join("junit.xml"), dir.join("step.md"));
    let o = failprobe(&[
        "report",
        dir.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--summary-md",
        step.to_str().unwrap(),
    ]);
    (tmp, dir, o)
}

#[derive(serde::Deserialize)]
struct Row {
    stream: String,
    seq: u64,
    start_us: u64,
    end_us: u64,
    outcome: String,
    value: Option<u64>,
    shard: Option<String>,
}

/// What a reader of the raw files finds, per shard.
#[derive(Default, Debug)]
struct Plain {
    probes: [u64; 2],
    failed: [u64; 2],
    acked: u64,
    lost: u64,
    stale_reads: u64,
}

fn plain(dir: &Path) -> BTreeMap<Option<String>, Plain> {
    let mut rows: BTreeMap<Option<String>, Vec<Row>> = BTreeMap::new();
    for r in csv::Reader::from_path(dir.join("samples.csv")).unwrap().deserialize::<Row>() {
        let r = r.unwrap();
        rows.entry(r.shard.clone()).or_default().push(r);
    }
    let mut logs: BTreeMap<Option<String>, Vec<(u64, u64)>> = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("events.jsonl")).unwrap().lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        if e["type"] == "write_log" {
            let present = e["present"].as_array().unwrap().iter().map(|r| (u(&r[0]), u(&r[1]))).collect();
            logs.insert(e["shard"].as_str().map(str::to_string), present);
        }
    }
    let mut out = BTreeMap::new();
    for (shard, rows) in rows {
        let mut p = Plain::default();
        // No write log (the target never came back): nothing is counted lost, and the report
        // must say the loss is unknown.
        let log = logs.get(&shard);
        let present: HashSet<u64> = log.into_iter().flatten().flat_map(|&(lo, hi)| lo..=hi).collect();
        let mut acks: Vec<(u64, u64)> = Vec::new();
        for r in &rows {
            let i = usize::from(r.stream == "read");
            p.probes[i] += 1;
            if r.outcome != "ok" {
                p.failed[i] += 1;
            } else if i == 0 {
                p.acked += 1;
                p.lost += u64::from(log.is_some() && !present.contains(&r.seq));
                acks.push((r.end_us, r.seq));
            }
        }
        // Stale: a read that saw less than a write acknowledged before the read was sent.
        acks.sort_unstable();
        for r in rows.iter().filter(|r| r.stream == "read" && r.outcome == "ok") {
            let newest = acks.iter().take_while(|(end, _)| *end < r.start_us).map(|(_, seq)| *seq).max();
            p.stale_reads += u64::from(newest.is_some_and(|n| r.value.unwrap_or(0) < n));
        }
        out.insert(shard, p);
    }
    out
}

/// Every format agrees with the files and with the one verdict.
fn check(name: &str, verdict: &str, exit: i32) -> (Value, PathBuf, tempfile::TempDir) {
    let (tmp, dir, o) = rebuild(name);
    assert_eq!(code(&o), exit, "{name}: {}", explain(&o));
    let s = summary(&dir);
    assert_eq!(s["verdict"]["kind"], verdict, "{name}: {}", s["verdict"]);
    let headline = s["verdict"]["headline"].as_str().unwrap().to_string();
    let t = &s["trials"][0];
    // summary.json against the raw files.
    let expected = plain(&dir);
    let sum = |f: &dyn Fn(&Plain) -> u64| expected.values().map(f).sum::<u64>();
    assert_eq!(u(&t["writes"]["probes"]), sum(&|p| p.probes[0]), "{name}: write probes");
    assert_eq!(u(&t["reads"]["probes"]), sum(&|p| p.probes[1]), "{name}: read probes");
    assert_eq!(u(&t["writes"]["failed"]), sum(&|p| p.failed[0]), "{name}: failed writes");
    assert_eq!(u(&t["integrity"]["acked_writes"]), sum(&|p| p.acked), "{name}: acknowledged");
    assert_eq!(u(&t["integrity"]["lost_acked_writes"]), sum(&|p| p.lost), "{name}: lost");
    assert_eq!(u(&t["integrity"]["stale_reads"]), sum(&|p| p.stale_reads), "{name}: stale reads");
    for sh in t["shards"].as_array().into_iter().flatten() {
        let p = &expected[&Some(sh["name"].as_str().unwrap().to_string())];
        assert_eq!(u(&sh["integrity"]["lost_acked_writes"]), p.lost, "{name} {}", sh["name"]);
        assert_eq!(u(&sh["writes"]["probes"]), p.probes[0], "{name} {}", sh["name"]);
    }
    // The terminal, report.md, report.html, JUnit and the step summary show the same verdict.
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&headline), "{name}: terminal");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains(&format!("**{headline}**")), "{name}: report.md");
    let html = scraper::Html::parse_document(&std::fs::read_to_string(dir.join("report.html")).unwrap());
    assert!(html.root_element().text().collect::<String>().contains(&headline), "{name}: report.html");
    let svgs = scraper::Selector::parse("svg").unwrap();
    assert!(html.select(&svgs).count() >= 3, "{name}: plots inline");
    let step = std::fs::read_to_string(dir.join("step.md")).unwrap();
    assert!(step.contains(verdict_word(verdict)), "{name}: step summary");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let failures = doc.descendants().filter(|n| n.has_tag_name("failure")).count();
    assert_eq!(failures > 0, verdict == "fail", "{name}: JUnit failures {failures}");
    // The plots are well-formed SVG; the histograms count the successful probes.
    for plot in ["timeline.svg", "latency-percentiles.svg", "outages.svg"] {
        roxmltree::Document::parse(&std::fs::read_to_string(dir.join(plot)).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {plot}: {e}"));
    }
    let hgrm = std::fs::read_to_string(dir.join("histograms/trial0-writes.hgrm")).unwrap();
    let total = hgrm.lines().find_map(|l| l.split("Total count    =").nth(1)).unwrap().trim_end_matches(']').trim();
    assert_eq!(total.parse::<u64>().unwrap(), u(&t["writes"]["ok"]), "{name}: hgrm");
    // Rebuilding again gives the same summary.
    let again = failprobe(&["report", dir.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code(&again), exit);
    assert_eq!(summary(&dir), s, "{name}: a second report differs");
    (s, dir, tmp)
}

fn verdict_word(kind: &str) -> &'static str {
    match kind {
        "pass" => "PASS",
        "recovered" => "RECOVERED",
        "fail" => "FAIL",
        _ => "INCOMPLETE",
    }
}

#[test]
fn a_clean_observation() {
    let (s, _, _tmp) = check("clean-observation", "recovered", 0);
    let t = &s["trials"][0];
    assert!(t["writes"]["outages"].as_array().unwrap().is_empty());
    assert!(t["writes"]["latency_by_phase_ms"].is_null(), "no trigger, no phases");
    assert_eq!(s["verdict"]["headline"], "RECOVERED — no budget set");
}

#[test]
fn a_kill_that_never_recovered() {
    let (s, _, _tmp) = check("unrecovered-kill", "fail", 1);
    let w = &s["trials"][0]["writes"];
    assert_eq!(w["recovered"], false);
    let last = w["outages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["recovered"], false);
    assert_eq!(s["trials"][0]["integrity"]["checked"], false, "no write log: loss unknown");
    assert!(last["errors"].as_object().unwrap().contains_key("refused"), "{last}");
    assert!(s["budget"]["violations"].as_array().unwrap().iter().any(|v| v.as_str().unwrap().contains("still down")));
    // The counts of the outage's errors as numbers under a stable id, not inside the text.
    let phases = s["trials"][0]["clients"][0]["phases"].as_array().unwrap();
    let down = phases.iter().find(|p| p["phase"] == "writes_down").unwrap_or_else(|| panic!("{phases:?}"));
    assert!(down["at_ms"].is_f64() && u(&down["detail"]["errors"]["refused"]) > 0, "{down}");
    assert!(phases.iter().any(|p| p["phase"] == "writes_not_recovered"), "{phases:?}");
}

#[test]
fn a_sentinel_failover_that_lost_writes() {
    let (s, dir, _tmp) = check("sentinel-lost-writes", "recovered", 0);
    let lost = u(&s["trials"][0]["integrity"]["lost_acked_writes"]);
    assert!(lost > 0);
    assert!(s["verdict"]["headline"].as_str().unwrap().contains(&format!("{lost} acknowledged writes lost")));
    let phases = &s["trials"][0]["writes"]["latency_by_phase_ms"];
    assert!(u(&phases["before"]["count"]) > 0 && u(&phases["after"]["count"]) > 0, "{phases}");
    let timeline = std::fs::read_to_string(dir.join("timeline.svg")).unwrap();
    assert!(timeline.contains("acknowledged, then lost"), "lost writes marked on the timeline");
    // Where the time went: stable ids and numbers, not prose a program must parse.
    let phases = s["trials"][0]["clients"][0]["phases"].as_array().unwrap();
    assert!(phases[0]["phase"] == "trigger_started" && phases[0]["at_ms"].is_f64(), "{phases:?}");
    assert!(
        phases.iter().all(|p| p["phase"].is_string() && (p["at_ms"].is_f64() || p["at_ms"].is_null())),
        "{phases:?}"
    );
}

#[test]
fn a_cluster_failover() {
    let (s, _, _tmp) = check("cluster-failover", "recovered", 0);
    let t = &s["trials"][0];
    let names: Vec<&str> = t["shards"].as_array().unwrap().iter().map(|sh| sh["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["shard0", "shard1", "shard2"]);
    assert!(t["topology"].as_array().unwrap().len() >= 2, "the slot owner change");
}
