//! Every key failprobe writes lives under `failprobe:{<run-id>}:` and carries a TTL. The hash
//! tag keeps a run's keys in one cluster slot.

use std::time::Duration;

pub(crate) const NAMESPACE: &str = "failprobe:";

#[derive(Clone, Debug)]
pub struct TrialKeys {
    /// A list of every write's sequence number, in the order the primary applied them.
    pub log: String,
    /// The value reads check for staleness: the latest write's sequence number.
    pub sentinel: String,
    /// `--probe pubsub`: the channel failprobe publishes on and the client subscribes to.
    pub channel: String,
    /// `--probe stream`: the stream failprobe appends to and its consumer group reads.
    pub stream: String,
    pub ttl_ms: u64,
    /// `--write-ack`: what a write waits for before it counts as acknowledged.
    pub ack: super::ack::WriteAck,
}

impl TrialKeys {
    pub fn new(run_id: &str, trial: u32, ttl: Duration) -> Self {
        Self::for_client(run_id, trial, ttl, None)
    }

    /// A client profile's own keys (`client`: its label), beside failprobe's in the same slot.
    pub fn for_client(run_id: &str, trial: u32, ttl: Duration, client: Option<&str>) -> Self {
        let mut prefix = format!("{NAMESPACE}{{{run_id}}}:t{trial}");
        if let Some(client) = client {
            prefix.push(':');
            prefix.extend(client.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }));
        }
        Self {
            log: format!("{prefix}:log"),
            sentinel: format!("{prefix}:sentinel"),
            channel: format!("{prefix}:channel"),
            stream: format!("{prefix}:stream"),
            ttl_ms: ttl.as_millis().max(1) as u64,
            ack: super::ack::WriteAck::Plain,
        }
    }

    /// The same keys, written at acknowledgement level `ack`.
    pub fn with_ack(&self, ack: super::ack::WriteAck) -> Self {
        Self { ack, ..self.clone() }
    }

    pub fn all(&self) -> [&str; 3] {
        [&self.log, &self.sentinel, &self.stream]
    }
}

/// A short random run id: unique enough that two runs never share keys.
pub(crate) fn new_run_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{:012x}", n & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced_and_hash_tagged() {
        let k = TrialKeys::new("abc", 2, Duration::from_secs(3600));
        assert_eq!(k.log, "failprobe:{abc}:t2:log");
        assert_eq!(k.sentinel, "failprobe:{abc}:t2:sentinel");
        assert_eq!(k.ttl_ms, 3_600_000);
        assert!(k.all().iter().all(|k| k.starts_with(NAMESPACE)));
        let p = TrialKeys::for_client("abc", 2, Duration::from_secs(60), Some("dns-cache=5s"));
        assert_eq!(
            (p.log.as_str(), p.sentinel.as_str()),
            ("failprobe:{abc}:t2:dns-cache-5s:log", "failprobe:{abc}:t2:dns-cache-5s:sentinel")
        );
        assert_eq!(TrialKeys::for_client("abc", 2, Duration::from_secs(60), None).log, k.log);
    }
}
