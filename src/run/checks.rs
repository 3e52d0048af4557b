//! After (and before) a trigger: the write logs, memcached's seeded keys, the key counts.

use super::context::{ClientTrial, RunContext};
use crate::sample::KeyspacePhase;
use crate::sample::{EventKind, Stream};

/// Every client's write log, read through failprobe's own client from the primary of now.
pub(super) async fn check_integrity(ctx: &RunContext, clients: &[ClientTrial]) {
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
pub(super) async fn seed(ctx: &RunContext, trial: u32) {
    let results = ctx.prober.seed(trial, ctx.plan.seed_keys, ctx.plan.key_ttl).await;
    for (shard, r) in ctx.prober.shard_names().into_iter().zip(results) {
        match r {
            Ok(keys) => ctx.report.event(EventKind::Seeded { shard, keys }),
            Err(e) => ctx.report.event(EventKind::IntegrityError { message: format!("seeding: {e}") }),
        }
    }
}

pub(super) async fn check_seeds(ctx: &RunContext, trial: u32) {
    let results = ctx.prober.seeds_surviving(trial, ctx.plan.seed_keys).await;
    for (shard, r) in ctx.prober.shard_names().into_iter().zip(results) {
        match r {
            Ok(keys) => ctx.report.event(EventKind::SeedsSurviving { shard, keys }),
            Err(e) => ctx.report.event(EventKind::IntegrityError { message: format!("seed check: {e}") }),
        }
    }
}

pub(super) async fn record_keyspace(ctx: &RunContext, phase: KeyspacePhase) {
    let own = ctx.own_keys.lock().map(|k| k.clone()).unwrap_or_default();
    if let Some((keys, dbs)) = ctx.prober.user_key_count(&own).await {
        ctx.report.event(EventKind::Keyspace { phase, keys, dbs: dbs.into_iter().collect() });
    }
}
