//! A live measurement: for each trial, wait for a healthy target, probe, fire the trigger, wait
//! for recovery and settle, check integrity. Samples and events go over one channel to a single
//! recorder task that persists first; probe tasks never block on disk.

mod dns_watch;
mod status;

use crate::analysis::Analyzer;
use crate::aws::watch::AwsRun;
use crate::clock::Clock;
use crate::control::{TriggerContext, TriggerSpec};
use crate::error::UsageError;
use crate::lab::{Lab, LabOptions, Topology, FAILOVER_TIMEOUT_MS};
use crate::probe::client::{Client, Profile};
use crate::probe::engine::{self, Engine, StreamTask};
use crate::probe::schedule::{Health, StreamConfig};
use crate::probe::{keys, TrialKeys};
use crate::record::store::RunWriter;
use crate::report::summary::Summary;
use crate::report::write_reports;
use crate::sample::KeyspacePhase;
use crate::sample::{EventKind, Record, RunMeta, Stream};
use crate::scenario::Plan;
use crate::sink::Reporter;
use crate::target::Target;
use anyhow::{anyhow, Context, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, Instant};

/// Control connections (preflight, triggers, integrity) get this long to connect and answer.
const CONTROL_LIMIT: Duration = Duration::from_secs(2);

pub struct RunResult {
    pub summary: Summary,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

struct RunContext {
    plan: Plan,
    /// Where triggers act (`Prepared::control`).
    control: Arc<Target>,
    lab: Option<Arc<Lab>>,
    prober: Arc<dyn Engine>,
    report: Reporter,
    /// The client profiles measured side by side, failprobe's own first when measured.
    profiles: Vec<Profile>,
    cancel: watch::Receiver<bool>,
    own_keys: std::sync::Mutex<Vec<String>>,
    aws: Option<Arc<AwsRun>>,
    run_id: String,
}

/// One client profile during one trial: a fresh client (an application started before the
/// trial), its own keys and the health of its streams.
struct ClientTrial {
    profile: Profile,
    client: Arc<dyn Client>,
    keys: Vec<Arc<TrialKeys>>,
    /// Per shard, per stream (index `shard * 2 + stream`).
    health: Vec<Arc<Health>>,
}

/// What `prepare` opened and checked before anything is recorded.
struct Prepared {
    target: Arc<Target>,
    /// Where triggers act: the target, or behind an endpoint lab its sentinels (a trigger must
    /// never act on the endpoint itself).
    control: Arc<Target>,
    lab: Option<Arc<Lab>>,
    aws: Option<Arc<AwsRun>>,
    /// Known before the confirmation: an ElastiCache backup is named after it.
    run_id: String,
}

/// One run in three steps: prepare (lab, target, every check and confirmation: nothing is
/// recorded and nothing fired, so an error here leaves no directory behind), measure (the trials),
/// teardown (restore what AWS changed, stop the probes, finish the recorder, write the report).
/// Once recording has begun, any error still ends in teardown: the report covers what was
/// measured and says why the run stopped.
pub async fn run(plan: Plan) -> Result<RunResult> {
    // Installed first, so a Ctrl-C (or SIGTERM, SIGHUP) while the lab starts still stops the
    // lab cleanly.
    let (stop, cancel) = watch_stop_signals();
    crate::spawn::set_pass_env(&plan.pass_env);
    let mut claim = crate::record::store::OutClaim::claim(&plan.out).map_err(UsageError::Invalid)?;
    let prepared = prepare(&plan).await?;
    let (target, limit) = (prepared.target.clone(), plan.timeout.max(Duration::from_millis(100)));
    let start =
        move |report: Reporter, run_id: String| async move { engine::start(target, &run_id, limit, report).await };
    record_and_measure(&plan, &prepared, &mut claim, stop, cancel, start).await
}

/// From the first record to the report: the recorder, the engine (`start_engine`: the real
/// one, or a fake in tests), the trials, and the teardown that always follows.
async fn record_and_measure<S, F>(
    plan: &Plan,
    prepared: &Prepared,
    claim: &mut crate::record::store::OutClaim,
    stop: watch::Sender<bool>,
    cancel: watch::Receiver<bool>,
    start_engine: S,
) -> Result<RunResult>
where
    S: FnOnce(Reporter, String) -> F,
    F: std::future::Future<Output = Result<Arc<dyn Engine>, crate::target::error::ProbeError>>,
{
    let clock = Clock::start_now();
    let run_id = prepared.run_id.clone();
    let meta = run_meta(plan, &prepared.target, &clock, prepared.lab.as_deref(), &run_id);
    let writer = RunWriter::create(&plan.out, &meta)?;
    claim.keep();
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    let recorder = tokio::spawn(record_loop(rx, done_rx, writer, Analyzer::new(meta), stop));
    let report = Reporter { clock, tx, trial: Arc::new(AtomicU32::new(0)) };
    let aws_stop = watch::channel(false);
    let aws_task = prepared.aws.as_ref().map(|a| {
        a.attach(report.clone());
        a.clone().spawn(aws_stop.1.clone())
    });

    let flips = prepared.lab.as_ref().and_then(|lab| follow_endpoint(lab, report.clone()));
    let dns = dns_watch::start(&prepared.target, report.clone());
    let engine = start_engine(report.clone(), run_id.clone()).await;
    let (prober, failure) = measure(plan, prepared, engine, report.clone(), cancel).await;

    if let Some(aws) = &prepared.aws {
        let _ = aws_stop.0.send(true);
        if let Some(task) = aws_task {
            let _ = task.await;
        }
        aws.restore_all().await;
        // Events AWS logged since the last poll still belong on the timeline.
        if let Err(e) = aws.poll_events().await {
            tracing::warn!("{e}");
        }
    }
    if let Some(prober) = prober {
        prober.shutdown();
    }
    for watch in [flips, dns].into_iter().flatten() {
        watch.abort();
    }
    drop(report);
    let _ = done_tx.send(true);
    let (analyzer, disk_error) = recorder.await.context("recorder task")?;
    if !plan.quiet && std::io::stdout().is_terminal() {
        status::clear_status();
    }
    // Reports are written even after a recorder failure: summary.json is small, and a full
    // disk may have room again; if not, the error says which file could not be written.
    let written = write_reports(&plan.out, analyzer.finish(), &plan.report);
    if let Some(e) = disk_error {
        let report = match &written {
            Ok(_) => format!("the report in {} covers what was recorded", plan.out.display()),
            Err(w) => format!("the report could not be written either: {w:#}"),
        };
        return Err(anyhow!("the recorder could not write the samples ({e}); no further trigger was fired; {report}"));
    }
    let (summary, mut files) = written?;
    files.extend(plan.ci.write(&summary)?);
    if let Some(e) = failure {
        return Err(e.context(format!("run stopped; what was measured is in {}", plan.out.display())));
    }
    Ok(RunResult { summary, dir: plan.out.clone(), files })
}

/// An endpoint lab's flips, on the timeline at the time the endpoint logged them (read every
/// 200 ms from its `endpoint.jsonl`; the endpoint is another process).
fn follow_endpoint(lab: &Lab, report: Reporter) -> Option<tokio::task::JoinHandle<()>> {
    let port = lab.endpoint_port().filter(|_| lab.topology == Topology::Endpoint)?;
    let dir = lab.dir.clone();
    let origin_us = report.clock.wall_start().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    Some(tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let (flips, lines) = crate::lab::endpoint::read_flips(&dir, seen);
            seen = lines;
            for f in flips {
                let kind = EventKind::EndpointFlip { endpoint: format!("127.0.0.1:{port}"), from: f.from, to: f.to };
                report.event_at(f.at_unix_us.saturating_sub(origin_us), kind);
            }
            sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// The lab, the target, and every check before anything is recorded or fired.
async fn prepare(plan: &Plan) -> Result<Prepared> {
    let lab = open_lab(plan).await?;
    let (aws, aws_url) = open_aws(plan).await?;
    let target_url = plan
        .target
        .clone()
        .or(aws_url)
        .or_else(|| lab.as_ref().map(|l| lab_target(l, plan)))
        .ok_or_else(|| anyhow!(UsageError::Invalid("no target".into())))?;
    let mut target = Target::parse(&target_url)?;
    if plan.target.is_none() && lab.is_some() {
        // A lab has no password: FAILPROBE_PASSWORD / REDISCLI_AUTH are for the real target.
        target.forget_passwords();
    }
    if let Some(server) = plan.dns_server {
        target = target.with_dns(crate::target::dns::Dns::server(server).map_err(crate::error::invalid)?);
    }
    let target = Arc::new(target);
    let control = match lab.as_deref().filter(|l| l.topology == Topology::Endpoint).and_then(|l| l.sentinel_url()) {
        Some(url) => Arc::new(Target::parse(&url)?),
        None => target.clone(),
    };
    check_plan(plan, &target, &control, lab.as_deref())?;
    let run_id = keys::new_run_id();
    let calls_aws = plan.triggers.iter().any(|t| t.is_aws()) || (plan.backup && aws.is_some());
    if !calls_aws {
        confirm(plan, &target, &[])?;
    }
    if let Some(lab) = &lab {
        lab.wait_ready(Duration::from_secs(60)).await?;
    }
    preflight(&target).await?;
    let tctx = trigger_context(plan, &control, &lab, &aws);
    let mut api_calls = Vec::new();
    let mut checked: Vec<&TriggerSpec> = Vec::new();
    for spec in &plan.triggers {
        if !checked.contains(&spec) {
            api_calls.extend(spec.check(&tctx).await?);
            checked.push(spec);
        }
    }
    if plan.backup && aws.is_some() {
        api_calls.push(format!(
            "CreateSnapshot SnapshotName={} (once, before the first trigger; kept, failprobe never deletes it), then DescribeSnapshots until available",
            crate::control::backup::snapshot_name(&run_id)
        ));
    }
    // The AWS calls are known only now (the node group comes from DescribeReplicationGroups).
    if calls_aws {
        confirm(plan, &target, &api_calls)?;
    }
    Ok(Prepared { target, control, lab, aws, run_id })
}

/// Starts the probes and runs the trials. Never returns early: an error is handed back, with
/// the prober when it started, for teardown. Fewer trials than asked is marked on the timeline.
async fn measure(
    plan: &Plan,
    prepared: &Prepared,
    engine: Result<Arc<dyn Engine>, crate::target::error::ProbeError>,
    report: Reporter,
    cancel: watch::Receiver<bool>,
) -> (Option<Arc<dyn Engine>>, Option<anyhow::Error>) {
    let target = &prepared.target;
    let prober = match engine {
        Ok(p) => p,
        Err(e) => {
            let e = anyhow!(UsageError::Unreachable(format!("{}: {e}", target.redacted())));
            report.event(EventKind::TrialEnd { reason: format!("aborted: {e:#}") });
            report.event(EventKind::Interrupted);
            return (None, Some(e));
        }
    };
    let ctx = RunContext {
        plan: plan.clone(),
        control: prepared.control.clone(),
        lab: prepared.lab.clone(),
        prober: prober.clone(),
        report,
        profiles: plan.profiles_for(target),
        cancel,
        own_keys: Default::default(),
        aws: prepared.aws.clone(),
        run_id: prepared.run_id.clone(),
    };
    let mut last_trigger: Option<Instant> = None;
    let mut failure = None;
    let mut completed = 0;
    for (i, spec) in ctx.plan.triggers.iter().enumerate() {
        if *ctx.cancel.borrow() {
            break;
        }
        match run_trial(&ctx, i as u32, spec, &mut last_trigger).await {
            Ok(Ending::Done(_)) => completed += 1,
            Ok(Ending::Interrupted) => break,
            Err(e) => {
                ctx.report.event(EventKind::TrialEnd { reason: format!("aborted: {e:#}") });
                failure = Some(e);
                break;
            }
        }
    }
    // Fewer trials than asked is no verdict, however the run stopped: say so on the timeline.
    if completed < ctx.plan.triggers.len() {
        ctx.report.event(EventKind::Interrupted);
    }
    (Some(prober), failure)
}

/// `--replication-group` / `--cache-cluster`: the API client, and the probe target AWS describes.
async fn open_aws(plan: &Plan) -> Result<(Option<Arc<AwsRun>>, Option<String>)> {
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
    Ok((Some(Arc::new(run)), Some(url)))
}

async fn open_lab(plan: &Plan) -> Result<Option<Arc<Lab>>> {
    if let Some(dir) = &plan.lab_dir {
        return Ok(Some(Arc::new(Lab::load(dir)?)));
    }
    match plan.lab_topology {
        Some(topology) => {
            let dir = plan.out.join("lab");
            let options =
                LabOptions { server: plan.lab_server, endpoint_lag: plan.endpoint_lag, ..LabOptions::default() };
            let lab = Lab::up_with(topology, &dir, true, &options).await?;
            Ok(Some(Arc::new(lab)))
        }
        None => Ok(None),
    }
}

fn check_plan(plan: &Plan, target: &Target, control: &Target, lab: Option<&Lab>) -> Result<()> {
    for spec in &plan.triggers {
        spec.check_plan(control, lab.is_some() || plan.pid.is_some())?;
    }
    let measured = plan.profiles_for(target);
    if let (Some(_), Some(p)) = (target.memcache_nodes(), measured.iter().find(|p| **p != Profile::Failprobe)) {
        return Err(crate::error::invalid(format!(
            "the `{}` client profile is for Redis targets; memcached is probed by failprobe's own client (--clients failprobe)",
            p.name()
        )));
    }
    if plan.write_ack != crate::probe::ack::WriteAck::Plain {
        if target.memcache_nodes().is_some() {
            return Err(crate::error::invalid(
                "--write-ack is for Redis targets: memcached has no replicas to wait for",
            ));
        }
        if let Some(p) = measured.iter().find(|p| matches!(p, Profile::Exec(_))) {
            return Err(crate::error::invalid(format!(
                "--write-ack is sent by failprobe's built-in clients in the write's round trip; the adapter `{}` writes plainly: measure it in a run of its own",
                p.name()
            )));
        }
    }
    if target.memcache_nodes().is_some() && plan.backup {
        return Err(crate::error::invalid(
            "--backup is for Redis and Valkey targets: back memcached up with `failprobe memcached dump --target URL --file F` (and `failprobe memcached restore` brings it back)",
        ));
    }
    if target.memcache_nodes().is_some() && plan.dns_server.is_some() {
        return Err(crate::error::invalid(
            "--dns-server is for Redis targets: memcached connections look names up through the system's resolver",
        ));
    }
    let resolves_itself = measured.iter().find(|p| matches!(p, Profile::RedisRs | Profile::Exec(_)));
    if let (Some(p), Some(_), false) = (resolves_itself, plan.dns_server, target.host_names().is_empty()) {
        return Err(crate::error::invalid(format!(
            "--dns-server does not reach the `{}` client profile: its client library looks names up through the system; leave it out of --clients or give the target by address",
            p.name()
        )));
    }
    for name in plan.budget.clients.iter().filter(|n| *n != "all") {
        if !measured.iter().any(|p| p.name() == *name) {
            let list: Vec<String> = measured.iter().map(|p| p.name()).collect();
            return Err(crate::error::invalid(format!(
                "--budget-clients names `{name}`, which is not measured (--clients {})",
                list.join(",")
            )));
        }
    }
    Ok(())
}

/// What a run probes in its lab: the lab's target, but both nodes of the replica lab when the
/// trigger is `failover`, which swaps them (the primary alone would be probed as a replica).
fn lab_target(lab: &Lab, plan: &Plan) -> String {
    match plan.triggers.iter().any(|t| matches!(t, TriggerSpec::Failover { .. })) {
        true => lab.pair_url(),
        false => lab.target_url(),
    }
}

/// Asks before anything destructive: a trigger against a target that is not on loopback, any
/// trigger that calls the AWS API, and always `command=` and `--pid` (an ssh tunnel to a remote
/// deployment is on loopback too, and a pid or a script can act on anything). `--yes` or a
/// typed `yes`; the question shows exactly what will be done.
fn confirm(plan: &Plan, target: &Target, api_calls: &[String]) -> Result<()> {
    let destructive: Vec<String> =
        plan.triggers.iter().filter(|t| **t != TriggerSpec::None).map(|t| t.label()).collect();
    let always = plan.triggers.iter().any(|t| t.kind().always_confirm)
        || (plan.pid.is_some() && plan.triggers.iter().any(|t| t.needs_process()));
    let acts = !destructive.is_empty() || plan.backup;
    if !acts || (target.is_loopback() && api_calls.is_empty() && !always) || plan.yes {
        return Ok(());
    }
    let mut what = match destructive.first() {
        Some(first) => format!("{} trial(s) of `{first}` against {}", destructive.len(), target.redacted()),
        None => format!("{} trial(s) observing {}", plan.triggers.len(), target.redacted()),
    };
    if plan.backup && plan.aws.is_none() {
        what.push_str("\n  first: BGSAVE on each primary (it forks; the server's RDB file is replaced by a fresh one)");
    }
    if let (Some(pid), true) = (plan.pid, plan.triggers.iter().any(|t| t.needs_process())) {
        what.push_str(&format!(
            "\n  signalling pid {pid} (checked before each signal: a server listening on the target's port)"
        ));
    }
    for call in api_calls {
        what.push_str(&format!("\n  each trial calls: {call}"));
    }
    if let Some(api) = plan.aws.as_ref().map(|a| &a.api) {
        let region = api.region.as_deref().unwrap_or("from the AWS profile/environment");
        let endpoint = api.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL_ELASTICACHE").ok());
        let endpoint = endpoint.as_deref().map(crate::target::redact).unwrap_or_else(|| "AWS's endpoint".into());
        what.push_str(&format!("\n  region {region}, endpoint {endpoint}"));
    }
    let why = if !api_calls.is_empty() {
        "calls the AWS API"
    } else if !target.is_loopback() {
        "not on loopback"
    } else {
        "runs a command or signals a process"
    };
    crate::error::ask_to_confirm(&format!("run {what}"), why)
}

fn trigger_context(
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
    }
}

async fn preflight(target: &Target) -> Result<()> {
    crate::probe::engine::preflight(target, CONTROL_LIMIT).await.map_err(|e| UsageError::Unreachable(e).into())
}

fn run_meta(plan: &Plan, target: &Target, clock: &Clock, lab: Option<&Lab>, run_id: &str) -> RunMeta {
    RunMeta {
        version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: plan.name.clone(),
        run_id: run_id.to_string(),
        target: target.redacted().to_string(),
        started_at: chrono::DateTime::<chrono::Utc>::from(clock.wall_start())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        interval_us: plan.interval.as_micros() as u64,
        timeout_us: plan.timeout.as_micros() as u64,
        triggers: plan.triggers.iter().map(|t| t.label()).collect(),
        budget: plan.budget.clone(),
        lab: lab.map(|l| l.dir.display().to_string()),
        clients: plan.profiles_for(target).iter().map(|p| p.name()).collect(),
        write_ack: match plan.write_ack {
            crate::probe::ack::WriteAck::Plain => String::new(),
            ack => ack.label(),
        },
    }
}

/// The first SIGINT, SIGTERM or SIGHUP finishes the current trial early; the run then resumes
/// a paused process, restores what it changed, stops its own lab and writes a partial report
/// (exit 2). A second signal never skips any of that: the clean-up is what keeps the
/// deployment safe, and it is bounded by its own deadlines.
fn watch_stop_signals() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let stop = tx.clone();
    let mut signals = crate::os::StopSignals::install();
    tokio::spawn(async move {
        let name = signals.next().await;
        let _ = tx.send(true);
        crate::note!("\n{name}: stopping the trial, resuming and restoring what was changed, writing a partial report");
        loop {
            let name = signals.next().await;
            crate::note!(
                "{name} again: still cleaning up (resume, restore, lab stop); failprobe exits when that is done"
            );
        }
    });
    (stop, rx)
}

/// Persists every record, then feeds it to the analysis. A write that fails (a full disk, a
/// file size limit) stops the run (`stop`): no trigger may fire while nothing is recorded.
/// The records keep flowing into the analysis, so the summary still covers them.
async fn record_loop(
    mut rx: mpsc::UnboundedReceiver<Record>,
    mut done: watch::Receiver<bool>,
    mut writer: RunWriter,
    mut analyzer: Analyzer,
    stop: watch::Sender<bool>,
) -> (Analyzer, Option<String>) {
    let mut failed: Option<String> = None;
    let fail = |e: anyhow::Error, failed: &mut Option<String>| {
        if failed.is_none() {
            crate::note!("\nerror: {e:#}: stopping the run (no further trigger will fire)");
            *failed = Some(format!("{e:#}"));
            let _ = stop.send(true);
        }
    };
    let mut flush = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    if failed.is_none() {
                        if let Err(e) = writer.write(&r) { fail(e, &mut failed); }
                    }
                    analyzer.ingest(r);
                }
                None => break,
            },
            _ = flush.tick() => if failed.is_none() {
                if let Err(e) = writer.flush() { fail(e, &mut failed); }
            },
            _ = done.changed() => {
                while let Ok(r) = rx.try_recv() {
                    if failed.is_none() {
                        if let Err(e) = writer.write(&r) { fail(e, &mut failed); }
                    }
                    analyzer.ingest(r);
                }
                break;
            }
        }
    }
    if failed.is_none() {
        if let Err(e) = writer.flush() {
            fail(e, &mut failed);
        }
    }
    (analyzer, failed)
}

