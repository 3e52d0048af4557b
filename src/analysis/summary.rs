//! summary.json: the contract CI users read. Extend freely; never rename a field.

pub(crate) use super::histogram::Percentiles;
pub(crate) use super::integrity::Integrity;
pub use crate::sample::ServerMeta;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Summary {
    pub version: String,
    pub scenario: String,
    pub run_id: String,
    pub target: String,
    pub started_at: String,
    /// Every server behind the target as read at the start of the run: engine, version, role
    /// and the settings that shape a failover. Empty for runs made before failprobe read them.
    #[serde(default)]
    pub servers: Vec<ServerMeta>,
    pub probe: ProbeInfo,
    pub resolution: Resolution,
    pub interrupted: bool,
    pub trials: Vec<TrialSummary>,
    pub outage_histogram_ms: OutageHistogram,
    pub budget: BudgetResult,
    /// The one verdict every output shows and the exit code comes from.
    #[serde(default)]
    pub verdict: Verdict,
    /// Clients whose connections only grew, trial after trial (`--keep-clients`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connection_leaks: Vec<ConnectionLeak>,
}

/// A client whose connections, counted at each trial's end, only grew.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConnectionLeak {
    pub client: String,
    /// Its connections at each trial's end, summed over the nodes.
    pub per_trial: Vec<u64>,
}

/// Decided once (`analysis::verdict`); the terminal, summary.json, report.md/html, JUnit, the step
/// summary and the exit code all read it, so they cannot disagree.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Verdict {
    /// `pass` (within the budget), `recovered` (no budget set, every stream recovered), `fail`,
    /// or `incomplete` (no verdict: interrupted, fewer trials than asked, a trigger that failed).
    pub kind: String,
    /// The report's first line, e.g. "RECOVERED — 189 acknowledged writes lost — no budget set".
    pub headline: String,
    /// 0 pass/recovered, 1 fail, 2 incomplete.
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_reason: Option<String>,
}

