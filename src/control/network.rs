//! `blackhole[=D]`, `partition[=D]`, `netem=<spec>[,for=D]`: the lab's primary (or the chosen
//! shard's) loses its network the way production nodes do, silently (`lab::fault`). For D, or
//! without one until the trial ends; healed on every way out.

use super::{BoxFuture, Checked, Trigger, TriggerContext, TriggerFuture};
use crate::lab::{FaultKind, Lab, Netem};
use anyhow::{anyhow, Result};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Blackhole(pub Option<Duration>);

#[derive(Clone, Debug, PartialEq)]
pub struct Partition(pub Option<Duration>);

#[derive(Clone, Debug, PartialEq)]
pub struct NetemFault {
    pub netem: Netem,
    pub lasts: Option<Duration>,
}

impl Trigger for Blackhole {
    fn parse(arg: Option<&str>) -> Option<Self> {
        parse_lasts(arg).map(Blackhole)
    }

    fn label(&self) -> String {
        with_lasts("blackhole", self.0)
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(check(ctx, FaultKind::Blackhole))
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(fire(ctx, FaultKind::Blackhole, self.0))
    }
}

impl Trigger for Partition {
    fn parse(arg: Option<&str>) -> Option<Self> {
        parse_lasts(arg).map(Partition)
    }

    fn label(&self) -> String {
        with_lasts("partition", self.0)
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(check(ctx, FaultKind::Partition))
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(fire(ctx, FaultKind::Partition, self.0))
    }
}

impl Trigger for NetemFault {
    /// `delay=200ms,jitter=50ms,loss=5%,for=10s`: at least a delay or a loss.
    fn parse(arg: Option<&str>) -> Option<Self> {
        let (mut netem, mut lasts) = (Netem::default(), None);
        for part in arg?.split(',') {
            let (key, value) = part.split_once('=')?;
            let (key, value) = (key.trim(), value.trim());
            match key {
                "for" => lasts = Some(crate::duration::parse_duration(value).ok()?),
                _ if netem.set(key, value) => {}
                _ => return None,
            }
        }
        netem.is_valid().then_some(NetemFault { netem, lasts })
    }

    fn label(&self) -> String {
        let lasts = self.lasts.map(|d| format!(",for={}", ms(d))).unwrap_or_default();
        format!("netem={}{lasts}", self.netem.label())
    }

    fn kind(&self) -> String {
        "netem".into()
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(check(ctx, FaultKind::Netem(self.netem.clone())))
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(fire(ctx, FaultKind::Netem(self.netem.clone()), self.lasts))
    }
}

/// No argument: until the trial ends; else a duration.
fn parse_lasts(arg: Option<&str>) -> Option<Option<Duration>> {
    match arg {
        None => Some(None),
        Some(text) => crate::duration::parse_duration(text).ok().filter(|d| !d.is_zero()).map(Some),
    }
}

fn with_lasts(name: &str, lasts: Option<Duration>) -> String {
    lasts.map_or_else(|| name.to_string(), |d| format!("{name}={}", ms(d)))
}

fn ms(d: Duration) -> String {
    crate::duration::format_ms(d.as_secs_f64() * 1000.0).replace(' ', "")
}

/// Before anything is written: a lab, the privilege and the tool, and a node of the lab's with
/// an address of its own to act on.
async fn check(ctx: &TriggerContext, kind: FaultKind) -> Result<Checked> {
    let lab = lab(ctx)?;
    crate::lab::fault_check(&kind).map_err(|e| crate::error::invalid(format!("{e:#}")))?;
    let (_, port) = super::process::target_node(ctx).await?;
    lab.fault_target(port, &kind).map_err(|e| crate::error::invalid(format!("{e:#}")))?;
    Ok(Checked::default())
}

async fn fire(ctx: &TriggerContext, kind: FaultKind, lasts: Option<Duration>) -> Result<String> {
    let lab = lab(ctx)?;
    let (_, port) = super::process::target_node(ctx).await?;
    let name = kind.name();
    let fault = lab.inject(kind, port, ctx.report.clone())?;
    let node = fault.node();
    match lasts {
        // Dropped with this future on Ctrl-C or SIGTERM: healed then too.
        Some(d) => {
            tokio::time::sleep(d).await;
            fault.heal()?;
            Ok(format!("{name} on {node} for {}, then healed", ms(d)))
        }
        None => {
            lab.hold_fault(fault);
            Ok(format!("{name} on {node} until the trial ends"))
        }
    }
}

fn lab(ctx: &TriggerContext) -> Result<&Arc<Lab>> {
    ctx.lab.as_ref().ok_or_else(|| anyhow!("network faults act on a lab's nodes only: use --lab DIR or --lab-topology"))
}