enum Ending {
    Done(String),
    Interrupted,
}

async fn run_trial(
    ctx: &RunContext,
    trial: u32,
    spec: &TriggerSpec,
    last_trigger: &mut Option<Instant>,
) -> Result<Ending> {
    prepare_lab(ctx, *last_trigger).await?;
    ctx.report.trial.store(trial, std::sync::atomic::Ordering::SeqCst);
    ctx.report.event(EventKind::TrialStart);
    if let Some(command) = &ctx.plan.before {
        crate::control::runbook::step("before", command, ctx.plan.max_trial, &ctx.report).await?;
    }
    // A failed backup stops the run before the trigger, but `--after` still runs: `--before`
    // may have paused the batch jobs.
    let ending = match trial == 0 && ctx.plan.backup {
        true => match take_backup(ctx).await {
            Ok(()) => measure_trial(ctx, trial, spec, last_trigger).await,
            Err(e) => Err(e),
        },
        false => measure_trial(ctx, trial, spec, last_trigger).await,
    };
    if let Some(command) = &ctx.plan.after {
        crate::control::runbook::step("after", command, ctx.plan.max_trial, &ctx.report).await?;
    }
    ending
}

/// `--backup`, once before the first trigger: CreateSnapshot on ElastiCache, else BGSAVE on
/// each primary. An error stops the run before any failover.
async fn take_backup(ctx: &RunContext) -> Result<()> {
    use crate::control::backup;
    match &ctx.aws {
        Some(aws) => backup::elasticache_snapshot(aws, &backup::snapshot_name(&ctx.run_id), &ctx.report).await,
        None => {
            let primaries = ctx.prober.primaries().await;
            backup::bgsave_all(&ctx.control, &primaries, CONTROL_LIMIT, &ctx.report).await
        }
    }
}

