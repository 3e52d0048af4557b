//! `kill` (SIGKILL) and `pause=<D>` (SIGSTOP for exactly D, then SIGCONT) of the primary's
//! process: the lab's, or the one given with `--pid`.

use super::{Trigger, TriggerContext, TriggerFuture};
use crate::target::locate_primary;
use anyhow::{anyhow, bail, Result};
use std::time::Duration;

pub enum Signal {
    Kill,
    Pause(Duration),
}

impl Trigger for Signal {
    fn kind(&self) -> String {
        match self {
            Signal::Kill => "kill".into(),
            Signal::Pause(d) => super::TriggerSpec::Pause(*d).label(),
        }
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let (pid, who) = primary_process(ctx).await?;
            match self {
                Signal::Kill => {
                    send(pid, libc::SIGKILL)?;
                    Ok(format!("SIGKILL to pid {pid} ({who})"))
                }
                Signal::Pause(d) => {
                    send(pid, libc::SIGSTOP)?;
                    // Resumes the process even if this future is dropped (Ctrl-C): a paused
                    // primary must never be left behind.
                    let guard = ResumeOnDrop(pid);
                    tokio::time::sleep(*d).await;
                    drop(guard);
                    Ok(format!("SIGSTOP to pid {pid} ({who}) for {d:?}, then SIGCONT"))
                }
            }
        })
    }
}

struct ResumeOnDrop(u32);

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        let _ = send(self.0, libc::SIGCONT);
    }
}

/// `restart`: kill the lab node (the primary, the chosen shard's primary, or memcached node
/// `--shard N`) and start it again on the same port — for memcached, a node replacement.
pub struct Restart;

impl Trigger for Restart {
    fn kind(&self) -> String {
        "restart".into()
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let lab = ctx.lab.as_ref().ok_or_else(|| anyhow!("restart needs a lab: use --lab DIR"))?;
            let (_, port) = target_node(ctx).await?;
            lab.restart_port(port).await
        })
    }
}

/// The node a process trigger acts on: memcached node `--shard N`, the chosen cluster shard's
/// primary, or the primary.
async fn target_node(ctx: &TriggerContext) -> Result<(String, u16)> {
    if let Some(nodes) = ctx.target.memcache_nodes() {
        let i = ctx.shard.unwrap_or(0);
        return nodes
            .get(i)
            .cloned()
            .ok_or_else(|| anyhow!("the target has {} memcached node(s); there is no node {i}", nodes.len()));
    }
    if ctx.target.is_cluster() {
        let (_, shard) = super::cluster::chosen_shard(ctx).await?;
        return Ok((shard.primary.host, shard.primary.port));
    }
    locate_primary(&ctx.target, ctx.limit).await.map_err(|e| anyhow!("finding the primary: {e}"))
}

async fn primary_process(ctx: &TriggerContext) -> Result<(u32, String)> {
    if let Some(pid) = ctx.pid {
        return Ok((pid, "--pid".into()));
    }
    let lab =
        ctx.lab.as_ref().ok_or_else(|| anyhow!("kill/pause need the primary's process: use --lab DIR or --pid PID"))?;
    let (host, port) = target_node(ctx).await?;
    let pid = lab
        .pid_of_port(port)
        .ok_or_else(|| anyhow!("{host}:{port} is not a process of the lab in {}", lab.dir.display()))?;
    Ok((pid, format!("lab node 127.0.0.1:{port}")))
}

pub fn send(pid: u32, signal: libc::c_int) -> Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if rc != 0 {
        bail!("signal {signal} to pid {pid}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
