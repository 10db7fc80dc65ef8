//! The live-session table.
//!
//! Sessions live in a sharded concurrent map ([`DashMap`]) from [`SessionId`] to a
//! reference-counted [`Entry`]. Design choices, and why:
//!
//! - **Lookups never hold a lock across an `.await`.** A request takes the shard's read lock
//!   only long enough to check expiry, count itself in flight and clone the entry's `Arc`.
//!   Counting itself in flight *under* that lock is what makes "expiry racing a new request"
//!   safe: the sweeper removes an entry under the shard's write lock and only if nothing is in
//!   flight, so it can never expire a session that a request has already been routed to.
//! - **Many small shards.** [`SHARDS`] shards keep each shard at a few thousand entries even
//!   with a million sessions, so the sweeper, which write-locks one shard at a time, stalls a
//!   concurrent lookup for microseconds rather than milliseconds.
//! - **foldhash instead of SipHash.** Ids are minted by the server from a CSPRNG, so an
//!   attacker cannot choose keys that land in one bucket; lookups of attacker-chosen ids never
//!   insert. The hasher is also randomly seeded per table. A fast non-cryptographic hash is
//!   therefore safe here and roughly halves the cost of hashing a 36-byte UUID.
//! - **Type-erased services.** The table stores `Arc<Entry<dyn Any + Send + Sync>>` (one
//!   allocation holding the bookkeeping and the per-session service together), so the
//!   [`Sessions`](crate::Sessions) handle can exist before the layer knows the service type.
//! - **Time is a millisecond counter** from the table's creation, read from
//!   `tokio::time::Instant`, so tests can pause and advance the clock.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::id::SessionId;
use crate::info::SessionInfo;

/// Number of shards in the session table (a power of two).
pub(crate) const SHARDS: usize = 256;

/// Least time between two sweeps started by an opening request that found the table full.
const FULL_SWEEP_INTERVAL_MS: u64 = 1_000;

type Hasher = foldhash::fast::RandomState;

/// Bookkeeping for one live session, followed by its service.
pub(crate) struct Entry<T: ?Sized> {
    pub(crate) info: SessionInfo,
    /// Milliseconds since the table's epoch when the session was last used.
    last_seen: AtomicU64,
    /// Requests routed to the session whose response (body included) has not finished.
    in_flight: AtomicU32,
    closed: AtomicBool,
    /// Created on first need, by a response body waiting for more data.
    close_notify: OnceLock<Arc<Notify>>,
    pub(crate) service: T,
}

pub(crate) type DynEntry = Entry<dyn Any + Send + Sync>;

impl<T> Entry<T> {
    /// A new entry, counted as one request in flight (the opening request).
    pub(crate) fn new(info: SessionInfo, service: T, now: u64) -> Self {
        Self {
            info,
            last_seen: AtomicU64::new(now),
            in_flight: AtomicU32::new(1),
            closed: AtomicBool::new(false),
            close_notify: OnceLock::new(),
            service,
        }
    }
}

