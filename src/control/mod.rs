//! Controllers: ways to cause a failover. Each is a type implementing `Trigger` in its own file
//! (its parse, label, check and fire) with one row in `triggers!` (its name, usage, help and
//! what it needs); the run loop puts its start, finish and errors on the timeline.

// The files that hold triggers are declared by their rows in `triggers!` below.
pub(crate) mod backup;
pub(crate) mod runbook;
/// `(6, 2)` from `6.2.14`: what a server's version allows (`--write-ack waitaof`).
pub(crate) use failover::major_minor;

use crate::error::invalid;
use crate::lab::Lab;
use crate::target::Target;
use anyhow::Result;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;
pub(crate) type TriggerFuture<'a> = BoxFuture<'a, String>;

/// One command on a control connection, given four times the connect limit to answer.
pub(crate) async fn query<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    limit: Duration,
    c: &redis::Cmd,
) -> Result<T> {
    use anyhow::Context;
    tokio::time::timeout(limit * 4, c.query_async(conn)).await.context("timed out")?.map_err(Into::into)
}

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
    /// How many trials the run has (a quota-limited trigger counts them all before the first).
    pub trials: usize,
    /// `--replication-group` / `--cache-cluster`: the AWS side of the run.
    pub aws: Option<Arc<crate::aws::watch::AwsRun>>,
    /// The run's timeline, for what a trigger does on its own clock (a network fault healed);
    /// None while only checking.
    pub report: Option<crate::sink::Reporter>,
}

/// One way to cause a failover: a type in its own file (`src/control/<name>.rs`) that parses its
/// argument, writes itself back, checks what it needs of the deployment and acts. Its variant
/// and row are one line of `triggers!` below.
pub(crate) trait Trigger: Send + Sync {
    /// From its argument (after `=`, trimmed; None without `=`); None when it does not fit the
    /// row's usage.
    fn parse(arg: Option<&str>) -> Option<Self>
    where
        Self: Sized;
    /// How it is written (`pause=2s`, `sentinel=coordinated`): parses back to the same trigger.
    fn label(&self) -> String;
    /// The trigger-start event's `kind` (the summary's trigger): the label unless a trigger
    /// keeps its argument out of it.
    fn kind(&self) -> String {
        self.label()
    }
    /// What only the deployment can tell, checked before anything is written or fired (a
    /// replica exists, the server is recent enough, AWS allows it). Returns what the
    /// confirmation must name: the API calls it will make, or the process it will signal.
    fn check<'a>(&'a self, _ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(async { Ok(Checked::default()) })
    }
    /// Performs the action and waits until it has completed; returns what was done.
    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a>;
}

/// Which targets a trigger works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Any,
    Sentinel,
    Cluster,
}

/// One row per trigger: its name, how it is written, what it does, and what it needs. The
/// `--trigger` help, the "unknown trigger" error and every precondition the run checks before
/// it writes anything come from this table.
pub struct TriggerKind {
    pub name: &'static str,
    /// How it is written, e.g. `pause=<duration>`.
    pub usage: &'static str,
    pub help: &'static str,
    /// Acts on a server process (kill, pause, restart): needs `--lab` or `--pid`.
    pub needs_process: bool,
    /// Acts on the lab's network (blackhole, partition, netem): needs a lab.
    pub needs_lab: bool,
    /// Calls the AWS API: always confirmed, whatever the endpoint.
    pub calls_aws: bool,
    /// Can act on anything (a shell command): always confirmed.
    pub always_confirm: bool,
    pub needs: Needs,
    /// Its argument (after `=`, trimmed) into a spec: the trigger type's `Trigger::parse`.
    parse: fn(Option<&str>) -> Option<TriggerSpec>,
}

impl TriggerKind {
    /// Why this trigger cannot act on `target` (its kind) or without a process to signal; None
    /// when it can. `Plan::check` is the one caller: a plan is refused in one place.
    pub(crate) fn refuses(&self, target: &Target, has_lab: bool, has_pid: bool) -> Option<&'static str> {
        if self.needs_process && !has_lab && !has_pid {
            return Some("needs the primary's process: give --lab DIR or --pid PID");
        }
        if self.needs_lab && !has_lab {
            return Some("acts on a lab's network only: give --lab DIR or --lab-topology");
        }
        match self.needs {
            Needs::Sentinel if !target.is_sentinel() => Some("needs a redis+sentinel:// target"),
            Needs::Cluster if !target.is_cluster() => Some("needs a redis+cluster:// target"),
            _ => None,
        }
    }
}

