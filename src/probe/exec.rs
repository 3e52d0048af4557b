//! External client adapters (`--clients exec:NAME=COMMAND`): the application's own client
//! library, driven over JSON lines, probed on the same schedule as failprobe's own client.
//!
//! Protocol version 1 (adapters/README.md). failprobe starts `sh -c COMMAND` in
//! a session and cgroup of its own (`crate::spawn`: ended with everything it started, also when
//! failprobe dies), with an environment of `FAILPROBE_TARGET` (the URL without its password),
//! `FAILPROBE_PASSWORD` (when there is one), `FAILPROBE_TIMEOUT_MS`, `FAILPROBE_TLS_CA_FILE`,
//! `FAILPROBE_CLIENT_NAME` (the name its connections are to carry, when the run counts them), and
//! what `--pass-env` names:
//! - adapter → `{"hello": 1, "client": …, "version": …, "settings": {…}}` within 10 s
//!   (`FAILPROBE_HELLO_TIMEOUT`, e.g. `30s`, in failprobe's environment gives a slow starter
//!   longer, saying so on stderr once the 10 s are past);
//! - failprobe → `{"id": N, "cmd": ["ARG", …]}` at each probe's scheduled time, whether or not
//!   earlier ones were answered;
//! - adapter → `{"id": N, "ok": true, "value": …}` or `{"id": N, "ok": false, "kind":
//!   "timeout"|"connection"|"server"|"other", "error": "…"}`, in any order;
//! - failprobe closes stdin at the end; the adapter exits within 2 s or its group is killed.
//!
//! An adapter that exits, prints a line that is not JSON, answers an id never sent or one twice,
//! or stops reading is broken (and is read no further): the fault goes on the timeline with its exit status and last stderr lines,
//! its probes fail with class `adapter`, and the other clients go on.

use super::keys::TrialKeys;
use super::{Attempt, Prober};
use crate::probe::client::ExecSpec;
use crate::sample::{ErrorClass, EventKind};
use crate::sink::Reporter;
use crate::target::error::{class_from_text, ProbeError};
use crate::target::Target;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout, timeout_at, Instant};

/// The protocol version this failprobe speaks; an adapter may say any from 1 to it.
pub(crate) const PROTOCOL: u64 = 2;
/// The first version with subscriptions (`{"subscribe": …}`, `{"msg": …}`).
const SUBSCRIBES_FROM: u64 = 2;
/// How long an adapter has to say hello, unless `FAILPROBE_HELLO_TIMEOUT` says longer.
const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// failprobe's environment variable that gives a slow starter (a JVM on a loaded machine) longer.
const HELLO_TIMEOUT_VAR: &str = "FAILPROBE_HELLO_TIMEOUT";
/// How long an adapter has to exit once its stdin is closed.
const EXIT_WITHIN: Duration = Duration::from_secs(2);
/// The longest line read from an adapter: a longer one is a protocol fault, not a buffer.
const MAX_LINE: usize = 64 * 1024;
/// Requests written ahead of an adapter that does not read them: past this it is broken.
const MAX_QUEUED: usize = 10_000;
/// Stderr lines kept for a fault report, each cut to `MAX_STDERR_LINE` bytes.
const STDERR_LINES: usize = 10;
const MAX_STDERR_LINE: usize = 500;
/// Ids past their deadline remembered, so that their late answer is told from a second one.
const MAX_LATE: usize = 100_000;
/// No answer at all for this long while requests wait: reported once, until it answers again.
const SILENCE: Duration = Duration::from_secs(5);
/// Writes: the same three steps as failprobe's MULTI/EXEC, as one script on keys sharing a hash
/// tag, so that a cluster client routes it and the write log is checked the same way.
const WRITE_SCRIPT: &str = "redis.call('RPUSH', KEYS[1], ARGV[1]) redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
local c = tonumber(redis.call('GET', KEYS[2])) \
if not c or c < tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) end return 1";

