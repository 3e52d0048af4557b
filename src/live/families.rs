//! The metric families, defined once: their names, units, help texts and label sets. Names
//! follow Prometheus' conventions (base units, `_total` on counters, added by the encoder);
//! docs/guide.md lists them and a test holds the two together.

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

/// Probe latency buckets, seconds: a loopback answer (0.5 ms) up to the longest `--timeout`
/// that is still common (10 s); a failover's slow answers fall in the upper half.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub(super) type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ProbeLabels {
    pub(super) target: String,
    pub(super) client: String,
    pub(super) stream: &'static str,
    pub(super) result: &'static str,
    pub(super) class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StreamLabels {
    pub(super) target: String,
    pub(super) client: String,
    pub(super) stream: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ClientLabels {
    pub(super) target: String,
    pub(super) client: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PhaseLabels {
    pub(super) target: String,
    pub(super) phase: &'static str,
}

pub(super) struct Families {
    pub(super) probes: Family<ProbeLabels, Counter>,
    pub(super) latency: Family<StreamLabels, Histogram, fn() -> Histogram>,
    pub(super) late: Family<StreamLabels, Counter>,
    pub(super) outage: Family<StreamLabels, FloatGauge>,
    pub(super) last_outage: Family<StreamLabels, FloatGauge>,
    pub(super) outages: Family<StreamLabels, Counter>,
    pub(super) lost: Family<ClientLabels, Counter>,
    pub(super) ghost: Family<ClientLabels, Counter>,
    pub(super) phases: Family<PhaseLabels, FloatGauge>,
}

/// The process's registry: one per process, shared by every target's run and the listener.
#[derive(Clone)]
pub struct Metrics {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) registry: Registry,
    pub(super) families: Families,
    /// Where `serve` listens, once it does (run.json records it).
    pub(super) addr: OnceLock<SocketAddr>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let latency: fn() -> Histogram = || Histogram::new(LATENCY_BUCKETS);
        let families = Families {
            probes: Family::default(),
            latency: Family::new_with_constructor(latency),
            late: Family::default(),
            outage: Family::default(),
            last_outage: Family::default(),
            outages: Family::default(),
            lost: Family::default(),
            ghost: Family::default(),
            phases: Family::default(),
        };
        let mut r = Registry::default();
        let f = &families;
        r.register("failprobe_probes", "Probes by result (ok, error) and error class (none when ok)", f.probes.clone());
        r.register_with_unit(
            "failprobe_probe_latency",
            "Latency of answered probes, from the time each was due",
            Unit::Seconds,
            f.latency.clone(),
        );
        r.register(
            "failprobe_late_probes",
            "Probes sent later than the late threshold (one interval, at least 2 ms): failprobe itself fell behind",
            f.late.clone(),
        );
        r.register_with_unit(
            "failprobe_outage",
            "The current outage's length so far (from the first failed probe's due time); 0 when up",
            Unit::Seconds,
            f.outage.clone(),
        );
        r.register_with_unit(
            "failprobe_last_outage",
            "The last outage's length, once it ended (or its trial did)",
            Unit::Seconds,
            f.last_outage.clone(),
        );
        r.register("failprobe_outages", "Outages begun", f.outages.clone());
        r.register(
            "failprobe_lost_writes",
            "Acknowledged writes missing from the write log, counted at each trial's integrity check",
            f.lost.clone(),
        );
        r.register(
            "failprobe_ghost_writes",
            "Writes reported failed that the write log holds, counted at each trial's integrity check",
            f.ghost.clone(),
        );
        r.register_with_unit(
            "failprobe_phase_timestamp",
            "When a failover phase was last seen (Unix time)",
            Unit::Seconds,
            f.phases.clone(),
        );
        r.register_collector(Box::new(Process));
        Self { inner: Arc::new(Inner { registry: r, families, addr: OnceLock::new() }) }
    }

    /// The OpenMetrics text of everything registered (`openmetrics`), or the Prometheus text
    /// format 0.0.4 for clients that did not ask for OpenMetrics.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut text = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry)
        };
        // Writing into a String cannot fail.
        encoded.expect("encoding into a String");
        text
    }

    /// Where the listener serving these metrics is bound, once it is.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.inner.addr.get().copied()
    }
}

