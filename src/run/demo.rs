//! `failprobe demo`: a scenario built in, planned and checked like any other run.

use crate::control::TriggerSpec;
use crate::lab::Topology;
use crate::scenario::{plan, Overrides, Plan};
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

/// A sentinel lab, three `SENTINEL FAILOVER` trials and one `kill`, with failprobe's own client
/// beside a pinned one (which never recovers from a Sentinel failover: each trial waits
/// `max_trial` for it).
pub fn demo_plan(out: PathBuf, outputs: crate::report::OutputArgs) -> Result<Plan> {
    let overrides = Overrides {
        lab_topology: Some(Topology::Sentinel),
        trigger: Some("sentinel".into()),
        repeat: Some(3),
        warmup: Some(Duration::from_secs(2)),
        settle: Some(Duration::from_secs(2)),
        max_trial: Some(Duration::from_secs(10)),
        key_ttl: Some(Duration::from_secs(3600)),
        clients: vec!["failprobe,pinned".into()],
        out: Some(out),
        outputs,
        ..Overrides::default()
    };
    let mut plan = plan(None, overrides)?;
    plan.name = "demo".into();
    plan.triggers.push(TriggerSpec::parse("kill")?);
    Ok(plan)
}
