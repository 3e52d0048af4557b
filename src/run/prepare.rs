//! Before anything is recorded or fired: the lab, the target, every check of the plan and
//! of the deployment, and the confirmation of what will be touched.

use super::servers;
use super::touch;
use super::touch::Consent;
use super::CONTROL_LIMIT;
use crate::aws::watch::AwsRun;
use crate::control::{TriggerContext, TriggerSpec};
use crate::error::UsageError;
use crate::lab::{Lab, LabOptions, Topology};
use crate::probe::keys;
use crate::scenario::Plan;
use crate::target::{Target, TargetEnv};
use anyhow::{anyhow, Result};
use std::sync::Arc;
use std::time::Duration;

/// What `prepare` opened and checked before anything is recorded.
pub(super) struct Prepared {
    pub(super) target: Arc<Target>,
    /// Where triggers act: the target, or behind an endpoint lab its sentinels (a trigger must
    /// never act on the endpoint itself).
    pub(super) control: Arc<Target>,
    pub(super) lab: Option<Arc<Lab>>,
    pub(super) aws: Option<Arc<AwsRun>>,
    /// Known before the confirmation: an ElastiCache backup is named after it.
    pub(super) run_id: String,
    /// The servers the user agreed to act on (or `--yes`): each trial checks again.
    pub(super) consent: Arc<Consent>,
    /// What the run measures, as the servers described themselves before the first trial.
    pub(super) servers: Vec<crate::sample::ServerMeta>,
}

/// The lab, the target, and every check before anything is recorded or fired.
pub(super) async fn prepare(plan: &Plan) -> Result<Prepared> {
    let lab = open_lab(plan).await?;
    let (aws, aws_url) = open_aws(plan).await?;
    let target_url = plan
        .target
        .clone()
        .or(aws_url)
        .or_else(|| lab.as_ref().map(|l| lab_target(l, plan)))
        .ok_or_else(|| anyhow!(UsageError::Invalid("no target".into())))?;
    let mut target = match (plan.target.is_none(), &lab) {
        // A lab has no password: FAILPROBE_PASSWORD / REDISCLI_AUTH are for the real target.
        (true, Some(_)) => Target::parse(&target_url)?,
        _ => crate::target::open(&target_url, &TargetEnv::from_process())?,
    };
    if let Some(server) = plan.dns_server {
        target = target.with_dns(crate::target::dns::Dns::server(server).map_err(crate::error::invalid)?);
    }
    let target = Arc::new(target);
    let control = match lab.as_deref().filter(|l| l.topology == Topology::Endpoint).and_then(|l| l.sentinel_url()) {
        Some(url) => Arc::new(Target::parse(&url)?),
        None => target.clone(),
    };
    plan.check(&target, &control, lab.is_some())?;
    let run_id = keys::new_run_id();
    if let Some(lab) = &lab {
        // A node killed by an earlier run of a `lab up` lab is started again first: waiting
        // for it would only time out.
        lab.heal().await?;
        lab.wait_ready(Duration::from_secs(60)).await?;
    }
    preflight(&target).await?;
    check_write_ack(plan, &control).await?;
    let tctx = trigger_context(plan, &control, &lab, &aws);
    let mut asks = Asks::default();
    let mut checked: Vec<&TriggerSpec> = Vec::new();
    for spec in &plan.triggers {
        if !checked.contains(&spec) {
            let found = spec.check(&tctx).await?;
            asks.api_calls.extend(found.api_call);
            asks.processes.extend(found.process);
            checked.push(spec);
        }
    }
    if plan.backup && aws.is_some() {
        asks.api_calls.push(format!(
            "CreateSnapshot SnapshotName={} (once, before the first trigger; kept, failprobe never deletes it), then DescribeSnapshots until available",
            crate::control::backup::snapshot_name(&run_id)
        ));
    }
    // What a failover or backup will act on, as the deployment names it (not as typed).
    if acts(plan) && aws.is_none() {
        asks.touched = touch::discover(&control, CONTROL_LIMIT).await;
    }
    confirm(plan, &target, &asks)?;
    // Where triggers act is what was measured: the servers listed above, else found now.
    let found = match acts(plan) && aws.is_none() {
        true => asks.touched.clone(),
        false => touch::discover(&control, CONTROL_LIMIT).await,
    };
    let servers = servers::describe(&control, &found, CONTROL_LIMIT).await;
    let consent = Arc::new(match plan.yes {
        true => Consent::Everything,
        false => Consent::Listed(asks.touched),
    });
    Ok(Prepared { target, control, lab, aws, run_id, consent, servers })
}