/// One trial between the runbook's steps: fresh clients, streams, the trigger, recovery, the
/// checks.
async fn measure_trial(
    ctx: &RunContext,
    trial: u32,
    spec: &TriggerSpec,
    last_trigger: &mut Option<Instant>,
) -> Result<Ending> {
    let clients = open_clients(ctx, trial).await?;
    if let Ok(mut own) = ctx.own_keys.lock() {
        own.extend(clients.iter().flat_map(|c| &c.keys).flat_map(|k| k.all()).map(|k| k.to_string()));
    }
    seed(ctx, trial).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let streams: Vec<_> = clients.iter().flat_map(|c| start_streams(ctx, trial, c, stop_rx.clone())).collect();
    let status = spawn_status(ctx, trial, clients[0].health.clone());
    let ending = drive_trial(ctx, spec, last_trigger, &clients).await;
    let _ = stop_tx.send(true);
    let mut late = 0;
    for s in streams {
        late += s.await.unwrap_or(0);
    }
    status.abort();
    for c in clients.iter().filter(|c| c.profile != Profile::Failprobe) {
        c.client.shutdown();
    }
    match &ending {
        Ending::Done(reason) => {
            check_integrity(ctx, &clients).await;
            check_seeds(ctx, trial).await;
            record_keyspace(ctx, KeyspacePhase::After).await;
            let reason = if late > 0 { format!("{reason}; {late} probes sent late") } else { reason.clone() };
            ctx.report.event(EventKind::TrialEnd { reason });
        }
        Ending::Interrupted => ctx.report.event(EventKind::Interrupted),
    }
    Ok(ending)
}