/// failprobe's own process, read at each scrape: its resident memory and CPU time (Linux).
#[derive(Debug)]
struct Process;

impl prometheus_client::collector::Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((rss, cpu)) = process_figures() else { return Ok(()) };
        let gauge = ConstGauge::new(rss as i64);
        let help = "Resident memory of failprobe's process";
        gauge.encode(encoder.encode_descriptor("process_resident_memory_bytes", help, None, gauge.metric_type())?)?;
        let counter = ConstCounter::new(cpu);
        let help = "User and system CPU time of failprobe's process";
        counter.encode(encoder.encode_descriptor("process_cpu_seconds", help, None, counter.metric_type())?)?;
        Ok(())
    }
}

/// Resident bytes (/proc/self/statm) and CPU seconds (/proc/self/stat's utime and stime).
fn process_figures() -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let (page, ticks) = unsafe { (libc::sysconf(libc::_SC_PAGESIZE), libc::sysconf(libc::_SC_CLK_TCK)) };
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((pages * page.max(1) as u64, (utime + stime) as f64 / ticks.max(1) as f64))
}

#[cfg(test)]
mod tests {
    use super::Metrics;
    use std::collections::BTreeSet;

    /// The names a scrape shows (`failprobe_probes_total`, `…_bucket`, `…_seconds`) once a
    /// run began and saw a failed probe and a phase (a family without series shows nothing).
    fn exposed() -> BTreeSet<String> {
        use crate::sample::{Event, EventKind, Outcome, Record, Sample, Stream};
        let metrics = Metrics::new();
        let mut target = metrics.for_target("t");
        target.begin(&crate::analysis::tests::meta(1, Default::default()), std::time::SystemTime::now());
        let failed = Sample {
            trial: 0,
            stream: Stream::Write,
            seq: 1,
            scheduled_us: 0,
            start_us: 0,
            end_us: 1,
            latency_us: 1,
            outcome: Outcome::Failed,
            error_class: None,
            error: None,
            server: None,
            value: None,
            shard: None,
            client: None,
        };
        target.record(&Record::Sample(failed));
        target.record(&Record::Event(Event { at_us: 0, trial: 0, kind: EventKind::TrialStart }));
        let text = metrics.encode(false);
        let mut names = BTreeSet::new();
        for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = family.split_once(' ').unwrap();
            names.insert(name.to_string());
            if kind == "histogram" {
                names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
            }
        }
        names
    }

    /// Every metric is in the guide's table, and the guide names none that is not served.
    #[test]
    fn the_guide_lists_every_metric() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let guide = std::fs::read_to_string(root.join("docs/guide.md")).unwrap();
        let names = exposed();
        assert!(names.len() >= 11, "{names:?}");
        let listed: BTreeSet<String> = guide
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next().map(String::from))
            .filter(|n| n.starts_with("failprobe_") || n.starts_with("process_"))
            .collect();
        let served: BTreeSet<String> = names
            .iter()
            .filter(|n| !n.ends_with("_bucket") && !n.ends_with("_sum") && !n.ends_with("_count"))
            .cloned()
            .collect();
        assert_eq!(listed, served, "docs/guide.md's table of live metrics");
    }

    /// The Grafana dashboard asks only for metrics failprobe serves.
    #[test]
    fn the_dashboard_queries_served_metrics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("assets/grafana/failprobe.json")).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut exprs: Vec<String> = Vec::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            exprs.extend(panel["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()));
        }
        exprs.extend(
            dashboard["annotations"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["expr"].as_str().unwrap().to_string()),
        );
        let names = exposed();
        let re = regex::Regex::new(r"\b(failprobe|process)_[a-z_]+").unwrap();
        let mut used = 0;
        for expr in &exprs {
            for m in re.find_iter(expr) {
                used += 1;
                assert!(names.contains(m.as_str()), "the dashboard asks for {} in `{expr}`", m.as_str());
            }
        }
        assert!(used >= 10, "{exprs:?}");
    }
}
