//! Restores in flight on this node: one per session id at a time (single flight), and at
//! most [`MAX_RESTORING`] over all ids.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::id::SessionId;
use crate::sync::lock;

/// Restores that may wait on the store or a factory at once on one node; past it a restore
/// answers 503 with `Retry-After`. Bounds what made-up session ids can cost: at most this many
/// store reads in flight.
pub(crate) const MAX_RESTORING: usize = 256;

/// How a restore failed, when the failure holds for every request of the id right now: the
/// requests that waited for the restore get it too, without asking the store again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No record (never created, deleted, expired everywhere), or this node's service refused
    /// the replayed opening request.
    NotFound,
    /// The store did not answer.
    StoreUnavailable,
    /// The per-session service failed the replay in a way that may pass (5xx, 408, 429, a
    /// timeout).
    ReplayFailed,
    /// The factory failed.
    FactoryFailed,
    /// The table is shut down.
    ShuttingDown,
}

/// One restore of an id in flight: its lock, and the failure it ended with if that holds for
/// every request of the id.
type Flight = Arc<tokio::sync::Mutex<Option<Failure>>>;

/// The restores in flight on one node.
pub(crate) struct Restores {
    flights: Mutex<HashMap<SessionId, Flight>>,
    permits: Semaphore,
}

impl Default for Restores {
    fn default() -> Self {
        Self {
            flights: Mutex::default(),
            permits: Semaphore::new(MAX_RESTORING),
        }
    }
}

impl Restores {
    /// Joins the flight of `id`, starting one if none is in the air; the guard gives its place
    /// back when dropped, also when the request is dropped mid-way (client gone, a timeout).
    pub(crate) fn join(&self, id: &SessionId) -> FlightGuard<'_> {
        let flight = Arc::clone(lock(&self.flights).entry(id.clone()).or_default());
        FlightGuard {
            restores: self,
            id: id.clone(),
            flight,
        }
    }

    /// One of the [`MAX_RESTORING`] permits to wait on the store or a factory; `None` if all
    /// are taken.
    pub(crate) fn permit(&self) -> Option<SemaphorePermit<'_>> {
        self.permits.try_acquire().ok()
    }
}

/// A place in the flight of one id.
pub(crate) struct FlightGuard<'a> {
    restores: &'a Restores,
    id: SessionId,
    flight: Flight,
}

impl FlightGuard<'_> {
    /// Waits for the requests ahead in this flight, then holds its lock: the failure the last
    /// one left, if it holds for every request of the id, and the place to leave one.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, Option<Failure>> {
        self.flight.lock().await
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut flights = lock(&self.restores.flights);
        // The map's handle and this one: nobody else waits.
        if Arc::strong_count(&self.flight) <= 2
            && let Some(current) = flights.get(&self.id)
            && Arc::ptr_eq(current, &self.flight)
        {
            flights.remove(&self.id);
        }
    }
}
