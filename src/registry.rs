//! The live-session table.
//!
//! Sessions live in [`SHARDS`] shards, each a read-write lock over a hashbrown `HashTable` of
//! reference-counted [`Entry`]s keyed by the id the entry itself holds. Design choices, and
//! why:
//!
//! - **Lookups never hold a lock across an `.await`.** A request takes its shard's read lock
//!   only long enough to check expiry, count itself in flight and clone the entry's `Arc`.
//!   Counting itself in flight *under* that lock is what makes "expiry racing a new request"
//!   safe: expiry removes an entry under the shard's write lock and only if nothing is in
//!   flight, so it can never expire a session that a request has already been routed to.
//! - **Our own shards rather than a concurrent map crate.** Sweeping, eviction and listing
//!   work one shard at a time: the sweeper holds one write lock for a few thousand entries
//!   (well under a millisecond at 1M sessions) and yields to the runtime between shards, and
//!   eviction samples a few entries of a few shards instead of scanning the table. The id is
//!   stored once, inside the entry, not again as a map key.
//! - **foldhash instead of SipHash.** Ids are minted by the server from a CSPRNG, so an
//!   attacker cannot choose keys that land in one bucket; lookups of attacker-chosen ids never
//!   insert. The hasher is randomly seeded per table. The shard is taken from hash bits 49–56,
//!   which hashbrown uses neither for the bucket index (low bits) nor for its control bytes
//!   (top 7 bits).
//! - **Type-erased services.** The table stores `Arc<Entry<dyn Slot>>` (one allocation holding
//!   the bookkeeping, the per-session service and its state), so the
//!   [`Sessions`](crate::Sessions) handle can exist before the layer knows the service type.
//! - **Time is a millisecond counter** from the table's creation, read from
//!   `tokio::time::Instant`, so tests can pause and advance the clock.
//! - **A full table looks for expired sessions only when one can exist.** Every full pass over
//!   the table (a sweep) leaves a lower bound of the earliest time any session can expire; an
//!   open that finds the table full reclaims expired sessions only past that time, and then at
//!   most once a second. A table full of live sessions therefore costs an open O(1), not a scan.

use std::any::Any;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{ClientKey, Config, EvictBy};
use crate::hooks::{CloseReason, reason_code, reason_of, run_guarded};
use crate::id::SessionId;
use crate::info::{Principal, SessionInfo};
use crate::node::Node;

/// Number of shards in the session table (a power of two).
pub(crate) const SHARDS: usize = 256;
/// Hash bits below the top 7 (hashbrown's control bytes) pick the shard.
const SHARD_SHIFT: u32 = 49;
/// Least time between two scans of a full table for expired sessions.
const FULL_SCAN_INTERVAL_MS: u64 = 1_000;
/// Shards looked at for one eviction, and entries looked at in each.
const EVICT_SAMPLE_SHARDS: usize = 4;
const EVICT_SAMPLE_PER_SHARD: usize = 4;
/// Samples an open tries before it gives up evicting (another open may take the same victim).
const EVICT_ATTEMPTS: usize = 3;
/// Most expired sessions the background sweeper removes and frees in one step (one shard
/// lock hold), between two yields to the runtime.
pub(crate) const SWEEP_STEP: usize = 128;

type Hasher = foldhash::fast::RandomState;

/// A session's service and typed state, behind one vtable.
pub(crate) trait Slot: Send + Sync + 'static {
    fn service(&self) -> &dyn Any;
    fn state(&self) -> &dyn Any;
}

pub(crate) struct Stored<S, T> {
    pub(crate) service: S,
    pub(crate) state: T,
}

impl<S: Send + Sync + 'static, T: Send + Sync + 'static> Slot for Stored<S, T> {
    fn service(&self) -> &dyn Any {
        &self.service
    }

    fn state(&self) -> &dyn Any {
        &self.state
    }
}

/// The `on_open`/`on_close` handshake of an entry (see [`Registry::announce`]).
const HOOKS_COMMITTING: u8 = 0;
const HOOKS_OPEN: u8 = 1;
/// `HOOKS_CLOSED_EARLY + reason`: closed before `on_open` finished; the opener runs `on_close`.
const HOOKS_CLOSED_EARLY: u8 = 2;

