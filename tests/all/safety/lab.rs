//! The lab: servers with a scrubbed environment, a directory name with a space and a newline,
//! `lab up; lab down; lab up` in one directory, an environment password that is for the real
//! deployment, not for the password-less lab; lab.json checked against what runs before a
//! signal or a start, and one command at a time per lab directory (issue 19 items 5 and 6).

use crate::common::*;

fn environ(pid: u64) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default()).into_owned()
}

#[test]
fn lab_servers_get_no_secrets_and_odd_directories_work_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab with space\nand newline");
    let dir_arg = dir.to_str().unwrap();
    let secrets = [
        ("FAILPROBE_PASSWORD", "lab-secret-1".to_string()),
        ("REDISCLI_AUTH", "lab-secret-2".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "lab-secret-3".to_string()),
    ];
    // The second round adds the endpoint, a failprobe process of the lab's own.
    for (round, topology) in ["sentinel", "endpoint"].into_iter().enumerate() {
        let o = failprobe_env(&["lab", "up", "--topology", topology, "--dir", dir_arg], &secrets);
        assert_eq!(code(&o), 0, "round {round}: {}", explain(&o));
        let lab: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
        for node in lab["nodes"].as_array().unwrap() {
            let env = environ(node["pid"].as_u64().unwrap());
            assert!(!env.is_empty(), "round {round}: {node}");
            assert!(!env.contains("lab-secret"), "round {round}: a lab server inherited a secret: {node}");
        }
        let status = failprobe(&["lab", "status", "--dir", dir_arg]);
        assert_eq!(code(&status), 0, "round {round}: {}", explain(&status));
        if round == 0 {
            // The environment's password is for a real target; the lab has none and must still work.
            let out = tmp.path().join("run");
            let args = ["run", "--lab", dir_arg, "--trigger", "none", "--duration", "1s", "--quiet", "--out"];
            let o = failprobe_env(&[&args[..], &[out.to_str().unwrap()]].concat(), &secrets);
            assert_eq!(code(&o), 0, "{}", explain(&o));
        }
        let o = failprobe(&["lab", "down", "--dir", dir_arg]);
        assert_eq!(code(&o), 0, "round {round}: {}", explain(&o));
        let kinds: Vec<&str> = lab["nodes"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.contains(&"endpoint"), topology == "endpoint", "{kinds:?}");
        for node in lab["nodes"].as_array().unwrap() {
            let pid = node["pid"].as_u64().unwrap();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()).unwrap_or("gone");
            assert!(matches!(state, "gone" | "Z"), "round {round}: {node} still runs after lab down");
        }
    }
}

/// A lab started by `failprobe lab up` in a temporary directory, stopped by `lab down` when
/// dropped (a failed assertion must not leave servers running).
struct UpLab {
    tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
}

impl UpLab {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lab");
        Self { dir, tmp }
    }

    fn up(self) -> Self {
        let o = failprobe(&["lab", "up", "--topology", "replica", "--dir", self.arg()]);
        assert_eq!(code(&o), 0, "{}", explain(&o));
        self
    }

    fn arg(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("lab.json")).unwrap()).unwrap()
    }

    fn write_json(&self, json: &serde_json::Value) {
        std::fs::write(self.dir.join("lab.json"), serde_json::to_vec_pretty(json).unwrap()).unwrap();
    }

    /// (name, pid, port) of each node lab.json names.
    fn nodes(&self) -> Vec<(String, u32, u16)> {
        let json = self.json();
        let nodes = json["nodes"].as_array().unwrap();
        nodes.iter().map(|n| (n["name"].as_str().unwrap().into(), u(&n["pid"]) as u32, u(&n["port"]) as u16)).collect()
    }

    /// `run --lab` with a bounded trial and `extra`.
    fn run(&self, name: &str, extra: &[&str]) -> std::process::Output {
        let out = self.tmp.path().join(name);
        let args = ["run", "--lab", self.arg(), "--quiet", "--warmup", "1s", "--settle", "1s", "--max-trial", "5s"];
        failprobe(&[&args[..], extra, &["--out", out.to_str().unwrap()]].concat())
    }
}

