//! Scenario files (TOML) and CLI flags → one validated `Plan`. Flags override the file.

use crate::control::TriggerSpec;
use crate::duration;
use crate::error::{invalid, UsageError};
use crate::lab::{ServerChoice, Topology};
use crate::probe::client::Profile;
use crate::sample::Budget;
use crate::target::Target;
use anyhow::Result;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub target: TargetSection,
    pub lab: Option<LabSection>,
    #[serde(default)]
    pub probe: ProbeSection,
    #[serde(default)]
    pub trigger: TriggerSection,
    #[serde(default)]
    pub trials: TrialsSection,
    #[serde(default)]
    pub budget: BudgetSection,
    pub elasticache: Option<ElasticacheSection>,
    pub runbook: Option<RunbookSection>,
}

/// `[elasticache]`: discover the target from AWS, and where to reach the API.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ElasticacheSection {
    pub replication_group: Option<String>,
    pub cache_cluster: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub poll: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub wait: Option<Duration>,
    pub allow_multi_az_toggle: Option<bool>,
}

/// The AWS side of a plan.
#[derive(Clone, Debug, Default)]
pub struct AwsPlan {
    pub api: crate::aws::AwsArgs,
    pub replication_group: Option<String>,
    pub cache_cluster: Option<String>,
    /// Between DescribeEvents / Describe* polls during the run.
    pub poll: Duration,
    /// How long a trigger waits for AWS's completion events.
    pub wait: Duration,
    pub allow_multi_az_toggle: bool,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    pub url: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct LabSection {
    pub topology: Topology,
    /// `redis`, `valkey`, or one version (`redis@6.2`) [default: redis-server when installed,
    /// else valkey-server].
    pub server: Option<ServerChoice>,
    /// `topology = "endpoint"`: how long after a failover new connections reach the new primary.
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub endpoint_lag: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub down_after: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub failover_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub node_timeout: Option<Duration>,
    pub min_replicas_to_write: Option<u32>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub min_replicas_max_lag: Option<Duration>,
}

impl LabSection {
    /// The settings this section names, as the command line would give them.
    fn settings(&self) -> LabSettingsArgs {
        LabSettingsArgs {
            down_after: self.down_after,
            failover_timeout: self.failover_timeout,
            node_timeout: self.node_timeout,
            min_replicas_to_write: self.min_replicas_to_write,
            min_replicas_max_lag: self.min_replicas_max_lag,
        }
    }
}

/// How a lab's servers protect themselves (`lab up`, `run --lab-topology`; the same keys in a
/// scenario's `[lab]`). Unset: the lab's defaults (`lab::LabSettings`).
#[derive(clap::Args, Default, Clone, Debug)]
pub struct LabSettingsArgs {
    /// Sentinel down-after-milliseconds of a lab this command starts [default: 1s]
    #[arg(long, value_parser = duration::parse_duration)]
    pub down_after: Option<Duration>,
    /// Sentinel failover-timeout of a lab this command starts [default: 3s]
    #[arg(long, value_parser = duration::parse_duration)]
    pub failover_timeout: Option<Duration>,
    /// cluster-node-timeout of a cluster lab this command starts [default: 1s]
    #[arg(long, value_parser = duration::parse_duration)]
    pub node_timeout: Option<Duration>,
    /// min-replicas-to-write on the data nodes of a lab this command starts: a primary that
    /// hears from fewer replicas refuses writes [default: 0, off]
    #[arg(long)]
    pub min_replicas_to_write: Option<u32>,
    /// min-replicas-max-lag, whole seconds [default: 10s]
    #[arg(long, value_parser = duration::parse_duration)]
    pub min_replicas_max_lag: Option<Duration>,
}

impl LabSettingsArgs {
    /// No setting given.
    pub fn is_empty(&self) -> bool {
        self.down_after.is_none()
            && self.failover_timeout.is_none()
            && self.node_timeout.is_none()
            && self.min_replicas_to_write.is_none()
            && self.min_replicas_max_lag.is_none()
    }

    /// These settings over `base`; checked (`LabSettings::check`).
    pub fn over(&self, base: crate::lab::LabSettings) -> Result<crate::lab::LabSettings> {
        let ms = |d: Option<Duration>, was: u64| d.map_or(was, |d| d.as_millis() as u64);
        let settings = crate::lab::LabSettings {
            down_after_ms: ms(self.down_after, base.down_after_ms),
            failover_timeout_ms: ms(self.failover_timeout, base.failover_timeout_ms),
            node_timeout_ms: ms(self.node_timeout, base.node_timeout_ms),
            min_replicas_to_write: self.min_replicas_to_write.unwrap_or(base.min_replicas_to_write),
            min_replicas_max_lag_s: self.min_replicas_max_lag.map_or(base.min_replicas_max_lag_s, |d| d.as_secs()),
        };
        settings.check().map_err(|e| invalid(format!("{e:#}")))?;
        Ok(settings)
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub key_ttl: Option<Duration>,
    /// Client profiles measured side by side, e.g. `["failprobe", "pinned"]`.
    pub clients: Option<Vec<String>>,
    /// External client adapters (`[[probe.exec]]`), each measured beside the profiles.
    pub exec: Option<Vec<ExecSection>>,
    /// Look names up on this DNS server (`ip` or `ip:port`) instead of the system's resolver.
    pub dns_server: Option<String>,
    /// What a write waits for before it counts as acknowledged: `plain`, `wait=N[:T]`,
    /// `waitaof=L:N[:T]`.
    pub write_ack: Option<String>,
    /// `--pass-env`: variables of failprobe's environment that adapters, hooks and commands get.
    pub pass_env: Option<Vec<String>>,
    /// `--probe pubsub`: `pubsub = true`.
    pub pubsub: Option<bool>,
    /// `--probe stream`: `stream = true`.
    pub stream: Option<bool>,
}

/// `[runbook] before = "…"  after = "…"`: the runbook's own steps around each trial.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct RunbookSection {
    pub before: Option<String>,
    pub after: Option<String>,
    /// `backup = true`: `--backup`.
    #[serde(default)]
    pub backup: bool,
}

/// `[[probe.exec]] name = "redis-py"  command = "adapters/redis-py/run"`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ExecSection {
    pub name: String,
    pub command: String,
}

