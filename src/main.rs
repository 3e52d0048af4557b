use anyhow::Result;
use clap::Parser;
use failprobe::analysis;
use failprobe::cli::{AdapterAction, Cli, Command, EventsArgs, LabAction, MemcachedAction, RunArgs};
use failprobe::error::{UsageError, EXIT_USAGE};
use failprobe::lab::{Lab, LabOptions, Readiness, Topology};
use failprobe::record::store;
use failprobe::report::{compare, exit_code, terminal, write_reports, Format, OutputArgs, ReportOptions};
use failprobe::scenario;
use std::path::{Path, PathBuf};

use failprobe::say;

macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

fn main() {
    failprobe::os::set_signal_dispositions();
    failprobe::secret::register_environment();
    failprobe::target::install_tls_provider();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(log_filter(&cli.log)).unwrap_or_else(|_| "warn".into()))
        .with_writer(|| failprobe::secret::ScrubbingStderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            failprobe::note!("error: starting the async runtime: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let code = match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            // Whatever produced the error, no password leaves through it.
            failprobe::note!("error: {}", failprobe::secret::scrub(&format!("{e:#}")));
            // Usage errors and failures of the run itself both mean "no verdict": exit 2.
            EXIT_USAGE
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}

/// The AWS SDK logs its retries and fallbacks (IMDS, profiles) as warnings with debug dumps;
/// failprobe reports the error that matters itself. `--log debug` shows them all.
fn log_filter(level: &str) -> String {
    if level.contains('=') || matches!(level, "debug" | "trace") {
        return level.to_string();
    }
    // Libraries' own chatter: what they meet (an AWS retry, the redis crate's cluster recovery,
    // a DNS timeout) is measured and reported as samples and events already.
    let quiet = [
        "aws_config",
        "aws_smithy_runtime",
        "aws_smithy_http_client",
        "aws_runtime",
        "aws_sdk_elasticache",
        "redis",
        "hickory_resolver",
        "hickory_net",
        "hickory_proto",
    ];
    let mut filter = level.to_string();
    for target in quiet {
        filter.push_str(&format!(",{target}=off"));
    }
    filter
}

async fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Run(args) => run(*args).await,
        Command::Report { dir, formats, outputs } => report(dir, formats, outputs),
        Command::Merge { dirs, out, outputs } => merge(dirs, out, outputs),
        Command::Compare { a, b, html } => compare(a, b, html),
        Command::Lab { action } => lab(action).await,
        Command::Adapter { action: AdapterAction::Check { command, name, server } } => {
            failprobe::adapter_check::check(&command, &name, server).await
        }
        Command::Memcached { action } => memcached(action).await,
        Command::Events(args) => events(*args).await,
        Command::Demo { out, outputs } => demo(out, outputs).await,
    }
}

async fn run(mut args: RunArgs) -> Result<i32> {
    // clap fills --clients from FAILPROBE_CLIENTS when the flag is absent: those adapters are
    // commands nobody typed here, and are confirmed like a scenario's.
    let typed = std::env::args().any(|a| a == "--clients" || a.starts_with("--clients="));
    args.overrides.clients_from_env = !typed && std::env::var_os("FAILPROBE_CLIENTS").is_some();
    if args.fleet.is_fleet(&args.overrides) {
        return fleet(args).await;
    }
    let path = args.scenario.clone();
    let file = match &path {
        Some(p) => Some((p.as_path(), scenario::load(p)?)),
        None => None,
    };
    let plan = scenario::plan(file, args.overrides)?;
    let result = failprobe::run::run(plan).await?;
    say_raw!("{}", terminal::final_summary(&result.summary));
    say!("report: {}", result.dir.join("report.html").display());
    Ok(exit_code(&result.summary))
}

/// Many targets at once: the fleet's table, then the exit code that covers them all.
async fn fleet(args: RunArgs) -> Result<i32> {
    use failprobe::fleet;
    let tags = fleet::discover::parse_tags(&args.fleet.aws_tag)?;
    let discovered = match tags.is_empty() {
        true => Vec::new(),
        false => {
            let groups = fleet::discover::tagged_groups(&args.overrides.aws.api, &tags).await?;
            say!(
                "--aws-tag {}: {} replication group(s): {}",
                args.fleet.aws_tag.join(" "),
                groups.len(),
                groups.join(", ")
            );
            groups
        }
    };
    let plan = fleet::plan::plan(args.fleet, args.overrides, discovered)?;
    let result = fleet::run(plan).await?;
    say_raw!("{}", fleet::report::terminal(&result.summary));
    say!("report: {}", result.dir.join("report.html").display());
    Ok(result.summary.verdict.exit_code)
}

