//! `--pid`, lab pids and `command=`: only verified servers are signalled, and a command's whole
//! process group ends with its trial.

use crate::common::*;
use failprobe::lab::Topology;
use std::time::{Duration, Instant};

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
}

fn run_with_pid(lab: &TestLab, name: &str, pid: &str, trigger: &str, yes: bool) -> std::process::Output {
    let target = format!("redis://{}", lab.primary_addr());
    let out = lab.out(name);
    let mut args = vec!["run", "--target", &target, "--trigger", trigger, "--pid", pid, "--quiet", "--warmup", "1s"];
    args.extend(["--settle", "1s", "--max-trial", "5s", "--out", out.to_str().unwrap()]);
    if yes {
        args.push("--yes");
    }
    let started = Instant::now();
    let o = failprobe(&args);
    assert!(started.elapsed() < Duration::from_secs(30), "{name} took {:?}", started.elapsed());
    o
}

#[test]
fn pids_that_are_not_the_targets_server_are_refused_before_anything_happens() {
    let lab = TestLab::start(Topology::Replica);
    let primary = lab.primary_port();
    let replica = lab.lab.redis_ports().into_iter().find(|p| *p != primary).unwrap();
    let replica_pid = lab.lab.pid_of_port(replica).unwrap();
    let mut bystander = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let cases = [
        ("all", "4294967295".to_string(), "kill", "not a process id"),
        ("group", "0".to_string(), "pause=1s", "not a process id"),
        ("bystander", bystander.id().to_string(), "kill", "`sleep`"),
        ("replica", replica_pid.to_string(), "kill", &format!("not on the target's {}", lab.addr(primary))),
    ];
    for (name, pid, trigger, says) in cases {
        let o = run_with_pid(&lab, name, &pid, trigger, true);
        assert_eq!(code(&o), 2, "{name}: {}", explain(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(says), "{name}: {}", explain(&o));
        assert!(!lab.out(name).join("run.json").exists(), "{name}: the run started");
    }
    assert!(alive(bystander.id()), "an unrelated process was signalled");
    assert!(alive(replica_pid) && alive(lab.lab.pid_of_port(primary).unwrap()));
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[test]
fn pid_and_command_triggers_are_confirmed_even_on_loopback() {
    let lab = TestLab::start(Topology::Replica);
    let primary_pid = lab.lab.pid_of_port(lab.primary_port()).unwrap();
    let o = run_with_pid(&lab, "unconfirmed", &primary_pid.to_string(), "kill", false);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--yes"), "{}", explain(&o));
    assert!(alive(primary_pid), "killed without confirmation");

    let marker = lab.out("ran");
    let trigger = format!("command=touch {}", marker.display());
    let target = format!("redis://{}", lab.primary_addr());
    let out = lab.out("cmd");
    let o = failprobe(&["run", "--target", &target, "--trigger", &trigger, "--quiet", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(!marker.exists(), "command ran without confirmation");

    let o = run_with_pid(&lab, "confirmed", &primary_pid.to_string(), "kill", true);
    assert!(!alive(primary_pid), "--yes: the verified primary is killed: {}", explain(&o));
}

#[test]
fn a_command_that_outlives_its_trial_has_its_whole_group_ended() {
    let lab = TestLab::start(Topology::Replica);
    let pidfile = lab.out("grandchild.pid");
    // The shell starts a grandchild and waits: a timeout must end both, not just the shell.
    let trigger = format!("command=sleep 300 & echo $! > {}; wait", pidfile.display());
    let target = format!("redis://{}", lab.primary_addr());
    let out = lab.out("run");
    let args = ["run", "--target", &target, "--trigger", &trigger, "--yes", "--quiet", "--warmup", "1s"];
    let o = failprobe(&[&args[..], &["--max-trial", "2s", "--settle", "1s", "--out", out.to_str().unwrap()]].concat());
    assert_eq!(code(&o), 2, "a trigger that timed out gives no verdict: {}", explain(&o));
    let grandchild: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(grandchild) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(grandchild), "the command's child outlived the run");
    let s = summary(&out);
    assert!(s["trials"][0]["trigger"]["error"].as_str().unwrap().contains("did not finish"), "{s}");
}

#[test]
fn lab_pids_are_checked_again_before_every_signal() {
    let lab = TestLab::start(Topology::Replica);
    let mut bystander = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    // Simulates pid reuse: lab.json now names an unrelated process for the primary's port.
    let file = lab.lab_dir().join("lab.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let primary = lab.primary_port();
    for node in json["nodes"].as_array_mut().unwrap() {
        if node["port"] == primary {
            node["pid"] = bystander.id().into();
        }
    }
    std::fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
    let (o, _) = lab.run("reused", &["--trigger", "kill"]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`sleep`"), "{}", explain(&o));
    let o = failprobe(&["lab", "down", "--dir", lab.lab_dir().to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(alive(bystander.id()), "lab down signalled a reused pid");
    let _ = bystander.kill();
    let _ = bystander.wait();
}

/// Two servers on one port, on 127.0.0.1 and 127.0.0.2: `--pid` of the one on .1 with a target
/// on .2 is refused (main 9794c7d killed it, "listening on port P", and reported a recovery);
/// the one on .2 is the target's server, and the confirmation names program, address and port.
#[test]
fn a_pid_on_the_targets_port_but_another_address_is_refused() {
    use std::net::Ipv4Addr;
    let _turn = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let (elsewhere, target_ip) = (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2));
    let port = port_free_on_both(elsewhere, target_ip);
    let bystander = redis_on(dir.path(), elsewhere, port, None);
    let server = redis_on(dir.path(), target_ip, port, None);
    let target = format!("redis://{target_ip}:{port}");
    let run = |name: &str, pid: u32, yes: bool| {
        let out = dir.path().join(name);
        let mut args = vec!["run", "--target", &target, "--trigger", "kill", "--quiet", "--warmup", "1s"];
        let pid = pid.to_string();
        args.extend(["--settle", "1s", "--max-trial", "3s", "--pid", &pid, "--out", out.to_str().unwrap()]);
        if yes {
            args.push("--yes");
        }
        (failprobe(&args), out)
    };
    let (o, out) = run("wrong", bystander.0.id(), true);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let says = format!("not on the target's {target_ip}:{port}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&says), "{}", explain(&o));
    assert!(alive(bystander.0.id()), "the server on {elsewhere}:{port} was signalled");
    assert!(!out.join("run.json").exists(), "the run started");

    let (o, _) = run("asked", server.0.id(), false);
    let asked = String::from_utf8_lossy(&o.stderr);
    let named = format!("redis-server pid {} listening on {target_ip}:{port}", server.0.id());
    assert!(asked.contains(&named), "the question names program, pid, address and port: {}", explain(&o));
    assert!(alive(server.0.id()), "killed without confirmation");

    let (o, out) = run("right", server.0.id(), true);
    assert!(!alive(server.0.id()), "the target's own server is killed: {}", explain(&o));
    assert!(alive(bystander.0.id()));
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert!(events.contains(&named), "the timeline names what was signalled");
}
