//! ElastiCache: the real aws-sdk-elasticache client in failprobe, over HTTP, against the awsQuery
//! emulator in common/elasticache.rs, which is wired to real redis-server / redis-sentinel /
//! memcached processes on loopback.

use crate::common::elasticache as emulator;

use crate::common::*;
use chrono::{Duration as Span, Utc};
use emulator::{Emulator, UpdateAction};
use failprobe::lab::{NodeKind, Topology, MASTER_NAME};
use serde_json::Value;

const GROUP: &str = "fp-rg";

fn sentinel_group() -> (TestLab, Emulator) {
    let lab = TestLab::start(Topology::Sentinel);
    let mut emu = Emulator::start();
    let nodes = lab.lab.nodes();
    let sentinel = nodes.iter().find(|n| n.kind == NodeKind::Sentinel).expect("a sentinel").port;
    // The first redis node is the primary the lab started with: member 001.
    crate::common::elasticache::know_lab(&lab.lab);
    emu.add_sentinel_group(GROUP, &lab.lab.redis_ports(), sentinel, MASTER_NAME);
    (lab, emu)
}

fn aws_run(lab: &TestLab, emu: &Emulator, name: &str, extra: &[&str]) -> (std::process::Output, std::path::PathBuf) {
    let mut args = vec!["--replication-group", GROUP, "--aws-poll", "200ms", "--aws-wait", "60s"];
    args.extend_from_slice(extra);
    lab.run_with_env(name, &args, &emu.env())
}

fn classes(aws: &Value) -> Vec<String> {
    aws["events"].as_array().unwrap().iter().map(|e| e["class"].as_str().unwrap().to_string()).collect()
}

/// `--backup` on ElastiCache: CreateSnapshot named after the run, confirmed like any AWS call,
/// waited for until available, named in the report and never deleted.
#[test]
fn a_backup_is_a_confirmed_named_snapshot_that_failprobe_keeps() {
    let _turn = alone();
    let (lab, emu) = sentinel_group();
    let observe = ["--trigger", "none", "--duration", "1s", "--backup"];
    let (o, out) = aws_run(&lab, &emu, "unconfirmed", &observe);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("CreateSnapshot SnapshotName=failprobe-"), "{}", explain(&o));
    assert!(!emu.calls().iter().any(|c| c == "CreateSnapshot"), "nothing is called unconfirmed");
    assert!(!out.exists());

    let (o, out) = aws_run(&lab, &emu, "confirmed", &[&observe[..], &["--yes"]].concat());
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let name = format!("failprobe-{}", s["run_id"].as_str().unwrap());
    let b = &s["trials"][0]["backups"][0];
    assert_eq!(
        (b["how"].as_str(), b["name"].as_str(), b["status"].as_str()),
        (Some("CreateSnapshot"), Some(name.as_str()), Some("available")),
        "{b}"
    );
    assert_eq!(b["node"], GROUP);
    assert_eq!(emu.calls().iter().filter(|c| *c == "CreateSnapshot").count(), 1);
    assert!(emu.calls().iter().any(|c| c == "DescribeSnapshots"));
    assert!(!emu.calls().iter().any(|c| c.starts_with("Delete")), "{:?}", emu.calls());
    let kept =
        emu.state.lock().unwrap().snapshots.iter().map(|s| (s.name.clone(), s.status.clone())).collect::<Vec<_>>();
    assert_eq!(kept, [(name.clone(), "available".to_string())]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("backup: CreateSnapshot of {GROUP} available")),
        "{}",
        explain(&o)
    );
}

