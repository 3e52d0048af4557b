//! Controllers: ways to cause a failover. Each is a `Trigger`; the run loop puts its start,
//! finish and errors on the timeline.

pub mod cluster;
mod command;
mod process;
pub use process::send as send_signal;
mod promote;
mod sentinel;

use crate::error::invalid;
use crate::lab::Lab;
use crate::target::Target;
use anyhow::Result;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type TriggerFuture<'a> = Pin<Box<dyn Future<Output = Result<String>> + Send + 'a>>;

/// What a trigger may act on.
pub struct TriggerContext {
    pub target: Arc<Target>,
    pub lab: Option<Arc<Lab>>,
    /// `--pid`: the primary's process, for kill/pause outside a lab.
    pub pid: Option<u32>,
    /// Connect/command deadline for control connections.
    pub limit: Duration,
    /// How long a trigger may wait for its action to complete.
    pub max_wait: Duration,
    /// Cluster: the shard to act on (`--shard N`), or the one owning `--key K`; default 0.
    pub shard: Option<usize>,
    pub key: Option<String>,
}

pub trait Trigger: Send + Sync {
    /// Short name for the report (`sentinel`, `kill`, `pause=2s`, ...).
    fn kind(&self) -> String;
    /// Whether it changes the deployment (asks for confirmation against a non-loopback target).
    fn destructive(&self) -> bool {
        true
    }
    /// Performs the action and waits until it has completed; returns what was done.
    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a>;
}

/// `--trigger` values: none, sentinel, promote, kill, pause=<D>, command=<shell command>.
#[derive(Clone, Debug, PartialEq)]
pub enum TriggerSpec {
    None,
    Sentinel,
    Promote,
    Kill,
    Pause(Duration),
    Command(String),
    ClusterFailover(Option<String>),
    /// Kill a lab node and start it again on the same port: a node replacement.
    Restart,
}

impl TriggerSpec {
    pub fn parse(text: &str) -> Result<Self> {
        let (name, arg) = match text.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a)),
            None => (text.trim(), None),
        };
        Ok(match (name, arg) {
            ("none", None) => Self::None,
            ("sentinel", None) => Self::Sentinel,
            ("promote", None) => Self::Promote,
            ("kill", None) => Self::Kill,
            ("restart", None) => Self::Restart,
            ("pause", Some(d)) => Self::Pause(crate::duration::parse_duration(d).map_err(invalid)?),
            ("command", Some(c)) if !c.trim().is_empty() => Self::Command(c.to_string()),
            ("cluster-failover", None) => Self::ClusterFailover(None),
            ("cluster-failover", Some(m)) if ["force", "takeover"].contains(&m.to_lowercase().as_str()) => {
                Self::ClusterFailover(Some(m.to_lowercase()))
            }
            _ => {
                return Err(invalid(format!(
                    "unknown trigger `{text}`: use none, sentinel, promote, kill, restart, pause=<duration>, command=<shell command> or cluster-failover[=force|takeover]"
                )))
            }
        })
    }

    pub fn build(&self) -> Option<Box<dyn Trigger>> {
        Some(match self {
            Self::None => return None,
            Self::Sentinel => Box::new(sentinel::SentinelFailover),
            Self::Promote => Box::new(promote::Promote),
            Self::Kill => Box::new(process::Signal::Kill),
            Self::Pause(d) => Box::new(process::Signal::Pause(*d)),
            Self::Command(c) => Box::new(command::Command(c.clone())),
            Self::ClusterFailover(mode) => Box::new(cluster::ClusterFailover(mode.clone())),
            Self::Restart => Box::new(process::Restart),
        })
    }

    pub fn label(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Sentinel => "sentinel".into(),
            Self::Promote => "promote".into(),
            Self::Kill => "kill".into(),
            Self::Pause(d) => {
                format!("pause={}", crate::duration::format_ms(d.as_secs_f64() * 1000.0).replace(' ', ""))
            }
            Self::Command(c) => format!("command={c}"),
            Self::ClusterFailover(mode) => cluster::ClusterFailover(mode.clone()).kind(),
            Self::Restart => "restart".into(),
        }
    }

    /// Needs the primary's process: from `--lab` or `--pid`.
    pub fn needs_process(&self) -> bool {
        matches!(self, Self::Kill | Self::Pause(_) | Self::Restart)
    }

    /// What can be checked before anything is written or fired: the chosen shard exists and,
    /// for a cluster failover, has a replica.
    pub async fn check(&self, ctx: &TriggerContext) -> Result<()> {
        if !ctx.target.is_cluster() {
            return match self {
                Self::ClusterFailover(_) => Err(invalid("cluster-failover needs a redis+cluster:// target")),
                _ => Ok(()),
            };
        }
        if matches!(self, Self::ClusterFailover(_) | Self::Kill | Self::Pause(_)) {
            let (index, shard) = cluster::chosen_shard(ctx).await.map_err(|e| invalid(format!("{e:#}")))?;
            if matches!(self, Self::ClusterFailover(_)) && shard.replicas.is_empty() {
                return Err(invalid(format!(
                    "shard {index} ({}) has no replica to fail over to",
                    shard.primary.addr()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trigger_specs() {
        assert_eq!(TriggerSpec::parse("pause=1.5s").unwrap(), TriggerSpec::Pause(Duration::from_millis(1500)));
        assert_eq!(TriggerSpec::parse("command=echo a=b").unwrap(), TriggerSpec::Command("echo a=b".into()));
        assert_eq!(TriggerSpec::parse("sentinel").unwrap(), TriggerSpec::Sentinel);
        assert!(TriggerSpec::parse("pause").is_err());
        assert!(TriggerSpec::parse("explode").is_err());
    }
}
