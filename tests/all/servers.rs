//! A run says what it measured: the server, its version, its role and the settings that shape
//! a failover, in run.json, summary.json and every report, and `compare` shows both runs'.

use crate::common::*;
use failprobe::lab::{Server, Topology};
use serde_json::Value;
use std::path::Path;

/// What the server says it is, asked directly: `("valkey", "9.1.2")` or `("redis", "7.0.15")`.
fn reported(lab: &TestLab) -> (String, String) {
    let info: String = redis::cmd("INFO").arg("server").query(&mut lab.conn(lab.primary_port())).unwrap();
    let field = |key: &str| info.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim);
    match field("server_name") {
        Some("valkey") => ("valkey".into(), field("valkey_version").unwrap().into()),
        _ => ("redis".into(), field("redis_version").unwrap().into()),
    }
}

/// One observing run of `lab`: its servers in run.json and summary.json, its primary named,
/// every report's header naming the engine and version. Returns the run's directory.
fn observed(lab: &TestLab, name: &str, engine: &str) -> std::path::PathBuf {
    let (server, version) = reported(lab);
    let (o, out) = lab.run(name, &["--trigger", "none", "--duration", "1s"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let run: Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    for servers in [&run["servers"], &summary(&out)["servers"]] {
        let servers = servers.as_array().unwrap_or_else(|| panic!("no servers in {run}"));
        let primary = servers.iter().find(|s| s["role"] == "primary").unwrap_or_else(|| panic!("{servers:?}"));
        assert_eq!(primary["server"], server.as_str(), "{primary}");
        assert_eq!(primary["version"], version.as_str(), "{primary}");
        assert_eq!(primary["address"], lab.primary_addr(), "{primary}");
        assert_eq!(primary["settings"]["appendonly"], "no", "{primary}");
        assert!(primary["settings"]["min-replicas-to-write"].is_string(), "{primary}");
        assert!(servers.iter().any(|s| s["role"] == "replica"), "{servers:?}");
    }
    let named = format!("{engine} {version} (primary {}", lab.primary_addr());
    for report in ["report.html", "report.md"] {
        let text = std::fs::read_to_string(out.join(report)).unwrap();
        assert!(text.contains(&named), "{report} does not name `{named}`");
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains(&named), "{}", explain(&o));
    out
}

fn compared(a: &Path, b: &Path, tmp: &Path) -> String {
    let html = tmp.join("compare.html");
    let o = failprobe(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    String::from_utf8_lossy(&o.stdout).into_owned() + &std::fs::read_to_string(html).unwrap()
}

#[test]
fn a_run_names_its_server_and_version_and_compare_shows_both() {
    let valkey_lab = TestLab::start_on(Topology::Replica, Server::Valkey);
    let valkey = observed(&valkey_lab, "valkey", "Valkey");
    let redis_lab = TestLab::start_on(Topology::Sentinel, Server::Redis);
    let redis = observed(&redis_lab, "redis", "Redis");
    let s = summary(&redis);
    let sentinel = s["servers"].as_array().unwrap().iter().find(|s| s["role"] == "sentinel").expect("sentinels read");
    assert!(sentinel["settings"]["down-after-milliseconds"].as_str().unwrap().parse::<u64>().is_ok(), "{sentinel}");

    let both = compared(&valkey, &redis, valkey_lab.dir.path());
    let (_, valkey_version) = reported(&valkey_lab);
    let (_, redis_version) = reported(&redis_lab);
    for named in [format!("Valkey {valkey_version}"), format!("Redis {redis_version}"), "down-after".into()] {
        assert!(both.contains(&named), "compare does not show `{named}`:\n{both}");
    }
}
