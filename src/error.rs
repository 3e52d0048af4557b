//! Exit codes, and the errors a user can fix before any failover starts. Every error ends a
//! command with exit 2 ("no verdict"), whatever its type: `UsageError` exists for its messages
//! (what to fix, and that no failover was started). Errors travel as `anyhow::Error` with their
//! chain of context, printed whole (`{:#}`) and scrubbed of secrets by `main`.

use thiserror::Error;

/// Exit codes are part of the CI contract (see README).
pub const EXIT_PASS: i32 = 0;
pub const EXIT_BUDGET: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// An error the user can fix before any failover is started: bad flags, a malformed scenario,
/// an unreachable target, a refused confirmation.
#[derive(Debug, Error)]
pub enum UsageError {
    #[error("{0}")]
    Invalid(String),
    #[error("target not reachable: {0} (no failover was started)")]
    Unreachable(String),
    #[error("not confirmed: {0}")]
    NotConfirmed(String),
}

pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
    UsageError::Invalid(msg.into()).into()
}

/// Asks before something destructive: on a terminal the user types `yes`; anywhere else (CI, a
/// pipe) the answer is no and the error says to pass `--yes`. `what` completes "failprobe will …".
pub fn ask_to_confirm(what: &str, why: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(UsageError::NotConfirmed(format!("{what}\n({why}; pass --yes to confirm)")).into());
    }
    crate::note_raw!("failprobe will {what} ({why}).\nType `yes` to go ahead: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        return Err(UsageError::NotConfirmed(what.to_string()).into());
    }
    Ok(())
}