/// Bookkeeping for one live session, followed by its service and state.
///
/// `repr(C)` keeps the fields every lookup and every sweep reads (`last_seen`, `in_flight`,
/// `closed`) first, on the cache line of the `Arc`'s reference counts, so that checking a
/// session costs one cache miss, not two.
#[repr(C)]
pub(crate) struct Entry<T: ?Sized> {
    /// When the session was last used: a request starting or a response ending.
    last_seen: AtomicU64,
    /// Requests routed to the session whose response (body included) has not finished.
    in_flight: AtomicU32,
    closed: AtomicBool,
    hooks: AtomicU8,
    /// The close needs no forwarding from here: it came from the bus (another node closed the
    /// session for good), or its closer forwards it itself. (In what was padding: no memory.)
    forwarded: AtomicBool,
    /// When the session's last request started.
    last_request: AtomicU64,
    /// Created on first need, by a response body waiting for more data.
    close_notify: OnceLock<Arc<Notify>>,
    pub(crate) info: SessionInfo,
    /// The table's store and bus, for [`Session::data`](crate::Session::data) and
    /// [`Session::publish`](crate::Session::publish).
    pub(crate) node: Arc<Node>,
    /// The client key the session counts against, when a per-client limit is set (boxed: most
    /// tables have none, and it would double the size of this field).
    client: Option<Box<ClientKey>>,
    pub(crate) slot: T,
}

pub(crate) type DynEntry = Entry<dyn Slot>;

impl<T> Entry<T> {
    /// A new entry, counted as one request in flight (the opening request).
    pub(crate) fn new(
        info: SessionInfo,
        node: Arc<Node>,
        client: Option<ClientKey>,
        slot: T,
        now: u64,
    ) -> Self {
        Self {
            info,
            node,
            forwarded: AtomicBool::new(false),
            client: client.map(Box::new),
            last_seen: AtomicU64::new(now),
            last_request: AtomicU64::new(now),
            in_flight: AtomicU32::new(1),
            closed: AtomicBool::new(false),
            hooks: AtomicU8::new(HOOKS_COMMITTING),
            close_notify: OnceLock::new(),
            slot,
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
        // Store-buffering handshake with `SessionGuard::poll_closed`, which initialises the
        // `OnceLock` and then loads `closed`. Without a SeqCst fence on each side, the memory
        // model lets both loads miss the other side's store (observable on weakly ordered
        // CPUs such as AArch64): the waiting body would never be woken. With both fences, at
        // least one side sees the other: either this load finds the `Notify`, or the body's
        // load finds `closed`.
        fence(Ordering::SeqCst);
        if let Some(notify) = self.close_notify.get() {
            notify.notify_waiters();
        }
    }

    pub(crate) fn close_notify(&self) -> Arc<Notify> {
        self.close_notify.get_or_init(Default::default).clone()
    }

    /// Why the session has ended by time, if it has.
    fn ended(&self, now: u64, config: &Config) -> Option<CloseReason> {
        if config.lifetime_ms != 0 && self.age(now, config) >= config.lifetime_ms {
            return Some(CloseReason::LifetimeEnded);
        }
        let idle = config.idle_ms != 0
            && self.in_flight.load(Ordering::Acquire) == 0
            && now.saturating_sub(self.last_seen.load(Ordering::Acquire)) >= config.idle_ms;
        idle.then_some(CloseReason::Expired)
    }

    /// The earliest time this session can end by time (a lower bound, given `now`).
    fn ends_no_sooner_than(&self, now: u64, config: &Config) -> u64 {
        let mut at = u64::MAX;
        if config.lifetime_ms != 0 {
            // The table time of the session's creation plus its lifetime; creation is a wall
            // clock time (a restored session may predate this table), so this may be past.
            at = (self.info.created_ms().saturating_add(config.lifetime_ms))
                .saturating_sub(config.epoch_wall_ms);
        }
        if config.idle_ms != 0 {
            // A busy session ends its requests at `now` at the earliest.
            let base = if self.in_flight.load(Ordering::Acquire) == 0 {
                self.last_seen.load(Ordering::Acquire)
            } else {
                now
            };
            at = at.min(base.saturating_add(config.idle_ms));
        }
        at
    }

    /// How old the session is at table time `now`, in ms: from its creation (on whichever node
    /// opened it; the record keeps that time), not from when this table got it. There is no
    /// separate "opened" stamp in the entry: the creation time in [`SessionInfo`] is it.
    fn age(&self, now: u64, config: &Config) -> u64 {
        now.saturating_add(config.epoch_wall_ms)
            .saturating_sub(self.info.created_ms())
    }

    /// Whether a request or stream is open, or the session was used at or after `since`.
    fn used_since(&self, since: u64) -> bool {
        self.in_flight.load(Ordering::Acquire) != 0
            || self.last_seen.load(Ordering::Acquire) >= since
    }

    fn idle_since(&self) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.last_seen.load(Ordering::Acquire))
    }

    /// Counts a request in flight and stamps its start as the session's last use.
    pub(crate) fn begin(&self, now: u64) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_seen.fetch_max(now, Ordering::AcqRel);
        // Only eviction reads it, as a ranking: a plain store is enough.
        self.last_request.store(now, Ordering::Relaxed);
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

