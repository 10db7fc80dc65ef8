//! The live-session table: who is open on this node, and when each session ends.
//!
//! Sessions live in [`SHARDS`] shards, each a read-write lock over a hashbrown `HashTable` of
//! reference-counted [`Entry`]s keyed by the id the entry itself holds. The table is generic
//! over its [`Backend`], the seam through which it tells whatever lies beyond this process
//! (the cluster, or nothing) that a session left; it never names the cluster itself.
//!
//! - [`entry`]: one session's clocks, in-flight count and close handshake.
//! - [`payload`]: its service and state, type-erased.
//! - [`admission`]: the limits, and what a full table does.
//! - [`expiry`]: ending sessions by time, and the background sweeper.
//! - [`hooks`]: `on_open` and `on_close`, paired.
//! - [`handshake`]: the two handshakes of an entry (close wake-up, hook pairing), loom-checked.
//! - [`settings`]: what the table reads, frozen when it is built.
//!
//! Design choices, and why:
//!
//! - **Lookups never hold a lock across an `.await`.** A request takes its shard's read lock
//!   only long enough to check expiry, count itself in flight and clone the entry's `Arc`.
//!   Counting itself in flight *under* that lock is what makes "expiry racing a new request"
//!   safe: expiry removes an entry under the shard's write lock and only if nothing is in
//!   flight, so it can never expire a session that a request has already been routed to.
//! - **Own shards over hashbrown rather than a concurrent map crate.** Sweeping, eviction and
//!   listing work one shard at a time (the sweeper holds one write lock for at most 128
//!   removals and yields between steps; eviction samples a few entries of a few shards), and
//!   the id is stored once, inside the entry, not again as a map key. The same table on
//!   DashMap was measured beside it (BENCHMARKS.md, "The table's map"): the own shards were
//!   kept because they were as fast or faster on lookups, eviction and sweeps.
//! - **foldhash instead of SipHash.** Ids are minted by the server from a CSPRNG, so an
//!   attacker cannot choose keys that land in one bucket; lookups of attacker-chosen ids never
//!   insert. The hasher is randomly seeded per table. The shard is taken from hash bits 49–56,
//!   which hashbrown uses neither for the bucket index (low bits) nor for its control bytes
//!   (top 7 bits).
//! - **Time is a millisecond counter** from the table's creation, read from
//!   `tokio::time::Instant`, so tests can pause and advance the clock; with the wall clock
//!   read once at that moment, table times and the wall-clock creation times of sessions
//!   (kept in store records, shared by nodes) convert into each other.

pub(crate) mod admission;
mod backend;
pub(crate) mod entry;
mod expiry;
pub(crate) mod handshake;
pub(crate) mod hooks;
pub(crate) mod payload;
pub(crate) mod settings;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use tokio::time::Instant;

use admission::KeyCounts;
pub(crate) use admission::{Refusal, Reservation};
pub(crate) use backend::{Backend, Scope};
pub(crate) use entry::{Entry, Times};
use payload::Payload;
pub use settings::Eviction;
pub(crate) use settings::TableSettings;

use crate::close::CloseReason;
use crate::id::SessionId;
use crate::info::{ClientKey, SessionInfo};
use crate::sync::{self, Periodic};
use crate::time;
use hooks::run_guarded;

/// Number of shards in the session table (a power of two).
pub(crate) const SHARDS: usize = 256;
/// Hash bits below the top 7 (hashbrown's control bytes) pick the shard.
const SHARD_SHIFT: u32 = 49;

type Hasher = foldhash::fast::RandomState;

/// An entry as the table stores it: its service and state behind one vtable.
pub(crate) type DynEntry<B> = Entry<B, dyn Payload>;

/// A session's close: why, and how far it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) reason: CloseReason,
    pub(crate) scope: Scope,
}

impl Close {
    /// A close that reaches as far as its reason says.
    pub(crate) fn by_reason(reason: CloseReason) -> Self {
        Self {
            reason,
            scope: Scope::Reason,
        }
    }

    /// A close of this node's copy only.
    pub(crate) fn this_copy(reason: CloseReason) -> Self {
        Self {
            reason,
            scope: Scope::ThisCopy,
        }
    }
}

/// One shard, on its own cache lines so that shards do not share lock words.
#[repr(align(128))]
struct Shard<B>(RwLock<HashTable<Arc<DynEntry<B>>>>);

impl<B> Shard<B> {
    fn read(&self) -> RwLockReadGuard<'_, HashTable<Arc<DynEntry<B>>>> {
        sync::read(&self.0)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashTable<Arc<DynEntry<B>>>> {
        sync::write(&self.0)
    }
}

