//! The probing thread: every stream and the connections it probes on run on one current-thread
//! runtime of their own. A probe's tick, its request, its reply and its sample are then handled
//! by the thread that waits on them, in one epoll loop, rather than handed from the timer to a
//! worker, to a connection's task on another worker and back (each hand-off a wake-up, most of
//! a probe's CPU cost). The run loop, triggers and analysis keep the main runtime.

use std::sync::OnceLock;
use tokio::runtime::{Builder, Handle};

/// The probing runtime, started on first use; it lives as long as the process.
pub(crate) fn handle() -> &'static Handle {
    static PROBES: OnceLock<Handle> = OnceLock::new();
    PROBES.get_or_init(|| {
        let runtime = Builder::new_current_thread().enable_all().build().expect("the probing runtime");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("failprobe-probes".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("the probing thread");
        handle
    })
}
