//! Admission: the session limit, the per-principal and per-client limits, and what a full
//! table does (reclaim sessions that have ended by time, or evict one).
//!
//! - **A place under the limits is reserved before a session is built** and given back on
//!   drop unless the session is committed, so a failed or abandoned open never leaks one.
//! - **A full table looks for expired sessions only when one can exist.** Every full pass over
//!   the table (a sweep) leaves a lower bound of the earliest time any session can end; an
//!   open that finds the table full reclaims ended sessions only past that time, and then at
//!   most once a second. A table full of live sessions therefore costs an open O(1), not a
//!   scan.
//! - **Eviction samples** a few entries of a few non-empty shards and closes the one ranked
//!   oldest ([`Eviction`]); the evicting open takes over the victim's place, so a concurrent
//!   open cannot take it in between. O(1) per eviction however many sessions there are.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::close::CloseReason;
use crate::info::{ClientKey, Principal};
use crate::sync::lock;
use crate::table::settings::Eviction;
use crate::table::{Backend, Close, DynEntry, Hasher, SHARDS, Table};

/// Least time between two scans of a full table for ended sessions, in ms.
const FULL_SCAN_INTERVAL_MS: u64 = 1_000;
/// Shards looked at for one eviction, and entries looked at in each.
const EVICT_SAMPLE_SHARDS: usize = 4;
const EVICT_SAMPLE_PER_SHARD: usize = 4;
/// Entries of a shard the sample's random start is chosen among (each one skipped is visited).
const EVICT_SKIP_WINDOW: usize = 64;
/// Samples an open tries before it gives up evicting (another open may take the same victim).
const EVICT_ATTEMPTS: usize = 3;

/// Sessions held per principal or per client, for the per-key limits.
pub(super) struct KeyCounts<K>(Mutex<HashMap<K, usize, Hasher>>);

impl<K: std::hash::Hash + Eq + Clone> KeyCounts<K> {
    pub(super) fn new() -> Self {
        Self(Mutex::new(HashMap::default()))
    }

    fn try_add(&self, key: &K, max: usize) -> bool {
        let mut counts = lock(&self.0);
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn remove(&self, key: &K) {
        let mut counts = lock(&self.0);
        if let Some(n) = counts.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(key);
            }
        }
    }
}

/// Why no place for a new session could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ShutDown,
    Full,
    /// The principal or client holds its most sessions.
    KeyLimit,
    /// The minted id is taken (a generator that repeats itself).
    Collision,
}

/// A counted place under the limits for a session that is being opened; given back on drop
/// unless committed.
pub(crate) struct Reservation<B: Backend> {
    pub(super) table: Arc<Table<B>>,
    pub(super) principal: Option<Principal>,
    pub(super) client: Option<ClientKey>,
    pub(super) committed: bool,
    /// Whether another session was evicted to make this place.
    pub(super) evicted: bool,
}

impl<B: Backend> Reservation<B> {
    /// The client key the session will count against, if the table limits clients.
    pub(crate) fn client(&self) -> Option<&ClientKey> {
        self.client.as_ref()
    }

    /// Whether another session was evicted to make this place.
    pub(crate) fn evicted(&self) -> bool {
        self.evicted
    }
}

impl<B: Backend> Drop for Reservation<B> {
    fn drop(&mut self) {
        if !self.committed {
            self.table.count.fetch_sub(1, Ordering::AcqRel);
            self.table
                .release_keys(self.principal.as_ref(), self.client.as_ref());
        }
    }
}

impl<B: Backend> Table<B> {
    pub(super) fn release_keys(&self, principal: Option<&Principal>, client: Option<&ClientKey>) {
        if let (Some(counts), Some(p)) = (&self.per_principal, principal) {
            counts.remove(p);
        }
        if let (Some(counts), Some(c)) = (&self.per_client, client) {
            counts.remove(c);
        }
    }

    /// Whether an opening request would be refused before any place is asked for: checked
    /// before its body is read, so that a refused client costs no read.
    pub(crate) fn precheck(&self) -> Result<(), Refusal> {
        if self.is_shut_down() {
            return Err(Refusal::ShutDown);
        }
        let full = self.count.load(Ordering::Acquire) >= self.max_sessions();
        if full && self.settings.eviction == Eviction::Off && !self.reclaim_when_full() {
            return Err(Refusal::Full);
        }
        Ok(())
    }