pub(crate) struct ExecClient {
    name: String,
    server: String,
    report: Reporter,
    /// Lines for the adapter's stdin; None once failprobe is done with it.
    requests: Mutex<Option<mpsc::Sender<String>>>,
    pending: Mutex<Pending>,
    /// The last id sent: an answer to a higher one answers nothing failprobe asked.
    last_id: AtomicU64,
    /// Why the adapter is unusable, once it is.
    broken: Mutex<Option<String>>,
    last_answer: Mutex<Instant>,
    silence_reported: AtomicBool,
    stderr: Arc<Mutex<VecDeque<String>>>,
    exit: Arc<Mutex<Option<std::process::ExitStatus>>>,
    stop: watch::Sender<bool>,
    /// The protocol version its hello said.
    protocol: u64,
    /// `--probe pubsub`: the trial's subscription its messages are recorded for.
    subscription: Mutex<Option<Arc<super::pubsub::SubscribeTask>>>,
}

/// A line from the adapter: an answer, or (protocol 2) a message its subscription received.
#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Reply(Reply),
    Message { msg: String, payload: String },
}

/// One answer, as the adapter sent it.
#[derive(Deserialize)]
struct Reply {
    id: u64,
    ok: bool,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    error: String,
}

enum Answer {
    Value(Value),
    Failed(ProbeError),
}

/// Ids sent and not answered yet: waiting for their answer, or past their deadline (a late
/// answer is no fault; a second answer to an id is).
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    late: HashSet<u64>,
    /// `late` in the order they timed out, the oldest forgotten past `MAX_LATE`.
    late_order: VecDeque<u64>,
    /// The highest id forgotten: an answer at or below it may be a late one.
    forgotten: u64,
}

enum Answered {
    Waiting(oneshot::Sender<Answer>),
    Late,
    Twice,
}

impl Pending {
    /// The id's deadline passed: its answer, if it comes, is late.
    fn expire(&mut self, id: u64) {
        if self.waiting.remove(&id).is_none() {
            return;
        }
        self.late.insert(id);
        self.late_order.push_back(id);
        if self.late_order.len() > MAX_LATE {
            if let Some(old) = self.late_order.pop_front() {
                self.late.remove(&old);
                self.forgotten = self.forgotten.max(old);
            }
        }
    }

    /// An answer to `id`, which was sent.
    fn answer(&mut self, id: u64) -> Answered {
        if let Some(waiting) = self.waiting.remove(&id) {
            return Answered::Waiting(waiting);
        }
        if self.late.remove(&id) || id <= self.forgotten {
            return Answered::Late;
        }
        Answered::Twice
    }
}

#[derive(Deserialize)]
struct Hello {
    hello: u64,
    #[serde(default)]
    client: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    settings: Value,
}