const fn row(name: &'static str, usage: &'static str, help: &'static str) -> TriggerKind {
    TriggerKind {
        name,
        usage,
        help,
        needs_process: false,
        needs_lab: false,
        calls_aws: false,
        always_confirm: false,
        needs: Needs::Any,
        parse: |_| None,
    }
}

/// The rest of a row, after its name, usage and help.
impl TriggerKind {
    const fn process(self) -> Self {
        Self { needs_process: true, ..self }
    }
    const fn lab(self) -> Self {
        Self { needs_lab: true, ..self }
    }
    const fn aws(self) -> Self {
        Self { calls_aws: true, ..self }
    }
    const fn confirm(self) -> Self {
        Self { always_confirm: true, ..self }
    }
    const fn needs(self, needs: Needs) -> Self {
        Self { needs, ..self }
    }
}

/// The trigger table: per file of `src/control/`, its triggers, each `Variant(its type) => its
/// row`. From it come the files' `mod` declarations, the `TriggerSpec` enum, `TRIGGERS` (the
/// row's parse is the type's), and the dispatch to each trigger: a new trigger is its file and
/// one entry here, nothing else.
macro_rules! triggers {
    ($($file:ident { $($variant:ident($ty:ident) => $row:expr,)* })*) => {
        $(mod $file;)*

        /// A parsed `--trigger`: `none` (observe only), or one trigger's own value.
        #[derive(Clone, Debug, PartialEq)]
        pub enum TriggerSpec {
            None,
            $($($variant($file::$ty),)*)*
        }

        pub(crate) const TRIGGERS: &[TriggerKind] = &[
            TriggerKind {
                parse: |a| a.is_none().then_some(TriggerSpec::None),
                ..row("none", "none", "observe only, for --duration")
            },
            $($(TriggerKind { parse: |a| <$file::$ty as Trigger>::parse(a).map(TriggerSpec::$variant), ..$row },)*)*
        ];

        impl TriggerSpec {
            /// The trigger itself; None for `none`, which only observes.
            pub(crate) fn trigger(&self) -> Option<&dyn Trigger> {
                match self {
                    Self::None => None,
                    $($(Self::$variant(t) => Some(t),)*)*
                }
            }

            /// This trigger's row of the table (rows are in the enum's order, `none` first).
            pub fn kind(&self) -> &'static TriggerKind {
                let mut index = 0;
                $($(
                    index += 1;
                    if matches!(self, Self::$variant(_)) {
                        return &TRIGGERS[index];
                    }
                )*)*
                &TRIGGERS[0]
            }
        }
    };
}

