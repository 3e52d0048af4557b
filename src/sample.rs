//! The persisted stream: one `Sample` per probe, `Event`s for everything else that happened.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Write,
    Read,
    /// `--probe pubsub`: failprobe publishing a numbered message on a client's channel; `value`
    /// is the number of subscribers the server delivered it to (PUBLISH's reply).
    Publish,
    /// `--probe pubsub`: a message the client's subscriber received; `seq` and `scheduled_us`
    /// are the publish's, `end_us` when it arrived.
    Deliver,
    /// `--probe stream`: failprobe appending a numbered entry to the trial's stream (XADD).
    Append,
    /// `--probe stream`: an entry the consumer group read (XREADGROUP); `seq` and
    /// `scheduled_us` are the append's, `end_us` when it was read.
    Consume,
}

impl Stream {
    /// The key-value streams every client runs (the pub/sub ones are not probes of the keys).
    pub(crate) const ALL: [Stream; 2] = [Stream::Write, Stream::Read];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::Write => "writes",
            Stream::Read => "reads",
            Stream::Publish => "publishes",
            Stream::Deliver => "deliveries",
            Stream::Append => "appends",
            Stream::Consume => "consumed entries",
        }
    }

    /// The key writes and reads; the others (`--probe pubsub`, `--probe stream`) are measured
    /// apart from the outage windows.
    pub(crate) fn is_key_value(self) -> bool {
        matches!(self, Stream::Write | Stream::Read)
    }
}

/// What a client would have seen when a probe failed.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    Refused,
    Reset,
    Timeout,
    Dns,
    Tls,
    Auth,
    Readonly,
    Loading,
    Masterdown,
    /// NOREPLICAS: a primary with `min-replicas-to-write` refusing writes, as too few
    /// replicas acknowledged lately (an isolated primary protecting itself).
    Noreplicas,
    Clusterdown,
    Tryagain,
    Moved,
    /// A write the primary applied but whose `--write-ack` level (WAIT/WAITAOF) was not
    /// reached in time: not acknowledged.
    #[serde(rename = "ack-timeout")]
    AckTimeout,
    /// An external client adapter broke the protocol (crashed, printed garbage, answered an id
    /// never sent, fell too far behind): its answer is unknown, not the deployment's.
    Adapter,
    Other,
    /// Never sent by a probe: the analysis's class for a write acknowledged (or a read
    /// answered) by the deposed old primary after the new primary was announced and before it
    /// was seen stepping down. The client was not served by the deployment, so its outage goes
    /// on; the write still counts as acknowledged (lost, it is a split-brain write).
    #[serde(rename = "split-brain")]
    SplitBrain,
}