impl ExecClient {
    /// Starts the adapter and waits for its hello; an adapter that does not say it within 10 s
    /// (or says another protocol) is an error before anything is triggered.
    pub(crate) async fn start(
        spec: &ExecSpec,
        target: &Target,
        limit: Duration,
        report: Reporter,
    ) -> Result<Arc<Self>, ProbeError> {
        // Dropped on every early return below: the adapter and what it started end with it.
        let (mut child, group) = spawn(spec, target, limit)?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(keep_stderr(child.stderr.take().expect("piped"), stderr.clone()));
        let fail = |why: String| {
            let tail = tail_of(&stderr);
            ProbeError::new(ErrorClass::Adapter, format!("adapter `{}` {why}{tail}", spec.name))
        };
        let within = hello_within().map_err(fail)?;
        let started = Instant::now();
        let first = timeout(HELLO_WITHIN.min(within), read_line(&mut stdout)).await;
        let first = match first {
            Err(_) if within > HELLO_WITHIN => {
                // Never a silent wait: the longer deadline is said once the usual one is past.
                crate::note!(
                    "adapter `{}` has not said hello within {HELLO_WITHIN:?}: waiting up to {within:?} ({HELLO_TIMEOUT_VAR})",
                    spec.name
                );
                timeout(within.saturating_sub(started.elapsed()), read_line(&mut stdout)).await
            }
            first => first,
        };
        let hello = match first {
            Err(_) if within > HELLO_WITHIN => {
                return Err(fail(format!("did not say hello within {within:?} ({HELLO_TIMEOUT_VAR})")))
            }
            Err(_) => {
                return Err(fail(format!(
                    "did not say hello within {within:?} (a slow starter, such as a JVM on a loaded machine: \
                     {HELLO_TIMEOUT_VAR}=30s gives it longer)"
                )))
            }
            Ok(Ok(Some(line))) => serde_json::from_str::<Hello>(&line)
                .map_err(|_| fail(format!("said `{}` instead of hello", cut(&line, 200))))?,
            Ok(Ok(None)) => {
                let status = timeout(Duration::from_secs(1), child.wait()).await;
                let status = status.ok().and_then(Result::ok).map(|s| format!(" ({s})")).unwrap_or_default();
                return Err(fail(format!("exited before its hello{status}")));
            }
            Ok(Err(e)) => return Err(fail(e)),
        };
        if !(1..=PROTOCOL).contains(&hello.hello) {
            return Err(fail(format!("speaks protocol {}, this failprobe speaks 1 to {PROTOCOL}", hello.hello)));
        }
        report.event(EventKind::ClientHello {
            client: spec.name.clone(),
            library: hello.client,
            version: hello.version,
            settings: hello.settings,
        });
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        let client = Arc::new(Self {
            name: spec.name.clone(),
            server: format!("adapter {}", spec.name),
            report,
            requests: Mutex::new(Some(tx)),
            pending: Mutex::new(Pending::default()),
            last_id: AtomicU64::new(0),
            broken: Mutex::new(None),
            last_answer: Mutex::new(Instant::now()),
            silence_reported: AtomicBool::new(false),
            stderr,
            exit: Arc::new(Mutex::new(None)),
            stop: watch::channel(false).0,
            protocol: hello.hello,
            subscription: Mutex::new(None),
        });
        tokio::spawn(client.clone().write_requests(stdin, rx));
        tokio::spawn(client.clone().read_answers(stdout));
        tokio::spawn(client.clone().supervise(child, group));
        Ok(client)
    }

    /// One command through the adapter, answered by `deadline`.
    async fn call(&self, cmd: Vec<String>, deadline: Instant) -> Result<Value, ProbeError> {
        if let Some(why) = self.broken() {
            return Err(ProbeError::new(ErrorClass::Adapter, why));
        }
        let id = self.last_id.fetch_add(1, Ordering::SeqCst) + 1;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("not poisoned").waiting.insert(id, tx);
        let line = serde_json::json!({ "id": id, "cmd": cmd }).to_string();
        let sent = match self.requests.lock().expect("not poisoned").as_ref() {
            Some(requests) => requests.try_send(line).map_err(|e| matches!(e, mpsc::error::TrySendError::Full(_))),
            None => Err(false),
        };
        if let Err(full) = sent {
            self.pending.lock().expect("not poisoned").waiting.remove(&id);
            if full {
                self.break_with(format!("does not read its input: {MAX_QUEUED} requests waiting"), true);
            }
            return Err(ProbeError::new(
                ErrorClass::Adapter,
                self.broken().unwrap_or_else(|| "adapter stopped".into()),
            ));
        }
        match timeout_at(deadline, rx).await {
            Ok(Ok(Answer::Value(v))) => Ok(v),
            Ok(Ok(Answer::Failed(e))) => Err(e),
            // Its sender went with a fault: every waiting request fails with it.
            Ok(Err(_)) => Err(ProbeError::new(ErrorClass::Adapter, self.broken().unwrap_or_default())),
            Err(_) => {
                self.pending.lock().expect("not poisoned").expire(id);
                self.note_silence();
                Err(ProbeError::timeout("adapter answer"))
            }
        }
    }

