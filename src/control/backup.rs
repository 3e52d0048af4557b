//! `--backup`: the runbook's "take a backup" before the first trigger. A self-managed primary
//! gets `BGSAVE` and failprobe waits until it has saved (LASTSAVE moved on, or the save counter
//! did within the same second); ElastiCache gets `CreateSnapshot failprobe-<run-id>` and
//! failprobe waits until the snapshot is `available`. Each outcome is a `backup` event (and in
//! the report); a backup that fails stops the run before any failover.
//! failprobe never deletes a snapshot or a dump file.

use super::query;
use crate::aws::watch::AwsRun;
use crate::error::UsageError;
use crate::sample::EventKind;
use crate::sink::Reporter;
use crate::target::{connect_node, info_field, Target};
use anyhow::{anyhow, bail, Result};
use redis::aio::MultiplexedConnection;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// A backup of a large dataset (or an ElastiCache snapshot) takes minutes; more is a stuck one.
pub(crate) const BACKUP_LIMIT: Duration = Duration::from_secs(30 * 60);
const POLL: Duration = Duration::from_millis(100);

/// The ElastiCache snapshot's name: this run's, so the report can name it for a restore.
pub(crate) fn snapshot_name(run_id: &str) -> String {
    let clean: String =
        run_id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    format!("failprobe-{clean}")
}

/// The backup event's `how` and `status` when an interruption abandoned the wait: the server
/// (or AWS) goes on with what it started; failprobe only stops waiting.
pub(crate) fn abandoned(elasticache: bool) -> (&'static str, &'static str) {
    match elasticache {
        true => ("CreateSnapshot", "abandoned on interrupt: AWS goes on creating the snapshot; failprobe did not wait"),
        false => {
            ("BGSAVE", "abandoned on interrupt: the server finishes the BGSAVE it started; failprobe did not wait")
        }
    }
}

/// BGSAVE on every primary (one per shard), one after the other; `Err` stops the run.
pub(crate) async fn bgsave_all(
    target: &Target,
    primaries: &[Option<(String, u16)>],
    limit: Duration,
    report: &Reporter,
) -> Result<()> {
    if primaries.is_empty() || primaries.iter().any(Option::is_none) {
        return Err(stop("BGSAVE", "the primaries are not all known"));
    }
    for (host, port) in primaries.iter().flatten() {
        let started = Instant::now();
        let node = format!("{host}:{port}");
        let outcome = bgsave(target, host, *port, limit).await;
        let took_ms = started.elapsed().as_millis() as u64;
        let (name, status) = match &outcome {
            Ok(file) => (file.clone(), "saved".to_string()),
            Err(e) => (String::new(), format!("failed: {e:#}")),
        };
        report.event(EventKind::Backup { how: "BGSAVE".into(), name, node: node.clone(), status, took_ms });
        if let Err(e) = outcome {
            return Err(stop(&format!("BGSAVE on {node}"), &format!("{e:#}")));
        }
    }
    Ok(())
}

/// Starts a BGSAVE and waits until it saved; returns the RDB file's path when CONFIG tells it.
async fn bgsave(target: &Target, host: &str, port: u16, limit: Duration) -> Result<String> {
    let (mut conn, _) = connect_node(target, host, port, limit).await.map_err(|e| anyhow!("{e}"))?;
    let before = saves(&mut conn, limit).await?;
    let until = Instant::now() + BACKUP_LIMIT;
    // A save already running (the server's own schedule) is not ours: wait for it, then start one.
    loop {
        match query::<String>(&mut conn, limit, &redis::cmd("BGSAVE")).await {
            Ok(_) => break,
            Err(e) if format!("{e:#}").contains("in progress") && Instant::now() < until => sleep(POLL).await,
            Err(e) => return Err(e.context("BGSAVE")),
        }
    }
    loop {
        let now = saves(&mut conn, limit).await?;
        if !now.in_progress && now.moved_on_from(&before) {
            if now.last_status.as_deref() != Some("ok") {
                bail!("the save ended with status {}", now.last_status.as_deref().unwrap_or("unknown"));
            }
            return Ok(rdb_path(&mut conn, limit).await.unwrap_or_else(|| "(the server's RDB file)".into()));
        }
        if Instant::now() >= until {
            bail!("no save finished within {BACKUP_LIMIT:?}");
        }
        sleep(POLL).await;
    }
}

