//! `kill` (SIGKILL) and `pause=<D>` (SIGSTOP for exactly D, then SIGCONT) of the primary's
//! process: the lab's, or the one given with `--pid`.

use super::{BoxFuture, Checked, Trigger, TriggerContext, TriggerFuture};
use crate::os::signal_verified;
use crate::target::locate_primary;
use anyhow::{anyhow, Result};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Kill;

impl Trigger for Kill {
    fn parse(arg: Option<&str>) -> Option<Self> {
        arg.is_none().then_some(Kill)
    }

    fn label(&self) -> String {
        "kill".into()
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(checked_process(ctx))
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let Process { pid, addrs } = primary_process(ctx).await?;
            let who = signal_verified(pid as u64, &addrs, libc::SIGKILL)?;
            Ok(format!("SIGKILL to {who}"))
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pause(pub Duration);

impl Trigger for Pause {
    fn parse(arg: Option<&str>) -> Option<Self> {
        crate::duration::parse_duration(arg?).ok().map(Pause)
    }

    fn label(&self) -> String {
        format!("pause={}", crate::duration::format_ms(self.0.as_secs_f64() * 1000.0).replace(' ', ""))
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(checked_process(ctx))
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let Process { pid, addrs } = primary_process(ctx).await?;
            let d = self.0;
            let started = crate::os::start_time(pid as u64).ok_or_else(|| anyhow!("pid {pid}: no such process"))?;
            let who = signal_verified(pid as u64, &addrs, libc::SIGSTOP)?;
            if crate::os::start_time(pid as u64) != Some(started) {
                // The pid changed hands between reading its start time and the check: what was
                // stopped is not the process whose start time the resume would ask for.
                let _ = crate::os::signal_same_process(pid as u64, crate::os::start_time(pid as u64).unwrap_or(0), libc::SIGCONT);
                anyhow::bail!("pid {pid} changed while it was being paused; resumed, not measured");
            }
            // Resumes the process even if this future is dropped (Ctrl-C, SIGTERM): a paused
            // primary must never be left behind. The start time read before the check names the
            // process checked (a pid reused in between has another).
            let guard = ResumeOnDrop { pid, started };
            tokio::time::sleep(d).await;
            drop(guard);
            Ok(format!("SIGSTOP to {who} for {d:?}, then SIGCONT"))
        })
    }
}

struct ResumeOnDrop {
    pid: u32,
    /// Start time of the process verified before SIGSTOP: SIGCONT goes to that process only.
    started: u64,
}

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        // The full check ran before SIGSTOP; at resume time only "still the same process" is
        // asked (one small read), so the pause ends on time.
        if let Err(e) = crate::os::signal_same_process(self.pid as u64, self.started, libc::SIGCONT) {
            tracing::warn!("resuming pid {}: {e:#}", self.pid);
        }
    }
}

/// `restart`: kill the lab node (the primary, the chosen shard's primary, or memcached node
/// `--shard N`) and start it again on the same port — for memcached, a node replacement.
#[derive(Clone, Debug, PartialEq)]
pub struct Restart;

impl Trigger for Restart {
    fn parse(arg: Option<&str>) -> Option<Self> {
        arg.is_none().then_some(Restart)
    }

    fn label(&self) -> String {
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

/// The node a process trigger acts on: node `--shard N` of an engine that numbers its nodes
/// (memcached), the chosen cluster shard's primary, or the primary.
pub(crate) async fn target_node(ctx: &TriggerContext) -> Result<(String, u16)> {
    if let Some(node) = ctx.target.memcache_node(ctx.shard.unwrap_or(0)) {
        return node.map_err(|e| anyhow!(e));
    }
    if ctx.target.is_cluster() {
        let (_, shard) = super::cluster::chosen_shard(ctx).await?;
        return Ok((shard.primary.host, shard.primary.port));
    }
    locate_primary(&ctx.target, ctx.limit).await.map_err(|e| anyhow!("finding the primary: {e}"))
}

/// The process a kill/pause acts on, and the addresses it must listen on.
pub(crate) struct Process {
    pid: u32,
    /// What the node's host resolves to (through the target's resolver), with its port.
    addrs: Vec<SocketAddr>,
}

/// The process a kill/pause acts on: `--pid` (checked against the address and port the
/// target's node resolves to), or the lab's process on that node's port.
pub(crate) async fn primary_process(ctx: &TriggerContext) -> Result<Process> {
    let (host, port) = target_node(ctx).await?;
    let addrs = ctx.target.dns.resolve(&host, port, ctx.limit).await.map_err(|e| anyhow!("{host}:{port}: {e}"))?;
    if let Some(pid) = ctx.pid {
        return Ok(Process { pid, addrs });
    }
    let lab =
        ctx.lab.as_ref().ok_or_else(|| anyhow!("kill/pause need the primary's process: use --lab DIR or --pid PID"))?;
    let pid = lab
        .pid_of_port(port)
        .ok_or_else(|| anyhow!("{host}:{port} is not a process of the lab in {}", lab.dir.display()))?;
    Ok(Process { pid, addrs })
}

/// Before anything is written or fired: the process exists, is a server, and listens on the
/// address and port of the node the trigger acts on. Returns what it is, for the confirmation.
async fn checked_process(ctx: &TriggerContext) -> Result<Checked> {
    let Process { pid, addrs } = primary_process(ctx).await?;
    let source = if ctx.pid.is_some() { "--pid" } else { "the lab's record" };
    let process =
        crate::os::identify(pid as u64, &addrs).map_err(|e| crate::error::invalid(format!("{source}: {e}")))?;
    Ok(Checked { api_call: None, process: Some(process) })
}