    /// Asks for a place for a new session of `principal` from `client`: checks the per-key
    /// limits, then the table's, reclaiming ended sessions or evicting one if the table is
    /// full and that is configured.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        principal: Option<Principal>,
        client: Option<ClientKey>,
    ) -> Result<Reservation<B>, Refusal> {
        if self.is_shut_down() {
            return Err(Refusal::ShutDown);
        }
        let principal = principal.filter(|_| self.per_principal.is_some());
        let client = client.filter(|_| self.per_client.is_some());
        if let (Some(counts), Some(p), Some(max)) = (
            &self.per_principal,
            &principal,
            self.settings.max_per_principal,
        ) && !counts.try_add(p, max)
        {
            return Err(Refusal::KeyLimit);
        }
        if let (Some(counts), Some(c), Some(max)) =
            (&self.per_client, &client, self.settings.max_per_client)
            && !counts.try_add(c, max)
        {
            self.release_keys(principal.as_ref(), None);
            return Err(Refusal::KeyLimit);
        }
        // An eviction hands the victim's place to this open, so a concurrent open cannot take
        // it in between; two opens that pick the same victim retry with another sample.
        let evict = self.settings.eviction;
        let mut evicted = false;
        let reserved = self.try_count()
            || (self.reclaim_when_full() && self.try_count())
            || (evict != Eviction::Off && {
                evicted = (0..EVICT_ATTEMPTS).any(|_| self.evict_one(evict));
                evicted || self.try_count()
            });
        if !reserved {
            self.release_keys(principal.as_ref(), client.as_ref());
            return Err(Refusal::Full);
        }
        Ok(Reservation {
            table: Arc::clone(self),
            principal,
            client,
            committed: false,
            evicted,
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
        self.settings.expires()
            && now >= self.next_end.load(Ordering::Acquire)
            && (last == 0 || now.saturating_sub(last) >= FULL_SCAN_INTERVAL_MS)
    }

    /// Ended sessions nobody asked for still hold places until the sweeper runs; a full table
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

    /// Closes one session and hands its place to the caller (which then holds one place more,
    /// without `try_count`); `false` if no victim could be taken. The victim is the entry
    /// ranked oldest by `by` among a sample of a few entries of a few non-empty shards (at
    /// most all shards are looked at, when nearly all are empty).
    fn evict_one(&self, by: Eviction) -> bool {
        let cursor = self.evict_cursor.fetch_add(1, Ordering::Relaxed);
        let mix = self.hasher.hash_one(cursor);
        let rank = |entry: &DynEntry<B>| match by {
            Eviction::LastActivity => entry.idle_since(),
            _ => Some(entry.last_request()),
        };
        let mut best: Option<(u64, Arc<DynEntry<B>>)> = None;
        let mut sampled = 0;
        for k in 0..SHARDS {
            // An odd stride from a random start visits every shard once.
            let shard = &self.shards[(mix as usize).wrapping_add(k * 97) & (SHARDS - 1)];
            let table = shard.read();
            if table.is_empty() {
                continue;
            }
            // Start the sample at a random place among the shard's first entries: a bounded
            // walk (hash tables are iterated, not indexed), so the cost stays O(1) however
            // large the shard. Which entries come first is unrelated to their age.
            let skip = (mix >> 32) as usize % table.len().min(EVICT_SKIP_WINDOW);
            for entry in table
                .iter()
                .skip(skip)
                .chain(table.iter())
                .take(EVICT_SAMPLE_PER_SHARD.min(table.len()))
            {
                if let Some(rank) = rank(entry)
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
        let id = victim.info.id().as_str();
        let Some(taken) = self.take_if(id, |e| {
            (std::ptr::addr_eq(e, Arc::as_ptr(&victim)) && rank(e).is_some())
                .then_some(Close::by_reason(CloseReason::Evicted))
        }) else {
            return false;
        };
        // The victim's place stays counted: it is now the caller's.
        self.settle(vec![taken], 1);
        true
    }
}
