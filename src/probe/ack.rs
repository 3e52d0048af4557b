//! `--write-ack`: how far a write must have gone before it counts as acknowledged. `plain`: the
//! primary answered. `wait=N[:T]`: and `WAIT N T` said N replicas have it. `waitaof=L:N[:T]`:
//! and `WAITAOF L N T` said it is in L local and N replica append-only files. The wait goes in
//! the same round trip as the write, so the probe's latency includes it; a level not reached is
//! a failed write of class `ack-timeout` (a ghost if it survives).

use crate::duration::{format_duration, parse_duration};
use redis::{Pipeline, RedisError, Value};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteAck {
    #[default]
    Plain,
    Wait {
        replicas: u32,
        timeout: Duration,
    },
    WaitAof {
        local: u32,
        replicas: u32,
        timeout: Duration,
    },
}

/// The wait's own limit when none is given: a probe's deadline is 250 ms by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

impl WriteAck {
    /// `plain`, `wait=1`, `wait=2:500ms`, `waitaof=1:1`, `waitaof=1:0:1s`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("--write-ack `{text}`: use plain, wait=N[:TIMEOUT] or waitaof=LOCAL:REPLICAS[:TIMEOUT]");
        let count = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
        let timeout = |s: Option<&str>| -> Result<Duration, String> {
            let t = s.map(parse_duration).transpose()?.unwrap_or(DEFAULT_TIMEOUT);
            // WAIT 0 blocks forever: a probe's wait always ends.
            if t < Duration::from_millis(1) || t > Duration::from_secs(60) {
                return Err(format!("--write-ack `{text}`: the timeout must be between 1ms and 60s"));
            }
            Ok(t)
        };
        let (kind, arg) = text.trim().split_once('=').unwrap_or((text.trim(), ""));
        let mut parts = arg.split(':');
        match kind {
            "plain" if arg.is_empty() => Ok(WriteAck::Plain),
            "wait" => {
                let replicas = count(parts.next().ok_or_else(bad)?)?;
                let timeout = timeout(parts.next())?;
                if parts.next().is_some() || replicas == 0 {
                    return Err(bad());
                }
                Ok(WriteAck::Wait { replicas, timeout })
            }
            "waitaof" => {
                let local = count(parts.next().ok_or_else(bad)?)?;
                let replicas = count(parts.next().ok_or_else(bad)?)?;
                let timeout = timeout(parts.next())?;
                if parts.next().is_some() || local > 1 || local + replicas == 0 {
                    return Err(bad());
                }
                Ok(WriteAck::WaitAof { local, replicas, timeout })
            }
            _ => Err(bad()),
        }
    }

    pub fn label(&self) -> String {
        match self {
            WriteAck::Plain => "plain".into(),
            WriteAck::Wait { replicas, timeout } => format!("wait={replicas}:{}", format_duration(*timeout)),
            WriteAck::WaitAof { local, replicas, timeout } => {
                format!("waitaof={local}:{replicas}:{}", format_duration(*timeout))
            }
        }
    }

    /// The wait, after the write's EXEC in the same pipeline.
    pub(crate) fn append(&self, pipe: &mut Pipeline) {
        match self {
            WriteAck::Plain => {}
            WriteAck::Wait { replicas, timeout } => {
                pipe.cmd("WAIT").arg(replicas).arg(timeout.as_millis() as u64);
            }
            WriteAck::WaitAof { local, replicas, timeout } => {
                pipe.cmd("WAITAOF").arg(local).arg(replicas).arg(timeout.as_millis() as u64);
            }
        }
    }

    /// Whether the wait's reply (the pipeline's last) says the level was reached.
    pub(crate) fn check(&self, replies: &[Value]) -> Result<(), RedisError> {
        let reached = |what: String| -> Result<(), RedisError> {
            Err(RedisError::from((redis::ErrorKind::Extension, "ACKTIMEOUT", what)))
        };
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        match self {
            WriteAck::Plain => Ok(()),
            WriteAck::Wait { replicas, timeout } => match int(replies.last()) {
                Some(n) if n >= i64::from(*replicas) => Ok(()),
                n => reached(format!("WAIT {replicas} {}: {} replica(s) had it", timeout.as_millis(), show(n))),
            },
            WriteAck::WaitAof { local, replicas, timeout } => {
                let counts = match replies.last() {
                    Some(Value::Array(items)) => (int(items.first()), int(items.get(1))),
                    _ => (None, None),
                };
                match counts {
                    (Some(l), Some(r)) if l >= i64::from(*local) && r >= i64::from(*replicas) => Ok(()),
                    (l, r) => reached(format!(
                        "WAITAOF {local} {replicas} {}: {} local, {} replica(s)",
                        timeout.as_millis(),
                        show(l),
                        show(r)
                    )),
                }
            }
        }
    }
}

fn show(n: Option<i64>) -> String {
    n.map_or_else(|| "no count".to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_print_and_judge_the_wait_reply() {
        let wait = WriteAck::parse("wait=1").unwrap();
        assert_eq!(wait, WriteAck::Wait { replicas: 1, timeout: DEFAULT_TIMEOUT });
        assert_eq!(WriteAck::parse(&wait.label()).unwrap(), wait);
        let aof = WriteAck::parse("waitaof=1:1:500ms").unwrap();
        assert_eq!(aof, WriteAck::WaitAof { local: 1, replicas: 1, timeout: Duration::from_millis(500) });
        assert_eq!(WriteAck::parse(&aof.label()).unwrap(), aof);
        assert_eq!(WriteAck::parse("plain").unwrap(), WriteAck::Plain);
        for bad in
            ["wait", "wait=0", "wait=x", "wait=1:0ms", "wait=1:2m", "waitaof=2:0", "waitaof=1", "sync", "plain=1"]
        {
            assert!(WriteAck::parse(bad).is_err(), "{bad}");
        }
        assert!(wait.check(&[Value::Int(1)]).is_ok());
        let short = wait.check(&[Value::Int(0)]).unwrap_err().to_string();
        assert!(short.contains("ACKTIMEOUT") && short.contains("0 replica(s)"), "{short}");
        assert!(aof.check(&[Value::Array(vec![Value::Int(1), Value::Int(1)])]).is_ok());
        assert!(aof.check(&[Value::Array(vec![Value::Int(1), Value::Int(0)])]).is_err());
        assert!(WriteAck::Plain.check(&[]).is_ok());
    }
}
