//! The live status line while a run is on a terminal.

use super::context::RunContext;
use super::recovery::combined;
use crate::duration::format_ms;
use crate::probe::schedule::Health;
use crate::probe::schedule::HealthState;
use crate::sample::Stream;
use std::io::IsTerminal;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// `trial 2/3 · writes UP · reads DOWN 1.24 s (timeout) · 198 probes/s · 12 errors`
pub(crate) fn status_line(
    trial: u32,
    trials: usize,
    streams: &[(&str, HealthState)],
    now_us: u64,
    rate: f64,
) -> String {
    let mut parts = vec![format!("trial {}/{trials}", trial + 1)];
    let mut errors = 0;
    for (name, h) in streams {
        errors += h.failed;
        parts.push(if !h.seen_any {
            format!("{name} …")
        } else if h.up {
            format!("{name} UP")
        } else {
            let down_for = now_us.saturating_sub(h.since_us) as f64 / 1000.0;
            let class = h.last_error.map(|c| c.to_string()).unwrap_or_default();
            format!("{name} DOWN {} ({class})", format_ms(down_for))
        });
    }
    parts.push(format!("{rate:.0} probes/s"));
    parts.push(format!("{errors} errors"));
    parts.join(" · ")
}

pub(crate) fn print_status(line: &str) {
    let mut out = std::io::stdout();
    let _ = write!(out, "\r\x1b[2K{line}");
    let _ = out.flush();
}

pub(crate) fn clear_status() {
    let mut out = std::io::stdout();
    let _ = write!(out, "\r\x1b[2K");
    let _ = out.flush();
}

/// The live status line, from the first profile's streams.
pub(super) fn spawn_status(ctx: &RunContext, trial: u32, health: Vec<Arc<Health>>) -> tokio::task::JoinHandle<()> {
    let show = !ctx.plan.quiet && std::io::stdout().is_terminal();
    let clock = ctx.report.clock;
    let trials = ctx.plan.triggers.len();
    tokio::spawn(async move {
        if !show {
            return;
        }
        let mut last = (Instant::now(), 0u64);
        loop {
            sleep(Duration::from_millis(250)).await;
            let states = [("writes", combined(&health, Stream::Write)), ("reads", combined(&health, Stream::Read))];
            let done: u64 = states.iter().map(|(_, h)| h.completed).sum();
            let rate = (done - last.1.min(done)) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), done);
            print_status(&status_line(trial, trials, &states, clock.now_us(), rate));
        }
    })
}
