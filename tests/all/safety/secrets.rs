//! Passwords with `/ + # ? @ %`, raw or percent-encoded, in the URL or the environment, never
//! reach stdout, stderr or any file, on success and on the error paths.

use crate::common::*;
use failprobe::lab::Topology;
use std::path::Path;

/// Every special character a URL parser can trip on.
const PW: &str = "Pw/+#?@%zz9";

fn encoded(pw: &str) -> String {
    let mut out = String::new();
    for b in pw.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Fails when the password, raw or encoded, is in the output or any file under `dir`.
fn assert_nowhere(o: &std::process::Output, dir: Option<&Path>, what: &str) {
    let printed = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    for secret in [PW.to_string(), encoded(PW), "Pw/+".to_string(), "zz9".to_string()] {
        assert!(!printed.contains(&secret), "{what}: `{secret}` printed:\n{printed}");
        let Some(dir) = dir.filter(|d| d.exists()) else { continue };
        for entry in walk(dir) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(&secret), "{what}: `{secret}` written to {}", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Environment variables for one failprobe process.
type Env = Vec<(&'static str, String)>;

fn observe(target: &str, out: &Path, env: &[(&str, String)]) -> std::process::Output {
    let out = out.to_str().unwrap();
    let args = ["run", "--target", target, "--trigger", "none", "--duration", "1s", "--quiet", "--out", out];
    failprobe_env(&args, env)
}

#[test]
fn special_passwords_connect_and_are_never_shown() {
    let lab = TestLab::start(Topology::Replica);
    let port = lab.primary_port();
    let at = lab.addr(port);
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg(PW).query(&mut lab.conn(port)).unwrap();
    let plain = format!("redis://{at}");
    let cases: Vec<(&str, String, Env)> = vec![
        ("raw in the URL", format!("redis://:{PW}@{at}"), vec![]),
        ("percent-encoded in the URL", format!("redis://default:{}@{at}/0", encoded(PW)), vec![]),
        ("FAILPROBE_PASSWORD", plain.clone(), vec![("FAILPROBE_PASSWORD", PW.to_string())]),
        ("REDISCLI_AUTH", plain.clone(), vec![("REDISCLI_AUTH", PW.to_string())]),
    ];
    for (what, target, env) in cases {
        let out = lab.out(&what.replace(' ', "-"));
        let o = observe(&target, &out, &env);
        assert_eq!(code(&o), 0, "{what}: {}", explain(&o));
        assert_eq!(u(&summary(&out)["trials"][0]["writes"]["failed"]), 0, "{what}");
        assert_nowhere(&o, Some(&out), what);
        let rebuilt = failprobe(&["report", out.to_str().unwrap()]);
        assert_nowhere(&rebuilt, Some(&out), what);
    }
}

#[test]
fn error_paths_never_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let scenario = dir.path().join("s.toml");
    std::fs::write(&scenario, format!("[target]\nulr = \"redis://:{PW}@127.0.0.1:{closed}\"\n")).unwrap();
    let wrong_auth_lab = TestLab::start(Topology::Replica);
    let port = wrong_auth_lab.primary_port();
    let at = wrong_auth_lab.addr(port);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("other-pass")
        .query(&mut wrong_auth_lab.conn(port))
        .unwrap();
    let sentinel_env = vec![("FAILPROBE_SENTINEL_PASSWORD", PW.to_string())];
    let std::net::IpAddr::V4(ip) = wrong_auth_lab.lab.addr_of(port).ip() else { unreachable!("lab nodes are on IPv4") };
    let dns = crate::common::dns::DnsServer::start("cache", ip, 60);
    let cases: Vec<(&str, Vec<String>, Env)> = vec![
        ("unreachable", vec!["--target".into(), format!("redis://:{PW}@127.0.0.1:{closed}")], vec![]),
        ("malformed", vec!["--target".into(), format!("redis:/:{PW}@127.0.0.1:{closed}")], vec![]),
        ("bad scheme", vec!["--target".into(), format!("http://:{PW}@127.0.0.1:{closed}")], vec![]),
        ("bad port", vec!["--target".into(), format!("redis://:{PW}@127.0.0.1:99999")], vec![]),
        ("wrong password", vec!["--target".into(), format!("redis://:{PW}@{at}")], vec![]),
        (
            "wrong password from the environment",
            vec!["--target".into(), format!("redis://{at}")],
            vec![("FAILPROBE_PASSWORD", PW.to_string())],
        ),
        ("sentinel password refused", vec!["--target".into(), format!("redis+sentinel://{at}/mymaster")], sentinel_env),
        ("scenario line", vec![scenario.to_string_lossy().into_owned()], vec![]),
        (
            // A name (not loopback as typed), answered by a DNS server on loopback: no lookup
            // leaves the machine.
            "remote target refused without --yes",
            vec![
                "--dns-server".into(),
                dns.addr.to_string(),
                "--target".into(),
                format!("redis://:{PW}@{}:{port}", dns.name),
                "--trigger".into(),
                "kill".into(),
                "--pid".into(),
                "1".into(),
            ],
            vec![],
        ),
    ];
    for (i, (what, args, env)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let mut all: Vec<&str> =
            vec!["run", "--quiet", "--duration", "1s", "--out", out.to_str().unwrap(), "--log", "debug"];
        all.extend(args.iter().map(String::as_str));
        let o = failprobe_env(&all, &env);
        assert_eq!(code(&o), 2, "{what}: {}", explain(&o));
        assert_nowhere(&o, Some(&out), what);
    }
}

/// The password only in FAILPROBE_PASSWORD, typed again in a `command=` trigger beside another
/// behind `--pass`: run.json kept the trigger as typed on main 9794c7d. Now no file of the run
/// or of a merge holds either, and the run's files are 0600 in a 0700 directory.
#[test]
fn command_labels_are_scrubbed_where_stored_and_outputs_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let lab = TestLab::start(Topology::Replica);
    let port = lab.primary_port();
    let at = lab.addr(port);
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg(PW).query(&mut lab.conn(port)).unwrap();
    let typed_only = "Typed0nlyPw";
    let trigger = format!("command=: redis-cli -a '{PW}' --pass {typed_only}");
    let target = format!("redis://{at}");
    let out = lab.out("run");
    let env = [("FAILPROBE_PASSWORD", PW.to_string())];
    let args = ["run", "--target", &target, "--trigger", &trigger, "--yes", "--quiet", "--warmup", "1s"];
    let o = failprobe_env(&[&args[..], &["--settle", "1s", "--out", out.to_str().unwrap()]].concat(), &env);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_nowhere(&o, Some(&out), "a command trigger");
    let meta = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(!meta.contains(typed_only), "a password behind --pass stored in run.json: {meta}");
    assert!(meta.contains("command=: redis-cli -a *** --pass ***"), "{meta}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o700, "the run's directory");
    for file in walk(&out) {
        assert_eq!(mode(&file) & 0o077, 0, "{} is readable by others", file.display());
    }

    // A run stored by an older failprobe, label as typed: a merge does not carry it on.
    let old = lab.out("old");
    std::fs::create_dir(&old).unwrap();
    for name in ["samples.csv", "events.jsonl"] {
        std::fs::copy(out.join(name), old.join(name)).unwrap();
    }
    let typed = format!("command=: redis-cli -a '{PW}' --pass {typed_only}");
    let raw = serde_json::to_string(&typed).unwrap();
    std::fs::write(old.join("run.json"), meta.replace("\"command=: redis-cli -a *** --pass ***\"", &raw)).unwrap();
    let merged = lab.out("merged");
    let o = failprobe_env(
        &["merge", out.to_str().unwrap(), old.to_str().unwrap(), "--out", merged.to_str().unwrap()],
        &env,
    );
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert_nowhere(&o, Some(&merged), "a merge");
    assert!(!std::fs::read_to_string(merged.join("run.json")).unwrap().contains(typed_only));
}
