//! A live measurement: for each trial, wait for a healthy target, probe, fire the trigger, wait
//! for recovery and settle, check integrity. Samples and events go over one channel to a single
//! recorder task that persists first; probe tasks never block on disk.
//!
//! The story of a run, one file per phase:
//! 1. `prepare`: the lab, the target, every check of the plan and of the deployment, and the
//!    confirmation of what will be touched. Nothing is recorded and nothing fired yet, so an
//!    error here leaves no directory behind.
//! 2. `recorder`: run.json, then every sample and event persisted before it is analysed.
//! 3. `trial` (with `recovery`, `checks`, `status`): the trials, each between its runbook steps.
//! 4. `Teardown`, in the one order that keeps the deployment safe and the report whole.

mod checks;
mod context;
mod demo;
mod dns_watch;
mod endpoint_watch;
mod prepare;
mod pubsub;
mod recorder;
mod recovery;
mod servers;
mod status;
#[cfg(test)]
mod tests;
mod touch;
mod trial;
pub mod turn;
mod xstream;

pub use demo::demo_plan;

use crate::analysis::Analyzer;
use crate::clock::Clock;
use crate::error::UsageError;
use crate::probe::engine::{self, Engine};
use crate::record::store::{OutClaim, RunWriter};
use crate::report::summary::Summary;
use crate::report::write_reports;
use crate::scenario::Plan;
use crate::sink::Reporter;
use anyhow::{anyhow, Context, Result};
use prepare::Prepared;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Control connections (preflight, triggers, integrity) get this long to connect and answer.
const CONTROL_LIMIT: Duration = Duration::from_secs(2);

pub struct RunResult {
    pub summary: Summary,
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

/// One run, serving its live metrics while it lasts when the plan says where
/// (`--metrics-listen`); the port is closed when the run ends, however it ends.
pub async fn run(plan: Plan) -> Result<RunResult> {
    let Some(addr) = plan.metrics_listen else { return run_with_metrics(plan, None).await };
    let metrics = crate::live::Metrics::new();
    let listener = crate::live::serve(addr, &metrics).await.map_err(|e| UsageError::Invalid(format!("{e:#}")))?;
    crate::note!("metrics: serving http://{}/metrics", listener.addr());
    let target = metrics.for_target(&plan.name);
    let result = run_with_metrics(plan, Some(target)).await;
    listener.stop().await;
    result
}

/// One run: prepare, record and measure, tear down. Once recording has begun, any error still
/// ends in teardown: the report covers what was measured and says why the run stopped.
/// `metrics`: this target's live metrics, from the process's one `live::Metrics` (a process
/// measuring several targets serves them all on one listener).
pub async fn run_with_metrics(plan: Plan, metrics: Option<crate::live::TargetMetrics>) -> Result<RunResult> {
    // Installed first, so a Ctrl-C (or SIGTERM, SIGHUP) while the lab starts still stops the
    // lab cleanly.
    let stop = stop_signals();
    prepare_run(plan, stop, None).await?.measure(metrics).await
}

/// Where a run hears that it must stop: the sender (the recorder stops the run when it cannot
/// write) and the receiver every phase watches.
pub type StopSignal = (watch::Sender<bool>, watch::Receiver<bool>);

/// Ctrl-C, SIGTERM and SIGHUP, watched from now on: installed before anything starts.
pub fn stop_signals() -> StopSignal {
    recorder::watch_stop_signals()
}

/// A run prepared and confirmed (its lab up, its target checked, its directory claimed) and
/// not yet recording: a fleet prepares each of its targets in turn, so questions are asked one
/// at a time, then measures them together. Dropped unmeasured, it stops its lab and gives the
/// directory back.
pub struct ReadyRun {
    plan: Plan,
    prepared: Prepared,
    claim: OutClaim,
    stop: StopSignal,
    turn: Option<turn::TriggerTurn>,
}

/// Everything before the first record: the output directory claimed, then `prepare`.
pub async fn prepare_run(plan: Plan, stop: StopSignal, turn: Option<turn::TriggerTurn>) -> Result<ReadyRun> {
    crate::spawn::set_pass_env(&plan.pass_env);
    // A run that knows a password writes for its owner only (files 0600 in a 0700 directory):
    // its samples and reports describe a deployment someone protected.
    let private = crate::secret::any_known() || plan.target.as_deref().is_some_and(crate::target::has_password);
    if private {
        crate::os::private_files();
    }
    let claim = OutClaim::claim(&plan.out).map_err(UsageError::Invalid)?;
    if private {
        crate::os::make_private(&plan.out)?;
    }
    let prepared = prepare::prepare(&plan).await?;
    Ok(ReadyRun { plan, prepared, claim, stop, turn })
}

impl ReadyRun {
    /// The target's name in a fleet (its plan's name).
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// Where its samples and report go.
    pub fn out(&self) -> &std::path::Path {
        &self.plan.out
    }

