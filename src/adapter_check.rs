//! `failprobe adapter check COMMAND`: what protocol version 1 asks of an adapter, tried against
//! a lab this command starts itself (a primary and a replica on loopback), one row per rule:
//! the adapter on the primary, which is stalled, demoted and killed under it.
//! Exit 0 only when every rule holds: what someone writing an adapter for another library runs
//! first, and what CI runs on every shipped adapter.

use crate::lab::{Lab, LabOptions, Server, Topology};
use crate::probe::client::ExecSpec;
use crate::probe::exec::ExecClient;
use crate::probe::keys::TrialKeys;
use crate::probe::Prober;
use crate::sample::{ErrorClass, EventKind, Record};
use crate::sink::Reporter;
use crate::target::error::ProbeError;
use crate::target::Target;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The adapter's own command timeout (FAILPROBE_TIMEOUT_MS), as a run's default `--timeout`.
const TIMEOUT: Duration = Duration::from_millis(250);
/// How long the primary is stalled (DEBUG SLEEP) for the timeout rule: well past `TIMEOUT`.
const STALL: Duration = Duration::from_millis(1500);
/// Requests sent at once for the concurrency rule.
const AT_ONCE: usize = 100;
/// Each latency rate runs this long.
const RATE_FOR: Duration = Duration::from_secs(1);

/// One rule and what the adapter did.
struct Row {
    rule: &'static str,
    pass: bool,
    detail: String,
}

/// Runs every rule against a lab of its own; the table on stdout; Ok(0) when all hold, Ok(1)
/// when one does not.
pub async fn check(command: &str, name: &str, server: Option<Server>) -> Result<i32> {
    let dir = private_dir()?;
    let options = LabOptions { server, ..LabOptions::default() };
    let lab = Lab::up_with(Topology::Replica, &dir, true, &options).await.context("starting the check's lab")?;
    let rows = rules(&lab, &ExecSpec { name: name.to_string(), command: command.to_string(), client_name: None }).await;
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    print_table(name, &rows);
    Ok(if rows.iter().all(|r| r.pass) { 0 } else { 1 })
}

