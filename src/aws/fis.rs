//! AWS Fault Injection Service: an experiment started from a template, followed until it ends,
//! and stopped when the run stops first. Each state it reaches goes on the run's timeline beside
//! ElastiCache's events. The trigger that uses it is `control::fis`.
//!
//! The run may end while an experiment is still acting on the deployment (Ctrl-C, SIGTERM): the
//! trigger's future is then dropped, and `StopOnDrop` asks FIS to stop it from a task the run's
//! teardown waits for (`finish_stops`).

use super::error::{explain, AwsError};
use super::events::{AwsEvent, Class};
use super::watch::AwsRun;
use aws_sdk_fis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_fis::types::Experiment as SdkExperiment;
use aws_sdk_fis::Client;
use chrono::{DateTime, TimeZone, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The `source_type` of a FIS experiment's events on the timeline.
pub(crate) const SOURCE_TYPE: &str = "fis-experiment";
/// After StopExperiment, how long its state is followed until `stopped`: the teardown waits for
/// this at most (a CI's SIGKILL follows its SIGTERM within seconds).
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(8);

/// A FIS client with the run's region, profile and credentials, but not `--endpoint-url`: that
/// is ElastiCache's endpoint. `AWS_ENDPOINT_URL_FIS` points this one elsewhere.
pub(crate) async fn client(aws: &AwsRun) -> anyhow::Result<Client> {
    let args = super::AwsArgs { endpoint_url: None, ..aws.api.clone() };
    Ok(Client::new(&super::config(&args).await?))
}

/// An SDK error as `explain` words it, with FIS's own words where ElastiCache's would mislead.
fn fis_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let mut e = explain(operation, err);
    let what = if operation.contains("Template") || operation == "StartExperiment" {
        "experiment template"
    } else {
        "experiment"
    };
    e.hint = match e.code.as_deref() {
        None => {
            e.message = e.message.replace("ElastiCache", "FIS");
            Some("the FIS API could not be reached: check --region, AWS_ENDPOINT_URL_FIS and the network".into())
        }
        Some("AccessDenied" | "AccessDeniedException") => {
            Some(format!("these credentials may not call fis:{operation} (IAM policy)"))
        }
        Some("ResourceNotFoundException") => Some(format!("no such {what} here: check the id and --region")),
        _ => e.hint,
    };
    e
}

/// An experiment template as the confirmation shows it: what it does, and to what.
#[derive(Debug)]
pub(crate) struct Template {
    pub(crate) id: String,
    pub(crate) description: String,
    /// `name: action-id (parameters) on target-names`, sorted by name.
    pub(crate) actions: Vec<String>,
    /// `name: resource-type resources (selection mode)`, sorted by name.
    pub(crate) targets: Vec<String>,
    /// Every ARN the targets name (for the check that the probed group is among them).
    pub(crate) arns: Vec<String>,
}

/// GetExperimentTemplate: its actions and targets, written out.
pub(crate) async fn describe_template(client: &Client, id: &str) -> Result<Template, AwsError> {
    let out =
        client.get_experiment_template().id(id).send().await.map_err(|e| fis_error("GetExperimentTemplate", e))?;
    let t = out.experiment_template().ok_or_else(|| AwsError {
        operation: "GetExperimentTemplate",
        code: None,
        message: "the answer holds no template".into(),
        hint: None,
    })?;
    let pairs = |m: Option<&std::collections::HashMap<String, String>>| {
        let mut v: Vec<String> = m.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
        v.sort();
        v.join(" ")
    };
    let mut actions: Vec<String> = t
        .actions()
        .into_iter()
        .flatten()
        .map(|(name, a)| {
            let mut on: Vec<&str> = a.targets().into_iter().flatten().map(|(_, t)| t.as_str()).collect();
            on.sort();
            let params = pairs(a.parameters());
            let params = if params.is_empty() { String::new() } else { format!(" ({params})") };
            format!("{name}: {}{params} on {}", a.action_id().unwrap_or("?"), on.join(", "))
        })
        .collect();
    actions.sort();
    let mut targets: Vec<String> = t
        .targets()
        .into_iter()
        .flatten()
        .map(|(name, t)| {
            let mut what = t.resource_arns().to_vec();
            let tags = pairs(t.resource_tags());
            if !tags.is_empty() {
                what.push(format!("tagged {tags}"));
            }
            what.extend(t.filters().iter().map(|f| format!("{} in {}", f.path().unwrap_or("?"), f.values().join("|"))));
            let mode = t.selection_mode().unwrap_or("?");
            format!("{name}: {} {} ({mode})", t.resource_type().unwrap_or("?"), what.join(", "))
        })
        .collect();
    targets.sort();
    let arns = t.targets().into_iter().flatten().flat_map(|(_, t)| t.resource_arns().to_vec()).collect();
    Ok(Template {
        id: t.id().unwrap_or(id).to_string(),
        description: t.description().unwrap_or_default().to_string(),
        actions,
        targets,
        arns,
    })
}

