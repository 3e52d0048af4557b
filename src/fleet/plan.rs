//! The targets of a fleet, each made into a `Plan` the way a single run's would be: from
//! repeated `--target NAME=URL`, from a fleet file's `[[target]]` tables, and from the
//! ElastiCache replication groups `--aws-tag` selects. The command line's flags apply to every
//! target, over what the file says.

use crate::duration;
use crate::error::invalid;
use crate::run::turn::Pace;
use crate::scenario::{
    self, BudgetSection, ElasticacheSection, LabSection, Overrides, Plan, ProbeSection, RunbookSection, ScenarioFile,
    TargetSection, TrialsSection, TriggerSection,
};
use anyhow::Result;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `failprobe run`'s fleet flags.
#[derive(clap::Args, Default, Clone, Debug)]
pub struct FleetArgs {
    /// A fleet file (TOML): `[[target]]` tables, each a target with its own name, url or lab,
    /// clients, interval, budgets and trigger; every target is probed at once
    #[arg(long, conflicts_with = "scenario")]
    pub fleet: Option<PathBuf>,
    /// A fleet's triggers fire this far apart, target after target [default: each waits until
    /// the targets before it have recovered and settled]
    #[arg(long, value_parser = duration::parse_duration)]
    pub stagger: Option<Duration>,
    /// ElastiCache: every replication group tagged KEY=VALUE is a target of the fleet, probed
    /// on its primary or configuration endpoint (repeatable: a group must carry them all)
    #[arg(long, value_name = "KEY=VALUE")]
    pub aws_tag: Vec<String>,
}

impl FleetArgs {
    /// Whether these flags (and the targets typed) make a fleet rather than a single run.
    pub fn is_fleet(&self, o: &Overrides) -> bool {
        let listed = o.aws.replication_group.as_deref().is_some_and(|g| g.contains(','));
        self.fleet.is_some() || !self.aws_tag.is_empty() || o.target.len() > 1 || listed
    }
}

/// A fleet file: `stagger`, then one `[[target]]` per target.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub stagger: Option<Duration>,
    #[serde(default, rename = "target")]
    pub targets: Vec<FleetTarget>,
}

/// One `[[target]]`: a scenario's sections, with its name and URL at the top.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FleetTarget {
    pub name: String,
    pub url: Option<String>,
    pub description: Option<String>,
    pub lab: Option<LabSection>,
    #[serde(default)]
    pub probe: ProbeSection,
    #[serde(default)]
    pub trigger: TriggerSection,
    #[serde(default)]
    pub trials: TrialsSection,
    #[serde(default)]
    pub budget: BudgetSection,
    pub elasticache: Option<ElasticacheSection>,
    pub runbook: Option<RunbookSection>,
}

impl FleetTarget {
    fn scenario(self) -> ScenarioFile {
        ScenarioFile {
            name: Some(self.name),
            description: self.description,
            target: TargetSection { url: self.url },
            lab: self.lab,
            probe: self.probe,
            trigger: self.trigger,
            trials: self.trials,
            budget: self.budget,
            elasticache: self.elasticache,
            runbook: self.runbook,
        }
    }
}

/// Everything a fleet run needs, validated.
#[derive(Debug)]
pub struct FleetPlan {
    pub name: String,
    /// The fleet's directory; each target's run goes in `<out>/<name>/`.
    pub out: PathBuf,
    pub pace: Pace,
    pub targets: Vec<Plan>,
    pub quiet: bool,
}

