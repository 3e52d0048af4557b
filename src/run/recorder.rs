//! The recorder (persist first, then analyse), the run's meta, and the stop signals.

use super::prepare::Prepared;
use crate::analysis::Analyzer;
use crate::clock::Clock;
use crate::live::TargetMetrics;
use crate::record::store::RunWriter;
use crate::sample::{Record, RunMeta};
use crate::scenario::Plan;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub(super) fn run_meta(plan: &Plan, prepared: &Prepared, clock: &Clock) -> RunMeta {
    let (target, lab, run_id) = (&prepared.target, prepared.lab.as_deref(), &prepared.run_id);
    crate::secret::scrub_meta(RunMeta {
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
        servers: prepared.servers.clone(),
        metrics_listen: None,
    })
}

/// The first SIGINT, SIGTERM or SIGHUP finishes the current trial early; the run then resumes
/// a paused process, restores what it changed, stops its own lab and writes a partial report
/// (exit 2). A second signal never skips any of that: the clean-up is what keeps the
/// deployment safe, and it is bounded by its own deadlines.
pub(super) fn watch_stop_signals() -> (watch::Sender<bool>, watch::Receiver<bool>) {
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
/// The records keep flowing into the analysis, so the summary still covers them. With live
/// metrics (`metrics`), each record is counted there too.
pub(super) async fn record_loop(
    mut rx: mpsc::UnboundedReceiver<Record>,
    mut done: watch::Receiver<bool>,
    mut writer: RunWriter,
    mut analyzer: Analyzer,
    stop: watch::Sender<bool>,
    mut metrics: Option<TargetMetrics>,
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
                    ingest(&mut analyzer, metrics.as_mut(), r);
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
                    ingest(&mut analyzer, metrics.as_mut(), r);
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

/// The analysis, and the live metrics when served: a trial's lost and ghost writes are known
/// once it ended (its write log read), from the analysis.
fn ingest(analyzer: &mut Analyzer, metrics: Option<&mut TargetMetrics>, r: Record) {
    let Some(metrics) = metrics else { return analyzer.ingest(r) };
    let ended = metrics.record(&r);
    analyzer.ingest(r);
    if let Some(trial) = ended.and_then(|t| analyzer.trial_ended(t)) {
        metrics.trial_checked(&trial);
    }
}
