//! External client adapters (`--clients exec:NAME=COMMAND`): the protocol's faults against an
//! adapter that misbehaves on purpose (tests/adapters/misbehaving.py), and the ready adapters
//! (adapters/, installed by adapters/install.sh) measured through real failovers.

use crate::common::*;
use failprobe::lab::Topology;
use serde_json::Value;
use std::path::PathBuf;

fn misbehaving(mode: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/adapters/misbehaving.py");
    format!("exec:bad=python3 {script} {mode}")
}

fn client<'a>(s: &'a Value, name: &str) -> &'a Value {
    let clients = s["trials"][0]["clients"].as_array().unwrap();
    clients.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no client {name} in {clients:?}"))
}

/// failprobe's own client beside the adapter was not disturbed by it.
fn failprobe_intact(s: &Value) {
    let own = client(s, "failprobe");
    assert_eq!(u(&own["writes"]["failed"]) + u(&own["reads"]["failed"]), 0, "{own}");
    assert!(u(&own["integrity"]["acked_writes"]) > 50, "{own}");
}

#[test]
fn adapter_protocol_faults_are_named_and_leave_the_other_clients_intact() {
    let lab = TestLab::start(Topology::Replica);
    let observe = ["--trigger", "none", "--duration", "2s", "--clients", "failprobe"];

    // Before anything is measured: no hello within 10 s, or a protocol it does not speak.
    for (mode, why) in [("no-hello", "did not say hello within 10s"), ("protocol-9", "speaks protocol 9")] {
        let exec = misbehaving(mode);
        let (o, _) = lab.run(mode, &[&observe[..], &["--clients", &exec]].concat());
        assert_eq!(code(&o), 2, "{mode}: {}", explain(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{mode}: {}", explain(&o));
    }

    // Mid-run: each fault named on the timeline, the adapter's probes fail with class
    // `adapter`, failprobe's own client goes on untouched.
    let cases = [
        ("crash 50", vec!["exited", "exit status: 3", "misbehaving adapter: boom"]),
        ("garbage 50", vec!["printed a line that is not an answer: `this is not JSON`"]),
        ("unknown-id 50", vec!["answered id 1000000000000, which was never sent"]),
    ];
    for (mode, says) in cases {
        let exec = misbehaving(mode);
        let (o, out) = lab.run(&mode.replace(' ', "-"), &[&observe[..], &["--clients", &exec]].concat());
        assert_eq!(code(&o), 0, "{mode}: the budget covers failprobe alone: {}", explain(&o));
        let s = summary(&out);
        failprobe_intact(&s);
        let bad = client(&s, "bad");
        assert_eq!(bad["library"], "misbehaving", "{bad}");
        let fault = bad["adapter_faults"][0].as_str().unwrap_or_else(|| panic!("{mode}: no fault in {bad}"));
        for text in &says {
            assert!(fault.contains(text), "{mode}: `{fault}` does not say `{text}`");
        }
        assert!(u(&bad["writes"]["errors"]["adapter"]) > 0, "{mode}: {}", bad["writes"]["errors"]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("client bad (misbehaving 0; mode="), "{text}");
    }

    // An error text that quotes a secret (FAILPROBE_PASSWORD here) never reaches a file.
    let exec = misbehaving("leak Leak-Me-9x");
    let env = [("FAILPROBE_PASSWORD", "Leak-Me-9x".to_string())];
    let (o, out) = lab.run_with_env("leak", &[&observe[..], &["--clients", &exec]].concat(), &env);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(u(&client(&summary(&out), "bad")["writes"]["failed"]) > 50);
    for entry in std::fs::read_dir(&out).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains("Leak-Me-9x"), "the secret reached {}", out.display());
    }

    // Late answers (400 ms against a 100 ms deadline) are timeouts, not a fault.
    let exec = misbehaving("late 400");
    let (o, out) = lab.run("late", &[&observe[..], &["--timeout", "100ms", "--clients", &exec]].concat());
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let bad = client(&s, "bad");
    assert!(bad["adapter_faults"].as_array().is_none_or(|f| f.is_empty()), "{bad}");
    assert!(u(&bad["writes"]["errors"]["timeout"]) > 50, "{}", bad["writes"]["errors"]);
}

