//! The background refresh of the records' time to live: once per interval, one batch for the
//! sessions used on this node since the last round (or with a request or stream open). A
//! round also closes this node's copies of sessions whose record is gone.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::close::CloseReason;
use crate::cluster::Link;

/// Ids per `touch` call of a round.
const TOUCH_BATCH: usize = 1024;

/// The refresh interval: `configured`, or a quarter of the idle timeout clamped to
/// 100 ms..=30 s; never more than half the idle timeout (a record must be refreshed well
/// before its time to live ends).
pub(crate) fn interval(configured: Option<Duration>, idle: Option<Duration>) -> Duration {
    let Some(idle) = idle else {
        return configured.unwrap_or(Duration::from_secs(30));
    };
    let interval = configured
        .unwrap_or_else(|| (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30)));
    interval.min((idle / 2).max(Duration::from_millis(1)))
}

impl Link {
    /// Starts the refresher on the current tokio runtime, once, if the link has a store and
    /// the records a time to live (without a runtime, records keep the time to live they were
    /// created with).
    pub(crate) fn ensure_refresher(self: &Arc<Self>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        if cluster.ttl.is_none() || cluster.refresher.is_started() {
            return;
        }
        cluster.refresher.start(
            cluster.refresh_interval,
            Arc::downgrade(self),
            refresh_round,
        );
    }
}

/// One round: the records of the sessions used here since the last round, in batches.
async fn refresh_round(link: Weak<Link>) -> ControlFlow<()> {
    let Some(strong) = link.upgrade() else {
        return ControlFlow::Break(());
    };
    let Some(table) = strong.table.upgrade() else {
        return ControlFlow::Break(());
    };
    if table.is_shut_down() {
        return ControlFlow::Break(());
    }
    let Some(cluster) = strong.cluster.as_ref() else {
        return ControlFlow::Break(());
    };
    let Some(ttl) = cluster.ttl else {
        return ControlFlow::Break(());
    };
    let now = table.now();
    let since = cluster.refreshed_at.swap(now, Ordering::AcqRel);
    let ids = table.used_since(since);
    drop(table);
    let store = Arc::clone(&cluster.store);
    drop(strong);
    for batch in ids.chunks(TOUCH_BATCH) {
        // A failed round is retried at the next one, well within the time to live (a quarter
        // of it by default); the outage itself is logged by opens and restores.
        match store.touch(batch, ttl).await {
            Ok(gone) => {
                // No record any more: closed for good elsewhere (a bus message this node
                // missed) or expired. Close this node's copies too.
                if !gone.is_empty()
                    && let Some(table) = link.upgrade().and_then(|l| l.table.upgrade())
                {
                    for id in &gone {
                        table.close_copy(id, CloseReason::Closed);
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "could not refresh session records");
                break;
            }
        }
    }
    ControlFlow::Continue(())
}
