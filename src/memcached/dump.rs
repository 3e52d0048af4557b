//! `failprobe memcached dump` / `restore`: every key of every node with its value, flags and
//! expiry, byte-exact, so a node replacement (which empties the node) loses nothing.
//!
//! File: a header line, one JSON line per item (key and value base64), and a trailer with the
//! item count and a checksum of every item line. A file that is cut short or altered is
//! rejected as a whole before anything is written back: never half-applied.

use super::proto::{Conn, Item, RELATIVE_EXPTIME_MAX};
use crate::error::invalid;
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

const HEADER: &str = "failprobe-memcached-dump v1";

#[derive(Serialize, Deserialize)]
struct Record {
    /// Index of the node in the target URL.
    node: usize,
    key: String,
    flags: u32,
    /// Absolute expiry, unix seconds; -1 never expires.
    exp: i64,
    value: String,
}

#[derive(Serialize, Deserialize)]
struct Trailer {
    items: u64,
    fnv1a: String,
}

#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    pub items: u64,
    pub skipped_expired: u64,
    pub vanished: u64,
    /// Restore without --overwrite: keys the application has written since (left as they are).
    pub kept_existing: u64,
    /// Dump: keys the text protocol cannot carry (stored through the binary protocol).
    pub unsafe_keys: u64,
}

/// Items per request, and how long one batch may take: a restore of millions of keys makes
/// progress batch by batch, and a node that stops answering is noticed within a batch.
const BATCH: usize = 100;
const BATCH_DEADLINE: Duration = Duration::from_secs(10);
/// A dump's total is not known up front (the key list streams): a line every so many keys.
const PROGRESS_EVERY: u64 = 10_000;

fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= *b as u64;
        *hash = hash.wrapping_mul(0x100000001b3);
    }
}

fn now_unix() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A line each time another tenth is done (from `before` to `done` of `total`).
fn progress(what: &str, before: u64, done: u64, total: u64) {
    if total >= 1000 && (before * 10 / total != done * 10 / total || done == total) {
        crate::note!("{what} {done}/{total}");
    }
}

/// Writes beside (`.partial`), then renames: a dump that fails leaves no file behind, neither
/// one that looks complete nor a partial copy of the application's data.
pub async fn dump(nodes: &[(String, u16)], file: &Path) -> Result<Counts> {
    let tmp = file.with_extension("partial");
    let result = dump_into(nodes, file, &tmp).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

async fn dump_into(nodes: &[(String, u16)], file: &Path, tmp: &Path) -> Result<Counts> {
    // The application's data: readable by its owner only.
    let created = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(tmp)
    };
    let mut out = std::io::BufWriter::new(created.with_context(|| format!("creating {}", tmp.display()))?);
    writeln!(out, "{HEADER}")?;
    let mut hash = 0xcbf29ce484222325u64;
    let mut counts = Counts::default();
    for (i, (host, port)) in nodes.iter().enumerate() {
        let addr = format!("{host}:{port}");
        // Two connections: one streams the key list, the other fetches values batch by batch,
        // so memory holds one batch, never a node's whole key list.
        let connect = || async {
            Conn::connect(&addr, Instant::now() + Duration::from_secs(2))
                .await
                .map_err(|e| invalid(format!("memcached {addr} not reachable: {e}")))
        };
        let (mut lister, mut getter) = (connect().await?, connect().await?);
        let listing = |e| anyhow!("{addr}: lru_crawler metadump: {e}");
        lister.metadump_start(Instant::now() + BATCH_DEADLINE).await.map_err(listing)?;
        let mut done = 0u64;
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            while batch.len() < BATCH {
                match lister.metadump_next(Instant::now() + BATCH_DEADLINE).await.map_err(listing)? {
                    Some((key, _)) if !super::proto::valid_key(&key) => counts.unsafe_keys += 1,
                    Some(entry) => batch.push(entry),
                    None => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            let keys: Vec<&[u8]> = batch.iter().map(|(k, _)| k.as_slice()).collect();
            let batch_deadline = Instant::now() + BATCH_DEADLINE;
            let found = getter.get_many(&keys, batch_deadline).await.map_err(|e| anyhow!("{addr}: get: {e}"))?;
            counts.vanished += (batch.len() - found.len()) as u64;
            for item in found {
                let exp = batch.iter().find(|(k, _)| *k == item.key).map(|(_, e)| *e).unwrap_or(-1);
                let record = Record {
                    node: i,
                    key: B64.encode(&item.key),
                    flags: item.flags,
                    exp,
                    value: B64.encode(&item.value),
                };
                let line = serde_json::to_string(&record)?;
                fnv1a(&mut hash, line.as_bytes());
                writeln!(out, "{line}")?;
                counts.items += 1;
            }
            done += batch.len() as u64;
            if done.is_multiple_of(PROGRESS_EVERY) {
                crate::note!("dumping {addr}: {done} keys");
            }
            if batch.len() < BATCH {
                break;
            }
        }
    }
    writeln!(out, "{}", serde_json::to_string(&Trailer { items: counts.items, fnv1a: format!("{hash:016x}") })?)?;
    out.into_inner().map_err(|e| anyhow!("writing {}: {e}", tmp.display()))?.sync_all()?;
    std::fs::rename(tmp, file).with_context(|| format!("writing {}", file.display()))?;
    Ok(counts)
}

/// Reads and checks the whole file first; only a complete, intact dump is restored.
fn read_dump(file: &Path) -> Result<Vec<Record>> {
    let f = std::fs::File::open(file).map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("{}: {e}", file.display())))?;
    let bad = |msg: String| invalid(format!("{}: {msg}; nothing was restored", file.display()));
    if lines.first().map(String::as_str) != Some(HEADER) {
        return Err(bad("not a failprobe memcached dump (header missing)".into()));
    }
    let Some(trailer) = lines.last().and_then(|l| serde_json::from_str::<Trailer>(l).ok()) else {
        return Err(bad("the dump is incomplete (no trailer: was it cut short?)".into()));
    };
    let mut hash = 0xcbf29ce484222325u64;
    let mut records = Vec::new();
    for (i, line) in lines[1..lines.len() - 1].iter().enumerate() {
        fnv1a(&mut hash, line.as_bytes());
        let r: Record = serde_json::from_str(line).map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
        let key_ok = B64.decode(&r.key).is_ok_and(|k| super::proto::valid_key(&k)) && B64.decode(&r.value).is_ok();
        if !key_ok {
            return Err(bad(format!(
                "line {}: the key is not one memcached's text protocol can carry (1-250 bytes, no whitespace or control characters) or is not base64",
                i + 2
            )));
        }
        records.push(r);
    }
    if records.len() as u64 != trailer.items || format!("{hash:016x}") != trailer.fnv1a {
        return Err(bad(format!(
            "the dump is corrupt ({} items read, {} expected, checksum {})",
            records.len(),
            trailer.items,
            if format!("{hash:016x}") == trailer.fnv1a { "ok" } else { "mismatch" }
        )));
    }
    Ok(records)
}