impl ExecSection {
    fn profile(self) -> Result<Profile> {
        let list = Profile::parse_list(&format!("exec:{}={}", self.name, self.command));
        Ok(list.map_err(|e| invalid(format!("[[probe.exec]]: {e}")))?.remove(0))
    }
}

/// The commands a run would start that its command line does not show, each with its origin.
fn commands_not_typed(o: &Overrides, f: &ScenarioFile) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let runbook = f.runbook.as_ref();
    for (step, typed, file) in [
        ("before", &o.before, runbook.and_then(|r| r.before.as_ref())),
        ("after", &o.after, runbook.and_then(|r| r.after.as_ref())),
    ] {
        if let (None, Some(command)) = (typed, file) {
            found.push(format!("--{step} `{command}` (from the scenario's [runbook])"));
        }
    }
    if let (None, Some(kind)) = (&o.trigger, f.trigger.kind.as_ref().filter(|k| k.trim_start().starts_with("command")))
    {
        found.push(format!("the trigger `{kind}` (from the scenario)"));
    }
    let adapters = |lists: &[String], origin: &str, found: &mut Vec<String>| -> Result<()> {
        for list in lists {
            for p in Profile::parse_list(list).map_err(invalid)? {
                if let Profile::Exec(spec) = p {
                    found.push(format!("the adapter `{}`: `{}` (from {origin})", spec.name, spec.command));
                }
            }
        }
        Ok(())
    };
    match (o.clients.is_empty(), o.clients_from_env) {
        (false, true) => adapters(&o.clients, "FAILPROBE_CLIENTS", &mut found)?,
        (true, _) => adapters(f.probe.clients.as_deref().unwrap_or_default(), "the scenario's clients", &mut found)?,
        (false, false) => {}
    }
    for e in f.probe.exec.iter().flatten() {
        found.push(format!("the adapter `{}`: `{}` (from the scenario's [[probe.exec]])", e.name, e.command));
    }
    Ok(found)
}

/// `--clients` (each argument a list) or the scenario's `clients`; None: the default profiles.
fn client_profiles(args: Vec<String>, scenario: Option<Vec<String>>) -> Result<Option<Vec<Profile>>> {
    let lists = if args.is_empty() { scenario.unwrap_or_default() } else { args };
    if lists.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for list in &lists {
        Profile::extend(&mut out, list).map_err(invalid)?;
    }
    if out.is_empty() {
        return Err(invalid("--clients needs at least one profile"));
    }
    Ok(Some(out))
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct TriggerSection {
    pub kind: Option<String>,
    pub pid: Option<u32>,
    /// Cluster: act on this shard (0, 1, ...) or on the shard owning `key`.
    pub shard: Option<usize>,
    pub key: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct TrialsSection {
    pub repeat: Option<u32>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub warmup: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub settle: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub duration: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub max_trial: Option<Duration>,
    /// Memcached: known keys seeded per node before each trigger.
    pub seed_keys: Option<u64>,
    /// `--keep-clients`.
    pub keep_clients: Option<bool>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub max_outage: Option<Duration>,
    pub max_lost_writes: Option<u64>,
    pub max_lost_messages: Option<u64>,
    /// Client profiles the verdict covers, e.g. `["all"]`.
    pub clients: Option<Vec<String>>,
}

/// `--budget-clients`: profile names or `all`; empty for failprobe's own alone.
fn budget_clients(list: Option<String>) -> Result<Vec<String>> {
    let Some(list) = list else { return Ok(Vec::new()) };
    let mut names = Vec::new();
    for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match n {
            "all" => names.push(n.to_string()),
            // The profile's own spelling, so `dns-cache=5000ms` names `dns-cache=5s`; an
            // adapter's NAME stands as it is (the run checks that it is measured).
            _ => match Profile::parse_list(n) {
                Ok(list) => names.extend(list.iter().map(|p| p.name())),
                Err(_) if n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) => {
                    names.push(n.to_string())
                }
                Err(e) => return Err(invalid(format!("--budget-clients: {e}"))),
            },
        }
    }
    if names.is_empty() {
        return Err(invalid("--budget-clients needs a profile name or `all`"));
    }
    Ok(names)
}

/// `--dns-server`: `ip` or `ip:port` (`[::1]:5353`), port 53 when none is given.
/// `NAME=URL` names a target (a fleet's row, the metrics' `target` label); a plain URL has no
/// name. Only a name of letters, digits, `-`, `_` and `.` before a URL's scheme counts, so a `=`
/// inside a URL is never taken for one.
pub fn split_named_target(text: &str) -> (Option<String>, Option<String>) {
    match text.split_once('=') {
        Some((name, url))
            if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && url.contains("://") =>
        {
            (Some(name.to_string()), Some(url.to_string()))
        }
        _ => (None, Some(text.to_string())),
    }
}

fn dns_server(text: Option<String>) -> Result<Option<std::net::SocketAddr>> {
    let Some(text) = text else { return Ok(None) };
    let parsed = text
        .parse::<std::net::SocketAddr>()
        .or_else(|_| crate::target::unbracketed(&text).parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()));
    parsed.map(Some).map_err(|_| invalid(format!("--dns-server `{text}` is not an IP address or IP:PORT")))
}

/// Reads a scenario; errors name the file, the line and the field.
pub fn load(path: &Path) -> Result<ScenarioFile> {
    load_toml(path, "scenario")
}

/// A TOML file (`what`: scenario, fleet) read into `T`, its errors naming file, line and field.
pub(crate) fn load_toml<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError::Invalid(format!("cannot read {what} {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1).unwrap_or(1);
        // file:line first, the form editors jump to; then toml's message and the offending line,
        // which names the field.
        // Both may hold a password (`ulr = "redis://:pw@…"`): redacted like any URL.
        let source = crate::secret::scrub(text.lines().nth(line - 1).unwrap_or("").trim());
        let message = crate::secret::scrub(e.message().trim());
        invalid(format!("{}:{line}: {message} (in `{source}`)", path.display()))
    })
}

