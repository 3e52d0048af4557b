//! Issue "safe to point at anything": secrets, signals, --pid, interruptions, hostile servers.
//! Included from tests/cli.rs (one test binary fewer to link).

mod children;
mod confirm;
mod hostile;
mod lab;
mod memcached;
mod secrets;
mod signals;
mod stopping;
mod supply;