/// The lab notes' rules before each trial: dead nodes restarted, replica in sync, sentinels
/// agreeing, and 2 × failover-timeout since the last failover (Sentinel refuses sooner).
async fn prepare_lab(ctx: &RunContext, last_trigger: Option<Instant>) -> Result<()> {
    let Some(lab) = &ctx.lab else { return Ok(()) };
    lab.heal().await?;
    if let (Some(at), true) = (last_trigger, lab.is_sentinel()) {
        let gap = Duration::from_millis(2 * FAILOVER_TIMEOUT_MS);
        tokio::time::sleep_until(at + gap).await;
    }
    lab.wait_ready(Duration::from_secs(60)).await.map(|_| ())
}

/// This trial's clients, one per profile: failprobe's own is the engine's prober (it follows
/// the primary across trials anyway); every other profile starts fresh, as an application
/// started before this maintenance would.
async fn open_clients(ctx: &RunContext, trial: u32) -> Result<Vec<ClientTrial>> {
    let shards = ctx.prober.shard_names().len();
    let mut clients = Vec::new();
    for profile in ctx.profiles.iter().cloned() {
        let client = match ctx.prober.client(profile.clone(), ctx.report.clone()).await {
            Ok(c) => c,
            Err(e) => {
                // Those already started stop with the trial that could not start.
                for c in clients.iter().filter(|c: &&ClientTrial| c.profile != Profile::Failprobe) {
                    c.client.shutdown();
                }
                return Err(anyhow!("starting the `{}` client: {e}", profile.name()));
            }
        };
        let label = profile.label();
        clients.push(ClientTrial {
            profile,
            client,
            keys: ctx
                .prober
                .keys(trial, ctx.plan.key_ttl, label.as_deref())
                .into_iter()
                .map(|k| Arc::new(k.with_ack(ctx.plan.write_ack)))
                .collect(),
            health: (0..shards * 2).map(|_| Arc::new(Health::default())).collect(),
        });
    }
    Ok(clients)
}