impl Verdict {
    /// The badge word: PASS, RECOVERED, FAIL or INCOMPLETE.
    pub fn word(&self) -> &'static str {
        match self.kind.as_str() {
            "pass" => "PASS",
            "recovered" => "RECOVERED",
            "fail" => "FAIL",
            _ => "INCOMPLETE",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProbeInfo {
    pub interval_ms: f64,
    pub timeout_ms: f64,
    /// What a write waited for before it counted as acknowledged (`--write-ack`): `plain`, or
    /// `wait=1:200ms`…; the run's integrity figures are at this level.
    #[serde(default = "plain")]
    pub write_ack: String,
}

fn plain() -> String {
    "plain".to_string()
}

/// How precise each figure is, so nobody reads more into a number than it holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Resolution {
    /// Sample timestamps: microseconds on a monotonic clock.
    pub timestamp_us: f64,
    /// How late probes were sent after their due time, p99 over the whole run: the precision of
    /// the schedule itself (an OS-timer thread; typically well under a millisecond).
    pub send_lateness_p99_ms: f64,
    /// An outage may have started up to one interval before its first failed probe.
    pub outage_uncertainty_ms: f64,
    /// Latency percentiles come from HDR histograms with this many significant digits.
    pub histogram_significant_digits: u8,
    /// A probe is counted late when it was sent more than this after its scheduled time.
    pub late_threshold_ms: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrialSummary {
    pub index: u32,
    /// Which run (vantage point) the trial came from, in a merged report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub started_at_ms: f64,
    pub ended_at_ms: f64,
    pub end_reason: String,
    pub trigger: TriggerInfo,
    pub writes: StreamSummary,
    pub reads: StreamSummary,
    pub integrity: Integrity,
    pub keyspace: Keyspace,
    pub topology: Vec<TopologyChange>,
    pub timeline: Vec<TimelineEntry>,
    /// Per shard (Redis Cluster) or node (Memcached); empty for a single primary. The trial's
    /// `writes` / `reads` then cover the whole target: down whenever some shard was down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardSummary>,
    /// ElastiCache: what AWS logged during the trial, next to what the probes saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsTrial>,
    /// Every client profile measured (`--clients`), the first (failprobe's own when measured)
    /// being the one `writes`, `reads` and `integrity` above describe.
    #[serde(default)]
    pub clients: Vec<ClientSummary>,
    /// `--backup`, taken in the first trial before its trigger: one per primary (BGSAVE) or the
    /// ElastiCache snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<Backup>,
}

/// A backup failprobe took (`--backup`); failprobe never deletes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Backup {
    pub at_ms: f64,
    /// `BGSAVE` or `CreateSnapshot`.
    pub how: String,
    /// The RDB file (when the server tells it) or the snapshot's name.
    pub name: String,
    /// The primary saved, or the replication group / cache cluster snapshotted.
    pub node: String,
    /// `saved`, `available`, or `failed: …`.
    pub status: String,
    pub took_ms: u64,
}

/// AWS's account of a trial. Times are AWS's own event timestamps placed on the run clock: they
/// carry AWS's resolution (milliseconds) and any offset between AWS's clock and this machine's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct AwsTrial {
    pub events: Vec<AwsEventEntry>,
    /// "Failover … completed" (the first, if several).
    pub failover_completed_at_ms: Option<f64>,
    /// "Finished recovery for cache nodes …" (the last).
    pub recovery_finished_at_ms: Option<f64>,
    /// When the writes came back for good, as the probes saw it (end of the last write outage).
    pub writes_recovered_at_ms: Option<f64>,
    /// `failover_completed_at_ms - writes_recovered_at_ms`: positive when AWS logged completion
    /// after clients could write again.
    pub completion_lag_ms: Option<f64>,
    /// Member roles / node states as DescribeReplicationGroups / DescribeCacheClusters gave them.
    pub topology: Vec<AwsTopologyEntry>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AwsEventEntry {
    pub at_ms: f64,
    pub aws_time: String,
    /// When failprobe fetched it (polling delay included).
    pub seen_at_ms: f64,
    pub source: String,
    pub class: crate::sample::AwsClass,
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AwsTopologyEntry {
    pub at_ms: f64,
    pub status: String,
    pub members: String,
}

/// One client profile's view of a trial (`--clients`): its own streams, outages and write log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClientSummary {
    /// `failprobe`, `pinned`, `dns-cache=5s`, `redis-rs`...
    pub name: String,
    pub writes: StreamSummary,
    pub reads: StreamSummary,
    pub integrity: Integrity,
    /// Where the time went: trigger, new primary, endpoint flip, step-down, this client's
    /// outages (`analysis::waterfall`). Empty without a trigger.
    #[serde(default)]
    pub phases: Vec<Phase>,
    /// An external adapter's client library, its version and settings, as its hello said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    /// What went wrong with an external adapter (it exited, broke the protocol, fell silent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adapter_faults: Vec<String>,
    /// The connections it held on each data node at the trial's end (`CLIENT LIST`, counted by
    /// the name they carry); absent when they were not counted (a client whose connections
    /// carry no name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<BTreeMap<String, u64>>,
    /// `--probe pubsub`: what its subscriber received of what failprobe published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<PubSubSummary>,
    /// `--probe stream`: the trial's stream, its appends and its consumer group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamProbeSummary>,
}

/// One moment of a trial, in ms on the run clock; `at_ms` is null when it was not observed.
/// Programs read `phase` and `detail`; `name` is the same said for people.
/// `--probe pubsub`, one client in one trial. Counts are messages; times are on the probe clock
/// (resolution: one interval) or from the subscriber's own events.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PubSubSummary {
    /// Publishes sent, and those the server acknowledged.
    pub published: u64,
    pub acknowledged: u64,
    /// Acknowledged with no subscriber on the channel at the publishing server (PUBLISH's 0).
    pub unheard: u64,
    /// Distinct messages the subscriber received.
    pub delivered: u64,
    /// Acknowledged messages it never received, from its first delivery on (the gaps and the
    /// end); `missed_at_end` of them after its last delivery.
    pub missed: u64,
    pub missed_at_end: u64,
    /// Acknowledged before its first delivery: its start, not a loss.
    pub before_first_delivery: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// The longest run of messages missed between two deliveries, and how long it lasted on the
    /// publish clock (from the first missed to the next received).
    pub longest_gap_messages: u64,
    pub longest_gap_ms: f64,
    /// Subscriptions lost (the subscriber's own events), and the longest time to subscribe
    /// again; None when none was lost or the last was never made again.
    pub subscriptions_lost: u64,
    pub longest_without_subscription_ms: Option<f64>,
    /// Receiving again by the trial's end, after every loss.
    pub resubscribed: bool,
    /// From when the publish was due to when the message arrived.
    pub latency_ms: Percentiles,
}