#[test]
fn test_failover_is_measured_with_aws_events_on_the_timeline() {
    // Sentinel labs behind the emulator need the machine: two failing over at once starve.
    let _turn = alone();
    let (lab, emu) = sentinel_group();
    let old_primary = lab.primary_port();
    let (o, out) = aws_run(&lab, &emu, "tf", &["--trigger", "elasticache-test-failover", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_ne!(lab.primary_port(), old_primary, "the lab really failed over");
    assert_eq!(emu.calls().iter().filter(|c| *c == "TestFailover").count(), 1);

    let s = summary(&out);
    assert!(s["target"].as_str().unwrap().contains(&format!("127.0.0.1:{}", emu.endpoint_port)), "{}", s["target"]);
    let t = &s["trials"][0];
    assert!(t["trigger"]["error"].is_null(), "{}", t["trigger"]);
    // The demoted node dropped its clients; they reconnected through the endpoint, which led to
    // the new primary once it had moved.
    let outages = t["writes"]["outages"].as_array().unwrap();
    assert!(!outages.is_empty(), "writes saw the failover: {}", t["writes"]);
    assert!(outages.iter().all(|o| o["recovered"] == true));
    assert!(u(&t["writes"]["failed"]) > 0, "{}", t["writes"]);
    assert_eq!(t["integrity"]["checked"], true, "{}", t["integrity"]);

    // AWS's account: the documented order, at AWS's times, inside the trial.
    let aws = &t["aws"];
    let order = classes(aws);
    let pos = |c: &str| order.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c} missing in {order:?}"));
    assert!(pos("failover-started") < pos("failover-completed"), "{order:?}");
    assert!(pos("failover-completed") < pos("node-recovering"), "{order:?}");
    assert!(pos("node-recovering") < pos("node-recovered"), "{order:?}");
    let called = f(&aws["events"][pos("failover-started")]["at_ms"]);
    let started = f(&t["trigger"]["started_at_ms"]);
    // Same machine, same clock: AWS's "called" lies between the trigger's start and its end.
    assert!(called >= started - 5.0 && called <= f(&t["trigger"]["finished_at_ms"]), "{called} vs {started}");
    let completed = f(&aws["failover_completed_at_ms"]);
    assert!(completed > called);
    assert!(aws["completion_lag_ms"].is_f64(), "{aws}");
    // The controller waited for "Finished recovery" before the trial went on.
    assert!(f(&aws["recovery_finished_at_ms"]) <= f(&t["trigger"]["finished_at_ms"]) + 1.0);
    // DescribeReplicationGroups' roles, before and after.
    let topo: Vec<&str> = aws["topology"].as_array().unwrap().iter().map(|x| x["members"].as_str().unwrap()).collect();
    assert!(topo.first().unwrap().contains(&format!("{GROUP}-001=primary")), "{topo:?}");
    assert!(topo.last().unwrap().contains(&format!("{GROUP}-002=primary")), "{topo:?}");
    eprintln!(
        "measured: lost {} acked writes; writes {} (errors {}), reads {}; AWS: completed at {} ms, recovery finished at {} ms, writes back at {} ms, lag {} ms",
        t["integrity"]["lost_acked_writes"], t["writes"]["outages"], t["writes"]["errors"], t["reads"]["outages"].as_array().unwrap().len(),
        aws["failover_completed_at_ms"], aws["recovery_finished_at_ms"], aws["writes_recovered_at_ms"], aws["completion_lag_ms"]
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Test Failover API called for node group 0001"), "report.md lists AWS events");
}

#[test]
fn refusals_happen_before_anything_is_called_or_written() {
    // Sentinel labs behind the emulator need the machine: two failing over at once starve.
    let _turn = alone();
    let (lab, emu) = sentinel_group();
    let refused = |name: &str, extra: &[&str], expect: &str| {
        let (o, out) = aws_run(&lab, &emu, name, extra);
        assert_eq!(code(&o), 2, "{name}: {}", explain(&o));
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(err.contains(expect), "{name}: expected `{expect}` in\n{err}");
        assert!(!out.join("run.json").exists(), "{name}: nothing measured, nothing written");
        assert!(!emu.calls().iter().any(|c| c == "TestFailover" || c == "ModifyReplicationGroup"), "{name}");
    };
    refused(
        "no-yes",
        &["--trigger", "elasticache-test-failover"],
        &format!("TestFailover ReplicationGroupId={GROUP} NodeGroupId=0001"),
    );
    // On a terminal: the exact call is shown and only `yes` goes ahead.
    let typed = |answer: &str| {
        use std::io::Write;
        let out = lab.out(&format!("typed-{}", answer.trim()));
        let cmd = format!(
            "{} run --lab {} --quiet --warmup 1s --out {} --replication-group {GROUP} --aws-poll 200ms --trigger elasticache-test-failover",
            env!("CARGO_BIN_EXE_failprobe"),
            lab.lab_dir().display(),
            out.display()
        );
        // `script` (util-linux) runs it on a pseudo-terminal, as a person would.
        let mut child = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .envs(emu.env())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        child.stdin.take().unwrap().write_all(answer.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        (code(&o), String::from_utf8_lossy(&o.stdout).to_string())
    };
    let (status, screen) = typed("no\n");
    assert_eq!(status, 2, "{screen}");
    assert!(
        screen.contains(&format!("each trial calls: TestFailover ReplicationGroupId={GROUP} NodeGroupId=0001")),
        "{screen}"
    );
    assert!(screen.contains("Type `yes` to go ahead"), "{screen}");
    assert!(screen.contains(&format!("endpoint {}", emu.url())), "where the calls go: {screen}");
    assert!(!emu.calls().iter().any(|c| c == "TestFailover"), "answered no: {screen}");
    refused("no-node-group", &["--trigger", "elasticache-test-failover=0002", "--yes"], "no node group `0002`");

    emu.with_group(GROUP, |g| g.status = "modifying".into());
    refused("not-available", &["--trigger", "elasticache-test-failover", "--yes"], "is `modifying`, not `available`");
    emu.with_group(GROUP, |g| {
        g.status = "available".into();
        g.automatic_failover = false;
    });
    refused("no-auto-failover", &["--trigger", "elasticache-test-failover", "--yes"], "automatic failover disabled");
    emu.with_group(GROUP, |g| g.automatic_failover = true);

    refused(
        "promote-needs-toggle",
        &["--trigger", &format!("elasticache-promote={GROUP}-002"), "--yes"],
        "--allow-multi-az-toggle",
    );

    // 13 TestFailover calls logged in the last 24 h: room for two trials, not three.
    let first = Utc::now() - Span::hours(20);
    let called = |i: i64| {
        emu.push_event(
            first + Span::minutes(i),
            "replication-group",
            "other-rg",
            "Test Failover API called for node group 0001",
        )
    };
    (0..13).for_each(called);
    refused(
        "over-quota",
        &["--trigger", "elasticache-test-failover", "--yes", "--repeat", "3"],
        "only 2 of the 15 per rolling 24 h are left",
    );
    // 15: the quota is used up.
    (13..15).for_each(called);
    let (o, _) = aws_run(&lab, &emu, "quota", &["--trigger", "elasticache-test-failover", "--yes"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let after = (first + Span::hours(24)).format("%Y-%m-%d %H:%M UTC").to_string();
    assert!(err.contains("TestFailover quota: 15 node groups per rolling 24 h, 15 used"), "{err}");
    assert!(err.contains(&format!("try after {after}")), "{err}");
    assert!(!emu.calls().iter().any(|c| c == "TestFailover"));
}

#[test]
fn a_quota_fault_from_aws_is_explained_and_the_run_has_no_verdict() {
    // Sentinel labs behind the emulator need the machine: two failing over at once starve.
    let _turn = alone();
    let (lab, emu) = sentinel_group();
    emu.state.lock().unwrap().test_failover_quota = 0;
    let (o, out) = aws_run(&lab, &emu, "fault", &["--trigger", "elasticache-test-failover", "--yes"]);
    assert_eq!(code(&o), 2, "a trial without its failover has no verdict: {}", explain(&o));
    let t = &summary(&out)["trials"][0];
    let error = t["trigger"]["error"].as_str().unwrap();
    assert!(error.starts_with("TestFailover: TestFailoverNotAvailableFault: "), "{error}");
    assert!(error.contains("— TestFailover quota: 15 node groups per rolling 24 h"), "{error}");
    assert!(!error.contains("ServiceError") && !error.contains("raw:"), "no debug dump: {error}");
}

#[test]
fn promote_with_multi_az_toggle_restores_automatic_failover() {
    // Sentinel labs behind the emulator need the machine: two failing over at once starve.
    let _turn = alone();
    let (lab, emu) = sentinel_group();
    let target = format!("elasticache-promote={GROUP}-002");
    let (o, out) = aws_run(&lab, &emu, "promote", &["--trigger", &target, "--yes", "--allow-multi-az-toggle"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_eq!(lab.primary_port(), lab.lab.redis_ports()[1], "member 002 is the primary now");
    let g = emu.state.lock().unwrap().groups[GROUP].clone();
    assert!(g.automatic_failover && g.multi_az, "automatic failover and Multi-AZ enabled again");
    let t = &summary(&out)["trials"][0];
    let finished = t["timeline"].as_array().unwrap().iter().any(|e| {
        e["what"].as_str().unwrap().contains("automatic failover disabled for the promotion and enabled again")
    });
    assert!(finished, "{}", t["timeline"]);
    let modifies = emu.calls().iter().filter(|c| *c == "ModifyReplicationGroup").count();
    assert_eq!(modifies, 3, "disable, promote, enable: {:?}", emu.calls());
}

#[test]
fn reboot_of_a_memcached_node_is_on_the_timeline() {
    // Sentinel labs behind the emulator need the machine: two failing over at once starve.
    let _turn = alone();
    let lab = TestLab::start(Topology::Memcached);
    let emu = Emulator::start();
    let ports: Vec<u16> = lab.lab.nodes().iter().map(|n| n.port).collect();
    crate::common::elasticache::know_lab(&lab.lab);
    emu.add_memcached_cluster("fp-mc", &ports, &lab.lab_dir());
    let args = [
        "--cache-cluster",
        "fp-mc",
        "--trigger",
        "elasticache-reboot=fp-mc:0001",
        "--yes",
        "--aws-poll",
        "200ms",
        "--seed-keys",
        "200",
    ];
    let (o, out) = lab.run_with_env("reboot", &args, &emu.env());
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let t = &summary(&out)["trials"][0];
    let order = classes(&t["aws"]);
    assert_eq!(order, ["node-shutdown", "node-rebooted"], "{}", t["aws"]);
    let shards = t["shards"].as_array().unwrap();
    // The target lists the nodes in DescribeCacheClusters' order: node0 is 0001.
    let node = |name: &str| shards.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name}: {shards:?}"));
    let (node0, node1) = (node("node0"), node("node1"));
    assert_eq!(u(&node0["integrity"]["surviving_seeded_keys"]), 0, "a reboot loses the node's contents");
    assert_eq!(u(&node1["integrity"]["surviving_seeded_keys"]), 200, "the other node keeps its keys");
}

// ---- failprobe events ----

fn events_env(emu: &Emulator) -> Vec<(&'static str, String)> {
    emu.env()
}

fn run_events(emu: &Emulator, history: &std::path::Path, extra: &[&str]) -> (i32, Value, String) {
    let h = history.to_string_lossy().into_owned();
    let mut args = vec!["events", "--replication-group", "fp-rg", "--history", &h, "--json"];
    args.extend_from_slice(extra);
    let o = failprobe_env(&args, &events_env(emu));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {}", explain(&o)));
    (code(&o), json, String::from_utf8_lossy(&o.stderr).to_string())
}

#[test]
fn events_are_classified_kept_past_14_days_and_alert_on_upcoming_replacements() {
    let mut emu = Emulator::start();
    emu.add_plain_group("fp-rg", &["fp-rg-001", "fp-rg-002"]);
    let now = Utc::now();
    let window = now + Span::days(3);
    let fmt = |t: chrono::DateTime<Utc>| t.format("%b %d %H:%M UTC").to_string();
    let scheduled = format!(
        "The node with Cache Cluster ID: fp-rg-002, Node ID: 0001 is scheduled for replacement during the maintenance window from Start Time: {}, End Time: {}",
        fmt(window),
        fmt(window + Span::hours(1))
    );
    let texts = [
        (now - Span::days(13), "cache-cluster", "fp-rg-001", "Failover from master node fp-rg-001 to replica node fp-rg-002 completed".to_string()),
        (now - Span::days(12), "cache-cluster", "fp-rg-001", "Failover to replica node fp-rg-002 completed".to_string()),
        (now - Span::days(5), "cache-cluster", "fp-rg-001", "The node with Cache Cluster ID: fp-rg-001, Node ID: 2 is scheduled for replacement during the maintenance window from Start Time: Jun 25 19:00 UTC, End Time: Jun 25 20:00 UTC".to_string()),
        (now - Span::days(4), "cache-cluster", "fp-rg-001", "Finished recovery for cache nodes 0001".to_string()),
        (now - Span::days(3), "cache-cluster", "fp-rg-001", "Cache node 0001 restarted".to_string()),
        (now - Span::days(2), "cache-cluster", "fp-rg-002", "Service update is available for cache node 0001.".to_string()),
        (now - Span::days(1), "cache-cluster", "fp-rg-002", scheduled.clone()),
        (now - Span::hours(2), "cache-cluster", "other-cluster", "Cache node 0001 restarted".to_string()),
    ];
    for (date, kind, source, text) in &texts {
        emu.push_event(*date, kind, source, text);
    }
    emu.state.lock().unwrap().update_actions = vec![
        UpdateAction {
            resource: "fp-rg".into(),
            service_update: "elasticache-20261101-001".into(),
            status: "not-applied".into(),
            severity: "important".into(),
        },
        UpdateAction {
            resource: "fp-rg".into(),
            service_update: "elasticache-20260901-002".into(),
            status: "complete".into(),
            severity: "low".into(),
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("state/events.jsonl");

    let (code1, j, err) = run_events(&emu, &history, &["--within", "7d"]);
    assert_eq!(code1, 1, "a replacement within 7 days alerts: {err}");
    assert_eq!(j["alert"], true);
    let got: Vec<&str> = j["events"].as_array().unwrap().iter().map(|e| e["class"].as_str().unwrap()).collect();
    assert_eq!(
        got,
        [
            "failover-completed",
            "failover-completed",
            "replacement-scheduled",
            "node-recovered",
            "node-rebooted",
            "service-update-available",
            "replacement-scheduled"
        ],
        "member clusters of fp-rg only, oldest first"
    );
    let wild = &j["events"][2]["replacement"];
    assert_eq!((wild["cache_cluster"].as_str(), wild["node_id"].as_str()), (Some("fp-rg-001"), Some("2")));
    assert_eq!(wild["start_text"], "Jun 25 19:00 UTC");
    let up = j["upcoming_replacements"].as_array().unwrap();
    assert_eq!(up.len(), 1, "the June window is past: {up:?}");
    assert_eq!(up[0]["cache_cluster"], "fp-rg-002");
    let start = chrono::DateTime::parse_from_rfc3339(up[0]["start"].as_str().unwrap()).unwrap();
    assert!((start.with_timezone(&Utc) - window).num_seconds().abs() < 60, "{start} vs {window}");
    let actions = j["update_actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "only pending updates: {actions:?}");
    assert_eq!(actions[0]["service_update"], "elasticache-20261101-001");
    assert_eq!(u(&j["added"]), 7);
    let asked = emu.params_of("DescribeEvents");
    assert!(asked[0].contains(&("Duration".to_string(), "20160".to_string())), "14 days by AWS's clock: {asked:?}");

    // The terminal view: the replacement first, with the time left.
    let h = history.to_string_lossy().into_owned();
    let o = failprobe_env(&["events", "--replication-group", "fp-rg", "--history", &h, "--within", "7d"], &emu.env());
    let text = String::from_utf8_lossy(&o.stdout);
    eprintln!("{text}");
    let upcoming = text.split("Upcoming node replacements:").nth(1).unwrap_or("");
    let first_row = upcoming.lines().nth(1).unwrap_or("");
    assert!(first_row.contains("fp-rg-002") && (first_row.contains("in 2d") || first_row.contains("in 3d")), "{text}");
    assert!(
        text.contains("elasticache-20261101-001") && text.contains("ALERT: a node replacement within 7d"),
        "{text}"
    );

    // Rerun: nothing new, nothing twice.
    let (_, j2, _) = run_events(&emu, &history, &[]);
    assert_eq!(u(&j2["added"]), 0);
    assert_eq!(u(&j2["history_events"]), 7);
    assert_eq!(std::fs::read_to_string(&history).unwrap().lines().count(), 7);

    // AWS forgets after 14 days; the history does not.
    emu.state.lock().unwrap().events.retain(|e| e.date > now - Span::days(10));
    let (_, j3, _) = run_events(&emu, &history, &[]);
    assert_eq!(u(&j3["fetched"]), 5);
    assert_eq!(u(&j3["history_events"]), 7);

    // Without ids: every resource in the region (the other cluster's event too).
    let o = failprobe_env(&["events", "--history", &h, "--json"], &emu.env());
    let all: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", explain(&o)));
    assert!(all["scope"].as_array().unwrap().is_empty());
    assert!(all["events"].as_array().unwrap().iter().any(|e| e["source_id"] == "other-cluster"), "{all}");

    // A canceled replacement stops the alert; a far window does not trigger it.
    let (code_far, _, _) = run_events(&emu, &history, &["--within", "1d"]);
    assert_eq!(code_far, 0, "the window is 3 days away");
    let canceled = scheduled
        .replace("The node with", "The replacement for")
        .replace(" is scheduled for replacement during", " scheduled during")
        + " has been canceled";
    emu.push_event(now - Span::hours(1), "cache-cluster", "fp-rg-002", &canceled);
    let (code_canceled, j4, _) = run_events(&emu, &history, &["--within", "7d"]);
    assert_eq!(code_canceled, 0, "{}", j4["upcoming_replacements"]);
    assert!(j4["upcoming_replacements"].as_array().unwrap().is_empty());

    // Credentials that may not list service updates: the replacement alert still works.
    emu.push_event(now - Span::minutes(30), "cache-cluster", "fp-rg-002", &scheduled);
    emu.state.lock().unwrap().deny_update_actions = true;
    let (code_denied, j5, err) = run_events(&emu, &history, &["--within", "7d"]);
    assert_eq!(code_denied, 1, "{err}");
    let why = j5["update_actions_error"].as_str().unwrap();
    assert!(why.contains("AccessDenied") && why.contains("elasticache:DescribeUpdateActions"), "{why}");
    assert!(err.contains("pending service updates not listed"), "{err}");
}

#[test]
fn aws_errors_are_named_and_explained() {
    let mut emu = Emulator::start();
    emu.add_plain_group("fp-rg", &["fp-rg-001"]);
    let o = failprobe_env(&["events", "--replication-group", "nope", "--json"], &emu.env());
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("DescribeReplicationGroups: ReplicationGroupNotFoundFault: Replication group nope not found. — no such replication group here"),
        "{err}"
    );
    // Nobody listening: said plainly, with what to check.
    let mut env = emu.env();
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL_ELASTICACHE");
    let o = failprobe_env(&["events", "--endpoint-url", "http://127.0.0.1:9", "--json"], &env);
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("DescribeEvents: ") && err.contains("could not be reached"), "{err}");
    assert!(!err.contains("DispatchFailure {"), "no debug dump: {err}");
}

#[test]
fn ctrl_c_during_a_promotion_still_restores_automatic_failover() {
    use std::io::{BufRead, BufReader};
    // Sentinel labs behind the emulator need the machine: two failing over at once starve.
    let _turn = alone();
    let (lab, emu) = sentinel_group();
    let out = lab.out("interrupted");
    let (lab_dir, out_arg) = (lab.lab_dir().to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let target = format!("elasticache-promote={GROUP}-002");
    let mut cmd = crate::common::failprobe_command();
    cmd.args(["run", "--lab", &lab_dir, "--quiet", "--warmup", "1s", "--out", &out_arg, "--replication-group", GROUP])
        .args(["--aws-poll", "200ms", "--aws-wait", "60s", "--trigger", &target, "--yes", "--allow-multi-az-toggle"])
        .envs(emu.env())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("disabling automatic failover") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("disabling automatic failover"), "{seen}");
    assert!(seen.contains("--automatic-failover-enabled --multi-az-enabled"), "the restore command is printed: {seen}");
    // Ctrl-C while automatic failover is off.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "interrupted: no verdict\n{seen}{rest}");
    let g = emu.state.lock().unwrap().groups[GROUP].clone();
    assert!(g.automatic_failover && g.multi_az, "restored after Ctrl-C:\n{seen}{rest}");
    assert!(rest.contains("restored:"), "{rest}");
    assert!(out.join("samples.csv").exists(), "what was measured is on disk");
}

#[test]
fn cluster_mode_test_failover_picks_the_node_group_of_the_chosen_shard() {
    // Sentinel labs behind the emulator need the machine: two failing over at once starve.
    let _turn = alone();
    let lab = TestLab::start(Topology::Cluster);
    let emu = Emulator::start();
    crate::common::elasticache::know_lab(&lab.lab);
    emu.add_cluster_group("fp-cl", lab.lab.redis_ports()[0]);
    let shard = emu.state.lock().unwrap().groups["fp-cl"].shards[1].clone();
    let args = ["--replication-group", "fp-cl", "--aws-poll", "200ms", "--aws-wait", "60s"];
    let (o, out) = lab.run_with_env(
        "cluster",
        &[&args[..], &["--trigger", "elasticache-test-failover", "--shard", "1", "--yes"]].concat(),
        &emu.env(),
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let calls = emu.params_of("TestFailover");
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].contains(&("NodeGroupId".to_string(), "0002".to_string())),
        "shard 1 is node group 0002: {calls:?}"
    );
    let s = summary(&out);
    let seed = lab.addr(lab.lab.redis_ports()[0]);
    assert!(s["target"].as_str().unwrap().starts_with(&format!("redis+cluster://{seed}")), "{}", s["target"]);
    let t = &s["trials"][0];
    assert!(t["trigger"]["error"].is_null(), "{}", t["trigger"]);
    let order = classes(&t["aws"]);
    let pos = |c: &str| order.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c} missing in {order:?}"));
    assert!(pos("failover-started") < pos("failover-completed") && pos("failover-completed") < pos("node-recovered"));
    let completed = t["aws"]["events"].as_array().unwrap().iter().find(|e| e["class"] == "failover-completed").unwrap();
    let (old, new) = (&shard.members[0].cluster_id, &shard.members[1].cluster_id);
    assert_eq!(completed["message"], format!("Failover from primary node {old} to replica node {new} completed"));
    assert_eq!(t["shards"].as_array().unwrap().len(), 3, "every shard probed");
}