impl Drop for UpLab {
    fn drop(&mut self) {
        if self.dir.join("lab.json").exists() {
            let _ = failprobe(&["lab", "down", "--dir", self.arg()]);
        }
    }
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
}

fn gone_soon(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    !alive(pid)
}

fn which(bin: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path).map(|d| d.join(bin)).find(|p| p.is_file()).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Issue 19 item 6: a node entry edited to name a foreign redis-server (its pid and port) made
/// `lab down` (main 9794c7d) kill it and leave the real node running. Now the entry is refused
/// by name and the real node, found running in the lab directory, is stopped.
#[test]
fn lab_down_with_a_tampered_entry_spares_the_foreign_server_and_stops_the_real_node() {
    let lab = UpLab::new().up();
    let foreign = redis_on(lab.tmp.path(), std::net::Ipv4Addr::LOCALHOST, free_port(), None);
    let real = lab.nodes();
    let foreign_port = {
        let mut json = lab.json();
        let node = &mut json["nodes"][0];
        let port = std::fs::read_to_string(format!("/proc/{}/cmdline", foreign.0.id())).unwrap();
        let port: u16 = port.rsplit(':').next().unwrap().trim_end_matches('\0').parse().unwrap();
        node["pid"] = foreign.0.id().into();
        node["ip"] = "127.0.0.1".into();
        node["port"] = port.into();
        lab.write_json(&json);
        port
    };
    let o = failprobe(&["lab", "down", "--dir", lab.arg()]);
    assert_ne!(code(&o), 0, "a tampered entry is an error: {}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("pid {}", foreign.0.id())) && err.contains(&real[0].0), "{}", explain(&o));
    assert!(alive(foreign.0.id()), "lab down killed a server on 127.0.0.1:{foreign_port} that is not the lab's");
    for (name, pid, port) in real {
        assert!(gone_soon(pid), "{name} (pid {pid}, port {port}) was orphaned: {}", explain(&o));
    }
}

/// Issue 19 item 6: a node's `"program"` set to a script made the `restart` trigger run it (as
/// root here). Neither the trigger nor a heal starts anything but the server `lab up` found.
#[test]
fn a_program_lab_json_names_is_run_only_when_it_is_the_server() {
    let lab = UpLab::new().up();
    let marker = lab.tmp.path().join("marker");
    let bin = lab.tmp.path().join("x");
    std::fs::create_dir(&bin).unwrap();
    // A directory others may write (as an attacker's would be): not sticky, mode 0777.
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let script = format!("#!/bin/sh\ntouch '{}'\nexec redis-server \"$@\"\n", marker.display());
    let evil = bin.join("evil.sh");
    // Named like the server: still not the redis-server PATH finds, and where others can write.
    let named = bin.join("redis-server");
    for p in [&evil, &named] {
        std::fs::write(p, &script).unwrap();
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let nodes = lab.nodes();
    let set_program = |name: &str, program: &std::path::Path| {
        let mut json = lab.json();
        for n in json["nodes"].as_array_mut().unwrap() {
            if n["name"] == name {
                n["program"] = program.to_str().unwrap().into();
            }
        }
        lab.write_json(&json);
    };
    for program in [&evil, &named] {
        set_program(&nodes[0].0, program);
        let o = lab.run("restart", &["--trigger", "restart", "--yes"]);
        assert_ne!(code(&o), 0, "{}", explain(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(program.to_str().unwrap()), "{}", explain(&o));
        assert!(!marker.exists(), "{} ran", program.display());
        assert!(alive(nodes[0].1), "the node was killed before its program was checked");
    }
    // The replica down, its program the script: a heal must not start it either.
    set_program(&nodes[0].0, &which("redis-server"));
    set_program(&nodes[1].0, &evil);
    unsafe { libc::kill(nodes[1].1 as i32, libc::SIGKILL) };
    assert!(gone_soon(nodes[1].1));
    let o = lab.run("heal", &["--trigger", "none", "--duration", "1s"]);
    assert_ne!(code(&o), 0, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(evil.to_str().unwrap()), "{}", explain(&o));
    assert!(!marker.exists(), "a heal ran {}", evil.display());
}

/// Issue 19 item 6: two `lab up` at once in one directory got the same ports, the second wrote
/// lab.json over the first's, and `lab down` stopped nothing. Now the second is refused (the
/// directory is locked, or the first's lab already runs) and `lab down` stops every node.
#[test]
fn two_lab_ups_in_one_directory_leave_one_lab_that_lab_down_stops() {
    let lab = UpLab::new();
    let up = || {
        let mut cmd = failprobe_command();
        cmd.args(["lab", "up", "--topology", "replica", "--dir", lab.arg()]);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    let _turn = beside_others();
    let (a, b) = (up(), up());
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let ok = outputs.iter().filter(|o| code(o) == 0).count();
    let all = outputs.iter().map(explain).collect::<Vec<_>>().join("\n---\n");
    assert_eq!(ok, 1, "exactly one lab up succeeds: {all}");
    let failed = outputs.iter().find(|o| code(o) != 0).unwrap();
    let err = String::from_utf8_lossy(&failed.stderr);
    let locked = err.contains("is in use by pid") && err.contains("failprobe lab up");
    // The lock taken before its holder wrote its pid: refused all the same, without the pid.
    let locked = locked || err.contains("is in use by another process; try again when it has finished");
    assert!(locked || err.contains("a lab is already running"), "{all}");
    let nodes = lab.nodes();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    for (name, pid, port) in &nodes {
        assert!(alive(*pid), "lab.json names {name} (pid {pid}, port {port}), which does not run: {all}");
    }
    // Into a directory whose lab runs, a third lab up is refused too.
    let o = failprobe(&["lab", "up", "--topology", "replica", "--dir", lab.arg()]);
    assert_ne!(code(&o), 0, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a lab is already running"), "{}", explain(&o));
    assert_eq!(lab.nodes(), nodes, "a refused lab up left lab.json alone");
    // A run holds the lab too: a lab down meanwhile is refused, naming the run.
    let mut run = failprobe_command();
    let out = lab.tmp.path().join("run");
    run.args(["run", "--lab", lab.arg(), "--trigger", "none", "--duration", "4s", "--quiet", "--out"]).arg(&out);
    let run = run.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let holder = format!("pid {} (failprobe run)", run.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(lab.dir.join(".lock")).unwrap_or_default().contains(&holder) {
        assert!(std::time::Instant::now() < deadline, "the run never took the lab's lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = failprobe(&["lab", "down", "--dir", lab.arg()]);
    assert_ne!(code(&o), 0, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("is in use by {holder}")), "{}", explain(&o));
    assert!(run.wait_with_output().unwrap().status.success(), "the run went on");
    let o = failprobe(&["lab", "down", "--dir", lab.arg()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let ips: Vec<String> =
        lab.json()["nodes"].as_array().unwrap().iter().map(|n| n["ip"].as_str().unwrap().into()).collect();
    for ((name, pid, port), ip) in nodes.into_iter().zip(ips) {
        assert!(gone_soon(pid), "{name} (pid {pid}) still runs");
        assert!(std::net::TcpStream::connect((ip.as_str(), port)).is_err(), "something still listens on {ip}:{port}");
    }
}

/// Issue 19 item 5: after `run --lab L --trigger kill`, the next `run --lab L` restarts the
/// killed node before it waits for a ready lab (it waited for it and timed out).
#[test]
fn a_run_after_a_kill_heals_the_lab_first() {
    let lab = UpLab::new().up();
    let primary = lab.nodes()[0].1;
    let _ = lab.run("kill", &["--trigger", "kill", "--yes"]);
    assert!(gone_soon(primary), "the kill trigger killed the primary");
    let o = lab.run("after", &["--trigger", "none", "--duration", "2s"]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    let status = failprobe(&["lab", "status", "--dir", lab.arg()]);
    assert_eq!(code(&status), 0, "{}", explain(&status));
}