/// One session table with its frozen settings.
pub(crate) struct Table<B: Backend> {
    shards: Box<[Shard<B>]>,
    hasher: Hasher,
    /// Live sessions plus reserved places.
    count: AtomicUsize,
    max_sessions: AtomicUsize,
    epoch: Instant,
    times: Times,
    shut_down: AtomicBool,
    pub(crate) settings: TableSettings,
    sweeper: Periodic,
    /// No session can end by time before this (ms since the epoch), as of the last full pass.
    next_end: AtomicU64,
    /// When an opening request last scanned a full table (ms since the epoch; 0: never).
    last_full_scan: AtomicU64,
    evict_cursor: AtomicUsize,
    per_principal: Option<KeyCounts<crate::info::Principal>>,
    per_client: Option<KeyCounts<ClientKey>>,
}

impl<B: Backend> Drop for Table<B> {
    /// The sweeper holds only a weak reference; wake it so that it ends now rather than at
    /// its next tick.
    fn drop(&mut self) {
        self.sweeper.stop();
    }
}

impl<B: Backend> Table<B> {
    pub(crate) fn new(settings: TableSettings) -> Arc<Self> {
        let epoch = Instant::now();
        let times = Times {
            idle_ms: settings.idle_ms,
            lifetime_ms: settings.lifetime_ms,
            // The wall clock at the epoch: table times turn into wall times (and back) with
            // it, which is how a session's creation, kept in its record, counts on every node.
            epoch_wall_ms: time::wall_ms(),
        };
        Arc::new(Self {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(HashTable::new())))
                .collect(),
            hasher: Hasher::default(),
            count: AtomicUsize::new(0),
            max_sessions: AtomicUsize::new(settings.max_sessions),
            epoch,
            times,
            shut_down: AtomicBool::new(false),
            sweeper: Periodic::default(),
            next_end: AtomicU64::new(0),
            last_full_scan: AtomicU64::new(0),
            evict_cursor: AtomicUsize::new(0),
            per_principal: settings.max_per_principal.map(|_| KeyCounts::new()),
            per_client: settings.max_per_client.map(|_| KeyCounts::new()),
            settings,
        })
    }

    /// Milliseconds since the table was created.
    pub(crate) fn now(&self) -> u64 {
        time::elapsed_ms(self.epoch)
    }

    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The wall clock now, in ms since the Unix epoch, as this table's clock tells it (so that
    /// it moves with tokio's paused clock in tests): the wall clock read once when the table
    /// came into being plus the monotonic time since. After a clock step or a suspended host
    /// it drifts from the system's wall clock; session ages across nodes (creation times in
    /// records) are as good as the nodes' clocks agree.
    pub(crate) fn wall_now_ms(&self) -> u64 {
        self.now().saturating_add(self.times.epoch_wall_ms)
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    fn shard(&self, hash: u64) -> &Shard<B> {
        &self.shards[(hash >> SHARD_SHIFT) as usize & (SHARDS - 1)]
    }

    /// Sessions in the table (ended ones not yet reclaimed included).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub(crate) fn max_sessions(&self) -> usize {
        self.max_sessions.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_sessions(&self, max: usize) {
        self.max_sessions.store(max, Ordering::Relaxed);
        self.settings.metrics.limit(max);
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }

    /// Routes a request to session `id`: returns its entry, already counted in flight, or
    /// `None` if it is unknown, has ended (then it is closed on the way) or is refused by
    /// `accept` (a foreign principal, say; a refused request does not refresh the session).
    pub(crate) fn acquire(
        &self,
        id: &str,
        accept: impl FnOnce(&DynEntry<B>) -> bool,
    ) -> Option<Arc<DynEntry<B>>> {
        self.find(id, |entry, now| {
            accept(entry).then(|| {
                entry.begin(now);
                Arc::clone(entry)
            })
        })
    }

    /// Looks a session up without counting a request; `None` if unknown or ended.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<DynEntry<B>>> {
        self.find(id, |entry, _| Some(Arc::clone(entry)))
    }

    /// Whether an id is in the table (live, or ended and not yet reclaimed).
    pub(crate) fn contains_key(&self, id: &str) -> bool {
        let hash = self.hash(id);
        self.shard(hash)
            .read()
            .find(hash, |e| e.info.id().as_str() == id)
            .is_some()
    }

    /// Runs `live` on session `id` under its shard's read lock if it is live; a session that
    /// has ended by time is closed instead (expiry does not wait for the sweeper).
    fn find<T>(
        &self,
        id: &str,
        live: impl FnOnce(&Arc<DynEntry<B>>, u64) -> Option<T>,
    ) -> Option<T> {
        let now = self.now();
        let hash = self.hash(id);
        let shard = self.shard(hash);
        {
            let table = shard.read();
            let entry = table.find(hash, |e| e.info.id().as_str() == id)?;
            if entry.ended(now, &self.times).is_none() {
                return live(entry, now);
            }
        }
        self.remove_if(id, |e| {
            e.ended(self.now(), &self.times).map(Close::by_reason)
        });
        None
    }

    /// Removes `id` and closes it, if `why` gives a close for it; returns that close.
    fn remove_if(
        &self,
        id: &str,
        why: impl FnOnce(&DynEntry<B>) -> Option<Close>,
    ) -> Option<Close> {
        let (entry, close) = self.take_if(id, why)?;
        self.released([(entry, close)]);
        Some(close)
    }

    /// Removes `id` from the table and marks it closed, if `why` gives a close for it; the
    /// caller settles it with [`released`](Self::released) (or, for an eviction, hands its
    /// place over).
    fn take_if(
        &self,
        id: &str,
        why: impl FnOnce(&DynEntry<B>) -> Option<Close>,
    ) -> Option<(Arc<DynEntry<B>>, Close)> {
        let hash = self.hash(id);
        let mut table = self.shard(hash).write();
        let Ok(found) = table.find_entry(hash, |e| e.info.id().as_str() == id) else {
            return None;
        };
        let close = why(found.get())?;
        let (entry, _) = found.remove();
        entry.mark_closed();
        Some((entry, close))
    }

    /// Closes `id` for `reason` (as far as the reason reaches); `false` if it was not there,
    /// or had ended by time already (it is then closed as such).
    pub(crate) fn close(&self, id: &str, reason: CloseReason) -> bool {
        let closed = self.remove_if(id, |e| {
            Some(Close::by_reason(
                e.ended(self.now(), &self.times).unwrap_or(reason),
            ))
        });
        closed.is_some_and(|close| close.reason == reason)
    }

    /// Closes `entry` with `close` if the table still holds that very entry.
    pub(crate) fn close_entry<S: ?Sized>(&self, entry: &Entry<B, S>, close: Close) -> bool {
        let id = entry.info.id().as_str();
        let at = std::ptr::from_ref(entry).cast::<()>();
        self.remove_if(id, |e| {
            std::ptr::eq(std::ptr::from_ref(e).cast::<()>(), at).then_some(close)
        })
        .is_some()
    }

    /// Closes this node's copy of `id`, if it is live here: another node closed it for good,
    /// or its record is gone.
    pub(crate) fn close_copy(&self, id: &SessionId, reason: CloseReason) -> bool {
        self.get(id.as_str())
            .is_some_and(|entry| self.close_entry(&entry, Close::this_copy(reason)))
    }

    /// Stores a freshly opened session and takes over its reservation. Refused, leaving
    /// nothing stored, if the id is taken or the layer has shut down. The shutdown check runs
    /// under the shard's write lock, which `shutdown` takes after raising its flag: a session
    /// stored here is therefore either seen (and closed) by `shutdown`, or refused here; never
    /// closed after its id was refused to the client.
    pub(crate) fn commit(
        &self,
        entry: &Arc<DynEntry<B>>,
        mut reservation: Reservation<B>,
    ) -> Result<(), Refusal> {
        let id = entry.info.id().as_str();
        let hash = self.hash(id);
        let mut table = self.shard(hash).write();
        if self.is_shut_down() {
            return Err(Refusal::ShutDown);
        }
        match table.entry(
            hash,
            |e| e.info.id().as_str() == id,
            |e| self.hash(e.info.id().as_str()),
        ) {
            TableEntry::Occupied(_) => return Err(Refusal::Collision),
            TableEntry::Vacant(vacant) => {
                vacant.insert(Arc::clone(entry));
            }
        }
        // The place and the key counts now belong to the stored session; closing gives them back.
        reservation.committed = true;
        self.settings.metrics.stored();
        // A restored session may end sooner than a new one would (its lifetime counts from
        // its creation elsewhere): the full-table reclaim must not skip it.
        let now = self.now();
        self.next_end.fetch_min(
            entry.ends_no_sooner_than(now, &self.times),
            Ordering::AcqRel,
        );
        Ok(())
    }

    /// Refuses new sessions from now on and closes every live one.
    pub(crate) fn shutdown(&self) -> usize {
        self.shut_down.store(true, Ordering::SeqCst);
        self.sweeper.stop();
        let mut closed = Vec::new();
        for shard in self.shards.iter() {
            let drained: Vec<_> = {
                let mut table = shard.write();
                let drained = table.drain().inspect(|entry| entry.mark_closed()).collect();
                self.shrink(&mut table);
                drained
            };
            closed.extend(
                drained
                    .into_iter()
                    .map(|entry| (entry, Close::by_reason(CloseReason::Shutdown))),
            );
        }
        self.released(closed)
    }

    /// Closes every session for which `pick` returns `true`, with `reason`. `pick` runs with
    /// no lock held, so it may call back into the table.
    pub(crate) fn close_where(
        &self,
        mut pick: impl FnMut(&SessionInfo) -> bool,
        reason: CloseReason,
    ) -> usize {
        let mut n = 0;
        for shard in self.shards.iter() {
            let entries: Vec<Arc<DynEntry<B>>> = shard.read().iter().cloned().collect();
            for entry in entries {
                if pick(&entry.info) && self.close_entry(&entry, Close::by_reason(reason)) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Runs `f` on every session, shard by shard, under each shard's read lock.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&DynEntry<B>, u64)) {
        let now = self.now();
        for shard in self.shards.iter() {
            for entry in shard.read().iter() {
                f(entry, now);
            }
        }
    }

    /// The ids of the sessions used since `since` (table ms) or with a request or stream open.
    pub(crate) fn used_since(&self, since: u64) -> Vec<SessionId> {
        let mut ids = Vec::new();
        self.for_each(|entry, _| {
            if entry.used_since(since) {
                ids.push(entry.info.id().clone());
            }
        });
        ids
    }

    /// Runs `on_open` for a freshly committed session. If the session was closed meanwhile
    /// (a racing `shutdown`, say), its `on_close` runs here, after `on_open`: the two hooks
    /// always pair up and come in order (see the hooks module).
    pub(crate) fn announce<S: ?Sized>(&self, entry: &Entry<B, S>) {
        tracing::debug!(session = %entry.info.id().redacted(), "session opened");
        if let Some(hook) = &self.settings.hooks.on_open {
            run_guarded("on_open", entry.info.id(), || hook(&entry.info));
        }
        if let Err(reason) = entry.hooks.opened() {
            self.run_on_close(entry, reason);
        }
    }

    fn run_on_close<S: ?Sized>(&self, entry: &Entry<B, S>, reason: CloseReason) {
        if let Some(hook) = &self.settings.hooks.on_close {
            run_guarded("on_close", entry.info.id(), || hook(&entry.info, reason));
        }
    }

    /// Gives memory back after a wave of sessions is gone; hash tables never shrink alone.
    fn shrink(&self, table: &mut HashTable<Arc<DynEntry<B>>>) {
        if table.capacity() > 64 && table.len() * 4 < table.capacity() {
            table.shrink_to_fit(|e| self.hash(e.info.id().as_str()));
        }
    }

    /// Accounts for entries removed from the table and already marked closed: gives back their
    /// places, runs the close hooks and tells the backend (outside every lock: a hook may call
    /// back into the table), and frees them in address order (freeing a million entries in
    /// hash order is mostly cache misses).
    pub(crate) fn released(
        &self,
        closed: impl IntoIterator<Item = (Arc<DynEntry<B>>, Close)>,
    ) -> usize {
        self.settle(closed.into_iter().collect(), 0)
    }

    /// [`released`](Self::released), keeping `kept` of the places counted (handed to a caller).
    fn settle(&self, mut closed: Vec<(Arc<DynEntry<B>>, Close)>, kept: usize) -> usize {
        let n = closed.len();
        if n == 0 {
            return 0;
        }
        self.count.fetch_sub(n - kept, Ordering::AcqRel);
        // One pass in address order: the hook handshake and the final drop of each entry touch
        // memory next to the previous one's.
        if n > 1 {
            closed.sort_unstable_by_key(|(entry, _)| Arc::as_ptr(entry).cast::<()>() as usize);
        }
        let keys = self.per_principal.is_some() || self.per_client.is_some();
        let now = self.now();
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        // Without an `on_close` hook there is nothing to pair: `announce` finds the state
        // untouched and runs no close.
        let hooks = self.settings.hooks.on_close.is_some();
        for (entry, close) in closed {
            if keys {
                self.release_keys(entry.info.principal(), entry.client.as_deref());
            }
            if debug {
                tracing::debug!(session = %entry.info.id().redacted(), reason = %close.reason, "session closed");
            }
            let age_ms = entry.age(now, &self.times);
            self.settings
                .metrics
                .closed(close.reason, age_ms, entry.protocol);
            if hooks && entry.hooks.closed(close.reason) {
                self.run_on_close(&entry, close.reason);
            }
            let unused_for = Duration::from_millis(now.saturating_sub(entry.last_request()));
            entry
                .backend
                .closed(&entry.info, close.reason, close.scope, unused_for);
        }
        n
    }
}
