//! A fleet: many targets measured at once in one process, each a whole run of its own (its own
//! fixed-rate schedules, trials, recorder and report in `<out>/<name>/`), with one report for
//! the fleet beside them. A stalled target stalls only its own probes: every stream keeps its
//! own clock thread and each probe its own deadline.
//!
//! The data flow, a file per stage:
//! 1. `plan`: the targets from `--target NAME=URL`, a fleet file or `--aws-tag` (`discover`),
//!    each made into the `Plan` a single run would have.
//! 2. here: every target on a thread and runtime of its own, prepared (labs together; targets
//!    that may ask for confirmation one at a time), then all measured together, triggers in
//!    turn (`run::turn`).
//! 3. `summary`: a row per target and the fleet's verdict; `report`: its formats.

pub mod discover;
pub mod plan;
pub mod report;
pub mod summary;

use crate::analysis::summary::Summary;
use crate::error::UsageError;
use crate::record::store::OutClaim;
use crate::run::turn::{Order, TriggerTurn};
use crate::run::{self, RunResult};
use crate::scenario::Plan;
use anyhow::{anyhow, Context, Result};
pub use plan::{FleetArgs, FleetPlan};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use summary::{FleetSummary, TargetRow};
use tokio::sync::{oneshot, watch};

pub struct FleetResult {
    pub summary: FleetSummary,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// Prepare every target, measure them all at once, write the fleet's report. A target that
/// cannot be prepared stops the fleet before anything is measured (its labs stopped, its
/// directory given back); once measuring, a target's error is its row's, not the fleet's.
pub async fn run(fleet: FleetPlan) -> Result<FleetResult> {
    let (_keep, signals) = run::stop_signals();
    let mut claim = OutClaim::claim(&fleet.out).map_err(UsageError::Invalid)?;
    let started_at = chrono::Local::now().to_rfc3339();
    // One listener for the whole fleet, each target's series under its own `target` label.
    let metrics = crate::live::Metrics::new();
    let listener = match fleet.targets.first().and_then(|p| p.metrics_listen) {
        Some(addr) => {
            let l = crate::live::serve(addr, &metrics).await.map_err(|e| UsageError::Invalid(format!("{e:#}")))?;
            crate::note!("metrics: serving http://{}/metrics", l.addr());
            Some(l)
        }
        None => None,
    };
    let targets = start_targets(&fleet, &signals, listener.as_ref().map(|_| &metrics));
    let mut failure = None;
    let mut waiting = Vec::new();
    for mut t in targets {
        match (&mut t.prepared).await {
            Ok(Ok(())) => waiting.push(t),
            Ok(Err(e)) => failure = failure.or(Some(e.context(format!("fleet target `{}`", t.name)))),
            Err(_) => failure = failure.or(Some(anyhow!("fleet target `{}`: its thread ended", t.name))),
        }
    }
    if failure.is_none() && *signals.borrow() {
        failure = Some(anyhow!("interrupted before the fleet's first probe: nothing was measured"));
    }
    // All or none: a target that could not be prepared stops the others before they probe.
    let go = failure.is_none();
    let measuring: Vec<_> = waiting.into_iter().map(|t| (t.go.send(go), t.name, t.dir, t.done)).collect();
    if let Some(e) = failure {
        for (_, _, _, done) in measuring {
            let _ = done.await;
        }
        return Err(e);
    }
    claim.keep();
    if !fleet.quiet {
        crate::note!(
            "fleet {}: measuring {} targets at once; each report in {}/<name>/",
            fleet.name,
            measuring.len(),
            fleet.out.display()
        );
    }
    let mut rows = Vec::new();
    for (_, name, dir, done) in measuring {
        let result = done.await.unwrap_or_else(|_| Err(anyhow!("its thread ended without a result")));
        rows.push(row(&name, &dir, result));
    }
    let summary = FleetSummary {
        version: env!("CARGO_PKG_VERSION").to_string(),
        name: fleet.name.clone(),
        started_at,
        verdict: summary::decide(&rows),
        targets: rows,
    };
    if let Some(l) = listener {
        l.stop().await;
    }
    let files = report::write(&fleet.out, &summary).context("writing the fleet's report")?;
    Ok(FleetResult { summary, dir: fleet.out, files })
}

/// One target's run on a thread of its own, with its own runtime: whatever one target's run
/// does (a teardown that waits for its servers to exit, a frozen server's probes all waiting
/// out their deadlines), no other target's probes wait for a worker. The fleet hears when it
/// is prepared, tells it whether to measure, and gets its result.
struct TargetThread {
    name: String,
    dir: PathBuf,
    prepared: oneshot::Receiver<Result<()>>,
    go: oneshot::Sender<bool>,
    done: oneshot::Receiver<Result<RunResult>>,
}

/// Every target started, in the fleet's order: each is prepared at once, except that targets
/// which may ask for confirmation (those not in a lab of their own, which is on loopback and
/// never asks) take turns at it, so questions come one at a time.
fn start_targets(
    fleet: &FleetPlan,
    signals: &watch::Receiver<bool>,
    metrics: Option<&crate::live::Metrics>,
) -> Vec<TargetThread> {
    let order = Order::new(fleet.pace, fleet.targets.iter().filter(|p| fires(p)).count());
    let asking = Arc::new(tokio::sync::Mutex::new(()));
    let mut turns = 0;
    let mut threads = Vec::new();
    for plan in &fleet.targets {
        let turn = fires(plan).then(|| {
            turns += 1;
            order.turn(turns - 1)
        });
        let asks = plan.lab_topology.is_none().then(|| asking.clone());
        let live = metrics.map(|m| m.for_target(&plan.name));
        threads.push(spawn_target(plan.clone(), target_stop(signals), turn, asks, live));
    }
    threads
}

fn spawn_target(
    plan: Plan,
    stop: run::StopSignal,
    turn: Option<TriggerTurn>,
    asking: Option<Arc<tokio::sync::Mutex<()>>>,
    metrics: Option<crate::live::TargetMetrics>,
) -> TargetThread {
    let (prepared_tx, prepared) = oneshot::channel();
    let (go, go_rx) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let (name, dir) = (plan.name.clone(), plan.out.clone());
    let body = move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => return drop(prepared_tx.send(Err(anyhow!("starting its runtime: {e}")))),
        };
        runtime.block_on(async move {
            // This target's probes on this thread too: none of them waits behind another target's.
            crate::probe::runtime::probe_on_this_thread();
            let asked = match &asking {
                Some(m) => Some(m.lock().await),
                None => None,
            };
            let ready = run::prepare_run(plan, stop, turn).await;
            drop(asked);
            match ready {
                Err(e) => drop(prepared_tx.send(Err(e))),
                Ok(ready) => {
                    let _ = prepared_tx.send(Ok(()));
                    if go_rx.await == Ok(true) {
                        let _ = done_tx.send(ready.measure(metrics).await);
                    }
                }
            }
        });
    };
    if let Err(e) = std::thread::Builder::new().name(format!("fleet-{name}")).spawn(body) {
        tracing::warn!("fleet target `{name}`: starting its thread: {e}");
    }
    TargetThread { name, dir, prepared, go, done }
}

