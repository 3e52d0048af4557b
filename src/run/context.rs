//! What every phase of a trial shares: the run's context, and each client's part of a trial.

use super::touch::Consent;
use crate::aws::watch::AwsRun;
use crate::lab::Lab;
use crate::probe::client::{Client, Profile};
use crate::probe::engine::Engine;
use crate::probe::schedule::Health;
use crate::probe::TrialKeys;
use crate::scenario::Plan;
use crate::sink::Reporter;
use crate::target::Target;
use std::sync::Arc;
use tokio::sync::watch;

pub(super) struct RunContext {
    pub(super) plan: Plan,
    /// Where triggers act (`Prepared::control`).
    pub(super) control: Arc<Target>,
    pub(super) lab: Option<Arc<Lab>>,
    pub(super) prober: Arc<dyn Engine>,
    pub(super) report: Reporter,
    /// The client profiles measured side by side, failprobe's own first when measured.
    pub(super) profiles: Vec<Profile>,
    pub(super) cancel: watch::Receiver<bool>,
    pub(super) own_keys: std::sync::Mutex<Vec<String>>,
    pub(super) aws: Option<Arc<AwsRun>>,
    pub(super) run_id: String,
    pub(super) consent: Arc<Consent>,
    /// In a fleet: when this target's trigger may fire.
    pub(super) turn: Option<super::turn::TriggerTurn>,
    /// `--keep-clients`: the clients started for the first trial, kept for every other.
    pub(super) kept: tokio::sync::Mutex<Vec<(Profile, Arc<dyn Client>)>>,
}

/// One client profile during one trial: a fresh client (an application started before the
/// trial), its own keys and the health of its streams.
pub(super) struct ClientTrial {
    pub(super) profile: Profile,
    pub(super) client: Arc<dyn Client>,
    pub(super) keys: Vec<Arc<TrialKeys>>,
    /// Per shard, per stream (index `shard * 2 + stream`).
    pub(super) health: Vec<Arc<Health>>,
}
