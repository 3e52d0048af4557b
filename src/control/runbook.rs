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

/// Runs one step and records it; `Err` when a `before` step failed (the run must stop).
pub(crate) async fn step(name: &str, command: &str, max_wait: Duration, report: &Reporter) -> Result<()> {
    let (status, output, ok) = match run_shell(command, max_wait).await {
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
        let why = format!("--{name} `{command}` {status}: {output}");
        if name == "before" {
            return Err(UsageError::Invalid(format!("{why}; no failover was started")).into());
        }
        crate::note!("warning: {why}");
    }
    Ok(())
}
