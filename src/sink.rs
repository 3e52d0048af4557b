//! The event sink: how probes, triggers and the AWS watcher hand what they saw to the recorder,
//! stamped with the run clock and the current trial, free texts scrubbed of secrets.

use crate::clock::Clock;
use crate::sample::{Event, EventKind, Record};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a connector needs to report what it does.
#[derive(Clone)]
pub struct Reporter {
    pub clock: Clock,
    pub tx: mpsc::UnboundedSender<Record>,
    pub trial: Arc<AtomicU32>,
}

impl Reporter {
    pub fn event(&self, kind: EventKind) {
        self.event_at(self.clock.now_us(), kind);
    }

    /// An event that happened at another time than now (AWS events carry their own).
    pub(crate) fn event_at(&self, at_us: u64, kind: EventKind) {
        let e = Event { at_us, trial: self.trial.load(Ordering::Relaxed), kind: scrubbed(kind) };
        let _ = self.tx.send(Record::Event(e));
    }
}

/// An event's free texts come from servers, commands and AWS: none of them may carry a password
/// into events.jsonl or a report. Only those texts are scrubbed: roles, addresses and names are
/// data the analysis reads (a password "master" must not turn every role into `***`).
fn scrubbed(mut kind: EventKind) -> EventKind {
    kind.scrub_texts(crate::secret::scrub, crate::secret::scrub_command);
    kind
}
