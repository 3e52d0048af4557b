//! Network faults of the lab, as production has them: a node whose packets vanish
//! (`blackhole`), one cut off from its peers while its clients still reach it (`partition`), one
//! whose outgoing traffic is late or lost (`netem`). Every lab node has its own loopback
//! address (`node::node_ip`), so a rule names exactly one node, or one node and its peers.
//!
//! A fault lives only in objects named after the lab: its own nftables table
//! `inet failprobe_lab_<hash>` (blackhole, partition), and for netem a root qdisc on `lo` with
//! the lab's own handle. Nothing else is read-modify-written: the table is created whole and
//! deleted whole; the qdisc is added only while `lo` has the kernel's default (`noqueue`), and
//! deleted only when its handle is the lab's. A `Fault` undoes itself when dropped (end of
//! trial, Ctrl-C, SIGTERM, a trigger error, a panic); `remove_leftovers` undoes what a SIGKILLed
//! run left, from `lab down` and the next `lab up`.

use super::node::dir_hash;
use super::{Lab, NodeKind};
use crate::sample::{EventKind, FaultState};
use crate::sink::Reporter;
use anyhow::{anyhow, bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a fault does to the node.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// Every packet to and from the node dropped: no RST, no FIN; clients wait for timeouts.
    Blackhole,
    /// Packets between the node and the lab's other servers dropped; clients still reach it.
    Partition,
    /// The node's outgoing packets delayed and/or lost, as `tc netem` on its own interface.
    Netem(Netem),
}

impl FaultKind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            FaultKind::Blackhole => "blackhole",
            FaultKind::Partition => "partition",
            FaultKind::Netem(_) => "netem",
        }
    }
}

/// A `netem` spec: `delay=200ms`, `jitter=50ms` (with a delay), `loss=5%`; at least one.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Netem {
    pub delay: Option<Duration>,
    pub jitter: Option<Duration>,
    /// Percent of packets lost, 0 < loss <= 100.
    pub loss_pct: Option<f64>,
}

impl Netem {
    /// One `key=value` of the spec into `self`; false for a key or value it does not take.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> bool {
        let duration = || crate::duration::parse_duration(value).ok();
        match key {
            "delay" => self.delay = duration(),
            "jitter" => self.jitter = duration(),
            "loss" => {
                self.loss_pct = value.strip_suffix('%').and_then(|v| v.trim().parse::<f64>().ok());
                return self.loss_pct.is_some_and(|l| l > 0.0 && l <= 100.0);
            }
            _ => return false,
        }
        match key {
            "delay" => self.delay.is_some(),
            _ => self.jitter.is_some(),
        }
    }

    /// Something to do, and a jitter only around a delay (netem's own rule).
    pub(crate) fn is_valid(&self) -> bool {
        (self.delay.is_some() || self.loss_pct.is_some()) && (self.jitter.is_none() || self.delay.is_some())
    }

    /// `delay=200ms,jitter=50ms,loss=5%`: parses back to the same spec.
    pub(crate) fn label(&self) -> String {
        let ms = |d: Duration| crate::duration::format_ms(d.as_secs_f64() * 1000.0).replace(' ', "");
        let mut parts = Vec::new();
        parts.extend(self.delay.map(|d| format!("delay={}", ms(d))));
        parts.extend(self.jitter.map(|d| format!("jitter={}", ms(d))));
        parts.extend(self.loss_pct.map(|l| format!("loss={l}%")));
        parts.join(",")
    }

    fn tc_args(&self) -> Vec<String> {
        let us = |d: Duration| format!("{}us", d.as_micros());
        let mut args = Vec::new();
        if let Some(d) = self.delay {
            args.extend(["delay".to_string(), us(d)]);
            args.extend(self.jitter.map(us));
        }
        if let Some(l) = self.loss_pct {
            args.extend(["loss".to_string(), format!("{l}%")]);
        }
        args
    }
}

/// One fault in place. Dropping it heals the network (and says so on the timeline).
pub(crate) struct Fault {
    dir: PathBuf,
    kind: FaultKind,
    node: SocketAddr,
    report: Option<Reporter>,
    since: Instant,
    healed: bool,
}

impl Fault {
    /// Heals now; an error says what could not be removed (and `lab down` will try again).
    pub(crate) fn heal(mut self) -> Result<()> {
        self.undo()
    }

    pub(crate) fn node(&self) -> SocketAddr {
        self.node
    }