/// Everything a run needs, validated.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub target: Option<String>,
    pub lab_topology: Option<Topology>,
    /// `--server`: the lab's server program (None: Redis when installed, else Valkey).
    pub lab_server: Option<ServerChoice>,
    /// The endpoint lab's lag (`--endpoint-lag`).
    pub endpoint_lag: Duration,
    /// A lab the run starts: its protective settings (`--min-replicas-to-write`, ...).
    pub lab_settings: crate::lab::LabSettings,
    /// `--dns-server`: where every name is looked up, by connections and by the DNS watch.
    pub dns_server: Option<std::net::SocketAddr>,
    /// `--write-ack`: what a write waits for before it counts as acknowledged.
    pub write_ack: crate::probe::ack::WriteAck,
    /// `--before` / `--after`: the runbook's own steps around each trial.
    pub before: Option<String>,
    pub after: Option<String>,
    /// `--backup`: BGSAVE / CreateSnapshot before the first trial's trigger.
    pub backup: bool,
    pub lab_dir: Option<PathBuf>,
    pub interval: Duration,
    pub timeout: Duration,
    pub key_ttl: Duration,
    pub triggers: Vec<TriggerSpec>,
    pub warmup: Duration,
    pub settle: Duration,
    /// Observe-only runs: how long each trial lasts.
    pub duration: Duration,
    /// Upper bound on a trial after its trigger.
    pub max_trial: Duration,
    pub budget: Budget,
    /// `--clients`; None: the default for the target's kind (`profiles_for`).
    pub clients: Option<Vec<Profile>>,
    /// `[[probe.exec]]` adapters, measured beside `clients` or the default profiles.
    pub adapters: Vec<Profile>,
    pub out: PathBuf,
    pub pid: Option<u32>,
    pub shard: Option<usize>,
    pub key: Option<String>,
    /// Memcached: known keys stored per node before each trigger (0: none).
    pub seed_keys: u64,
    /// `--keep-clients`: one client per profile for the whole run.
    pub keep_clients: bool,
    /// `--probe pubsub`: each client's subscriber measured on a channel failprobe publishes on.
    pub pubsub: bool,
    /// `--probe stream`: failprobe's own client appends to a stream its consumer group reads.
    pub stream: bool,
    pub yes: bool,
    /// Commands this run would start that were not typed on its command line (a scenario's
    /// `[runbook]`, `[[probe.exec]]`, trigger or clients; `FAILPROBE_CLIENTS`), each with its
    /// origin: shown and confirmed once unless `--yes`.
    pub commands_not_typed: Vec<String>,
    pub quiet: bool,
    /// `--pass-env`: what of failprobe's environment its children get beside their own.
    pub pass_env: Vec<String>,
    pub report: crate::report::ReportOptions,
    pub ci: crate::report::CiOutputs,
    pub aws: Option<AwsPlan>,
    /// `--metrics-listen`: where the live metrics are served while the run lasts.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Plan {
    /// The one place a plan is refused, once its target is known and before anything is
    /// connected: triggers that do not fit the target (`control`: where they act) or have no
    /// process to act on, client profiles and options that do not fit the target's kind, a
    /// budget naming a client not measured. (Values are checked as they are parsed, in `plan`;
    /// what only the live deployment can tell, by each trigger's `check`.)
    pub(crate) fn check(&self, target: &Target, control: &Target, has_lab: bool) -> Result<()> {
        let plan = self;
        for spec in &plan.triggers {
            if let Some(why) = spec.kind().refuses(control, has_lab, plan.pid.is_some()) {
                return Err(invalid(format!("trigger `{}` {why}", spec.label())));
            }
        }
        let measured = plan.profiles_for(target);
        if let (Some(_), Some(p)) = (target.memcache_nodes(), measured.iter().find(|p| **p != Profile::Failprobe)) {
            return Err(invalid(format!(
                "the `{}` client profile is for Redis targets; memcached is probed by failprobe's own client (--clients failprobe)",
                p.name()
            )));
        }
        if plan.write_ack != crate::probe::ack::WriteAck::Plain {
            if target.memcache_nodes().is_some() {
                return Err(invalid("--write-ack is for Redis targets: memcached has no replicas to wait for"));
            }
            if let Some(p) = measured.iter().find(|p| matches!(p, Profile::Exec(_))) {
                return Err(invalid(format!(
                    "--write-ack is sent by failprobe's built-in clients in the write's round trip; the adapter `{}` writes plainly: measure it in a run of its own",
                    p.name()
                )));
            }
        }
        if plan.pubsub {
            check_pubsub(target, &measured)?;
        }
        if plan.stream {
            check_stream(target, &measured)?;
        }
        if target.memcache_nodes().is_some() && plan.backup {
            return Err(invalid(
                "--backup is for Redis and Valkey targets: back memcached up with `failprobe memcached dump --target URL --file F` (and `failprobe memcached restore` brings it back)",
            ));
        }
        if target.memcache_nodes().is_some() && plan.dns_server.is_some() {
            return Err(invalid(
                "--dns-server is for Redis targets: memcached connections look names up through the system's resolver",
            ));
        }
        let resolves_itself = measured.iter().find(|p| matches!(p, Profile::RedisRs | Profile::Exec(_)));
        if let (Some(p), Some(_), false) = (resolves_itself, plan.dns_server, target.host_names().is_empty()) {
            return Err(invalid(format!(
                "--dns-server does not reach the `{}` client profile: its client library looks names up through the system; leave it out of --clients or give the target by address",
                p.name()
            )));
        }
        for name in plan.budget.clients.iter().filter(|n| *n != "all") {
            if !measured.iter().any(|p| p.name() == *name) {
                let list: Vec<String> = measured.iter().map(|p| p.name()).collect();
                return Err(invalid(format!(
                    "--budget-clients names `{name}`, which is not measured (--clients {})",
                    list.join(",")
                )));
            }
        }
        Ok(())
    }

    /// The client profiles to measure: `--clients`, or failprobe's own beside `pinned` (the
    /// common application) on Redis, failprobe's alone on memcached.
    pub(crate) fn profiles_for(&self, target: &crate::target::Target) -> Vec<Profile> {
        let mut profiles = match (&self.clients, target.memcache_nodes()) {
            (Some(list), _) => list.clone(),
            (None, Some(_)) => vec![Profile::Failprobe],
            (None, None) => vec![Profile::Failprobe, Profile::Pinned],
        };
        for adapter in &self.adapters {
            if !profiles.iter().any(|p| p.name() == adapter.name()) {
                profiles.push(adapter.clone());
            }
        }
        profiles
    }
}