    fn broken(&self) -> Option<String> {
        self.broken.lock().expect("not poisoned").clone()
    }

    /// Why the adapter is unusable (`adapter check`); None while it keeps the protocol.
    pub(crate) fn fault(&self) -> Option<String> {
        self.broken()
    }

    /// Closes its stdin and waits for it to exit (`adapter check`): how long it took and its
    /// status, or None when it had to be killed after `EXIT_WITHIN`.
    pub(crate) async fn stop_and_wait(&self) -> (Duration, Option<std::process::ExitStatus>) {
        let started = Instant::now();
        Prober::stop(self);
        loop {
            if let Some(status) = *self.exit.lock().expect("not poisoned") {
                let took = started.elapsed();
                return (took, (took < EXIT_WITHIN).then_some(status));
            }
            if started.elapsed() > EXIT_WITHIN * 3 {
                return (started.elapsed(), None);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One command through the adapter, as a probe sends it (`adapter check`).
    pub(crate) async fn request(&self, cmd: Vec<String>, deadline: Instant) -> Result<Value, ProbeError> {
        self.call(cmd, deadline).await
    }

    /// The adapter is unusable from now on: said once on the timeline, with its exit status
    /// and last stderr lines; every waiting request fails. `kill`: it is still running and
    /// misbehaving, so its group is ended.
    fn break_with(&self, why: String, kill: bool) {
        {
            let mut broken = self.broken.lock().expect("not poisoned");
            if broken.is_some() {
                return;
            }
            *broken = Some(format!("adapter `{}` {why}", self.name));
        }
        self.pending.lock().expect("not poisoned").waiting.clear();
        let status = self.exit.lock().expect("not poisoned").map(|s| format!(" ({s})")).unwrap_or_default();
        let message = format!("{why}{status}{}", tail_of(&self.stderr));
        self.report.event(EventKind::AdapterFault { client: self.name.clone(), message });
        if kill {
            let _ = self.stop.send(true);
        }
    }

    /// "exited" once the supervisor has its exit status (it is given a second), else `otherwise`:
    /// a closed pipe and the exit that closed it arrive in either order.
    async fn exited_or(&self, otherwise: &str) -> String {
        for _ in 0..50 {
            if self.exit.lock().expect("not poisoned").is_some() {
                return "exited".to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        otherwise.to_string()
    }

    /// A request timed out: when nothing at all was answered for `SILENCE`, say so once.
    fn note_silence(&self) {
        let quiet_for = self.last_answer.lock().expect("not poisoned").elapsed();
        if quiet_for >= SILENCE && !self.silence_reported.swap(true, Ordering::SeqCst) {
            let message = format!("has not answered for {:.1} s{}", quiet_for.as_secs_f64(), tail_of(&self.stderr));
            self.report.event(EventKind::AdapterFault { client: self.name.clone(), message });
        }
    }

    async fn write_requests(self: Arc<Self>, mut stdin: ChildStdin, mut rx: mpsc::Receiver<String>) {
        while let Some(mut line) = rx.recv().await {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                let why = self.exited_or("closed its input").await;
                self.break_with(why, true);
                return;
            }
        }
        // Every sender is gone: failprobe is done, and the adapter sees end of input.
        drop(stdin);
    }

    /// Until end of output or the first fault: a broken adapter is read no further, so one
    /// that floods failprobe with lines costs nothing once it is broken.
    async fn read_answers(self: Arc<Self>, mut stdout: BufReader<tokio::process::ChildStdout>) {
        while self.broken().is_none() {
            let line = match read_line(&mut stdout).await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    if !*self.stop.borrow() {
                        let why = self.exited_or("closed its output").await;
                        self.break_with(why, true);
                    }
                    return;
                }
                Err(why) => {
                    self.break_with(why, true);
                    return;
                }
            };
            let reply = match serde_json::from_str::<Line>(&line) {
                Ok(Line::Reply(reply)) => reply,
                Ok(Line::Message { msg, payload }) if self.protocol >= SUBSCRIBES_FROM => {
                    if let Err(why) = self.message(&msg, &payload) {
                        self.break_with(why, true);
                        return;
                    }
                    continue;
                }
                Ok(Line::Message { .. }) => {
                    let why =
                        format!("printed a message, which protocol {} has not: `{}`", self.protocol, cut(&line, 200));
                    self.break_with(why, true);
                    return;
                }
                Err(_) => {
                    self.break_with(format!("printed a line that is not an answer: `{}`", cut(&line, 200)), true);
                    return;
                }
            };
            if reply.id == 0 || reply.id > self.last_id.load(Ordering::SeqCst) {
                self.break_with(format!("answered id {}, which was never sent", reply.id), true);
                return;
            }
            *self.last_answer.lock().expect("not poisoned") = Instant::now();
            self.silence_reported.store(false, Ordering::SeqCst);
            let answered = self.pending.lock().expect("not poisoned").answer(reply.id);
            match answered {
                Answered::Waiting(waiting) => {
                    let _ = waiting.send(reply.into_answer());
                }
                // Answered after its deadline: the probe already counted as a timeout.
                Answered::Late => {}
                Answered::Twice => {
                    self.break_with(format!("answered id {} twice", reply.id), true);
                    return;
                }
            }
        }
    }

    /// A message the adapter's subscription received: recorded for the trial's subscription.
    /// One on a channel it was not asked to subscribe to, or more than failprobe published, is
    /// a fault.
    fn message(&self, channel: &str, payload: &str) -> Result<(), String> {
        let Some(task) = self.subscription.lock().expect("not poisoned").clone() else {
            return Ok(());
        };
        if channel != task.channel {
            return Err(format!(
                "reported a message on `{}`, a channel it was not asked to subscribe to",
                cut(channel, 100)
            ));
        }
        match task.deliver(payload.as_bytes(), &self.server) {
            true => Ok(()),
            false => Err("reported more messages than failprobe published".to_string()),
        }
    }

    /// `{"subscribe": CHANNEL}` (protocol 2): the adapter subscribes with its library and
    /// reports each message until the trial stops; then one timeout for the last ones in
    /// flight, and `{"unsubscribe": CHANNEL}`.
    async fn subscription_until_stopped(self: Arc<Self>, task: Arc<super::pubsub::SubscribeTask>) {
        let mut stop = task.stop.clone();
        stopped(&mut stop).await;
        tokio::time::sleep(task.timeout).await;
        let mut current = self.subscription.lock().expect("not poisoned");
        if current.as_ref().is_some_and(|t| Arc::ptr_eq(t, &task)) {
            *current = None;
        }
        drop(current);
        self.send_line(serde_json::json!({ "unsubscribe": task.channel }).to_string());
    }

    /// A line for the adapter that no answer waits for; dropped when it is done or broken.
    fn send_line(&self, line: String) {
        if let Some(requests) = self.requests.lock().expect("not poisoned").as_ref() {
            let _ = requests.try_send(line);
        }
    }

    /// Waits for the adapter to exit; once failprobe is done (or it misbehaved), gives it
    /// `EXIT_WITHIN` after its stdin closed, then ends it and everything it started.
    async fn supervise(self: Arc<Self>, mut child: Child, mut group: crate::spawn::Guard) {
        let mut stop = self.stop.subscribe();
        let status = tokio::select! {
            status = child.wait() => status.ok(),
            _ = stopped(&mut stop) => {
                self.requests.lock().expect("not poisoned").take();
                match timeout(EXIT_WITHIN, child.wait()).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        group.kill();
                        child.wait().await.ok()
                    }
                }
            }
        };
        *self.exit.lock().expect("not poisoned") = status;
        // The leader exited; what it started goes with it.
        group.kill();
    }
}

