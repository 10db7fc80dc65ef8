//! The idle-expiry sweeper: a tokio task that closes sessions nobody asks for again.
//!
//! Expiry never depends on the sweeper: a request for an expired session is answered 404 and
//! the session is closed on the spot. The sweeper only reclaims sessions nobody asks for
//! again (clients often vanish without sending DELETE), so that memory stays bounded.
//!
//! - It starts with the first request the layer's service sees, on that request's tokio
//!   runtime, when sessions can end by time at all. Without a runtime it does nothing, and a
//!   full table still reclaims expired sessions itself.
//! - It sweeps one shard at a time and yields to the runtime between shards, so it never holds
//!   a worker for more than one shard (under a millisecond at 1M sessions; see BENCHMARKS.md).
//! - It holds only a weak reference to the table, and the table wakes it when it is dropped:
//!   it ends as soon as the last layer, service and [`Sessions`](crate::Sessions) handle are
//!   gone, not at its next tick.
//! - A panicking close hook is caught where it runs; the sweeper goes on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::registry::{Registry, SHARDS};

/// Starts the sweeper on the current tokio runtime, once per table.
pub(crate) fn ensure_started(registry: &Arc<Registry>) {
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
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                swept += registry.sweep_shard(shard, registry.now(), &mut next_end);
                if shard == SHARDS - 1 {
                    registry.set_next_end(next_end, started);
                }
                drop(registry);
                tokio::task::yield_now().await;
            }
            if swept > 0 {
                tracing::debug!(swept, "sessions expired");
            }
        }
    });
}