    /// Record and measure, then tear down; `metrics`: this target's live metrics, when the
    /// process serves them.
    pub async fn measure(mut self, metrics: Option<crate::live::TargetMetrics>) -> Result<RunResult> {
        let (target, limit) = (self.prepared.target.clone(), self.plan.timeout.max(Duration::from_millis(100)));
        let start =
            move |report: Reporter, run_id: String| async move { engine::start(target, &run_id, limit, report).await };
        let turn = self.turn.take();
        record_and_measure(&self.plan, &self.prepared, &mut self.claim, self.stop, turn, start, metrics).await
    }
}

/// From the first record to the report: the recorder, the watches that put the deployment's
/// own news on the timeline, the engine (`start_engine`: the real one, or a fake in tests), the
/// trials, and the teardown that always follows.
async fn record_and_measure<S, F>(
    plan: &Plan,
    prepared: &Prepared,
    claim: &mut OutClaim,
    (stop, cancel): StopSignal,
    turn: Option<turn::TriggerTurn>,
    start_engine: S,
    mut metrics: Option<crate::live::TargetMetrics>,
) -> Result<RunResult>
where
    S: FnOnce(Reporter, String) -> F,
    F: std::future::Future<Output = Result<Arc<dyn Engine>, crate::target::error::ProbeError>>,
{
    let clock = Clock::start_now();
    let mut meta = recorder::run_meta(plan, prepared, &clock);
    if let Some(m) = &mut metrics {
        meta.metrics_listen = m.listen_addr().map(|a| a.to_string());
        m.begin(&meta, clock.wall_start());
    }
    let writer = RunWriter::create(&plan.out, &meta)?;
    claim.keep();
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    let recorder = tokio::spawn(recorder::record_loop(rx, done_rx, writer, Analyzer::new(meta), stop, metrics));
    let report = Reporter { clock, tx, trial: Arc::new(AtomicU32::new(0)) };
    let aws_stop = watch::channel(false);
    let aws_task = prepared.aws.as_ref().map(|a| {
        a.attach(report.clone());
        a.clone().spawn(aws_stop.1.clone())
    });
    let flips = prepared.lab.as_ref().and_then(|lab| endpoint_watch::follow_endpoint(lab, report.clone()));
    let dns = dns_watch::start(&prepared.target, report.clone());
    let engine = start_engine(report.clone(), prepared.run_id.clone()).await;
    let (prober, failure) = trial::measure(plan, prepared, engine, report.clone(), cancel, turn).await;
    let teardown = Teardown { aws: aws_stop.0, aws_task, prober, watches: [flips, dns], report, recorder: done_tx };
    let (analyzer, disk_error) = teardown.run(prepared, recorder).await?;
    if !plan.quiet && std::io::stdout().is_terminal() {
        status::clear_status();
    }
    finish(plan, analyzer, disk_error, failure)
}

/// What runs beside the trials, ended in this order: AWS first (its watch stopped, then what
/// the run changed restored, then its last events read, while the recorder still takes them),
/// then the probes, then the timeline watches; only then the recorder is told that nothing
/// more will come, and it flushes everything it was sent.
struct Teardown {
    aws: watch::Sender<bool>,
    aws_task: Option<tokio::task::JoinHandle<()>>,
    prober: Option<Arc<dyn Engine>>,
    watches: [Option<tokio::task::JoinHandle<()>>; 2],
    report: Reporter,
    recorder: watch::Sender<bool>,
}

impl Teardown {
    async fn run(
        self,
        prepared: &Prepared,
        recorder: tokio::task::JoinHandle<(Analyzer, Option<String>)>,
    ) -> Result<(Analyzer, Option<String>)> {
        if let Some(aws) = &prepared.aws {
            let _ = self.aws.send(true);
            if let Some(task) = self.aws_task {
                let _ = task.await;
            }
            // A FIS experiment a stop signal interrupted is stopped before anything else ends.
            crate::aws::fis::finish_stops(crate::aws::fis::STOP_WAIT + Duration::from_secs(2)).await;
            crate::aws::modify::restore_all(aws).await;
            // Events AWS logged since the last poll still belong on the timeline.
            if let Err(e) = aws.poll_events().await {
                tracing::warn!("{e}");
            }
        }
        if let Some(prober) = self.prober {
            prober.shutdown();
        }
        for watch in self.watches.into_iter().flatten() {
            watch.abort();
        }
        drop(self.report);
        let _ = self.recorder.send(true);
        recorder.await.context("recorder task")
    }
}

/// The reports, written even after a recorder failure (summary.json is small, and a full disk
/// may have room again; if not, the error says which file could not be written); then why the
/// run stopped, if it did.
fn finish(
    plan: &Plan,
    analyzer: Analyzer,
    disk_error: Option<String>,
    failure: Option<anyhow::Error>,
) -> Result<RunResult> {
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
