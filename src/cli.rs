//! Command line (clap derive). Thin: it parses and hands over; `run`'s flags are
//! `scenario::Overrides`, defined once there.

use crate::aws::AwsArgs;
use crate::duration::parse_duration;
use crate::lab::Topology;
use crate::report::{Format, OutputArgs};
use crate::scenario::Overrides;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "failprobe",
    version,
    about = "Measure how long Redis is down during a failover, and whether it loses writes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log detail (error, warn, info, debug) on stderr.
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Probe a target, fire a trigger, measure outage and integrity, write a report.
    Run(Box<RunArgs>),
    /// Rebuild summary.json, report.md and timeline.svg from a run's samples and events.
    Report {
        /// The run's output directory.
        dir: PathBuf,
        /// Only these formats (repeatable; default all).
        #[arg(long = "format", value_enum)]
        formats: Vec<Format>,
        #[command(flatten)]
        outputs: OutputArgs,
    },
    /// One report from several runs: vantage points of the same failover (aligned on wall
    /// clock) or trials from several days.
    Merge {
        /// Run directories to merge.
        #[arg(required = true, num_args = 2..)]
        dirs: Vec<PathBuf>,
        /// Where to write the merged run and its report.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        outputs: OutputArgs,
    },
    /// Two runs side by side with deltas, in the terminal and as HTML.
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// The HTML comparison [default: compare.html in the current directory]
        #[arg(long, default_value = "compare.html")]
        html: PathBuf,
    },
    /// Start, inspect or stop a local Redis lab on loopback.
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
    /// Save every key of a memcached deployment, or write them back (around a node replacement).
    Memcached {
        #[command(subcommand)]
        action: MemcachedAction,
    },
    /// ElastiCache maintenance: upcoming node replacements and pending service updates, from the
    /// event log (AWS keeps 14 days) and a local history that keeps everything fetched.
    /// Exit 1 with --within D when a replacement window starts within D.
    Events(Box<EventsArgs>),
    /// Client adapters (`--clients exec:NAME=COMMAND`).
    Adapter {
        #[command(subcommand)]
        action: AdapterAction,
    },
    /// Local lab, 3 × SENTINEL FAILOVER and 1 × kill -9, report, lab down (about a minute).
    Demo {
        /// Where to write the report (default failprobe-demo-<time>).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        outputs: OutputArgs,
    },
}

#[derive(Args, Debug, Default, Clone)]
pub struct RunArgs {
    /// Scenario file (TOML); flags override it.
    pub scenario: Option<PathBuf>,
    #[command(flatten)]
    pub fleet: crate::fleet::FleetArgs,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Args, Debug, Default, Clone)]
pub struct EventsArgs {
    /// Replication groups (their member clusters are included); repeatable.
    #[arg(long = "replication-group")]
    pub replication_groups: Vec<String>,
    /// Cache clusters; repeatable. Without either: every resource in the region.
    #[arg(long = "cache-cluster")]
    pub cache_clusters: Vec<String>,
    /// How far back to fetch, 1 to 14 days (AWS keeps 14).
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=14))]
    pub days: u32,
    /// The local history (JSON lines) [default: $FAILPROBE_HISTORY or ~/.local/state/failprobe/elasticache-events.jsonl]
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Exit 1 when a node replacement window starts within this long (e.g. 7d), for cron and CI.
    #[arg(long, value_parser = parse_duration)]
    pub within: Option<Duration>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: AwsArgs,
}

#[derive(Subcommand, Debug)]
pub enum MemcachedAction {
    /// Every key with its value, flags and expiry, byte-exact (listed with lru_crawler metadump).
    Dump {
        /// memcache://host:port[,host:port...]
        #[arg(long)]
        target: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Write a dump back with `add`: a key the application wrote since is never overwritten;
    /// keys that expired meanwhile are skipped; a damaged file is refused whole.
    Restore {
        #[arg(long)]
        target: String,
        #[arg(long)]
        file: PathBuf,
        /// Replace existing keys with the dump's values (`set`): asks first, unless --yes.
        #[arg(long)]
        overwrite: bool,
        /// Do not ask before --overwrite.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum LabAction {
    /// Start a lab and print its URLs; it keeps running until `lab down`.
    Up {
        #[arg(long, value_enum, default_value_t = Topology::Sentinel)]
        topology: Topology,
        #[arg(long, default_value = "failprobe-lab")]
        dir: PathBuf,
        /// The server the lab runs: redis, valkey, or one version (redis@6.2, redis@5.0: from
        /// `scripts/install-servers.sh --redis VERSION`) [default: redis when redis-server is
        /// on PATH, else valkey]
        #[arg(long)]
        server: Option<crate::lab::ServerChoice>,
        /// `--topology endpoint`: how long after a failover new connections reach the new
        /// primary (a real endpoint's DNS propagation and TTL) [default: 0s]
        #[arg(long, value_parser = crate::duration::parse_duration)]
        endpoint_lag: Option<std::time::Duration>,
        #[command(flatten)]
        settings: crate::scenario::LabSettingsArgs,
    },
    /// The lab's primary endpoint process (started by `lab up --topology endpoint`).
    #[command(hide = true)]
    Endpoint {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1")]
        ip: std::net::Ipv4Addr,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        lag_ms: u64,
    },
    /// Show the lab's processes and whether it is ready for a trial.
    Status {
        #[arg(long, default_value = "failprobe-lab")]
        dir: PathBuf,
    },
    /// Stop exactly the processes the lab started.
    Down {
        #[arg(long, default_value = "failprobe-lab")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdapterAction {
    /// Check an adapter against protocol version 1 on a lab of its own (a primary and a
    /// replica on loopback): hello, concurrent answers, error kinds, end of input, latency.
    /// Exit 0 only when every rule holds.
    Check {
        /// The adapter's command, as `--clients exec:NAME=COMMAND` gives it (run by `sh -c`).
        command: String,
        /// Its name in the table [default: adapter]
        #[arg(long, default_value = "adapter")]
        name: String,
        /// The lab's server: redis or valkey [default: redis when installed]
        #[arg(long, value_enum)]
        server: Option<crate::lab::Server>,
    },
}