/// The ready adapters, as adapters/install.sh installed them in the checkout.
fn adapter(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("adapters");
    let installed = match name {
        "ioredis" => dir.join("ioredis/node_modules/ioredis/package.json"),
        "node-redis" => dir.join("node-redis/node_modules/redis/package.json"),
        "go-redis" => dir.join("go-redis/bin/go-redis-adapter"),
        "lettuce" | "jedis" | "redisson" => dir.join(format!("{name}/target/failprobe-{name}.jar")),
        _ => dir.join(".venv/bin/python"),
    };
    assert!(installed.exists(), "{} is missing: run adapters/install.sh (as .ci/run does)", installed.display());
    format!("exec:{name}={}", dir.join(name).join("run").display())
}

fn with_adapters(names: &[&str]) -> Vec<String> {
    names.iter().flat_map(|n| ["--clients".to_string(), adapter(n)]).collect()
}

/// `adapter(name)` run as `as_name` with `VAR=value` settings before its command.
fn adapter_with(name: &str, as_name: &str, settings: &str) -> String {
    let command = adapter(name);
    let command = command.trim_start_matches(&format!("exec:{name}="));
    format!("exec:{as_name}={settings} {command}")
}

/// Its hello reached the summary, and its writes were checked against its own write log.
fn measured<'a>(s: &'a Value, name: &str, library: &str) -> &'a Value {
    let c = client(s, name);
    assert_eq!(c["library"], library, "{c}");
    assert!(!c["version"].as_str().unwrap().is_empty(), "{c}");
    assert_eq!(c["integrity"]["checked"], true, "{c}");
    assert!(u(&c["integrity"]["acked_writes"]) > 100, "{c}");
    c
}

