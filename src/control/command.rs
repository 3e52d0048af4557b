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

/// `sh -c command` in a process group of its own, stdin closed, within `max_wait`; the whole
/// group is ended on timeout or when the caller is dropped (Ctrl-C, SIGTERM).
pub(crate) async fn run_shell(command: &str, max_wait: std::time::Duration) -> anyhow::Result<ShellDone> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("starting sh")?;
    // Dropped on every path out of here (timeout, Ctrl-C/SIGTERM dropping this future): ends
    // the group unless the command finished.
    let mut group = crate::os::GroupGuard::new(child.id());
    let (out, err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let finished = async {
        let (stdout, stderr, status) = tokio::join!(tail_of(out), tail_of(err), child.wait());
        Ok::<_, std::io::Error>((stdout, stderr, status?))
    };
    let (stdout, stderr, status) = tokio::time::timeout(max_wait, finished)
        .await
        .with_context(|| format!("command did not finish within {max_wait:?}; its process group was ended"))?
        .context("waiting for sh")?;
    group.disarm();
    Ok(ShellDone { status, stdout, stderr })
}

/// The last `KEPT_OUTPUT` bytes of a stream, read to its end.
async fn tail_of<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> String {
    use tokio::io::AsyncReadExt;
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > KEPT_OUTPUT {
            kept.drain(..kept.len() - KEPT_OUTPUT);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
