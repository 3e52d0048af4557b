//! Live metrics (`--metrics-listen`) of real runs on the Sentinel lab: scraped by this test
//! while the run lasts (and checked by `promtool check metrics`), and scraped by Debian's
//! prometheus on loopback, whose HTTP API must then show the outage with failprobe's own
//! length. The helpers (`LiveRun`, `scrape`, `metric`, `promtool_check`, `Prometheus`) are for
//! the fleet test too: several targets of one process, one of them failed over.

use crate::common::*;
use failprobe::lab::Topology;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Prometheus's scrape interval in these tests.
pub(crate) const SCRAPE: Duration = Duration::from_secs(1);

/// A failprobe process in the background serving its metrics on a port the OS picked; killed
/// (by its pid) if the test ends before it did.
pub(crate) struct LiveRun {
    child: Option<Child>,
    pub(crate) addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl LiveRun {
    /// `failprobe <args> --metrics-listen 127.0.0.1:0`, once it said where it listens.
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut child = failprobe_command()
            .args(args)
            .args(["--metrics-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting failprobe");
        let (lines, stderr) = mpsc::channel();
        let pipe = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let Ok(line) = stderr.recv_timeout(Duration::from_secs(60)) else {
                let _ = child.kill();
                panic!("failprobe never said where its metrics are:\n{}", seen.join("\n"));
            };
            if let Some(rest) = line.strip_prefix("metrics: serving http://") {
                break rest.trim_end_matches("/metrics").parse().expect("an address");
            }
            seen.push(line);
        };
        Self { child: Some(child), addr, stderr }
    }

    pub(crate) fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Its exit code and what it printed on stderr.
    pub(crate) fn wait(mut self) -> (i32, String) {
        let status = self.child.take().unwrap().wait().unwrap();
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (status.code().unwrap_or(-1), stderr.join("\n"))
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.0 GET on loopback (no chunked answers): the body of a 200, or None.
pub(crate) fn http_get(addr: SocketAddr, path: &str, accept: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// failprobe's metrics: the OpenMetrics text Prometheus asks for, or the Prometheus text format.
pub(crate) fn scrape(addr: SocketAddr, openmetrics: bool) -> Option<String> {
    let accept = if openmetrics { "application/openmetrics-text; version=1.0.0" } else { "text/plain" };
    http_get(addr, "/metrics", accept)
}

/// The sum of the samples of `name` whose labels include `labels`; None when there is none.
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if series_name == name && labels.iter().all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))) {
            *sum.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    sum
}

/// A program of Debian's prometheus package, or a clear failure saying how to install it.
pub(crate) fn prometheus_program(name: &str) -> Command {
    let found = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "`{name}` is not installed: run scripts/install-servers.sh (Debian's prometheus package)");
    Command::new(name)
}

/// `promtool check metrics` finds nothing to say about `text` (names, HELP and TYPE, units).
pub(crate) fn promtool_check(text: &str) {
    let mut child = prometheus_program("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\non:\n{text}");
}