impl Reply {
    fn into_answer(self) -> Answer {
        if self.ok {
            return Answer::Value(self.value);
        }
        // A library's message may quote its connection settings: the sample is scrubbed of
        // secrets when it is made (`schedule::to_sample`), like every client's.
        let text = cut(&self.error, 300);
        let class = match self.kind.as_str() {
            "timeout" => ErrorClass::Timeout,
            "connection" => class_from_text(&text).unwrap_or(ErrorClass::Reset),
            _ => class_from_text(&text).unwrap_or(ErrorClass::Other),
        };
        Answer::Failed(ProbeError::new(class, text))
    }
}

impl Prober for ExecClient {
    async fn write(self: Arc<Self>, _shard: usize, keys: Arc<TrialKeys>, seq: u64, deadline: Instant) -> Attempt {
        let cmd = vec![
            "EVAL".to_string(),
            WRITE_SCRIPT.to_string(),
            "2".to_string(),
            keys.log.clone(),
            keys.sentinel.clone(),
            seq.to_string(),
            keys.ttl_ms.to_string(),
        ];
        let result = self.call(cmd, deadline).await.map(|_| None);
        Attempt { result, server: Some(self.server.clone()) }
    }

    async fn read(self: Arc<Self>, _shard: usize, keys: Arc<TrialKeys>, deadline: Instant) -> Attempt {
        let cmd = vec!["GET".to_string(), keys.sentinel.clone()];
        let result = self.call(cmd, deadline).await.and_then(|v| match v {
            Value::Null => Ok(Some(0)),
            Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64()),
            Value::String(s) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
            other => Err(ProbeError::new(ErrorClass::Other, format!("GET answered {}", cut(&other.to_string(), 100)))),
        });
        Attempt { result, server: Some(self.server.clone()) }
    }

    fn subscribe(
        self: Arc<Self>,
        task: super::pubsub::SubscribeTask,
    ) -> Option<super::schedule::BoxFuture<'static, ()>> {
        if self.protocol < SUBSCRIBES_FROM {
            return None;
        }
        let task = Arc::new(task);
        *self.subscription.lock().expect("not poisoned") = Some(task.clone());
        self.send_line(serde_json::json!({ "subscribe": task.channel }).to_string());
        Some(Box::pin(self.subscription_until_stopped(task)))
    }

    /// Closes the adapter's stdin; it has `EXIT_WITHIN` to exit before its group is ended.
    fn stop(&self) {
        self.requests.lock().expect("not poisoned").take();
        let _ = self.stop.send(true);
    }
}

