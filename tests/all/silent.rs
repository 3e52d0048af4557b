//! A silent failure made by hand: an nftables table drops every packet to and from the
//! primary's port (no RST, no FIN: the node vanishes for clients, sentinels and the replica),
//! fired through `--trigger command=…`, healed 8 s later. What the report says about it must be
//! the truth: an unreachable node has not stepped down, and a client that went back to the old
//! primary, still acting as one, did not recover; what it wrote there is split-brain writes.

use crate::common::*;
use failprobe::lab::Topology;
use serde_json::Value;
use std::process::Command;

/// The test's own nftables table, deleted on every exit (a panic included): a table left
/// behind would cut the port off for whatever uses it next.
struct NftTable(String);

impl NftTable {
    /// Unique to this process and test: nothing else's table is touched.
    fn named(test: &str) -> Self {
        Self(format!("failprobe_test_{}_{test}", std::process::id()))
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        // Absent already when the trigger's script deleted it: that failure is expected.
        let _ =
            Command::new("nft").args(["delete", "table", "inet", &self.0]).stderr(std::process::Stdio::null()).status();
    }
}

/// How long the primary stays cut off: long enough for Sentinel (down-after 1 s) to fail over
/// and for `pinned` to time out, short for the suite.
const FAULT_S: u64 = 8;

/// The trigger's script: the table (its closing brace on its own line, as `nft -f` wants it),
/// the wait, the heal.
fn blackhole_script(table: &str, port: u16) -> String {
    format!(
        "set -e\n\
         nft -f - <<'EOF'\n\
         table inet {table} {{\n \
         chain in {{ type filter hook input priority 0; policy accept; tcp dport {port} drop; tcp sport {port} drop; }}\n\
         }}\n\
         EOF\n\
         sleep {FAULT_S}\n\
         nft delete table inet {table}\n"
    )
}