/// Every default of a run, defined once: `plan` applies them, the `--help` texts name them
/// (a test holds the two together).
pub(crate) mod defaults {
    use std::time::Duration;

    pub(crate) const INTERVAL: Duration = Duration::from_millis(10);
    pub(crate) const TIMEOUT: Duration = Duration::from_millis(250);
    pub(crate) const WARMUP: Duration = Duration::from_secs(5);
    pub(crate) const SETTLE: Duration = Duration::from_secs(2);
    pub(crate) const DURATION: Duration = Duration::from_secs(10);
    pub(crate) const MAX_TRIAL: Duration = Duration::from_secs(60);
    pub(crate) const REPEAT: u32 = 1;
    pub(crate) const SEED_KEYS: u64 = 10_000;
    pub(crate) const AWS_POLL: Duration = Duration::from_secs(5);
    pub(crate) const AWS_WAIT: Duration = Duration::from_secs(20 * 60);
    /// The shortest key TTL; longer when a trial can last longer (see `key_ttl`).
    pub(crate) const KEY_TTL: Duration = Duration::from_secs(3600);
}

/// The command line's settings of a run, defined once: clap parses them (`failprobe run`
/// flattens this), `plan` lays them over the scenario file. `None` keeps the file's value or the
/// default.
#[derive(clap::Args, Default, Clone, Debug)]
pub struct Overrides {
    /// redis://, rediss://, redis+sentinel://host:port[,host:port]/<master>, redis+cluster://host:port[,...], memcache://host:port[,...]. Password may come from FAILPROBE_PASSWORD or REDISCLI_AUTH. Repeatable, as NAME=URL: a fleet, every target probed at once
    #[arg(long)]
    pub target: Vec<String>,
    #[arg(long, help = crate::control::trigger_help())]
    pub trigger: Option<String>,
    /// Time between probes of each stream [default: 10ms]
    #[arg(long, value_parser = duration::parse_duration)]
    pub interval: Option<Duration>,
    /// Deadline of each probe [default: 250ms]
    #[arg(long, value_parser = duration::parse_duration)]
    pub timeout: Option<Duration>,
    /// Probing before the trigger fires [default: 5s]
    #[arg(long, value_parser = duration::parse_duration)]
    pub warmup: Option<Duration>,
    /// How long both streams must be up before a trial ends [default: 2s]
    #[arg(long, value_parser = duration::parse_duration)]
    pub settle: Option<Duration>,
    /// Length of an observe-only trial (--trigger none) [default: 10s]
    #[arg(long, value_parser = duration::parse_duration)]
    pub duration: Option<Duration>,
    /// Longest a trial may wait for recovery after its trigger [default: 60s]
    #[arg(long, value_parser = duration::parse_duration)]
    pub max_trial: Option<Duration>,
    /// TTL of every key failprobe writes [default: 1h, or the longest trial plus a minute]
    #[arg(long, value_parser = duration::parse_duration)]
    pub key_ttl: Option<Duration>,
    /// Number of trials [default: 1]
    #[arg(long)]
    pub repeat: Option<u32>,
    /// Start the application-like clients and adapters once for the whole run, not afresh per
    /// trial: whether recovery degrades trial after trial, and the connections each holds
    #[arg(long)]
    pub keep_clients: bool,
    /// Also probe `pubsub`: a numbered message published on each client's own channel on the
    /// probe clock, each client's subscriber measured (messages missed, duplicated, out of
    /// order; time without its subscription; delivery latency). `stream`: failprobe's own
    /// client appends numbered entries to a stream (XADD, at --write-ack) that a consumer group
    /// reads: appends lost, entries never read, read twice, left pending. Sentinel, standalone
    /// and pair targets; repeatable
    #[arg(long = "probe", value_name = "KIND", value_parser = ["pubsub", "stream"])]
    pub probe: Vec<String>,
    /// Output directory [default: failprobe-<time>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Budget: exit 1 when any outage window is longer.
    #[arg(long, value_parser = duration::parse_duration)]
    pub max_outage: Option<Duration>,
    /// Budget: exit 1 when more acknowledged writes are lost in a trial.
    #[arg(long)]
    pub max_lost_writes: Option<u64>,
    /// Budget (--probe pubsub): exit 1 when a subscriber misses more acknowledged messages in a
    /// trial.
    #[arg(long)]
    pub max_lost_messages: Option<u64>,
    /// The client profiles the verdict and exit code cover: names from --clients, or `all`. For
    /// them budgets apply and a stream still down at the end fails the run [default: failprobe]
    #[arg(long)]
    pub budget_clients: Option<String>,
    /// Use the running lab in DIR (target and node processes from its lab.json).
    #[arg(long)]
    pub lab: Option<PathBuf>,
    /// Start a lab of this topology for this run, stop it afterwards.
    #[arg(long, value_enum)]
    pub lab_topology: Option<Topology>,
    /// The server the lab runs: redis (redis-server, redis-sentinel), valkey (valkey-server),
    /// or one version (redis@6.2, redis@5.0: from `scripts/install-servers.sh --redis VERSION`)
    /// [default: redis when redis-server is on PATH, else valkey]
    #[arg(long)]
    pub server: Option<ServerChoice>,
    /// `--lab-topology endpoint`: how long after a failover new connections through the
    /// endpoint reach the new primary (a real endpoint's DNS propagation and TTL) [default: 0s]
    #[arg(long, value_parser = duration::parse_duration)]
    pub endpoint_lag: Option<Duration>,
    #[command(flatten)]
    pub lab_settings: LabSettingsArgs,
    /// Look every name up on this DNS server (IP, or IP:PORT; port 53 by default) instead of
    /// the system's resolver: connections of every client profile and the DNS watch.
    #[arg(long)]
    pub dns_server: Option<String>,
    /// What a write waits for before it counts as acknowledged: plain (the primary answered),
    /// wait=N[:TIMEOUT] (WAIT: N replicas have it), waitaof=LOCAL:REPLICAS[:TIMEOUT] (WAITAOF).
    /// The wait is in the write's round trip and its latency; a level not reached is a failed
    /// write of class ack-timeout [default: plain; TIMEOUT 200ms]
    #[arg(long)]
    pub write_ack: Option<String>,
    /// A shell command run before each trial (e.g. stop the batch jobs); its exit status and
    /// output go on the timeline, and if it fails the run stops before that trial's trigger
    #[arg(long)]
    pub before: Option<String>,
    /// A shell command run after each trial that ran --before, interrupted or not (e.g. resume
    /// the batch jobs); its exit status and output go on the timeline
    #[arg(long)]
    pub after: Option<String>,
    /// Take a backup before the first trial's trigger and wait until it is complete: BGSAVE on
    /// each primary of a self-managed target (until LASTSAVE moves on), CreateSnapshot
    /// failprobe-<run-id> on ElastiCache (until available; confirmed like any AWS call, never
    /// deleted). A backup that fails stops the run before any failover
    #[arg(long)]
    pub backup: bool,
    /// The primary's process, for kill/pause outside a lab.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Cluster: the shard a trigger acts on (0 holds slot 0) [default: 0]
    #[arg(long)]
    pub shard: Option<usize>,
    /// Memcached: known keys stored per node before each trigger; their survival is reported [default: 10000]
    #[arg(long)]
    pub seed_keys: Option<u64>,
    /// Cluster: act on the shard that owns this key.
    #[arg(long, conflicts_with = "shard")]
    pub key: Option<String>,
    /// Do not ask before a trigger against a target that is not on loopback.
    #[arg(long)]
    pub yes: bool,
    /// No live status line.
    #[arg(long)]
    pub quiet: bool,
    /// Repeatable: each `--clients` is a list; an `exec:` entry takes the rest of its own.
    #[arg(long, env = "FAILPROBE_CLIENTS", help = crate::probe::client::profile_help())]
    pub clients: Vec<String>,
    /// `clients` came from FAILPROBE_CLIENTS, not from this command line (set by `main`): its
    /// adapters' commands are confirmed like a scenario's.
    #[arg(skip)]
    pub clients_from_env: bool,
    /// Repeatable: a variable of failprobe's environment that adapters, --before/--after and
    /// command= also get (e.g. AWS_PROFILE). They get nothing else of it but PATH, HOME, LANG,
    /// LC_ALL, TMPDIR and their own FAILPROBE_* variables
    #[arg(long, value_name = "NAME")]
    pub pass_env: Vec<String>,
    #[command(flatten)]
    pub outputs: crate::report::OutputArgs,
    #[command(flatten)]
    pub aws: AwsOverrides,
    /// Serve live metrics (OpenMetrics, GET /metrics) on this address while the run lasts, e.g.
    /// 127.0.0.1:9464; port 0 picks a free one (printed on stderr, recorded in run.json).
    /// Loopback only, unless --metrics-listen-any
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Allow --metrics-listen on an address other than loopback: the metrics name the targets
    /// and client profiles to whoever can reach it
    #[arg(long, requires = "metrics_listen")]
    pub metrics_listen_any: bool,
}