impl<T: ?Sized> Entry<T> {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Marks the session closed and wakes every response body waiting on it.
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(notify) = self.close_notify.get() {
            notify.notify_waiters();
        }
    }

    pub(crate) fn close_notify(&self) -> Arc<Notify> {
        self.close_notify.get_or_init(Default::default).clone()
    }

    fn is_expired(&self, now: u64, idle_ms: u64) -> bool {
        idle_ms != 0
            && self.in_flight.load(Ordering::Acquire) == 0
            && now.saturating_sub(self.last_seen.load(Ordering::Acquire)) >= idle_ms
    }

    fn idle_since(&self) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.last_seen.load(Ordering::Acquire))
    }

    /// Counts a request in flight and stamps its start as the session's last use.
    pub(crate) fn begin(&self, now: u64) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_seen.fetch_max(now, Ordering::AcqRel);
    }

    /// Ends a request. `now` is the time it finished, or `None` when its response was complete
    /// in the poll that started it: then the stamp of [`begin`](Self::begin) stands, which
    /// saves a clock read on every quick request (about 20-40 ns).
    pub(crate) fn end(&self, now: Option<u64>) {
        if let Some(now) = now {
            self.last_seen.fetch_max(now, Ordering::AcqRel);
        }
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What happened when a slot for a new session was asked for.
pub(crate) enum Reserve {
    Reserved(Reservation),
    Full,
    ShutDown,
}

/// A counted slot for a session that is being opened; given back on drop unless committed.
pub(crate) struct Reservation {
    registry: Arc<Registry>,
    committed: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed {
            self.registry.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The table plus the lifecycle settings every clone of a layer shares.
pub(crate) struct Registry {
    table: DashMap<SessionId, Arc<DynEntry>, Hasher>,
    /// Live sessions plus reserved slots; the table's own `len` is O(shards).
    count: AtomicUsize,
    epoch: Instant,
    pub(crate) settings: crate::lifecycle::Settings,
    shut_down: AtomicBool,
    pub(crate) sweeper: crate::lifecycle::SweeperState,
    /// When an opening request last swept a full table (ms since the epoch; 0: never).
    last_full_sweep: AtomicU64,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            table: DashMap::with_hasher_and_shard_amount(Hasher::default(), SHARDS),
            count: AtomicUsize::new(0),
            epoch: Instant::now(),
            settings: Default::default(),
            shut_down: AtomicBool::new(false),
            sweeper: Default::default(),
            last_full_sweep: AtomicU64::new(0),
        }
    }

    /// Milliseconds since the table was created.
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Live sessions (closed ones not yet reclaimed by a lookup or the sweeper included).
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }

    /// Routes a request to session `id`: returns its entry, already counted in flight, or
    /// `None` if it is unknown, expired (then it is closed on the way) or refused by
    /// `accept` (a foreign principal, say; a refused request does not refresh the session).
    pub(crate) fn acquire(
        &self,
        id: &str,
        accept: impl FnOnce(&DynEntry) -> bool,
    ) -> Option<Arc<DynEntry>> {
        self.find(id, |entry, now| {
            accept(entry).then(|| {
                entry.begin(now);
                Arc::clone(entry)
            })
        })
    }

    /// Looks a session up without counting a request; `None` if unknown or expired.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<DynEntry>> {
        self.find(id, |entry, _| Some(Arc::clone(entry)))
    }

    /// Runs `live` on session `id` under its shard's read lock if it is live; an expired
    /// session is closed instead (expiry does not wait for the sweeper).
    fn find<T>(&self, id: &str, live: impl FnOnce(&Arc<DynEntry>, u64) -> Option<T>) -> Option<T> {
        let now = self.now();
        let idle = self.settings.idle_timeout_ms();
        {
            let entry = self.table.get(id)?;
            if !entry.is_expired(now, idle) {
                return live(entry.value(), now);
            }
        }
        self.expire(id);
        None
    }

    /// Closes `id` if it is (still) expired.
    fn expire(&self, id: &str) {
        let now = self.now();
        let idle = self.settings.idle_timeout_ms();
        if let Some((_, entry)) = self.table.remove_if(id, |_, e| e.is_expired(now, idle)) {
            self.finish_close(&entry, crate::CloseReason::Expired);
        }
    }

    /// Removes `id` from the table and closes it; `false` if it was not there, or had expired
    /// already (it is then closed as [`Expired`](crate::CloseReason::Expired)).
    pub(crate) fn close(&self, id: &str, reason: crate::CloseReason) -> bool {
        let Some((_, entry)) = self.table.remove(id) else {
            return false;
        };
        let expired = entry.is_expired(self.now(), self.settings.idle_timeout_ms());
        let reason = if expired {
            crate::CloseReason::Expired
        } else {
            reason
        };
        self.finish_close(&entry, reason);
        !expired
    }

    fn finish_close(&self, entry: &DynEntry, reason: crate::CloseReason) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        entry.mark_closed();
        self.settings.run_on_close(entry.info.id(), reason);
    }

    /// Asks for a slot for a new session, evicting the idlest one first if the table is full
    /// and eviction is configured.
    pub(crate) fn reserve(self: &Arc<Self>) -> Reserve {
        if self.is_shut_down() {
            return Reserve::ShutDown;
        }
        if self.try_count()
            || (self.sweep_when_full() > 0 && self.try_count())
            || (self.settings.evict_idlest() && self.evict_idlest() && self.try_count())
        {
            return Reserve::Reserved(Reservation {
                registry: Arc::clone(self),
                committed: false,
            });
        }
        Reserve::Full
    }

    /// Expired sessions nobody asked for still hold slots until the sweeper runs; a full table
    /// reclaims them itself, at most once per [`FULL_SWEEP_INTERVAL_MS`] so that a flood of
    /// opening requests against a full table does not scan it every time.
    fn sweep_when_full(&self) -> usize {
        let now = self.now();
        let last = self.last_full_sweep.load(Ordering::Acquire);
        if now.saturating_sub(last) < FULL_SWEEP_INTERVAL_MS && last != 0 {
            return 0;
        }
        if self
            .last_full_sweep
            .compare_exchange(last, now.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return 0;
        }
        self.sweep()
    }

    fn try_count(&self) -> bool {
        let max = self.settings.max_sessions();
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Closes the session idle the longest (none with a request in flight). O(sessions).
    fn evict_idlest(&self) -> bool {
        let mut idlest: Option<(u64, SessionId)> = None;
        for item in self.table.iter() {
            if let Some(since) = item.value().idle_since()
                && idlest.as_ref().is_none_or(|(best, _)| since < *best)
            {
                idlest = Some((since, item.key().clone()));
            }
        }
        let Some((_, id)) = idlest else { return false };
        match self
            .table
            .remove_if(id.as_str(), |_, e| e.idle_since().is_some())
        {
            Some((_, entry)) => {
                self.finish_close(&entry, crate::CloseReason::Evicted);
                true
            }
            None => false,
        }
    }

    /// Stores a freshly opened session and takes over its reservation. Returns `false`, and
    /// leaves nothing stored, if the id is taken or the layer shut down meanwhile (a session
    /// that `shutdown` raced with is closed as [`Shutdown`](crate::CloseReason::Shutdown)).
    pub(crate) fn commit(&self, entry: Arc<DynEntry>, mut reservation: Reservation) -> bool {
        if self.is_shut_down() {
            return false;
        }
        match self.table.entry(entry.info.id().clone()) {
            dashmap::Entry::Occupied(_) => return false,
            dashmap::Entry::Vacant(slot) => {
                slot.insert(entry.clone());
            }
        }
        // The slot now belongs to the stored session; `finish_close` gives it back.
        reservation.committed = true;
        // `shutdown` may have drained the table between the check above and the insert.
        if self.is_shut_down() {
            self.close(entry.info.id().as_str(), crate::CloseReason::Shutdown);
            return false;
        }
        true
    }

    /// Whether an id is currently in the table (live or not yet reclaimed).
    pub(crate) fn contains_key(&self, id: &str) -> bool {
        self.table.contains_key(id)
    }

    /// Closes every expired session; returns how many.
    pub(crate) fn sweep(&self) -> usize {
        let idle = self.settings.idle_timeout_ms();
        if idle == 0 {
            return 0;
        }
        let now = self.now();
        self.drain(
            |entry| entry.is_expired(now, idle),
            crate::CloseReason::Expired,
        )
    }

    /// Refuses new sessions from now on and closes every live one.
    pub(crate) fn shutdown(&self) -> usize {
        self.shut_down.store(true, Ordering::SeqCst);
        self.sweeper.stop();
        self.drain(|_| true, crate::CloseReason::Shutdown)
    }

    /// Closes every session `close` picks, in one pass over the table.
    fn drain(&self, close: impl Fn(&DynEntry) -> bool, reason: crate::CloseReason) -> usize {
        let mut closed = Vec::with_capacity(1024);
        // Mark each session closed while the retain has its entry in cache; hooks and the
        // final drops run after, outside the shard locks (a hook or a service's `Drop` may
        // call back into the table).
        self.table.retain(|_, entry| {
            if close(entry) {
                entry.mark_closed();
                closed.push(Arc::clone(entry));
                false
            } else {
                true
            }
        });
        let n = closed.len();
        if n == 0 {
            return 0;
        }
        self.count.fetch_sub(n, Ordering::AcqRel);
        self.settings
            .run_on_close_all(closed.iter().map(|entry| entry.info.id()), reason);
        // Free in address order: the entries were taken in hash order, and freeing a million
        // of them in that order is mostly cache misses (measured: 4x faster at 1M sessions).
        closed.sort_unstable_by_key(|entry| Arc::as_ptr(entry).cast::<()>() as usize);
        drop(closed);
        // Give memory back after a wave of sessions is gone; hash tables never shrink alone.
        if self.table.len() * 4 < self.table.capacity() {
            self.table.shrink_to_fit();
        }
        n
    }

    /// Ids of the live sessions, in no particular order.
    pub(crate) fn ids(&self) -> Vec<SessionId> {
        self.table.iter().map(|e| e.key().clone()).collect()
    }
}