/// Where an experiment stands: its status, and AWS's reason or error when it gives one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct State {
    pub(crate) status: String,
    pub(crate) reason: Option<String>,
    /// When it ended, as AWS says (only once it has).
    pub(crate) ended: Option<DateTime<Utc>>,
}

impl State {
    fn of(e: &SdkExperiment) -> Self {
        let state = e.state();
        let error = state.and_then(|s| s.error()).and_then(|e| e.code()).map(|c| format!("error {c}"));
        let reason = match (state.and_then(|s| s.reason()), error) {
            (Some(r), Some(e)) => Some(format!("{r} ({e})")),
            (r, e) => r.map(str::to_string).or(e),
        };
        let ended = e.end_time().and_then(|t| Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single());
        let status = state.and_then(|s| s.status()).map_or("unknown", |s| s.as_str()).to_string();
        State { status, reason, ended }
    }

    /// Completed, stopped, failed or cancelled: nothing more will happen.
    pub(crate) fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "stopped" | "failed" | "cancelled")
    }

    pub(crate) fn class(&self) -> Class {
        match self.status.as_str() {
            "running" => Class::ExperimentRunning,
            _ if self.is_final() => Class::ExperimentEnded,
            _ => Class::Other,
        }
    }

    /// `running`, or `failed: <AWS's reason>`.
    pub(crate) fn text(&self) -> String {
        match &self.reason {
            Some(r) if !r.is_empty() => format!("{}: {r}", self.status),
            _ => self.status.clone(),
        }
    }
}

/// A started experiment: its calls, and each new state on the run's timeline.
pub(crate) struct Experiment {
    client: Client,
    aws: Arc<AwsRun>,
    pub(crate) id: String,
    template: String,
    last: Mutex<Option<State>>,
}

impl Experiment {
    /// StartExperiment from `template`; its first state goes on the timeline.
    pub(crate) async fn start(client: Client, aws: Arc<AwsRun>, template: &str) -> Result<Arc<Self>, AwsError> {
        // One token per trial: a retried StartExperiment must not start a second experiment.
        let token = format!("failprobe-{}", crate::probe::keys::new_run_id());
        let out = client
            .start_experiment()
            .experiment_template_id(template)
            .client_token(token)
            .send()
            .await
            .map_err(|e| fis_error("StartExperiment", e))?;
        let e = out.experiment().ok_or_else(|| no_experiment("StartExperiment"))?;
        let id = e.id().ok_or_else(|| no_experiment("StartExperiment"))?.to_string();
        let started = Arc::new(Experiment { client, aws, id, template: template.to_string(), last: Mutex::new(None) });
        started.record(State::of(e));
        Ok(started)
    }

    /// GetExperiment; a new state goes on the timeline.
    pub(crate) async fn poll(&self) -> Result<State, AwsError> {
        let out = self.client.get_experiment().id(&self.id).send().await.map_err(|e| fis_error("GetExperiment", e))?;
        let state = State::of(out.experiment().ok_or_else(|| no_experiment("GetExperiment"))?);
        self.record(state.clone());
        Ok(state)
    }

    /// StopExperiment, then its state until `stopped` (or another end) or `limit`.
    pub(crate) async fn stop(&self, limit: Duration) -> Result<State, AwsError> {
        let out =
            self.client.stop_experiment().id(&self.id).send().await.map_err(|e| fis_error("StopExperiment", e))?;
        let mut state = State::of(out.experiment().ok_or_else(|| no_experiment("StopExperiment"))?);
        self.record(state.clone());
        let until = tokio::time::Instant::now() + limit;
        while !state.is_final() && tokio::time::Instant::now() + self.aws.poll <= until {
            tokio::time::sleep(self.aws.poll).await;
            state = self.poll().await?;
        }
        Ok(state)
    }