/// The ElastiCache side of `failprobe run`.
#[derive(clap::Args, Default, Clone, Debug)]
pub struct AwsOverrides {
    /// ElastiCache Redis/Valkey: probe this replication group (DescribeReplicationGroups) and put
    /// its events and member roles on the timeline; `a,b,c`: a fleet of them. AUTH still comes
    /// from FAILPROBE_PASSWORD.
    #[arg(long, conflicts_with = "cache_cluster")]
    pub replication_group: Option<String>,
    /// ElastiCache Memcached: probe this cache cluster's nodes (DescribeCacheClusters).
    #[arg(long)]
    pub cache_cluster: Option<String>,
    #[command(flatten)]
    pub api: crate::aws::AwsArgs,
    /// Between DescribeEvents polls during the run [default: 5s]
    #[arg(long = "aws-poll", value_parser = duration::parse_duration)]
    pub poll: Option<Duration>,
    /// How long an ElastiCache trigger waits for AWS's completion events [default: 20m]
    #[arg(long = "aws-wait", value_parser = duration::parse_duration)]
    pub wait: Option<Duration>,
    /// elasticache-promote on a group with automatic failover: disable it, promote, enable it
    /// again (restored even when the run is interrupted).
    #[arg(long)]
    pub allow_multi_az_toggle: bool,
}

fn aws_plan(f: Option<ElasticacheSection>, o: AwsOverrides) -> Result<Option<AwsPlan>> {
    let f = f.unwrap_or_default();
    let replication_group = o.replication_group.or(f.replication_group);
    let cache_cluster = o.cache_cluster.or(f.cache_cluster);
    if replication_group.is_none() && cache_cluster.is_none() {
        return Ok(None);
    }
    if replication_group.is_some() && cache_cluster.is_some() {
        return Err(invalid("give --replication-group (Redis/Valkey) or --cache-cluster (Memcached), not both"));
    }
    let poll = o.poll.or(f.poll).unwrap_or(defaults::AWS_POLL);
    if poll < Duration::from_millis(100) {
        return Err(invalid("--aws-poll must be at least 100ms (DescribeEvents is rate limited)"));
    }
    Ok(Some(AwsPlan {
        api: crate::aws::AwsArgs {
            region: o.api.region.or(f.region),
            profile: o.api.profile.or(f.profile),
            endpoint_url: o.api.endpoint_url.or(f.endpoint_url),
        },
        replication_group,
        cache_cluster,
        poll,
        wait: o.wait.or(f.wait).unwrap_or(defaults::AWS_WAIT),
        allow_multi_az_toggle: o.allow_multi_az_toggle || f.allow_multi_az_toggle.unwrap_or(false),
    }))
}

