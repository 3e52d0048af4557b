//! DNS on the timeline: every host name the target gives is asked for its A and AAAA records
//! once a second (the `--dns-server`, else the system's configuration), and each change of the
//! addresses is an event with the time it was seen. A managed endpoint's failover is a DNS
//! change; the applications that cache it are what the `dns-cache=D` profile shows.

use crate::sample::EventKind;
use crate::sink::Reporter;
use crate::target::dns::{Answer, Dns};
use crate::target::Target;
use std::time::Duration;
use tokio::time::{interval, MissedTickBehavior};

/// How often each name is asked: the resolution of a change's time.
const POLL: Duration = Duration::from_secs(1);
/// A lookup that takes longer counts as failed for this poll.
const LOOKUP_LIMIT: Duration = Duration::from_millis(900);
/// Failed polls in a row before "no answer" is a change: one lost UDP packet is not news.
const FAILURES_BEFORE_NEWS: u32 = 3;

/// Starts the watch when the target names hosts; None for a target of IP addresses.
pub(super) fn start(target: &Target, report: Reporter) -> Option<tokio::task::JoinHandle<()>> {
    let names = target.host_names();
    if names.is_empty() {
        return None;
    }
    let watcher = match target.dns.watcher() {
        Ok(w) => w,
        Err(e) => {
            crate::note!("note: DNS answers are not on the timeline: {e}");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        let mut names: Vec<Watched> = names.into_iter().map(Watched::new).collect();
        let mut tick = interval(POLL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for watched in &mut names {
                let answer = Dns::answer(&watcher, &watched.name, LOOKUP_LIMIT).await;
                if let Some(kind) = watched.news(answer) {
                    report.event(kind);
                }
            }
        }
    }))
}

/// One name: what it answered last, and how many polls in a row failed.
struct Watched {
    name: String,
    last: Option<String>,
    failures: u32,
}

impl Watched {
    fn new(name: String) -> Self {
        Self { name, last: None, failures: 0 }
    }

    /// The event for this poll's answer, when the addresses changed (TTLs counting down in a
    /// cache are not a change).
    fn news(&mut self, answer: Result<Answer, String>) -> Option<EventKind> {
        let (now, ttl_s) = match answer {
            Ok(a) => {
                self.failures = 0;
                let ips: Vec<String> = a.addresses.iter().map(|ip| ip.to_string()).collect();
                let now = if ips.is_empty() { "no address".to_string() } else { ips.join(", ") };
                (now, a.ttl_s)
            }
            Err(e) => {
                self.failures += 1;
                if self.failures < FAILURES_BEFORE_NEWS {
                    return None;
                }
                (format!("no answer: {e}"), None)
            }
        };
        if self.last.as_deref() == Some(now.as_str()) {
            return None;
        }
        let from = self.last.replace(now.clone());
        Some(EventKind::DnsAnswer { name: self.name.clone(), from, to: now, ttl_s })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ips: &[&str], ttl: u32) -> Result<Answer, String> {
        Ok(Answer { addresses: ips.iter().map(|ip| ip.parse().unwrap()).collect(), ttl_s: Some(ttl) })
    }

    #[test]
    fn only_a_change_of_addresses_is_news_and_one_failed_poll_is_not() {
        let mut w = Watched::new("db.example".into());
        let first = w.news(answer(&["127.0.0.2"], 5)).unwrap();
        assert!(matches!(first, EventKind::DnsAnswer { from: None, ref to, ttl_s: Some(5), .. } if to == "127.0.0.2"));
        assert!(w.news(answer(&["127.0.0.2"], 4)).is_none(), "a TTL counting down is not a change");
        assert!(w.news(Err("timed out".into())).is_none());
        assert!(w.news(answer(&["127.0.0.2"], 3)).is_none());
        let flip = w.news(answer(&["127.0.0.3"], 5)).unwrap();
        assert!(
            matches!(flip, EventKind::DnsAnswer { from: Some(ref f), ref to, .. } if f == "127.0.0.2" && to == "127.0.0.3")
        );
        for _ in 0..FAILURES_BEFORE_NEWS - 1 {
            assert!(w.news(Err("timed out".into())).is_none());
        }
        let gone = w.news(Err("timed out".into())).unwrap();
        assert!(matches!(gone, EventKind::DnsAnswer { ref to, .. } if to.starts_with("no answer")));
        assert!(w.news(Err("timed out".into())).is_none(), "still no answer: no news");
    }
}