/// One write and one read stream per shard, each on its own clock.
fn start_streams(
    ctx: &RunContext,
    trial: u32,
    c: &ClientTrial,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let names = ctx.prober.shard_names();
    let pairs = names.into_iter().enumerate().flat_map(|(i, name)| Stream::ALL.map(|st| (i, name.clone(), st)));
    pairs
        .map(|(shard, name, stream)| {
            let cfg = StreamConfig {
                stream,
                shard: name,
                client: c.profile.label(),
                trial,
                interval: ctx.plan.interval,
                timeout: ctx.plan.timeout,
            };
            let task = StreamTask {
                shard,
                cfg,
                keys: c.keys[shard].clone(),
                report: ctx.report.clone(),
                health: c.health[shard * 2 + stream.index()].clone(),
                stop: stop.clone(),
            };
            tokio::spawn(c.client.clone().run_stream(task))
        })
        .collect()
}

/// Warm-up, trigger, then wait until every client's streams have been up for the settle time.
async fn drive_trial(
    ctx: &RunContext,
    spec: &TriggerSpec,
    last_trigger: &mut Option<Instant>,
    clients: &[ClientTrial],
) -> Ending {
    let mut cancel = ctx.cancel.clone();
    let Some(trigger) = spec.build() else {
        record_keyspace(ctx, KeyspacePhase::Before).await;
        return match cancellable(&mut cancel, sleep(ctx.plan.duration)).await {
            Some(()) => Ending::Done(format!("observed for {:?}", ctx.plan.duration)),
            None => Ending::Interrupted,
        };
    };
    if cancellable(&mut cancel, sleep(ctx.plan.warmup)).await.is_none() {
        return Ending::Interrupted;
    }
    record_keyspace(ctx, KeyspacePhase::Before).await;
    // With an application-like client measured, the trial lasts until a replaced primary has
    // stepped down: until then, clients still connected to it write into it.
    let mut old = OldPrimaries::new(match clients.iter().any(|c| c.profile != Profile::Failprobe) {
        true => primaries(ctx).await,
        false => Vec::new(),
    });
    let tctx = trigger_context(&ctx.plan, &ctx.control, &ctx.lab, &ctx.aws);
    ctx.report.event(EventKind::TriggerStart { kind: trigger.kind(), detail: spec.label() });
    *last_trigger = Some(Instant::now());
    match cancellable(&mut cancel, trigger.fire(&tctx)).await {
        Some(Ok(detail)) => ctx.report.event(EventKind::TriggerFinish { detail }),
        Some(Err(e)) => ctx.report.event(EventKind::TriggerError { message: format!("{e:#}") }),
        None => return Ending::Interrupted,
    }
    match cancellable(&mut cancel, wait_recovered(ctx, clients, &mut old)).await {
        Some(reason) => Ending::Done(reason),
        None => Ending::Interrupted,
    }
}

