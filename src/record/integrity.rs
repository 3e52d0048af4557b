//! Did every acknowledged write survive, did unacknowledged ones appear, did a read go back in
//! time? Computed from the samples and the write log read from the primary after recovery.

use super::sample::ranges_contain;
use super::Sample;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Integrity {
    /// False when the write log could not be read (interrupted run, target still down).
    pub checked: bool,
    pub acked_writes: u64,
    pub surviving_acked_writes: u64,
    pub lost_acked_writes: u64,
    /// Writes whose client saw a failure or timeout, yet which the server applied.
    pub ghost_writes: u64,
    pub unacked_writes: u64,
    /// Reads that returned a value older than a write acknowledged before the read was sent.
    pub stale_reads: u64,
    pub lost_seqs_sample: Vec<u64>,
    pub log_server: Option<String>,
    /// Memcached: known keys stored before the trigger, and how many survived byte-identical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeded_keys: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surviving_seeded_keys: Option<u64>,
}

impl Integrity {
    /// Adds another shard's figures (the whole target is checked only if every shard was).
    pub fn add(&mut self, o: &Integrity) {
        self.checked &= o.checked;
        self.acked_writes += o.acked_writes;
        self.surviving_acked_writes += o.surviving_acked_writes;
        self.lost_acked_writes += o.lost_acked_writes;
        self.ghost_writes += o.ghost_writes;
        self.unacked_writes += o.unacked_writes;
        self.stale_reads += o.stale_reads;
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.seeded_keys = sum(self.seeded_keys, o.seeded_keys);
        self.surviving_seeded_keys = sum(self.surviving_seeded_keys, o.surviving_seeded_keys);
        let room = 20usize.saturating_sub(self.lost_seqs_sample.len());
        self.lost_seqs_sample.extend(o.lost_seqs_sample.iter().take(room));
        if let Some(s) = &o.log_server {
            self.log_server = Some(match &self.log_server {
                Some(mine) => format!("{mine}, {s}"),
                None => s.clone(),
            });
        }
    }
}

pub fn check(writes: &[Sample], reads: &[Sample], log: Option<(&str, &[(u64, u64)])>) -> Integrity {
    let mut out = Integrity { stale_reads: stale_reads(writes, reads), ..Default::default() };
    let Some((server, present)) = log else {
        out.acked_writes = writes.iter().filter(|w| w.ok()).count() as u64;
        return out;
    };
    out.checked = true;
    out.log_server = Some(server.to_string());
    for w in writes {
        let found = ranges_contain(present, w.seq);
        match (w.ok(), found) {
            (true, true) => out.surviving_acked_writes += 1,
            (true, false) => {
                out.lost_acked_writes += 1;
                if out.lost_seqs_sample.len() < 20 {
                    out.lost_seqs_sample.push(w.seq);
                }
            }
            (false, true) => out.ghost_writes += 1,
            (false, false) => {}
        }
        if w.ok() {
            out.acked_writes += 1;
        } else {
            out.unacked_writes += 1;
        }
    }
    out
}

/// A read is stale when it returned a sequence number lower than that of some write whose
/// acknowledgement arrived before the read was sent.
fn stale_reads(writes: &[Sample], reads: &[Sample]) -> u64 {
    let mut acks: Vec<(u64, u64)> = writes.iter().filter(|w| w.ok()).map(|w| (w.end_us, w.seq)).collect();
    acks.sort_unstable();
    let mut max_seq = 0;
    let prefix_max: Vec<u64> = acks
        .iter()
        .map(|(_, seq)| {
            max_seq = max_seq.max(*seq);
            max_seq
        })
        .collect();
    reads
        .iter()
        .filter(|r| r.ok())
        .filter(|r| {
            let n = acks.partition_point(|(end, _)| *end < r.start_us);
            n > 0 && r.value.unwrap_or(0) < prefix_max[n - 1]
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::outage::tests::sample;
    use crate::record::sample::{to_ranges, Stream};

    fn read(at_ms: u64, value: u64) -> Sample {
        let mut s = sample(0, at_ms, 1, true);
        s.stream = Stream::Read;
        s.value = Some(value);
        s
    }

    #[test]
    fn counts_lost_and_ghost_writes() {
        let writes: Vec<_> = (1..=10).map(|i| sample(i, i * 10, 1, i != 9)).collect();
        // 4 and 5 were acknowledged but are gone; 9 failed for the client but was applied.
        let present = to_ranges(&[1, 2, 3, 6, 7, 8, 9, 10]);
        let r = check(&writes, &[], Some(("p", &present)));
        assert_eq!(r.acked_writes, 9);
        assert_eq!(r.lost_acked_writes, 2);
        assert_eq!(r.surviving_acked_writes, 7);
        assert_eq!(r.ghost_writes, 1);
        assert_eq!(r.acked_writes, r.surviving_acked_writes + r.lost_acked_writes);
    }

    #[test]
    fn stale_read_is_older_than_an_earlier_ack() {
        // write 1 acked at 11 ms, write 2 acked at 21 ms
        let writes = vec![sample(1, 10, 1, true), sample(2, 20, 1, true)];
        let reads = vec![read(15, 1), read(25, 2), read(30, 1), read(20, 1)];
        // read at 30 ms saw 1 although 2 was acked at 21 ms; read at 20 ms was sent before that ack.
        assert_eq!(check(&writes, &reads, None).stale_reads, 1);
    }
}