/// The fleet's plans. `discovered`: the replication groups `--aws-tag` selected; those listed
/// in `--replication-group a,b,c` come first.
pub fn plan(args: FleetArgs, o: Overrides, discovered: Vec<String>) -> Result<FleetPlan> {
    if o.lab.is_some() || o.pid.is_some() {
        return Err(invalid(
            "--lab and --pid name one deployment's processes: give each fleet target its own lab in the fleet file ([target.lab] topology = …)",
        ));
    }
    let file: Option<FleetFile> = args.fleet.as_deref().map(|p| scenario::load_toml(p, "fleet file")).transpose()?;
    let out = o.out.clone().unwrap_or_else(|| crate::record::store::default_out("failprobe-fleet"));
    let mut base = Overrides { target: Vec::new(), out: None, quiet: true, ..o.clone() };
    // `--replication-group a,b,c`: each group a target, after those the tags found.
    let listed: Vec<String> = match base.aws.replication_group.take() {
        Some(list) if list.contains(',') => {
            list.split(',').map(|g| g.trim().to_string()).filter(|g| !g.is_empty()).collect()
        }
        single => {
            base.aws.replication_group = single;
            Vec::new()
        }
    };
    let mut named: Vec<(String, Option<ScenarioFile>, Overrides)> = Vec::new();
    for text in &o.target {
        let (name, url) = scenario::split_named_target(text);
        let url = url.unwrap_or_default();
        let name = name.unwrap_or_else(|| name_of_url(&url));
        named.push((name, None, Overrides { target: vec![url], ..base.clone() }));
    }
    let (file_name, stagger) = file.as_ref().map(|f| (f.name.clone(), f.stagger)).unwrap_or_default();
    for t in file.map(|f| f.targets).unwrap_or_default() {
        named.push((t.name.clone(), Some(t.scenario()), base.clone()));
    }
    for id in listed.into_iter().chain(discovered) {
        let mut aws = base.aws.clone();
        aws.replication_group = Some(id.clone());
        named.push((id, None, Overrides { aws, ..base.clone() }));
    }
    if named.is_empty() {
        return Err(invalid("the fleet has no target: its file has no [[target]], and --aws-tag matched no group"));
    }
    check_names(named.iter().map(|(n, _, _)| n.as_str()))?;
    let source = args.fleet.clone().unwrap_or_default();
    let mut targets = Vec::new();
    for (name, file, mut overrides) in named {
        overrides.out = Some(out.join(&name));
        let file = file.map(|f| (source.as_path(), f));
        let mut plan = scenario::plan(file, overrides).map_err(|e| invalid(format!("fleet target `{name}`: {e:#}")))?;
        plan.name = name;
        targets.push(plan);
    }
    let name = file_name
        .or_else(|| args.fleet.as_deref().and_then(Path::file_stem).map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "fleet".to_string());
    let pace = args.stagger.or(stagger).map_or(Pace::Sequential, Pace::Spaced);
    Ok(FleetPlan { name, out, pace, targets, quiet: o.quiet })
}

/// A target's name is its directory and its `target` label: letters, digits, `-`, `_`, `.`,
/// unique in the fleet.
fn check_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(invalid(format!(
                "fleet target name `{name}`: use 1 to 64 letters, digits, `-`, `_` or `.` (it names the target's directory)"
            )));
        }
        if !seen.insert(name) {
            return Err(invalid(format!("two fleet targets are named `{name}`: names must differ")));
        }
    }
    Ok(())
}