/// Debian's prometheus on loopback (a port the OS picked, its data in a temporary directory),
/// scraping `targets` every [`SCRAPE`]; stopped by its pid when dropped, whatever happened.
pub(crate) struct Prometheus {
    child: Child,
    pub(crate) addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    pub(crate) fn start(targets: &[SocketAddr]) -> Self {
        let mut command = prometheus_program("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global: {{ scrape_interval: {s}s, scrape_timeout: {s}s, evaluation_interval: {s}s }}\nscrape_configs:\n  - job_name: failprobe\n    static_configs: [ {{ targets: [{}] }} ]\n",
            list.join(", "),
            s = SCRAPE.as_secs()
        );
        std::fs::write(dir.path().join("prom.yml"), config).unwrap();
        let addr = free_loopback_addr();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = command
            .arg(format!("--config.file={}", dir.path().join("prom.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let prometheus = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(addr, "/-/ready", "*/*").is_none() {
            assert!(Instant::now() < deadline, "prometheus not ready in 30 s:\n{}", prometheus.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query at the present: each series' labels and value.
    pub(crate) fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let body = http_get(self.addr, &format!("/api/v1/query?query={q}"), "application/json")
            .unwrap_or_else(|| panic!("prometheus did not answer `{expr}`:\n{}", self.log()));
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        let result = answer["data"]["result"].as_array().unwrap();
        result.iter().map(|r| (r["metric"].clone(), r["value"][1].as_str().unwrap().parse().unwrap())).collect()
    }

    /// The one value `expr` gives, or a failure saying what came instead.
    pub(crate) fn value(&self, expr: &str) -> f64 {
        match self.query(expr).as_slice() {
            [(_, v)] => *v,
            other => panic!("`{expr}` gave {other:?}, not one series"),
        }
    }

    /// The longest outage gauge Prometheus saw, per target, in the last `window`.
    pub(crate) fn outages_by_target(&self, client: &str, stream: &str, window: &str) -> Vec<(String, f64)> {
        let expr = format!(
            "max by (target) (max_over_time(failprobe_outage_seconds{{client=\"{client}\",stream=\"{stream}\"}}[{window}]))"
        );
        let mut seen: Vec<(String, f64)> =
            self.query(&expr).into_iter().map(|(m, v)| (m["target"].as_str().unwrap().to_string(), v)).collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        seen
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address whose port the OS just handed out (and took back) for a server to take.
pub(crate) fn free_loopback_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn run_args<'a>(lab: &'a str, out: &'a str, trigger: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--lab", lab, "--quiet", "--out", out, "--trigger", trigger, "--settle", "2s"];
    args.extend_from_slice(extra);
    args
}

fn run_id(out: &Path) -> String {
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    meta["run_id"].as_str().unwrap().to_string()
}

#[test]
fn a_run_serves_its_metrics_while_it_lasts_and_promtool_finds_them_clean() {
    let lab = TestLab::start(Topology::Sentinel);
    let (dir, out) = (lab.lab_dir(), lab.out("run"));
    let (dir, out_arg) = (dir.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let mut run = LiveRun::start(&run_args(&dir, &out_arg, "kill", &["--repeat", "2", "--warmup", "2s"]));
    let addr = run.addr;
    let mut scrapes = Vec::new();
    while run.running() {
        scrapes.extend(scrape(addr, false));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, stderr) = run.wait();
    assert_eq!(code, 0, "{stderr}");
    assert!(scrape(addr, false).is_none(), "the port is closed once the run ended");
    let s = summary(&out);
    assert!(scrapes.len() >= 20, "{} scrapes", scrapes.len());

    // A run without a scenario is named `ad-hoc`: its target label.
    let own = |stream| [("target", "ad-hoc"), ("client", "failprobe"), ("stream", stream)];
    let writes = |result| [own("writes").as_slice(), &[("result", result)]].concat();
    let ok = |t: &String| metric(t, "failprobe_probes_total", &writes("ok"));
    let (first, last) = (ok(&scrapes[0]).unwrap_or(0.0), ok(scrapes.last().unwrap()).unwrap());
    let reported = f(&s["trials"][0]["writes"]["ok"]) + f(&s["trials"][1]["writes"]["ok"]);
    assert!(first < last && last <= reported, "answered writes: {first} then {last}, {reported} in summary.json");
    // During the failover: failed writes by class, and the outage's length so far.
    let failing = scrapes
        .iter()
        .find(|t| metric(t, "failprobe_outage_seconds", &own("writes")).is_some_and(|v| v > 0.0))
        .expect("a scrape during the outage");
    let failed = metric(failing, "failprobe_probes_total", &writes("error"));
    assert!(failed.unwrap_or(0.0) > 0.0, "{failing}");
    assert!(metric(failing, "failprobe_phase_timestamp_seconds", &[("phase", "trigger_started")]).is_some());
    // Trial 0's lost writes are counted at its end, while trial 1 runs.
    let lost = |t: usize| f(&s["trials"][t]["integrity"]["lost_acked_writes"]);
    let lost_seen: Vec<f64> =
        scrapes.iter().filter_map(|t| metric(t, "failprobe_lost_writes_total", &[("client", "failprobe")])).collect();
    assert_eq!(lost_seen.first(), Some(&0.0), "the counter is there from the start");
    let ended: Vec<f64> = scrapes
        .iter()
        .filter(|t| metric(t, "failprobe_phase_timestamp_seconds", &[("phase", "trial_ended")]).is_some())
        .map(|t| metric(t, "failprobe_lost_writes_total", &[("client", "failprobe")]).unwrap())
        .collect();
    assert!(ended.iter().all(|v| *v == lost(0) || *v == lost(0) + lost(1)), "{ended:?}");
    assert!(ended.iter().filter(|v| **v == lost(0)).count() > 10, "trial 0's lost writes while trial 1 ran: {ended:?}");
    assert!(metric(failing, "process_resident_memory_bytes", &[]).unwrap() > 1e6);

    promtool_check(failing);
    promtool_check(scrapes.last().unwrap());
    // Labels come from the plan: never the run id (every key holds it) nor a server's address.
    let id = run_id(&out);
    for text in [failing, scrapes.last().unwrap()] {
        assert!(!text.contains(&id) && !text.contains(&lab.primary_addr()), "{text}");
    }
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["metrics_listen"], addr.to_string(), "run.json says where the metrics were");
}

#[test]
fn the_listener_is_loopback_unless_told_otherwise() {
    let o = failprobe(&["run", "--target", "redis://127.0.0.1:1", "--metrics-listen", "0.0.0.0:0"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("not a loopback address") && stderr.contains("--metrics-listen-any"), "{stderr}");
}

/// Prometheus scrapes a run every second; a kill of the primary is seen as an outage whose
/// longest gauge value is within one scrape of failprobe's own figure, below it (the gauge is
/// sampled: the last scrape before the recovery is at most one interval before it) by at
/// most one interval plus 100 ms (a gauge set from probes completing every 10 ms, and the
/// scrape's own timing), above it by at most 10 ms (the live window against the analysis's,
/// which waits for stragglers).
#[test]
fn prometheus_scraping_a_run_sees_the_outage_failprobe_reports() {
    let _alone = alone();
    let lab = TestLab::start(Topology::Sentinel);
    let (dir, out) = (lab.lab_dir(), lab.out("run"));
    let (dir, out_arg) = (dir.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
    let run = LiveRun::start(&run_args(&dir, &out_arg, "kill", &["--warmup", "5s"]));
    let prometheus = Prometheus::start(&[run.addr]);
    let (code, stderr) = run.wait();
    assert_eq!(code, 0, "{stderr}");
    let w = &summary(&out)["trials"][0]["writes"];
    let figure = f(&w["longest_outage_ms"]) / 1000.0;
    assert!(figure >= 1.0, "a kill under Sentinel is down for seconds: {figure} s");

    let seen = prometheus.outages_by_target("failprobe", "writes", "10m");
    assert_eq!(seen.len(), 1, "one target: {seen:?}");
    let (target, longest) = &seen[0];
    assert_eq!(target, "ad-hoc");
    let (low, high) = (figure - SCRAPE.as_secs_f64() - 0.1, figure + 0.01);
    assert!((low..=high).contains(longest), "Prometheus saw {longest} s, failprobe {figure} s");
    let own = "client=\"failprobe\",stream=\"writes\"";
    let last = prometheus.value(&format!("last_over_time(failprobe_last_outage_seconds{{{own}}}[10m])"));
    // Live, an answer still on its way that was due earlier cannot end the outage yet: the
    // analysis's may end later, by less than a probe's timeout (250 ms).
    assert!(figure - 0.25 < last && last <= figure + 0.01, "last outage {last} s, failprobe {figure} s");
    // Every failed probe counted: the counters' last values, once the outage was over.
    let failed =
        prometheus.value(&format!("sum(max_over_time(failprobe_probes_total{{{own},result=\"error\"}}[10m]))"));
    assert_eq!(failed, f(&w["failed"]), "failed writes");
    let phase =
        |p: &str| prometheus.value(&format!("max_over_time(failprobe_phase_timestamp_seconds{{phase=\"{p}\"}}[10m])"));
    let (killed, detected, announced) = (phase("trigger_started"), phase("failure_detected"), phase("new_primary"));
    assert!(killed < detected && detected <= announced && announced - killed < 10.0, "{killed} {detected} {announced}");
}