    /// The last state seen.
    pub(crate) fn last(&self) -> Option<State> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// A state differing from the last one seen goes on the timeline: at AWS's end time once it
    /// ended, else when it was seen (FIS gives no time for the other changes).
    fn record(&self, state: State) {
        let Ok(mut last) = self.last.lock() else { return };
        if last.as_ref() == Some(&state) {
            return;
        }
        let event = AwsEvent {
            date: state.ended.unwrap_or_else(Utc::now),
            source_type: SOURCE_TYPE.into(),
            source_id: self.id.clone(),
            message: format!("FIS experiment of template {}: {}", self.template, state.text()),
        };
        self.aws.on_timeline(&event, state.class());
        *last = Some(state);
    }
}

fn no_experiment(operation: &'static str) -> AwsError {
    AwsError { operation, code: None, message: "the answer holds no experiment".into(), hint: None }
}

/// The AWS CLI command that stops an experiment, for when failprobe could not.
pub(crate) fn stop_cli(id: &str) -> String {
    format!("aws fis stop-experiment --id {id}")
}

/// Stops the experiment when dropped armed: the trial that started it was cancelled (Ctrl-C,
/// SIGTERM) and its fault must not outlive the run. A drop cannot wait, so the StopExperiment
/// runs on a task the run's teardown waits for.
pub(crate) struct StopOnDrop(Option<Arc<Experiment>>);

/// Stops started by dropped triggers, not yet waited for: (experiment id, its task).
static PENDING_STOPS: Mutex<Vec<(String, JoinHandle<()>)>> = Mutex::new(Vec::new());

impl StopOnDrop {
    pub(crate) fn new(experiment: Arc<Experiment>) -> Self {
        Self(Some(experiment))
    }

    /// The experiment ended or was stopped by the trigger itself: nothing to do on drop.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(experiment) = self.0.take() else { return };
        let id = experiment.id.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            crate::note!("error: FIS experiment {id} may still be running; stop it with: {}", stop_cli(&id));
            return;
        };
        let task = runtime.spawn(async move {
            match experiment.stop(STOP_WAIT).await {
                Ok(state) => crate::note!("stopped FIS experiment {}: {}", experiment.id, state.text()),
                Err(e) => crate::note!("error: {e}; stop it with: {}", stop_cli(&experiment.id)),
            }
        });
        if let Ok(mut pending) = PENDING_STOPS.lock() {
            pending.push((id, task));
        }
    }
}

/// Waits (at most `limit` in all) for the stops dropped triggers started; says how to stop by
/// hand each experiment whose stop did not finish. The run's teardown calls it before it reads
/// AWS's last events, so the experiments' last states are on the timeline.
pub(crate) async fn finish_stops(limit: Duration) {
    let pending: Vec<(String, JoinHandle<()>)> =
        PENDING_STOPS.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
    let until = tokio::time::Instant::now() + limit;
    for (id, mut task) in pending {
        if tokio::time::timeout_at(until, &mut task).await.is_err() {
            task.abort();
            crate::note!(
                "error: FIS experiment {id} did not confirm its stop in time; stop it with: {}",
                stop_cli(&id)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str, reason: Option<&str>) -> State {
        State { status: status.into(), reason: reason.map(Into::into), ended: None }
    }

    #[test]
    fn only_the_four_ends_are_final_and_each_state_has_its_class() {
        for s in ["completed", "stopped", "failed", "cancelled"] {
            assert!(state(s, None).is_final(), "{s}");
            assert_eq!(state(s, None).class(), Class::ExperimentEnded);
        }
        for s in ["pending", "initiating", "running", "stopping"] {
            assert!(!state(s, None).is_final(), "{s}");
        }
        assert_eq!(state("running", None).class(), Class::ExperimentRunning);
        assert_eq!(state("initiating", None).class(), Class::Other);
        assert_eq!(state("failed", Some("Target resolution failed.")).text(), "failed: Target resolution failed.");
    }
}