/// One shard, on its own cache lines so that shards do not share lock words.
#[repr(align(128))]
struct Shard(RwLock<HashTable<Arc<DynEntry>>>);

impl Shard {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashTable<Arc<DynEntry>>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashTable<Arc<DynEntry>>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sessions held per principal or per client, for the per-key limits.
struct KeyCounts<K>(Mutex<HashMap<K, usize, Hasher>>);

impl<K: std::hash::Hash + Eq + Clone> KeyCounts<K> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::default()))
    }

    fn try_add(&self, key: &K, max: usize) -> bool {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn remove(&self, key: &K) {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(key);
            }
        }
    }
}

/// Why no slot for a new session could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ShutDown,
    Full,
    /// The principal or client holds its most sessions.
    KeyLimit,
    /// The minted id is taken (a generator that repeats itself).
    Collision,
}

/// A counted slot for a session that is being opened; given back on drop unless committed.
pub(crate) struct Reservation {
    registry: Arc<Registry>,
    principal: Option<Principal>,
    client: Option<ClientKey>,
    committed: bool,
}

impl Reservation {
    pub(crate) fn client(&self) -> Option<&ClientKey> {
        self.client.as_ref()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed {
            self.registry.count.fetch_sub(1, Ordering::AcqRel);
            self.registry
                .release_keys(self.principal.as_ref(), self.client.as_ref());
        }
    }
}

/// Whether the sweeper task runs, and how to stop it.
#[derive(Default)]
pub(crate) struct SweeperState {
    pub(crate) started: AtomicBool,
    pub(crate) stop: Arc<Notify>,
    pub(crate) stopped: Arc<AtomicBool>,
}

impl SweeperState {
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
    }
}

/// One session table with its frozen settings.
pub(crate) struct Registry {
    shards: Box<[Shard]>,
    hasher: Hasher,
    /// Live sessions plus reserved slots.
    count: AtomicUsize,
    max_sessions: AtomicUsize,
    epoch: Instant,
    shut_down: AtomicBool,
    pub(crate) config: Config,
    pub(crate) sweeper: SweeperState,
    node: Arc<Node>,
    /// Whether the table has a shared store (checked on every request: kept inline here).
    pub(crate) shared: bool,
    /// No session can end by time before this (ms since the epoch), as of the last full pass.
    next_end: AtomicU64,
    /// When an opening request last scanned a full table (ms since the epoch; 0: never).
    last_full_scan: AtomicU64,
    evict_cursor: AtomicUsize,
    /// Bytes held by body peeks right now.
    peeking: AtomicUsize,
    per_principal: Option<KeyCounts<Principal>>,
    per_client: Option<KeyCounts<ClientKey>>,
}

impl Drop for Registry {
    /// The sweeper holds only a weak reference; wake it so that it ends now rather than at
    /// its next tick.
    fn drop(&mut self) {
        self.sweeper.stop();
    }
}

