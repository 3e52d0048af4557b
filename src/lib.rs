//! failprobe: measure how long a Redis/Valkey deployment is unavailable during a failover, and
//! whether it loses acknowledged writes.
//!
//! Data flows one way: `target` + `probe` → `control` → `record` → `report`. `run` wires a live
//! measurement together; `lab` starts local servers for CI and the demo.

pub mod aws;
pub mod cli;
pub mod clock;
pub mod control;
pub mod duration;
pub mod error;
pub mod lab;
pub mod memcached;
pub mod probe;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod secret;
pub mod target;