triggers! {
    sentinel {
        Sentinel(SentinelFailover) => row(
            "sentinel",
            "sentinel[=coordinated]",
            "SENTINEL FAILOVER through the target's sentinels (coordinated: Valkey >= 9's COORDINATED, built on FAILOVER)",
        ).needs(Needs::Sentinel),
    }
    promote {
        Promote(Promote) => row("promote", "promote", "REPLICAOF NO ONE on the replica, then the old primary follows it"),
    }
    failover {
        Failover(Failover) => row(
            "failover",
            "failover[=force][,timeout=<duration>]",
            "FAILOVER on the primary (Redis >= 6.2, Valkey): writes paused until the replica caught up, then the roles swap",
        ),
    }
    process {
        Kill(Kill) => row("kill", "kill", "kill -9 of the primary's process (lab node or --pid)").process(),
        Restart(Restart) => row(
            "restart",
            "restart",
            "kill a lab node and start it again on the same port (a node replacement)",
        ).process(),
        Pause(Pause) => row("pause", "pause=<duration>", "SIGSTOP the primary for the duration, then SIGCONT").process(),
    }
    network {
        Blackhole(Blackhole) => row(
            "blackhole",
            "blackhole[=<duration>]",
            "the lab's primary loses its network silently, no RST or FIN (default: until the trial ends)",
        ).lab(),
        Partition(Partition) => row(
            "partition",
            "partition[=<duration>]",
            "the lab's primary cut off from its replicas and sentinels (or the other cluster nodes), still reachable to clients",
        ).lab(),
        Netem(NetemFault) => row(
            "netem",
            "netem=delay=<d>[,jitter=<d>][,loss=<p>%][,for=<duration>]",
            "the lab's primary's outgoing packets delayed and/or lost (tc netem), the gray failure",
        ).lab(),
    }
    command {
        Command(Command) => row(
            "command",
            "command=<shell command>",
            "run a shell command (own process group, killed on timeout)",
        ).confirm(),
    }
    cluster {
        ClusterFailover(ClusterFailover) => row(
            "cluster-failover",
            "cluster-failover[=force|takeover]",
            "CLUSTER FAILOVER on a replica of the chosen shard",
        ).needs(Needs::Cluster),
    }
    shutdown {
        ShutdownFailover(ShutdownFailover) => row(
            "shutdown-failover",
            "shutdown-failover",
            "SHUTDOWN FAILOVER on the chosen shard's primary (Valkey >= 9): it hands its slots to a replica, then exits",
        ).needs(Needs::Cluster).confirm(),
    }
    elasticache {
        ElasticacheTestFailover(TestFailover) => row(
            "elasticache-test-failover",
            "elasticache-test-failover[=<node-group-id>]",
            "ElastiCache TestFailover of a node group (default: the probed one)",
        ).aws(),
        ElasticachePromote(Promote) => row(
            "elasticache-promote",
            "elasticache-promote=<cache-cluster-id>",
            "ElastiCache ModifyReplicationGroup PrimaryClusterId",
        ).aws(),
        ElasticacheReboot(Reboot) => row(
            "elasticache-reboot",
            "elasticache-reboot=<cache-cluster-id>:<node-id>[,<node-id>...]",
            "ElastiCache RebootCacheCluster of the listed nodes",
        ).aws(),
    }
    fis {
        Fis(FisExperiment) => row(
            "fis",
            "fis=<experiment-template-id>",
            "an AWS FIS experiment from the template (e.g. aws:elasticache:replicationgroup-interrupt-az-power), waited for until it ends; stopped if the run stops first or at --max-trial",
        ).aws(),
    }
}

/// The `--trigger` help, from the table.
pub(crate) fn trigger_help() -> String {
    let usages: Vec<&str> = TRIGGERS.iter().map(|k| k.usage).collect();
    format!("What causes the failover: {}", usages.join(" | "))
}

impl TriggerSpec {
    pub fn parse(text: &str) -> Result<Self> {
        let (name, arg) = match text.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (text.trim(), None),
        };
        let parsed = TRIGGERS.iter().find(|k| k.name == name).and_then(|k| (k.parse)(arg));
        parsed.ok_or_else(|| {
            let usages: Vec<&str> = TRIGGERS.iter().map(|k| k.usage).collect();
            invalid(format!("unknown trigger `{text}`: use {}", usages.join(", ")))
        })
    }

    /// How it is written; parses back to the same spec.
    pub(crate) fn label(&self) -> String {
        self.trigger().map_or_else(|| "none".into(), |t| t.label())
    }

    /// Needs the primary's process: from `--lab` or `--pid`.
    pub(crate) fn needs_process(&self) -> bool {
        self.kind().needs_process
    }

    /// Calls the AWS API: always confirmed (`--yes` or typed), whatever the endpoint.
    pub(crate) fn is_aws(&self) -> bool {
        self.kind().calls_aws
    }

    /// The trigger's own check (see `Trigger::check`), before anything is written or fired.
    pub async fn check(&self, ctx: &TriggerContext) -> Result<Checked> {
        match self.trigger() {
            Some(t) => t.check(ctx).await,
            None => Ok(Checked::default()),
        }
    }
}

