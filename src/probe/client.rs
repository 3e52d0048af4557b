//! Client profiles: the ways of talking to a deployment that failprobe measures side by side, so
//! that one trial answers both "is the deployment up?" and "is an application written the
//! common way up?". Each profile is a `Client` (the seam external clients plug into); the engine
//! of the target kind builds them (`Engine::client`).

use super::engine::{BoxFuture, StreamTask};
use crate::sample::OWN_CLIENT;
use std::sync::Arc;
use std::time::Duration;

/// One profile's probes: a write and a read stream per shard, each on the shared schedule.
pub trait Client: Send + Sync {
    /// One stream of one shard, until `task.stop`; returns how many probes were sent late.
    fn run_stream(self: Arc<Self>, task: StreamTask) -> BoxFuture<'static, u64>;
    /// Stops what the client runs in the background (connection keepers, topology polls).
    fn shutdown(&self);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// failprobe's own client: the deployment's availability, the best case.
    Failprobe,
    /// One connection per stream opened once and kept: the common application.
    Pinned,
    /// failprobe's own client with each DNS answer reused for this long.
    DnsCache(Duration),
    /// The `redis` crate's ConnectionManager with its defaults: a Rust application.
    RedisRs,
}

/// Every profile: its name and what it does. `--clients` help and the "unknown client" error
/// come from this table.
pub(crate) const PROFILES: &[(Profile, &str, &str)] = &[
    (
        Profile::Failprobe,
        OWN_CLIENT,
        "failprobe's own client: drops a connection on READONLY/LOADING/MASTERDOWN, re-resolves DNS, \
         checks ROLE on every reconnect, follows Sentinel and MOVED (the deployment's availability)",
    ),
    (
        Profile::Pinned,
        "pinned",
        "one connection per stream, opened once to the primary of the moment; reopened to the same \
         address (DNS resolved again) only when it breaks (refused, reset, timeout), not on \
         READONLY, LOADING, MASTERDOWN or MOVED: the common application",
    ),
    (
        Profile::DnsCache(Duration::ZERO),
        "dns-cache=D",
        "failprobe's own client, but a name's address is reused for D (e.g. dns-cache=30s) whatever \
         its TTL, as a JVM with networkaddress.cache.ttl or a resolver that ignores TTLs does",
    ),
    (
        Profile::RedisRs,
        "redis-rs",
        "the `redis` crate's ConnectionManager with its default settings, one per profile, as a \
         Rust application uses it: reconnects to the address it was given when its connection \
         drops, not on an error reply (redis:// and rediss:// targets: a primary or an endpoint)",
    ),
];

impl Profile {
    /// `failprobe`, `pinned`, `dns-cache=5s`, `redis-rs`.
    pub fn name(self) -> String {
        match self {
            Profile::DnsCache(keep) => format!("dns-cache={}", crate::duration::format_duration(keep)),
            _ => PROFILES.iter().find(|(p, _, _)| *p == self).map_or(OWN_CLIENT, |(_, name, _)| *name).to_string(),
        }
    }

    /// The label in samples, events and key names: None for failprobe's own client.
    pub fn label(self) -> Option<String> {
        (self != Profile::Failprobe).then(|| self.name())
    }

    fn parse(name: &str) -> Result<Profile, String> {
        if let Some(keep) = name.strip_prefix("dns-cache=") {
            let keep = crate::duration::parse_duration(keep).map_err(|e| format!("client profile `{name}`: {e}"))?;
            if keep.is_zero() || keep > Duration::from_secs(86_400) {
                return Err(format!("client profile `{name}`: D must be between 1ms and 24h"));
            }
            return Ok(Profile::DnsCache(keep));
        }
        match PROFILES.iter().find(|(p, n, _)| *n == name && !matches!(p, Profile::DnsCache(_))) {
            Some((p, _, _)) => Ok(*p),
            None => {
                let known: Vec<&str> = PROFILES.iter().map(|(_, n, _)| *n).collect();
                Err(format!("unknown client profile `{name}` (known: {})", known.join(", ")))
            }
        }
    }

    /// `failprobe,pinned`: profiles in order, each once.
    pub fn parse_list(list: &str) -> Result<Vec<Profile>, String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let p = Profile::parse(name)?;
            if out.iter().any(|o: &Profile| o.name() == p.name()) {
                return Err(format!("client profile `{name}` is listed twice"));
            }
            out.push(p);
        }
        if out.is_empty() {
            return Err("--clients needs at least one profile".into());
        }
        Ok(out)
    }
}

/// The `--clients` help, from the table.
pub(crate) fn profile_help() -> String {
    let rows: Vec<String> = PROFILES.iter().map(|(_, name, help)| format!("{name}: {help}")).collect();
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
