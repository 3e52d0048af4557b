//! Issue 23: a fleet of local targets in one process. One is failed over and one is frozen
//! (SIGSTOP); the fleet's report names those two, the others show no outage, and their probes
//! were no later than in the same fleet measured without any trigger.

use crate::common::elasticache::Emulator;
use crate::common::*;
use failprobe::lab::Topology;
use serde_json::Value;
use std::path::Path;

/// Ten targets: five Sentinel labs, two pairs, a cluster, memcached and an endpoint lab.
/// `sessions-1` gets a SENTINEL FAILOVER and `pair-1` a 5 s SIGSTOP of its primary (a pair
/// has no Sentinel to fail it over: its probes wait out the whole freeze).
const FLEET: &str = r#"
name = "ten"
stagger = "0s"
[[target]]
name = "sessions-1"
lab = { topology = "sentinel" }
trigger = { kind = "sentinel" }
[[target]]
name = "sessions-2"
lab = { topology = "sentinel" }
[[target]]
name = "sessions-3"
lab = { topology = "sentinel" }
[[target]]
name = "sessions-4"
lab = { topology = "sentinel" }
[[target]]
name = "sessions-5"
lab = { topology = "sentinel" }
[[target]]
name = "pair-1"
lab = { topology = "replica" }
trigger = { kind = "pause=5s" }
[[target]]
name = "pair-2"
lab = { topology = "replica" }
[[target]]
name = "orders"
lab = { topology = "cluster" }
[[target]]
name = "cache"
lab = { topology = "memcached" }
[[target]]
name = "edge"
lab = { topology = "endpoint" }
"#;

const QUIET: [&str; 8] = ["sessions-2", "sessions-3", "sessions-4", "sessions-5", "pair-2", "orders", "cache", "edge"];

fn rows(s: &Value) -> Vec<Value> {
    s["targets"].as_array().expect("targets").clone()
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("no row {name}"))
}

