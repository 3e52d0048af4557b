//! `command=<shell command>`: anything else (kubectl, the aws cli, a script). Complete when the
//! command exits; a non-zero exit is a trigger error on the timeline. The command runs in its own
//! process group, and the whole group is ended on timeout or when the run is interrupted: a
//! script's children must not outlive the trial that started them.

use super::{Trigger, TriggerContext, TriggerFuture};
use anyhow::{bail, Context};

pub struct Command(pub String);

impl Trigger for Command {
    fn kind(&self) -> String {
        format!("command={}", self.0)
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&self.0)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .context("starting sh")?;
            // Dropped on every path out of here (timeout, Ctrl-C/SIGTERM dropping this future):
            // ends the group unless the command finished.
            let mut group = crate::os::GroupGuard::new(child.id());
            let out = tokio::time::timeout(ctx.max_wait, child.wait_with_output())
                .await
                .with_context(|| {
                    format!("command did not finish within {:?}; its process group was ended", ctx.max_wait)
                })?
                .context("waiting for sh")?;
            group.disarm();
            let tail = |b: &[u8]| String::from_utf8_lossy(b).lines().last().unwrap_or("").trim().to_string();
            if !out.status.success() {
                bail!("command exited with {}: {}", out.status, tail(&out.stderr));
            }
            Ok(format!("command exited 0: {}", tail(&out.stdout)))
        })
    }
}