/// What INFO persistence and LASTSAVE say about saves.
struct Saves {
    last_save: i64,
    /// `rdb_saves` (Redis >= 7, Valkey): counts saves, for two within one LASTSAVE second.
    count: Option<u64>,
    in_progress: bool,
    last_status: Option<String>,
}

impl Saves {
    fn moved_on_from(&self, before: &Saves) -> bool {
        match (self.count, before.count) {
            (Some(now), Some(then)) => now > then,
            _ => self.last_save > before.last_save,
        }
    }
}

async fn saves(conn: &mut MultiplexedConnection, limit: Duration) -> Result<Saves> {
    let info: String = query(conn, limit, redis::cmd("INFO").arg("persistence")).await?;
    let last_save: i64 = query(conn, limit, &redis::cmd("LASTSAVE")).await?;
    Ok(Saves {
        last_save,
        count: info_field(&info, "rdb_saves").and_then(|v| v.parse().ok()),
        in_progress: info_field(&info, "rdb_bgsave_in_progress").as_deref() == Some("1"),
        last_status: info_field(&info, "rdb_last_bgsave_status"),
    })
}

/// `dir/dbfilename` from CONFIG GET, when the server allows CONFIG (managed services rename it).
async fn rdb_path(conn: &mut MultiplexedConnection, limit: Duration) -> Option<String> {
    let get = |name: &'static str| {
        let mut c = redis::cmd("CONFIG");
        c.arg("GET").arg(name);
        c
    };
    let dir: Vec<String> = query(conn, limit, &get("dir")).await.ok()?;
    let file: Vec<String> = query(conn, limit, &get("dbfilename")).await.ok()?;
    Some(format!("{}/{}", dir.get(1)?, file.get(1)?))
}

/// CreateSnapshot of the run's replication group (or cache cluster), then waits until AWS
/// reports it `available`.
pub(crate) async fn elasticache_snapshot(aws: &AwsRun, name: &str, report: &Reporter) -> Result<()> {
    let started = Instant::now();
    let source = aws.group.clone().or_else(|| aws.cache_cluster.clone()).unwrap_or_default();
    let outcome = crate::aws::snapshot::create_and_wait(aws, name, BACKUP_LIMIT).await;
    let status = match &outcome {
        Ok(()) => "available".to_string(),
        Err(e) => format!("failed: {e:#}"),
    };
    report.event(EventKind::Backup {
        how: "CreateSnapshot".into(),
        name: name.to_string(),
        node: source.clone(),
        status,
        took_ms: started.elapsed().as_millis() as u64,
    });
    outcome.map_err(|e| stop(&format!("CreateSnapshot {name} of {source}"), &format!("{e:#}")))
}

fn stop(what: &str, why: &str) -> anyhow::Error {
    UsageError::Invalid(format!("--backup: {what}: {why}; no failover was started")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_what_aws_accepts() {
        assert_eq!(snapshot_name("20261129T170102Z-ab12"), "failprobe-20261129t170102z-ab12");
    }

    #[test]
    fn a_save_counts_by_its_counter_else_by_lastsave() {
        let s = |last_save, count| Saves { last_save, count, in_progress: false, last_status: None };
        assert!(s(100, Some(4)).moved_on_from(&s(100, Some(3))), "two saves in one second");
        assert!(!s(101, Some(3)).moved_on_from(&s(100, Some(3))));
        assert!(s(101, None).moved_on_from(&s(100, None)));
        assert!(!s(100, None).moved_on_from(&s(100, None)));
    }
}
