//! Confirmation by what will be touched, not by what was typed: servers that Sentinel names
//! off loopback, and commands that come from a scenario file or the environment.

use crate::common::*;
use failprobe::lab::Topology;
use std::path::Path;
use std::process::Command;

/// Inside a network and pid namespace of its own (every process in it ends with the script):
/// a primary on 192.0.2.10 and its replica on 192.0.2.11 (TEST-NET-1 addresses on the
/// namespace's own loopback device, so no packet leaves it), and a sentinel on 127.0.0.1 that
/// monitors them. failprobe is then asked to fail over and to back up through that sentinel.
const SCRIPT: &str = r#"
set -eu
D=$1; FP=$2
ip link set lo up
ip addr add 192.0.2.10/32 dev lo
ip addr add 192.0.2.11/32 dev lo
common="--port 6379 --protected-mode no --save '' --appendonly no --dir $D --daemonize no --logfile $D/redis.log"
eval redis-server --bind 192.0.2.10 --dbfilename p.rdb $common &
eval redis-server --bind 192.0.2.11 --replica-announce-ip 192.0.2.11 --dbfilename r.rdb --replicaof 192.0.2.10 6379 $common &
printf 'port 26379\nbind 127.0.0.1\nsentinel monitor fp 192.0.2.10 6379 1\n' > $D/s.conf
redis-sentinel $D/s.conf > /dev/null &
for _ in $(seq 100); do
  redis-cli -p 26379 sentinel replicas fp 2>/dev/null | grep -q 192.0.2.11 && break
  sleep 0.1
done
redis-cli -h 192.0.2.10 LASTSAVE > $D/lastsave.before
for case in sentinel backup; do
  set -- run --target redis+sentinel://127.0.0.1:26379/fp --quiet --warmup 1s --duration 1s --out $D/$case
  if [ $case = sentinel ]; then set -- "$@" --trigger sentinel; else set -- "$@" --trigger none --backup; fi
  set +e
  "$FP" "$@" > $D/$case.out 2> $D/$case.err < /dev/null
  echo $? > $D/$case.code
  set -e
done
redis-cli -h 192.0.2.10 LASTSAVE > $D/lastsave.after
redis-cli -p 26379 sentinel get-master-addr-by-name fp | head -1 > $D/master.after
"#;

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default().trim().to_string()
}

/// A sentinel on loopback naming a primary elsewhere: main 9794c7d sent SENTINEL FAILOVER and
/// ran BGSAVE on that primary without a question. Now both are asked, naming each server.
#[test]
fn servers_a_sentinel_names_off_loopback_are_confirmed() {
    let _turn = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("namespace.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    let status = Command::new("timeout")
        .args(["120", "unshare", "--net", "--pid", "--fork", "--mount-proc", "sh"])
        .arg(&script)
        .arg(dir.path())
        .arg(env!("CARGO_BIN_EXE_failprobe"))
        .env("FAILPROBE_CLIENTS", "failprobe")
        .status()
        .unwrap();
    assert!(status.success(), "the namespace script failed: {}", read(dir.path(), "redis.log"));
    for case in ["sentinel", "backup"] {
        let (code, err) = (read(dir.path(), &format!("{case}.code")), read(dir.path(), &format!("{case}.err")));
        assert_eq!(code, "2", "{case}: {err}");
        for node in ["primary 192.0.2.10:6379, not on loopback", "replica 192.0.2.11:6379, not on loopback"] {
            assert!(err.contains(node), "{case}: the question does not name `{node}`: {err}");
        }
        assert!(err.contains("not all on loopback; pass --yes"), "{case}: {err}");
        assert!(!dir.path().join(case).join("run.json").exists(), "{case}: the run started");
    }
    assert_eq!(read(dir.path(), "lastsave.before"), read(dir.path(), "lastsave.after"), "BGSAVE ran");
    assert_eq!(read(dir.path(), "master.after"), "192.0.2.10", "the failover ran");
}

/// `[runbook]` steps of a scenario file and adapters from FAILPROBE_CLIENTS are commands nobody
/// typed on this command line: shown and confirmed once unless --yes (main ran them unasked).
#[test]
fn commands_from_a_scenario_or_the_environment_are_confirmed() {
    let lab = TestLab::start(Topology::Replica);
    let (marker, adapter_marker) = (lab.out("before.ran"), lab.out("adapter.ran"));
    let scenario = lab.out("s.toml");
    let text = format!(
        "[target]\nurl = \"redis://{}\"\n[trigger]\nkind = \"none\"\n[runbook]\nbefore = \"touch {}\"\n",
        lab.primary_addr(),
        marker.display()
    );
    std::fs::write(&scenario, text).unwrap();
    let run = |name: &str, yes: bool, env: &[(&str, String)]| {
        let out = lab.out(name);
        let mut args = vec!["run", scenario.to_str().unwrap(), "--duration", "1s", "--quiet", "--warmup", "1s"];
        args.extend(["--out", out.to_str().unwrap()]);
        if yes {
            args.push("--yes");
        }
        failprobe_env(&args, env)
    };
    let o = run("asked", false, &[]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("--before `touch {}` (from the scenario's [runbook])", marker.display())), "{err}");
    assert!(!marker.exists(), "the scenario's --before ran unconfirmed");

    let adapter = format!("exec:x=touch {}", adapter_marker.display());
    let o = run("env", false, &[("FAILPROBE_CLIENTS", adapter)]);
    assert_eq!(code(&o), 2, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(from FAILPROBE_CLIENTS)"), "{}", explain(&o));
    assert!(!adapter_marker.exists(), "an adapter from the environment ran unconfirmed");

    let o = run("yes", true, &[]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(marker.exists(), "--yes: the scenario's --before runs");
}
