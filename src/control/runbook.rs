//! The runbook's own steps around each trial: `--before CMD` (stop the batch jobs, drain a
//! queue) and `--after CMD` (resume them). Each runs like the `command` trigger (`sh -c` in a
//! session and cgroup of its own; done when `sh` exits, and what it left running is ended then,
//! on timeout or on interruption); its exit status and the end of its output go on the timeline. A failing `--before` stops the run before that trial's
//! trigger; `--after` runs after every trial that ran its `--before`, interrupted or not.

use super::command::run_shell;
use crate::error::UsageError;
use crate::sample::EventKind;
use crate::sink::Reporter;
use anyhow::Result;
use std::time::Duration;
use tokio::sync::watch;

/// How long `--after` may take once the run is stopping (Ctrl-C, SIGTERM): it still runs, but
/// a CI cancel follows its SIGTERM with a SIGKILL, and the report must be written before that.
pub(crate) const AFTER_WHEN_STOPPING: Duration = Duration::from_secs(30);

/// How a step ended, when it did not fail.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    Done,
    /// The run was stopped while it ran: its process group was ended.
    Interrupted,
}

/// What a stop signal does to a step: `End` it (`--before`: its whole group at once), or
/// `Shorten` it (`--after`, the clean-up: it goes on for at most `AFTER_WHEN_STOPPING` more).
pub(crate) enum OnStop {
    End(watch::Receiver<bool>),
    Shorten(watch::Receiver<bool>),
}

/// Runs one step and records it; `Err` when a `before` step failed (the run must stop).
pub(crate) async fn step(
    name: &str,
    command: &str,
    max_wait: Duration,
    report: &Reporter,
    on_stop: OnStop,
) -> Result<Step> {
    let (mut stop, ends) = match on_stop {
        OnStop::End(stop) => (stop, true),
        OnStop::Shorten(stop) => (stop, false),
    };
    let run = run_shell(command, max_wait);
    tokio::pin!(run);
    let finished = tokio::select! {
        done = &mut run => done,
        // The guard `wait_for` returns is dropped at once: held across the awaits below, it
        // would make the run's future unsendable (a fleet spawns each target's run).
        Ok(()) = async { stop.wait_for(|stop| *stop).await.map(|_| ()) } => {
            if ends {
                report.event(EventKind::RunbookStep {
                    step: name.to_string(),
                    command: command.to_string(),
                    status: "interrupted".to_string(),
                    output: "the run was stopped; its process group was ended".to_string(),
                });
                return Ok(Step::Interrupted);
            }
            match tokio::time::timeout(AFTER_WHEN_STOPPING, &mut run).await {
                Ok(done) => done,
                Err(_) => Err(anyhow::anyhow!(
                    "did not finish within {AFTER_WHEN_STOPPING:?} once the run was stopping; its process group was ended"
                )),
            }
        }
    };
    let (status, output, ok) = match finished {
        Ok(done) => {
            let output = match done.last_line(&done.stderr) {
                "" => done.last_line(&done.stdout).to_string(),
                err => err.to_string(),
            };
            (done.status.to_string(), output, done.status.success())
        }
        Err(e) => ("not finished".to_string(), format!("{e:#}"), false),
    };
    report.event(EventKind::RunbookStep {
        step: name.to_string(),
        command: command.to_string(),
        status: status.clone(),
        output: output.clone(),
    });
    if !ok {
        // The command as typed may carry a password: never printed or returned as it is.
        let why = crate::secret::scrub_command(&format!("--{name} `{command}` {status}: {output}"));
        if name == "before" {
            return Err(UsageError::Invalid(format!("{why}; no failover was started")).into());
        }
        crate::note!("warning: {why}");
    }
    Ok(Step::Done)
}
