//! `command=<shell command>`: anything else (kubectl, the aws cli, a script). Complete when the
//! command exits; a non-zero exit is a trigger error on the timeline. The command runs in a
//! session and a cgroup of its own (`crate::spawn`); everything it started is ended when it exits,
//! on timeout or when the run is interrupted: a script's children must not outlive the trial that
//! started them.

use super::{Trigger, TriggerContext, TriggerFuture};
use anyhow::{bail, Context};

#[derive(Clone, Debug, PartialEq)]
pub struct Command(pub String);

impl Trigger for Command {
    fn parse(arg: Option<&str>) -> Option<Self> {
        arg.filter(|c| !c.is_empty()).map(|c| Command(c.to_string()))
    }

    fn label(&self) -> String {
        format!("command={}", self.0)
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let done = run_shell(&self.0, ctx.max_wait).await?;
            if !done.status.success() {
                bail!("command exited with {}: {}", done.status, done.last_line(&done.stderr));
            }
            Ok(format!("command exited 0: {}", done.last_line(&done.stdout)))
        })
    }
}

/// A finished shell command: its exit status and the last bytes of what it printed.
pub(crate) struct ShellDone {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ShellDone {
    pub(crate) fn last_line<'a>(&self, text: &'a str) -> &'a str {
        text.lines().last().unwrap_or("").trim()
    }
}

/// How much of a command's output is kept (its end): a command that prints gigabytes does not
/// make failprobe hold them.
const KEPT_OUTPUT: usize = 4096;
/// Once `sh` exited and what it left was ended, how long its output may take to be read: a
/// descendant that escaped every clean-up (no cgroup, a `setsid`) may hold the pipes open for
/// ever, and must not make a finished command look hung.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// `sh -c command` in a session and cgroup of its own (`crate::spawn`), stdin closed, within
/// `max_wait`. Done when `sh` exits: what it left running (`cmd &`, `setsid`, job control) is
/// ended then; the whole lot is also ended on timeout or when the caller is dropped (Ctrl-C,
/// SIGTERM).
pub(crate) async fn run_shell(command: &str, max_wait: std::time::Duration) -> anyhow::Result<ShellDone> {
    // Hooks and commands get no password: `--pass-env` names what they need.
    let (mut child, mut guard) = crate::spawn::shell(command, &[], std::process::Stdio::null).context("starting sh")?;
    let (out, err) = (Tail::read(child.stdout.take().expect("piped")), Tail::read(child.stderr.take().expect("piped")));
    let status = tokio::time::timeout(max_wait, child.wait())
        .await
        .with_context(|| format!("command did not finish within {max_wait:?}; its processes were ended"))?
        .context("waiting for sh")?;
    guard.kill();
    let until = tokio::time::Instant::now() + DRAIN;
    Ok(ShellDone { status, stdout: out.finish(until).await, stderr: err.finish(until).await })
}

/// The last `KEPT_OUTPUT` bytes of a stream, read by a task until its end or until `finish`.
struct Tail {
    kept: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tail {
    fn read<R: tokio::io::AsyncRead + Unpin + Send + 'static>(mut r: R) -> Self {
        use tokio::io::AsyncReadExt;
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared = kept.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut kept = shared.lock().expect("not poisoned");
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > KEPT_OUTPUT {
                    let extra = kept.len() - KEPT_OUTPUT;
                    kept.drain(..extra);
                }
            }
        });
        Self { kept, task }
    }

    /// What was read by the end of the stream or by `until`, whichever comes first.
    async fn finish(mut self, until: tokio::time::Instant) -> String {
        let _ = tokio::time::timeout_at(until, &mut self.task).await;
        let kept = self.kept.lock().expect("not poisoned");
        String::from_utf8_lossy(&kept).into_owned()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.task.abort();
    }
}
