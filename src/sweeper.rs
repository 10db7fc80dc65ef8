//! The idle-expiry sweeper: a tokio task that closes sessions nobody asks for again.
//!
//! Expiry never depends on the sweeper: a request for an expired session is answered 404 and
//! the session is closed on the spot. The sweeper only reclaims sessions nobody asks for
//! again (clients often vanish without sending DELETE), so that memory stays bounded.
//!
//! - It starts with the first request the layer's service sees, on that request's tokio
//!   runtime, when sessions can end by time at all. Without a runtime it does nothing, and a
//!   full table still reclaims expired sessions itself.
//! - It works in steps of one shard, or of at most 128 ended sessions of one shard, and yields
//!   to the runtime between steps, so no single step holds a worker for long (see the expiry
//!   bench in BENCHMARKS.md for the longest step at 1M). A session removed in a step is fully
//!   closed in that step: its slot given back, its hook run, its service dropped.
//! - It holds only a weak reference to the table, and the table wakes it when it is dropped:
//!   it ends as soon as the last layer, service and [`Sessions`](crate::Sessions) handle are
//!   gone, not at its next tick.
//! - A panicking close hook is caught where it runs; the sweeper goes on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::registry::{Registry, SHARDS, SWEEP_STEP};

/// Starts the sweeper on the current tokio runtime, once per table.
pub(crate) fn ensure_started(registry: &Arc<Registry>) {
    crate::node::ensure_refresher(registry);
    let state = &registry.sweeper;
    if state.started.load(Ordering::Relaxed) || !registry.config.expires() {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if state.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(registry);
    let stop = Arc::clone(&state.stop);
    let stopped = Arc::clone(&state.stopped);
    let interval = registry.config.sweep_interval();
    handle.spawn(async move {
        loop {
            let notified = stop.notified();
            // `notify_waiters` reaches every `Notified` created before it: checking the flag
            // after creating the future cannot miss a stop.
            if stopped.load(Ordering::SeqCst) {
                return;
            }
            if tokio::time::timeout(interval, notified).await.is_ok() {
                return;
            }
            let Some(started) = weak.upgrade().map(|r| r.now()) else {
                return;
            };
            let mut next_end = u64::MAX;
            let mut swept = 0;
            for shard in 0..SHARDS {
                // One step: at most SWEEP_STEP sessions of one shard removed, closed and freed
                // (freeing is the costly part: a shard's entries are spread over the heap),
                // then a yield. A removed session is settled within its step: its slot is
                // given back, its hook has run and its service is dropped.
                loop {
                    let Some(registry) = weak.upgrade() else {
                        return;
                    };
                    let mut closed = Vec::new();
                    let now = registry.now();
                    let more =
                        registry.take_ended(shard, now, &mut next_end, &mut closed, SWEEP_STEP);
                    swept += registry.released(closed);
                    if shard == SHARDS - 1 && !more {
                        registry.set_next_end(next_end, started);
                    }
                    drop(registry);
                    tokio::task::yield_now().await;
                    if !more {
                        break;
                    }
                }
            }
            if swept > 0 {
                tracing::debug!(swept, "sessions expired");
            }
        }
    });
}
