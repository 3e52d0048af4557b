//! `command=<shell command>`: anything else (kubectl, the aws cli, a script). Complete when the
//! command exits; a non-zero exit is a trigger error on the timeline.

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
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(ctx.max_wait, child)
                .await
                .with_context(|| format!("command did not finish within {:?}", ctx.max_wait))?
                .context("starting sh")?;
            let tail = |b: &[u8]| String::from_utf8_lossy(b).lines().last().unwrap_or("").trim().to_string();
            if !out.status.success() {
                bail!("command exited with {}: {}", out.status, tail(&out.stderr));
            }
            Ok(format!("command exited 0: {}", tail(&out.stdout)))
        })
    }
}