/// `--write-ack waitaof`: WAITAOF came with Redis 7.2 (every Valkey has it). On an older server
/// every write would fail as an unknown command: refused before anything runs, naming the
/// version found.
async fn check_write_ack(plan: &Plan, control: &Target) -> Result<()> {
    if !matches!(plan.write_ack, crate::probe::ack::WriteAck::WaitAof { .. }) {
        return Ok(());
    }
    let found = touch::discover(control, CONTROL_LIMIT).await;
    let data_nodes = servers::describe(control, &found, CONTROL_LIMIT).await;
    let too_old = data_nodes
        .iter()
        .find(|s| s.server == "redis" && s.role != "sentinel" && crate::control::major_minor(&s.version) < (7, 2));
    match too_old {
        Some(s) => Err(UsageError::Invalid(format!(
            "--write-ack {} needs Redis 7.2 or later, or Valkey (WAITAOF): {} runs redis {}",
            plan.write_ack.label(),
            s.address,
            s.version
        ))
        .into()),
        None => Ok(()),
    }
}

/// `--replication-group` / `--cache-cluster`: the API client, and the probe target AWS describes.
pub(super) async fn open_aws(plan: &Plan) -> Result<(Option<Arc<AwsRun>>, Option<String>)> {
    let Some(p) = &plan.aws else { return Ok((None, None)) };
    let unusable = |e: &dyn std::fmt::Display| UsageError::Invalid(format!("{e} (no failover was started)"));
    let client = crate::aws::client(&p.api).await?;
    let mut sources = std::collections::BTreeSet::new();
    let url = if let Some(id) = &p.replication_group {
        let g = crate::aws::group::describe_group(&client, id).await.map_err(|e| unusable(&e))?;
        sources.insert(g.id.clone());
        sources.extend(g.member_clusters.iter().cloned());
        crate::note!(
            "{}: {} {}, {}, automatic failover {}, {}",
            g.id,
            g.engine,
            if g.cluster_enabled { "cluster mode" } else { "cluster mode disabled" },
            g.status,
            g.automatic_failover,
            g.roles()
        );
        let password_set = ["FAILPROBE_PASSWORD", "REDISCLI_AUTH"].iter().any(|v| std::env::var_os(v).is_some());
        if g.auth_required && !password_set {
            crate::note!("note: {id} requires AUTH; set FAILPROBE_PASSWORD (failprobe never reads it from AWS)");
        }
        g.target_url().map_err(|e| unusable(&format!("{id}: {e}")))?
    } else if let Some(id) = &p.cache_cluster {
        let c = crate::aws::group::describe_cache_cluster(&client, id).await.map_err(|e| unusable(&e))?;
        sources.insert(c.id.clone());
        crate::note!("{}: {} {}, nodes {}", c.id, c.engine, c.status, c.node_states());
        c.memcache_url().map_err(|e| unusable(&format!("{id}: {e}")))?
    } else {
        return Ok((None, None));
    };
    let mut run = AwsRun::new(client, p.replication_group.clone(), p.cache_cluster.clone(), sources);
    run.poll = p.poll;
    run.wait = p.wait;
    run.allow_multi_az_toggle = p.allow_multi_az_toggle;
    run.api = p.api.clone();
    Ok((Some(Arc::new(run)), Some(url)))
}

pub(super) async fn open_lab(plan: &Plan) -> Result<Option<Arc<Lab>>> {
    if let Some(dir) = &plan.lab_dir {
        return Ok(Some(Arc::new(Lab::load(dir)?)));
    }
    match plan.lab_topology {
        Some(topology) => {
            let dir = plan.out.join("lab");
            let mut options = LabOptions {
                endpoint_lag: plan.endpoint_lag,
                settings: plan.lab_settings.clone(),
                ..LabOptions::default()
            };
            options.choose(plan.lab_server.as_ref());
            Ok(Some(Arc::new(Lab::up_with(topology, &dir, true, &options).await?)))
        }
        None => Ok(None),
    }
}

/// What a run probes in its lab: the lab's target, but both nodes of the replica lab when the
/// trigger is `failover`, which swaps them (the primary alone would be probed as a replica).
pub(super) fn lab_target(lab: &Lab, plan: &Plan) -> String {
    match plan.triggers.iter().any(|t| matches!(t, TriggerSpec::Failover(_))) {
        true => lab.pair_url(),
        false => lab.target_url(),
    }
}