pub fn plan(file: Option<(&Path, ScenarioFile)>, o: Overrides) -> Result<Plan> {
    let (source, f) = match file {
        Some((p, f)) => (Some(p.to_path_buf()), f),
        None => (None, ScenarioFile::default()),
    };
    let commands_not_typed = commands_not_typed(&o, &f)?;
    let name = f
        .name
        .clone()
        .or_else(|| source.as_ref().and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "ad-hoc".to_string());
    let trigger_text = o.trigger.or(f.trigger.kind).unwrap_or_else(|| "none".to_string());
    let trigger = TriggerSpec::parse(&trigger_text)?;
    let repeat = o.repeat.or(f.trials.repeat).unwrap_or(defaults::REPEAT);
    if repeat == 0 || repeat > 1000 {
        return Err(invalid("--repeat must be between 1 and 1000"));
    }
    // A target or lab given on the command line replaces the scenario's own lab.
    let endpoint_lag = o.endpoint_lag.or(f.lab.as_ref().and_then(|l| l.endpoint_lag)).unwrap_or_default();
    let lab_server = o.server.clone().or_else(|| f.lab.as_ref().and_then(|l| l.server.clone()));
    let from_file = f.lab.as_ref().map(LabSection::settings).unwrap_or_default();
    if o.lab.is_some() && !o.lab_settings.is_empty() {
        // A running lab keeps the settings it was started with (its lab.json says which).
        return Err(invalid(
            "--down-after, --failover-timeout, --node-timeout and --min-replicas-* configure a lab this run starts; the lab given with --lab keeps its own (start it with them: failprobe lab up …)",
        ));
    }
    let lab_settings = o.lab_settings.over(from_file.over(Default::default())?)?;
    let (named, typed_target) = match o.target.as_slice() {
        [] => (None, None),
        [one] => split_named_target(one),
        _ => return Err(invalid("several --target make a fleet, not one plan")),
    };
    let name = named.unwrap_or(name);
    let scenario_lab = f.lab.map(|l| l.topology).filter(|_| typed_target.is_none());
    let lab_topology = o.lab_topology.or(scenario_lab).filter(|_| o.lab.is_none());
    let interval = o.interval.or(f.probe.interval).unwrap_or(defaults::INTERVAL);
    let timeout = o.timeout.or(f.probe.timeout).unwrap_or(defaults::TIMEOUT);
    if interval < Duration::from_micros(100) {
        return Err(invalid("--interval must be at least 100us"));
    }
    if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(60) {
        return Err(invalid("--timeout must be between 1ms and 60s"));
    }
    let target = typed_target.or(f.target.url);
    let aws = aws_plan(f.elasticache, o.aws)?;
    if target.is_none() && lab_topology.is_none() && o.lab.is_none() && aws.is_none() {
        return Err(invalid(
            "no target: give --target URL, --lab DIR, --replication-group ID, --cache-cluster ID, or a scenario with [target] url or [lab] topology",
        ));
    }
    if trigger.is_aws() && aws.is_none() {
        return Err(invalid(format!(
            "trigger `{}` calls the AWS API: give --replication-group ID (or --cache-cluster ID for a reboot)",
            trigger.label()
        )));
    }
    let pid = o.pid.or(f.trigger.pid);
    if let Some(pid) = pid {
        crate::os::checked_pid(pid as u64).map_err(invalid)?;
    }
    let out = o.out.unwrap_or_else(|| crate::record::store::default_out("failprobe"));
    let warmup = o.warmup.or(f.trials.warmup).unwrap_or(defaults::WARMUP);
    let settle = o.settle.or(f.trials.settle).unwrap_or(defaults::SETTLE);
    let duration = o.duration.or(f.trials.duration).unwrap_or(defaults::DURATION);
    let max_trial = o.max_trial.or(f.trials.max_trial).unwrap_or(defaults::MAX_TRIAL);
    let key_ttl = key_ttl(o.key_ttl.or(f.probe.key_ttl), warmup + max_trial.max(duration) + settle)?;
    let clients = client_profiles(o.clients, f.probe.clients)?;
    let adapters = f.probe.exec.unwrap_or_default().into_iter().map(|e| e.profile()).collect::<Result<_>>()?;
    let pass_env = if o.pass_env.is_empty() { f.probe.pass_env.unwrap_or_default() } else { o.pass_env };
    pass_env.iter().try_for_each(|n| crate::spawn::check_env_name(n)).map_err(invalid)?;
    if let Some(addr) = o.metrics_listen {
        crate::live::check_address(addr, o.metrics_listen_any).map_err(invalid)?;
    }
    Ok(Plan {
        name,
        target,
        lab_topology,
        lab_server,
        endpoint_lag,
        lab_settings,
        dns_server: dns_server(o.dns_server.or(f.probe.dns_server))?,
        before: o.before.or(f.runbook.as_ref().and_then(|r| r.before.clone())),
        after: o.after.or(f.runbook.as_ref().and_then(|r| r.after.clone())),
        backup: o.backup || f.runbook.as_ref().is_some_and(|r| r.backup),
        write_ack: match o.write_ack.or(f.probe.write_ack) {
            Some(text) => crate::probe::ack::WriteAck::parse(&text).map_err(invalid)?,
            None => crate::probe::ack::WriteAck::Plain,
        },
        lab_dir: o.lab,
        interval,
        timeout,
        key_ttl,
        triggers: vec![trigger; repeat as usize],
        warmup,
        settle,
        duration,
        max_trial,
        budget: Budget {
            max_outage_ms: o.max_outage.or(f.budget.max_outage).map(|d| d.as_secs_f64() * 1000.0),
            max_lost_writes: o.max_lost_writes.or(f.budget.max_lost_writes),
            max_lost_messages: o.max_lost_messages.or(f.budget.max_lost_messages),
            clients: budget_clients(o.budget_clients.or(f.budget.clients.map(|l| l.join(","))))?,
        },
        clients,
        adapters,
        out,
        pid,
        shard: o.shard.or(f.trigger.shard),
        key: o.key.or(f.trigger.key),
        seed_keys: o.seed_keys.or(f.trials.seed_keys).unwrap_or(defaults::SEED_KEYS),
        keep_clients: o.keep_clients || f.trials.keep_clients.unwrap_or(false),
        pubsub: o.probe.iter().any(|p| p == "pubsub") || f.probe.pubsub.unwrap_or(false),
        stream: o.probe.iter().any(|p| p == "stream") || f.probe.stream.unwrap_or(false),
        yes: o.yes,
        commands_not_typed,
        quiet: o.quiet,
        pass_env,
        report: o.outputs.report_options(Vec::new()),
        ci: o.outputs.ci(),
        aws,
        metrics_listen: o.metrics_listen,
    })
}

