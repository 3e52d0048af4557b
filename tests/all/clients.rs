//! Client profiles side by side on a real Sentinel lab: what failprobe's own client sees next to
//! what an application written the common way sees.

use crate::common::*;
use failprobe::lab::Topology;
use std::collections::HashSet;

#[test]
fn a_pinned_client_stays_on_the_demoted_primary_while_failprobe_recovers() {
    let lab = TestLab::start(Topology::Sentinel);
    let old_primary = lab.primary_port();
    let args =
        ["--trigger", "sentinel", "--clients", "failprobe,pinned", "--budget-clients", "all", "--max-trial", "8s"];
    let (o, out) = lab.run("run", &args);
    // The pinned client never recovers: covered by the budget, it fails the run.
    assert_eq!(code(&o), 1, "{}", explain(&o));
    let s = summary(&out);
    let t = &s["trials"][0];
    let clients = t["clients"].as_array().unwrap();
    let names: Vec<&str> = clients.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["failprobe", "pinned"]);
    let (own, pinned) = (&clients[0], &clients[1]);
    assert_eq!(own["writes"], t["writes"], "the trial's own figures are failprobe's");
    assert!(own["writes"]["recovered"].as_bool().unwrap());
    assert!(f(&own["writes"]["longest_outage_ms"]) < 1000.0, "{}", own["writes"]);
    assert!(!pinned["writes"]["recovered"].as_bool().unwrap(), "{}", pinned["writes"]);
    assert!(u(&pinned["writes"]["errors"]["readonly"]) > 50, "{}", pinned["writes"]["errors"]);
    // The old primary stepped down (Sentinel made it a replica) and it is on the timeline.
    let timeline: Vec<&str> = t["timeline"].as_array().unwrap().iter().map(|e| e["what"].as_str().unwrap()).collect();
    let step_down = format!("old primary 127.0.0.1:{old_primary} stepped down (now slave)");
    assert!(timeline.contains(&step_down.as_str()), "{timeline:?}");
    assert!(s["budget"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v.as_str().unwrap().contains("pinned writes")));
    // Each profile's writes are checked against its own log on the new primary.
    let run_id = s["run_id"].as_str().unwrap();
    let log: Vec<u64> = redis::cmd("LRANGE")
        .arg(format!("failprobe:{{{run_id}}}:t0:pinned:log"))
        .arg(0)
        .arg(-1)
        .query(&mut lab.conn(lab.primary_port()))
        .unwrap();
    let present: HashSet<u64> = log.into_iter().collect();
    let acked: Vec<u64> = acked_writes_of(&out, 0, Some("pinned"));
    let lost = acked.iter().filter(|s| !present.contains(s)).count() as u64;
    assert_eq!(u(&pinned["integrity"]["acked_writes"]), acked.len() as u64);
    assert_eq!(u(&pinned["integrity"]["lost_acked_writes"]), lost);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("client pinned: writes NOT RECOVERED"), "{text}");
}
