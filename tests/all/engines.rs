//! The failover suite on each engine users run (issue 25): Redis 5.0.6 and 6.2.14 (from
//! `scripts/install-servers.sh --redis`), the system's Redis 7.0 and Valkey 9. Per engine: a
//! Sentinel lab (a pause shorter than down-after, SENTINEL FAILOVER, kill -9) and a cluster lab
//! (kill -9 of a shard's primary), each with the shortest trial that still shows its figure,
//! each run naming the engine and version it measured. Each engine's figures and time go to
//! stderr (CI's log shows them; `-- --nocapture` here).

use crate::common::*;
use failprobe::lab::Topology;
use serde_json::Value;
use std::time::Instant;

#[test]
fn redis_5_0_fails_over_in_every_lab() {
    failover_suite("redis@5.0", "redis", "5.0.6");
}

#[test]
fn redis_6_2_fails_over_in_every_lab() {
    failover_suite("redis@6.2", "redis", "6.2.14");
}

#[test]
fn redis_7_0_fails_over_in_every_lab() {
    failover_suite("redis@7.0", "redis", "7.0.");
}

#[test]
fn valkey_9_fails_over_in_every_lab() {
    failover_suite("valkey@9", "valkey", "9.");
}

/// `engine` as `--server` names it; every run must report `server` and a version starting
/// with `version`.
fn failover_suite(engine: &str, server: &str, version: &str) {
    let _alone = alone();
    let started = Instant::now();
    let lab = TestLab::start_engine(Topology::Sentinel, engine);
    let named = |out: &std::path::Path| names_engine(out, server, version);

    // kill -9 of the primary: failure detected (+sdown, +odown), a replica promoted. First:
    // the next run's heal restarts the killed node, of this version, as a replica.
    let (o, out) = lab.run("kill", &["--trigger", "kill", "--max-trial", "5s", "--clients", "failprobe,pinned"]);
    assert_eq!(code(&o), 0, "{engine}: {}", explain(&o));
    let v = named(&out);
    let killed = figures(&summary(&out)["trials"][0], engine);
    assert!((1000.0..=4000.0).contains(&killed.outage), "{engine}: kill outage {} ms, expected 1-4 s", killed.outage);
    let detected = killed.detected.unwrap_or_else(|| panic!("{engine}: no failure detected"));
    // The first sentinel's +sdown counts down-after from its last answered ping, which may be up
    // to a ping period (1 s) before the kill: detection lands 0-3 s after it.
    assert!((0.0..3000.0).contains(&detected), "{engine}: failure detected {detected} ms after the kill");

    // A pause under down-after (1 s): one outage of the pause's length, no failover.
    let (o, out) = lab.run("pause", &["--trigger", "pause=500ms", "--clients", "failprobe", "--interval", "5ms"]);
    assert_eq!(code(&o), 0, "{engine}: {}", explain(&o));
    named(&out);
    let t = &summary(&out)["trials"][0];
    let pause = f(&t["writes"]["longest_outage_ms"]);
    assert!((450.0..=700.0).contains(&pause), "{engine}: pause outage {pause} ms, expected ~500");
    assert_eq!(u(&t["integrity"]["lost_acked_writes"]), 0, "{engine}");

    // SENTINEL FAILOVER: the planned switch; the pinned client stays on the demoted primary.
    let (o, out) =
        lab.run("sentinel", &["--trigger", "sentinel", "--max-trial", "4s", "--clients", "failprobe,pinned"]);
    assert_eq!(code(&o), 0, "{engine}: {}", explain(&o));
    named(&out);
    let planned = figures(&summary(&out)["trials"][0], engine);
    drop(lab);

    let cluster = TestLab::start_engine(Topology::Cluster, engine);
    if server == "redis" {
        // SHUTDOWN FAILOVER is Valkey 9's: refused before anything runs, naming the version.
        let (o, _) = cluster.run("refused", &["--trigger", "shutdown-failover"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(code(&o) == 2 && err.contains(&format!("runs redis {v}")), "{engine}: {}", explain(&o));
    }
    let (o, out) = cluster.run("cluster", &["--trigger", "kill", "--shard", "0", "--clients", "failprobe"]);
    assert_eq!(code(&o), 0, "{engine}: {}", explain(&o));
    named(&out);
    let s = summary(&out);
    let shard0 = &s["trials"][0]["shards"][0];
    assert_eq!(shard0["writes"]["recovered"], true, "{engine}");
    let cluster_outage = f(&shard0["writes"]["longest_outage_ms"]);
    // At least cluster-node-timeout (1 s) before the replica may take over (Valkey 9: 1.4 s
    // seen; Redis 2-2.6 s).
    assert!((1000.0..=4000.0).contains(&cluster_outage), "{engine}: shard0 outage {cluster_outage} ms");
    let i = &shard0["integrity"];
    assert_eq!(u(&i["acked_writes"]), u(&i["surviving_acked_writes"]) + u(&i["lost_acked_writes"]), "{engine}");
    drop(cluster);

    eprintln!(
        "engine {server} {v}: pause 500ms → {pause:.0} ms; SENTINEL FAILOVER {planned}; kill -9 {killed}; \
         cluster kill shard0 {cluster_outage:.0} ms, lost {}; suite {:.1} s",
        u(&i["lost_acked_writes"]),
        started.elapsed().as_secs_f64()
    );
}

/// What the README's table shows of a Sentinel trial.
struct Figures {
    outage: f64,
    lost: u64,
    ghost: u64,
    detected: Option<f64>,
    promoted: f64,
    pinned: String,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, w: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let detected = self.detected.map_or("-".into(), |d| format!("{d:.0} ms"));
        write!(
            w,
            "outage {:.0} ms, lost {}, ghost {}, detected {detected}, promoted {:.0} ms, pinned {}",
            self.outage, self.lost, self.ghost, self.promoted, self.pinned
        )
    }
}

/// A Sentinel trial's figures; its lost/ghost accounting must add up, and the writes recover.
fn figures(t: &Value, engine: &str) -> Figures {
    let i = &t["integrity"];
    assert_eq!(i["checked"], true, "{engine}");
    assert_eq!(u(&i["acked_writes"]), u(&i["surviving_acked_writes"]) + u(&i["lost_acked_writes"]), "{engine}");
    let clients = t["clients"].as_array().unwrap();
    let own = &clients[0];
    assert_eq!(own["writes"]["recovered"], true, "{engine}: {}", own["writes"]);
    let phase = |name: &str| {
        own["phases"].as_array().unwrap().iter().find(|p| p["name"] == name).and_then(|p| p["at_ms"].as_f64())
    };
    let start = phase("trigger started").expect("trigger started");
    let promoted = phase("new primary announced").unwrap_or_else(|| panic!("{engine}: no new primary"));
    let pinned = clients.iter().find(|c| c["name"] == "pinned").expect("the pinned client");
    let fate = match pinned["writes"]["recovered"].as_bool() {
        Some(true) => "recovered".to_string(),
        _ => {
            let errors = pinned["writes"]["errors"].as_object().unwrap();
            let most = errors.iter().max_by_key(|(_, n)| n.as_u64()).map(|(k, _)| k.clone()).unwrap_or_default();
            format!("never recovered ({most})")
        }
    };
    Figures {
        outage: f(&own["writes"]["longest_outage_ms"]),
        lost: u(&i["lost_acked_writes"]),
        ghost: u(&i["ghost_writes"]),
        detected: phase("failure detected").map(|d| d - start),
        promoted: promoted - start,
        pinned: fate,
    }
}

/// run.json and summary.json name the primary's engine and version; returns the version.
fn names_engine(out: &std::path::Path, server: &str, version: &str) -> String {
    let run: Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let mut found = String::new();
    for servers in [&run["servers"], &summary(out)["servers"]] {
        let servers = servers.as_array().unwrap_or_else(|| panic!("no servers in {run}"));
        let data = servers.iter().find(|s| s["role"] == "primary").unwrap_or_else(|| panic!("{servers:?}"));
        assert_eq!(data["server"], server, "{data}");
        found = data["version"].as_str().unwrap().to_string();
        assert!(found.starts_with(version), "{data}: expected {server} {version}");
    }
    found
}

/// An old server given a directive of a newer one exits at start; `lab up` says so within 2 s
/// in the server's own words and leaves nothing it started running. The server here is Redis
/// 6.2 behind a program that claims to be 7.0, so the lab writes 7.0's directives for it.
#[test]
fn a_server_refusing_its_config_fails_lab_up_at_once_in_its_own_words() {
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".servers/redis-6.2.14/bin/redis-server");
    assert!(real.is_file(), "Redis 6.2.14 is not installed: run scripts/install-servers.sh --redis 6.2.14");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'Redis server v=7.0.15 sha=0 malloc=libc bits=64'; exit 0; }}\nexec {} \"$@\"\n",
        real.display()
    );
    let (tmp, path) = wrapped(&script);
    let dir = tmp.path().join("lab");
    // Our turn first: the time measured is lab up's, not the wait for other tests' servers.
    let _turn = beside_others();
    let started = Instant::now();
    let o = failprobe_env(&["lab", "up", "--topology", "sentinel", "--dir", dir.to_str().unwrap()], &[("PATH", path)]);
    let took = started.elapsed();
    assert_ne!(code(&o), 0, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(took.as_secs_f64() < 2.0, "lab up failed after {took:?}, not at once: {err}");
    for said in ["FATAL CONFIG FILE ERROR (Redis 6.2.14)", "Bad directive", "exited at start"] {
        assert!(err.contains(said), "the server's own words `{said}` are not shown: {err}");
    }
    let left = running_in(&dir);
    assert!(left.is_empty(), "processes of the failed lab up still run: {left:?}");
}