/// `--probe pubsub` measures what failprobe's own subscriber and the built-in Redis profiles
/// receive, on a Sentinel, standalone or pair target. Elsewhere nothing would be measured for a
/// client, and a reader could take its silence for no loss: refused before anything runs.
fn check_pubsub(target: &Target, measured: &[Profile]) -> Result<()> {
    if target.memcache_nodes().is_some() {
        return Err(invalid("--probe pubsub is for Redis and Valkey targets: memcached has no pub/sub"));
    }
    if target.is_cluster() {
        return Err(invalid(
            "--probe pubsub does not probe a cluster yet (sharded channels, SSUBSCRIBE): give a Sentinel, standalone or pair target",
        ));
    }
    // An adapter subscribes when it speaks protocol 2, known from its hello.
    match measured.iter().find(|p| matches!(p, Profile::RedisRs)) {
        Some(p) => Err(invalid(format!(
            "--probe pubsub: the `{}` client profile cannot subscribe yet (failprobe, pinned, dns-cache=D and protocol-2 adapters can); measure it in a run of its own",
            p.name()
        ))),
        None => Ok(()),
    }
}

/// `--probe stream` is failprobe's own client's, on a Sentinel, standalone or pair target.
fn check_stream(target: &Target, measured: &[Profile]) -> Result<()> {
    if target.memcache_nodes().is_some() {
        return Err(invalid("--probe stream is for Redis and Valkey targets: memcached has no streams"));
    }
    if target.is_cluster() {
        return Err(invalid("--probe stream does not probe a cluster yet: give a Sentinel, standalone or pair target"));
    }
    if !measured.contains(&Profile::Failprobe) {
        return Err(invalid("--probe stream is measured by failprobe's own client: include `failprobe` in --clients"));
    }
    Ok(())
}

/// The write log is read after the trial: keys that expire before that make every write look
/// lost (Redis), and memcached reads an exptime of 0 as "never" and one above 30 days as an
/// absolute date. So: at least the longest trial plus a minute for the integrity check, at
/// most 30 days; the default is an hour, or longer when a trial is.
const KEY_TTL_MARGIN: Duration = Duration::from_secs(60);
const KEY_TTL_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

