//! Bad input and interruptions: clear errors, exit codes, nothing lost.

use crate::common::*;
use failprobe::lab::Topology;

#[test]
fn malformed_scenario_names_file_and_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, "name = \"x\"\n[probe]\ninterval = \"10 parsecs\"\n").unwrap();
    let o = failprobe(&["run", path.to_str().unwrap(), "--out", dir.path().join("out").to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broken.toml:3"), "{err}");
    assert!(err.contains("interval"), "{err}");
    assert!(!dir.path().join("out").exists(), "nothing may be written for a bad scenario");
}

#[test]
fn unreachable_target_exits_2_before_any_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("trigger-ran");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let trigger = format!("command=touch {}", marker.display());
    let o = failprobe(&[
        "run",
        "--target",
        &format!("redis://127.0.0.1:{port}"),
        "--trigger",
        &trigger,
        "--yes",
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not reachable") && err.contains("refused"), "{err}");
    assert!(!marker.exists(), "the trigger ran against an unreachable target");
}

#[test]
fn destructive_trigger_against_a_remote_target_needs_yes() {
    // A host name is not loopback as typed; a DNS server on loopback answers it, so no lookup
    // leaves the machine.
    let lab = TestLab::start(Topology::Replica);
    let primary = lab.primary_port();
    let std::net::IpAddr::V4(ip) = lab.lab.addr_of(primary).ip() else { unreachable!("lab nodes are on IPv4") };
    let dns = crate::common::dns::DnsServer::start("cache", ip, 60);
    let target = format!("redis://{}:{primary}", dns.name);
    let (dns_server, out) = (dns.addr.to_string(), lab.out("run"));
    let args = ["run", "--target", &target, "--dns-server", &dns_server, "--trigger", "promote", "--quiet"];
    let o = failprobe(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--yes") && err.contains("not on loopback"), "{}", explain(&o));
    assert!(err.contains(&format!("acts on node {target}", target = &target["redis://".len()..])), "{err}");
    assert_eq!(lab.primary_port(), primary, "promoted without confirmation");
}

#[test]
fn password_is_used_but_never_printed_or_written() {
    let lab = TestLab::start(Topology::Replica);
    let port = lab.primary_port();
    let at = lab.addr(port);
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("hunter2secret").query(&mut lab.conn(port)).unwrap();
    let url_out = lab.out("url");
    let env_out = lab.out("env");
    let in_url = failprobe(&[
        "run",
        "--target",
        &format!("redis://default:hunter2secret@{at}"),
        "--trigger",
        "none",
        "--duration",
        "1s",
        "--out",
        url_out.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code(&in_url), 0, "{}", explain(&in_url));
    let from_env = crate::common::failprobe_command()
        .args(["run", "--target", &format!("redis://{at}"), "--trigger", "none", "--duration", "1s", "--quiet"])
        .args(["--out", env_out.to_str().unwrap()])
        .env("FAILPROBE_PASSWORD", "hunter2secret")
        .output()
        .unwrap();
    assert_eq!(code(&from_env), 0, "{}", explain(&from_env));
    for (o, out) in [(&in_url, &url_out), (&from_env, &env_out)] {
        let printed = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(!printed.contains("hunter2secret"), "{printed}");
        assert_eq!(u(&summary(out)["trials"][0]["writes"]["failed"]), 0);
        for entry in std::fs::read_dir(out).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            assert!(!text.contains("hunter2secret"));
        }
    }
    assert!(summary(&url_out)["target"].as_str().unwrap().contains("***"));
    // Without the password the target is refused before anything starts.
    let o = failprobe(&[
        "run",
        "--target",
        &format!("redis://{at}"),
        "--quiet",
        "--out",
        lab.out("none").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("auth"), "{}", explain(&o));
}

#[test]
fn sigint_leaves_samples_and_a_report_that_rebuilds_identically() {
    let lab = TestLab::start(Topology::Replica);
    let out = lab.out("run");
    let child = observe_for_30s(&lab.primary_addr(), &out);
    std::thread::sleep(std::time::Duration::from_secs(3));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 2, "interrupted runs have no verdict: {}", explain(&o));
    let live = summary(&out);
    assert_eq!(live["interrupted"], true);
    let probes = u(&live["trials"][0]["writes"]["probes"]);
    assert!(probes > 100, "samples kept: {probes}");
    assert!(out.join("samples.csv").exists() && out.join("report.md").exists());

    let o = failprobe(&["report", out.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert_eq!(summary(&out), live, "rebuilt summary differs from the live one");
}

#[test]
fn a_killed_run_leaves_samples_that_rebuild_into_a_report() {
    let lab = TestLab::start(Topology::Replica);
    let out = lab.out("run");
    let mut child = observe_for_30s(&lab.primary_addr(), &out);
    std::thread::sleep(std::time::Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("summary.json").exists());
    let o = failprobe(&["report", out.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "a crashed run has no verdict: {}", explain(&o));
    let s = summary(&out);
    assert_eq!(s["interrupted"], true);
    // 3 s at 10 ms, flushed every 0.5 s: at least the first ~2 s survive the SIGKILL.
    assert!(u(&s["trials"][0]["writes"]["probes"]) >= 150, "{}", s["trials"][0]["writes"]["probes"]);
    assert!(s["trials"][0]["end_reason"].as_str().unwrap().contains("incomplete"));
}

/// A long observe-only run in the background, to be interrupted.
fn observe_for_30s(at: &str, out: &std::path::Path) -> std::process::Child {
    let target = format!("redis://{at}");
    crate::common::failprobe_command()
        .args(["run", "--target", &target, "--trigger", "none", "--duration", "30s", "--quiet"])
        .arg("--out")
        .arg(out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A machine with Valkey and no Redis gets a Valkey lab without being told; one with neither is
/// told what to install. PATH holds only Valkey's directory (nothing else is needed to start
/// a replica lab).
#[test]
fn a_machine_with_only_valkey_gets_a_valkey_lab() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab");
    let only_valkey = [("PATH", valkey_programs().display().to_string())];
    let up = failprobe_env(&["lab", "up", "--topology", "replica", "--dir", lab.to_str().unwrap()], &only_valkey);
    let down = failprobe(&["lab", "down", "--dir", lab.to_str().unwrap()]);
    assert_eq!(code(&up), 0, "{}", explain(&up));
    assert_eq!(code(&down), 0, "{}", explain(&down));
    assert!(String::from_utf8_lossy(&up.stdout).contains("(valkey 9."), "{}", explain(&up));
    let lab_json = std::fs::read_to_string(lab.join("lab.json")).unwrap();
    assert!(lab_json.contains("\"server\": \"valkey\"") && lab_json.contains("valkey-server"), "{lab_json}");

    let empty = tempfile::tempdir().unwrap();
    let nothing = [("PATH", empty.path().display().to_string())];
    let o = failprobe_env(&["lab", "up", "--topology", "cluster", "--dir", lab.to_str().unwrap()], &nothing);
    assert_ne!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("`redis-server` is not on PATH"), "{}", explain(&o));
    let o = failprobe_env(&["lab", "up", "--server", "valkey", "--dir", lab.to_str().unwrap()], &nothing);
    assert!(String::from_utf8_lossy(&o.stderr).contains("scripts/install-servers.sh --valkey"), "{}", explain(&o));
}
