//! `failprobe demo`.

use crate::control::TriggerSpec;
use crate::probe::client::Profile;
use crate::scenario::Plan;
use std::path::PathBuf;
use std::time::Duration;

/// `failprobe demo`: a sentinel lab, three `SENTINEL FAILOVER` trials and one `kill`.
pub fn demo_plan(out: PathBuf) -> Plan {
    use crate::lab::Topology;
    Plan {
        name: "demo".into(),
        target: None,
        lab_topology: Some(Topology::Sentinel),
        lab_server: None,
        endpoint_lag: Duration::ZERO,
        dns_server: None,
        write_ack: crate::probe::ack::WriteAck::Plain,
        before: None,
        after: None,
        backup: false,
        lab_dir: None,
        interval: Duration::from_millis(10),
        timeout: Duration::from_millis(250),
        key_ttl: Duration::from_secs(3600),
        triggers: vec![TriggerSpec::Sentinel { coordinated: false }; 3]
            .into_iter()
            .chain([TriggerSpec::Kill])
            .collect(),
        warmup: Duration::from_secs(2),
        settle: Duration::from_secs(2),
        duration: Duration::from_secs(10),
        // A pinned client never recovers from a Sentinel failover: each trial waits this long.
        max_trial: Duration::from_secs(10),
        budget: Default::default(),
        clients: Some(vec![Profile::Failprobe, Profile::Pinned]),
        adapters: Vec::new(),
        out,
        pid: None,
        shard: None,
        key: None,
        seed_keys: 0,
        yes: false,
        commands_not_typed: Vec::new(),
        pass_env: Vec::new(),
        quiet: false,
        report: Default::default(),
        ci: Default::default(),
        aws: None,
    }
}