/// Whether the run acts on the deployment at all: a trigger other than `none`, or a backup.
pub(super) fn acts(plan: &Plan) -> bool {
    plan.backup || plan.triggers.iter().any(|t| *t != TriggerSpec::None)
}

/// What the confirmation shows beside the triggers, found by the checks.
#[derive(Default)]
pub(super) struct Asks {
    /// The AWS API calls each trial makes.
    pub(super) api_calls: Vec<String>,
    /// Each process a trigger signals, as verified (program, pid, address, port).
    pub(super) processes: Vec<String>,
    /// The servers a failover or backup acts on.
    pub(super) touched: touch::Touched,
}

/// Asks before anything destructive: a trigger or backup acting on a server that is not on
/// loopback (as typed, or as Sentinel, the cluster or DNS name it), any trigger that calls the
/// AWS API, always `command=` and `--pid` (an ssh tunnel to a remote deployment is on loopback
/// too, and a pid or a script can act on anything), and commands the user did not type
/// (a scenario's, `FAILPROBE_CLIENTS`). `--yes` or a typed `yes`; the question shows exactly
/// what will be done and to which servers.
pub(super) fn confirm(plan: &Plan, target: &Target, asks: &Asks) -> Result<()> {
    let destructive: Vec<String> =
        plan.triggers.iter().filter(|t| **t != TriggerSpec::None).map(|t| t.label()).collect();
    let always = plan.triggers.iter().any(|t| t.kind().always_confirm)
        || (plan.pid.is_some() && plan.triggers.iter().any(|t| t.needs_process()));
    let local = target.is_loopback() && asks.touched.all_loopback();
    let untyped = !plan.commands_not_typed.is_empty();
    let acts = acts(plan);
    if plan.yes || ((!acts || (local && asks.api_calls.is_empty() && !always)) && !untyped) {
        return Ok(());
    }
    let mut what = match destructive.first() {
        Some(first) => format!("{} trial(s) of `{first}` against {}", destructive.len(), target.redacted()),
        None => format!("{} trial(s) observing {}", plan.triggers.len(), target.redacted()),
    };
    if plan.backup && plan.aws.is_none() {
        what.push_str("\n  first: BGSAVE on each primary (it forks; the server's RDB file is replaced by a fresh one)");
    }
    for process in &asks.processes {
        what.push_str(&format!("\n  signals {process} (checked again before each signal)"));
    }
    if acts {
        for node in asks.touched.lines() {
            what.push_str(&format!("\n  acts on {node}"));
        }
    }
    for call in &asks.api_calls {
        what.push_str(&format!("\n  each trial calls: {call}"));
    }
    for command in &plan.commands_not_typed {
        what.push_str(&format!("\n  runs {command}"));
    }
    if let Some(api) = plan.aws.as_ref().map(|a| &a.api) {
        let region = api.region.as_deref().unwrap_or("from the AWS profile/environment");
        let endpoint = api.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL_ELASTICACHE").ok());
        let endpoint = endpoint.as_deref().map(crate::target::redact).unwrap_or_else(|| "AWS's endpoint".into());
        what.push_str(&format!("\n  region {region}, endpoint {endpoint}"));
    }
    let why = if !asks.api_calls.is_empty() {
        "calls the AWS API"
    } else if acts && !target.is_loopback() {
        "not on loopback"
    } else if acts && !local {
        "acts on servers that are not all on loopback"
    } else if acts && always {
        "runs a command or signals a process"
    } else {
        "runs commands that were not typed on this command line"
    };
    crate::error::ask_to_confirm(&format!("run {what}"), why)
}

pub(super) fn trigger_context(
    plan: &Plan,
    target: &Arc<Target>,
    lab: &Option<Arc<Lab>>,
    aws: &Option<Arc<AwsRun>>,
) -> TriggerContext {
    TriggerContext {
        target: target.clone(),
        lab: lab.clone(),
        pid: plan.pid,
        limit: CONTROL_LIMIT,
        max_wait: plan.max_trial,
        trials: plan.triggers.len(),
        shard: plan.shard,
        key: plan.key.clone(),
        aws: aws.clone(),
        report: None,
    }
}

pub(super) async fn preflight(target: &Target) -> Result<()> {
    crate::probe::engine::preflight(target, CONTROL_LIMIT).await.map_err(|e| UsageError::Unreachable(e).into())
}
