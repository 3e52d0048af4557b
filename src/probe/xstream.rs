//! `--probe stream`: Redis Streams through a failover. On the probe clock failprobe's own client
//! appends a numbered entry to the trial's stream (`XADD`, at the run's `--write-ack` level),
//! and a consumer group reads them (`XREADGROUP`, then `XACK`), following the primary. After the
//! trial the stream is read back from the primary of now (`XRANGE`, `XPENDING`): appends
//! acknowledged and gone are lost, exactly as for the key writes; the analysis adds what the
//! group never got, got twice, or left pending (`analysis::xstream`).

use super::ack::WriteAck;
use super::locate::Locator;
use crate::sample::{Outcome, Record, Sample, SeqSet, Stream};
use crate::sink::Reporter;
use crate::target::error::{classify, ProbeError};
use redis::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// The consumer group failprobe reads with, and its one consumer.
pub(crate) const GROUP: &str = "failprobe";
const CONSUMER: &str = "failprobe-1";
/// Entries one read takes at most.
const READ_COUNT: usize = 100;
/// A lost connection or a refused read is tried again after this pause.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Entries read back per XRANGE page.
const PAGE: usize = 10_000;

/// One append: the entry numbered `seq`, due at `scheduled_us`, then the `--write-ack` wait in
/// the same round trip, and the stream's TTL.
pub(crate) fn append(key: &str, seq: u64, scheduled_us: u64, ttl_ms: u64, ack: &WriteAck) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.cmd("XADD").arg(key).arg("*").arg("seq").arg(seq).arg("t").arg(scheduled_us);
    pipe.cmd("PEXPIRE").arg(key).arg(ttl_ms).ignore();
    ack.append(&mut pipe);
    pipe
}

/// How the consumer reaches the shard's primary: failprobe's own client's way (role checked).
pub struct Route {
    pub(crate) locator: Arc<Locator>,
    pub(crate) limit: Duration,
}

/// The consumer of one trial's stream, until the trial stops (then one more timeout for the
/// last entries).
pub struct Consumer {
    pub(crate) locator: Arc<Locator>,
    pub(crate) limit: Duration,
    pub(crate) key: String,
    /// The stream's TTL: the group's MKSTREAM may create it before any append gives it one.
    pub(crate) ttl_ms: u64,
    pub(crate) client: Option<String>,
    pub(crate) trial: u32,
    pub(crate) report: Reporter,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) timeout: Duration,
    /// The highest sequence number appended so far: a larger one is not failprobe's.
    pub(crate) appended: Arc<AtomicU64>,
}

impl Consumer {
    pub(crate) async fn run(self) {
        let mut stop = self.stop.clone();
        loop {
            let reading = self.read_until_lost();
            tokio::pin!(reading);
            tokio::select! {
                _ = &mut reading => {}
                _ = super::pubsub::stopped(&mut stop) => {
                    let _ = timeout(self.timeout, reading).await;
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
                _ = super::pubsub::stopped(&mut stop) => return,
            }
        }
    }

    /// Connects to the primary, makes sure the group exists, then reads and acknowledges until
    /// a read fails.
    async fn read_until_lost(&self) -> ProbeError {
        let (mut conn, server) = match self.locator.connect(self.limit).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        // From the stream's start: the entries appended before the group existed are its too.
        let mut create = redis::cmd("XGROUP");
        create.arg("CREATE").arg(&self.key).arg(GROUP).arg("0").arg("MKSTREAM");
        match timeout(self.limit, create.query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.code() == Some("BUSYGROUP") => {}
            Ok(Err(e)) => return classify(&e),
            Err(_) => return ProbeError::timeout("XGROUP CREATE"),
        }
        // MKSTREAM may have made the stream before any append gave it its TTL: never left
        // without one (once per connection, not per read).
        let mut expire = redis::cmd("PEXPIRE");
        expire.arg(&self.key).arg(self.ttl_ms);
        match timeout(self.limit, expire.query_async::<Value>(&mut conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return classify(&e),
            Err(_) => return ProbeError::timeout("PEXPIRE"),
        }
        let block_ms = self.timeout.as_millis().max(1) as u64;
        loop {
            let mut read = redis::cmd("XREADGROUP");
            read.arg("GROUP").arg(GROUP).arg(CONSUMER).arg("COUNT").arg(READ_COUNT).arg("BLOCK").arg(block_ms);
            read.arg("STREAMS").arg(&self.key).arg(">");
            // A read answers by the end of its BLOCK; one that does not is lost, as a probe is.
            let reply = match timeout(self.timeout * 2, read.query_async::<Value>(&mut conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return classify(&e),
                Err(_) => return ProbeError::timeout("XREADGROUP"),
            };
            let ids = self.record(&reply, &server.addr);
            if ids.is_empty() {
                // Nothing new for a whole BLOCK: is this still the primary? After a switch the
                // old one answers empty reads while the entries go to the new one, for seconds
                // before it is demoted.
                if let Err(e) = still_primary(&mut conn, self.limit).await {
                    return e;
                }
                match self.locator.current_address(self.limit).await {
                    Ok(now) if now != (server.host.clone(), server.port) => {
                        let text = format!("the primary is now {}:{}", now.0, now.1);
                        return ProbeError::new(crate::sample::ErrorClass::Other, text);
                    }
                    Ok(_) => {}
                    Err(e) => return e,
                }
                continue;
            }
            let mut ack = redis::cmd("XACK");
            ack.arg(&self.key).arg(GROUP).arg(&ids);
            match timeout(self.limit, ack.query_async::<Value>(&mut conn)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return classify(&e),
                Err(_) => return ProbeError::timeout("XACK"),
            }
        }
    }

    /// Each entry read becomes a `Consume` sample; the ids to acknowledge.
    fn record(&self, reply: &Value, server: &str) -> Vec<String> {
        let now = self.report.clock.us(Instant::now());
        let appended = self.appended.load(Ordering::Relaxed);
        let mut ids = Vec::new();
        for (id, seq, scheduled_us) in entries_of_read(reply).into_iter().take(READ_COUNT) {
            ids.push(id);
            if seq == 0 || seq > appended {
                continue;
            }
            let sample = Sample {
                trial: self.trial,
                stream: Stream::Consume,
                seq,
                scheduled_us,
                start_us: scheduled_us,
                end_us: now,
                latency_us: now.saturating_sub(scheduled_us),
                outcome: Outcome::Ok,
                error_class: None,
                error: None,
                server: Some(server.to_string()),
                value: None,
                shard: None,
                client: self.client.clone(),
            };
            let _ = self.report.tx.send(Record::Sample(sample));
        }
        ids
    }
}

async fn still_primary(conn: &mut redis::aio::MultiplexedConnection, limit: Duration) -> Result<(), ProbeError> {
    let role = match timeout(limit, redis::cmd("ROLE").query_async::<Value>(conn)).await {
        Ok(Ok(Value::Array(items))) => items.into_iter().next(),
        Ok(Ok(_)) => None,
        Ok(Err(e)) => return Err(classify(&e)),
        Err(_) => return Err(ProbeError::timeout("ROLE")),
    };
    match role {
        Some(Value::BulkString(b)) if b == b"master" => Ok(()),
        _ => Err(ProbeError::new(crate::sample::ErrorClass::Readonly, "the stream's server is no longer the primary")),
    }
}

/// `[[key, [[id, [field, value, …]], …]]]` (XREADGROUP) → (id, seq, due µs) of each entry.
fn entries_of_read(reply: &Value) -> Vec<(String, u64, u64)> {
    let Value::Array(streams) = reply else { return Vec::new() };
    let mut out = Vec::new();
    for stream in streams {
        if let Value::Array(parts) = stream {
            if let Some(entries) = parts.get(1) {
                out.extend(entries_of_range(entries));
            }
        }
    }
    out
}

/// `[[id, [field, value, …]], …]` (XRANGE, or one stream of XREADGROUP) → (id, seq, due µs).
/// An entry without failprobe's fields has seq 0.
fn entries_of_range(entries: &Value) -> Vec<(String, u64, u64)> {
    let Value::Array(entries) = entries else { return Vec::new() };
    let text = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_string),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else { return None };
            let id = text(parts.first()?)?;
            let fields = match parts.get(1) {
                Some(Value::Array(f)) => f.as_slice(),
                _ => &[],
            };
            let field = |name: &str| {
                fields.chunks(2).find(|kv| text(&kv[0]).as_deref() == Some(name)).and_then(|kv| text(kv.get(1)?))
            };
            let seq = field("seq").and_then(|s| s.parse().ok()).unwrap_or(0);
            let at = field("t").and_then(|s| s.parse().ok()).unwrap_or(0);
            Some((id, seq, at))
        })
        .collect()
}

