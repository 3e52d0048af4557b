//! Client profiles: the ways of talking to a deployment that failprobe measures side by side, so
//! that one trial answers both "is the deployment up?" and "is an application written the
//! common way up?". Each profile is a `Client` (the seam external clients plug into); the engine
//! of the target kind builds them (`Engine::client`).

use super::schedule::{BoxFuture, StreamTask};
use crate::sample::OWN_CLIENT;
use std::sync::Arc;
use std::time::Duration;

/// One profile's probes: a write and a read stream per shard, each on the shared schedule.
pub trait Client: Send + Sync {
    /// One stream of one shard, until `task.stop`; returns how many probes were sent late.
    fn run_stream(self: Arc<Self>, task: StreamTask) -> BoxFuture<'static, u64>;
    /// Stops what the client runs in the background (connection keepers, topology polls).
    fn shutdown(&self);
    /// `--probe pubsub`: this client's subscriber on one shard for one trial, until
    /// `task.stop`; None for a client that cannot subscribe.
    fn subscribe(self: Arc<Self>, _task: super::pubsub::SubscribeTask) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Profile {
    /// failprobe's own client: the deployment's availability, the best case.
    Failprobe,
    /// One connection per stream opened once and kept: the common application.
    Pinned,
    /// failprobe's own client with each DNS answer reused for this long.
    DnsCache(Duration),
    /// The `redis` crate's own clients with their defaults: a Rust application.
    RedisRs,
    /// An external adapter: the application's own client library, driven over JSON lines.
    Exec(Arc<ExecSpec>),
}

/// `exec:NAME=COMMAND`: what is started (`sh -c COMMAND`) and what its results are called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecSpec {
    pub name: String,
    pub command: String,
    /// The name its connections are to carry (`FAILPROBE_CLIENT_NAME`), so that `CLIENT LIST`
    /// can count them; set by the run, never typed.
    pub client_name: Option<String>,
}

/// Every profile: its name and what it does. `--clients` help and the "unknown client" error
/// come from this table.
pub(crate) const PROFILES: &[(&str, &str)] = &[
    (
        OWN_CLIENT,
        "failprobe's own client: drops a connection on READONLY/LOADING/MASTERDOWN/NOREPLICAS, re-resolves DNS, \
         checks ROLE on every reconnect, follows Sentinel and MOVED (the deployment's availability)",
    ),
    (
        "pinned",
        "one connection per stream, opened once to the primary of the moment; reopened to the same \
         address (DNS resolved again) only when it breaks (refused, reset, timeout), not on \
         READONLY, LOADING, MASTERDOWN or MOVED: the common application",
    ),
    (
        "dns-cache=D",
        "failprobe's own client, but a name's address is reused for D (e.g. dns-cache=30s) whatever \
         its TTL, as a JVM with networkaddress.cache.ttl or a resolver that ignores TTLs does",
    ),
    (
        "redis-rs",
        "the `redis` crate's own clients with their default settings, as a Rust application uses \
         them: a ConnectionManager on the primary's address (for Sentinel, the one the crate's \
         SentinelClient named at start-up), or the async ClusterClient",
    ),
    (
        "exec:NAME=COMMAND",
        "an external adapter: COMMAND (run with sh -c) speaks failprobe's JSON-lines protocol with \
         the application's own client library (see adapters/); it takes the rest of its --clients \
         argument, commas included, so give it a --clients of its own",
    ),
];

impl Profile {
    /// `failprobe`, `pinned`, `dns-cache=5s`, `redis-rs`, or an adapter's NAME.
    pub fn name(&self) -> String {
        match self {
            Profile::Failprobe => OWN_CLIENT.to_string(),
            Profile::Pinned => "pinned".to_string(),
            Profile::DnsCache(keep) => format!("dns-cache={}", crate::duration::format_duration(*keep)),
            Profile::RedisRs => "redis-rs".to_string(),
            Profile::Exec(spec) => spec.name.clone(),
        }
    }

    /// The label in samples, events and key names: None for failprobe's own client.
    pub fn label(&self) -> Option<String> {
        (*self != Profile::Failprobe).then(|| self.name())
    }

    fn parse(name: &str) -> Result<Profile, String> {
        if let Some(keep) = name.strip_prefix("dns-cache=") {
            let keep = crate::duration::parse_duration(keep).map_err(|e| format!("client profile `{name}`: {e}"))?;
            if keep.is_zero() || keep > Duration::from_secs(86_400) {
                return Err(format!("client profile `{name}`: D must be between 1ms and 24h"));
            }
            return Ok(Profile::DnsCache(keep));
        }
        match name {
            OWN_CLIENT => Ok(Profile::Failprobe),
            "pinned" => Ok(Profile::Pinned),
            "redis-rs" => Ok(Profile::RedisRs),
            _ => {
                let known: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
                Err(format!("unknown client profile `{name}` (known: {})", known.join(", ")))
            }
        }
    }

