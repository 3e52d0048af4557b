//! The recorder's side: what probes and controllers report (`crate::sample`) is persisted first
//! (`store`: samples.csv, events.jsonl, run.json) and read back for `failprobe report` and
//! `merge`. The analysis reads the same stream, live or from disk.

pub mod merge;
pub mod store;