/// `--probe stream`, one trial: appends (XADD) acknowledged and lost, exactly as for the key
/// writes, and what the consumer group read. `lost`, `never_read` and `pending` are None when
/// the stream could not be read back.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct StreamProbeSummary {
    pub appended: u64,
    pub acknowledged: u64,
    /// Acknowledged appends not in the stream after recovery.
    pub lost: Option<u64>,
    /// Distinct entries the group read, and those read again.
    pub consumed: u64,
    pub duplicates: u64,
    /// In the stream after recovery, never read by the group.
    pub never_read: Option<u64>,
    /// Given to the group's consumer and never acknowledged (XPENDING).
    pub pending: Option<u64>,
    /// From when the append was due to when the group read it.
    pub latency_ms: Percentiles,
}

impl PubSubSummary {
    /// `--probe pubsub`, one client in one trial: "pub/sub 35 of 1000 messages missed (longest gap
    /// 35, 350 ms; subscription made again in 120 ms), 0 duplicated, 0 out of order, delivered p99
    /// 0.41 ms", or "pub/sub NOT RESUBSCRIBED: …" for a subscriber not receiving at the end.
    pub(crate) fn sentence(&self) -> String {
        let p = self;
        let ms = crate::duration::format_ms;
        let head = match (p.resubscribed, p.delivered) {
            (_, 0) if p.acknowledged > 0 => "pub/sub NOTHING RECEIVED:",
            (true, _) => "pub/sub",
            (false, _) => "pub/sub NOT RESUBSCRIBED:",
        };
        let counted = p.acknowledged.saturating_sub(p.before_first_delivery);
        let mut out = match (p.delivered, p.missed) {
            (0, _) => format!("{head} no message received of {} acknowledged", p.acknowledged),
            (_, 0) => format!("{head} all {counted} acknowledged messages received"),
            (_, missed) => format!("{head} {missed} of {counted} acknowledged messages missed"),
        };
        let mut detail = Vec::new();
        if p.longest_gap_messages > 0 {
            detail.push(format!("longest gap {}, {}", p.longest_gap_messages, ms(p.longest_gap_ms)));
        }
        if p.missed_at_end > 0 {
            detail.push(format!("{} after its last message, to the end", p.missed_at_end));
        }
        match (p.subscriptions_lost, p.longest_without_subscription_ms) {
            (0, _) => {}
            (n, Some(without)) => detail.push(format!("subscription lost {n}×, made again within {}", ms(without))),
            (n, None) => detail.push(format!("subscription lost {n}×, not made again")),
        }
        if p.unheard > 0 {
            detail.push(format!("{} published to no subscriber", p.unheard));
        }
        if !detail.is_empty() {
            out.push_str(&format!(" ({})", detail.join("; ")));
        }
        out.push_str(&format!(", {} duplicated, {} out of order", p.duplicates, p.out_of_order));
        if p.latency_ms.count > 0 {
            out.push_str(&format!(", delivered p50 {} p99 {}", ms(p.latency_ms.p50), ms(p.latency_ms.p99)));
        }
        out
    }
}