/// `scenarios/local-endpoint-failover.toml` (5 s lag): each library, with its defaults, keeps
/// its connection on READONLY once it reconnected to the demoted node through the endpoint,
/// exactly as the `pinned` profile does; all but go-redis, which closes a connection that
/// answered READONLY (`isBadConn`, "in case domain addr is used") and retries on a new one
/// (MaxRetries 3): once the endpoint's lag has passed, the new one reaches the new primary.
#[test]
fn ready_adapters_through_a_lagging_endpoint_stay_on_readonly_like_pinned() {
    let _turn = alone();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/local-endpoint-failover.toml");
    let adapters = with_adapters(&["redis-py", "ioredis", "valkey-glide", "node-redis", "go-redis"]);
    let o = failprobe_command()
        .args(["run", scenario, "--clients", "failprobe,pinned", "--quiet", "--out", out.to_str().unwrap()])
        .args(&adapters)
        .output()
        .unwrap();
    assert_eq!(
        code(&o),
        1,
        "pinned and the libraries never recover; the scenario's budget covers all: {}",
        explain(&o)
    );
    let s = summary(&out);
    let pinned = client(&s, "pinned");
    assert!(!pinned["writes"]["recovered"].as_bool().unwrap());
    for name in ["redis-py", "ioredis", "valkey-glide", "node-redis"] {
        let c = measured(&s, name, name);
        assert!(!c["writes"]["recovered"].as_bool().unwrap(), "{name}: {}", c["writes"]);
        assert!(u(&c["writes"]["errors"]["readonly"]) > 100, "{name}: {}", c["writes"]["errors"]);
        // It wrote into the old primary until the step-down, as every client did.
        assert!(u(&c["integrity"]["lost_acked_writes"]) > 0, "{name}: {}", c["integrity"]);
    }
    let go = measured(&s, "go-redis", "go-redis");
    assert!(go["writes"]["recovered"].as_bool().unwrap(), "go-redis: {}", go["writes"]);
    assert!(u(&go["writes"]["errors"]["readonly"]) > 0, "go-redis: {}", go["writes"]["errors"]);
    assert!(u(&go["integrity"]["lost_acked_writes"]) > 0, "go-redis: {}", go["integrity"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("client redis-py (redis-py 8.1.0; "), "{text}");
    assert!(text.contains("client go-redis (go-redis 9.23.0; "), "{text}");
    assert!(text.contains("client node-redis (node-redis 6.4.0; "), "{text}");
}

/// Through Sentinel (`master_for`, ioredis's `sentinels`): the old primary closes its
/// connections when it steps down, and both libraries ask Sentinel again. go-redis's
/// FailoverClient listens for `+switch-master` and moves its pool to the new primary at once;
/// node-redis's createSentinel also follows `+switch-master`, but its commands wait while it
/// reconnects (written, answered late: ghost writes). GLIDE has no Sentinel
/// support: its adapter says so and the run stops before anything is triggered.
#[test]
fn ready_adapters_follow_a_sentinel_failover() {
    let _turn = alone();
    let lab = TestLab::start(Topology::Sentinel);
    let args = ["--trigger", "sentinel", "--max-trial", "10s", "--clients", "failprobe"];
    let adapters = with_adapters(&["redis-py", "ioredis", "go-redis", "node-redis"]);
    let adapter_args: Vec<&str> = adapters.iter().map(String::as_str).collect();
    let (o, out) = lab.run("sentinel", &[&args[..], &adapter_args].concat());
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    for name in ["redis-py", "ioredis", "go-redis", "node-redis"] {
        let c = measured(&s, name, name);
        assert_eq!(c["settings"]["mode"], "sentinel", "{c}");
        assert!(c["writes"]["recovered"].as_bool().unwrap(), "{name}: {}", c["writes"]);
        assert!(f(&c["writes"]["longest_outage_ms"]) < 3000.0, "{name}: {}", c["writes"]);
    }
    let go = client(&s, "go-redis");
    assert!(f(&go["writes"]["longest_outage_ms"]) < 500.0, "go-redis: {}", go["writes"]);
    let glide = adapter("valkey-glide");
    let (o, _) = lab.run("glide", &["--trigger", "sentinel", "--clients", "failprobe", "--clients", &glide]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exited before its hello") && err.contains("no Sentinel support"), "{err}");
    assert!(!err.contains("trigger sentinel started"), "{err}");
}

/// A shard primary killed: ioredis, GLIDE (cluster mode) and node-redis are back within seconds;
/// each library's outage and integrity are in summary.json. go-redis's ClusterClient reloads its
/// slot map on MOVED/ASK/READONLY and when it is ClusterStateReloadInterval old (60 s), not on a
/// connection error: with its defaults it keeps sending the killed primary's slots to it
/// (refused) past the trial's end; with GOREDIS_CLUSTER_STATE_RELOAD_INTERVAL=1s it follows.
#[test]
fn ready_adapters_through_a_cluster_kill() {
    let _turn = alone();
    let lab = TestLab::start(Topology::Cluster);
    let mut adapters = with_adapters(&["redis-py", "ioredis", "valkey-glide", "node-redis", "go-redis"]);
    adapters.extend([
        "--clients".into(),
        adapter_with("go-redis", "go-redis-1s", "GOREDIS_CLUSTER_STATE_RELOAD_INTERVAL=1s"),
    ]);
    let adapter_args: Vec<&str> = adapters.iter().map(String::as_str).collect();
    let args = ["--trigger", "kill", "--shard", "0", "--max-trial", "10s", "--clients", "failprobe"];
    let (o, out) = lab.run("cluster", &[&args[..], &adapter_args].concat());
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    for (name, library, within) in [
        ("ioredis", "ioredis", 6000.0),
        ("valkey-glide", "valkey-glide", 6000.0),
        // Its commands wait (timeout) while it reconnects and rediscovers the slots: ~5.9 s.
        ("node-redis", "node-redis", 8000.0),
        ("go-redis-1s", "go-redis", 6000.0),
    ] {
        let c = measured(&s, name, library);
        assert_eq!(c["settings"]["mode"], "cluster", "{c}");
        assert!(c["writes"]["recovered"].as_bool().unwrap(), "{name}: {}", c["writes"]);
        assert!(f(&c["writes"]["longest_outage_ms"]) < within, "{name}: {}", c["writes"]);
    }
    let go = measured(&s, "go-redis", "go-redis");
    assert_eq!(go["settings"]["cluster_state_reload_interval"], "1m0s", "{go}");
    assert!(!go["writes"]["recovered"].as_bool().unwrap(), "go-redis: {}", go["writes"]);
    assert!(u(&go["writes"]["errors"]["refused"]) > 100, "go-redis: {}", go["writes"]["errors"]);
    let py = measured(&s, "redis-py", "redis-py");
    assert!(u(&py["writes"]["errors"]["timeout"]) > 0, "{}", py["writes"]["errors"]);
}

/// Issue 22's done-when: a 1 s `pause` of the primary, measured by each new adapter within
/// 100 ms of failprobe's own client (the writes' longest outage), with the library's defaults
/// and the command timeout from --timeout.
#[test]
fn new_adapters_measure_a_pause_like_failprobe() {
    let _turn = alone();
    let lab = TestLab::start(Topology::Replica);
    let adapters = with_adapters(&["go-redis", "node-redis"]);
    let adapter_args: Vec<&str> = adapters.iter().map(String::as_str).collect();
    let args = ["--trigger", "pause=1s", "--clients", "failprobe"];
    let (o, out) = lab.run("pause", &[&args[..], &adapter_args].concat());
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let s = summary(&out);
    let own = f(&client(&s, "failprobe")["writes"]["longest_outage_ms"]);
    assert!((900.0..1300.0).contains(&own), "failprobe: {own} ms");
    for name in ["go-redis", "node-redis"] {
        let c = measured(&s, name, name);
        assert_eq!(c["settings"]["mode"], "direct", "{c}");
        assert!(c["writes"]["recovered"].as_bool().unwrap(), "{name}: {}", c["writes"]);
        let outage = f(&c["writes"]["longest_outage_ms"]);
        assert!((outage - own).abs() <= 100.0, "{name}: {outage} ms, failprobe {own} ms: {}", c["writes"]);
    }
    let go = client(&s, "go-redis");
    assert_eq!(go["settings"]["read_timeout"], "250ms", "--timeout's default: {go}");
    assert_eq!(go["settings"]["dial_timeout"], "5s", "go-redis's own: {go}");
    let node = client(&s, "node-redis");
    assert_eq!(node["settings"]["commandTimeout"], 250, "{node}");
    assert_eq!(node["settings"]["socketTimeout"], "none", "node-redis leaves it infinite: {node}");
}

/// Two runs that differ only in an adapter's settings: `compare` names the difference and
/// gives each client's delta.
#[test]
fn compare_shows_what_an_adapters_settings_changed() {
    let lab = TestLab::start(Topology::Replica);
    let run = |name: &str, retries: &str| {
        let exec = format!(
            "exec:redis-py=REDISPY_RETRIES={retries} {}",
            adapter("redis-py").trim_start_matches("exec:redis-py=")
        );
        let (o, out) =
            lab.run(name, &["--trigger", "none", "--duration", "2s", "--clients", "failprobe", "--clients", &exec]);
        assert_eq!(code(&o), 0, "{}", explain(&o));
        assert_eq!(client(&summary(&out), "redis-py")["settings"]["retries"], retries.parse::<u64>().unwrap());
        out
    };
    let (a, b) = (run("a", "0"), run("b", "3"));
    let html = a.with_file_name("compare.html");
    let o = failprobe(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let differ = text
        .lines()
        .find(|l| l.starts_with("clients differ: A redis-py (redis-py "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        differ.contains("retries=0") && differ.contains("· B redis-py") && differ.contains("retries=3"),
        "{differ}"
    );
    for row in
        ["redis-py: longest outage (worst trial)", "redis-py: lost acknowledged writes", "failprobe: failed probes"]
    {
        assert!(text.contains(row), "no `{row}` in {text}");
    }
}

/// Issue 22, item 3: `failprobe adapter check` on a lab of its own. Every shipped adapter keeps
/// every rule of protocol version 1; one that crashes after 30 answers and never reports a
/// server error fails, naming each rule it broke, with exit 1.
#[test]
fn adapter_check_passes_every_ready_adapter_and_names_what_a_broken_one_breaks() {
    let _alone = alone();
    for name in ["redis-py", "ioredis", "valkey-glide", "go-redis", "node-redis", "lettuce", "jedis", "redisson"] {
        let exec = adapter(name);
        let command = exec.split_once('=').unwrap().1;
        // A JVM's start on a loaded machine may take longer than the default 10 s (guide).
        let slow_start = [("FAILPROBE_HELLO_TIMEOUT", "30s".to_string())];
        let o = failprobe_env(&["adapter", "check", "--name", name, command], &slow_start);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(code(&o), 0, "{name}: {}", explain(&o));
        assert!(out.contains("conforms to protocol version 1") && !out.contains("FAIL"), "{name}: {out}");
        for rule in ["hello", "requests sent together", "stalled server", "1000 requests/s", "input closes", "READONLY"]
        {
            assert!(out.lines().any(|l| l.contains("pass") && l.contains(rule)), "{name}: {rule}: {out}");
        }
    }
    let exec = misbehaving("crash 30");
    let o = failprobe(&["adapter", "check", "--name", "bad", exec.split_once('=').unwrap().1]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(out.lines().any(|l| l.contains("pass") && l.contains("hello")), "{out}");
    assert!(
        out.lines().any(|l| l.contains("FAIL") && l.contains("requests sent together") && l.contains("exited")),
        "{out}"
    );
    assert!(out.contains("does not conform to protocol version 1"), "{out}");
    // The same adapter that never fails a write: READONLY is not reported as such.
    let exec = misbehaving("late 0");
    let o = failprobe(&["adapter", "check", "--name", "bad", exec.split_once('=').unwrap().1]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 1, "{}", explain(&o));
    assert!(out.lines().any(|l| l.contains("FAIL") && l.contains("READONLY") && l.contains("answered ok")), "{out}");
}
