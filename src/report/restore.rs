//! The runbook's last step: when keys went missing (a database's count changed across a trial,
//! or memcached's seeded keys did not all survive), say what was lost where and how to bring the
//! data back for this kind of target, from the backup this run took when it took one.

use crate::analysis::summary::{Backup, Summary};

/// Nothing when every count matched.
pub(crate) fn advice(s: &Summary) -> Option<String> {
    let losses = losses(s);
    if losses.is_empty() {
        return None;
    }
    let mut out = String::from("Keys changed across a trial (failprobe's own keys excluded):\n");
    for line in &losses {
        out.push_str(&format!("  - {line}\n"));
    }
    out.push_str("A count that grew means writes by someone else during the trial; one that shrank may be data lost in the failover.\n");
    out.push_str(&procedure(s));
    Some(out)
}

/// One line per database (or memcached node) whose count differs.
fn losses(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    for t in &s.trials {
        for (db, before, after) in t.keyspace.rows().into_iter().filter(|(db, _, _)| t.keyspace.mismatch.contains(db)) {
            let n = |v: Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
            let delta = match (before, after) {
                (Some(b), Some(a)) => format!(" ({:+})", a as i64 - b as i64),
                _ => String::new(),
            };
            out.push(format!("trial {} db{db}: {} keys before, {} after{delta}", t.index, n(before), n(after)));
        }
        for sh in &t.shards {
            let i = &sh.integrity;
            if let (Some(seeded), Some(surviving)) = (i.seeded_keys, i.surviving_seeded_keys) {
                if surviving < seeded {
                    out.push(format!(
                        "trial {} {}: {} of {seeded} seeded keys lost",
                        t.index,
                        sh.name,
                        seeded - surviving
                    ));
                }
            }
        }
    }
    out
}

/// How to restore, by target kind, naming this run's backup when there is one.
fn procedure(s: &Summary) -> String {
    let backups: Vec<&Backup> =
        s.trials.iter().flat_map(|t| &t.backups).filter(|b| !b.status.starts_with("failed")).collect();
    if s.target.starts_with("memcache") {
        return "To restore memcached (it keeps nothing on disk): keys come back only from a dump taken before the \
                maintenance: `failprobe memcached dump --target URL --file F` before, `failprobe memcached restore --target URL --file F` \
                after (keys present are kept; --overwrite replaces them).\n"
            .into();
    }
    let elasticache = s.trials.iter().any(|t| t.aws.is_some());
    if elasticache && !backups.iter().any(|b| b.how == "CreateSnapshot") {
        return "To restore on ElastiCache: from your latest automatic or manual snapshot, into a new group \
                (`aws elasticache create-replication-group … --snapshot-name NAME`); this run took none (--backup \
                takes `failprobe-<run-id>` before the first trigger).\n"
            .into();
    }
    if let Some(snapshot) = backups.iter().find(|b| b.how == "CreateSnapshot") {
        return format!(
            "To restore on ElastiCache: this run's snapshot `{name}` (of {node}) holds the data from before the first \
             trigger. ElastiCache restores into a new group: `aws elasticache create-replication-group \
             --replication-group-id <new-id> --replication-group-description \"restored from {name}\" \
             --snapshot-name {name}` (same engine, node type and parameter group as {node}), then point the \
             application at the new group's endpoint. Writes made since the snapshot are not in it. failprobe \
             never deletes the snapshot.\n",
            name = snapshot.name,
            node = snapshot.node
        );
    }
    let saved: Vec<String> =
        backups.iter().filter(|b| b.how == "BGSAVE").map(|b| format!("{} on {}", b.name, b.node)).collect();
    let from = match saved.is_empty() {
        true => "the latest RDB file or snapshot you have (this run took no backup: --backup takes one before the \
                 first trigger)"
            .to_string(),
        false => format!("the BGSAVE this run took before the first trigger: {}", saved.join(", ")),
    };
    format!(
        "To restore Redis/Valkey from {from}: copy that file aside now (the server replaces it at its next save); \
         stop writes; stop the server that is primary now, put the copy in place of its RDB file (with \
         appendonly yes, start it with appendonly no and turn AOF back on with CONFIG SET appendonly yes once \
         loaded), start it, and make the other nodes its replicas again (REPLICAOF). Writes made since the \
         backup are not in it: compare before you restore.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::advice;
    use crate::analysis::tests::{event, meta};
    use crate::analysis::Analyzer;
    use crate::sample::{Budget, EventKind, KeyspacePhase};

    /// A trial whose db5 lost 3 of 5 keys, with the backup `backup` (if any) taken first.
    fn advice_with(backup: Option<EventKind>) -> Option<String> {
        let mut a = Analyzer::new(meta(1, Budget::default()));
        event(&mut a, 0, 0, EventKind::TrialStart);
        if let Some(b) = backup {
            event(&mut a, 0, 10, b);
        }
        event(&mut a, 0, 20, EventKind::Keyspace { phase: KeyspacePhase::Before, keys: 0, dbs: vec![(5, 5)] });
        event(&mut a, 0, 30, EventKind::Keyspace { phase: KeyspacePhase::After, keys: 0, dbs: vec![(5, 2)] });
        event(&mut a, 0, 40, EventKind::TrialEnd { reason: "observed".into() });
        advice(&a.finish().summary)
    }

    #[test]
    fn a_changed_count_names_where_and_how_to_restore_from_this_runs_backup() {
        let snapshot = EventKind::Backup {
            how: "CreateSnapshot".into(),
            name: "failprobe-abc".into(),
            node: "my-group".into(),
            status: "available".into(),
            took_ms: 1,
        };
        let elasticache = advice_with(Some(snapshot)).expect("a changed count gets advice");
        assert!(elasticache.contains("trial 0 db5: 5 keys before, 2 after (-3)"), "{elasticache}");
        assert!(elasticache.contains("--snapshot-name failprobe-abc"), "{elasticache}");
        let rdb = EventKind::Backup {
            how: "BGSAVE".into(),
            name: "/data/dump.rdb".into(),
            node: "10.0.0.1:6379".into(),
            status: "saved".into(),
            took_ms: 1,
        };
        let text = advice_with(Some(rdb)).unwrap();
        assert!(
            text.contains("from the BGSAVE this run took before the first trigger: /data/dump.rdb on 10.0.0.1:6379")
        );
        let text = advice_with(None).unwrap();
        assert!(text.contains("this run took no backup"), "{text}");
        for line in text.lines() {
            assert!(!line.trim().contains("  "), "one sentence, no runs of spaces: {line}");
        }
    }
}