    fn undo(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.healed, true) {
            return Ok(());
        }
        let removed = match &self.kind {
            FaultKind::Netem(n) if n.delay.is_some() => remove_qdisc(&self.dir),
            _ => remove_table(&self.dir),
        };
        let detail = match &removed {
            Ok(()) => format!("removed after {:.1} s", self.since.elapsed().as_secs_f64()),
            Err(e) => format!("NOT removed: {e:#}; run `failprobe lab down --dir {}`", self.dir.display()),
        };
        if let Some(report) = &self.report {
            let (fault, node) = (self.kind.name().to_string(), self.node.to_string());
            report.event(EventKind::NetworkFault { state: FaultState::Healed, fault, node, detail });
        }
        removed
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        if let Err(e) = self.undo() {
            crate::note!("failprobe: healing the network fault on {}: {e:#}", self.node);
        }
    }
}

impl Lab {
    /// Puts `kind` on the lab node listening on `port` (its primary, usually). Refused unless
    /// the node has an address of its own in the lab's network.
    pub(crate) fn inject(&self, kind: FaultKind, port: u16, report: Option<Reporter>) -> Result<Fault> {
        check_can_inject(&kind)?;
        let (node, peers) = self.fault_target(port, &kind)?;
        let ip = match node.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => bail!("{node}: lab nodes are on IPv4 loopback"),
        };
        remove_leftovers(&self.dir);
        let detail = match &kind {
            FaultKind::Blackhole => {
                nft_table(&self.dir, &[format!("ip daddr {ip} drop"), format!("ip saddr {ip} drop")])?;
                format!("every packet to and from {ip} dropped (no RST, no FIN)")
            }
            FaultKind::Partition => {
                let set = peers.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(", ");
                let rules = [
                    format!("ip saddr {ip} ip daddr {{ {set} }} drop"),
                    format!("ip saddr {{ {set} }} ip daddr {ip} drop"),
                ];
                nft_table(&self.dir, &rules)?;
                format!("packets between {ip} and its peers {set} dropped; clients still reach it")
            }
            // Loss alone is an nftables rule (random drops), on any kernel; a delay needs the
            // kernel's netem qdisc.
            FaultKind::Netem(netem) if netem.delay.is_none() => {
                let per_10k = (netem.loss_pct.unwrap_or(0.0) * 100.0).round() as u32;
                nft_table(&self.dir, &[format!("ip saddr {ip} numgen random mod 10000 < {per_10k} drop")])?;
                format!("its outgoing packets: loss {}% (nftables, random drops)", netem.loss_pct.unwrap_or(0.0))
            }
            FaultKind::Netem(netem) => {
                add_qdisc(&self.dir, ip, netem)?;
                format!("its outgoing packets: netem {}", netem.tc_args().join(" "))
            }
        };
        if let Some(report) = &report {
            let (fault, at) = (kind.name().to_string(), node.to_string());
            report.event(EventKind::NetworkFault { state: FaultState::Injected, fault, node: at, detail });
        }
        let dir = self.dir.clone();
        Ok(Fault { dir, kind, node, report, since: Instant::now(), healed: false })
    }

    /// Keeps `fault` in place until the trial ends (`heal_network`).
    pub(crate) fn hold_fault(&self, fault: Fault) {
        if let Ok(mut held) = self.fault.lock() {
            *held = Some(fault);
        }
    }

    /// Heals a fault held until now: at every trial's end, and when the lab is dropped.
    pub(crate) fn heal_network(&self) {
        let held = self.fault.lock().map(|mut f| f.take()).unwrap_or_else(|e| e.into_inner().take());
        if let Some(fault) = held {
            if let Err(e) = fault.heal() {
                crate::note!("failprobe: {e:#}");
            }
        }
    }

    /// The node on `port` and, for a partition, the addresses of the lab's other servers (its
    /// peers: replicas, sentinels, other cluster nodes; not the endpoint, which stands for the
    /// clients). Refused for a node without an address of its own: a rule on an address the
    /// lab shares with anything else would cut that off too.
    pub(crate) fn fault_target(&self, port: u16, kind: &FaultKind) -> Result<(SocketAddr, Vec<Ipv4Addr>)> {
        let nodes = self.nodes();
        let node = nodes
            .iter()
            .find(|n| n.port == port)
            .ok_or_else(|| anyhow!("no node of the lab in {} listens on port {port}", self.dir.display()))?;
        let shared = nodes.iter().filter(|n| n.ip == node.ip).count() > 1;
        if !node.ip.is_loopback() || node.ip.octets()[1] == 0 || shared {
            bail!(
                "lab node {} is on {}, an address it does not have to itself (a lab from before per-node addresses?): network faults refused; start the lab again with `failprobe lab up`",
                node.name,
                node.ip
            );
        }
        let peers: Vec<Ipv4Addr> = nodes
            .iter()
            .filter(|n| n.ip != node.ip && matches!(n.kind, NodeKind::Redis | NodeKind::Sentinel))
            .map(|n| n.ip)
            .collect();
        if *kind == FaultKind::Partition && peers.is_empty() {
            bail!("lab node {} has no peers to be cut off from", node.name);
        }
        Ok((node.addr(), peers))
    }
}