/// `failprobe events`: exit 1 when --within finds a replacement window, 2 on errors.
async fn events(args: EventsArgs) -> Result<i32> {
    use failprobe::aws::{history, maintenance};
    let client = failprobe::aws::client(&args.api).await?;
    let now = chrono::Utc::now();
    let query = maintenance::Query {
        replication_groups: args.replication_groups,
        cache_clusters: args.cache_clusters,
        days: args.days,
        history: args.history.unwrap_or_else(history::default_path),
        within: args.within.and_then(|w| chrono::Duration::from_std(w).ok()),
        now,
    };
    let report = maintenance::run(&client, &query).await?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say_raw!("{}", maintenance::render(&report, now));
    }
    Ok(if report.alert { failprobe::error::EXIT_BUDGET } else { failprobe::error::EXIT_PASS })
}

fn report(dir: PathBuf, formats: Vec<Format>, outputs: OutputArgs) -> Result<i32> {
    let run = store::read_run(&dir)?;
    let analysis = analysis::replay(&run)?;
    finish(&dir, analysis, outputs.report_options(formats), &outputs)
}

fn finish(dir: &Path, analysis: analysis::Analysis, options: ReportOptions, outputs: &OutputArgs) -> Result<i32> {
    let (summary, mut files) = write_reports(dir, analysis, &options)?;
    files.extend(outputs.ci().write(&summary)?);
    say_raw!("{}", terminal::final_summary(&summary));
    for f in files {
        say!("wrote {}", f.display());
    }
    Ok(exit_code(&summary))
}

fn merge(dirs: Vec<PathBuf>, out: PathBuf, outputs: OutputArgs) -> Result<i32> {
    let runs = dirs.iter().map(|d| store::read_run(d)).collect::<Result<Vec<_>>>()?;
    let merged = failprobe::record::merge::Merge::new(runs)?;
    // Claimed like a run's --out: never written into another run's (or anyone's) directory.
    let mut claim = store::OutClaim::claim(&out).map_err(UsageError::Invalid)?;
    let mut writer = store::RunWriter::create(&out, merged.meta())?;
    claim.keep();
    let mut analyzer = analysis::Analyzer::new(merged.meta().clone());
    merged.for_each(|r| {
        writer.write(&r)?;
        analyzer.ingest(r);
        Ok(())
    })?;
    writer.flush()?;
    finish(&out, analyzer.finish(), outputs.report_options(Vec::new()), &outputs)
}

fn compare(a: PathBuf, b: PathBuf, html: PathBuf) -> Result<i32> {
    let load = |d: &Path| -> Result<_> {
        let run = store::read_run(d)?;
        Ok(analysis::replay(&run)?.summary)
    };
    let (sa, sb) = (load(&a)?, load(&b)?);
    let (na, nb) = (a.display().to_string(), b.display().to_string());
    say_raw!("{}", compare::terminal(&na, &nb, &sa, &sb));
    std::fs::write(&html, compare::html(&na, &nb, &sa, &sb))
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", html.display()))?;
    say!("\nwrote {}", html.display());
    Ok(0)
}