/// How a restore treats keys that exist on the node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Existing {
    /// `add`: the application's newer value stays (the default).
    Keep,
    /// `set`: the dump's value replaces it (`--overwrite`, confirmed).
    Overwrite,
}

pub async fn restore(nodes: &[(String, u16)], file: &Path, existing: Existing) -> Result<Counts> {
    let records = read_dump(file)?;
    if let Some(r) = records.iter().find(|r| r.node >= nodes.len()) {
        bail!(invalid(format!("the dump has keys of node {} but the target names {} node(s)", r.node, nodes.len())));
    }
    let mut conns = Vec::new();
    for (host, port) in nodes {
        let addr = format!("{host}:{port}");
        let conn = Conn::connect(&addr, Instant::now() + Duration::from_secs(2))
            .await
            .map_err(|e| invalid(format!("memcached {addr} not reachable: {e}")))?;
        conns.push(conn);
    }
    let mut counts = Counts::default();
    let total = records.len() as u64;
    let command = match existing {
        Existing::Keep => "add",
        Existing::Overwrite => "set",
    };
    let mut done = 0;
    for batch in records.chunks(BATCH) {
        let deadline = Instant::now() + BATCH_DEADLINE;
        for r in batch {
            let now = now_unix();
            let exptime = match r.exp {
                -1 => 0,
                exp if exp <= now => {
                    counts.skipped_expired += 1;
                    continue;
                }
                // Never longer than it had left: relative seconds up to 30 days, the original
                // absolute time beyond (memcached reads a larger number as a date).
                exp if (exp - now) as u64 <= RELATIVE_EXPTIME_MAX => (exp - now) as u64,
                exp => exp as u64,
            };
            let item = Item { key: B64.decode(&r.key)?, flags: r.flags, value: B64.decode(&r.value)? };
            let stored = conns[r.node]
                .store(command, &item, exptime, deadline)
                .await
                .map_err(|e| anyhow!("restoring into node {} ({done} of {total} done): {e}", r.node))?;
            match stored {
                true => counts.items += 1,
                false => counts.kept_existing += 1,
            }
        }
        progress("restoring:", done, done + batch.len() as u64, total);
        done += batch.len() as u64;
    }
    Ok(counts)
}