/// A new directory of our own for the check's lab (0700, never one that was there: the system's
/// temporary directory is anyone's to write, so a name made in advance must not be followed).
fn private_dir() -> Result<std::path::PathBuf> {
    use rand::Rng;
    use std::os::unix::fs::DirBuilderExt;
    let suffix: u64 = rand::rng().random();
    let dir = std::env::temp_dir().join(format!("failprobe-adapter-check-{suffix:016x}"));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

async fn rules(lab: &Lab, spec: &ExecSpec) -> Vec<Row> {
    let primary_port = lab.current_primary().await.unwrap_or_default();
    let primary_at = lab.addr_of(primary_port);
    let primary = Target::parse(&format!("redis://{primary_at}")).expect("a lab URL parses");
    let replica_port = lab.redis_ports().into_iter().find(|p| *p != primary_port).unwrap_or_default();
    let mut rows = Vec::new();
    let (client, hello) = hello(spec, &primary).await;
    rows.push(hello);
    let Some(client) = client else { return rows };
    rows.push(concurrent(&client).await);
    rows.push(timeout_kind(&client, primary_at).await);
    rows.extend(latency(&client, primary_at).await);
    rows.extend(server_and_connection_errors(lab, &client, primary_at, lab.addr_of(replica_port)).await);
    rows.push(exits_on_end_of_input(&client).await);
    rows
}

/// A reporter whose events the check reads back (the adapter's hello, its faults).
fn reporter() -> (Reporter, mpsc::UnboundedReceiver<Record>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let report = Reporter { clock: crate::clock::Clock::start_now(), tx, trial: Default::default() };
    (report, rx)
}

async fn hello(spec: &ExecSpec, target: &Target) -> (Option<Arc<ExecClient>>, Row) {
    let rule = "hello: first line within 10 s, protocol 1 or 2, its library and version named";
    let (report, mut events) = reporter();
    let started = Instant::now();
    let client = match ExecClient::start(spec, target, TIMEOUT, report).await {
        Ok(c) => c,
        Err(e) => return (None, Row { rule, pass: false, detail: e.text }),
    };
    let took = started.elapsed();
    let mut said = None;
    while let Ok(Record::Event(e)) = events.try_recv() {
        if let EventKind::ClientHello { library, version, settings, .. } = e.kind {
            said = Some((library, version, settings));
        }
    }
    let Some((library, version, settings)) = said else {
        return (Some(client), Row { rule, pass: false, detail: "no hello recorded".into() });
    };
    let named = !library.trim().is_empty() && !version.trim().is_empty();
    let detail = format!(
        "{library} {version} in {} ms; settings {}",
        took.as_millis(),
        if settings.is_object() { "an object" } else { "NOT an object" }
    );
    (Some(client), Row { rule, pass: named && settings.is_object(), detail })
}

fn keys(run: &str) -> Arc<TrialKeys> {
    Arc::new(TrialKeys::for_client(run, 0, Duration::from_secs(600), Some("adapter-check")))
}

/// `AT_ONCE` writes sent together, each answered once: an adapter that serializes them shows
/// it as latency, one that loses or repeats an answer is broken.
async fn concurrent(client: &Arc<ExecClient>) -> Row {
    let rule = "answers requests sent together, each once, in any order";
    let keys = keys("check-concurrent");
    let deadline = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let writes = (1..=AT_ONCE as u64).map(|seq| client.clone().write(0, keys.clone(), seq, deadline));
    let answers = futures_util::future::join_all(writes).await;
    let ok = answers.iter().filter(|a| a.result.is_ok()).count();
    let fault = client.fault();
    let detail = match &fault {
        Some(f) => f.clone(),
        None => format!("{ok} of {AT_ONCE} writes answered ok, the last after {} ms", started.elapsed().as_millis()),
    };
    Row { rule, pass: fault.is_none() && ok == AT_ONCE, detail }
}

/// The primary stalled (DEBUG SLEEP) past FAILPROBE_TIMEOUT_MS: a `timeout` answer, or a late
/// one from a library that has no timeout (said so); another kind is a misclassification.
async fn timeout_kind(client: &Arc<ExecClient>, primary: SocketAddr) -> Row {
    let rule = "a stalled server: kind `timeout` (or a late answer, when the library has no timeout)";
    let url = format!("redis://{primary}");
    let stall = tokio::spawn(async move {
        let client = redis::Client::open(url).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("DEBUG").arg("SLEEP").arg(STALL.as_secs_f64()).query_async::<()>(&mut conn).await.ok()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let deadline = Instant::now() + STALL + Duration::from_secs(2);
    let started = Instant::now();
    let answer = client.request(vec!["GET".into(), "failprobe:adapter-check".into()], deadline).await;
    let took = started.elapsed().as_millis();
    let _ = stall.await;
    let (pass, detail) = match answer {
        Err(ProbeError { class: ErrorClass::Timeout, .. }) if started.elapsed() < STALL => {
            (true, format!("`timeout` after {took} ms"))
        }
        Ok(_) => (true, format!("answered ok after {took} ms, once the stall ended (the library waited or retried)")),
        Err(e) if e.class == ErrorClass::Adapter => (false, e.text),
        Err(e) => (false, format!("answered `{}` ({}) after {took} ms, not `timeout`", e.class, e.text)),
    };
    Row { rule, pass, detail }
}

/// Reads at a fixed rate through the adapter and straight to the server, from the scheduled
/// time: what the adapter adds. Informational, unless it cannot keep up (a missed answer).
async fn latency(client: &Arc<ExecClient>, primary: SocketAddr) -> Vec<Row> {
    let direct = match direct_connection(primary).await {
        Ok(c) => c,
        Err(e) => {
            // Not measured is not a pass: the table says why.
            let detail = format!("not measured: no connection of the check's own to {primary}: {e:#}");
            return vec![Row { rule: "latency at 100 and 1000 requests/s", pass: false, detail }];
        }
    };
    let mut rows = Vec::new();
    for rate in [100u32, 1000] {
        let rule = if rate == 100 { "latency at 100 requests/s" } else { "latency at 1000 requests/s" };
        let (through, missed) = at_rate(rate, |deadline| {
            let c = client.clone();
            async move { c.request(vec!["GET".into(), "failprobe:adapter-check".into()], deadline).await.is_ok() }
        })
        .await;
        let (straight, _) = at_rate(rate, |_| {
            let mut conn = direct.clone();
            async move {
                redis::cmd("GET").arg("failprobe:adapter-check").query_async::<Option<String>>(&mut conn).await.is_ok()
            }
        })
        .await;
        let detail = format!(
            "p50 {:.2} ms, p99 {:.2} ms through the adapter; p50 {:.2} ms, p99 {:.2} ms straight to the server; {missed} not answered ok within {} ms",
            through.0, through.1, straight.0, straight.1, TIMEOUT.as_millis()
        );
        rows.push(Row { rule, pass: missed == 0 && client.fault().is_none(), detail });
    }
    rows
}

/// The check's own connection to the server, for the reference latency: three tries, a second
/// each (the server was stalled a moment ago).
async fn direct_connection(at: SocketAddr) -> Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://{at}"))?;
    let mut last = anyhow::anyhow!("not tried");
    for _ in 0..3 {
        match tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection()).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => last = e.into(),
            Err(_) => last = anyhow::anyhow!("no answer within 1 s"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// `rate` requests a second for `RATE_FOR`, each on its own task at its scheduled time; its
/// latency counted from then. Returns (p50, p99) in ms and how many failed.
async fn at_rate<F, Fut>(rate: u32, request: F) -> ((f64, f64), usize)
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let interval = Duration::from_secs(1) / rate;
    let count = (RATE_FOR.as_secs_f64() * rate as f64) as u32;
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(count as usize);
    for i in 0..count {
        let due = start + interval * i;
        tokio::time::sleep_until(due).await;
        let fut = request(due + TIMEOUT);
        tasks.push(tokio::spawn(async move { (fut.await, due.elapsed()) }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    for t in tasks {
        match t.await {
            Ok((true, took)) => latencies.push(took.as_secs_f64() * 1000.0),
            _ => failed += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    ((at(0.5), at(0.99)), failed)
}

async fn exits_on_end_of_input(client: &Arc<ExecClient>) -> Row {
    let rule = "exits within 2 s once its input closes";
    let (took, status) = client.stop_and_wait().await;
    let detail = match status {
        Some(s) => format!("exited after {} ms ({s})", took.as_millis()),
        None => format!("still running after {} ms: killed with everything it started", took.as_millis()),
    };
    Row { rule, pass: status.is_some(), detail }
}

/// The primary demoted under the adapter (its replica promoted, it made a replica of it): a
/// write answered READONLY, classified as such; then the node killed: kind `connection` (or
/// `timeout`), the adapter still keeping the protocol.
async fn server_and_connection_errors(
    lab: &Lab,
    client: &Arc<ExecClient>,
    primary: SocketAddr,
    replica: SocketAddr,
) -> Vec<Row> {
    let demoted = swap_roles(primary, replica).await;
    let deadline = || Instant::now() + Duration::from_secs(3);
    let rule = "a server error: READONLY from a demoted primary, classified as such";
    // Some libraries retry a READONLY answer before they give it up (Redisson: 3 times, 1-2 s
    // apart): the rule is how it is reported, so it is given time.
    let write = client.clone().write(0, keys("check-readonly"), 1, Instant::now() + Duration::from_secs(15)).await;
    let readonly = match (demoted, write.result) {
        (Err(e), _) => Row { rule, pass: false, detail: format!("the primary could not be demoted: {e:#}") },
        (_, Err(e)) if e.class == ErrorClass::Readonly => Row { rule, pass: true, detail: e.text },
        (_, Err(e)) => Row { rule, pass: false, detail: format!("answered `{}`: {}", e.class, e.text) },
        (_, Ok(_)) => Row { rule, pass: false, detail: "a write to a replica answered ok".into() },
    };
    let rule = "a server gone: kind `connection` (or `timeout`), the adapter still answering";
    let killed = lab.kill_node(primary.port());
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(client.request(vec!["GET".into(), "failprobe:adapter-check".into()], deadline()).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = match (killed, client.fault()) {
        (Err(e), _) => Row { rule, pass: false, detail: format!("the node could not be stopped: {e:#}") },
        (_, Some(f)) => Row { rule, pass: false, detail: f },
        _ => {
            let classes: Vec<String> = answers
                .iter()
                .map(|a| match a {
                    Ok(_) => "ok".to_string(),
                    Err(e) => e.class.to_string(),
                })
                .collect();
            let fine = answers.iter().all(|a| {
                matches!(a, Err(e) if matches!(e.class, ErrorClass::Refused | ErrorClass::Reset | ErrorClass::Timeout))
            });
            Row { rule, pass: fine, detail: format!("answered {}", classes.join(", ")) }
        }
    };
    vec![readonly, gone]
}

/// REPLICAOF NO ONE on the replica, then the primary made its replica.
async fn swap_roles(primary: SocketAddr, replica: SocketAddr) -> Result<()> {
    let connect = |at: SocketAddr| async move {
        let client = redis::Client::open(format!("redis://{at}"))?;
        anyhow::Ok(client.get_multiplexed_async_connection().await?)
    };
    let mut r = connect(replica).await?;
    redis::cmd("REPLICAOF").arg("NO").arg("ONE").query_async::<()>(&mut r).await?;
    let mut p = connect(primary).await?;
    let host = replica.ip().to_string();
    redis::cmd("REPLICAOF").arg(host).arg(replica.port()).query_async::<()>(&mut p).await?;
    Ok(())
}

fn print_table(name: &str, rows: &[Row]) {
    let width = rows.iter().map(|r| r.rule.len()).max().unwrap_or(0);
    crate::say!("adapter check: {name}");
    for r in rows {
        let result = if r.pass { "pass" } else { "FAIL" };
        crate::say!("  {result}  {:<width$}  {}", r.rule, r.detail);
    }
    let failed = rows.iter().filter(|r| !r.pass).count();
    match failed {
        // The rules above are version 1's; a version-2 adapter's subscriptions are measured by
        // `run --probe pubsub`, not checked here.
        0 => crate::say!("conforms to protocol version 1"),
        n => crate::say!("{n} rule(s) broken: does not conform to protocol version 1"),
    }
}