impl StreamProbeSummary {
    /// `--probe stream`, one trial: "stream 12 of 1000 acknowledged appends lost; the group read
    /// 988 (0 twice), 0 never read, 0 pending, read p99 1.2 ms".
    pub(crate) fn sentence(&self) -> String {
        let p = self;
        let ms = crate::duration::format_ms;
        let lost = match p.lost {
            Some(n) => format!("{n} of {} acknowledged appends lost", p.acknowledged),
            None => format!("loss unknown in {} acknowledged appends (stream not read back)", p.acknowledged),
        };
        let unknown = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
        let mut out = format!(
            "stream {lost}; the group read {} ({} twice), {} never read, {} pending",
            p.consumed,
            p.duplicates,
            unknown(p.never_read),
            unknown(p.pending)
        );
        if p.latency_ms.count > 0 {
            out.push_str(&format!(", read p50 {} p99 {}", ms(p.latency_ms.p50), ms(p.latency_ms.p99)));
        }
        out
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Phase {
    pub phase: PhaseId,
    pub at_ms: Option<f64>,
    #[serde(default)]
    pub detail: PhaseDetail,
    /// "writes down (readonly ×783, reset ×1)": [`PhaseId::text`], kept as it was the only field
    /// before `phase` (fields are never renamed).
    pub name: String,
}

/// What a phase is, as summary.json spells it (`"writes_down"`): stable, listed in the README.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PhaseId {
    TriggerStarted,
    TriggerCompleted,
    /// The first of Sentinel's `+sdown` / `+odown`, a cluster's `PFAIL` / `FAIL`, or AWS's
    /// "failover started".
    FailureDetected,
    NewPrimary,
    /// The old primary answers ROLE as a replica (it rejoined as one), or its process is
    /// verified gone. Never an unreachable node.
    SteppedDown,
    /// A lab network fault put in place, and removed (listed with a network-fault trigger).
    FaultInjected,
    FaultHealed,
    /// The replaced old primary did not answer ROLE: unreachable since then, not stepped down
    /// (listed when observed).
    OldPrimaryUnreachable,
    /// The client's stream was first answered by the deposed old primary after the new
    /// primary was announced: no recovery (listed when observed).
    WritesOnIsolatedPrimary,
    ReadsOnIsolatedPrimary,
    EndpointFlipped,
    DnsChanged,
    WritesDown,
    WritesRecovered,
    WritesNotRecovered,
    ReadsDown,
    ReadsRecovered,
    ReadsNotRecovered,
    /// `--probe pubsub`: the client's subscription lost after the trigger, made again, or not
    /// made again by the trial's end (listed when lost).
    SubscriptionLost,
    Resubscribed,
    NotResubscribed,
}

/// What a phase carries besides its time; empty fields are left out of summary.json.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PhaseDetail {
    /// `writes_down` / `reads_down`: the error classes of the stream's last outage after the
    /// trigger, with their counts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
}

impl Phase {
    pub(crate) fn at(phase: PhaseId, at_ms: Option<f64>) -> Self {
        Self::with(phase, at_ms, PhaseDetail::default())
    }

    pub(crate) fn with(phase: PhaseId, at_ms: Option<f64>, detail: PhaseDetail) -> Self {
        Self { name: phase.text(&detail), phase, at_ms, detail }
    }
}

impl PhaseId {
    /// A stream's phases: (down, recovered, not recovered).
    pub(crate) fn of_stream(stream: crate::sample::Stream) -> [Self; 3] {
        match stream {
            crate::sample::Stream::Write => [Self::WritesDown, Self::WritesRecovered, Self::WritesNotRecovered],
            // The pub/sub and stream samples never reach the key-value streams' phases (`Analyzer::sample`).
            _ => [Self::ReadsDown, Self::ReadsRecovered, Self::ReadsNotRecovered],
        }
    }

    /// A client's own outage, not a moment of the deployment.
    pub(crate) fn is_stream(self) -> bool {
        Self::of_stream(crate::sample::Stream::Write).contains(&self)
            || Self::of_stream(crate::sample::Stream::Read).contains(&self)
    }

    /// The phase said for people: the one place the terminal, report.md and report.html get it.
    pub(crate) fn text(self, detail: &PhaseDetail) -> String {
        let down = |stream: &str| match super::sentence::error_counts(&detail.errors) {
            e if e.is_empty() => format!("{stream} down"),
            e => format!("{stream} down ({e})"),
        };
        match self {
            Self::TriggerStarted => "trigger started".into(),
            Self::TriggerCompleted => "trigger completed".into(),
            Self::FailureDetected => "failure detected".into(),
            Self::NewPrimary => "new primary announced".into(),
            Self::SteppedDown => "old primary stepped down".into(),
            Self::FaultInjected => "fault injected".into(),
            Self::FaultHealed => "fault healed".into(),
            Self::OldPrimaryUnreachable => "old primary unreachable (not stepped down)".into(),
            Self::WritesOnIsolatedPrimary => "writes answered by the deposed old primary (no recovery)".into(),
            Self::ReadsOnIsolatedPrimary => "reads answered by the deposed old primary (no recovery)".into(),
            Self::EndpointFlipped => "endpoint flipped".into(),
            Self::DnsChanged => "DNS answer changed".into(),
            Self::WritesDown => down("writes"),
            Self::ReadsDown => down("reads"),
            Self::WritesRecovered => "writes recovered".into(),
            Self::ReadsRecovered => "reads recovered".into(),
            Self::WritesNotRecovered => "writes not recovered by the end of the trial".into(),
            Self::ReadsNotRecovered => "reads not recovered by the end of the trial".into(),
            Self::SubscriptionLost => "subscription lost".into(),
            Self::Resubscribed => "resubscribed".into(),
            Self::NotResubscribed => "not resubscribed by the end of the trial".into(),
        }
    }
}