/// Each shard's primary now, as the deployment names it: behind an endpoint lab its sentinels
/// (the endpoint itself names only itself).
async fn primaries(ctx: &RunContext) -> Vec<Option<(String, u16)>> {
    if ctx.lab.as_ref().is_some_and(|l| l.topology == Topology::Endpoint) {
        return vec![crate::target::locate_primary(&ctx.control, CONTROL_LIMIT).await.ok()];
    }
    ctx.prober.primaries().await
}

/// The primaries before the trigger, and which of them have been seen stepping down.
struct OldPrimaries {
    before: Vec<Option<(String, u16)>>,
    stepped_down: Vec<bool>,
    checked: Option<Instant>,
    /// The verdict of the last check, given again until the next one is due.
    last: bool,
}

impl OldPrimaries {
    fn new(before: Vec<Option<(String, u16)>>) -> Self {
        let stepped_down = vec![false; before.len()];
        Self { before, stepped_down, checked: None, last: false }
    }

    /// Whether every shard's primary before the trigger is still the primary (nothing was
    /// replaced) or no longer acts as one. Asks at most every 250 ms; each step-down goes on
    /// the timeline once.
    async fn settled(&mut self, ctx: &RunContext) -> bool {
        if self.stepped_down.iter().all(|d| *d) {
            return true;
        }
        if self.checked.is_some_and(|at| at.elapsed() < Duration::from_millis(250)) {
            return self.last;
        }
        self.checked = Some(Instant::now());
        let now = primaries(ctx).await;
        let names = ctx.prober.shard_names();
        let mut settled = true;
        for (i, old) in self.before.iter().enumerate() {
            let Some((host, port)) = old else { continue };
            if self.stepped_down[i] || now.get(i).cloned().flatten().as_ref() == old.as_ref() {
                continue;
            }
            match ctx.prober.role_of(host, *port).await.unwrap_or_else(|| "unreachable".into()) {
                role if role == "master" => settled = false,
                role => {
                    self.stepped_down[i] = true;
                    let (shard, server) = (names.get(i).cloned().flatten(), format!("{host}:{port}"));
                    ctx.report.event(EventKind::StepDown { shard, server, role });
                }
            }
        }
        self.last = settled;
        settled
    }
}