impl ErrorClass {
    pub(crate) const ALL: [ErrorClass; 17] = [
        ErrorClass::Refused,
        ErrorClass::Reset,
        ErrorClass::Timeout,
        ErrorClass::Dns,
        ErrorClass::Tls,
        ErrorClass::Auth,
        ErrorClass::Readonly,
        ErrorClass::Loading,
        ErrorClass::Masterdown,
        ErrorClass::Noreplicas,
        ErrorClass::Clusterdown,
        ErrorClass::Tryagain,
        ErrorClass::Moved,
        ErrorClass::AckTimeout,
        ErrorClass::Adapter,
        ErrorClass::Other,
        ErrorClass::SplitBrain,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Refused => "refused",
            ErrorClass::Reset => "reset",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Dns => "dns",
            ErrorClass::Tls => "tls",
            ErrorClass::Auth => "auth",
            ErrorClass::Readonly => "readonly",
            ErrorClass::Loading => "loading",
            ErrorClass::Masterdown => "masterdown",
            ErrorClass::Noreplicas => "noreplicas",
            ErrorClass::Clusterdown => "clusterdown",
            ErrorClass::Tryagain => "tryagain",
            ErrorClass::Moved => "moved",
            ErrorClass::AckTimeout => "ack-timeout",
            ErrorClass::Adapter => "adapter",
            ErrorClass::Other => "other",
            ErrorClass::SplitBrain => "split-brain",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
}

/// One probe. Times are microseconds since the run start on the run's monotonic clock; latency is
/// measured from `scheduled_us`, never from when the probe happened to be sent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Sample {
    pub trial: u32,
    pub stream: Stream,
    pub seq: u64,
    pub scheduled_us: u64,
    pub start_us: u64,
    pub end_us: u64,
    pub latency_us: u64,
    pub outcome: Outcome,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    pub server: Option<String>,
    /// For reads: the sequence number found in the sentinel key (0 when the key was absent).
    pub value: Option<u64>,
    /// The shard (Redis Cluster) or node (Memcached) probed; empty for a single primary.
    #[serde(default)]
    pub shard: Option<String>,
    /// The client profile that sent it; empty for failprobe's own client.
    #[serde(default)]
    pub client: Option<String>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Ok
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum KeyspacePhase {
    Before,
    After,
}

/// A lab network fault's two moments.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum FaultState {
    /// The rule (or qdisc) is in place: from now on the node's packets vanish (or are delayed).
    Injected,
    /// The rule is gone: the node's network is back.
    Healed,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Event {
    pub at_us: u64,
    pub trial: u32,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    TrialStart,
    TriggerStart {
        kind: String,
        detail: String,
    },
    TriggerFinish {
        detail: String,
    },
    TriggerError {
        message: String,
    },
    /// Which server answered and what it said it is. `primary` is the primary as announced by
    /// `source` (Sentinel, or the answering server itself when it is a primary).
    Topology {
        source: String,
        server: Option<String>,
        role: Option<String>,
        run_id: Option<String>,
        primary: Option<String>,
    },
    Reconnect {
        stream: Stream,
        server: Option<String>,
        error: Option<String>,
        /// The client profile whose connection it was; absent for failprobe's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    Keyspace {
        phase: KeyspacePhase,
        keys: u64,
        /// Every database's key count from INFO keyspace (failprobe's own keys taken out of the
        /// one it writes), summed over the shards; empty in runs made before it was recorded.
        /// `[[db, keys], …]`: a list, as the tagged event form cannot read numbers as map keys.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dbs: Vec<(u32, u64)>,
    },
    /// Sequence numbers of the write log found on the primary after recovery, as inclusive ranges.
    WriteLog {
        server: String,
        present: Vec<(u64, u64)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        /// The client profile whose writes these are; absent for failprobe's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    IntegrityError {
        message: String,
    },
    /// A cluster MOVED reply, followed to the slot's new owner.
    Redirect {
        shard: Option<String>,
        from: String,
        to: String,
        slot: u16,
    },
    /// The scheduler could not keep up; probes were sent late (never skipped).
    Lateness {
        stream: Stream,
        late: u64,
    },
    /// Memcached: known keys stored on a node before the trigger ...
    Seeded {
        shard: Option<String>,
        keys: u64,
    },
    /// ... and how many of them were still there, byte-identical, after recovery.
    SeedsSurviving {
        shard: Option<String>,
        keys: u64,
    },
    /// The run (vantage point) this trial was measured from, set by `failprobe merge`.
    Source {
        name: String,
    },
    /// An ElastiCache event. `at_us` is AWS's own timestamp on the run clock; `seen_us` is when
    /// failprobe fetched it.
    Aws {
        source: String,
        source_type: String,
        class: AwsClass,
        message: String,
        aws_time: String,
        seen_us: u64,
    },
    /// DescribeReplicationGroups / DescribeCacheClusters: status and every member's role, when
    /// they change.
    AwsTopology {
        resource: String,
        status: String,
        members: String,
    },
    /// The deployment found the primary failed: a sentinel's own `+sdown` or the sentinels'
    /// agreed `+odown`, a cluster node's `fail?` (PFAIL) or the cluster's agreed `fail` flag;
    /// `detail` is what it said, `source` who (and which of them).
    FailureDetected {
        source: String,
        detail: String,
    },
    /// The lab's primary endpoint now sends new connections to `to` (`from`: where they went
    /// before; None when the endpoint started). Open connections stay where they are.
    EndpointFlip {
        endpoint: String,
        from: Option<String>,
        to: String,
    },
    /// A host name the target gives resolves to other addresses than at the last look (the DNS
    /// watch asks every second, so the change happened within the second before). `from`: the
    /// addresses before, None for the first answer; `to`: now, or `no answer: <why>`.
    DnsAnswer {
        name: String,
        from: Option<String>,
        to: String,
        /// The lowest TTL of the answer, in seconds, as the server gave it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_s: Option<u32>,
    },
    /// An external adapter introduced itself: its library, version and settings, as it said.
    ClientHello {
        client: String,
        library: String,
        version: String,
        #[serde(default)]
        settings: serde_json::Value,
    },
    /// An external adapter broke the protocol or stopped answering: what happened, its exit
    /// status when it exited, its last stderr lines. Its streams fail with class `adapter`.
    AdapterFault {
        client: String,
        message: String,
    },
    /// At a trial's end: the connections a client profile held on a data node, counted by the
    /// name they carry (`CLIENT LIST`).
    Connections {
        client: String,
        node: String,
        count: u64,
    },
    /// `--probe stream`: the trial's stream as the primary had it after recovery: the appends'
    /// sequence numbers present, and the entries the consumer group was given and never
    /// acknowledged.
    StreamLog {
        server: String,
        present: Vec<(u64, u64)>,
        pending: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// `--probe pubsub`: a client's subscriber subscribed to its channel (`server`), or lost
    /// its subscription (`error`: why).
    Subscription {
        client: Option<String>,
        subscribed: bool,
        server: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A runbook step around the trial (`--before`, `--after`): the command, its exit status and
    /// the last line it printed.
    RunbookStep {
        step: String,
        command: String,
        status: String,
        output: String,
    },
    /// `--backup`, before the first trigger: `how` is `BGSAVE` (a self-managed primary, `node`;
    /// `name` its RDB file when CONFIG tells it) or `CreateSnapshot` (ElastiCache, `node` the
    /// group or cluster; `name` the snapshot's); `status` is `saved` / `available` or
    /// `failed: …`.
    Backup {
        how: String,
        name: String,
        node: String,
        status: String,
        took_ms: u64,
    },
    /// The primary before the trigger, replaced, no longer acts as one: it answers ROLE as
    /// `role` (`slave`), or its process is verified gone (`role`: `gone`, a lab node). Until
    /// then clients still connected to it may write into it. (Older runs also logged
    /// `unreachable` here: read back, that is an `Unreachable`, not a step-down.)
    StepDown {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        server: String,
        role: String,
    },
    /// The primary before the trigger, replaced, did not answer ROLE (nor is its process known
    /// gone): from now on it is unreachable, not stepped down. Once per trial and shard.
    Unreachable {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        server: String,
    },
    /// The unreachable old primary answers again, still as primary (`role` `master`): cut off
    /// until now, it acknowledges writes that are lost when it steps down.
    Reachable {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
        server: String,
        role: String,
    },
    /// A lab network fault (`blackhole`, `partition`, `netem`) on `node` (address:port) was put
    /// in place or removed; `detail` says exactly what (the peers cut off, the netem spec).
    NetworkFault {
        state: FaultState,
        fault: String,
        node: String,
        detail: String,
    },
    TrialEnd {
        reason: String,
    },
    Interrupted,
}

impl EventKind {
    /// Applies `scrub` to every free text (messages, details, reasons): what a server, a command
    /// or AWS said, which may echo anything. Structured fields stay as they are.
    pub(crate) fn scrub_texts(&mut self, scrub: impl Fn(&str) -> String, scrub_command: impl Fn(&str) -> String) {
        if let EventKind::ClientHello { settings, .. } = self {
            // An adapter's settings are its own JSON: scrubbed as text, kept as JSON when they
            // still parse.
            let text = settings.to_string();
            let clean = scrub(&text);
            if clean != text {
                *settings = serde_json::from_str(&clean).unwrap_or(serde_json::Value::String(clean));
            }
        }
        let texts: Vec<&mut String> = match self {
            // Labels that may hold a command line as typed.
            EventKind::TriggerStart { kind, detail } => {
                for text in [kind, detail] {
                    *text = scrub_command(text);
                }
                Vec::new()
            }
            EventKind::TriggerFinish { detail } => vec![detail],
            // A trigger's error may quote its command line as typed.
            EventKind::TriggerError { message } => {
                *message = scrub_command(message);
                Vec::new()
            }
            EventKind::IntegrityError { message } => vec![message],
            EventKind::Reconnect { error: Some(error), .. } => vec![error],
            EventKind::Subscription { error: Some(error), .. } => vec![error],
            EventKind::Aws { message, .. } => vec![message],
            EventKind::TrialEnd { reason } => vec![reason],
            // A resolver's error text may quote its configuration.
            EventKind::DnsAnswer { to, .. } => vec![to],
            // What an adapter printed is the application's library talking: anything.
            EventKind::AdapterFault { message, .. } => vec![message],
            EventKind::RunbookStep { command, output, .. } => {
                *command = scrub_command(command);
                vec![output]
            }
            EventKind::Backup { status, .. } => vec![status],
            EventKind::ClientHello { library, version, .. } => vec![library, version],
            _ => Vec::new(),
        };
        for text in texts {
            let clean = scrub(text);
            if clean != *text {
                *text = clean;
            }
        }
    }
}

/// The limits a run is judged against (`--max-outage`, `--max-lost-writes`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Budget {
    pub max_outage_ms: Option<f64>,
    pub max_lost_writes: Option<u64>,
    /// `--max-lost-messages`: acknowledged pub/sub messages a subscriber may miss in a trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lost_messages: Option<u64>,
    /// The client profiles the verdict covers (`--budget-clients`): empty for failprobe's own
    /// alone, `all` for every profile measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<String>,
}

impl Budget {
    /// Whether the verdict covers client profile `name`.
    pub(crate) fn covers(&self, name: &str) -> bool {
        match self.clients.as_slice() {
            [] => name == OWN_CLIENT,
            list => list.iter().any(|c| c == "all" || c == name),
        }
    }
}

/// What an ElastiCache event says, classified from its text (see `aws::events::classify`), or
/// which state a FIS experiment reached (`aws::fis`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AwsClass {
    ReplacementScheduled,
    ReplacementRescheduled,
    ReplacementCanceled,
    FailoverStarted,
    FailoverCompleted,
    NodeRecovering,
    NodeRecovered,
    NodeShutdown,
    NodeRebooted,
    ServiceUpdateAvailable,
    /// A FIS experiment's fault is acting (its state `running`).
    ExperimentRunning,
    /// A FIS experiment ended: completed, stopped, failed or cancelled.
    ExperimentEnded,
    /// Anything else (and any class a newer failprobe wrote).
    #[serde(other)]
    Other,
}

impl AwsClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AwsClass::ReplacementScheduled => "replacement-scheduled",
            AwsClass::ReplacementRescheduled => "replacement-rescheduled",
            AwsClass::ReplacementCanceled => "replacement-canceled",
            AwsClass::FailoverStarted => "failover-started",
            AwsClass::FailoverCompleted => "failover-completed",
            AwsClass::NodeRecovering => "node-recovering",
            AwsClass::NodeRecovered => "node-recovered",
            AwsClass::NodeShutdown => "node-shutdown",
            AwsClass::NodeRebooted => "node-rebooted",
            AwsClass::ServiceUpdateAvailable => "service-update-available",
            AwsClass::ExperimentRunning => "experiment-running",
            AwsClass::ExperimentEnded => "experiment-ended",
            AwsClass::Other => "other",
        }
    }

    pub(crate) fn is_replacement(self) -> bool {
        matches!(
            self,
            AwsClass::ReplacementScheduled | AwsClass::ReplacementRescheduled | AwsClass::ReplacementCanceled
        )
    }
}

