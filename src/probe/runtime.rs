//! The probing thread: every stream and the connections it probes on run on one current-thread
//! runtime of their own. A probe's tick, its request, its reply and its sample are then handled
//! by the thread that waits on them, in one epoll loop, rather than handed from the timer to a
//! worker, to a connection's task on another worker and back (each hand-off a wake-up, most of
//! a probe's CPU cost). The run loop, triggers and analysis keep the main runtime.
//!
//! A fleet runs each target on a thread and current-thread runtime of its own
//! (`probe_on_this_thread`): that target's probes run there, so a target whose probes pile up
//! delays no other target's.

use std::cell::RefCell;
use std::sync::OnceLock;
use tokio::runtime::{Builder, Handle};

thread_local! {
    /// Set on a fleet target's thread: the runtime its probes run on.
    static OWN: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Probes started from this thread run on its own (current-thread) runtime, not the process's
/// probing thread. Called by a fleet's target thread inside its runtime.
pub(crate) fn probe_on_this_thread() {
    OWN.with(|own| *own.borrow_mut() = Handle::try_current().ok());
}

/// Where probes started from here run: this thread's own runtime when it asked for it, else the
/// process's probing runtime, started on first use; it lives as long as the process.
pub(crate) fn handle() -> Handle {
    if let Some(own) = OWN.with(|own| own.borrow().clone()) {
        return own;
    }
    static PROBES: OnceLock<Handle> = OnceLock::new();
    PROBES
        .get_or_init(|| {
            let runtime = Builder::new_current_thread().enable_all().build().expect("the probing runtime");
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("failprobe-probes".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .expect("the probing thread");
            handle
        })
        .clone()
}