/// Before anything runs: the privilege and the tool the fault needs, or what is missing.
pub(crate) fn check_can_inject(kind: &FaultKind) -> Result<()> {
    if !has_net_admin() {
        bail!(
            "network faults need root (or CAP_NET_ADMIN, for failprobe and the nft and tc it runs); this process has neither"
        );
    }
    let delays = matches!(kind, FaultKind::Netem(n) if n.delay.is_some());
    let (tool, package) = if delays { ("tc", "iproute2") } else { ("nft", "nftables") };
    find_tool(tool).ok_or_else(|| {
        anyhow!("network faults need `{tool}` (Debian package {package}); scripts/install-servers.sh installs it")
    })?;
    if delays {
        if let Some(missing) = kernel_lacks(&["NET_SCH_NETEM", "NET_SCH_PRIO"]) {
            bail!(
                "netem delay needs the kernel's {missing} qdisc, which this kernel ({}) is built without; `netem=loss=<p>%` works (nftables)",
                kernel_release()
            );
        }
    }
    Ok(())
}

/// The first of `options` the running kernel's config (/proc/config.gz) says it lacks; None
/// when it has them all or does not say (then `tc` will).
fn kernel_lacks(options: &[&str]) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open("/proc/config.gz").ok()?;
    let mut config = String::new();
    flate2::read::GzDecoder::new(file).take(4 << 20).read_to_string(&mut config).ok()?;
    options
        .iter()
        .find(|o| !config.lines().any(|l| l == format!("CONFIG_{o}=y") || l == format!("CONFIG_{o}=m")))
        .map(|o| format!("sch_{}", o.trim_start_matches("NET_SCH_").to_lowercase()))
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

/// What a run killed with SIGKILL left: the lab's table and its qdisc. Quiet when there is none
/// (or when this process could not have made one).
pub(crate) fn remove_leftovers(dir: &Path) {
    if !has_net_admin() {
        return;
    }
    if find_tool("nft").is_some() && table_exists(dir) {
        if let Err(e) = remove_table(dir) {
            crate::note!("failprobe: {e:#}");
        }
    }
    if find_tool("tc").is_some() {
        if let Err(e) = remove_qdisc(dir) {
            crate::note!("failprobe: {e:#}");
        }
    }
}

/// The lab's own nftables table (`dir` as the lab has it: canonical).
pub fn table_name(dir: &Path) -> String {
    format!("failprobe_lab_{:016x}", dir_hash(dir))
}

/// The lab's own qdisc handle on `lo` (major numbers 0x8000-0xbfff: clear of the kernel's own).
pub(crate) fn qdisc_handle(dir: &Path) -> String {
    format!("{:x}:", 0x8000 | (dir_hash(dir) & 0x3fff))
}

/// Creates the lab's table whole, with one input-hook chain: on loopback every packet passes
/// the input hook exactly once, so a drop there is silent for both ends.
fn nft_table(dir: &Path, rules: &[String]) -> Result<()> {
    let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
    let script = format!(
        "table inet {} {{\n  chain input {{\n    type filter hook input priority filter; policy accept;\n{body}  }}\n}}\n",
        table_name(dir)
    );
    run_tool("nft", &["-f", "-"], Some(&script))
}

fn table_exists(dir: &Path) -> bool {
    run_tool("nft", &["list", "table", "inet", &table_name(dir)], None).is_ok()
}

fn remove_table(dir: &Path) -> Result<()> {
    if !table_exists(dir) {
        return Ok(());
    }
    run_tool("nft", &["delete", "table", "inet", &table_name(dir)], None)
        .with_context(|| format!("removing nftables table inet {}", table_name(dir)))
}