/// Everything about the run that the report needs and the samples do not carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunMeta {
    pub version: String,
    pub scenario: String,
    /// Every key of this run is under `failprobe:{<run_id>}:`.
    pub run_id: String,
    pub target: String,
    pub started_at: String,
    pub interval_us: u64,
    pub timeout_us: u64,
    pub triggers: Vec<String>,
    pub budget: Budget,
    pub lab: Option<String>,
    /// The client profiles measured side by side (`--clients`); empty in runs made before
    /// profiles existed, which measured `failprobe` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<String>,
    /// `--write-ack` (`wait=1:200ms`…); empty for plain writes (and runs made before it existed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub write_ack: String,
    /// Every server behind the target, as read before the first trial; empty in runs made
    /// before failprobe read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerMeta>,
    /// `--metrics-listen`: where the live metrics were served (`127.0.0.1:PORT`, the port the
    /// OS picked for `:0`); absent when they were not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
}

/// One server of the deployment as it described itself at the start of the run: what a
/// comparison of two runs needs to say which engine and which settings were measured.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ServerMeta {
    /// `host:port` as the deployment names it.
    pub address: String,
    /// `primary`, `replica` or `sentinel` (as the server answered ROLE), `node` (memcached),
    /// or `unknown` when it did not answer.
    pub role: String,
    /// `redis`, `valkey`, `memcached`, or `unknown`.
    pub server: String,
    /// As the server reports it (`valkey_version` on Valkey, not its `redis_version`);
    /// `unknown` when it did not answer.
    pub version: String,
    /// The settings that shape a failover (`appendonly`, `min-replicas-to-write`,
    /// `cluster-node-timeout`; a sentinel's `down-after-milliseconds`, `failover-timeout`),
    /// `unknown` where the server refused to tell (CONFIG is disabled on managed services).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub settings: std::collections::BTreeMap<String, String>,
    /// Why the server could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The name of failprobe's own client profile (samples and events without a client).
