//! The Redis prober, for standalone (`redis://`) and Sentinel (`redis+sentinel://`) targets.
//!
//! A write is one MULTI/EXEC: RPUSH the sequence number to the trial's log, SET the sentinel key
//! to it, both with a TTL. After the trial the log tells exactly which acknowledged writes survive.

use super::error::{classify, ProbeError};
use super::slot::{ConnSlot, Live, Reporter};
use super::{Attempt, Prober, TrialKeys};
use crate::record::{EventKind, Stream};
use crate::target::{connect_primary, query_role, sentinel_primary, Discovery, Target};
use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};

pub struct RedisProber {
    target: Arc<Target>,
    slots: [Arc<ConnSlot>; 2],
    limit: Duration,
    report: Reporter,
    stop: watch::Sender<bool>,
}

impl RedisProber {
    /// Starts the connection keepers, the topology poller and (for Sentinel) the `+switch-master`
    /// listener. They run until `shutdown`.
    pub fn start(target: Arc<Target>, limit: Duration, report: Reporter) -> Arc<Self> {
        let (stop, _) = watch::channel(false);
        let prober = Arc::new(Self {
            slots: [ConnSlot::new(Stream::Write), ConnSlot::new(Stream::Read)],
            target: target.clone(),
            limit,
            report: report.clone(),
            stop,
        });
        for slot in &prober.slots {
            tokio::spawn(slot.clone().run_connector(target.clone(), limit, report.clone(), prober.stop.subscribe()));
        }
        tokio::spawn(prober.clone().poll_topology());
        if target.is_sentinel() {
            tokio::spawn(prober.clone().follow_switch_master());
        }
        prober
    }

    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    pub fn slot(&self, stream: Stream) -> &ConnSlot {
        &self.slots[stream.index()]
    }

    fn reconnect_all(&self) {
        for s in &self.slots {
            s.follow_new_primary();
        }
    }