fn events(out: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `failprobe run` on `lab` with `failprobe,pinned`, its trigger a script that blackholes the
/// primary for [`FAULT_S`]: the run's output and directory, and the old primary's port.
fn blackhole_run(lab: &TestLab, test: &str) -> (std::process::Output, std::path::PathBuf, u16) {
    let nft = Command::new("nft").args(["list", "tables"]).output();
    assert!(nft.as_ref().is_ok_and(|o| o.status.success()), "this test needs nft and root (CAP_NET_ADMIN): {nft:?}");
    let old = lab.primary_port();
    let table = NftTable::named(test);
    let script = lab.dir.path().join("blackhole.sh");
    std::fs::write(&script, blackhole_script(&table.0, old)).unwrap();
    let trigger = format!("command=sh {}", script.display());
    let args = ["--trigger", trigger.as_str(), "--yes", "--clients", "failprobe,pinned", "--max-trial", "10s"];
    let (o, out) = lab.run(test, &args);
    drop(table);
    (o, out, old)
}

#[test]
fn a_blackholed_primary_is_not_stepped_down_and_pinned_writing_into_it_is_split_brain_not_recovery() {
    let _alone = alone();
    let lab = TestLab::start(Topology::Sentinel);
    let (o, out, old) = blackhole_run(&lab, "silent");
    // The verdict covers failprobe's own client, which recovered.
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let t = &s["trials"][0];
    let healed = f(&t["trigger"]["finished_at_ms"]);
    let old_primary = lab.addr(old);

    // Unreachable is a state of its own; the step-down is the old primary answering ROLE as a
    // replica, which it cannot do before the heal.
    let events = events(&out);
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["type"] == kind).collect() };
    let unreachable = of("unreachable");
    assert_eq!(unreachable.len(), 1, "{}", t["timeline"]);
    assert_eq!(unreachable[0]["server"], old_primary.as_str());
    assert!(f(&unreachable[0]["at_us"]) / 1000.0 < healed, "{unreachable:?}");
    // Back on the network, it still answered as primary for a while.
    let reachable = of("reachable");
    assert!(
        !reachable.is_empty() && reachable.iter().all(|e| e["role"] == "master" && f(&e["at_us"]) / 1000.0 >= healed),
        "{reachable:?}"
    );
    let step_downs = of("step_down");
    assert_eq!(step_downs.len(), 1, "{step_downs:?}");
    assert_eq!(step_downs[0]["role"], "slave", "{step_downs:?}");
    let stepped_down = f(&step_downs[0]["at_us"]) / 1000.0;
    assert!(stepped_down >= healed, "stepped down at {stepped_down} ms, healed at {healed} ms");
    let timeline: Vec<&str> = t["timeline"].as_array().unwrap().iter().map(|e| e["what"].as_str().unwrap()).collect();
    let ip = lab.lab.addr_of(old).ip();
    // Detected first by a sentinel on its own (+sdown), then by their quorum (+odown).
    for seen in [format!("+sdown: master failprobe {ip} {old}"), format!("+odown: master failprobe {ip} {old}")] {
        assert!(
            timeline.iter().any(|w| w.starts_with("failure detected by sentinel") && w.contains(&seen)),
            "{seen}: {timeline:?}"
        );
    }
    let unreachable_line = format!("old primary {old_primary} unreachable: ROLE unanswered, not stepped down");
    assert!(timeline.contains(&unreachable_line.as_str()), "{timeline:?}");
    // The trial lasted until the old primary was seen demoted.
    assert!(f(&t["ended_at_ms"]) >= stepped_down, "{}", t["end_reason"]);

    let clients = t["clients"].as_array().unwrap();
    let (own, pinned) = (&clients[0], &clients[1]);
    // failprobe's own client followed Sentinel within a few seconds, through timeouts.
    assert!(own["writes"]["recovered"].as_bool().unwrap(), "{}", own["writes"]);
    let own_outage = f(&own["writes"]["longest_outage_ms"]);
    assert!(own_outage < 5000.0, "{}", own["writes"]);
    assert!(u(&own["writes"]["errors"]["timeout"]) > 0, "timeouts, not refusals: {}", own["writes"]["errors"]);
    assert_eq!(u(&own["integrity"]["split_brain_writes"]), 0, "{}", own["integrity"]);

    // pinned went back to the old primary at the heal: no recovery, and what it acknowledged
    // there is gone.
    assert!(!pinned["writes"]["recovered"].as_bool().unwrap(), "{}", pinned["writes"]);
    let back_on_old = f(&pinned["writes"]["isolated_primary_at_ms"]);
    assert!(back_on_old >= healed && back_on_old <= stepped_down, "{back_on_old} ms: {}", pinned["writes"]);
    let phases: Vec<&str> = pinned["phases"].as_array().unwrap().iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert!(!phases.contains(&"writes_recovered"), "{phases:?}");
    for phase in ["old_primary_unreachable", "writes_on_isolated_primary", "stepped_down", "writes_not_recovered"] {
        assert!(phases.contains(&phase), "{phase} in {phases:?}");
    }
    let errors = &pinned["writes"]["errors"];
    assert!(u(&errors["timeout"]) > 100 && errors.get("refused").is_none(), "{errors}");
    let i = &pinned["integrity"];
    let split_brain = u(&i["split_brain_writes"]);
    assert!(split_brain > 0, "{i}");
    assert!(split_brain <= u(&i["lost_acked_writes"]), "counted among the lost writes: {i}");
    assert_eq!(i["split_brain_server"], old_primary.as_str(), "{i}");
    let (first, last) = (f(&i["split_brain_first_ms"]), f(&i["split_brain_last_ms"]));
    assert!(healed <= first && first <= last && last <= stepped_down + 300.0, "{first}..{last}: {i}");
    // Every loss checked against the log on the new primary.
    let run_id = s["run_id"].as_str().unwrap();
    let log: Vec<u64> = redis::cmd("LRANGE")
        .arg(format!("failprobe:{{{run_id}}}:t0:pinned:log"))
        .arg(0)
        .arg(-1)
        .query(&mut lab.conn(lab.primary_port()))
        .unwrap();
    let acked = acked_writes_of(&out, 0, Some("pinned"));
    let lost = acked.iter().filter(|seq| !log.contains(seq)).count() as u64;
    assert_eq!(u(&i["lost_acked_writes"]), lost, "{i}");

    let headline = s["verdict"]["headline"].as_str().unwrap();
    assert!(headline.contains("pinned NOT RECOVERED (answered by the deposed old primary)"), "{headline}");
    assert!(headline.contains(&format!("({split_brain} of them split-brain)")), "{headline}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("the deposed old primary {old_primary} kept acknowledging writes for")), "{text}");
    let pinned_phases = text.lines().skip_while(|l| !l.contains("client pinned:")).nth(1).unwrap_or_default();
    assert!(pinned_phases.contains("where the time went:"), "{text}");
    assert!(!pinned_phases.contains("writes recovered +"), "{text}");
    assert!(pinned_phases.contains("writes answered by the deposed old primary (no recovery) +"), "{text}");
    eprintln!(
        "failprobe writes down {own_outage} ms; pinned: {split_brain} split-brain writes of {} lost, \
         acknowledged by {old_primary} from {first} to {last} ms (healed {healed}, stepped down {stepped_down})",
        u(&i["lost_acked_writes"])
    );
    eprintln!("{text}");
}

