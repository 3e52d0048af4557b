//! The lab's primary endpoint: a stable `ADDRESS:PORT` of its own on loopback that sends each *new* connection to
//! the current primary (as Sentinel names it), `lag` after the primary changed, while open
//! connections stay on the node they reached, as with a managed service's DNS name. It runs as
//! its own process (`failprobe lab endpoint`, started by `lab up`), and logs every flip to
//! `endpoint.jsonl` in the lab directory for the run's timeline.

use super::Lab;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const FLIP_FILE: &str = "endpoint.jsonl";
/// How often the endpoint asks the sentinels who the primary is.
const POLL: Duration = Duration::from_millis(100);
/// Connections forwarded at once; more are refused (a bounded lab process).
const MAX_CONNECTIONS: usize = 1024;

/// One change of where new connections go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Flip {
    /// Wall-clock time of the flip, microseconds since the Unix epoch.
    pub at_unix_us: u64,
    /// None for the first address, when the endpoint started.
    pub from: Option<String>,
    pub to: String,
}

/// Serves the endpoint of the lab in `dir` on `port` until killed.
pub async fn serve(dir: &Path, at: std::net::SocketAddr, lag: Duration) -> Result<()> {
    let listener = TcpListener::bind(at).await.with_context(|| format!("endpoint: binding {at}"))?;
    let lab = Lab::read(dir)?;
    let first = loop {
        if let Some(p) = lab.current_primary().await {
            break lab.addr_of(p).to_string();
        }
        tokio::time::sleep(POLL).await;
    };
    log_flip(dir, None, &first)?;
    let (tx, rx) = watch::channel(first);
    tokio::spawn(follow_primary(lab, tx, lag));
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (client, _) = listener.accept().await.context("endpoint: accept")?;
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let to = rx.borrow().clone();
        tokio::spawn(async move {
            let _permit = permit;
            forward(client, &to).await;
        });
    }
}

async fn forward(mut client: TcpStream, to: &str) {
    let Ok(Ok(mut server)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(to)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Asks the sentinels every `POLL`; a new primary is where new connections go `lag` later.
async fn follow_primary(lab: Lab, tx: watch::Sender<String>, lag: Duration) {
    loop {
        tokio::time::sleep(POLL).await;
        let Some(port) = lab.current_primary().await else { continue };
        let now = lab.addr_of(port).to_string();
        let was = tx.borrow().clone();
        if now == was {
            continue;
        }
        tokio::time::sleep(lag).await;
        if log_flip(&lab.dir, Some(&was), &now).is_ok() {
            tx.send_replace(now);
        }
    }
}

fn log_flip(dir: &Path, from: Option<&str>, to: &str) -> Result<()> {
    use std::io::Write;
    let at_unix_us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
    let flip = Flip { at_unix_us, from: from.map(String::from), to: to.to_string() };
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(FLIP_FILE))?;
    writeln!(f, "{}", serde_json::to_string(&flip)?)?;
    Ok(())
}

/// The flips logged after the first `seen` lines (a run reads new ones as they come), and how
/// many complete lines there are now. A line being written is left for the next call.
pub fn read_flips(dir: &Path, seen: usize) -> (Vec<Flip>, usize) {
    let Ok(text) = std::fs::read_to_string(dir.join(FLIP_FILE)) else { return (Vec::new(), seen) };
    let complete: Vec<&str> = text.split_inclusive('\n').take_while(|l| l.ends_with('\n')).collect();
    let flips = complete.iter().skip(seen).filter_map(|l| serde_json::from_str(l.trim()).ok()).collect();
    (flips, complete.len().max(seen))
}