    /// `exec:NAME=COMMAND`; NAME goes into key names and reports, so it is kept plain.
    fn parse_exec(spec: &str) -> Result<Profile, String> {
        let (name, command) =
            spec.split_once('=').ok_or_else(|| format!("`exec:{spec}`: expected exec:NAME=COMMAND"))?;
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > 40 || !name.chars().all(plain) {
            return Err(format!("`exec:{name}=…`: NAME must be 1-40 letters, digits, '-', '_' or '.'"));
        }
        if command.trim().is_empty() {
            return Err(format!("`exec:{name}=`: the command is empty"));
        }
        if Profile::parse(name).is_ok() || name.starts_with("dns-cache") {
            return Err(format!("`exec:{name}=…`: NAME is a built-in profile's; choose another"));
        }
        Ok(Profile::Exec(Arc::new(ExecSpec {
            name: name.to_string(),
            command: command.to_string(),
            client_name: None,
        })))
    }

    /// `failprobe,pinned`: profiles in order, each once. An `exec:` entry takes the rest of
    /// its list, commas included (a command has commas of its own).
    pub fn parse_list(list: &str) -> Result<Vec<Profile>, String> {
        let mut out = Vec::new();
        Profile::extend(&mut out, list)?;
        if out.is_empty() {
            return Err("--clients needs at least one profile".into());
        }
        Ok(out)
    }

    /// Adds the profiles of one `--clients` argument to `out`, refusing one listed twice.
    pub fn extend(out: &mut Vec<Profile>, list: &str) -> Result<(), String> {
        let mut rest = list.trim();
        while !rest.is_empty() {
            let (item, tail) = match rest.strip_prefix("exec:") {
                Some(spec) => (Profile::parse_exec(spec.trim())?, ""),
                None => match rest.split_once(',') {
                    Some((item, tail)) => (Profile::parse(item.trim())?, tail),
                    None => (Profile::parse(rest)?, ""),
                },
            };
            if out.iter().any(|o: &Profile| o.name() == item.name()) {
                return Err(format!("client profile `{}` is listed twice", item.name()));
            }
            out.push(item);
            rest = tail.trim_start_matches([',', ' ']).trim();
        }
        Ok(())
    }
}

/// The `--clients` help, from the table.
pub(crate) fn profile_help() -> String {
    let rows: Vec<String> = PROFILES.iter().map(|(name, help)| format!("{name}: {help}")).collect();
    format!("Client profiles measured side by side, comma-separated [default: failprobe,pinned; failprobe alone for memcached]. {}", rows.join(". "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_order_and_reject_unknown_or_repeated_names() {
        assert_eq!(Profile::parse_list("failprobe,pinned").unwrap(), vec![Profile::Failprobe, Profile::Pinned]);
        assert_eq!(Profile::parse_list(" pinned ").unwrap(), vec![Profile::Pinned]);
        let e = Profile::parse_list("failprobe,lettuce").unwrap_err();
        let exec = Profile::parse_list("failprobe, exec:py=adapters/redis-py/run --x=1,2").unwrap();
        assert_eq!(exec.len(), 2);
        assert!(matches!(&exec[1], Profile::Exec(s) if s.name == "py" && s.command == "adapters/redis-py/run --x=1,2"));
        assert!(Profile::parse_list("exec:pinned=true").unwrap_err().contains("built-in"));
        assert!(Profile::parse_list("exec:a b=true").unwrap_err().contains("NAME"));
        assert!(Profile::parse_list("exec:py").unwrap_err().contains("exec:NAME=COMMAND"));
        assert!(Profile::parse_list("exec:py= ").unwrap_err().contains("empty"));
        assert!(e.contains("`lettuce`") && e.contains("failprobe, pinned"), "{e}");
        assert!(Profile::parse_list("pinned,pinned").unwrap_err().contains("twice"));
        assert!(Profile::parse_list("").is_err());
        assert_eq!(Profile::Pinned.label().as_deref(), Some("pinned"));
        assert_eq!(Profile::Failprobe.label(), None);
        let cached = Profile::parse_list("failprobe,dns-cache=5s").unwrap();
        assert_eq!(cached, vec![Profile::Failprobe, Profile::DnsCache(Duration::from_secs(5))]);
        assert_eq!(cached[1].name(), "dns-cache=5s");
        assert!(Profile::parse_list("dns-cache=5s,dns-cache=5000ms").unwrap_err().contains("twice"));
        assert!(Profile::parse_list("dns-cache=0s").unwrap_err().contains("between"));
        assert!(Profile::parse_list("dns-cache=soon").unwrap_err().contains("dns-cache=soon"));
        assert!(Profile::parse_list("dns-cache=D").is_err());
    }
}
