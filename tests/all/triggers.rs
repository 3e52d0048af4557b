//! The promote and command triggers against a real primary/replica pair.

use crate::common::*;
use failprobe::lab::{Server, Topology};

fn role(lab: &TestLab, port: u16) -> String {
    let info: String = redis::cmd("INFO").arg("replication").query(&mut lab.conn(port)).unwrap();
    failprobe::target::info_field(&info, "role").unwrap()
}

#[test]
fn promote_swaps_roles_and_a_client_pinned_to_the_old_primary_sees_readonly() {
    let lab = TestLab::start(Topology::Replica);
    let old = lab.primary_port();
    let replica = *lab.lab.redis_ports().iter().find(|p| **p != old).unwrap();
    let out = lab.out("run");
    let o = failprobe(&[
        "run",
        "--target",
        &format!("redis://{}", lab.addr(old)),
        "--trigger",
        "promote",
        "--warmup",
        "1s",
        "--max-trial",
        "2s",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 1, "an unrecovered stream fails the run: {}", explain(&o));
    assert_eq!(role(&lab, replica), "master");
    assert_eq!(role(&lab, old), "slave");
    let t = &summary(&out)["trials"][0];
    assert!(t["trigger"]["error"].is_null(), "{}", t["trigger"]);
    assert_eq!(t["writes"]["recovered"], false);
    assert!(u(&t["writes"]["errors"]["readonly"]) > 0, "{}", t["writes"]["errors"]);
}

#[test]
fn command_trigger_runs_the_users_command_and_its_effect_is_measured() {
    let lab = TestLab::start(Topology::Replica);
    let port = lab.primary_port();
    let trigger = format!("command=redis-cli -h {} -p {port} DEBUG SLEEP 0.8", lab.lab.addr_of(port).ip());
    let (o, out) = lab.run("run", &["--trigger", &trigger, "--interval", "5ms", "--yes"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let t = &summary(&out)["trials"][0];
    assert!(t["trigger"]["error"].is_null());
    let started = f(&t["trigger"]["started_at_ms"]);
    let finished = f(&t["trigger"]["finished_at_ms"]);
    assert!(finished - started >= 750.0, "the trigger completes when the command exits");
    // The server was blocked for 0.8 s: one outage of about that length, starting at the trigger.
    let w = &t["writes"]["outages"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    let d = f(&w[0]["duration_ms"]);
    assert!((700.0..=1000.0).contains(&d), "outage {d} ms for an 800 ms DEBUG SLEEP");
    assert!(f(&w[0]["start_ms"]) >= started - 10.0);
}

/// The coordinated FAILOVER on a primary/replica pair, probed through both nodes
/// (`redis://a,b`: the primary is whichever answers ROLE as one): writes pause while the replica
/// catches up, then move with the role. Over three trials (there and back and there again) not
/// one acknowledged write is lost.
#[test]
fn failover_on_a_pair_loses_no_acknowledged_write_over_three_trials() {
    failover_on_a_pair(Server::Redis);
}

#[test]
fn failover_on_a_valkey_pair_loses_no_acknowledged_write_over_three_trials() {
    failover_on_a_pair(Server::Valkey);
}

fn failover_on_a_pair(server: Server) {
    let lab = TestLab::start_on(Topology::Replica, server);
    let nodes: Vec<String> = lab.lab.redis_addrs().iter().map(|a| a.to_string()).collect();
    let target = format!("redis://{}", nodes.join(","));
    let out = lab.out("failover");
    let o = failprobe(&[
        "run",
        "--target",
        &target,
        "--trigger",
        "failover",
        "--repeat",
        "3",
        "--max-lost-writes",
        "0",
        "--warmup",
        "1s",
        "--settle",
        "1s",
        "--max-trial",
        "10s",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let trials = s["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    for t in trials {
        assert!(t["trigger"]["error"].is_null(), "{}", t["trigger"]);
        let timeline = t["timeline"].as_array().unwrap();
        assert!(
            timeline.iter().any(|e| e["what"].as_str().unwrap().starts_with("trigger finished: FAILOVER TO")),
            "{timeline:?}"
        );
        assert_eq!(t["writes"]["recovered"], true, "{}", t["writes"]);
        assert!(u(&t["integrity"]["acked_writes"]) > 100, "{}", t["integrity"]);
        assert_eq!(u(&t["integrity"]["lost_acked_writes"]), 0, "{}", t["integrity"]);
    }
}

/// The runbook's own steps: `--before` and `--after` around each trial, on the timeline with
/// their exit status and output; a failing `--before` stops the run before its trigger fires.
#[test]
fn before_and_after_run_around_each_trial_and_a_failing_before_fires_nothing() {
    let lab = TestLab::start(Topology::Replica);
    let old = lab.primary_port();
    let (o, out) = lab.run(
        "steps",
        &[
            "--trigger",
            "none",
            "--duration",
            "1s",
            "--repeat",
            "2",
            "--before",
            "echo jobs paused",
            "--after",
            "echo jobs resumed",
        ],
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    for t in s["trials"].as_array().unwrap() {
        let timeline: Vec<&str> =
            t["timeline"].as_array().unwrap().iter().map(|e| e["what"].as_str().unwrap()).collect();
        assert!(timeline.contains(&"runbook --before `echo jobs paused`: exit status: 0: jobs paused"), "{timeline:?}");
        assert!(
            timeline.contains(&"runbook --after `echo jobs resumed`: exit status: 0: jobs resumed"),
            "{timeline:?}"
        );
    }

    let (o, out) = lab.run("failing", &["--trigger", "promote", "--before", "echo no lock >&2; exit 3"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--before `echo no lock >&2; exit 3` exit status: 3: no lock")
            && err.contains("no failover was started"),
        "{err}"
    );
    assert_eq!(role(&lab, old), "master", "the promote never ran");
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert!(events.contains("\"type\":\"runbook_step\"") && !events.contains("\"type\":\"trigger_start\""), "{events}");
}

/// Every database is counted before and after (INFO keyspace), not only the probed one; a
/// database whose count changed is flagged. Here the trigger itself writes a key into db 3.
#[test]
fn every_database_is_counted_and_a_changed_one_is_flagged() {
    let lab = TestLab::start(Topology::Replica);
    let port = lab.primary_port();
    let mut conn = lab.conn(port);
    let _: () = redis::cmd("SELECT").arg(5).query(&mut conn).unwrap();
    for i in 0..5 {
        let _: () = redis::cmd("SET").arg(format!("app:{i}")).arg(i).query(&mut conn).unwrap();
    }
    let trigger =
        format!("command=redis-cli -h {} -p {port} -n 3 SET seeded-by-the-test 1", lab.lab.addr_of(port).ip());
    let (o, out) = lab.run("dbs", &["--trigger", &trigger, "--yes", "--max-trial", "3s", "--backup"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    // --backup: a BGSAVE on the primary before the trigger, its RDB file named and on disk.
    let backups = &summary(&out)["trials"][0]["backups"];
    assert_eq!(backups.as_array().map(Vec::len), Some(1), "{backups}");
    let b = &backups[0];
    assert_eq!((b["how"].as_str(), b["status"].as_str()), (Some("BGSAVE"), Some("saved")), "{b}");
    assert_eq!(b["node"], lab.addr(port));
    let rdb = b["name"].as_str().unwrap();
    assert!(rdb.ends_with(&format!("dump-{port}.rdb")) && std::path::Path::new(rdb).is_file(), "{b}");
    let k = &summary(&out)["trials"][0]["keyspace"];
    assert_eq!(k["dbs_before"], serde_json::json!({"5": 5}), "{k}");
    assert_eq!(k["dbs_after"], serde_json::json!({"3": 1, "5": 5}), "{k}");
    assert_eq!(k["mismatch"], serde_json::json!([3]), "{k}");
    assert_eq!((k["before"].as_u64(), k["after"].as_u64()), (Some(0), Some(0)), "db0 holds only failprobe's keys: {k}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("keys MISMATCH in db3: 0 before, 1 after"), "{}", explain(&o));
    // What changed where, and the restore procedure from the backup this run took.
    assert!(stdout.contains("trial 0 db3: 0 keys before, 1 after (+1)"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "To restore Redis/Valkey from the BGSAVE this run took before the first trigger: {rdb}"
        )),
        "{stdout}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Keys changed: restore") && md.contains(rdb), "{md}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Backup: BGSAVE of") && html.contains("trial 0 db3: 0 keys before, 1 after (+1)"), "{html}");
}