/// The trial's stream as the primary of now has it: the sequence numbers present (at most
/// `max_seq` entries are read, numbers failprobe never appended ignored) and the entries the
/// group was given and never acknowledged.
pub(crate) async fn read_back(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    max_seq: u64,
) -> Result<(SeqSet, u64), ProbeError> {
    let mut present = SeqSet::default();
    let (mut from, mut read) = ("-".to_string(), 0u64);
    while read < max_seq {
        let mut range = redis::cmd("XRANGE");
        range.arg(key).arg(&from).arg("+").arg("COUNT").arg(PAGE + 1);
        let page: Value = timeout(Duration::from_secs(30), range.query_async(conn))
            .await
            .map_err(|_| ProbeError::timeout("XRANGE"))?
            .map_err(|e| classify(&e))?;
        let entries = entries_of_range(&page);
        // Each page after the first starts with the last entry of the one before.
        let fresh: Vec<_> = entries.iter().filter(|(id, ..)| from == "-" || *id != from).collect();
        if fresh.is_empty() {
            break;
        }
        for (_, seq, _) in &fresh {
            if (1..=max_seq).contains(seq) {
                present.insert(*seq);
            }
        }
        read += fresh.len() as u64;
        from = fresh.last().map(|(id, ..)| id.clone()).unwrap_or_default();
    }
    let mut pending = redis::cmd("XPENDING");
    pending.arg(key).arg(GROUP);
    let pending = match timeout(Duration::from_secs(30), pending.query_async::<Value>(conn)).await {
        Ok(Ok(Value::Array(summary))) => match summary.first() {
            Some(Value::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        },
        // No group (the consumer never made it on this primary): nothing pending.
        Ok(Ok(_)) | Ok(Err(_)) => 0,
        Err(_) => return Err(ProbeError::timeout("XPENDING")),
    };
    Ok((present, pending))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entries_are_read_from_both_reply_shapes_and_foreign_ones_have_no_number() {
        let entry = |id: &str, seq: &str| {
            Value::Array(vec![bulk(id), Value::Array(vec![bulk("seq"), bulk(seq), bulk("t"), bulk("7")])])
        };
        let range = Value::Array(vec![entry("1-0", "1"), entry("2-0", "x")]);
        assert_eq!(entries_of_range(&range), vec![("1-0".into(), 1, 7), ("2-0".into(), 0, 7)]);
        let read = Value::Array(vec![Value::Array(vec![bulk("k"), range])]);
        assert_eq!(entries_of_read(&read).len(), 2);
        assert!(entries_of_read(&Value::Nil).is_empty());
    }
}
