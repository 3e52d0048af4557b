//! The trials: each one's runbook steps, backup, clients, streams, trigger and recovery.

use super::checks::{check_integrity, check_seeds, record_keyspace, seed};
use super::context::{ClientTrial, RunContext};
use super::prepare::{trigger_context, Prepared};
use super::recovery::{primaries, wait_recovered, OldPrimaries};
use super::status::spawn_status;
use super::touch;
use super::touch::Consent;
use super::CONTROL_LIMIT;
use crate::control::{runbook, TriggerSpec};
use crate::error::UsageError;
use crate::probe::client::{Client, ExecSpec, Profile};
use crate::probe::engine::Engine;
use crate::probe::schedule::StreamTask;
use crate::probe::schedule::{Health, StreamConfig};
use crate::sample::KeyspacePhase;
use crate::sample::{EventKind, Stream};
use crate::scenario::Plan;
use crate::sink::Reporter;
use anyhow::{anyhow, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

/// Starts the probes and runs the trials. Never returns early: an error is handed back, with
/// the prober when it started, for teardown. Fewer trials than asked is marked on the timeline.
pub(super) async fn measure(
    plan: &Plan,
    prepared: &Prepared,
    engine: Result<Arc<dyn Engine>, crate::target::error::ProbeError>,
    report: Reporter,
    cancel: watch::Receiver<bool>,
    turn: Option<super::turn::TriggerTurn>,
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
        consent: prepared.consent.clone(),
        turn,
        kept: Default::default(),
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
            Ok(Ending::Refused(e)) | Err(e) => {
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
    for (profile, client) in ctx.kept.lock().await.drain(..) {
        if profile != Profile::Failprobe {
            client.shutdown();
        }
    }
    (Some(prober), failure)
}

pub(super) enum Ending {
    Done(String),
    Interrupted,
    /// The trigger did not fire: it would have acted on a server nobody agreed to.
    Refused(anyhow::Error),
}

pub(super) async fn run_trial(
    ctx: &RunContext,
    trial: u32,
    spec: &TriggerSpec,
    last_trigger: &mut Option<Instant>,
) -> Result<Ending> {
    prepare_lab(ctx, *last_trigger).await?;
    ctx.report.trial.store(trial, std::sync::atomic::Ordering::SeqCst);
    ctx.report.event(EventKind::TrialStart);
    // `--after` follows every trial whose `--before` started, however it ended (failed,
    // interrupted): the before-step may have paused the batch jobs half-way.
    let ending = match &ctx.plan.before {
        Some(command) => {
            let stop = runbook::OnStop::End(ctx.cancel.clone());
            let before = runbook::step("before", command, ctx.plan.max_trial, &ctx.report, stop);
            match before.await {
                Ok(runbook::Step::Done) => backup_and_measure(ctx, trial, spec, last_trigger).await,
                Ok(runbook::Step::Interrupted) => Ok(interrupted(ctx)),
                Err(e) => Err(e),
            }
        }
        None => backup_and_measure(ctx, trial, spec, last_trigger).await,
    };
    if let Some(command) = &ctx.plan.after {
        // Not cancellable (it is the clean-up), but bounded shorter once the run is stopping,
        // before it started or while it runs: a CI cancel's SIGKILL follows its SIGTERM soon.
        let stop = runbook::OnStop::Shorten(ctx.cancel.clone());
        runbook::step("after", command, ctx.plan.max_trial, &ctx.report, stop).await?;
    }
    ending
}

/// The trial after its `--before`: the backup (first trial, `--backup`), then the measurement.
/// A failed backup fires nothing; an interrupted one is abandoned (the server finishes it).
pub(super) async fn backup_and_measure(
    ctx: &RunContext,
    trial: u32,
    spec: &TriggerSpec,
    last_trigger: &mut Option<Instant>,
) -> Result<Ending> {
    if trial == 0 && ctx.plan.backup {
        let started = Instant::now();
        match cancellable(&mut ctx.cancel.clone(), take_backup(ctx)).await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => {
                let (how, status) = crate::control::backup::abandoned(ctx.aws.is_some());
                let took_ms = started.elapsed().as_millis() as u64;
                let (name, node) = (String::new(), String::new());
                ctx.report.event(EventKind::Backup { how: how.into(), name, node, status: status.into(), took_ms });
                return Ok(interrupted(ctx));
            }
        }
    }
    measure_trial(ctx, trial, spec, last_trigger).await
}

pub(super) fn interrupted(ctx: &RunContext) -> Ending {
    ctx.report.event(EventKind::Interrupted);
    Ending::Interrupted
}

/// `--backup`, once before the first trigger: CreateSnapshot on ElastiCache, else BGSAVE on
/// each primary (each one confirmed, or on loopback). An error stops the run before any
/// failover.
pub(super) async fn take_backup(ctx: &RunContext) -> Result<()> {
    use crate::control::backup;
    match &ctx.aws {
        Some(aws) => backup::elasticache_snapshot(aws, &backup::snapshot_name(&ctx.run_id), &ctx.report).await,
        None => {
            check_consent(ctx, "--backup").await?;
            let primaries = ctx.prober.primaries().await;
            backup::bgsave_all(&ctx.control, &primaries, CONTROL_LIMIT, &ctx.report).await
        }
    }
}

/// Before a trial acts: the servers it would act on now are the ones agreed to (a failover
/// since the confirmation may have moved the primary; a sentinel may name a new node).
pub(super) async fn check_consent(ctx: &RunContext, what: &str) -> Result<()> {
    if ctx.aws.is_some() || matches!(*ctx.consent, Consent::Everything) {
        return Ok(());
    }
    let now = touch::discover(&ctx.control, CONTROL_LIMIT).await;
    ctx.consent.check(&now).map_err(|e| crate::error::invalid(format!("{what} not started: {e}")))
}

/// One trial between the runbook's steps: fresh clients, streams, the trigger, recovery, the
/// checks.
pub(super) async fn measure_trial(
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
    let mut streams: Vec<_> = clients.iter().flat_map(|c| start_streams(ctx, trial, c, stop_rx.clone())).collect();
    if ctx.plan.pubsub {
        for c in &clients {
            match super::pubsub::start_pubsub(ctx, trial, c, stop_rx.clone()) {
                Ok(handles) => streams.extend(handles),
                Err(e) => {
                    let _ = stop_tx.send(true);
                    return Err(e);
                }
            }
        }
    }
    let stream_probe = match ctx.plan.stream {
        true => super::xstream::start_stream(ctx, trial, &clients, stop_rx.clone()),
        false => None,
    };
    let stream_probe = stream_probe.map(|(probe, handles)| {
        streams.extend(handles);
        probe
    });
    let status = spawn_status(ctx, trial, clients[0].health.clone());
    let ending = drive_trial(ctx, trial, spec, last_trigger, &clients).await;
    if let Some(turn) = &ctx.turn {
        turn.finished(trial);
    }
    // A fault kept until the trial's end ends with the probes still running: they see the heal.
    if let Some(lab) = &ctx.lab {
        lab.heal_network();
    }
    let _ = stop_tx.send(true);
    let mut late = 0;
    for s in streams {
        late += s.await.unwrap_or(0);
    }
    status.abort();
    if !ctx.plan.keep_clients {
        for c in clients.iter().filter(|c| c.profile != Profile::Failprobe) {
            c.client.shutdown();
        }
    }
    match ending {
        Ending::Done(reason) => {
            check_integrity(ctx, &clients).await;
            if let Some(probe) = &stream_probe {
                super::xstream::check_stream(ctx, &clients, probe).await;
            }
            count_connections(ctx, &clients).await;
            check_seeds(ctx, trial).await;
            record_keyspace(ctx, KeyspacePhase::After).await;
            let ended = if late > 0 { format!("{reason}; {late} probes sent late") } else { reason.clone() };
            ctx.report.event(EventKind::TrialEnd { reason: ended });
            Ok(Ending::Done(reason))
        }
        Ending::Interrupted => Ok(interrupted(ctx)),
        Ending::Refused(e) => Err(e),
    }
}

/// The lab notes' rules before each trial: dead nodes restarted, replica in sync, sentinels
/// agreeing, and 2 × failover-timeout since the last failover (Sentinel refuses sooner).
pub(super) async fn prepare_lab(ctx: &RunContext, last_trigger: Option<Instant>) -> Result<()> {
    let Some(lab) = &ctx.lab else { return Ok(()) };
    lab.heal().await?;
    if let (Some(at), true) = (last_trigger, lab.is_sentinel()) {
        let gap = Duration::from_millis(2 * lab.settings.failover_timeout_ms);
        tokio::time::sleep_until(at + gap).await;
    }
    lab.wait_ready(Duration::from_secs(60)).await.map(|_| ())
}

/// This trial's clients, one per profile: failprobe's own is the engine's prober (it follows
/// the primary across trials anyway); every other profile starts fresh, as an application
/// started before this maintenance would, or, with `--keep-clients`, once for the whole run.
pub(super) async fn open_clients(ctx: &RunContext, trial: u32) -> Result<Vec<ClientTrial>> {
    let shards = ctx.prober.shard_names().len();
    let mut kept = ctx.kept.lock().await;
    let started = match kept.is_empty() {
        true => start_clients(ctx).await?,
        false => kept.clone(),
    };
    if ctx.plan.keep_clients && kept.is_empty() {
        *kept = started.clone();
    }
    let clients = started
        .into_iter()
        .map(|(profile, client)| {
            let label = profile.label();
            ClientTrial {
                profile,
                client,
                keys: ctx
                    .prober
                    .keys(trial, ctx.plan.key_ttl, label.as_deref())
                    .into_iter()
                    .map(|k| Arc::new(k.with_ack(ctx.plan.write_ack)))
                    .collect(),
                health: (0..shards * 2).map(|_| Arc::new(Health::default())).collect(),
            }
        })
        .collect();
    Ok(clients)
}

/// One client per profile, an adapter told the name its connections are to carry.
async fn start_clients(ctx: &RunContext) -> Result<Vec<(Profile, Arc<dyn Client>)>> {
    let mut started: Vec<(Profile, Arc<dyn Client>)> = Vec::new();
    for profile in ctx.profiles.iter().cloned() {
        let profile = match profile {
            Profile::Exec(spec) => {
                let client_name = Some(connection_name(&ctx.run_id, &spec.name));
                Profile::Exec(Arc::new(ExecSpec { client_name, ..(*spec).clone() }))
            }
            other => other,
        };
        match ctx.prober.client(profile.clone(), ctx.report.clone()).await {
            Ok(client) => started.push((profile, client)),
            Err(e) => {
                // Those already started stop with the trial that could not start.
                for (p, c) in &started {
                    if *p != Profile::Failprobe {
                        c.shutdown();
                    }
                }
                return Err(anyhow!("starting the `{}` client: {e}", profile.name()));
            }
        }
    }
    Ok(started)
}

/// The name a profile's connections carry: the run's and the profile's, so that `CLIENT LIST`
/// tells them from everyone else's (and from another run's).
pub(super) fn connection_name(run_id: &str, profile: &str) -> String {
    let profile: String =
        profile.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("failprobe-{}-{profile}", &run_id[..run_id.len().min(8)])
}

/// At a trial's end, the connections each client that names them holds on each data node
/// (`CLIENT LIST`): a client that opens connections without closing them shows it trial after
/// trial. An adapter names them only when its hello says so; one that does not is not counted.
async fn count_connections(ctx: &RunContext, clients: &[ClientTrial]) {
    let named: Vec<(String, String)> = clients
        .iter()
        .filter_map(|c| match &c.profile {
            Profile::Exec(spec) => spec.client_name.clone().map(|n| (c.profile.name(), n)),
            _ => None,
        })
        .collect();
    if named.is_empty() {
        return;
    }
    let found = touch::discover(&ctx.control, CONTROL_LIMIT).await;
    for (_, host, port) in found.nodes().filter(|(role, _, _)| *role != "sentinel") {
        let Some(list) = client_list(ctx, host, port).await else { continue };
        for (client, name) in &named {
            let count = list.lines().filter(|l| l.split(' ').any(|f| f == format!("name={name}"))).count() as u64;
            ctx.report.event(EventKind::Connections { client: client.clone(), node: format!("{host}:{port}"), count });
        }
    }
}

async fn client_list(ctx: &RunContext, host: &str, port: u16) -> Option<String> {
    let (mut conn, _) = crate::target::connect_node(&ctx.control, host, port, CONTROL_LIMIT).await.ok()?;
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("LIST");
    tokio::time::timeout(CONTROL_LIMIT, cmd.query_async::<String>(&mut conn)).await.ok()?.ok()
}

/// One write and one read stream per shard, each on its own clock.
pub(super) fn start_streams(
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
pub(super) async fn drive_trial(
    ctx: &RunContext,
    trial: u32,
    spec: &TriggerSpec,
    last_trigger: &mut Option<Instant>,
    clients: &[ClientTrial],
) -> Ending {
    let mut cancel = ctx.cancel.clone();
    let Some(trigger) = spec.trigger() else {
        record_keyspace(ctx, KeyspacePhase::Before).await;
        return match cancellable(&mut cancel, sleep(ctx.plan.duration)).await {
            Some(()) => Ending::Done(format!("observed for {:?}", ctx.plan.duration)),
            None => Ending::Interrupted,
        };
    };
    if cancellable(&mut cancel, sleep(ctx.plan.warmup)).await.is_none() {
        return Ending::Interrupted;
    }
    if let Some(turn) = &ctx.turn {
        if cancellable(&mut cancel, turn.wait(trial)).await.is_none() {
            return Ending::Interrupted;
        }
    }
    record_keyspace(ctx, KeyspacePhase::Before).await;
    // With an application-like client measured, the trial lasts until a replaced primary has
    // stepped down: until then, clients still connected to it write into it.
    let mut old = OldPrimaries::new(match clients.iter().any(|c| c.profile != Profile::Failprobe) {
        true => primaries(ctx).await,
        false => Vec::new(),
    });
    let tctx = crate::control::TriggerContext {
        report: Some(ctx.report.clone()),
        ..trigger_context(&ctx.plan, &ctx.control, &ctx.lab, &ctx.aws)
    };
    if let Err(e) = check_consent(ctx, &format!("trigger `{}`", spec.label())).await {
        ctx.report.event(EventKind::TriggerError { message: format!("{e:#}") });
        return Ending::Refused(e);
    }
    ctx.report.event(EventKind::TriggerStart { kind: trigger.kind(), detail: spec.label() });
    *last_trigger = Some(Instant::now());
    match cancellable(&mut cancel, fire_watching(ctx, trigger.fire(&tctx), &mut old)).await {
        Some(Ok(detail)) => ctx.report.event(EventKind::TriggerFinish { detail }),
        Some(Err(e)) => ctx.report.event(EventKind::TriggerError { message: format!("{e:#}") }),
        None => return Ending::Interrupted,
    }
    match cancellable(&mut cancel, wait_recovered(ctx, clients, &mut old)).await {
        Some(reason) => Ending::Done(reason),
        None => Ending::Interrupted,
    }
}

/// The trigger, the old primaries watched meanwhile: a trigger that holds its fault for a
/// while (a command that cuts the primary off, then heals it) is when the old primary is
/// unreachable, and that goes on the timeline when it happens. The watch never delays the
/// trigger's completion: a check in flight is dropped when the trigger finishes.
async fn fire_watching<T>(ctx: &RunContext, fire: impl std::future::Future<Output = T>, old: &mut OldPrimaries) -> T {
    tokio::pin!(fire);
    loop {
        let check = async {
            sleep(Duration::from_millis(250)).await;
            old.settled(ctx).await
        };
        tokio::select! {
            done = &mut fire => return done,
            _ = check => {}
        }
    }
}

pub(super) async fn cancellable<T>(
    cancel: &mut watch::Receiver<bool>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    if *cancel.borrow() {
        return None;
    }
    tokio::select! {
        v = fut => Some(v),
        _ = cancel.wait_for(|c| *c) => None,
    }
}