    /// Runs `op` on the stream's connection; on a connection-level failure the connection is
    /// dropped so the next probe gets a fresh one.
    async fn on_conn<T, F, Fut>(&self, stream: Stream, deadline: Instant, op: F) -> Attempt
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
        T: Into<Option<u64>>,
    {
        let slot = self.slot(stream);
        let live: Arc<Live> = match slot.get(deadline).await {
            Ok(l) => l,
            Err(e) => return Attempt { result: Err(e), server: None },
        };
        let server = Some(live.server.addr.clone());
        let result = match timeout_at(deadline, op(live.conn.clone())).await {
            Err(_) => Err(ProbeError::timeout(&format!("{} probe", stream.name()))),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(v)) => Ok(v.into()),
        };
        if result.as_ref().is_err_and(|e| e.needs_reconnect()) {
            slot.invalidate(live.generation);
        }
        Attempt { result, server }
    }

    /// Once a second: ask Sentinel who the primary is, ask each probe connection who it talks
    /// to, and drop any connection that no longer reaches the primary.
    async fn poll_topology(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let announced = match &self.target.discovery {
                Discovery::Sentinel { .. } => match sentinel_primary(&self.target, self.limit).await {
                    Ok((h, p, sentinel)) => {
                        let primary = format!("{h}:{p}");
                        self.report.event(EventKind::Topology {
                            source: format!("sentinel {sentinel}"),
                            server: Some(sentinel),
                            role: Some("sentinel".into()),
                            run_id: None,
                            primary: Some(primary.clone()),
                        });
                        Some((h, p))
                    }
                    Err(_) => None,
                },
                Discovery::Direct { .. } => None,
            };
            for slot in &self.slots {
                self.check_connection(slot, announced.as_ref()).await;
            }
        }
    }

    async fn check_connection(&self, slot: &ConnSlot, announced: Option<&(String, u16)>) {
        let Some(live) = slot.current() else { return };
        if announced.is_some_and(|(h, p)| (h.as_str(), *p) != (live.server.host.as_str(), live.server.port)) {
            slot.invalidate(live.generation);
            return;
        }
        let mut conn = live.conn.clone();
        match query_role(&mut conn, self.limit).await {
            Ok((role, run_id)) => {
                let is_primary = role == "master";
                self.report.event(EventKind::Topology {
                    source: format!("{} connection", slot.stream.name()),
                    server: Some(live.server.addr.clone()),
                    role: Some(role),
                    run_id,
                    primary: (is_primary && !self.target.is_sentinel()).then(|| live.server.addr.clone()),
                });
                if !is_primary {
                    slot.invalidate(live.generation);
                }
            }
            Err(_) => slot.invalidate(live.generation),
        }
    }

    /// Follows Sentinel's `+switch-master` announcements, as a well-configured client does.
    async fn follow_switch_master(self: Arc<Self>) {
        let Discovery::Sentinel { sentinels, master } = &self.target.discovery else { return };
        let mut stop = self.stop.subscribe();
        let mut i = 0usize;
        loop {
            let (host, port) = &sentinels[i % sentinels.len()];
            i += 1;
            tokio::select! {
                r = self.listen(host, *port, master) => {
                    if let Err(e) = r { tracing::debug!("sentinel {host}:{port} subscription: {e:#}"); }
                }
                _ = stop.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn listen(&self, host: &str, port: u16, master: &str) -> Result<()> {
        use futures_util::StreamExt;
        let client = self.target.sentinel_client(host, port)?;
        let mut pubsub = timeout(self.limit, client.get_async_pubsub()).await.context("connect timeout")??;
        pubsub.subscribe("+switch-master").await?;
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let payload: String = msg.get_payload().unwrap_or_default();
            // "<master-name> <old-ip> <old-port> <new-ip> <new-port>"
            let parts: Vec<&str> = payload.split_whitespace().collect();
            if parts.len() == 5 && parts[0] == master {
                self.report.event(EventKind::Topology {
                    source: format!("sentinel {host}:{port} +switch-master"),
                    server: Some(format!("{host}:{port}")),
                    role: Some("sentinel".into()),
                    run_id: None,
                    primary: Some(format!("{}:{}", parts[3], parts[4])),
                });
                self.reconnect_all();
            }
        }
        anyhow::bail!("subscription closed")
    }

    /// The trial's write log as the current primary has it, read on a fresh connection.
    pub async fn read_write_log(&self, keys: &TrialKeys) -> Result<(String, Vec<u64>), ProbeError> {
        let (mut conn, server) = connect_primary(&self.target, self.limit).await?;
        let mut seqs: Vec<u64> =
            timeout(Duration::from_secs(30), redis::cmd("LRANGE").arg(&keys.log).arg(0).arg(-1).query_async(&mut conn))
                .await
                .map_err(|_| ProbeError::timeout("LRANGE"))?
                .map_err(|e| classify(&e))?;
        seqs.sort_unstable();
        Ok((server.addr, seqs))
    }

    /// DBSIZE without failprobe's own keys (those we know we wrote; no KEYS/SCAN needed).
    pub async fn user_key_count(&self, own: &[String]) -> Result<u64, ProbeError> {
        let (mut conn, _) = connect_primary(&self.target, self.limit).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("DBSIZE");
        if !own.is_empty() {
            pipe.cmd("EXISTS").arg(own);
        } else {
            pipe.cmd("ECHO").arg(0);
        }
        let (size, ours): (u64, u64) = timeout(self.limit * 4, pipe.query_async(&mut conn))
            .await
            .map_err(|_| ProbeError::timeout("DBSIZE"))?
            .map_err(|e| classify(&e))?;
        Ok(size.saturating_sub(ours))
    }
}

struct Written;

impl From<Written> for Option<u64> {
    fn from(_: Written) -> Self {
        None
    }
}

impl Prober for RedisProber {
    async fn write(self: Arc<Self>, keys: Arc<TrialKeys>, seq: u64, deadline: Instant) -> Attempt {
        self.on_conn(Stream::Write, deadline, |mut conn| async move {
            redis::pipe()
                .atomic()
                .cmd("RPUSH")
                .arg(&keys.log)
                .arg(seq)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&keys.log)
                .arg(keys.ttl_ms)
                .ignore()
                .cmd("SET")
                .arg(&keys.sentinel)
                .arg(seq)
                .arg("PX")
                .arg(keys.ttl_ms)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map(|_| Written)
        })
        .await
    }

    async fn read(self: Arc<Self>, keys: Arc<TrialKeys>, deadline: Instant) -> Attempt {
        self.on_conn(Stream::Read, deadline, |mut conn| async move {
            let v: Option<u64> = redis::cmd("GET").arg(&keys.sentinel).query_async(&mut conn).await?;
            Ok(Some(v.unwrap_or(0)))
        })
        .await
    }
}