/// What a trigger's check found that the confirmation must name.
#[derive(Debug, Default)]
pub struct Checked {
    /// The AWS API calls each trial makes.
    pub api_call: Option<String>,
    /// The process a kill or pause signals: program, pid, address and port.
    pub process: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trigger_specs() {
        assert_eq!(
            TriggerSpec::parse("pause=1.5s").unwrap(),
            TriggerSpec::Pause(process::Pause(Duration::from_millis(1500)))
        );
        assert_eq!(
            TriggerSpec::parse("command=echo a=b").unwrap(),
            TriggerSpec::Command(command::Command("echo a=b".into()))
        );
        assert_eq!(
            TriggerSpec::parse("sentinel").unwrap(),
            TriggerSpec::Sentinel(sentinel::SentinelFailover { coordinated: false })
        );
        let coordinated = TriggerSpec::parse("sentinel=COORDINATED").unwrap();
        assert_eq!(coordinated, TriggerSpec::Sentinel(sentinel::SentinelFailover { coordinated: true }));
        assert_eq!(TriggerSpec::parse(&coordinated.label()).unwrap(), coordinated);
        assert!(TriggerSpec::parse("sentinel=now").is_err());
        assert!(TriggerSpec::parse("pause").is_err());
        assert!(TriggerSpec::parse("explode").is_err());
        assert_eq!(
            TriggerSpec::parse("elasticache-reboot=mc:0001,0002").unwrap(),
            TriggerSpec::ElasticacheReboot(elasticache::Reboot {
                cache_cluster: "mc".into(),
                nodes: vec!["0001".into(), "0002".into()]
            })
        );
        assert!(TriggerSpec::parse("elasticache-reboot=mc").is_err());
        assert!(TriggerSpec::parse("elasticache-promote").is_err());
        assert!(TriggerSpec::parse("fis").is_err() && TriggerSpec::parse("fis=").is_err(), "fis= needs a template");
        assert!(TriggerSpec::parse("fis=EXT1 EXT2").is_err(), "one template id");
        assert!(TriggerSpec::parse("kill=now").is_err(), "a trigger without an argument takes none");
        assert_eq!(
            TriggerSpec::parse("cluster-failover=FORCE").unwrap(),
            TriggerSpec::ClusterFailover(cluster::ClusterFailover(Some("force".into())))
        );
        let unknown = TriggerSpec::parse("explode").unwrap_err().to_string();
        for kind in TRIGGERS {
            assert!(unknown.contains(kind.usage), "the error lists {}: {unknown}", kind.name);
            assert!(trigger_help().contains(kind.usage));
        }
        let spec = TriggerSpec::parse("elasticache-test-failover=0002").unwrap();
        assert_eq!(spec, TriggerSpec::ElasticacheTestFailover(elasticache::TestFailover(Some("0002".into()))));
        assert_eq!(TriggerSpec::parse(&spec.label()).unwrap(), spec);
        let spec = TriggerSpec::parse("failover=force,timeout=3s").unwrap();
        assert_eq!(
            spec,
            TriggerSpec::Failover(failover::Failover { force: true, timeout: Some(Duration::from_secs(3)) })
        );
        assert_eq!(TriggerSpec::parse(&spec.label()).unwrap(), spec);
        assert!(TriggerSpec::parse("failover=force").is_err(), "FORCE needs a timeout");
    }

    #[test]
    fn each_trigger_is_its_own_row_and_writes_itself_back() {
        for text in [
            "none",
            "sentinel",
            "promote",
            "failover=timeout=2s",
            "kill",
            "restart",
            "pause=250ms",
            "command=true",
            "cluster-failover=takeover",
            "shutdown-failover",
            "elasticache-test-failover",
            "elasticache-promote=c1",
            "elasticache-reboot=mc:0001",
            "blackhole",
            "partition=5s",
            "netem=delay=200ms,loss=5%,for=10s",
            "fis=EXT1a2b3c4d5e6f7",
        ] {
            let spec = TriggerSpec::parse(text).unwrap();
            assert_eq!(spec.kind().name, text.split('=').next().unwrap(), "the row of {text}");
            assert_eq!(TriggerSpec::parse(&spec.label()).unwrap(), spec, "{text} written back");
            assert_eq!(spec.trigger().is_none(), text == "none");
        }
        // The summary names the API of an ElastiCache trigger, not its argument.
        let reboot = TriggerSpec::parse("elasticache-reboot=mc:0001").unwrap();
        assert_eq!(reboot.trigger().unwrap().kind(), "elasticache-reboot");
    }
}
