//! HDR histograms of probe latency (µs, 3 significant digits) and of outage windows.

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// 3 significant digits: 0.1 % resolution on every figure.
pub(crate) const SIGNIFICANT_DIGITS: u8 = 3;

pub(crate) fn new_histogram() -> Histogram<u64> {
    // Sized for 1 µs .. 1 s and grown on demand (up to hours): a histogram sized for an hour
    // up front costs 190 KB, and a trial keeps a dozen of them per shard.
    let mut h = Histogram::new_with_bounds(1, 1_000_000, SIGNIFICANT_DIGITS).expect("valid histogram bounds");
    h.auto(true);
    h
}

pub fn record(h: &mut Histogram<u64>, us: u64) {
    // `record` grows an auto-resizing histogram; `saturating_record` would clamp at its bound.
    if h.record(us.max(1)).is_err() {
        h.saturating_record(us.max(1));
    }
}

/// A finished histogram in HdrHistogram's V2 encoding (a few hundred bytes instead of tens of
/// kilobytes): what a closed trial keeps for the plots and the .hgrm files.
#[derive(Clone, Debug)]
pub struct Packed(Vec<u8>);

impl Packed {
    pub(crate) fn pack(h: &Histogram<u64>) -> Self {
        let mut bytes = Vec::new();
        V2Serializer::new().serialize(h, &mut bytes).expect("serializing into memory cannot fail");
        Self(bytes)
    }

    pub(crate) fn unpack(&self) -> Histogram<u64> {
        let mut h: Histogram<u64> =
            Deserializer::new().deserialize(&mut self.0.as_slice()).expect("a histogram this process packed");
        h.auto(true);
        h
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Percentiles in milliseconds. An empty histogram gives zeros with count 0.
pub(crate) fn percentiles_ms(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_every_count_and_grows_past_the_initial_bound() {
        let mut h = new_histogram();
        for us in [1, 250, 4_000, 250_000, 7_200_000_000] {
            record(&mut h, us);
        }
        let back = Packed::pack(&h).unpack();
        assert_eq!(back.len(), 5);
        assert_eq!(percentiles_ms(&back), percentiles_ms(&h));
        assert!(back.max() >= 7_190_000_000, "{}", back.max());
    }
}
