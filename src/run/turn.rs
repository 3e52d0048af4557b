//! When a fleet's target may fire its trigger. One trigger across many targets is a change to
//! many deployments at once; an SRE fires them one after another: each target waits until the
//! targets before it have finished that trial (recovered and settled), or, with `--stagger D`,
//! target N fires N × D after its warm-up. A single run has no turn and fires at once.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How a fleet's triggers follow each other.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Each waits for the ones before it to finish the same trial.
    Sequential,
    /// Target N waits N × this after its warm-up (0: all at once).
    Spaced(Duration),
}

/// The fleet's order: per target that fires, how many trials it has finished (`u32::MAX` once
/// it stopped, so nobody waits for it).
pub struct Order {
    pace: Pace,
    finished: watch::Sender<Vec<u32>>,
}

impl Order {
    pub fn new(pace: Pace, targets: usize) -> Arc<Self> {
        Arc::new(Order { pace, finished: watch::Sender::new(vec![0; targets]) })
    }

    /// The turn of the `index`th target that fires.
    pub fn turn(self: &Arc<Self>, index: usize) -> TriggerTurn {
        TriggerTurn { index, order: self.clone() }
    }
}

/// One target's place in the order. Dropped (the run ended, however), it no longer holds
/// anyone up.
pub struct TriggerTurn {
    index: usize,
    order: Arc<Order>,
}

impl TriggerTurn {
    /// Until this target's trigger of `trial` may fire.
    pub(crate) async fn wait(&self, trial: u32) {
        match self.order.pace {
            Pace::Spaced(gap) => tokio::time::sleep(gap * self.index as u32).await,
            Pace::Sequential => {
                let mut finished = self.order.finished.subscribe();
                let index = self.index;
                // Those before this one have finished this trial; those after it the previous.
                let ready = |f: &Vec<u32>| {
                    f.iter().enumerate().all(|(j, &done)| j == index || done > trial || (j > index && done >= trial))
                };
                let _ = finished.wait_for(ready).await;
            }
        }
    }

    /// This target's trial `trial` is over: the next may fire.
    pub(crate) fn finished(&self, trial: u32) {
        self.order.finished.send_modify(|f| f[self.index] = f[self.index].max(trial + 1));
    }
}

impl Drop for TriggerTurn {
    fn drop(&mut self) {
        self.order.finished.send_modify(|f| f[self.index] = u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sequential_turns_wait_for_those_before_and_skip_the_stopped() {
        let order = Order::new(Pace::Sequential, 3);
        let (a, b, c) = (order.turn(0), order.turn(1), order.turn(2));
        async fn quick(t: &TriggerTurn, trial: u32) -> bool {
            tokio::time::timeout(Duration::from_millis(50), t.wait(trial)).await.is_ok()
        }
        assert!(quick(&a, 0).await, "the first fires at once");
        assert!(!quick(&b, 0).await, "the second waits for the first");
        a.finished(0);
        assert!(quick(&b, 0).await);
        assert!(!quick(&a, 1).await, "the first's next trial waits for the others' first");
        drop(c);
        b.finished(0);
        assert!(quick(&a, 1).await, "a stopped target holds nobody up");
        assert!(!quick(&b, 1).await);
    }
}