async fn lab(action: LabAction) -> Result<i32> {
    match action {
        LabAction::Endpoint { dir, ip, port, lag_ms } => {
            let at = std::net::SocketAddr::from((ip, port));
            failprobe::lab::endpoint::serve(&dir, at, std::time::Duration::from_millis(lag_ms)).await?;
        }
        LabAction::Up { topology, dir, server, endpoint_lag, settings } => {
            let settings = settings.over(Default::default())?;
            let mut options =
                LabOptions { endpoint_lag: endpoint_lag.unwrap_or_default(), settings, ..LabOptions::default() };
            options.choose(server.as_ref());
            let lab = Lab::up_with(topology, &dir, false, &options).await?;
            let version = lab.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
            say!("lab ready in {} ({}{version})", lab.dir.display(), lab.server.name());
            say!("target:  {}", lab.target_url());
            let trigger = match lab.topology {
                Topology::Sentinel | Topology::Endpoint => "sentinel",
                Topology::Cluster => "cluster-failover",
                Topology::Memcached => "restart",
                Topology::Replica => "kill",
            };
            if matches!(lab.topology, Topology::Replica | Topology::Sentinel) {
                say!("primary: {}", lab.primary_url());
            }
            say!("measure: failprobe run --lab {} --trigger {trigger}", lab.dir.display());
            lab.detach();
        }
        LabAction::Status { dir } => {
            let lab = Lab::read(&dir)?;
            for n in lab.nodes() {
                say!(
                    "{:<11} {:<21} pid {:<7} {}",
                    n.name,
                    n.addr().to_string(),
                    n.pid,
                    if n.is_alive() { "running" } else { "stopped" }
                );
            }
            match lab.readiness().await {
                Readiness::Ready { primary } => say!("ready: primary {}", lab.addr_of(primary)),
                Readiness::NotReady(why) => {
                    say!("not ready: {why}");
                    return Ok(1);
                }
            }
        }
        LabAction::Down { dir } => {
            let lab = Lab::load(&dir)?;
            say!("stopped {} process(es)", lab.down()?);
        }
    }
    Ok(0)
}

async fn memcached(action: MemcachedAction) -> Result<i32> {
    use failprobe::memcached::dump;
    let nodes = |url: &str| -> Result<Vec<(String, u16)>> {
        let target = failprobe::target::open(url, &failprobe::target::TargetEnv::from_process())?;
        let nodes = target
            .memcache_nodes()
            .ok_or_else(|| UsageError::Invalid(format!("`{}` is not a memcache:// target", target.redacted())))?;
        Ok(nodes.to_vec())
    };
    let discover = |nodes: Vec<(String, u16)>| async move {
        failprobe::probe::engine::discover_nodes(&nodes, std::time::Duration::from_secs(2))
            .await
            .map_err(|e| anyhow::Error::from(UsageError::Unreachable(e.to_string())))
    };
    match action {
        MemcachedAction::Dump { target, file } => {
            let c = dump::dump(&discover(nodes(&target)?).await?, &file).await?;
            say!("dumped {} keys to {} ({} vanished while dumping)", c.items, file.display(), c.vanished);
            if c.unsafe_keys > 0 {
                failprobe::note!(
                    "warning: {} key(s) with whitespace or control characters (written through the binary protocol) cannot be carried by the text protocol and were left out",
                    c.unsafe_keys
                );
            }
        }
        MemcachedAction::Restore { target, file, overwrite, yes } => {
            let nodes = discover(nodes(&target)?).await?;
            let existing = if overwrite {
                confirm_overwrite(&nodes, &file, yes)?;
                dump::Existing::Overwrite
            } else {
                dump::Existing::Keep
            };
            let c = dump::restore(&nodes, &file, existing).await?;
            say!(
                "restored {} keys from {} ({} skipped: expired meanwhile; {} left as they were: written since the dump)",
                c.items,
                file.display(),
                c.skipped_expired,
                c.kept_existing
            );
        }
    }
    Ok(0)
}

/// `memcached restore --overwrite` replaces whatever the application wrote since the dump:
/// asked like a trigger, unless `--yes`.
fn confirm_overwrite(nodes: &[(String, u16)], file: &Path, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let list: Vec<String> = nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
    let what = format!("overwrite keys on {} with the values in {}", list.join(", "), file.display());
    failprobe::error::ask_to_confirm(&what, "keys written since the dump get their old values back")
}

async fn demo(out: Option<PathBuf>, outputs: OutputArgs) -> Result<i32> {
    let out = out.unwrap_or_else(|| store::default_out("failprobe-demo"));
    let plan = failprobe::run::demo_plan(out, outputs)?;
    say!("demo: local primary + replica + 3 sentinels; 3 × SENTINEL FAILOVER, then 1 × kill -9 of the primary");
    let result = failprobe::run::run(plan).await?;
    say_raw!("{}", terminal::final_summary(&result.summary));
    say!("report:  {}", result.dir.join("report.html").display());
    say!("         {}", result.dir.join("report.md").display());
    say!("plot:    {}", result.dir.join("timeline.svg").display());
    say!("samples: {}", result.dir.join("samples.csv").display());
    Ok(0)
}
