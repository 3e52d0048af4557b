//! failprobe: measure how long a Redis/Valkey deployment is unavailable during a failover, and
//! whether it loses acknowledged writes.
//!
//! Data flows one way: `target` + `probe` → `control` → `record` → `report`. `run` wires a live
//! measurement together; `lab` starts local servers for CI and the demo.

/// `eprintln!` that never panics: stderr may be a closed pipe or a terminal that hung up
/// (SIGHUP), and the clean-up after it must still run.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics.
#[macro_export]
macro_rules! note_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod aws;
pub mod cli;
pub mod clock;
pub mod control;
pub mod duration;
pub mod error;
pub mod lab;
pub mod memcached;
pub mod os;
pub mod probe;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod secret;
pub mod target;