impl Registry {
    pub(crate) fn new(mut config: Config) -> Arc<Self> {
        let epoch = Instant::now();
        // The wall clock at the epoch: table times turn into wall times (and back) with it,
        // which is how a session's creation, kept in its record, counts on every node.
        config.epoch_wall_ms = crate::info::wall_ms();
        Arc::new_cyclic(|registry| Self {
            node: Arc::new(Node::new(&config, registry.clone())),
            shared: config.store.is_some(),
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(HashTable::new())))
                .collect(),
            hasher: Hasher::default(),
            count: AtomicUsize::new(0),
            max_sessions: AtomicUsize::new(config.max_sessions),
            epoch,
            shut_down: AtomicBool::new(false),
            sweeper: SweeperState::default(),
            next_end: AtomicU64::new(0),
            last_full_scan: AtomicU64::new(0),
            evict_cursor: AtomicUsize::new(0),
            peeking: AtomicUsize::new(0),
            per_principal: config.max_per_principal.map(|_| KeyCounts::new()),
            per_client: config.max_per_client.map(|_| KeyCounts::new()),
            config,
        })
    }

    /// The table's store and bus.
    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Closes `id` for `reason` on word from the bus: another node closed it for good.
    pub(crate) fn close_from_bus(&self, id: &SessionId, reason: CloseReason) {
        if let Some(entry) = self.get(id.as_str()) {
            entry.forwarded.store(true, Ordering::Release);
            self.close_entry(&entry, reason);
        }
    }

    /// Closes `entry` here only: the caller deletes its record and tells the other nodes.
    pub(crate) fn close_here(&self, entry: &Arc<DynEntry>, reason: CloseReason) -> bool {
        entry.forwarded.store(true, Ordering::Release);
        self.close_entry(entry, reason)
    }

    /// The ids of the sessions used since `since` (table ms) or with a request or stream open.
    pub(crate) fn used_since(&self, since: u64) -> Vec<SessionId> {
        let mut ids = Vec::new();
        for shard in self.shards.iter() {
            ids.extend(
                shard
                    .read()
                    .iter()
                    .filter(|entry| entry.used_since(since))
                    .map(|entry| entry.info.id().clone()),
            );
        }
        ids
    }

    /// The wall clock now, in ms since the Unix epoch, as this table's clock tells it (so that
    /// it moves with tokio's paused clock in tests): the wall clock read once when the table
    /// came into being plus the monotonic time since. After a clock step or a suspended host
    /// it drifts from the system's wall clock; session ages across nodes (creation times in
    /// records) are as good as the nodes' clocks agree.
    pub(crate) fn wall_now_ms(&self) -> u64 {
        self.now().saturating_add(self.config.epoch_wall_ms)
    }

    /// Milliseconds since the table was created.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> SHARD_SHIFT) as usize & (SHARDS - 1)]
    }

    /// Sessions in the table (expired ones not yet reclaimed included).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub(crate) fn max_sessions(&self) -> usize {
        self.max_sessions.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_sessions(&self, max: usize) {
        self.max_sessions.store(max, Ordering::Relaxed);
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
        accept: impl FnOnce(&DynEntry) -> bool,
    ) -> Option<Arc<DynEntry>> {
        self.find(id, |entry, now| {
            accept(entry).then(|| {
                entry.begin(now);
                Arc::clone(entry)
            })
        })
    }

    /// Looks a session up without counting a request; `None` if unknown or ended.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<DynEntry>> {
        self.find(id, |entry, _| Some(Arc::clone(entry)))
    }

    /// Runs `live` on session `id` under its shard's read lock if it is live; a session that
    /// has ended by time is closed instead (expiry does not wait for the sweeper).
    fn find<T>(&self, id: &str, live: impl FnOnce(&Arc<DynEntry>, u64) -> Option<T>) -> Option<T> {
        let now = self.now();
        let hash = self.hash(id);
        let shard = self.shard(hash);
        {
            let table = shard.read();
            let entry = table.find(hash, |e| e.info.id().as_str() == id)?;
            if entry.ended(now, &self.config).is_none() {
                return live(entry, now);
            }
        }
        self.remove_if(id, |e| e.ended(self.now(), &self.config));
        None
    }

    /// Removes `id` and closes it, if `why` gives a reason for it; returns that reason.
    fn remove_if(
        &self,
        id: &str,
        why: impl FnOnce(&DynEntry) -> Option<CloseReason>,
    ) -> Option<CloseReason> {
        let (entry, reason) = self.take_if(id, why)?;
        self.released([(entry, reason)]);
        Some(reason)
    }

    /// Removes `id` from the table and marks it closed, if `why` gives a reason for it; the
    /// caller settles it with [`released`](Self::released) (or, for an eviction, hands its slot
    /// over).
    fn take_if(
        &self,
        id: &str,
        why: impl FnOnce(&DynEntry) -> Option<CloseReason>,
    ) -> Option<(Arc<DynEntry>, CloseReason)> {
        let hash = self.hash(id);
        let mut table = self.shard(hash).write();
        let Ok(found) = table.find_entry(hash, |e| e.info.id().as_str() == id) else {
            return None;
        };
        let reason = why(found.get())?;
        let (entry, _) = found.remove();
        entry.mark_closed();
        Some((entry, reason))
    }

    /// Closes `id` for `reason`; `false` if it was not there, or had ended by time already (it
    /// is then closed as such).
    pub(crate) fn close(&self, id: &str, reason: CloseReason) -> bool {
        let closed = self.remove_if(id, |e| {
            Some(e.ended(self.now(), &self.config).unwrap_or(reason))
        });
        closed == Some(reason)
    }

    /// Closes `entry` for `reason` if the table still holds that very entry.
    fn close_entry(&self, entry: &Arc<DynEntry>, reason: CloseReason) -> bool {
        let id = entry.info.id().as_str();
        self.remove_if(id, |e| {
            std::ptr::addr_eq(e, Arc::as_ptr(entry)).then_some(reason)
        })
        .is_some()
    }

    /// Accounts for entries removed from the table and already marked closed: gives back their
    /// slots, runs the close hooks (outside every lock: a hook may call back into the table)
    /// and frees them in address order (freeing a million entries in hash order is mostly
    /// cache misses; measured 4x faster at 1M sessions).
    pub(crate) fn released(
        &self,
        closed: impl IntoIterator<Item = (Arc<DynEntry>, CloseReason)>,
    ) -> usize {
        self.settle(closed.into_iter().collect(), 0)
    }

    /// [`released`](Self::released), keeping `kept` of the slots counted (handed to a caller).
    fn settle(&self, mut closed: Vec<(Arc<DynEntry>, CloseReason)>, kept: usize) -> usize {
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
        let hook = self.config.on_close.is_some();
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        for (entry, reason) in closed {
            if keys {
                self.release_keys(entry.info.principal(), entry.client.as_deref());
            }
            if debug {
                tracing::debug!(session = %entry.info.id().redacted(), ?reason, "session closed");
            }
            if hook {
                self.on_closed(&entry, reason);
            }
            let forward = !entry.forwarded.load(Ordering::Acquire);
            let unused_for = now.saturating_sub(entry.last_request.load(Ordering::Relaxed));
            self.node.closed(
                entry.info.id(),
                reason,
                forward,
                Duration::from_millis(unused_for),
            );
        }
        n
    }

    /// The `on_close` side of the hook handshake: runs the hook unless `on_open` has not
    /// finished yet, in which case [`announce`](Self::announce) runs it after `on_open`.
    fn on_closed(&self, entry: &DynEntry, reason: CloseReason) {
        let early = HOOKS_CLOSED_EARLY + reason_code(reason);
        if entry
            .hooks
            .compare_exchange(HOOKS_COMMITTING, early, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return;
        }
        self.run_on_close(entry, reason);
    }

    fn run_on_close(&self, entry: &DynEntry, reason: CloseReason) {
        if let Some(hook) = &self.config.on_close {
            run_guarded("on_close", entry.info.id(), || hook(&entry.info, reason));
        }
    }

    /// Runs `on_open` for a freshly committed session. If the session was closed meanwhile
    /// (a racing `shutdown`, say), its `on_close` runs here, after `on_open`: the two hooks
    /// always pair up and come in order.
    pub(crate) fn announce(&self, entry: &DynEntry) {
        tracing::debug!(session = %entry.info.id().redacted(), "session opened");
        if let Some(hook) = &self.config.on_open {
            run_guarded("on_open", entry.info.id(), || hook(&entry.info));
        }
        if let Err(state) = entry.hooks.compare_exchange(
            HOOKS_COMMITTING,
            HOOKS_OPEN,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            self.run_on_close(
                entry,
                reason_of(state - HOOKS_CLOSED_EARLY).unwrap_or(CloseReason::Shutdown),
            );
        }
    }

    fn release_keys(&self, principal: Option<&Principal>, client: Option<&ClientKey>) {
        if let (Some(counts), Some(p)) = (&self.per_principal, principal) {
            counts.remove(p);
        }
        if let (Some(counts), Some(c)) = (&self.per_client, client) {
            counts.remove(c);
        }
    }

    /// Whether an opening request would be refused before any slot is asked for: checked
    /// before its body is read, so that a refused client costs no read.
    pub(crate) fn precheck(&self) -> Result<(), Refusal> {
        if self.is_shut_down() {
            return Err(Refusal::ShutDown);
        }
        let full = self.count.load(Ordering::Acquire) >= self.max_sessions();
        if full && self.config.evict.is_none() && !self.reclaim_when_full() {
            return Err(Refusal::Full);
        }
        Ok(())
    }

    /// Asks for a slot for a new session of `principal` from `client`: checks the per-key
    /// limits, then the table's, reclaiming expired sessions or evicting one if the table is
    /// full and that is configured.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        principal: Option<Principal>,
        client: Option<ClientKey>,
    ) -> Result<Reservation, Refusal> {
        if self.is_shut_down() {
            return Err(Refusal::ShutDown);
        }
        let principal = principal.filter(|_| self.per_principal.is_some());
        let client = client.filter(|_| self.per_client.is_some());
        if let (Some(counts), Some(p), Some(max)) = (
            &self.per_principal,
            &principal,
            self.config.max_per_principal,
        ) && !counts.try_add(p, max)
        {
            return Err(Refusal::KeyLimit);
        }
        if let (Some(counts), Some(c), Some(max)) =
            (&self.per_client, &client, self.config.max_per_client)
            && !counts.try_add(c, max)
        {
            self.release_keys(principal.as_ref(), None);
            return Err(Refusal::KeyLimit);
        }
        // An eviction hands the victim's slot to this open, so a concurrent open cannot take
        // it in between; two opens that pick the same victim retry with another sample.
        let reserved = self.try_count()
            || (self.reclaim_when_full() && self.try_count())
            || self.config.evict.is_some_and(|by| {
                (0..EVICT_ATTEMPTS).any(|_| self.evict_one(by)) || self.try_count()
            });
        if !reserved {
            self.release_keys(principal.as_ref(), client.as_ref());
            return Err(Refusal::Full);
        }
        Ok(Reservation {
            registry: Arc::clone(self),
            principal,
            client,
            committed: false,
        })
    }

    fn try_count(&self) -> bool {
        let max = self.max_sessions();
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Whether a full table may hold a session that has ended by time, and may be scanned now.
    fn may_reclaim(&self) -> bool {
        let now = self.now();
        let last = self.last_full_scan.load(Ordering::Acquire);
        self.config.expires()
            && now >= self.next_end.load(Ordering::Acquire)
            && (last == 0 || now.saturating_sub(last) >= FULL_SCAN_INTERVAL_MS)
    }

    /// Expired sessions nobody asked for still hold slots until the sweeper runs; a full table
    /// reclaims them itself when one can exist (see the module docs).
    fn reclaim_when_full(&self) -> bool {
        if !self.may_reclaim() {
            return false;
        }
        let last = self.last_full_scan.load(Ordering::Acquire);
        let now = self.now().max(1);
        if self
            .last_full_scan
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.sweep() > 0
    }

    /// Closes one session and hands its slot to the caller (which then holds one slot more,
    /// without `try_count`); `false` if no victim could be taken. The victim is picked among a
    /// sample of a few entries of a few non-empty shards: the one whose last request (or
    /// activity, see [`EvictBy`]) is oldest. O(1) per eviction
    /// however many sessions there are (at most all shards are looked at, when nearly all are
    /// empty).
    fn evict_one(&self, by: EvictBy) -> bool {
        let cursor = self.evict_cursor.fetch_add(1, Ordering::Relaxed);
        let mix = self.hasher.hash_one(cursor);
        let mut best: Option<(u64, Arc<DynEntry>)> = None;
        let mut sampled = 0;
        for k in 0..SHARDS {
            // An odd stride from a random start visits every shard once.
            let shard = &self.shards[(mix as usize).wrapping_add(k * 97) & (SHARDS - 1)];
            let table = shard.read();
            if table.is_empty() {
                continue;
            }
            // Start the sample at a random place in the shard.
            let skip = (mix >> 32) as usize % table.len();
            for entry in table
                .iter()
                .skip(skip)
                .chain(table.iter())
                .take(EVICT_SAMPLE_PER_SHARD.min(table.len()))
            {
                let rank = match by {
                    EvictBy::LastRequest => Some(entry.last_request.load(Ordering::Relaxed)),
                    EvictBy::LastActivity => entry.idle_since(),
                };
                if let Some(rank) = rank
                    && best.as_ref().is_none_or(|(b, _)| rank < *b)
                {
                    best = Some((rank, Arc::clone(entry)));
                }
            }
            sampled += 1;
            if sampled == EVICT_SAMPLE_SHARDS && best.is_some() {
                break;
            }
        }
        let Some((_, victim)) = best else {
            return false;
        };
        let still_idle = |e: &DynEntry| by == EvictBy::LastRequest || e.idle_since().is_some();
        let id = victim.info.id().as_str();
        let Some(taken) = self.take_if(id, |e| {
            (std::ptr::addr_eq(e, Arc::as_ptr(&victim)) && still_idle(e))
                .then_some(CloseReason::Evicted)
        }) else {
            return false;
        };
        // The victim's slot stays counted: it is now the caller's.
        self.settle(vec![taken], 1);
        true
    }

    /// Stores a freshly opened session and takes over its reservation. Refused, leaving
    /// nothing stored, if the id is taken or the layer has shut down. The shutdown check runs
    /// under the shard's write lock, which `shutdown` takes after raising its flag: a session
    /// stored here is therefore either seen (and closed) by `shutdown`, or refused here; never
    /// closed after its id was refused to the client.
    pub(crate) fn commit(
        &self,
        entry: &Arc<DynEntry>,
        mut reservation: Reservation,
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
            TableEntry::Vacant(slot) => {
                slot.insert(Arc::clone(entry));
            }
        }
        // The slot and the key counts now belong to the stored session; closing gives them back.
        reservation.committed = true;
        // A restored session may end sooner than a new one would (its lifetime counts from
        // its creation elsewhere): the full-table reclaim must not skip it.
        let now = self.now();
        self.next_end.fetch_min(
            entry.ends_no_sooner_than(now, &self.config),
            Ordering::AcqRel,
        );
        Ok(())
    }

    /// Whether an id is currently in the table (live or not yet reclaimed).
    pub(crate) fn contains_key(&self, id: &str) -> bool {
        let hash = self.hash(id);
        self.shard(hash)
            .read()
            .find(hash, |e| e.info.id().as_str() == id)
            .is_some()
    }

    /// Closes every session that has ended by time, one shard after another; returns how many.
    /// The closed entries of all shards are freed together, in address order (see
    /// [`released`](Self::released)): at 1M sessions that is 4x faster than freeing shard by
    /// shard, because one shard's entries are spread over the whole heap.
    pub(crate) fn sweep(&self) -> usize {
        let now = self.now();
        let mut next_end = u64::MAX;
        let mut closed = Vec::new();
        // A whole shard per lock hold: taking it in steps here made requests wait longer, not
        // shorter (the sweep re-took the lock before a parked reader woke; measured in the
        // expiry bench). The background sweeper yields between its steps instead.
        for i in 0..SHARDS {
            self.take_ended(i, now, &mut next_end, &mut closed, usize::MAX);
        }
        self.set_next_end(next_end, now);
        self.released(closed)
    }

    /// Records the earliest time a session can end, after a full pass that started at `now`.
    pub(crate) fn set_next_end(&self, next_end: u64, now: u64) {
        // Sessions opened during the pass end no sooner than `now` plus the shortest timeout.
        let bound = next_end.min(now.saturating_add(self.config.shortest_timeout_ms()));
        self.next_end.store(bound, Ordering::Release);
    }

    /// Removes up to `max` sessions of shard `i` that have ended by `now`, marks them closed
    /// and adds them to `closed`; lowers `next_end` to the earliest end of those it passed
    /// over. Returns whether it stopped at `max` (the shard may hold more ended sessions).
    pub(crate) fn take_ended(
        &self,
        i: usize,
        now: u64,
        next_end: &mut u64,
        closed: &mut Vec<(Arc<DynEntry>, CloseReason)>,
        max: usize,
    ) -> bool {
        if !self.config.expires() {
            return false;
        }
        // Gathered in a vector of this step's size and appended after the lock is released:
        // growing `closed` (up to a million entries) must not happen under a shard lock.
        let mut ended = Vec::new();
        {
            let mut table = self.shards[i].write();
            let taken = table.extract_if(|entry| match entry.ended(now, &self.config) {
                Some(_) => true,
                None => {
                    *next_end = (*next_end).min(entry.ends_no_sooner_than(now, &self.config));
                    false
                }
            });
            for entry in taken.take(max) {
                entry.mark_closed();
                let reason = entry
                    .ended(now, &self.config)
                    .unwrap_or(CloseReason::Expired);
                ended.push((entry, reason));
            }
            self.shrink(&mut table);
        }
        let more = ended.len() == max;
        closed.append(&mut ended);
        more
    }

    /// Gives memory back after a wave of sessions is gone; hash tables never shrink alone.
    fn shrink(&self, table: &mut HashTable<Arc<DynEntry>>) {
        if table.capacity() > 64 && table.len() * 4 < table.capacity() {
            table.shrink_to_fit(|e| self.hash(e.info.id().as_str()));
        }
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
                    .map(|entry| (entry, CloseReason::Shutdown)),
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
            let entries: Vec<Arc<DynEntry>> = shard.read().iter().cloned().collect();
            for entry in entries {
                if pick(&entry.info) && self.close_entry(&entry, reason) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Runs `f` on every session, shard by shard, under each shard's read lock.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&DynEntry, u64)) {
        let now = self.now();
        for shard in self.shards.iter() {
            for entry in shard.read().iter() {
                f(entry, now);
            }
        }
    }

    /// Holds `n` more bytes of the peek budget; `false` (holding nothing) if over it.
    pub(crate) fn hold_peek(&self, n: usize) -> bool {
        let budget = self.config.peek_budget;
        self.peeking
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= budget)
            })
            .is_ok()
    }

    pub(crate) fn release_peek(&self, n: usize) {
        self.peeking.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What [`Sessions::snapshot`](crate::Sessions::snapshot) reports of one session.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// The session's id, principal and creation time.
    pub info: SessionInfo,
    /// Time since the session was last used (a request starting or a response ending);
    /// zero while a request or response body is in flight.
    pub idle_for: Duration,
    /// Requests whose response (body included) has not finished: open SSE streams count.
    pub in_flight: u32,
}

impl SessionSnapshot {
    pub(crate) fn of(entry: &DynEntry, now: u64) -> Self {
        let in_flight = entry.in_flight.load(Ordering::Acquire);
        let idle_ms = match in_flight {
            0 => now.saturating_sub(entry.last_seen.load(Ordering::Acquire)),
            _ => 0,
        };
        Self {
            info: entry.info.clone(),
            idle_for: Duration::from_millis(idle_ms),
            in_flight,
        }
    }
}