pub const OWN_CLIENT: &str = "failprobe";

impl RunMeta {
    /// The profiles measured, failprobe's own first when it was measured.
    pub(crate) fn client_names(&self) -> Vec<String> {
        if self.clients.is_empty() {
            vec![OWN_CLIENT.to_string()]
        } else {
            self.clients.clone()
        }
    }
}

/// A record's client as a name: `failprobe` when it carries none.
pub(crate) fn client_name(client: &Option<String>) -> &str {
    client.as_deref().unwrap_or(OWN_CLIENT)
}

/// What travels from probes and controllers to the recorder.
#[derive(Debug, Clone)]
pub enum Record {
    Sample(Sample),
    Event(Event),
}

/// Sequence numbers as sorted, disjoint inclusive ranges: a stream of a million writes with a few
/// failures is a handful of ranges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqSet {
    ranges: Vec<(u64, u64)>,
}

impl SeqSet {
    pub fn insert(&mut self, n: u64) {
        match self.ranges.last_mut() {
            None => self.ranges.push((n, n)),
            Some((_, hi)) if *hi + 1 == n => *hi = n,
            Some((_, hi)) if *hi + 1 < n => self.ranges.push((n, n)),
            // Out of order (probes complete out of order): rare, so a plain insert and merge.
            _ => {
                let at = self.ranges.partition_point(|(lo, _)| *lo <= n);
                if at > 0 && self.ranges[at - 1].1 >= n {
                    return;
                }
                self.ranges.insert(at, (n, n));
                let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len());
                for &(lo, hi) in &self.ranges {
                    match merged.last_mut() {
                        Some((_, h)) if *h + 1 >= lo => *h = (*h).max(hi),
                        _ => merged.push((lo, hi)),
                    }
                }
                self.ranges = merged;
            }
        }
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(lo, hi)| hi - lo + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The set of inclusive ranges given in any order, overlapping or not (a `WriteLog` or
    /// `StreamLog` read back from a file): sorted and merged, never expanded number by number.
    pub(crate) fn from_ranges(mut ranges: Vec<(u64, u64)>) -> Self {
        ranges.retain(|(lo, hi)| lo <= hi);
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some((_, h)) if h.saturating_add(1) >= lo => *h = (*h).max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Self { ranges: merged }
    }

    /// How many of this set's numbers `other` lacks, by range arithmetic.
    pub(crate) fn count_not_in(&self, other: &SeqSet) -> u64 {
        let covered: u64 = self
            .ranges
            .iter()
            .flat_map(|&(lo, hi)| {
                let from = other.ranges.partition_point(|&(_, h)| h < lo);
                other.ranges[from..]
                    .iter()
                    .take_while(move |&&(l, _)| l <= hi)
                    .map(move |&(l, h)| h.min(hi) - l.max(lo) + 1)
            })
            .sum();
        self.len() - covered
    }

    pub fn contains(&self, n: u64) -> bool {
        let at = self.ranges.partition_point(|(lo, _)| *lo <= n);
        at > 0 && self.ranges[at - 1].1 >= n
    }

    pub(crate) fn into_ranges(self) -> Vec<(u64, u64)> {
        self.ranges
    }
}

/// Sorted sequence numbers as inclusive ranges (tests build write logs with it).
#[cfg(test)]
pub(crate) fn to_ranges(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut set = SeqSet::default();
    for &n in sorted {
        set.insert(n);
    }
    set.into_ranges()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_free_texts_are_scrubbed() {
        let scrub = |t: &str| t.replace("master", "***");
        let mut topology = EventKind::Topology {
            source: "sentinel".into(),
            server: Some("h:1".into()),
            role: Some("master".into()),
            run_id: None,
            primary: Some("h:1".into()),
        };
        let before = topology.clone();
        topology.scrub_texts(scrub, scrub);
        assert_eq!(topology, before, "roles are data, not text");
        let mut error = EventKind::TriggerError { message: "AUTH master failed".into() };
        error.scrub_texts(scrub, scrub);
        assert_eq!(error, EventKind::TriggerError { message: "AUTH *** failed".into() });
    }

    use super::*;

    #[test]
    fn ranges_from_a_file_are_merged_and_counted_without_expanding_them() {
        let set = SeqSet::from_ranges(vec![(10, 20), (1, 3), (4, 5), (15, 30), (9, 2), (u64::MAX - 1, u64::MAX)]);
        assert_eq!(set.ranges(), &[(1, 5), (10, 30), (u64::MAX - 1, u64::MAX)]);
        let other = SeqSet::from_ranges(vec![(2, 12), (25, u64::MAX)]);
        // 1, and 13..=24 are missing from `other`.
        assert_eq!(set.count_not_in(&other), 13);
        assert_eq!(other.count_not_in(&SeqSet::default()), other.len());
    }

    #[test]
    fn ranges_round_trip() {
        assert_eq!(to_ranges(&[1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
        assert_eq!(to_ranges(&[4, 4, 5]), vec![(4, 5)]);
    }
}
