//! An AWS Fault Injection Service emulator for tests: REST-JSON on loopback (the paths of
//! aws-sdk-fis: `POST /experiments`, `GET|DELETE /experiments/{id}`, `GET /experimentTemplates/{id}`,
//! JSON bodies, errors as `x-amzn-ErrorType` + `{"message": ...}`) for exactly the calls
//! failprobe makes. An experiment goes initiating → running → completed on its template's
//! `duration`, or stopping → stopped on StopExperiment; wired to a Sentinel lab, it makes the
//! fault real: when it starts running the primary's "AZ loses power" and Sentinel fails over.
//!
//! Test support only: it is not part of the failprobe binary.
#![allow(dead_code)]

use super::elasticache::accept_loop;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The action this emulator's templates run, and its target type.
pub const AZ_POWER: &str = "aws:elasticache:replicationgroup-interrupt-az-power";
pub const GROUP_TYPE: &str = "aws:elasticache:replicationgroup";
/// How long an experiment stays `initiating`, and `stopping`, before its next state.
const STEP: Duration = Duration::from_millis(300);

#[derive(Clone, Debug)]
pub struct Template {
    pub id: String,
    pub group_arn: String,
    pub duration: Duration,
}

#[derive(Clone, Debug)]
pub struct Experiment {
    pub id: String,
    pub template: String,
    pub status: String,
    pub reason: Option<String>,
    pub end: Option<f64>,
    /// Every status it went through, in order.
    pub history: Vec<String>,
}

#[derive(Default)]
pub struct State {
    pub templates: HashMap<String, Template>,
    pub experiments: HashMap<String, Experiment>,
    /// Every operation received, in order (StartExperiment, GetExperiment, ...).
    pub calls: Vec<String>,
    /// Where the fault acts: a Sentinel (port, master name) told to fail over once running.
    pub sentinel: Option<(std::net::SocketAddr, String)>,
}

pub struct Fis {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Fis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Fis {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (st, stp) = (state.clone(), stop.clone());
        std::thread::spawn(move || accept_loop(listener, stp, move |s| serve_http(s, st.clone())));
        Self { port, state, stop }
    }

    /// `AWS_ENDPOINT_URL_FIS`, for failprobe's environment beside the ElastiCache emulator's.
    pub fn env(&self) -> (&'static str, String) {
        ("AWS_ENDPOINT_URL_FIS", format!("http://127.0.0.1:{}", self.port))
    }

    /// A template interrupting the AZ power of replication group `group` for `duration`.
    pub fn add_az_power_template(&self, id: &str, group: &str, duration: Duration) {
        let group_arn = format!("arn:aws:elasticache:us-east-1:123456789012:replicationgroup:{group}");
        self.state.lock().unwrap().templates.insert(id.into(), Template { id: id.into(), group_arn, duration });
    }

    /// Running experiments fail the lab over through this sentinel, as the power loss of the
    /// primary's AZ makes ElastiCache promote a replica in another one.
    pub fn fail_over_through(&self, sentinel: std::net::SocketAddr, master: &str) {
        self.state.lock().unwrap().sentinel = Some((sentinel, master.into()));
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn experiments(&self) -> Vec<Experiment> {
        self.state.lock().unwrap().experiments.values().cloned().collect()
    }
}

fn serve_http(stream: TcpStream, state: Arc<Mutex<State>>) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, path) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string());
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, error, answer) = handle(&state, &method, path.split('?').next().unwrap_or(""), &body);
        let text = answer.to_string();
        let error = error.map(|e| format!("x-amzn-ErrorType: {e}\r\n")).unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\n{error}Content-Length: {}\r\nx-amzn-RequestId: emu\r\n\r\n",
            if status == 200 { "OK" } else { "Error" },
            text.len()
        );
        if out.write_all(head.as_bytes()).and_then(|_| out.write_all(text.as_bytes())).is_err() {
            return;
        }
    }
}

