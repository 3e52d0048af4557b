//! When a trial is over: every client's streams up for the settle time, and the old primary
//! no longer acting as one.

use super::context::{ClientTrial, RunContext};
use super::CONTROL_LIMIT;
use crate::lab::Topology;
use crate::probe::schedule::Health;
use crate::sample::{EventKind, Stream};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Each shard's primary now, as the deployment names it: behind an endpoint lab its sentinels
/// (the endpoint itself names only itself).
pub(super) async fn primaries(ctx: &RunContext) -> Vec<Option<(String, u16)>> {
    if ctx.lab.as_ref().is_some_and(|l| l.topology == Topology::Endpoint) {
        return vec![crate::target::locate_primary(&ctx.control, CONTROL_LIMIT).await.ok()];
    }
    ctx.prober.primaries().await
}

/// The primaries before the trigger, and which of them have been seen stepping down.
pub(super) struct OldPrimaries {
    pub(super) before: Vec<Option<(String, u16)>>,
    pub(super) stepped_down: Vec<bool>,
    /// Whose old primary did not answer at the last look (on the timeline when it became so).
    unreachable: Vec<bool>,
    pub(super) checked: Option<Instant>,
    /// The verdict of the last check, given again until the next one is due.
    pub(super) last: bool,
    /// When the last old primary was seen stepping down (run clock, µs): clients connected to
    /// it fail then, so a trial settles only after that.
    pub(super) stepped_down_us: u64,
}

/// What the old primary said when asked.
enum OldState {
    /// It answered ROLE: `master`, `slave`...
    Answers(String),
    /// A lab node whose process is verified gone: it can no longer act as primary.
    Gone,
    /// No answer, and nothing known of its process: it may still be acting as primary for
    /// whoever can reach it.
    Unreachable,
}

impl OldPrimaries {
    pub(super) fn new(before: Vec<Option<(String, u16)>>) -> Self {
        let stepped_down = vec![false; before.len()];
        let unreachable = vec![false; before.len()];
        Self { before, stepped_down, unreachable, checked: None, last: false, stepped_down_us: 0 }
    }

    /// Whether every shard's primary before the trigger is still the primary (nothing was
    /// replaced) or no longer acts as one: it answers ROLE as a replica, or its process is
    /// verified gone. An unreachable one has not stepped down. Asks at most every 250 ms; each
    /// step-down goes on the timeline once, and so does each change between unreachable and
    /// answering as primary.
    pub(super) async fn settled(&mut self, ctx: &RunContext) -> bool {
        if self.stepped_down.iter().all(|d| *d) {
            return true;
        }
        if self.checked.is_some_and(|at| at.elapsed() < Duration::from_millis(250)) {
            return self.last;
        }
        self.checked = Some(Instant::now());
        let now = primaries(ctx).await;
        let names = ctx.prober.shard_names();
        let mut settled = true;
        for (i, old) in self.before.iter().enumerate() {
            let Some((host, port)) = old else { continue };
            if self.stepped_down[i] || now.get(i).cloned().flatten().as_ref() == old.as_ref() {
                continue;
            }
            let (shard, server) = (names.get(i).cloned().flatten(), format!("{host}:{port}"));
            match ask_old_primary(ctx, host, *port).await {
                OldState::Answers(role) if role == "master" => {
                    settled = false;
                    if std::mem::take(&mut self.unreachable[i]) {
                        ctx.report.event(EventKind::Reachable { shard, server, role });
                    }
                }
                OldState::Answers(role) => {
                    self.stepped_down[i] = true;
                    self.stepped_down_us = ctx.report.clock.now_us();
                    ctx.report.event(EventKind::StepDown { shard, server, role });
                }
                OldState::Gone => {
                    self.stepped_down[i] = true;
                    self.stepped_down_us = ctx.report.clock.now_us();
                    let role = crate::analysis::sentence::GONE_ROLE.to_string();
                    ctx.report.event(EventKind::StepDown { shard, server, role });
                }
                OldState::Unreachable => {
                    settled = false;
                    if !std::mem::replace(&mut self.unreachable[i], true) {
                        ctx.report.event(EventKind::Unreachable { shard, server });
                    }
                }
            }
        }
        self.last = settled;
        settled
    }
}

/// ROLE of the old primary; when it does not answer, whether its process is known gone: only
/// for a node of the run's own lab, whose pid is known (a connection refused proves nothing: a
/// firewall can refuse while the node serves others).
async fn ask_old_primary(ctx: &RunContext, host: &str, port: u16) -> OldState {
    if let Some(role) = ctx.prober.role_of(host, port).await {
        return OldState::Answers(role);
    }
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let node = ctx.lab.as_ref().filter(|_| loopback).and_then(|lab| lab.nodes().into_iter().find(|n| n.port == port));
    match node {
        Some(node) if !node.is_alive() => OldState::Gone,
        _ => OldState::Unreachable,
    }
}

/// Until every client's streams have been up for the settle time, counted from the trigger's
/// completion and from the old primary's step-down (clients still on it fail then: a trial that
/// ended at the step-down would miss their outage and their lost writes), and the old primary
/// no longer acts as one.
pub(super) async fn wait_recovered(ctx: &RunContext, clients: &[ClientTrial], old: &mut OldPrimaries) -> String {
    let since_trigger = Instant::now();
    let finished_us = ctx.report.clock.now_us();
    let settle_us = ctx.plan.settle.as_micros() as u64;
    loop {
        // The old primary first: the clients' health is read after it, never before a
        // step-down this check is the first to see.
        let old_settled = old.settled(ctx).await;
        let now_us = ctx.report.clock.now_us();
        // Settle counts from the trigger's completion too: a failover without errors (Sentinel's)
        // still moves clients to the new primary a moment later, and that must be measured.
        let from_us = finished_us.max(old.stepped_down_us);
        let settled = |c: &ClientTrial| {
            c.health
                .iter()
                .map(|h| h.snapshot())
                .all(|h| h.seen_any && h.up && now_us.saturating_sub(h.since_us.max(from_us)) >= settle_us)
        };
        let mut waiting: Vec<String> = clients.iter().filter(|c| !settled(c)).map(|c| c.profile.name()).collect();
        if !old_settled {
            waiting.push("the old primary still acting as one".to_string());
        }
        if waiting.is_empty() {
            return format!("recovered and stable for {:?}", ctx.plan.settle);
        }
        if since_trigger.elapsed() >= ctx.plan.max_trial {
            return format!(
                "not recovered ({}) within --max-trial {:?} after the trigger finished",
                waiting.join(", "),
                ctx.plan.max_trial
            );
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// A stream is up only when it is up on every shard.
pub(super) fn combined(health: &[Arc<Health>], stream: Stream) -> crate::probe::schedule::HealthState {
    let parts: Vec<_> = health.iter().skip(stream.index()).step_by(2).map(|h| h.snapshot()).collect();
    let mut out = parts.iter().find(|h| !h.up).or(parts.first()).cloned().unwrap_or_default();
    out.completed = parts.iter().map(|h| h.completed).sum();
    out.failed = parts.iter().map(|h| h.failed).sum();
    out
}
