//! One connection per stream, owned by failprobe rather than by the client library: a connection
//! that errors, times out or reaches a non-primary is dropped and a fresh one is made, with a
//! fresh primary lookup, under a connect deadline and a bounded reconnect rate.

use super::locate::Locator;
use crate::sample::ErrorClass;
use crate::sample::{EventKind, Stream};
use crate::sink::Reporter;
use crate::target::error::ProbeError;
use crate::target::ServerInfo;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, timeout_at, Instant};

/// First retry after 25 ms, doubling to at most 200 ms: an outage never becomes a reconnect
/// storm (≤ 5 attempts/s per stream once it lasts), yet recovery is seen within 200 ms.
const BACKOFF_MIN: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

pub(crate) struct Live {
    pub conn: MultiplexedConnection,
    pub server: ServerInfo,
    pub generation: u64,
}

#[derive(Clone)]
pub(crate) enum ConnectionState {
    Connecting,
    Up(Arc<Live>),
    Down(ProbeError),
}

pub(crate) struct StreamConnection {
    pub stream: Stream,
    /// The client profile it belongs to (None: failprobe's own), named in its events.
    client: Option<String>,
    state: watch::Sender<ConnectionState>,
    wake: Notify,
    skip_backoff: AtomicBool,
    generation: AtomicU64,
}

impl StreamConnection {
    pub fn new(stream: Stream, client: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            stream,
            client,
            state: watch::channel(ConnectionState::Connecting).0,
            wake: Notify::new(),
            skip_backoff: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        })
    }

    /// The live connection, waiting for one being made until `deadline`. When the last attempt
    /// was refused (or failed DNS, TLS, auth...) and the next is not due yet, fails at once with
    /// that error, as a client library would. When it timed out, waits for the next attempt: a
    /// probe only times out at its own deadline, and a server that resumes is seen at once.
    pub async fn get(&self, deadline: Instant) -> Result<Arc<Live>, ProbeError> {
        let mut rx = self.state.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                ConnectionState::Up(live) => return Ok(live.clone()),
                ConnectionState::Down(e) if e.class != ErrorClass::Timeout => return Err(e.clone()),
                ConnectionState::Down(_) | ConnectionState::Connecting => {}
            }
            match timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(ProbeError::timeout("waiting for a connection")),
            }
        }
    }

    pub(crate) fn current(&self) -> Option<Arc<Live>> {
        match &*self.state.borrow() {
            ConnectionState::Up(l) => Some(l.clone()),
            _ => None,
        }
    }

    /// Drops connection `generation` (if it is still the live one) and asks for a new one.
    pub(crate) fn invalidate(&self, generation: u64) {
        let changed = self.state.send_if_modified(|s| match s {
            ConnectionState::Up(l) if l.generation == generation => {
                *s = ConnectionState::Connecting;
                true
            }
            _ => false,
        });
        if changed {
            self.wake.notify_one();
        }
    }

    /// The primary moved (Sentinel said so): reconnect now, whatever the state.
    pub(crate) fn follow_new_primary(&self) {
        self.skip_backoff.store(true, Ordering::SeqCst);
        self.state.send_replace(ConnectionState::Connecting);
        self.wake.notify_one();
    }

    /// Keeps this slot connected until `stop` turns true.
    pub(crate) async fn run_connector(
        self: Arc<Self>,
        locator: Arc<Locator>,
        limit: Duration,
        report: Reporter,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut backoff = BACKOFF_MIN;
        let mut last_attempt: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            if matches!(*self.state.borrow(), ConnectionState::Up(_)) {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            if !self.skip_backoff.swap(false, Ordering::SeqCst) {
                if let Some(at) = last_attempt {
                    tokio::select! {
                        _ = sleep_until(at + backoff) => {}
                        _ = self.wake.notified() => {}
                        _ = stop.changed() => return,
                    }
                }
            } else {
                backoff = BACKOFF_MIN;
            }
            last_attempt = Some(Instant::now());
            self.state.send_if_modified(|s| {
                let was_down = matches!(s, ConnectionState::Down(_));
                if was_down {
                    *s = ConnectionState::Connecting;
                }
                was_down
            });
            match locator.connect(limit).await {
                Ok((conn, server)) => {
                    backoff = BACKOFF_MIN;
                    let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                    report.event(EventKind::Reconnect {
                        stream: self.stream,
                        server: Some(server.addr.clone()),
                        error: None,
                        client: self.client.clone(),
                    });
                    if locator.checks_role() {
                        report.event(EventKind::Topology {
                            source: format!("{} connection", self.stream.name()),
                            server: Some(server.addr.clone()),
                            role: Some(server.role.clone()),
                            run_id: server.run_id.clone(),
                            primary: locator.server_is_primary_source().then(|| server.addr.clone()),
                        });
                    }
                    self.state.send_replace(ConnectionState::Up(Arc::new(Live { conn, server, generation })));
                }
                Err(e) => {
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    report.event(EventKind::Reconnect {
                        stream: self.stream,
                        server: None,
                        error: Some(e.to_string()),
                        client: self.client.clone(),
                    });
                    // A follow_new_primary() that arrived during the attempt wins over this result.
                    self.state.send_if_modified(|s| match s {
                        ConnectionState::Connecting => {
                            *s = ConnectionState::Down(e.clone());
                            true
                        }
                        _ => false,
                    });
                }
            }
        }
    }
}