async fn wait_recovered(ctx: &RunContext, clients: &[ClientTrial], old: &mut OldPrimaries) -> String {
    let since_trigger = Instant::now();
    let finished_us = ctx.report.clock.now_us();
    let settle_us = ctx.plan.settle.as_micros() as u64;
    loop {
        let now_us = ctx.report.clock.now_us();
        // Settle counts from the trigger's completion too: a failover without errors (Sentinel's)
        // still moves clients to the new primary a moment later, and that must be measured.
        let settled = |c: &ClientTrial| {
            c.health
                .iter()
                .map(|h| h.snapshot())
                .all(|h| h.seen_any && h.up && now_us.saturating_sub(h.since_us.max(finished_us)) >= settle_us)
        };
        let mut waiting: Vec<String> = clients.iter().filter(|c| !settled(c)).map(|c| c.profile.name()).collect();
        if !old.settled(ctx).await {
            waiting.push("the old primary still acting as one".to_string());
        }
        if waiting.is_empty() {
            return format!("recovered and stable for {:?}", ctx.plan.settle);
        }
        if since_trigger.elapsed() >= ctx.plan.max_trial {
            return format!(
                "not recovered ({}) within --max-trial {:?} after the trigger finished",
                waiting.join(", "),
                ctx.plan.max_trial
            );
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// A stream is up only when it is up on every shard.
fn combined(health: &[Arc<Health>], stream: Stream) -> crate::probe::schedule::HealthState {
    let parts: Vec<_> = health.iter().skip(stream.index()).step_by(2).map(|h| h.snapshot()).collect();
    let mut out = parts.iter().find(|h| !h.up).or(parts.first()).cloned().unwrap_or_default();
    out.completed = parts.iter().map(|h| h.completed).sum();
    out.failed = parts.iter().map(|h| h.failed).sum();
    out
}

async fn cancellable<T>(cancel: &mut watch::Receiver<bool>, fut: impl std::future::Future<Output = T>) -> Option<T> {
    if *cancel.borrow() {
        return None;
    }
    tokio::select! {
        v = fut => Some(v),
        _ = cancel.wait_for(|c| *c) => None,
    }
}

/// Every client's write log, read through failprobe's own client from the primary of now.
async fn check_integrity(ctx: &RunContext, clients: &[ClientTrial]) {
    for c in clients {
        for (i, shard) in ctx.prober.shard_names().into_iter().enumerate() {
            let max_seq = c.health[i * 2 + Stream::Write.index()].snapshot().max_seq;
            match ctx.prober.present_writes(i, &c.keys[i], max_seq).await {
                Ok((server, present)) => ctx.report.event(EventKind::WriteLog {
                    server,
                    present: present.into_ranges(),
                    shard,
                    client: c.profile.label(),
                }),
                Err(e) => ctx.report.event(EventKind::IntegrityError { message: e.to_string() }),
            }
        }
    }
}

/// Memcached: known keys stored before the trigger, so key survival can be counted after.
async fn seed(ctx: &RunContext, trial: u32) {
    let results = ctx.prober.seed(trial, ctx.plan.seed_keys, ctx.plan.key_ttl).await;
    for (shard, r) in ctx.prober.shard_names().into_iter().zip(results) {
        match r {
            Ok(keys) => ctx.report.event(EventKind::Seeded { shard, keys }),
            Err(e) => ctx.report.event(EventKind::IntegrityError { message: format!("seeding: {e}") }),
        }
    }
}

async fn check_seeds(ctx: &RunContext, trial: u32) {
    let results = ctx.prober.seeds_surviving(trial, ctx.plan.seed_keys).await;
    for (shard, r) in ctx.prober.shard_names().into_iter().zip(results) {
        match r {
            Ok(keys) => ctx.report.event(EventKind::SeedsSurviving { shard, keys }),
            Err(e) => ctx.report.event(EventKind::IntegrityError { message: format!("seed check: {e}") }),
        }
    }
}

async fn record_keyspace(ctx: &RunContext, phase: KeyspacePhase) {
    let own = ctx.own_keys.lock().map(|k| k.clone()).unwrap_or_default();
    if let Some((keys, dbs)) = ctx.prober.user_key_count(&own).await {
        ctx.report.event(EventKind::Keyspace { phase, keys, dbs: dbs.into_iter().collect() });
    }
}

/// The live status line, from the first profile's streams.
fn spawn_status(ctx: &RunContext, trial: u32, health: Vec<Arc<Health>>) -> tokio::task::JoinHandle<()> {
    let show = !ctx.plan.quiet && std::io::stdout().is_terminal();
    let clock = ctx.report.clock;
    let trials = ctx.plan.triggers.len();
    tokio::spawn(async move {
        if !show {
            return;
        }
        let mut last = (Instant::now(), 0u64);
        loop {
            sleep(Duration::from_millis(250)).await;
            let states = [("writes", combined(&health, Stream::Write)), ("reads", combined(&health, Stream::Read))];
            let done: u64 = states.iter().map(|(_, h)| h.completed).sum();
            let rate = (done - last.1.min(done)) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), done);
            status::print_status(&status::status_line(trial, trials, &states, clock.now_us(), rate));
        }
    })
}

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
        quiet: false,
        pass_env: Vec::new(),
        report: Default::default(),
        ci: Default::default(),
        aws: None,
    }
}

