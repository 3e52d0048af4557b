//! A fleet: many targets measured at once in one process, each a whole run of its own (its own
//! fixed-rate schedules, trials, recorder and report in `<out>/<name>/`), with one report for
//! the fleet beside them. A stalled target stalls only its own probes: every stream keeps its
//! own clock thread and each probe its own deadline.
//!
//! The data flow, a file per stage:
//! 1. `plan`: the targets from `--target NAME=URL`, a fleet file or `--aws-tag` (`discover`),
//!    each made into the `Plan` a single run would have.
//! 2. here: every target prepared (labs together; a target that may ask for confirmation alone,
//!    so questions come one at a time), then all measured together, triggers in turn
//!    (`run::turn`).
//! 3. `summary`: a row per target and the fleet's verdict; `report`: its formats.

pub mod discover;
pub mod plan;
pub mod report;
pub mod summary;

use crate::analysis::summary::Summary;
use crate::error::UsageError;
use crate::record::store::OutClaim;
use crate::run::turn::{Order, TriggerTurn};
use crate::run::{self, ReadyRun, RunResult};
use anyhow::{Context, Result};
use futures_util::future::join_all;
pub use plan::{FleetArgs, FleetPlan};
use std::path::{Path, PathBuf};
use summary::{FleetSummary, TargetRow};
use tokio::sync::watch;

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
    let ready = prepare_all(&fleet, &signals).await?;
    claim.keep();
    if !fleet.quiet {
        crate::note!(
            "fleet {}: measuring {} targets at once; each report in {}/<name>/",
            fleet.name,
            ready.len(),
            fleet.out.display()
        );
    }
    let measured = ready.into_iter().map(|r| {
        let (name, dir) = (r.name().to_string(), r.out().to_path_buf());
        // Each target's run is a task of its own: no target's orchestration waits on another's.
        let task = tokio::spawn(r.measure());
        async move { (name, dir, task.await.map_err(anyhow::Error::from).and_then(|r| r)) }
    });
    let rows: Vec<TargetRow> =
        join_all(measured).await.into_iter().map(|(name, dir, result)| row(&name, &dir, result)).collect();
    let summary = FleetSummary {
        version: env!("CARGO_PKG_VERSION").to_string(),
        name: fleet.name.clone(),
        started_at,
        verdict: summary::decide(&rows),
        targets: rows,
    };
    let files = report::write(&fleet.out, &summary).context("writing the fleet's report")?;
    Ok(FleetResult { summary, dir: fleet.out, files })
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

/// Every target prepared, in the fleet's order: those that start their own lab together (a
/// lab is on loopback and never asks), then the others one at a time (each may ask before it
/// touches a deployment). Each target stops with the fleet's signals and on its own recorder's
/// failure.
async fn prepare_all(fleet: &FleetPlan, signals: &watch::Receiver<bool>) -> Result<Vec<ReadyRun>> {
    let triggered = fleet.targets.iter().filter(|p| fires(p)).count();
    let order = Order::new(fleet.pace, triggered);
    let mut turns = 0;
    let mut jobs: Vec<(usize, crate::scenario::Plan, Option<TriggerTurn>)> = Vec::new();
    for (i, plan) in fleet.targets.iter().enumerate() {
        let turn = fires(plan).then(|| {
            turns += 1;
            order.turn(turns - 1)
        });
        jobs.push((i, plan.clone(), turn));
    }
    let (labs, others): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(_, p, _)| p.lab_topology.is_some());
    let prepare = |(i, plan, turn): (usize, crate::scenario::Plan, Option<TriggerTurn>)| {
        let stop = target_stop(signals);
        async move {
            let name = plan.name.clone();
            (i, run::prepare_run(plan, stop, turn).await.with_context(|| format!("fleet target `{name}`")))
        }
    };
    let mut prepared = join_all(labs.into_iter().map(prepare)).await;
    for job in others {
        if *signals.borrow() {
            break;
        }
        prepared.push(prepare(job).await);
    }
    prepared.sort_by_key(|(i, _)| *i);
    let mut ready = Vec::new();
    for (_, r) in prepared {
        ready.push(r?);
    }
    if *signals.borrow() {
        anyhow::bail!("interrupted before the fleet's first probe: nothing was measured");
    }
    Ok(ready)
}

/// Whether a target's plan fires a trigger (it then takes a turn in the fleet's order).
fn fires(plan: &crate::scenario::Plan) -> bool {
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
