//! The run loop on a fake engine: no servers, a trial in well under a second.

use super::touch::Consent;
use super::*;
use crate::probe::client::{Client, Profile};
use crate::probe::schedule::BoxFuture;
use crate::probe::{keys, Attempt, Prober, TrialKeys};
use crate::sample::{ErrorClass, SeqSet};
use crate::target::error::ProbeError;
use crate::target::Target;
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
        target: vec!["redis://127.0.0.1:1".into()],
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
    let prepared = Prepared {
        target: target.clone(),
        control: target,
        lab: None,
        aws: None,
        run_id: keys::new_run_id(),
        consent: Arc::new(Consent::Everything),
        servers: Vec::new(),
    };
    let mut claim = crate::record::store::OutClaim::claim(&plan.out).unwrap();
    let (stop, cancel) = watch::channel(false);
    record_and_measure(plan, &prepared, &mut claim, (stop, cancel), None, |_, _| async move { engine }, None).await
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
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(plan.out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["verdict"]["kind"], "incomplete");
    assert!(s["trials"][0]["end_reason"].as_str().unwrap().contains("not reachable"), "{}", s["trials"][0]);
}