/// `lo`'s root qdisc handle, from `tc qdisc show dev lo` (`qdisc noqueue 0: root ...`).
fn lo_root() -> Result<(String, String)> {
    let out = tool_output("tc", &["qdisc", "show", "dev", "lo"])?;
    let root = out.lines().find(|l| l.split_whitespace().any(|w| w == "root")).unwrap_or("");
    let mut words = root.split_whitespace().skip(1);
    Ok((words.next().unwrap_or("noqueue").to_string(), words.next().unwrap_or("0:").to_string()))
}

/// A prio qdisc of the lab's on `lo` whose third band is netem, and a filter sending the
/// node's packets (source address: what it sends) there. Everything else stays in band one.
fn add_qdisc(dir: &Path, ip: Ipv4Addr, netem: &Netem) -> Result<()> {
    let (kind, handle) = lo_root()?;
    let ours = qdisc_handle(dir);
    if kind != "noqueue" && handle != ours {
        bail!("lo has a root qdisc failprobe did not make ({kind} {handle}): netem refused, nothing changed");
    }
    remove_qdisc(dir)?;
    let band = format!("{ours}3");
    let priomap = ["0"; 16];
    let steps: [Vec<String>; 3] = [
        ["qdisc", "add", "dev", "lo", "root", "handle", &ours, "prio", "bands", "3", "priomap"]
            .iter()
            .chain(priomap.iter())
            .map(|s| s.to_string())
            .collect(),
        ["qdisc", "add", "dev", "lo", "parent", &band, "netem"]
            .iter()
            .map(|s| s.to_string())
            .chain(netem.tc_args())
            .collect(),
        ["filter", "add", "dev", "lo", "parent", &ours, "protocol", "ip", "prio", "1", "u32", "match", "ip", "src"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("{ip}/32"), "flowid".into(), band.clone()])
            .collect(),
    ];
    for step in &steps {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        if let Err(e) = run_tool("tc", &args, None) {
            let _ = remove_qdisc(dir);
            return Err(e.context("adding the netem qdisc on lo"));
        }
    }
    Ok(())
}

/// Deletes `lo`'s root qdisc when it is the lab's, and only then.
fn remove_qdisc(dir: &Path) -> Result<()> {
    let (_, handle) = lo_root()?;
    if handle != qdisc_handle(dir) {
        return Ok(());
    }
    run_tool("tc", &["qdisc", "del", "dev", "lo", "root"], None).context("removing the lab's qdisc on lo")
}

fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("0");
    u64::from_str_radix(effective, 16).is_ok_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// `nft` / `tc` on PATH or in the sbin directories (root's PATH has them; a user's may not).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn tool_output(name: &str, args: &[&str]) -> Result<String> {
    let tool = find_tool(name).ok_or_else(|| anyhow!("`{name}` not found"))?;
    let out =
        Command::new(&tool).args(args).stdin(Stdio::null()).output().with_context(|| format!("running {name}"))?;
    if !out.status.success() {
        bail!("{name} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_tool(name: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
    use std::io::Write;
    let tool = find_tool(name).ok_or_else(|| anyhow!("`{name}` not found"))?;
    let mut child = Command::new(&tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {name}"))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{name} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_specs_write_themselves_back_and_say_what_tc_gets() {
        let mut n = Netem::default();
        assert!(n.set("delay", "200ms") && n.set("jitter", "50ms") && n.set("loss", "5%"));
        assert!(n.is_valid());
        assert_eq!(n.label(), "delay=200.0ms,jitter=50.0ms,loss=5%");
        assert_eq!(n.tc_args(), ["delay", "200000us", "50000us", "loss", "5%"]);
        let mut bad = Netem::default();
        assert!(!bad.set("loss", "5"), "a loss is a percentage");
        assert!(!bad.set("loss", "150%"));
        assert!(!bad.set("speed", "1"));
        assert!(bad.set("jitter", "5ms") && !bad.is_valid(), "a jitter needs a delay");
    }

    #[test]
    fn names_are_the_labs_own() {
        let a = table_name(Path::new("/tmp/a"));
        assert!(a.starts_with("failprobe_lab_") && a != table_name(Path::new("/tmp/b")));
        let h = u32::from_str_radix(qdisc_handle(Path::new("/tmp/a")).trim_end_matches(':'), 16).unwrap();
        assert!((0x8000..0xc000).contains(&h));
    }
}