impl ClientSummary {
    /// Both streams up at the end of the trial.
    pub fn recovered(&self) -> bool {
        self.writes.recovered && self.reads.recovered
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ShardSummary {
    pub name: String,
    pub writes: StreamSummary,
    pub reads: StreamSummary,
    pub integrity: Integrity,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TriggerInfo {
    pub kind: String,
    pub started_at_ms: Option<f64>,
    pub finished_at_ms: Option<f64>,
    pub error: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct StreamSummary {
    pub probes: u64,
    pub ok: u64,
    pub failed: u64,
    pub late: u64,
    pub reconnects: u64,
    pub outages: Vec<Outage>,
    pub longest_outage_ms: f64,
    pub total_outage_ms: f64,
    pub recovered: bool,
    pub errors: BTreeMap<String, u64>,
    /// How long after its due time each probe was actually sent.
    pub send_lateness_ms: Percentiles,
    /// Latency of successful probes, from the scheduled send time.
    pub latency_ms: Percentiles,
    pub latency_by_phase_ms: Option<PhaseLatency>,
    /// The first answer from the deposed old primary after the new primary was announced, ms
    /// on the run clock: where the client went back to is no recovery (its outage goes on,
    /// counted as `split-brain` in the outage's errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolated_primary_at_ms: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PhaseLatency {
    pub before: Percentiles,
    pub during: Percentiles,
    pub after: Percentiles,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Outage {
    pub start_ms: f64,
    pub end_ms: f64,
    pub duration_ms: f64,
    pub uncertainty_ms: f64,
    pub recovered: bool,
    pub failed_probes: u64,
    pub errors: BTreeMap<String, u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Keyspace {
    /// DBSIZE minus failprobe's own keys, just before the trigger.
    pub before: Option<u64>,
    /// The same after recovery.
    pub after: Option<u64>,
    /// Every database that has keys (INFO keyspace), before and after, failprobe's own keys
    /// excluded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dbs_before: BTreeMap<u32, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dbs_after: BTreeMap<u32, u64>,
    /// The databases whose count differs after recovery (a key lost, or one written meanwhile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatch: Vec<u32>,
}

impl Keyspace {
    /// Each database seen before or after: (db, before, after).
    pub fn rows(&self) -> Vec<(u32, Option<u64>, Option<u64>)> {
        let dbs: std::collections::BTreeSet<u32> =
            self.dbs_before.keys().chain(self.dbs_after.keys()).copied().collect();
        // A database absent from a count that was taken has no keys; a count not taken is unknown.
        let at = |m: &BTreeMap<u32, u64>, taken: Option<u64>, db| taken.map(|_| m.get(&db).copied().unwrap_or(0));
        dbs.into_iter()
            .map(|db| (db, at(&self.dbs_before, self.before, db), at(&self.dbs_after, self.after, db)))
            .collect()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TopologyChange {
    pub at_ms: f64,
    pub primary: String,
    pub source: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    pub at_ms: f64,
    pub what: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct OutageHistogram {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BudgetResult {
    pub passed: bool,
    pub max_outage_ms: Option<f64>,
    pub max_lost_writes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lost_messages: Option<u64>,
    /// The client profiles the verdict covers (`--budget-clients`; `failprobe` by default).
    #[serde(default)]
    pub clients: Vec<String>,
    pub violations: Vec<String>,
    /// Every check behind the verdict, passed or failed.
    pub checks: Vec<BudgetCheck>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BudgetCheck {
    pub trial: u32,
    /// Set for a per-shard (or per-node) check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub name: String,
    pub passed: bool,
    pub measured: String,
    pub limit: String,
}

impl Summary {
    /// The headline for the terminal and the report's first line.
    pub fn verdict(&self) -> &str {
        &self.verdict.headline
    }

    pub fn longest_outage_ms(&self) -> f64 {
        self.trials.iter().flat_map(|t| [t.writes.longest_outage_ms, t.reads.longest_outage_ms]).fold(0.0, f64::max)
    }

    /// Acknowledged writes lost by every measured client, over all trials (a trial without
    /// per-client sections, from an older run, counts its own figures).
    pub fn lost_acked_writes(&self) -> u64 {
        self.integrities().filter(|i| i.checked).map(|i| i.lost_acked_writes).sum()
    }

    /// Write logs (one per client and trial) that could not be read: their loss is unknown.
    pub fn unchecked_write_logs(&self) -> usize {
        self.integrities().filter(|i| !i.checked).count()
    }

    fn integrities(&self) -> impl Iterator<Item = &Integrity> {
        self.trials.iter().flat_map(|t| match t.clients.is_empty() {
            true => vec![&t.integrity],
            false => t.clients.iter().map(|c| &c.integrity).collect(),
        })
    }

    /// What was measured, in one line (`describe_servers`); `None` for an older run.
    pub fn servers_line(&self) -> Option<String> {
        describe_servers(&self.servers)
    }
}

/// The settings of a data node that the line shows, in order: (key, unit).
const DATA_SETTINGS: [(&str, &str); 4] =
    [("appendonly", ""), ("appendfsync", ""), ("min-replicas-to-write", ""), ("cluster-node-timeout", " ms")];
/// A sentinel's, as the line names them: (key, label, unit).
const SENTINEL_SETTINGS: [(&str, &str, &str); 3] = [
    ("down-after-milliseconds", "down-after", " ms"),
    ("failover-timeout", "failover-timeout", " ms"),
    ("quorum", "quorum", ""),
];

/// The one sentence every report's header and `compare` show for the servers a run measured:
/// `Redis 7.0.15 (primary 127.0.0.1:6379, replica 127.0.0.1:6380) · appendonly no ·
/// min-replicas-to-write 0 · 3 sentinels: down-after 1000 ms, failover-timeout 3000 ms, quorum 2`.
/// `None` when the run did not read them.
pub fn describe_servers(servers: &[ServerMeta]) -> Option<String> {
    if servers.is_empty() {
        return None;
    }
    let (sentinels, data): (Vec<&ServerMeta>, Vec<&ServerMeta>) = servers.iter().partition(|s| s.role == "sentinel");
    let data_engines = engines(&data);
    let mut parts: Vec<String> =
        data_engines.iter().map(|(engine, members)| format!("{engine} ({})", members.join(", "))).collect();
    // appendfsync only matters when the append-only file is on somewhere.
    let aof = data.iter().any(|s| s.settings.get("appendonly").is_some_and(|v| v != "no"));
    for (key, unit) in DATA_SETTINGS.into_iter().filter(|(key, _)| aof || *key != "appendfsync") {
        parts.extend(setting(&data, key, unit).map(|v| format!("{key} {v}")));
    }
    if !sentinels.is_empty() {
        let count = match sentinels.len() {
            1 => "1 sentinel".to_string(),
            n => format!("{n} sentinels"),
        };
        // Their engine only when it is not the data nodes' own.
        let own: Vec<String> = engines(&sentinels).into_iter().map(|(e, _)| e).collect();
        let engine = match own.iter().all(|e| data_engines.iter().any(|(d, _)| d == e)) {
            true => String::new(),
            false => format!(" ({})", own.join(", ")),
        };
        let settings: Vec<String> = SENTINEL_SETTINGS
            .iter()
            .filter_map(|(key, label, unit)| setting(&sentinels, key, unit).map(|v| format!("{label} {v}")))
            .collect();
        let settings = if settings.is_empty() { String::new() } else { format!(": {}", settings.join(", ")) };
        parts.push(format!("{count}{engine}{settings}"));
    }
    Some(parts.join(" · "))
}

/// `Valkey 9.1.2` and its members (`primary 127.0.0.1:6379`), one entry per engine and
/// version: a deployment in the middle of an upgrade shows both.
/// The engines of the data nodes, without their members: `Redis 7.0.15` (a fleet's row).
pub fn describe_engines(servers: &[ServerMeta]) -> Option<String> {
    let data: Vec<&ServerMeta> = servers.iter().filter(|s| s.role != "sentinel").collect();
    let names: Vec<String> = engines(&data).into_iter().map(|(engine, _)| engine).collect();
    (!names.is_empty()).then(|| names.join(", "))
}

fn engines(servers: &[&ServerMeta]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for s in servers {
        let name = match s.server.as_str() {
            "redis" => "Redis",
            "valkey" => "Valkey",
            "unknown" | "" => "unknown server",
            other => other,
        };
        let engine = match s.version.as_str() {
            "unknown" | "" => name.to_string(),
            version => format!("{name} {version}"),
        };
        let member = format!("{} {}", s.role, s.address);
        match groups.iter_mut().find(|(e, _)| *e == engine) {
            Some((_, members)) => members.push(member),
            None => groups.push((engine, vec![member])),
        }
    }
    groups
}

/// One setting across `servers`: `1000 ms` when all that report it agree, else each value and
/// where (`1 on 10.0.0.5:6379; 0 on 10.0.0.6:6379`). `None` when none reports it.
fn setting(servers: &[&ServerMeta], key: &str, unit: &str) -> Option<String> {
    let mut values: Vec<(&str, Vec<&str>)> = Vec::new();
    for s in servers {
        let Some(v) = s.settings.get(key) else { continue };
        match values.iter_mut().find(|(value, _)| value == v) {
            Some((_, at)) => at.push(&s.address),
            None => values.push((v, vec![&s.address])),
        }
    }
    let show = |v: &str| if v == "unknown" { v.to_string() } else { format!("{v}{unit}") };
    match values.as_slice() {
        [] => None,
        [(v, _)] => Some(show(v)),
        many => {
            Some(many.iter().map(|(v, at)| format!("{} on {}", show(v), at.join(", "))).collect::<Vec<_>>().join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_emptied_by_the_failover_counts_as_zero_not_unknown() {
        let k = Keyspace {
            before: Some(0),
            after: Some(0),
            dbs_before: BTreeMap::from([(5, 5)]),
            dbs_after: BTreeMap::new(),
            mismatch: Vec::new(),
        };
        assert_eq!(k.rows(), [(5, Some(5), Some(0))]);
        let unknown = Keyspace { after: None, ..k };
        assert_eq!(unknown.rows(), [(5, Some(5), None)], "no count after: unknown, not zero");
    }

    fn server(role: &str, port: u16, server: &str, version: &str, settings: &[(&str, &str)]) -> ServerMeta {
        ServerMeta {
            address: format!("127.0.0.1:{port}"),
            role: role.into(),
            server: server.into(),
            version: version.into(),
            settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            error: None,
        }
    }

    #[test]
    fn the_servers_line_names_engine_version_roles_and_settings() {
        assert_eq!(describe_servers(&[]), None, "an older run read no servers");
        let data = [("appendonly", "no"), ("appendfsync", "everysec"), ("min-replicas-to-write", "0")];
        let sentinel = [("down-after-milliseconds", "1000"), ("failover-timeout", "3000"), ("quorum", "2")];
        let servers = [
            server("sentinel", 26379, "redis", "7.0.15", &sentinel),
            server("sentinel", 26380, "redis", "7.0.15", &sentinel),
            server("primary", 6379, "redis", "7.0.15", &data),
            server("replica", 6380, "redis", "7.0.15", &data),
        ];
        assert_eq!(
            describe_servers(&servers).unwrap(),
            "Redis 7.0.15 (primary 127.0.0.1:6379, replica 127.0.0.1:6380) · appendonly no · \
             min-replicas-to-write 0 · 2 sentinels: down-after 1000 ms, failover-timeout 3000 ms, quorum 2"
        );
        // Valkey mid-upgrade, the AOF on, a setting that differs, CONFIG refused on one node.
        let aof = [("appendonly", "yes"), ("appendfsync", "always"), ("min-replicas-to-write", "1")];
        let servers = [
            server("primary", 6379, "valkey", "9.1.2", &aof),
            server("replica", 6380, "valkey", "8.1.4", &[("appendonly", "unknown")]),
            server("replica", 6381, "unknown", "unknown", &[]),
        ];
        assert_eq!(
            describe_servers(&servers).unwrap(),
            "Valkey 9.1.2 (primary 127.0.0.1:6379) · Valkey 8.1.4 (replica 127.0.0.1:6380) · \
             unknown server (replica 127.0.0.1:6381) · appendonly yes on 127.0.0.1:6379; unknown on 127.0.0.1:6380 · \
             appendfsync always · min-replicas-to-write 1"
        );
    }
}