fn fleet_run(dir: &Path, name: &str, extra: &[&str]) -> (std::process::Output, std::path::PathBuf) {
    let file = dir.join("fleet.toml");
    std::fs::write(&file, FLEET).unwrap();
    let out = dir.join(name);
    let (file, out_arg) = (file.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let mut args = vec!["run", "--fleet", &file, "--quiet", "--warmup", "3s", "--settle", "1s", "--out", &out_arg];
    args.extend_from_slice(extra);
    (failprobe(&args), out)
}

#[test]
fn a_fleet_names_the_targets_failed_over_and_a_frozen_one_delays_no_other() {
    let _turn = alone();
    let dir = tempfile::tempdir().unwrap();
    // The same ten targets without any trigger: what their schedules show on this machine.
    let (o, base) = fleet_run(dir.path(), "baseline", &["--trigger", "none", "--duration", "12s"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let base = rows(&summary(&base));
    let (o, out) = fleet_run(dir.path(), "failover", &["--max-trial", "30s"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let measured = rows(&s);
    assert_eq!(measured.len(), 10);
    let headline = s["verdict"]["headline"].as_str().unwrap();
    assert!(headline.starts_with("RECOVERED — 10 targets ("), "{headline}");
    assert!(headline.contains("Redis ") && headline.contains("memcached"), "the engines: {headline}");
    let (failed_over, frozen) = (row(&measured, "sessions-1"), row(&measured, "pair-1"));
    assert_eq!(failed_over["trigger"], "sentinel");
    let frozen_ms = f(&frozen["longest_outage_ms"]);
    // A 5 s SIGSTOP: down from the stop until the continue, within a probe's timeout and interval.
    assert!((4_700.0..5_600.0).contains(&frozen_ms), "frozen target's outage {frozen_ms} ms");
    assert!(headline.contains("on pair-1"), "the longest outage is named: {headline}");
    let mut report = String::new();
    for name in QUIET {
        let (r, b) = (row(&measured, name), row(&base, name));
        assert_eq!(f(&r["longest_outage_ms"]), 0.0, "{name} had no failover and no outage: {r}");
        assert_eq!(r["lost_acked_writes"], 0, "{r}");
        assert!(r["not_recovered"].as_array().unwrap().is_empty(), "{r}");
        let (late, was) = (u(&r["late_probes"]), u(&b["late_probes"]));
        report.push_str(&format!("{name}: {late} late (baseline {was}); "));
        // Probes of a target frozen for 5 s all wait out their deadline together: none of that
        // may reach another target's schedule. Tolerance: twice the baseline plus 20 (a
        // probe is late past 10 ms, and the labs' own failover work shares the two cores).
        assert!(late <= 2 * was + 20, "{name}: {late} late probes against {was} without the failover");
    }
    eprintln!("late probes: {report}");
    // Each target's own report sits in its directory, the fleet's links to it.
    for name in ["sessions-1", "cache"] {
        assert!(out.join(name).join("report.html").exists());
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("[pair-1](pair-1/report.md)"), "{md}");
}

/// `--aws-tag`: the replication groups carrying the tag, each a target named after its id,
/// found through the real SDK against the emulator (DescribeReplicationGroups, then
/// ListTagsForResource per group; nothing that changes anything).
#[test]
fn aws_tags_select_the_fleets_replication_groups() {
    let lab = TestLab::start(Topology::Replica);
    let mut emu = Emulator::start();
    crate::common::elasticache::know_lab(&lab.lab);
    let port = lab.primary_port();
    emu.add_direct_group("cache-a", port, &[("team", "cache"), ("env", "staging")]);
    emu.add_direct_group("cache-b", port, &[("team", "cache"), ("env", "staging")]);
    emu.add_direct_group("cache-prod", port, &[("team", "cache"), ("env", "prod")]);
    emu.add_direct_group("search", port, &[("team", "search")]);
    let out = lab.out("tagged");
    let out_arg = out.to_string_lossy().into_owned();
    let args = [
        "run",
        "--aws-tag",
        "team=cache",
        "--aws-tag",
        "env=staging",
        "--trigger",
        "none",
        "--duration",
        "2s",
        "--aws-poll",
        "500ms",
        "--quiet",
        "--out",
        &out_arg,
    ];
    let o = failprobe_env(&args, &emu.env());
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let mut names: Vec<String> = rows(&summary(&out)).iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names, ["cache-a", "cache-b"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 replication group(s)"), "{}", explain(&o));
    let calls = emu.calls();
    assert_eq!(calls.iter().filter(|c| *c == "ListTagsForResource").count(), 4, "{calls:?}");
    let changing = ["TestFailover", "ModifyReplicationGroup", "CreateSnapshot", "RebootCacheCluster"];
    assert!(!calls.iter().any(|c| changing.contains(&c.as_str())), "{calls:?}");
    // Each group's run put AWS's view of it in its own report.
    assert_eq!(summary(&out.join("cache-a"))["target"].as_str().map(|t| t.contains(&port.to_string())), Some(true));
}

/// Bad fleets are refused before anything starts, naming the target and what is wrong.
#[test]
fn a_bad_fleet_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.toml");
    let out = dir.path().join("out");
    let cases = [
        ("[[target]]\nname = \"a\"\nurl = \"redis://127.0.0.1:1\"\n[[target]]\nname = \"a\"\nurl = \"redis://127.0.0.1:2\"\n", "two fleet targets are named `a`"),
        ("[[target]]\nname = \"a/b\"\nurl = \"redis://127.0.0.1:1\"\n", "fleet target name `a/b`"),
        ("[[target]]\nname = \"a\"\nurl = \"redis://127.0.0.1:1\"\ntrigger = { kind = \"explode\" }\n", "fleet target `a`"),
        ("[[target]]\nname = \"a\"\nurll = \"x\"\n", "fleet.toml:3"),
    ];
    for (text, expected) in cases {
        std::fs::write(&file, text).unwrap();
        let o = failprobe(&["run", "--fleet", &file.to_string_lossy(), "--out", &out.to_string_lossy()]);
        assert_eq!(code(&o), 2, "{}", explain(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(expected), "{expected}: {}", explain(&o));
        assert!(!out.exists(), "nothing was created");
    }
}

/// Ctrl-C stops every target: each writes its report of what it measured, and the fleet's
/// report covers them all, without a verdict.
#[test]
fn sigint_leaves_each_targets_report_and_the_fleets() {
    let lab = TestLab::start(Topology::Replica);
    let out = lab.out("fleet");
    let (a, b) = (format!("a=redis://{}", lab.primary_addr()), format!("b=redis://{}", lab.primary_addr()));
    let child = failprobe_command()
        .args(["run", "--target", &a, "--target", &b, "--duration", "60s", "--quiet", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 2, "an interrupted fleet has no verdict: {}", explain(&o));
    let s = summary(&out);
    assert_eq!(s["verdict"]["kind"], "incomplete", "{s}");
    for name in ["a", "b"] {
        let own = summary(&out.join(name));
        assert_eq!(own["interrupted"], true);
        assert!(u(&own["trials"][0]["writes"]["probes"]) > 100, "{name} kept its samples");
        assert_eq!(row(&rows(&s), name)["verdict"]["kind"], "incomplete");
    }
}

/// Issue 23's Prometheus check on a fleet: one listener for every target, Debian's prometheus
/// scraping it every second; a kill on one target is an outage on that target only, as long as
/// failprobe's own figure within one scrape.
#[test]
fn prometheus_sees_the_outage_on_the_one_target_failed_over() {
    use crate::metrics::{LiveRun, Prometheus, SCRAPE};
    let _turn = alone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.toml");
    let text = "[[target]]\nname = \"killed\"\nlab = { topology = \"sentinel\" }\ntrigger = { kind = \"kill\" }\n\
                [[target]]\nname = \"calm\"\nlab = { topology = \"replica\" }\ntrials = { duration = \"12s\" }\n\
                [[target]]\nname = \"cache\"\nlab = { topology = \"memcached\" }\ntrials = { duration = \"12s\" }\n";
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("out");
    let (file, out_arg) = (file.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let run =
        LiveRun::start(&["run", "--fleet", &file, "--quiet", "--warmup", "5s", "--settle", "2s", "--out", &out_arg]);
    let prometheus = Prometheus::start(&[run.addr]);
    let (code, stderr) = run.wait();
    assert_eq!(code, 0, "{stderr}");
    let figure = f(&summary(&out.join("killed"))["trials"][0]["writes"]["longest_outage_ms"]) / 1000.0;
    assert!(figure >= 1.0, "a kill under Sentinel is down for seconds: {figure} s");
    let seen = prometheus.outages_by_target("failprobe", "writes", "10m");
    let names: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["cache", "calm", "killed"], "every target's series, by its name");
    for (target, longest) in &seen {
        match target.as_str() {
            "killed" => {
                let (low, high) = (figure - SCRAPE.as_secs_f64() - 0.1, figure + 0.01);
                assert!((low..=high).contains(longest), "Prometheus saw {longest} s, failprobe {figure} s");
            }
            _ => assert_eq!(*longest, 0.0, "{target} had no outage"),
        }
    }
}
