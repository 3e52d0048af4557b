//! The fixed clock of one stream, on the OS's high-resolution timer: a periodic `timerfd` read
//! through the probing runtime's own epoll, so a tick wakes the thread that sends the probe (no
//! clock thread handing each tick over, no 1 ms timer-wheel granularity added to every latency).
//! One timer per interval serves every stream of that interval.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) struct Ticker {
    /// The interval's metronome: changes at each of its ticks.
    ticks: watch::Receiver<()>,
    /// When this stream's tick 0 is due.
    start: Instant,
    interval: Duration,
    /// Ticks handed out so far.
    taken: u64,
}

impl Ticker {
    /// A clock whose tick `n` (0-based) is due at `start + n × interval`, `start` the next
    /// multiple of `interval` on a grid shared by every stream of the process. Streams of one
    /// interval share one timer: they tick together, and one wake-up of the probing thread sends
    /// all their probes.
    pub(crate) fn start(interval: Duration) -> io::Result<Self> {
        let interval = interval.max(Duration::from_micros(1));
        let (first, ticks) = metronome(interval)?;
        let step = interval.as_nanos() as u64;
        let skip = (first.elapsed().as_nanos() as u64).div_ceil(step).saturating_mul(step);
        Ok(Self { ticks, start: first + Duration::from_nanos(skip), interval, taken: 0 })
    }

    /// The due time of the next tick once it is due (at once when it already is): overdue ticks
    /// come one after the other with their own due times, none skipped.
    pub(crate) async fn next(&mut self) -> io::Result<Instant> {
        let due = self.start + Duration::from_nanos((self.interval.as_nanos() as u64).saturating_mul(self.taken));
        while Instant::now() < due {
            if self.ticks.changed().await.is_err() {
                return Err(io::Error::other("the probe clock stopped"));
            }
        }
        self.taken += 1;
        Ok(due)
    }
}

/// Per probing thread and interval, the one timer: its first tick, and a receiver of its ticks.
/// Per thread, so that a fleet target's streams tick on its own thread (`runtime`).
type Metronomes = Mutex<HashMap<(std::thread::ThreadId, Duration), (Instant, watch::Receiver<()>)>>;

fn metronomes() -> &'static Metronomes {
    static ALL: OnceLock<Metronomes> = OnceLock::new();
    ALL.get_or_init(Default::default)
}

/// The metronome of `interval`, started (on the probing thread) when none runs.
fn metronome(interval: Duration) -> io::Result<(Instant, watch::Receiver<()>)> {
    let key = (std::thread::current().id(), interval);
    let mut all = metronomes().lock().unwrap_or_else(|e| e.into_inner());
    if let Some((first, ticks)) = all.get(&key) {
        if ticks.has_changed().is_ok() {
            return Ok((*first, ticks.clone()));
        }
    }
    let (fd, first) = timer(interval)?;
    let (tx, ticks) = watch::channel(());
    all.insert(key, (first, ticks.clone()));
    super::runtime::handle().spawn(beat(fd, key, tx));
    Ok((first, ticks))
}

/// A periodic timerfd whose expiries fall on the grid of `interval`, and its first expiry.
fn timer(interval: Duration) -> io::Result<(OwnedFd, Instant)> {
    // SAFETY: plain syscalls on a descriptor this function owns from here on.
    let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let (epoch, epoch_ns) = grid();
    let step = interval.as_nanos() as u64;
    let start_ns = (epoch.elapsed().as_nanos() as u64).div_ceil(step).saturating_mul(step);
    let spec = libc::itimerspec {
        it_value: timespec(Duration::from_nanos(epoch_ns + start_ns)),
        it_interval: timespec(interval),
    };
    let armed = unsafe { libc::timerfd_settime(fd.as_raw_fd(), libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
    if armed < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, epoch + Duration::from_nanos(start_ns)))
}

/// Tells every stream of one interval that its timer expired, until no stream listens.
async fn beat(fd: OwnedFd, key: (std::thread::ThreadId, Duration), tx: watch::Sender<()>) {
    // SAFETY: the descriptor is owned by the `AsyncFd` and closed only with it.
    let Ok(fd) = (unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }) else { return };
    loop {
        let Ok(mut ready) = fd.readable().await else { return };
        let mut expirations = [0u8; 8];
        // SAFETY: reads 8 bytes into a buffer of 8. A failed read (nothing expired) is harmless:
        // the streams compare the time with their due times.
        unsafe { libc::read(ready.get_inner().as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
        // With edge-triggered epoll, readiness cleared after a read is set again by the next expiry.
        ready.clear_ready();
        // Only the registry's own receiver left: every stream of this interval ended.
        if tx.receiver_count() <= 1 {
            let mut all = metronomes().lock().unwrap_or_else(|e| e.into_inner());
            if tx.receiver_count() <= 1 {
                all.remove(&key);
                return;
            }
        }
        tx.send_replace(());
    }
}

/// The process's tick grid: its origin as an `Instant` and as CLOCK_MONOTONIC nanoseconds.
/// `Instant` reads CLOCK_MONOTONIC too; taking it first puts every due time at or before the
/// timer's expiry, never after (a probe is never sent before it is due).
fn grid() -> (Instant, u64) {
    static GRID: OnceLock<(Instant, u64)> = OnceLock::new();
    *GRID.get_or_init(|| {
        let origin = Instant::now();
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: writes the current time into `now`.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        (origin, now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
    })
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_come_at_their_due_times_and_overdue_ones_are_not_skipped() {
        let interval = Duration::from_millis(2);
        let mut ticker = Ticker::start(interval).unwrap();
        let first = ticker.next().await.unwrap();
        for n in 1..20u32 {
            let due = ticker.next().await.unwrap();
            assert_eq!(due, first + interval * n);
            let now = Instant::now();
            assert!(now >= due, "tick {n} came {:?} early", due - now);
        }
        // Stalled for ten intervals: the ten overdue ticks come at once, each with its due time.
        std::thread::sleep(interval * 10);
        let stalled = Instant::now();
        for n in 20..30u32 {
            assert_eq!(ticker.next().await.unwrap(), first + interval * n);
        }
        assert!(stalled.elapsed() < interval, "overdue ticks waited");
    }
}