/// What a server lacks is refused before anything runs, naming the version found: FAILOVER
/// (Redis 6.2) and WAITAOF (Redis 7.2) on 5.0, a coordinated Sentinel failover (Valkey 9) on
/// 6.2's sentinels.
#[test]
fn what_an_older_server_lacks_is_refused_naming_its_version() {
    let old = TestLab::start_engine(Topology::Replica, "redis@5.0");
    let args: [&[&str]; 2] = [&["--trigger", "failover"], &["--trigger", "none", "--write-ack", "waitaof=1:0"]];
    for (extra, needs) in args.iter().zip(["needs Redis 6.2 or later", "needs Redis 7.2 or later"]) {
        let (o, out) = old.run("refused", extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 2, "{extra:?}: {}", explain(&o));
        assert!(err.contains(needs) && err.contains("runs redis 5.0.6"), "{extra:?}: {err}");
        assert!(!out.join("samples.bin").exists() && !out.join("run.json").exists(), "{extra:?}: a run was recorded");
    }
    drop(old);
    let sentinel = TestLab::start_engine(Topology::Sentinel, "redis@6.2");
    let (o, _) = sentinel.run("coordinated", &["--trigger", "sentinel=coordinated"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(code(&o) == 2 && err.contains("needs Valkey 9.0 or later") && err.contains("runs redis 6.2.14"), "{err}");
}

/// A port taken between the lab's check and the server's bind: the server exits ("Address
/// already in use", in its log) and `lab up` says so at once, leaving nothing running. The
/// system's redis-server is told to listen where a socket of this test already does.
#[test]
fn a_server_whose_port_is_taken_fails_lab_up_at_once_in_its_own_words() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let real = which("redis-server");
    let script = format!("#!/bin/sh\nexec {} \"$@\" --bind 127.0.0.1 --port {port}\n", real.display());
    let (tmp, path) = wrapped(&script);
    let dir = tmp.path().join("lab");
    let _turn = beside_others();
    let started = Instant::now();
    let o = failprobe_env(&["lab", "up", "--topology", "replica", "--dir", dir.to_str().unwrap()], &[("PATH", path)]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(code(&o), 0, "{}", explain(&o));
    assert!(took.as_secs_f64() < 2.0, "lab up failed after {took:?}, not at once: {err}");
    assert!(err.contains("exited at start") && err.contains("Address already in use"), "{err}");
    assert!(running_in(&dir).is_empty(), "processes of the failed lab up still run: {:?}", running_in(&dir));
}

/// `bin/redis-server` (the script) and `bin/redis-sentinel` (a link to it) in a new temporary
/// directory, and a PATH that finds them first.
fn wrapped(script: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("redis-server"), script).unwrap();
    std::fs::set_permissions(bin.join("redis-server"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("redis-server", bin.join("redis-sentinel")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    (tmp, path)
}

fn which(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{program} is not on PATH: run scripts/install-servers.sh"))
}

/// The pids of processes whose working directory is `dir` (every lab process runs there).
fn running_in(dir: &std::path::Path) -> Vec<String> {
    let Ok(dir) = dir.canonicalize() else { return Vec::new() };
    let procs = std::fs::read_dir("/proc").unwrap().flatten();
    procs
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|d| d == dir))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
