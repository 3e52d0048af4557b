//! One monotonic clock per run. Every sample and event carries microseconds since the run start,
//! taken from `Instant`; the wall-clock time of the start is recorded once, for the report.

use std::time::SystemTime;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    wall_start: SystemTime,
}

impl Clock {
    pub fn start_now() -> Self {
        Self { start: Instant::now(), wall_start: SystemTime::now() }
    }

    #[cfg(test)]
    pub(crate) fn origin(&self) -> Instant {
        self.start
    }

    pub(crate) fn wall_start(&self) -> SystemTime {
        self.wall_start
    }

    /// Microseconds since the run start (0 for instants before it).
    pub fn us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_micros() as u64
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.us(Instant::now())
    }
}

/// Microseconds on the run clock as the milliseconds every report and summary.json shows.
pub(crate) fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}
