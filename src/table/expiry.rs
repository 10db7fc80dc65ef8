//! Ending sessions by time: the idle timeout and the lifetime, checked on every lookup, and the
//! background sweeper that reclaims sessions nobody asks for again.
//!
//! Expiry never depends on the sweeper: a request for an ended session is answered 404 and
//! the session is closed on the spot. The sweeper only reclaims sessions nobody asks for
//! again (clients often vanish without sending DELETE), so that memory stays bounded.
//!
//! - It starts with the first request the layer's service sees, on that request's tokio
//!   runtime, when sessions can end by time at all. Without a runtime it does nothing, and a
//!   full table still reclaims ended sessions itself.
//! - It works in steps of one shard, or of at most [`SWEEP_STEP`] ended sessions of one
//!   shard, and yields to the runtime between steps, so no single step holds a worker for
//!   long (see the expiry bench in BENCHMARKS.md for the longest step at 1M). A session
//!   removed in a step is fully closed in that step: its place given back, its hook run, its
//!   service dropped.
//! - It holds only a weak reference to the table, and the table stops it when it is dropped:
//!   it ends as soon as the last layer, service and [`Sessions`](crate::Sessions) handle are
//!   gone, not at its next tick.
//! - A panicking close hook is caught where it runs; the sweeper goes on.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::table::{Backend, Close, DynEntry, SHARDS, Table};

/// Most ended sessions the background sweeper removes and frees in one step (one shard lock
/// hold), between two yields to the runtime.
pub(crate) const SWEEP_STEP: usize = 128;

impl<B: Backend> Table<B> {
    /// Starts the sweeper on the current tokio runtime, once, if sessions can end by time.
    pub(crate) fn ensure_sweeper(self: &Arc<Self>) {
        if !self.settings.expires() || self.sweeper.is_started() {
            return;
        }
        let interval = self.settings.sweep_interval();
        self.sweeper.start(interval, Arc::downgrade(self), |table| {
            sweep_in_steps(table)
        });
    }

    /// Closes every session that has ended by time, one shard after another; returns how many.
    /// The closed entries of all shards are freed together, in address order (see
    /// [`released`](Self::released)).
    pub(crate) fn sweep(&self) -> usize {
        let now = self.now();
        let mut next_end = u64::MAX;
        let mut closed = Vec::new();
        // A whole shard per lock hold: taking it in steps here made waiting requests wait
        // longer, not shorter (BENCHMARKS.md, expiry). The background sweeper yields between
        // its steps instead.
        for i in 0..SHARDS {
            self.take_ended(i, now, &mut next_end, &mut closed, usize::MAX);
        }
        self.set_next_end(next_end, now);
        self.released(closed)
    }

    /// Records the earliest time a session can end, after a full pass that started at `now`.
    fn set_next_end(&self, next_end: u64, now: u64) {
        // Sessions opened during the pass end no sooner than `now` plus the shortest timeout.
        let bound = next_end.min(now.saturating_add(self.settings.shortest_timeout_ms()));
        self.next_end.store(bound, Ordering::Release);
    }

    /// Removes up to `max` sessions of shard `i` that have ended by `now`, marks them closed
    /// and adds them to `closed`; lowers `next_end` to the earliest end of those it passed
    /// over. Returns whether it stopped at `max` (the shard may hold more ended sessions).
    fn take_ended(
        &self,
        i: usize,
        now: u64,
        next_end: &mut u64,
        closed: &mut Vec<(Arc<DynEntry<B>>, Close)>,
        max: usize,
    ) -> bool {
        if !self.settings.expires() {
            return false;
        }
        // Gathered in a vector of this step's size and appended after the lock is released:
        // growing `closed` (up to a million entries) must not happen under a shard lock.
        let mut ended = Vec::new();
        {
            let mut table = self.shards[i].write();
            let taken = table.extract_if(|entry| match entry.ended(now, &self.times) {
                Some(_) => true,
                None => {
                    *next_end = (*next_end).min(entry.ends_no_sooner_than(now, &self.times));
                    false
                }
            });
            for entry in taken.take(max) {
                entry.mark_closed();
                let reason = entry
                    .ended(now, &self.times)
                    .unwrap_or(crate::close::CloseReason::Expired);
                ended.push((entry, Close::by_reason(reason)));
            }
            self.shrink(&mut table);
        }
        let more = ended.len() == max;
        closed.append(&mut ended);
        more
    }
}

/// One round of the background sweeper: every shard, in steps of at most [`SWEEP_STEP`]
/// sessions, with a yield between steps. The table is held only during a step.
async fn sweep_in_steps<B: Backend>(table: Weak<Table<B>>) -> ControlFlow<()> {
    let Some(started) = table.upgrade().map(|t| t.now()) else {
        return ControlFlow::Break(());
    };
    let mut next_end = u64::MAX;
    let mut swept = 0;
    for shard in 0..SHARDS {
        loop {
            let Some(strong) = table.upgrade() else {
                return ControlFlow::Break(());
            };
            let mut closed = Vec::new();
            let now = strong.now();
            let more = strong.take_ended(shard, now, &mut next_end, &mut closed, SWEEP_STEP);
            swept += strong.released(closed);
            if shard == SHARDS - 1 && !more {
                strong.set_next_end(next_end, started);
            }
            drop(strong);
            tokio::task::yield_now().await;
            if !more {
                break;
            }
        }
    }
    if swept > 0 {
        tracing::debug!(swept, "sessions expired");
    }
    ControlFlow::Continue(())
}
