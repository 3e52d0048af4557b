//! Which engine and version a lab runs: `--server redis@6.2` picks a version installed by
//! `scripts/install-servers.sh --redis 6.2.14` (into `.servers/redis-6.2.14/bin` of the
//! checkout) or found on PATH; the version a program reports decides the directives its config
//! gets (older servers exit at start on a directive they do not know).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The server program a lab runs: Redis (`redis-server`, `redis-sentinel`) or Valkey
/// (`valkey-server`, which is also the sentinel with `--sentinel`).
#[derive(Serialize, Deserialize, clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    #[default]
    Redis,
    Valkey,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Redis => "redis",
            Server::Valkey => "valkey",
        }
    }

    /// The data node's program.
    pub(crate) fn server_program(self) -> &'static str {
        match self {
            Server::Redis => "redis-server",
            Server::Valkey => "valkey-server",
        }
    }

    /// The sentinel's program and the arguments after its config file.
    pub(crate) fn sentinel_program(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Server::Redis => ("redis-sentinel", &[]),
            Server::Valkey => ("valkey-server", &["--sentinel"]),
        }
    }
}

/// `--server`: `redis`, `valkey`, or one version of either (`redis@6.2`, `redis@5.0.6`,
/// `valkey@9`): a version is a prefix of the one the program reports, at a dot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ServerChoice {
    pub server: Server,
    pub version: Option<String>,
}

impl std::str::FromStr for ServerChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("server `{text}`: use redis, valkey, or redis@VERSION (e.g. redis@6.2, redis@5.0)");
        let (name, version) = match text.split_once('@') {
            Some((name, v)) => (name, Some(v)),
            None => (text, None),
        };
        let server = match name {
            "redis" => Server::Redis,
            "valkey" => Server::Valkey,
            _ => return Err(bad()),
        };
        let numeric =
            |v: &str| !v.is_empty() && v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        match version {
            Some(v) if !numeric(v) => Err(bad()),
            _ => Ok(Self { server, version: version.map(str::to_string) }),
        }
    }
}

impl TryFrom<String> for ServerChoice {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Server> for ServerChoice {
    fn from(server: Server) -> Self {
        Self { server, version: None }
    }
}

/// What a server program says it is (`--version`): `Redis server v=6.2.14 …`,
/// `Valkey server v=9.1.2 …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Version {
    pub valkey: bool,
    /// `6.2.14`
    pub text: String,
}

impl Version {
    pub(crate) fn parse(said: &str) -> Option<Version> {
        let text = said.split_once("v=")?.1.split_whitespace().next()?.to_string();
        Some(Version { valkey: said.starts_with("Valkey"), text })
    }

    /// Redis 7.0 introduced `bind-source-addr` and `enable-debug-command`; Valkey has both.
    pub(crate) fn is_7_or_later(&self) -> bool {
        self.valkey || self.text.split('.').next().and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| m >= 7)
    }

    /// `wanted` (`6.2`) names this version (`6.2.14`).
    fn is(&self, wanted: &str) -> bool {
        self.text == wanted || self.text.strip_prefix(wanted).is_some_and(|rest| rest.starts_with('.'))
    }
}

/// `--version` of `program`, asked once per program per process.
pub(crate) fn version_of(program: &Path) -> Option<Version> {
    static SEEN: std::sync::Mutex<Vec<(PathBuf, Option<Version>)>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, v)) = seen.iter().find(|(p, _)| p == program) {
        return v.clone();
    }
    let out = Command::new(program).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output();
    let version = out.ok().and_then(|o| Version::parse(&String::from_utf8_lossy(&o.stdout)));
    seen.push((program.to_path_buf(), version.clone()));
    version
}

/// The directory holding `server`'s programs of `version`: `first` (a directory given to the
/// lab), `.servers/<server>-<version>*/bin` of the checkout, else PATH; the first whose program
/// reports that version.
pub(crate) fn programs_for(server: Server, version: &str, first: Option<&Path>) -> Result<PathBuf> {
    let bin = server.server_program();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates: Vec<PathBuf> =
        first.map(Path::to_path_buf).into_iter().chain(installed(server)).chain(std::env::split_paths(&path)).collect();
    let (mut seen, mut real) = (Vec::new(), Vec::new());
    for dir in candidates {
        let program = dir.join(bin);
        // A program found twice (/bin and /usr/bin on a merged /usr) is named once.
        match program.canonicalize() {
            Ok(r) if !real.contains(&r) => real.push(r),
            _ => continue,
        }
        match version_of(&program) {
            Some(v) if v.is(version) => return Ok(std::path::absolute(dir)?),
            Some(v) => seen.push(format!("{} is {}", program.display(), v.text)),
            None => {}
        }
    }
    let install = match server {
        Server::Redis => "scripts/install-servers.sh --redis 5.0.6|6.2.14|7.0 (there is no 6.0)",
        Server::Valkey => "scripts/install-servers.sh --valkey",
    };
    bail!(
        "no {bin} {version} found in .servers/ of the checkout or on PATH{}; install it with {install}",
        match seen.is_empty() {
            true => String::new(),
            false => format!(" ({})", seen.join(", ")),
        }
    )
}

/// The `bin` directories `scripts/install-servers.sh` made for `server` in the nearest
/// `.servers/` above the current directory or above this executable (`target/debug/…` of a
/// checkout), newest version name last.
fn installed(server: Server) -> Vec<PathBuf> {
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok();
    let servers = [cwd, exe]
        .into_iter()
        .flatten()
        .filter_map(|start| start.ancestors().map(|a| a.join(".servers")).find(|s| s.is_dir()));
    let mut dirs = Vec::new();
    for root in servers {
        let Ok(entries) = std::fs::read_dir(&root) else { continue };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(server.name()))
            .map(|e| e.path().join("bin"))
            .collect();
        found.sort();
        dirs.extend(found);
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_choice_names_an_engine_and_maybe_a_version() {
        let six = ServerChoice { server: Server::Redis, version: Some("6.2".into()) };
        assert_eq!("redis@6.2".parse::<ServerChoice>(), Ok(six));
        assert_eq!("valkey".parse::<ServerChoice>(), Ok(Server::Valkey.into()));
        for bad in ["redis@", "redis@6.x", "memcached", "redis@6..2", "keydb@6"] {
            assert!(bad.parse::<ServerChoice>().is_err(), "{bad}");
        }
        let v = Version::parse("Redis server v=6.2.14 sha=00000000:0 malloc=libc bits=64 build=1").unwrap();
        assert!(v.is("6.2") && v.is("6") && v.is("6.2.14") && !v.is("6.21") && !v.is("6.2.1"));
        assert!(!v.is_7_or_later() && !v.valkey);
        let valkey = Version::parse("Valkey server v=9.1.2 sha=00000000:0 malloc=libc bits=64").unwrap();
        assert!(valkey.valkey && valkey.is_7_or_later());
    }
}