fn key_ttl(given: Option<Duration>, longest_trial: Duration) -> Result<Duration> {
    let needed = longest_trial + KEY_TTL_MARGIN;
    match given {
        None => Ok(needed.max(defaults::KEY_TTL).min(KEY_TTL_MAX)),
        Some(ttl) if ttl < needed => Err(invalid(format!(
            "--key-ttl {} is shorter than a trial can last ({} of warmup, trial and settle) plus {}s for the integrity check: use at least {}",
            duration::format_ms(ttl.as_secs_f64() * 1000.0),
            duration::format_ms(longest_trial.as_secs_f64() * 1000.0),
            KEY_TTL_MARGIN.as_secs(),
            duration::format_ms(needed.as_secs_f64() * 1000.0)
        ))),
        Some(ttl) if ttl > KEY_TTL_MAX => Err(invalid("--key-ttl must be at most 30d (memcached reads longer expiries as dates)")),
        Some(ttl) => Ok(ttl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<ScenarioFile> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, text).unwrap();
        load(&p)
    }

    #[test]
    fn bad_field_names_file_line_and_field() {
        let err = load_str("name = \"x\"\n[probe]\ninterval = \"5xs\"\n").unwrap_err().to_string();
        assert!(err.contains("s.toml:3"), "{err}");
        assert!(err.contains("unknown unit") && err.contains("interval"), "{err}");
        let err = load_str("[probe]\nintervall = \"5ms\"\n").unwrap_err().to_string();
        assert!(err.contains(":2") && err.contains("intervall"), "{err}");
    }

    #[test]
    fn a_bad_line_holding_a_password_is_shown_redacted() {
        let err = load_str("[target]\nulr = \"redis://:pa/ss+wd@127.0.0.1:1\"\n").unwrap_err().to_string();
        assert!(err.contains(":2") && err.contains("ulr"), "{err}");
        assert!(!err.contains("pa/ss") && !err.contains("ss+wd"), "{err}");
        let err = load_str("[target]\nurl = 5\n# redis://:x@h\n").unwrap_err().to_string();
        assert!(err.contains(":2"), "{err}");
    }

    #[test]
    fn lab_settings_apply_to_a_lab_the_run_starts_and_are_checked() {
        let min_rep = LabSettingsArgs { min_replicas_to_write: Some(1), ..Default::default() };
        let with_lab = Overrides { lab: Some("lab1".into()), lab_settings: min_rep.clone(), ..Default::default() };
        let err = plan(None, with_lab).unwrap_err().to_string();
        assert!(err.contains("the lab given with --lab keeps its own"), "{err}");
        let own = Overrides { lab_topology: Some(Topology::Sentinel), lab_settings: min_rep, ..Default::default() };
        assert_eq!(plan(None, own).unwrap().lab_settings.min_replicas_to_write, 1);
        let lagless = LabSettingsArgs {
            min_replicas_to_write: Some(1),
            min_replicas_max_lag: Some(Duration::from_millis(500)),
            ..Default::default()
        };
        let own = Overrides { lab_topology: Some(Topology::Sentinel), lab_settings: lagless, ..Default::default() };
        assert!(plan(None, own).unwrap_err().to_string().contains("min-replicas-max-lag must be at least 1 s"));
    }

    #[test]
    fn key_ttl_covers_the_longest_trial() {
        let plan_with = |o: Overrides| plan(None, Overrides { target: vec!["redis://127.0.0.1:1".into()], ..o });
        let err = plan_with(Overrides { key_ttl: Some(Duration::from_millis(500)), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("--key-ttl") && err.to_string().contains("at least"), "{err}");
        let err = plan_with(Overrides { key_ttl: Some(Duration::from_secs(100)), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("shorter than a trial"), "{err}");
        let long = plan_with(Overrides { duration: Some(Duration::from_secs(7200)), ..Default::default() }).unwrap();
        assert!(long.key_ttl >= Duration::from_secs(7200 + 60), "default grows with the trial: {:?}", long.key_ttl);
        assert!(plan_with(Overrides { key_ttl: Some(Duration::from_secs(31 * 86400)), ..Default::default() }).is_err());
        let ok = plan_with(Overrides { key_ttl: Some(Duration::from_secs(600)), ..Default::default() }).unwrap();
        assert_eq!(ok.key_ttl, Duration::from_secs(600));
    }

    #[test]
    fn help_texts_name_the_defaults_plan_applies() {
        use clap::Args;
        let cmd = Overrides::augment_args(clap::Command::new("run"));
        let default_of = |id: &str| -> String {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap_or_else(|| panic!("no --{id}"));
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let at = help.find("[default: ").unwrap_or_else(|| panic!("--{id} names no default: {help}")) + 10;
            help[at..].split([']', ',']).next().unwrap().to_string()
        };
        let durations = [
            ("interval", defaults::INTERVAL),
            ("timeout", defaults::TIMEOUT),
            ("warmup", defaults::WARMUP),
            ("settle", defaults::SETTLE),
            ("duration", defaults::DURATION),
            ("max_trial", defaults::MAX_TRIAL),
            ("key_ttl", defaults::KEY_TTL),
            ("poll", defaults::AWS_POLL),
            ("wait", defaults::AWS_WAIT),
        ];
        for (id, d) in durations {
            assert_eq!(duration::parse_duration(&default_of(id)), Ok(d), "--{id}");
        }
        assert_eq!(default_of("repeat"), defaults::REPEAT.to_string());
        assert_eq!(default_of("seed_keys"), defaults::SEED_KEYS.to_string());
        let p = plan(None, Overrides { target: vec!["redis://127.0.0.1:1".into()], ..Default::default() }).unwrap();
        assert_eq!(
            (p.interval, p.timeout, p.warmup, p.max_trial),
            (defaults::INTERVAL, defaults::TIMEOUT, defaults::WARMUP, defaults::MAX_TRIAL)
        );
    }

    #[test]
    fn flags_override_the_file() {
        let f =
            load_str("[target]\nurl = \"redis://127.0.0.1:1\"\n[probe]\ninterval = \"5ms\"\n[trials]\nrepeat = 3\n")
                .unwrap();
        let o = Overrides { interval: Some(Duration::from_millis(2)), ..Default::default() };
        let p = plan(Some((Path::new("x.toml"), f)), o).unwrap();
        assert_eq!(p.interval, Duration::from_millis(2));
        assert_eq!(p.triggers.len(), 3);
        assert_eq!(p.name, "x");
    }

    #[test]
    fn adapters_come_from_exec_sections_and_from_repeated_clients_flags() {
        let text = "[target]\nurl = \"redis://127.0.0.1:1\"\n[[probe.exec]]\nname = \"py\"\ncommand = \"A=1,2 run\"\n";
        let file = || load_str(text).unwrap();
        // Beside the default profiles when --clients is not given.
        let p = plan(Some((Path::new("x.toml"), file())), Overrides::default()).unwrap();
        let target = crate::target::Target::parse("redis://127.0.0.1:1").unwrap();
        let names: Vec<String> = p.profiles_for(&target).iter().map(|p| p.name()).collect();
        assert_eq!(names, ["failprobe", "pinned", "py"]);
        // Each --clients a list of its own; an exec: entry keeps its commas.
        let clients = vec!["failprobe".to_string(), "exec:js=node a.js --x=1,2".to_string()];
        let p = plan(Some((Path::new("x.toml"), file())), Overrides { clients, ..Default::default() }).unwrap();
        let profiles = p.profiles_for(&target);
        let names: Vec<String> = profiles.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["failprobe", "js", "py"]);
        assert!(matches!(&profiles[1], Profile::Exec(spec) if spec.command == "node a.js --x=1,2"));
        let bad =
            load_str("[target]\nurl = \"redis://127.0.0.1:1\"\n[[probe.exec]]\nname = \"a b\"\ncommand = \"x\"\n");
        let err = plan(Some((Path::new("x.toml"), bad.unwrap())), Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("[[probe.exec]]") && err.contains("NAME"), "{err}");
    }

    #[test]
    fn pass_env_comes_from_the_probe_table_or_the_flags_and_takes_names_only() {
        let file =
            || load_str("[target]\nurl = \"redis://127.0.0.1:1\"\n[probe]\npass_env = [\"AWS_PROFILE\"]\n").unwrap();
        let p = plan(Some((Path::new("x.toml"), file())), Overrides::default()).unwrap();
        assert_eq!(p.pass_env, ["AWS_PROFILE"]);
        let o = Overrides { pass_env: vec!["A_1".into(), "B".into()], ..Default::default() };
        assert_eq!(plan(Some((Path::new("x.toml"), file())), o).unwrap().pass_env, ["A_1", "B"]);
        let o = Overrides { pass_env: vec!["A=B".into()], ..Default::default() };
        let err = plan(Some((Path::new("x.toml"), file())), o).unwrap_err().to_string();
        assert!(err.contains("--pass-env `A=B`"), "{err}");
    }

    #[test]
    fn every_shipped_scenario_loads_and_plans() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let file = load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                plan(Some((&path, file)), Overrides::default()).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 10, "{seen} scenarios");
        let wait = load(&dir.join("local-wait-ack.toml")).unwrap();
        let p = plan(Some((&dir.join("local-wait-ack.toml"), wait)), Overrides::default()).unwrap();
        assert_eq!(p.write_ack.label(), "wait=1:200ms");
    }
}
