//! `failover[=force][,timeout=D]`: the coordinated `FAILOVER` command on the primary (Redis ≥ 6.2,
//! Valkey). The primary pauses writes (CLIENT PAUSE WRITE), waits until the replica has its
//! offset, then the two swap roles: the planned failover documented to lose nothing, for replica
//! setups without Sentinel. With `force` it switches after the timeout even if the replica did
//! not catch up.

use super::promote::primary_and_replica;
use super::{query, BoxFuture, Checked, Trigger, TriggerContext, TriggerFuture};
use crate::error::invalid;
use crate::target::{connect_node, connect_primary, info_field};
use anyhow::{anyhow, Result};
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// FAILOVER appeared in Redis 6.2 (and every Valkey).
const SINCE: (u32, u32) = (6, 2);

#[derive(Clone, Debug, PartialEq)]
pub struct Failover {
    pub force: bool,
    pub timeout: Option<Duration>,
}

impl Trigger for Failover {
    /// `force`, `timeout=5s`, `force,timeout=5s`; FORCE needs a timeout (the server says so too).
    fn parse(arg: Option<&str>) -> Option<Self> {
        let mut spec = Failover { force: false, timeout: None };
        for part in arg.unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                None if part.eq_ignore_ascii_case("force") => spec.force = true,
                Some(("timeout", d)) => spec.timeout = Some(crate::duration::parse_duration(d).ok()?),
                _ => return None,
            }
        }
        (!spec.force || spec.timeout.is_some()).then_some(spec)
    }

    fn label(&self) -> String {
        let mut parts = Vec::new();
        if self.force {
            parts.push("force".to_string());
        }
        if let Some(t) = self.timeout {
            parts.push(format!("timeout={}", crate::duration::format_duration(t)));
        }
        match parts.is_empty() {
            true => "failover".into(),
            false => format!("failover={}", parts.join(",")),
        }
    }

    fn check<'a>(&'a self, ctx: &'a TriggerContext) -> BoxFuture<'a, Checked> {
        Box::pin(async move {
            check_primary(ctx).await?;
            Ok(Checked::default())
        })
    }

    fn fire<'a>(&'a self, ctx: &'a TriggerContext) -> TriggerFuture<'a> {
        Box::pin(async move {
            let (mut old, primary, (host, port)) = primary_and_replica(ctx).await?;
            let mut failover = redis::cmd("FAILOVER");
            failover.arg("TO").arg(&host).arg(port);
            if let Some(t) = self.timeout {
                failover.arg("TIMEOUT").arg(t.as_millis() as u64);
            }
            if self.force {
                failover.arg("FORCE");
            }
            let _: () = query(&mut old, ctx.limit, &failover).await?;
            // FAILOVER answers at once and proceeds in the background: complete when the
            // replica answers ROLE as the primary.
            let (mut new, addr) =
                connect_node(&ctx.target, &host, port, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
            let deadline = Instant::now() + ctx.max_wait;
            loop {
                let role: redis::Value = query(&mut new, ctx.limit, &redis::cmd("ROLE")).await?;
                if matches!(&role, redis::Value::Array(items) if items.first().and_then(|v| redis::from_redis_value_ref::<String>(v).ok()).as_deref() == Some("master"))
                {
                    return Ok(format!("FAILOVER TO {addr} on {}: {addr} is the primary", primary.addr));
                }
                if Instant::now() >= deadline {
                    let state: String =
                        query(&mut old, ctx.limit, redis::cmd("INFO").arg("replication")).await.unwrap_or_default();
                    let state = info_field(&state, "master_failover_state").unwrap_or_else(|| "unknown".into());
                    return Err(anyhow!(
                        "{addr} was not the primary {:?} after FAILOVER (failover state: {state})",
                        ctx.max_wait
                    ));
                }
                sleep(Duration::from_millis(20)).await;
            }
        })
    }
}

/// Before anything is written: the primary speaks FAILOVER (its version) and is not in cluster
/// mode (where FAILOVER is refused; `cluster-failover` is that mode's own).
async fn check_primary(ctx: &TriggerContext) -> Result<()> {
    if ctx.target.is_cluster() {
        return Err(invalid("trigger `failover` is for a primary and its replicas; a cluster has `cluster-failover`"));
    }
    let (mut conn, primary) = connect_primary(&ctx.target, ctx.limit).await.map_err(|e| anyhow!("{e}"))?;
    let info: String = query(&mut conn, ctx.limit, redis::cmd("INFO").arg("server")).await?;
    let (server, version) = server_version(&info);
    if !speaks_failover(&server, &version) {
        return Err(invalid(format!(
            "trigger `failover` needs Redis {}.{} or later, or Valkey: {} runs {server} {version}",
            SINCE.0, SINCE.1, primary.addr
        )));
    }
    if server_mode(&info).as_deref() == Some("cluster") {
        return Err(invalid(format!("{} is in cluster mode, where FAILOVER is refused", primary.addr)));
    }
    Ok(())
}

/// `("valkey", "9.1.2")` or `("redis", "7.0.15")` from INFO server (Valkey also reports a
/// `redis_version` for compatibility, 7.2.4, so its own field comes first).
pub(crate) fn server_version(info: &str) -> (String, String) {
    match info_field(info, "valkey_version") {
        Some(v) => ("valkey".into(), v),
        None => ("redis".into(), info_field(info, "redis_version").unwrap_or_else(|| "unknown".into())),
    }
}

/// `standalone`, `sentinel` or `cluster` (Valkey says `server_mode`, Redis `redis_mode`).
pub(crate) fn server_mode(info: &str) -> Option<String> {
    info_field(info, "server_mode").or_else(|| info_field(info, "redis_mode"))
}

/// `(9, 1)` from `9.1.2`; what cannot be read counts as 0 (too old for anything).
pub(crate) fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn speaks_failover(server: &str, version: &str) -> bool {
    server == "valkey" || major_minor(version) >= SINCE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_force_and_timeout_and_knows_who_speaks_failover() {
        assert_eq!(Failover::parse(None), Some(Failover { force: false, timeout: None }));
        let forced = Failover::parse(Some("force,timeout=2s")).unwrap();
        assert_eq!(forced, Failover { force: true, timeout: Some(Duration::from_secs(2)) });
        assert_eq!(Failover::parse(Some(&forced.label()["failover=".len()..])), Some(forced));
        assert_eq!(Failover::parse(Some("force")), None, "FORCE needs a timeout");
        assert_eq!(Failover::parse(Some("soon")), None);
        assert!(speaks_failover("redis", "6.2.0") && speaks_failover("redis", "7.0.15"));
        assert!(!speaks_failover("redis", "6.0.16") && !speaks_failover("redis", "5.0.7"));
        assert!(speaks_failover("valkey", "7.2.4"));
        let info = "# Server\r\nredis_version:7.2.4\r\nvalkey_version:9.1.2\r\n";
        assert_eq!(server_version(info), ("valkey".to_string(), "9.1.2".to_string()));
    }
}