/// A name for a target typed without one: its first host and port (`10.0.0.5-6379`), never
/// its password.
fn name_of_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split(['/', ',', '?']).next().unwrap_or("");
    let name: String =
        host.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    match name.trim_matches('-') {
        "" => "target".to_string(),
        n => n.chars().take(64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_targets_are_named_by_hand_or_by_host_without_their_password() {
        assert_eq!(name_of_url("redis://:s3cret@10.0.0.5:6379/0"), "10.0.0.5-6379");
        assert_eq!(name_of_url("redis+sentinel://a:26379,b:26379/mymaster"), "a-26379");
        let o = Overrides {
            target: vec!["orders=redis://127.0.0.1:1".into(), "redis://127.0.0.1:2".into()],
            out: Some("/tmp/fleet-x".into()),
            ..Default::default()
        };
        let args = FleetArgs::default();
        assert!(args.is_fleet(&o));
        let fleet = plan(args, o, Vec::new()).unwrap();
        let names: Vec<_> = fleet.targets.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["orders", "127.0.0.1-2"]);
        assert_eq!(fleet.targets[0].out, PathBuf::from("/tmp/fleet-x/orders"));
        assert_eq!(fleet.targets[1].target.as_deref(), Some("redis://127.0.0.1:2"));
        assert!(fleet.targets.iter().all(|p| p.quiet));
        assert_eq!(fleet.pace, Pace::Sequential);
        let mut o = Overrides { out: Some("/tmp/fleet-y".into()), ..Default::default() };
        o.aws.replication_group = Some("rg-a,rg-b".into());
        assert!(FleetArgs::default().is_fleet(&o));
        let fleet = plan(FleetArgs::default(), o, vec!["rg-c".into()]).unwrap();
        let groups: Vec<_> =
            fleet.targets.iter().map(|p| p.aws.as_ref().unwrap().replication_group.clone().unwrap()).collect();
        assert_eq!(groups, ["rg-a", "rg-b", "rg-c"]);
    }

    #[test]
    fn a_fleet_file_gives_each_target_its_own_settings_under_the_flags() {
        let file: FleetFile = toml::from_str(
            r#"
            stagger = "5s"
            [[target]]
            name = "sessions"
            lab = { topology = "sentinel" }
            trigger = { kind = "sentinel" }
            probe = { clients = ["failprobe", "pinned"], interval = "20ms" }
            budget = { max_outage = "5s" }
            [[target]]
            name = "cache"
            url = "memcache://127.0.0.1:11211"
            "#,
        )
        .unwrap();
        assert_eq!(file.targets.len(), 2);
        assert_eq!(
            file.targets[0].probe.clients.as_deref(),
            Some(&["failprobe".to_string(), "pinned".to_string()][..])
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.toml");
        let text = r#"
            stagger = "5s"
            [[target]]
            name = "sessions"
            [target.lab]
            topology = "sentinel"
            [target.trigger]
            kind = "sentinel"
            [target.probe]
            interval = "20ms"
            [[target]]
            name = "cache"
            url = "memcache://127.0.0.1:11211"
        "#;
        std::fs::write(&path, text).unwrap();
        let args = FleetArgs { fleet: Some(path), ..Default::default() };
        let o =
            Overrides { warmup: Some(Duration::from_secs(2)), out: Some(dir.path().join("out")), ..Default::default() };
        let fleet = plan(args, o, Vec::new()).unwrap();
        let (sessions, cache) = (&fleet.targets[0], &fleet.targets[1]);
        assert_eq!(sessions.interval, Duration::from_millis(20));
        assert_eq!(cache.interval, Duration::from_millis(10), "the default where the file says nothing");
        assert!(sessions.lab_topology.is_some() && cache.lab_topology.is_none());
        assert_eq!([sessions.warmup, cache.warmup], [Duration::from_secs(2); 2], "flags apply to every target");
        assert_eq!(fleet.pace, Pace::Spaced(Duration::from_secs(5)));
        assert_eq!(fleet.name, "fleet");
    }

    #[test]
    fn every_shipped_fleet_plans() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/fleets");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let args = FleetArgs { fleet: Some(path.clone()), ..Default::default() };
            let o = Overrides { out: Some("/nonexistent/out".into()), ..Default::default() };
            let fleet = plan(args, o, Vec::new()).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            assert!(fleet.targets.len() > 1, "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 1);
    }

    #[test]
    fn names_must_be_unique_and_fit_a_directory() {
        assert!(check_names(["a", "b"].into_iter()).is_ok());
        assert!(check_names(["a", "a"].into_iter()).unwrap_err().to_string().contains("two fleet targets"));
        assert!(check_names(["../x"].into_iter()).is_err());
        assert!(check_names([".hidden"].into_iter()).is_err());
    }
}
