//! Command line (clap derive). Thin: it parses and hands over to `run`, `report` and `lab`.

use crate::duration::parse_duration;
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
        /// Only these formats: json, md, html, svg, hgrm (repeatable; default all).
        #[arg(long = "format", value_parser = ["json", "md", "html", "svg", "hgrm"])]
        formats: Vec<String>,
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
    /// redis://, rediss://, redis+sentinel://host:port[,host:port]/<master>, redis+cluster://host:port[,...], memcache://host:port[,...]. Password may come from FAILPROBE_PASSWORD or REDISCLI_AUTH.
    #[arg(long)]
    pub target: Option<String>,
    /// none | sentinel | promote | kill | restart | pause=<D> | command=<shell command> | cluster-failover[=force|takeover] | elasticache-test-failover[=<node-group>] | elasticache-promote=<cache-cluster> | elasticache-reboot=<cache-cluster>:<node>[,<node>...]
    #[arg(long)]
    pub trigger: Option<String>,
    /// Time between probes of each stream [default: 10ms]
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Deadline of each probe [default: 250ms]
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Probing before the trigger fires [default: 5s]
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// How long both streams must be up before a trial ends [default: 2s]
    #[arg(long, value_parser = parse_duration)]
    pub settle: Option<Duration>,
    /// Length of an observe-only trial (--trigger none) [default: 10s]
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Longest a trial may wait for recovery after its trigger [default: 60s]
    #[arg(long, value_parser = parse_duration)]
    pub max_trial: Option<Duration>,
    /// TTL of every key failprobe writes [default: 1h]
    #[arg(long, value_parser = parse_duration)]
    pub key_ttl: Option<Duration>,
    /// Number of trials [default: 1]
    #[arg(long)]
    pub repeat: Option<u32>,
    /// Output directory [default: failprobe-<time>]
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Budget: exit 1 when any outage window is longer.
    #[arg(long, value_parser = parse_duration)]
    pub max_outage: Option<Duration>,
    /// Budget: exit 1 when more acknowledged writes are lost in a trial.
    #[arg(long)]
    pub max_lost_writes: Option<u64>,
    /// Use the running lab in DIR (target and node processes from its lab.json).
    #[arg(long)]
    pub lab: Option<PathBuf>,
    /// Start a lab of this topology (replica | sentinel | cluster) for this run, stop it afterwards.
    #[arg(long)]
    pub lab_topology: Option<String>,
    /// The primary's process, for kill/pause outside a lab.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Cluster: the shard a trigger acts on (0 holds slot 0) [default: 0]
    #[arg(long)]
    pub shard: Option<usize>,
    /// Memcached: known keys stored per node before each trigger; their survival is reported [default: 10000]
    #[arg(long)]
    pub seed_keys: Option<u64>,
    /// Cluster: act on the shard that owns this key.
    #[arg(long, conflicts_with = "shard")]
    pub key: Option<String>,
    /// Do not ask before a trigger against a target that is not on loopback.
    #[arg(long)]
    pub yes: bool,
    /// No live status line.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub outputs: OutputArgs,
    #[command(flatten)]
    pub elasticache: ElasticacheRunArgs,
}

/// Where the AWS API is: anything unset comes from aws-config's default chain.
#[derive(Args, Debug, Default, Clone)]
pub struct ApiArgs {
    /// AWS region (default: AWS_REGION or the profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile (default: AWS_PROFILE or `default`).
    #[arg(long)]
    pub profile: Option<String>,
    /// ElastiCache API endpoint, e.g. a VPC endpoint (also AWS_ENDPOINT_URL_ELASTICACHE).
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

impl ApiArgs {
    pub fn aws_args(&self) -> crate::aws::AwsArgs {
        crate::aws::AwsArgs {
            region: self.region.clone(),
            profile: self.profile.clone(),
            endpoint_url: self.endpoint_url.clone(),
        }
    }
}

#[derive(Args, Debug, Default, Clone)]
pub struct ElasticacheRunArgs {
    /// ElastiCache Redis/Valkey: probe this replication group (DescribeReplicationGroups) and put
    /// its events and member roles on the timeline. AUTH still comes from FAILPROBE_PASSWORD.
    #[arg(long, conflicts_with = "cache_cluster")]
    pub replication_group: Option<String>,
    /// ElastiCache Memcached: probe this cache cluster's nodes (DescribeCacheClusters).
    #[arg(long)]
    pub cache_cluster: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Between DescribeEvents polls during the run [default: 5s]
    #[arg(long, value_parser = parse_duration)]
    pub aws_poll: Option<Duration>,
    /// How long an ElastiCache trigger waits for AWS's completion events [default: 20m]
    #[arg(long, value_parser = parse_duration)]
    pub aws_wait: Option<Duration>,
    /// elasticache-promote on a group with automatic failover: disable it, promote, enable it
    /// again (restored even when the run is interrupted).
    #[arg(long)]
    pub allow_multi_az_toggle: bool,
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
    pub api: ApiArgs,
}

/// Extra outputs, for `run`, `report`, `merge` and `demo`.
#[derive(Args, Debug, Default, Clone)]
pub struct OutputArgs {
    /// Also draw the plots as PNG (timeline.png, latency-percentiles.png, outages.png).
    #[arg(long)]
    pub png: bool,
    /// Write JUnit XML here: one test case per budget check per trial.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Append a Markdown summary here (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    pub summary_md: Option<PathBuf>,
}

impl OutputArgs {
    pub fn report_options(&self, formats: Vec<String>) -> crate::report::ReportOptions {
        crate::report::ReportOptions { formats, png: self.png }
    }

    pub fn ci(&self) -> crate::report::CiOutputs {
        crate::report::CiOutputs { junit: self.junit.clone(), summary_md: self.summary_md.clone() }
    }
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
        #[arg(long, default_value = "sentinel")]
        topology: String,
        #[arg(long, default_value = "failprobe-lab")]
        dir: PathBuf,
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