/// Until failprobe is done with the adapter (or it misbehaved).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        let done = *stop.borrow_and_update();
        if done || stop.changed().await.is_err() {
            return;
        }
    }
}

fn spawn(spec: &ExecSpec, target: &Target, limit: Duration) -> Result<(Child, crate::spawn::Guard), ProbeError> {
    let (password, sentinel_password) = target.passwords();
    // Only the target's own secrets, and only in the variables the protocol names; the rest
    // of failprobe's environment (AWS credentials…) is not the adapter's (`crate::spawn`).
    let mut vars = vec![
        ("FAILPROBE_TARGET", target.url_without_password()),
        ("FAILPROBE_TIMEOUT_MS", limit.as_millis().to_string()),
        ("FAILPROBE_ADAPTER_PROTOCOL", PROTOCOL.to_string()),
    ];
    vars.extend(password.map(|pw| ("FAILPROBE_PASSWORD", pw.to_string())));
    vars.extend(sentinel_password.map(|pw| ("FAILPROBE_SENTINEL_PASSWORD", pw.to_string())));
    // The private CA failprobe trusts (a path, no secret): the adapter's library trusts it too.
    let ca = std::env::var("FAILPROBE_TLS_CA_FILE").ok().filter(|ca| !ca.is_empty());
    vars.extend(ca.map(|ca| ("FAILPROBE_TLS_CA_FILE", ca)));
    // The name its library gives every connection it opens (CLIENT SETNAME): how the run counts
    // them on each node.
    vars.extend(spec.client_name.clone().map(|n| ("FAILPROBE_CLIENT_NAME", n)));
    crate::spawn::shell(&spec.command, &vars, std::process::Stdio::piped)
        .map_err(|e| ProbeError::new(ErrorClass::Adapter, format!("adapter `{}`: starting sh: {e}", spec.name)))
}

