//! A circuit breaker for the store and one for the bus.
//!
//! The first operation that finds the store [unavailable](crate::store::StoreError::is_unavailable)
//! opens the store's breaker: one log line, then every store operation of this node fails at
//! once (opens and restores answer 503, data operations [`DataError::Unavailable`]) instead of
//! each waiting out the store's timeout, and a background probe
//! ([`SessionStore::ping`](crate::store::SessionStore::ping)) runs every probe interval. The
//! first success closes it: one log line, and an immediate refresh round over every session
//! live on this node, so that a store that came back empty (restarted without persistence,
//! flushed) ends every copy whose record is gone before its next request. The bus has the
//! same breaker with [`BusConnection::ping`](crate::bus::BusConnection::ping); while it is
//! open, publishing fails at once and closes are left to the refresh rounds.
//!
//! Errors of the other kind (the store answered, with something unusable) leave the breaker
//! closed: the store is there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::bus::BusError;
use crate::cluster::Link;
use crate::metrics::{BusOp, StoreOp};
use crate::store::StoreError;

/// The default [`Cluster::probe_interval`](crate::Cluster::probe_interval).
pub(crate) const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Which part a breaker guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Store,
    Bus,
}

/// What an operation's result did to a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing.
    None,
    /// The part went away: the breaker opened.
    Opened,
    /// The part is back: the breaker closed.
    Closed,
}

/// The store's and the bus's breakers.
pub(crate) struct Health {
    store_down: AtomicBool,
    bus_down: AtomicBool,
    pub(crate) probe_interval: Duration,
}

impl Health {
    pub(crate) fn new(probe_interval: Duration) -> Self {
        Self {
            store_down: AtomicBool::new(false),
            bus_down: AtomicBool::new(false),
            probe_interval,
        }
    }

    /// Whether the breaker of `part` is open (the part is known to be unavailable).
    pub(crate) fn is_down(&self, part: Part) -> bool {
        self.flag(part).load(Ordering::Acquire)
    }

    fn flag(&self, part: Part) -> &AtomicBool {
        match part {
            Part::Store => &self.store_down,
            Part::Bus => &self.bus_down,
        }
    }

    /// Records the result of a store operation.
    pub(crate) fn store<T>(&self, result: &Result<T, StoreError>) -> Change {
        match result {
            Err(error) if error.is_unavailable() => self.went_down(Part::Store, error),
            Err(_) => Change::None,
            Ok(_) => self.came_back(Part::Store),
        }
    }

    /// Records the result of a bus operation (every bus error is an unavailable bus).
    pub(crate) fn bus<T>(&self, result: &Result<T, BusError>) -> Change {
        match result {
            Err(error) => self.went_down(Part::Bus, error),
            Ok(_) => self.came_back(Part::Bus),
        }
    }

    fn went_down(&self, part: Part, error: &dyn std::fmt::Display) -> Change {
        if self.flag(part).swap(true, Ordering::AcqRel) {
            return Change::None;
        }
        let probe_ms = crate::time::millis(self.probe_interval);
        match part {
            Part::Store => tracing::warn!(
                %error,
                probe_ms,
                "session store unavailable: opening and restoring sessions answer 503 and \
                 session data operations fail at once until a probe reaches it; sessions live \
                 on this node keep serving"
            ),
            Part::Bus => tracing::warn!(
                %error,
                probe_ms,
                "session bus unavailable: publishing fails at once and messages to other nodes \
                 are lost until a probe reaches it"
            ),
        }
        Change::Opened
    }

    fn came_back(&self, part: Part) -> Change {
        // Checked first: the common case (never down) costs one load, not a write.
        if !self.is_down(part) || !self.flag(part).swap(false, Ordering::AcqRel) {
            return Change::None;
        }
        match part {
            Part::Store => tracing::info!(
                "session store reachable again: refreshing every session on this node"
            ),
            Part::Bus => tracing::info!("session bus reachable again"),
        }
        Change::Closed
    }
}

/// Probes `part` every probe interval until it answers (the breaker then closes), the link is
/// gone or its table has shut down.
pub(crate) async fn probe(link: Weak<Link>, part: Part) {
    loop {
        let interval = match link.upgrade() {
            Some(link) => match link.cluster.as_ref() {
                Some(cluster) => cluster.health.probe_interval,
                None => return,
            },
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(strong) = link.upgrade() else {
            return;
        };
        if strong.table().is_none_or(|table| table.is_shut_down()) {
            return;
        }
        let Some(cluster) = strong.cluster.as_ref() else {
            return;
        };
        if !cluster.health.is_down(part) {
            return;
        }
        let answered = match part {
            Part::Store => {
                let store = Arc::clone(&cluster.store);
                let result = strong.metrics.store(StoreOp::Ping, store.ping()).await;
                strong.store_health(&result);
                result.is_ok()
            }
            Part::Bus => match cluster.bus.as_ref().map(Arc::clone) {
                Some(bus) => {
                    let result = strong.metrics.bus(BusOp::Ping, bus.ping()).await;
                    strong.bus_health(&result);
                    result.is_ok()
                }
                None => return,
            },
        };
        if answered {
            return;
        }
    }
}
