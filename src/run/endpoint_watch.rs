//! An endpoint lab's flips on the timeline.

use crate::lab::{Lab, Topology};
use crate::sample::EventKind;
use crate::sink::Reporter;
use std::time::Duration;
use tokio::time::sleep;

/// An endpoint lab's flips, on the timeline at the time the endpoint logged them (read every
/// 200 ms from its `endpoint.jsonl`; the endpoint is another process).
pub(super) fn follow_endpoint(lab: &Lab, report: Reporter) -> Option<tokio::task::JoinHandle<()>> {
    let at = lab.endpoint_addr().filter(|_| lab.topology == Topology::Endpoint)?;
    let dir = lab.dir.clone();
    let origin_us = report.clock.wall_start().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    Some(tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let (flips, lines) = crate::lab::endpoint::read_flips(&dir, seen);
            seen = lines;
            for f in flips {
                let kind = EventKind::EndpointFlip { endpoint: at.to_string(), from: f.from, to: f.to };
                report.event_at(f.at_unix_us.saturating_sub(origin_us), kind);
            }
            sleep(Duration::from_millis(200)).await;
        }
    }))
}
