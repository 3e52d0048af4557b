//! The recorder: every probe sample and event is persisted first (`store`), then fed to the same
//! `Recorder` whether it arrives live or is read back from disk by `failprobe report`.

pub mod histogram;
pub mod integrity;
pub mod merge;
pub mod outage;
pub mod recorder;
pub mod sample;
pub mod store;

pub use recorder::Recorder;
pub use sample::{ErrorClass, Event, EventKind, Record, RunMeta, Sample, Stream};
