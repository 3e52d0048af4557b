//! `fis=<experiment-template-id>`: an AWS Fault Injection Service experiment (e.g.
//! `aws:elasticache:replicationgroup-interrupt-az-power`) as the failover's cause. Confirmed
//! with the template's actions and targets; waited for until it has ended; stopped when the run
//! stops first (Ctrl-C, SIGTERM) or it outlasts `--max-trial`. Its states are on the timeline.

use super::{BoxFuture, Checked, Trigger, TriggerContext, TriggerFuture};
use crate::aws::fis::{self, Experiment, State, StopOnDrop, STOP_WAIT};
use crate::aws::watch::AwsRun;
use crate::error::invalid;
use anyhow::{anyhow, Result};
use std::sync::Arc;
use std::time::Duration;

/// `fis=<experiment-template-id>`.
#[derive(Clone, Debug, PartialEq)]
pub struct FisExperiment(pub String);

fn aws_of(ctx: &TriggerContext) -> Result<&Arc<AwsRun>> {
    ctx.aws.as_ref().ok_or_else(|| invalid("fis= needs --replication-group or --cache-cluster (the probed resource)"))
}

impl FisExperiment {
    /// The template, read and written out: the confirmation shows what the experiment does and
    /// to what, and every call each trial may make.
    async fn api_call(&self, ctx: &TriggerContext) -> Result<String> {
        let aws = aws_of(ctx)?;
        let t = fis::describe_template(&fis::client(aws).await?, &self.0).await?;
        if t.actions.is_empty() {
            return Err(invalid(format!("FIS experiment template {} has no action", t.id)));
        }
        if let Some(group) = &aws.group {
            let names_group = t.arns.iter().any(|a| a.ends_with(&format!(":replicationgroup:{group}")));
            if !t.arns.is_empty() && !names_group {
                crate::note!("note: the targets of FIS template {} do not name {group}, the probed group", t.id);
            }
        }
        let endpoint = std::env::var("AWS_ENDPOINT_URL_FIS").ok();
        let endpoint = endpoint.as_deref().map(crate::target::redact).unwrap_or_else(|| "AWS's".into());
        let description = if t.description.is_empty() { String::new() } else { format!(" \"{}\"", t.description) };
        Ok(format!(
            "StartExperiment experimentTemplateId={}{description} (FIS endpoint {endpoint})\n    its actions, as GetExperimentTemplate gives them: {}\n    its targets: {}\n    then GetExperiment every {:?} until it ends; StopExperiment if the run is stopped (Ctrl-C, SIGTERM) or the experiment outlasts --max-trial {:?}",
            t.id,
            t.actions.join("; "),
            t.targets.join("; "),
            aws.poll,
            ctx.max_wait
        ))
    }
}

impl Trigger for FisExperiment {
    fn parse(arg: Option<&str>) -> Option<Self> {
        arg.filter(|id| !id.is_empty() && !id.contains(char::is_whitespace)).map(|id| Self(id.to_string()))
    }

    fn label(&self) -> String {
        format!("fis={}", self.0)
    }

    /// The summary's trigger is the service, whichever template it runs.
    fn kind(&self) -> String {
        "fis".into()
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(async move { Ok(Checked { api_call: Some(self.api_call(ctx).await?), process: None }) })
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let aws = aws_of(ctx)?;
            let experiment = Experiment::start(fis::client(aws).await?, aws.clone(), &self.0).await?;
            // From here the experiment acts on the deployment: a cancelled trial drops this
            // future, and the guard stops the experiment.
            let guard = StopOnDrop::new(experiment.clone());
            let ended = wait_until_ended(&experiment, aws.poll, ctx.max_wait).await;
            let id = &experiment.id;
            match ended {
                Some(state) if state.status == "completed" => {
                    guard.disarm();
                    Ok(format!("FIS experiment {id} of template {}: {}", self.0, state.text()))
                }
                Some(state) => {
                    guard.disarm();
                    Err(anyhow!("FIS experiment {id} of template {} ended {}", self.0, state.text()))
                }
                None => {
                    let was = experiment.last().map_or_else(|| "unknown".into(), |s| s.text());
                    // Still armed while it stops: a stop signal now drops this, and the guard
                    // stops it again (harmless to an experiment already stopping).
                    let now = match experiment.stop(STOP_WAIT).await {
                        Ok(state) => format!("stopped it (StopExperiment): {}", state.text()),
                        Err(e) => format!("could not stop it ({e}): run {}", fis::stop_cli(id)),
                    };
                    guard.disarm();
                    Err(anyhow!("FIS experiment {id} still {was} after --max-trial {:?}; {now}", ctx.max_wait))
                }
            }
        })
    }
}

/// GetExperiment every `poll` until the experiment ended (its final state) or `limit` passed
/// (None). A failed call is retried until then: the experiment runs on whether we see it or not.
async fn wait_until_ended(experiment: &Experiment, poll: Duration, limit: Duration) -> Option<State> {
    let until = tokio::time::Instant::now() + limit;
    loop {
        match experiment.poll().await {
            Ok(state) if state.is_final() => return Some(state),
            Ok(_) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        if tokio::time::Instant::now() + poll > until {
            return None;
        }
        tokio::time::sleep(poll).await;
    }
}