/// The same fault with `min-replicas-to-write 1` (`min-replicas-max-lag 2`) on both nodes: the
/// old primary, back on the network without a replica that acknowledges, refuses writes
/// (NOREPLICAS): no split-brain writes, no window. The price is failprobe's own client waiting
/// on the new primary, which refuses too until the old one rejoins as its replica.
#[test]
fn with_min_replicas_to_write_the_old_primary_takes_no_split_brain_writes() {
    let _alone = alone();
    let lab = TestLab::start(Topology::Sentinel);
    for port in lab.lab.redis_ports() {
        let mut conn = lab.conn(port);
        for (key, value) in [("min-replicas-to-write", "1"), ("min-replicas-max-lag", "2")] {
            let _: () = redis::cmd("CONFIG").arg("SET").arg(key).arg(value).query(&mut conn).unwrap();
        }
    }
    let (o, out, old) = blackhole_run(&lab, "min_replicas");
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    assert!(
        s["servers"].as_array().unwrap().iter().any(|n| n["settings"]["min-replicas-to-write"] == "1"),
        "{}",
        s["servers"]
    );
    let t = &s["trials"][0];
    let (own, pinned) = (&t["clients"][0], &t["clients"][1]);
    let i = &pinned["integrity"];
    assert_eq!((u(&i["split_brain_writes"]), u(&i["lost_acked_writes"])), (0, 0), "{i}");
    assert!(
        i.get("split_brain_first_ms").is_none(),
        "the old primary acknowledged nothing after the announcement: {i}"
    );
    assert!(pinned["writes"]["isolated_primary_at_ms"].is_null(), "{}", pinned["writes"]);
    assert!(!pinned["writes"]["recovered"].as_bool().unwrap(), "{}", pinned["writes"]);
    assert!(u(&pinned["writes"]["errors"]["noreplicas"]) > 0, "{}", pinned["writes"]["errors"]);
    // The new primary refused failprobe's own writes as well until it had a replica again.
    assert!(own["writes"]["recovered"].as_bool().unwrap(), "{}", own["writes"]);
    assert!(u(&own["writes"]["errors"]["noreplicas"]) > 0, "{}", own["writes"]["errors"]);
    let headline = s["verdict"]["headline"].as_str().unwrap();
    // Its reads, which need no replica, were still answered by the isolated node: said so.
    assert!(!headline.contains("split-brain"), "{headline}");
    eprintln!(
        "min-replicas-to-write 1, old primary {}: failprobe writes down {} ms, pinned {} acknowledged, none lost",
        lab.addr(old),
        f(&own["writes"]["longest_outage_ms"]),
        u(&i["acked_writes"])
    );
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));
}