type Reply = (u16, Option<&'static str>, Value);

fn not_found(what: &str) -> Reply {
    (404, Some("ResourceNotFoundException"), json!({ "message": format!("{what} not found") }))
}

fn handle(state: &Arc<Mutex<State>>, method: &str, path: &str, body: &Value) -> Reply {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let operation = match (method, parts.as_slice()) {
        ("POST", ["experiments"]) => "StartExperiment",
        ("GET", ["experiments", _]) => "GetExperiment",
        ("DELETE", ["experiments", _]) => "StopExperiment",
        ("GET", ["experimentTemplates", _]) => "GetExperimentTemplate",
        _ => return (400, Some("ValidationException"), json!({ "message": format!("{method} {path}") })),
    };
    state.lock().unwrap().calls.push(operation.into());
    let id = parts.get(1).copied().unwrap_or("");
    match operation {
        "StartExperiment" => start(state, body["experimentTemplateId"].as_str().unwrap_or("")),
        "GetExperiment" => match state.lock().unwrap().experiments.get(id) {
            Some(e) => (200, None, json!({ "experiment": experiment_json(e) })),
            None => not_found("experiment"),
        },
        "StopExperiment" => stop(state, id),
        _ => match state.lock().unwrap().templates.get(id) {
            Some(t) => (200, None, json!({ "experimentTemplate": template_json(t) })),
            None => not_found("experiment template"),
        },
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn template_json(t: &Template) -> Value {
    json!({
        "id": t.id,
        "description": "interrupt the power of the primary's AZ",
        "actions": { "azPower": {
            "actionId": AZ_POWER,
            "parameters": { "duration": format!("PT{}S", t.duration.as_secs()) },
            "targets": { "ReplicationGroups": "group" },
        }},
        "targets": { "group": {
            "resourceType": GROUP_TYPE,
            "resourceArns": [t.group_arn],
            "selectionMode": "ALL",
        }},
        "stopConditions": [{ "source": "none" }],
    })
}

fn experiment_json(e: &Experiment) -> Value {
    let mut state = json!({ "status": e.status });
    if let Some(r) = &e.reason {
        state["reason"] = json!(r);
    }
    let mut v = json!({ "id": e.id, "experimentTemplateId": e.template, "state": state });
    if let Some(end) = e.end {
        v["endTime"] = json!(end);
    }
    v
}

/// Moves experiment `id` from `from` (any state when None) to `to`; false when it was elsewhere.
fn set(state: &Arc<Mutex<State>>, id: &str, from: Option<&str>, to: &str, reason: Option<&str>) -> bool {
    let mut s = state.lock().unwrap();
    let Some(e) = s.experiments.get_mut(id) else { return false };
    if from.is_some_and(|f| f != e.status) {
        return false;
    }
    e.status = to.into();
    e.reason = reason.map(Into::into);
    if matches!(to, "completed" | "stopped") {
        e.end = Some(now());
    }
    e.history.push(to.into());
    true
}

fn start(state: &Arc<Mutex<State>>, template: &str) -> Reply {
    let (id, duration, sentinel) = {
        let mut s = state.lock().unwrap();
        let Some(t) = s.templates.get(template).cloned() else { return not_found("experiment template") };
        let id = format!("EXP{:04}", s.experiments.len() + 1);
        let history = vec!["initiating".to_string()];
        let e = Experiment {
            id: id.clone(),
            template: t.id,
            status: "initiating".into(),
            reason: None,
            end: None,
            history,
        };
        s.experiments.insert(id.clone(), e);
        (id, t.duration, s.sentinel.clone())
    };
    let (st, exp) = (state.clone(), id.clone());
    std::thread::spawn(move || {
        std::thread::sleep(STEP);
        if !set(&st, &exp, Some("initiating"), "running", None) {
            return;
        }
        if let Some((port, master)) = sentinel {
            fail_over(port, &master);
        }
        std::thread::sleep(duration);
        set(&st, &exp, Some("running"), "completed", Some("Experiment completed."));
    });
    let e = state.lock().unwrap().experiments[&id].clone();
    (200, None, json!({ "experiment": experiment_json(&e) }))
}

fn stop(state: &Arc<Mutex<State>>, id: &str) -> Reply {
    let status = match state.lock().unwrap().experiments.get(id) {
        Some(e) => e.status.clone(),
        None => return not_found("experiment"),
    };
    if matches!(status.as_str(), "initiating" | "running") {
        set(state, id, None, "stopping", Some("Stopping experiment."));
        let (st, exp) = (state.clone(), id.to_string());
        std::thread::spawn(move || {
            std::thread::sleep(STEP);
            set(&st, &exp, Some("stopping"), "stopped", Some("Experiment stopped."));
        });
    }
    let e = state.lock().unwrap().experiments[id].clone();
    (200, None, json!({ "experiment": experiment_json(&e) }))
}

fn fail_over(sentinel: std::net::SocketAddr, master: &str) {
    let Ok(client) = redis::Client::open(format!("redis://{sentinel}")) else { return };
    let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(2)) else { return };
    let _: redis::RedisResult<String> = redis::cmd("SENTINEL").arg("FAILOVER").arg(master).query(&mut c);
}