/// The hello's deadline: `HELLO_WITHIN`, or `FAILPROBE_HELLO_TIMEOUT` (a duration, never shorter).
fn hello_within() -> Result<Duration, String> {
    match std::env::var(HELLO_TIMEOUT_VAR) {
        Ok(text) if !text.trim().is_empty() => match crate::duration::parse_duration(text.trim()) {
            Ok(d) if d >= HELLO_WITHIN => Ok(d),
            Ok(_) => Err(format!("{HELLO_TIMEOUT_VAR}={text}: shorter than the usual {HELLO_WITHIN:?}")),
            Err(e) => Err(format!("{HELLO_TIMEOUT_VAR}={text}: {e}")),
        },
        _ => Ok(HELLO_WITHIN),
    }
}

/// One line, at most `MAX_LINE` bytes; None at end of output.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    let n = (&mut *r).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') && line.len() > MAX_LINE {
        return Err(format!("printed a line longer than {MAX_LINE} bytes"));
    }
    Ok(Some(String::from_utf8_lossy(&line).trim_end().to_string()))
}

/// Keeps the adapter's last stderr lines (each cut short) for a fault report.
async fn keep_stderr<R: AsyncRead + Unpin>(stderr: R, kept: Arc<Mutex<VecDeque<String>>>) {
    let mut r = BufReader::new(stderr);
    loop {
        let mut line = Vec::new();
        // A longer line arrives in pieces, each kept as a line.
        match (&mut r).take(MAX_STDERR_LINE as u64).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                let mut kept = kept.lock().expect("not poisoned");
                if kept.len() == STDERR_LINES {
                    kept.pop_front();
                }
                kept.push_back(text);
            }
        }
    }
}

/// `; stderr: <last lines>` or nothing.
fn tail_of(kept: &Mutex<VecDeque<String>>) -> String {
    let kept = kept.lock().expect("not poisoned");
    let lines: Vec<&str> = kept.iter().map(String::as_str).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", lines.join(" | "))
    }
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_answer_is_told_from_a_late_one() {
        let mut p = Pending::default();
        for id in 1..=3 {
            p.waiting.insert(id, oneshot::channel().0);
        }
        assert!(matches!(p.answer(1), Answered::Waiting(_)));
        assert!(matches!(p.answer(1), Answered::Twice));
        p.expire(2);
        assert!(matches!(p.answer(2), Answered::Late));
        assert!(matches!(p.answer(2), Answered::Twice));
        // Answered just before its deadline passed: nothing is late, a second answer is twice.
        assert!(matches!(p.answer(3), Answered::Waiting(_)));
        p.expire(3);
        assert!(matches!(p.answer(3), Answered::Twice));
    }

    #[test]
    fn late_ids_are_remembered_up_to_a_bound() {
        let mut p = Pending::default();
        let n = MAX_LATE as u64 + 10;
        for id in 1..=n {
            p.waiting.insert(id, oneshot::channel().0);
            p.expire(id);
        }
        assert_eq!(p.late.len(), MAX_LATE);
        // Forgotten ones cannot be told from late ones: not a fault.
        assert!(matches!(p.answer(1), Answered::Late));
        assert!(matches!(p.answer(n), Answered::Late));
        assert!(matches!(p.answer(n), Answered::Twice));
    }
}
