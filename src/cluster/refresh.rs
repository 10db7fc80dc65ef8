//! The background refresh of the records' time to live: once per interval, one batch for the
//! sessions used on this node since the last round (or with a request or stream open). A
//! round also closes this node's copies of sessions whose record is gone.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::cluster::Link;
use crate::metrics::StoreOp;

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
    refresh(link, false).await
}

/// The round run when the store is reachable again after an outage: the records of every
/// session live here (a store that came back empty ends them all now, not one by one at
/// their next data operation).
pub(crate) async fn refresh_everything(link: Weak<Link>) {
    let _ = refresh(link, true).await;
}

/// Resets the time to live of the records of this node's sessions (those used since the last
/// round, or all of them), and ends the copies whose record is gone.
async fn refresh(link: Weak<Link>, everything: bool) -> ControlFlow<()> {
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
    // While the store's breaker is open its probe runs instead; when it closes, a round over
    // every session follows. The sessions used meanwhile stay in the next round: `since`
    // moves only when a round runs.
    if strong.store_is_down() {
        return ControlFlow::Continue(());
    }
    let now = table.now();
    let since = cluster.refreshed_at.swap(now, Ordering::AcqRel);
    let ids = table.used_since(if everything { 0 } else { since });
    drop(table);
    let store = Arc::clone(&cluster.store);
    let metrics = strong.metrics.clone();
    metrics.refresh_round(ids.len());
    drop(strong);
    for batch in ids.chunks(TOUCH_BATCH) {
        // A failed round is retried at the next one, well within the time to live (a quarter
        // of it by default); an outage opens the store's breaker.
        let touched = metrics.store(StoreOp::Touch, store.touch(batch, ttl)).await;
        let Some(link) = link.upgrade() else {
            return ControlFlow::Break(());
        };
        link.store_health(&touched);
        match touched {
            // No record any more: closed for good elsewhere (a bus message this node missed),
            // expired, or lost by the store. Closed here and on the other nodes.
            Ok(gone) => gone.iter().for_each(|id| link.record_gone(id)),
            Err(error) => {
                tracing::debug!(%error, "could not refresh session records");
                break;
            }
        }
    }
    ControlFlow::Continue(())
}