/// The run loop on a fake engine: no servers, a trial in well under a second.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::engine::BoxFuture;
    use crate::probe::{Attempt, Prober};
    use crate::sample::{ErrorClass, SeqSet};
    use crate::target::error::ProbeError;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// Acknowledges every write, except for `down` after `flag` appears (the trigger creates it):
    /// then refused. Reads see the highest write applied. The write log forgets `forget`.
    struct Fake {
        flag: PathBuf,
        down: Duration,
        flagged_at: Mutex<Option<tokio::time::Instant>>,
        applied: AtomicU64,
        written: Mutex<SeqSet>,
        forget: u64,
    }

    impl Fake {
        fn refusing(&self) -> bool {
            let mut at = self.flagged_at.lock().unwrap();
            if at.is_none() && self.flag.exists() {
                *at = Some(tokio::time::Instant::now());
            }
            at.is_some_and(|t| t.elapsed() < self.down)
        }
    }

    impl Prober for Fake {
        async fn write(self: Arc<Self>, _: usize, _: Arc<TrialKeys>, seq: u64, _: tokio::time::Instant) -> Attempt {
            if self.refusing() {
                return Attempt { result: Err(ProbeError::new(ErrorClass::Refused, "fake: refused")), server: None };
            }
            self.applied.fetch_max(seq, Ordering::SeqCst);
            self.written.lock().unwrap().insert(seq);
            Attempt { result: Ok(None), server: Some("fake:1".into()) }
        }

        async fn read(self: Arc<Self>, _: usize, _: Arc<TrialKeys>, _: tokio::time::Instant) -> Attempt {
            Attempt { result: Ok(Some(self.applied.load(Ordering::SeqCst))), server: Some("fake:1".into()) }
        }
    }

    struct FakeEngine(Arc<Fake>);

    impl Engine for FakeEngine {
        fn shard_names(&self) -> Vec<Option<String>> {
            vec![None]
        }
        fn keys(&self, trial: u32, ttl: Duration, client: Option<&str>) -> Vec<Arc<TrialKeys>> {
            vec![Arc::new(TrialKeys::for_client("fake", trial, ttl, client))]
        }
        fn client(&self, _: Profile, _: Reporter) -> BoxFuture<'_, Result<Arc<dyn Client>, ProbeError>> {
            Box::pin(async move { Ok(self.0.clone() as Arc<dyn Client>) })
        }
        fn present_writes<'a>(
            &'a self,
            _: usize,
            _: &'a TrialKeys,
            _: u64,
        ) -> BoxFuture<'a, Result<(String, SeqSet), ProbeError>> {
            let mut kept = SeqSet::default();
            for (lo, hi) in self.0.written.lock().unwrap().ranges() {
                (*lo..=*hi).filter(|n| *n != self.0.forget).for_each(|n| kept.insert(n));
            }
            Box::pin(async move { Ok(("fake:1".to_string(), kept)) })
        }
        fn shutdown(&self) {}
    }

    fn plan(out: &Path, trigger: &str) -> Plan {
        let o = crate::scenario::Overrides {
            target: Some("redis://127.0.0.1:1".into()),
            trigger: Some(trigger.into()),
            interval: Some(Duration::from_millis(5)),
            timeout: Some(Duration::from_millis(50)),
            warmup: Some(Duration::from_millis(200)),
            settle: Some(Duration::from_millis(200)),
            max_trial: Some(Duration::from_secs(5)),
            out: Some(out.to_path_buf()),
            quiet: true,
            yes: true,
            ..Default::default()
        };
        crate::scenario::plan(None, o).unwrap()
    }

    async fn measured(plan: &Plan, engine: Result<Arc<dyn Engine>, ProbeError>) -> Result<RunResult> {
        let target = Arc::new(Target::parse("redis://127.0.0.1:1").unwrap());
        let prepared =
            Prepared { target: target.clone(), control: target, lab: None, aws: None, run_id: keys::new_run_id() };
        let mut claim = crate::record::store::OutClaim::claim(&plan.out).unwrap();
        let (stop, cancel) = watch::channel(false);
        record_and_measure(plan, &prepared, &mut claim, stop, cancel, |_, _| async move { engine }).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trial_on_a_fake_engine_measures_its_outage_and_loss() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("failed-over");
        let plan = plan(&dir.path().join("out"), &format!("command=touch {}", flag.display()));
        let fake = Arc::new(Fake {
            flag,
            down: Duration::from_millis(150),
            flagged_at: Mutex::new(None),
            applied: AtomicU64::new(0),
            written: Mutex::new(SeqSet::default()),
            forget: 7,
        });
        let started = std::time::Instant::now();
        let result = measured(&plan, Ok(Arc::new(FakeEngine(fake)))).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        let s = &result.summary;
        let t = &s.trials[0];
        assert!(t.trigger.kind.starts_with("command"), "{}", t.trigger.kind);
        assert_eq!(t.writes.outages.len(), 1, "{:?}", t.writes.outages);
        let o = &t.writes.outages[0];
        // 150 ms refused, seen at a 5 ms interval: the window is within a couple of intervals.
        assert!((140.0..=170.0).contains(&o.duration_ms), "outage {} ms", o.duration_ms);
        assert_eq!(o.errors.keys().collect::<Vec<_>>(), ["refused"]);
        assert!(t.reads.outages.is_empty());
        assert_eq!((t.integrity.lost_acked_writes, t.integrity.lost_seqs_sample.clone()), (1, vec![7]));
        assert_eq!(t.integrity.stale_reads, 0);
        assert_eq!(s.verdict.kind, "recovered", "{}", s.verdict.headline);
        assert!(result.dir.join("summary.json").exists() && result.dir.join("report.html").exists());
    }

    /// A backup that fails (the fake engine names no primary to BGSAVE) stops the run before
    /// its trigger, and `--after` still runs: `--before` may have paused the batch jobs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_backup_fires_nothing_and_still_runs_after() {
        let dir = tempfile::tempdir().unwrap();
        let (flag, resumed) = (dir.path().join("failed-over"), dir.path().join("resumed"));
        let mut plan = plan(&dir.path().join("out"), &format!("command=touch {}", flag.display()));
        plan.backup = true;
        plan.before = Some("true".into());
        plan.after = Some(format!("touch {}", resumed.display()));
        let fake = Arc::new(Fake {
            flag: flag.clone(),
            down: Duration::ZERO,
            flagged_at: Mutex::new(None),
            applied: AtomicU64::new(0),
            written: Mutex::new(SeqSet::default()),
            forget: 0,
        });
        let Err(err) = measured(&plan, Ok(Arc::new(FakeEngine(fake)))).await else { panic!("the backup failed") };
        assert!(format!("{err:#}").contains("--backup: BGSAVE"), "{err:#}");
        assert!(!flag.exists(), "the trigger must not fire");
        assert!(resumed.exists(), "--after ran");
    }

    #[tokio::test]
    async fn an_engine_that_does_not_start_still_leaves_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(&dir.path().join("out"), "none");
        let refused = Err(ProbeError::new(ErrorClass::Refused, "fake: connection refused"));
        let Err(err) = measured(&plan, refused).await else { panic!("an engine that did not start is an error") };
        assert!(format!("{err:#}").contains("what was measured is in"), "{err:#}");
        let s: serde_json::Value =
            serde_json::from_slice(&std::fs::read(plan.out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["verdict"]["kind"], "incomplete");
        assert!(s["trials"][0]["end_reason"].as_str().unwrap().contains("not reachable"), "{}", s["trials"][0]);
    }
}