/// A target's row: from its summary, or from the report a run that stopped with an error still
/// wrote (its verdict says it is incomplete and why), or, with neither, the error itself.
fn row(name: &str, dir: &Path, result: Result<RunResult>) -> TargetRow {
    let e = match result {
        Ok(r) => return TargetRow::from_summary(name, &r.summary),
        Err(e) => e,
    };
    let written = std::fs::read(dir.join("summary.json")).ok();
    match written.and_then(|bytes| serde_json::from_slice::<Summary>(&bytes).ok()) {
        Some(s) => TargetRow::from_summary(name, &s),
        None => TargetRow::failed(name, &crate::secret::scrub(&format!("{e:#}"))),
    }
}

/// Whether a target's plan fires a trigger (it then takes a turn in the fleet's order).
fn fires(plan: &Plan) -> bool {
    plan.triggers.iter().any(|t| t.trigger().is_some())
}

/// A target's own stop: set by the fleet's signals, or by its own recorder when it cannot write.
fn target_stop(signals: &watch::Receiver<bool>) -> run::StopSignal {
    let (tx, rx) = watch::channel(false);
    let (forward, mut signals) = (tx.clone(), signals.clone());
    tokio::spawn(async move {
        if signals.wait_for(|s| *s).await.is_ok() {
            let _ = forward.send(true);
        }
    });
    (tx, rx)
}
