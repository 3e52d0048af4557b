//! The listener: `GET /metrics` answers the registry's text (OpenMetrics when the scraper asks
//! for it, as Prometheus does; the Prometheus text format otherwise), anything else 404. It
//! serves until stopped or dropped, and then no port is left open. Bounded: a few connections
//! at once, each with a deadline for its request headers, and a scrape encodes a registry whose
//! series the plans bound.

use super::families::Metrics;
use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Scrapers served at once; more wait for their turn in the kernel's backlog.
const MAX_CONNECTIONS: usize = 8;
const HEADER_DEADLINE: Duration = Duration::from_secs(10);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `--metrics-listen`: a loopback address, or any with `--metrics-listen-any` (the metrics name
/// the deployment's targets and clients; they are for the operator's own Prometheus).
pub fn check_address(addr: SocketAddr, any: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || any {
        return Ok(());
    }
    Err(format!(
        "--metrics-listen {addr} is not a loopback address: the metrics would be open to the network; add --metrics-listen-any to mean it"
    ))
}

/// A listener serving the metrics; stops when [`Listener::stop`] is called or it is dropped.
pub struct Listener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Listener {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection, and returns once the port is closed.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `addr` (port 0: one the OS picks; `Listener::addr` tells which) and serves `metrics`.
pub async fn serve(addr: SocketAddr, metrics: &Metrics) -> Result<Listener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("--metrics-listen {addr}"))?;
    let addr = listener.local_addr()?;
    let _ = metrics.inner.addr.set(addr);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, metrics.clone(), stopped));
    Ok(Listener { addr, stop, task: Some(task) })
}

async fn accept_loop(listener: TcpListener, metrics: Metrics, mut stopped: watch::Receiver<bool>) {
    let turns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let turn = tokio::select! {
            t = turns.clone().acquire_owned() => t,
            _ = stopped.changed() => break,
        };
        let Ok(turn) = turn else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let metrics = metrics.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = answer(&metrics, &req);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(turn);
        });
        // Finished connections are reaped as new ones come.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

fn answer(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        let mut not_found = Response::new(Full::new(Bytes::from_static(b"failprobe serves /metrics\n")));
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        return not_found;
    }
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let openmetrics = accept.contains("application/openmetrics-text");
    let mut response = Response::new(Full::new(Bytes::from(metrics.encode(openmetrics))));
    let kind = if openmetrics { OPENMETRICS } else { prometheus_client::encoding::prometheus_text::CONTENT_TYPE };
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}
