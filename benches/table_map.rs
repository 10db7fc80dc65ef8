//! The live-session table's map: the crate's own 256 shards over hashbrown's `HashTable`
//! against the same table on DashMap, in one run, on the three paths that depend on the map:
//! lookups, eviction and the sweep.
//!
//! Both maps are miniatures at the same level, holding `Arc<E>` where `E` carries the fields the
//! crate's entry reads on these paths (id, `last_seen`, `in_flight`, `closed`, `last_request`)
//! and ~100 bytes standing for the session's info and payload, so that cache behaviour is
//! realistic:
//!
//! - `OwnShards`: the crate's table (`src/table`): 256 × `std::sync::RwLock<HashTable<Arc<E>>>`,
//!   foldhash, the shard from hash bits 49–56, the id only inside the entry. Lookup, eviction
//!   (4 shards × 4 entries from a random start, odd stride) and the sweep (`extract_if` +
//!   `take(128)` per write-lock hold, `shrink_to_fit` when a shard is mostly empty) as the
//!   crate does them.
//! - `OnDashMap`: `DashMap<Arc<str>, Arc<E>, foldhash>` with 256 shards, through DashMap's
//!   safe API only (the crate forbids `unsafe`, and DashMap's `raw-api` gives hashbrown 0.14
//!   `RawTable`s whose iteration and bucket access are `unsafe`). Lookup by `get`; eviction
//!   samples 16 consecutive entries of `iter()` from a random position (`iter().skip(k)` is
//!   O(k): every skipped entry is visited, its shard guard's `Arc` cloned and dropped); the
//!   sweep is one `retain` (each shard's write lock for the whole shard, no way to stop after
//!   128 removals and give the runtime back), then `shrink_to_fit`. The only safe stepped
//!   alternative, one `iter()` pass collecting the ended ids then `remove_if` in batches of 128,
//!   is measured too.
//!
//! Measured: lookups (acquire + release: read lock, find, idle check, in-flight count, clone)
//! at 1k, 100k and 1M sessions on 1 and 2 threads, each thread walking one fixed random
//! permutation of the ids (as `lookup.rs`); eviction + one insert (the size stays) at 100k and
//! 1M; sweeping 1M sessions of which 99% have ended: total time, the longest write-lock hold
//! and the longest stretch that cannot yield to the runtime.
//!
//! Criterion measures lookups and evictions; then a paired pass runs both maps interleaved
//! (the order alternating) for `TABLE_MAP_ROUNDS` rounds (default 9) and reports medians of
//! the per-round figures and ratios, which are steadier on a shared machine. The sweep, which
//! consumes its table, is measured in the paired pass only (a fresh 1M table per variant and
//! round).
//!
//! Knobs: `TABLE_MAP_SIZES` (lookup sizes, default `1000,100000,1000000`),
//! `TABLE_MAP_EVICT_SIZES` (default `100000,1000000`), `TABLE_MAP_SWEEP_SIZE` (default
//! 1000000; 0 skips the sweep), `TABLE_MAP_ROUNDS`, `TABLE_MAP_PAIRED_COUNT` (lookups per map
//! and round, default 200000), `TABLE_MAP_PAIRED_ONLY=1` (skip criterion). `BENCH_PRIORITY`
//! raises the paired pass's priority as in the other benches. The summary goes to
//! `$BENCH_RESULTS_DIR/8-table-map.md`.

#![forbid(unsafe_code)]

mod common;

use std::hash::BuildHasher;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use common::{
    Rng, criterion, estimate_ns, measuring, prioritize, priority_label, thread_id, write_summary,
};
use criterion::{Criterion, Throughput};
use dashmap::DashMap;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as TableEntry;

type Hasher = foldhash::fast::RandomState;

const SHARDS: usize = 256;
/// The crate's shard bits (49–56); DashMap with 256 shards takes the same ones
/// (`(hash << 7) >> (64 - 8)`).
const SHARD_SHIFT: u32 = 49;
const IDLE_MS: u64 = 30 * 60 * 1000;
/// Table time of the benches (ms): entries last seen at 0 have ended.
const NOW: u64 = 10 * IDLE_MS;
const EVICT_SAMPLE_SHARDS: usize = 4;
const EVICT_SAMPLE_PER_SHARD: usize = 4;
/// DashMap's sample: as many entries as the own shards look at.
const DASH_SAMPLE: usize = EVICT_SAMPLE_SHARDS * EVICT_SAMPLE_PER_SHARD;
const SWEEP_STEP: usize = 128;

// ---------------------------------------------------------------------------------------------
// The entry

/// A session entry, laid out as the crate's (`repr(C)`, the hot atomics first).
#[repr(C)]
struct E {
    last_seen: AtomicU64,
    in_flight: AtomicU32,
    closed: AtomicBool,
    /// The DashMap shard of the id (set in the sweep's tables only): lets `retain`'s closure
    /// see where one shard's write-lock hold ends, at no extra cache miss.
    dash_shard: u8,
    last_request: AtomicU64,
    id: Arc<str>,
    /// Stands for the session's info, backend, client key and payload.
    _payload: [u64; 13],
}

impl E {
    fn new(id: Arc<str>, last_seen: u64, last_request: u64, dash_shard: u8) -> Arc<Self> {
        Arc::new(Self {
            last_seen: AtomicU64::new(last_seen),
            in_flight: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            dash_shard,
            last_request: AtomicU64::new(last_request),
            id,
            _payload: [0; 13],
        })
    }

    /// Whether the session has ended by its idle timeout (the crate's `Entry::ended`).
    fn ended(&self, now: u64) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && now.saturating_sub(self.last_seen.load(Ordering::Acquire)) >= IDLE_MS
    }

    fn ends_no_sooner_than(&self, now: u64) -> u64 {
        let base = if self.in_flight.load(Ordering::Acquire) == 0 {
            self.last_seen.load(Ordering::Acquire)
        } else {
            now
        };
        base.saturating_add(IDLE_MS)
    }

    fn begin(&self, now: u64) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_seen.fetch_max(now, Ordering::AcqRel);
        self.last_request.store(now, Ordering::Relaxed);
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn last_request(&self) -> u64 {
        self.last_request.load(Ordering::Relaxed)
    }

    fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// What one sweep took.
#[derive(Clone, Default)]
struct SweepStats {
    total: Duration,
    /// Every lock hold (each step's write lock; `retain`'s and the `iter` pass's per shard).
    holds: Vec<Duration>,
    /// Every stretch that cannot give the runtime back (a step, a batch, a whole call).
    units: Vec<Duration>,
    removed: usize,
    left: usize,
}

/// The `q` quantile of `v` (nearest rank), in ms.
fn quantile_ms(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[k].as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------------
// (a) The crate's own shards

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// One shard, on its own cache lines.
#[repr(align(128))]
struct Shard(RwLock<HashTable<Arc<E>>>);

struct OwnShards {
    shards: Box<[Shard]>,
    hasher: Hasher,
    evict_cursor: AtomicUsize,
}

impl OwnShards {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(HashTable::new())))
                .collect(),
            hasher: Hasher::default(),
            evict_cursor: AtomicUsize::new(0),
        }
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    fn shard(&self, hash: u64) -> &RwLock<HashTable<Arc<E>>> {
        &self.shards[(hash >> SHARD_SHIFT) as usize & (SHARDS - 1)].0
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| read(&s.0).len()).sum()
    }

    /// Stores an entry unless its id is taken (the crate's `commit`).
    fn insert(&self, entry: Arc<E>) -> bool {
        let hash = self.hash(&entry.id);
        let mut table = write(self.shard(hash));
        match table.entry(
            hash,
            |e| *e.id == *entry.id,
            |e| self.hasher.hash_one(&*e.id),
        ) {
            TableEntry::Occupied(_) => false,
            TableEntry::Vacant(vacant) => {
                vacant.insert(entry);
                true
            }
        }
    }

    /// The crate's `acquire`: under the shard's read lock, find, check expiry, count the
    /// request in flight, clone. (An ended session would be removed here; none is in the
    /// lookup benches.)
    fn acquire(&self, id: &str, now: u64) -> Option<Arc<E>> {
        let hash = self.hash(id);
        let table = read(self.shard(hash));
        let entry = table.find(hash, |e| *e.id == *id)?;
        if entry.ended(now) {
            return None;
        }
        entry.begin(now);
        Some(Arc::clone(entry))
    }

    /// The crate's `evict_one` (ranked by last request): the oldest of 4 entries from a random
    /// place in each of 4 non-empty shards, taken under the write lock if still the same entry.
    /// Returns it, closed, for the caller to drop outside every lock.
    fn evict_one(&self) -> Option<Arc<E>> {
        let cursor = self.evict_cursor.fetch_add(1, Ordering::Relaxed);
        let mix = self.hasher.hash_one(cursor);
        let mut best: Option<(u64, Arc<E>)> = None;
        let mut sampled = 0;
        for k in 0..SHARDS {
            let shard = &self.shards[(mix as usize).wrapping_add(k * 97) & (SHARDS - 1)].0;
            let table = read(shard);
            if table.is_empty() {
                continue;
            }
            let skip = (mix >> 32) as usize % table.len().min(64);
            for entry in table
                .iter()
                .skip(skip)
                .chain(table.iter())
                .take(EVICT_SAMPLE_PER_SHARD.min(table.len()))
            {
                let rank = entry.last_request();
                if best.as_ref().is_none_or(|(b, _)| rank < *b) {
                    best = Some((rank, Arc::clone(entry)));
                }
            }
            sampled += 1;
            if sampled == EVICT_SAMPLE_SHARDS && best.is_some() {
                break;
            }
        }
        let (_, victim) = best?;
        let hash = self.hash(&victim.id);
        let mut table = write(self.shard(hash));
        let found = table
            .find_entry(hash, |e| *e.id == *victim.id)
            .ok()
            .filter(|found| Arc::ptr_eq(found.get(), &victim))?;
        let (entry, _) = found.remove();
        entry.mark_closed();
        Some(entry)
    }

    /// Gives memory back after a wave of removals (the crate's `shrink`).
    fn shrink(&self, table: &mut HashTable<Arc<E>>) {
        if table.capacity() > 64 && table.len() * 4 < table.capacity() {
            table.shrink_to_fit(|e| self.hasher.hash_one(&*e.id));
        }
    }

    /// The crate's `take_ended`: removes up to `max` ended sessions of shard `i` under one
    /// write-lock hold, into `out`; returns whether it stopped at `max`, and the hold.
    fn sweep_step(
        &self,
        i: usize,
        now: u64,
        max: usize,
        next_end: &mut u64,
        out: &mut Vec<Arc<E>>,
    ) -> (bool, Duration) {
        let mut ended = Vec::new();
        let hold;
        {
            let mut table = write(&self.shards[i].0);
            let start = Instant::now();
            let taken = table.extract_if(|e| {
                if e.ended(now) {
                    true
                } else {
                    *next_end = (*next_end).min(e.ends_no_sooner_than(now));
                    false
                }
            });
            for entry in taken.take(max) {
                entry.mark_closed();
                ended.push(entry);
            }
            self.shrink(&mut table);
            hold = start.elapsed();
        }
        let more = ended.len() == max;
        out.append(&mut ended);
        (more, hold)
    }

    /// A full sweep in steps of at most `max` removals (the background sweeper's round; the
    /// removed entries of a step are freed after its lock is released, where the sweeper
    /// would yield). `usize::MAX`: one hold per shard (the crate's `sweep`).
    fn sweep(&self, now: u64, max: usize) -> SweepStats {
        let mut stats = SweepStats::default();
        let mut next_end = u64::MAX;
        let start = Instant::now();
        for i in 0..SHARDS {
            loop {
                let step = Instant::now();
                let mut closed = Vec::new();
                let (more, hold) = self.sweep_step(i, now, max, &mut next_end, &mut closed);
                stats.removed += closed.len();
                drop(closed);
                stats.holds.push(hold);
                stats.units.push(step.elapsed());
                if !more {
                    break;
                }
            }
        }
        stats.total = start.elapsed();
        black_box(next_end);
        stats.left = self.len();
        stats
    }
}

// ---------------------------------------------------------------------------------------------
// (b) The same table on DashMap, safe API only

struct OnDashMap {
    map: DashMap<Arc<str>, Arc<E>, Hasher>,
    /// Live sessions (the crate's table counts them too): `DashMap::len` takes 256 locks.
    count: AtomicUsize,
    evict_cursor: AtomicUsize,
}

impl OnDashMap {
    fn new() -> Self {
        Self {
            map: DashMap::with_hasher_and_shard_amount(Hasher::default(), SHARDS),
            count: AtomicUsize::new(0),
            evict_cursor: AtomicUsize::new(0),
        }
    }

    /// The DashMap shard of `id` (DashMap's `determine_shard`, private without `raw-api`).
    fn shard_of(&self, id: &str) -> u8 {
        ((self.map.hasher().hash_one(id) >> SHARD_SHIFT) & (SHARDS as u64 - 1)) as u8
    }

    fn insert(&self, entry: Arc<E>) -> bool {
        match self.map.entry(Arc::clone(&entry.id)) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(entry);
                self.count.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// `acquire` under the read guard of `get`.
    fn acquire(&self, id: &str, now: u64) -> Option<Arc<E>> {
        let found = self.map.get(id)?;
        let entry = found.value();
        if entry.ended(now) {
            return None;
        }
        entry.begin(now);
        Some(Arc::clone(entry))
    }

    /// Eviction with the safe API: the oldest of 16 consecutive entries of `iter()` from a
    /// random position (`skip` is O(position)), removed if still the same entry.
    fn evict_one(&self) -> Option<Arc<E>> {
        let cursor = self.evict_cursor.fetch_add(1, Ordering::Relaxed);
        let mix = self.map.hasher().hash_one(cursor);
        let len = self.count.load(Ordering::Relaxed).max(1);
        let start = (mix >> 32) as usize % len;
        let mut best: Option<(u64, Arc<E>)> = None;
        for found in self
            .map
            .iter()
            .skip(start)
            .chain(self.map.iter())
            .take(DASH_SAMPLE.min(len))
        {
            let rank = found.value().last_request();
            if best.as_ref().is_none_or(|(b, _)| rank < *b) {
                best = Some((rank, Arc::clone(found.value())));
            }
        }
        let (_, victim) = best?;
        let (_, entry) = self
            .map
            .remove_if(&*victim.id, |_, e| Arc::ptr_eq(e, &victim))?;
        self.count.fetch_sub(1, Ordering::Relaxed);
        entry.mark_closed();
        Some(entry)
    }

    /// The sweep as one `retain` (then `shrink_to_fit`): each shard's write lock is held for
    /// the whole shard and the removed entries are dropped under it; the call cannot stop and
    /// yield. The shard boundaries are seen through `E::dash_shard` (one clock read per shard).
    fn sweep_retain(&self, now: u64) -> SweepStats {
        let mut marks: Vec<Instant> = Vec::with_capacity(SHARDS + 1);
        let mut current: Option<u8> = None;
        let mut removed = 0;
        let mut next_end = u64::MAX;
        let start = Instant::now();
        self.map.retain(|_, e| {
            if current != Some(e.dash_shard) {
                marks.push(Instant::now());
                current = Some(e.dash_shard);
            }
            if e.ended(now) {
                e.mark_closed();
                removed += 1;
                false
            } else {
                next_end = next_end.min(e.ends_no_sooner_than(now));
                true
            }
        });
        let retained = Instant::now();
        marks.push(retained);
        self.map.shrink_to_fit();
        let shrink = retained.elapsed();
        self.count.fetch_sub(removed, Ordering::Relaxed);
        black_box(next_end);
        SweepStats {
            total: start.elapsed(),
            holds: marks.windows(2).map(|w| w[1] - w[0]).collect(),
            units: vec![retained - start, shrink],
            removed,
            left: self.map.len(),
        }
    }

    /// The safe stepped alternative: one `iter()` pass collecting the ended ids (each shard's
    /// read lock held for its part of the pass), then `remove_if` in batches of 128 (a write
    /// lock per removal), a yield possible between batches; then `shrink_to_fit`.
    fn sweep_iter_remove(&self, now: u64) -> SweepStats {
        let mut marks: Vec<Instant> = Vec::with_capacity(SHARDS + 1);
        let mut current: Option<u8> = None;
        let start = Instant::now();
        let ended: Vec<Arc<str>> = self
            .map
            .iter()
            .filter(|found| {
                let e = found.value();
                if current != Some(e.dash_shard) {
                    marks.push(Instant::now());
                    current = Some(e.dash_shard);
                }
                e.ended(now)
            })
            .map(|found| Arc::clone(found.key()))
            .collect();
        let collected = Instant::now();
        marks.push(collected);
        let mut stats = SweepStats {
            holds: marks.windows(2).map(|w| w[1] - w[0]).collect(),
            units: vec![collected - start],
            ..SweepStats::default()
        };
        for batch in ended.chunks(SWEEP_STEP) {
            let step = Instant::now();
            let mut closed = Vec::with_capacity(batch.len());
            for id in batch {
                if let Some((_, entry)) = self.map.remove_if(id, |_, e| e.ended(now)) {
                    entry.mark_closed();
                    closed.push(entry);
                }
            }
            stats.removed += closed.len();
            drop(closed);
            stats.units.push(step.elapsed());
        }
        drop(ended);
        let shrink = Instant::now();
        self.map.shrink_to_fit();
        stats.units.push(shrink.elapsed());
        stats.total = start.elapsed();
        self.count.fetch_sub(stats.removed, Ordering::Relaxed);
        stats.left = self.map.len();
        stats
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A UUID v4 in its 36-character text form.
fn uuid_v4(rng: &mut Rng) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut j = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[j] = b'-';
            j += 1;
        }
        out[j] = HEX[usize::from(b >> 4)];
        out[j + 1] = HEX[usize::from(b & 15)];
        j += 2;
    }
    out
}

fn new_id(rng: &mut Rng) -> Arc<str> {
    let text = uuid_v4(rng);
    Arc::from(std::str::from_utf8(&text).expect("ascii"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Map {
    Own,
    Dash,
}

const MAPS: [Map; 2] = [Map::Own, Map::Dash];

impl Map {
    fn name(self) -> &'static str {
        match self {
            Map::Own => "own_shards",
            Map::Dash => "on_dashmap",
        }
    }
}

struct Fixture {
    own: OwnShards,
    dash: OnDashMap,
    /// The ids in access order (a fixed random permutation), each its own allocation laid out
    /// in that order, as a server's freshly parsed header is.
    order: Vec<Box<str>>,
    cursors: [AtomicUsize; 2],
    epoch: Instant,
    /// `last_request` of entries inserted after evictions (above every initial one).
    tick: AtomicU64,
    rng: std::sync::Mutex<Rng>,
}

impl Fixture {
    fn new(n: usize) -> Self {
        let mut rng = Rng::new(0x7ab1_e0a9 ^ n as u64);
        let ids: Vec<Arc<str>> = (0..n).map(|_| new_id(&mut rng)).collect();
        let own = OwnShards::new();
        let dash = OnDashMap::new();
        let ranks: Vec<u64> = (0..n).map(|_| rng.below(n) as u64).collect();
        // Each map has its own entries and id allocations, allocated in turns, so that both
        // spread over the same memory (filling one map first measurably favoured the other).
        for (id, &rank) in ids.iter().zip(&ranks) {
            assert!(own.insert(E::new(Arc::from(&**id), NOW, rank, 0)));
            assert!(dash.insert(E::new(Arc::from(&**id), NOW, rank, 0)));
        }
        let mut order: Vec<&str> = ids.iter().map(|id| &**id).collect();
        Rng::new(0x5e55_1015).shuffle(&mut order);
        let order = order.into_iter().map(Box::from).collect();
        Self {
            own,
            dash,
            order,
            cursors: [AtomicUsize::new(0), AtomicUsize::new(n / 2)],
            epoch: Instant::now(),
            tick: AtomicU64::new(n as u64),
            rng: std::sync::Mutex::new(rng),
        }
    }

    fn now(&self) -> u64 {
        NOW + self.epoch.elapsed().as_millis() as u64
    }

    fn lookup(&self, map: Map, id: &str, now: u64) {
        let entry = match map {
            Map::Own => self.own.acquire(id, now),
            Map::Dash => self.dash.acquire(id, now),
        }
        .expect("live id");
        black_box(&entry);
        entry.end();
    }

    /// `iters` lookups (acquire + release) split over `threads` threads; the wall time.
    fn lookups(&self, map: Map, threads: usize, iters: u64) -> Duration {
        let n = self.order.len();
        let now = self.now();
        let walk = |t: usize, count: u64| {
            let mut i = self.cursors[t].load(Ordering::Relaxed);
            for _ in 0..count {
                self.lookup(map, &self.order[i], now);
                i += 1;
                if i >= n {
                    i = 0;
                }
            }
            self.cursors[t].store(i, Ordering::Relaxed);
        };
        if threads == 1 {
            let start = Instant::now();
            walk(0, iters);
            return start.elapsed();
        }
        // Wall time from the first thread's start to the last one's end, as each thread
        // reads it (a main thread woken late after the barrier would miss a short run).
        let barrier = Barrier::new(threads);
        let per_thread = iters / threads as u64;
        let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let count = per_thread + if t == 0 { iters % threads as u64 } else { 0 };
                    let (barrier, walk) = (&barrier, &walk);
                    s.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        walk(t, count);
                        (start, Instant::now())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("walker"))
                .collect()
        });
        let first = spans.iter().map(|s| s.0).min().expect("a thread");
        let last = spans.iter().map(|s| s.1).max().expect("a thread");
        last - first
    }

    /// `iters` evictions, each followed by the insert of a new session (the size stays).
    fn evictions(&self, map: Map, iters: u64) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        // The new ids are made outside the timed loop.
        let ids: Vec<Arc<str>> = (0..iters).map(|_| new_id(&mut rng)).collect();
        let start = Instant::now();
        for id in ids {
            let victim = match map {
                Map::Own => self.own.evict_one(),
                Map::Dash => self.dash.evict_one(),
            }
            .expect("a victim");
            drop(victim);
            let rank = self.tick.fetch_add(1, Ordering::Relaxed);
            let entry = E::new(id, NOW, rank, 0);
            let stored = match map {
                Map::Own => self.own.insert(entry),
                Map::Dash => self.dash.insert(entry),
            };
            assert!(stored);
        }
        start.elapsed()
    }
}

/// The sweep's variants.
#[derive(Clone, Copy)]
enum Sweep {
    OwnStepped,
    OwnWholeShards,
    DashRetain,
    DashIterRemove,
}

const SWEEPS: [Sweep; 4] = [
    Sweep::OwnStepped,
    Sweep::OwnWholeShards,
    Sweep::DashRetain,
    Sweep::DashIterRemove,
];

impl Sweep {
    fn label(self) -> &'static str {
        match self {
            Sweep::OwnStepped => "OwnShards, steps of ≤128 (background sweeper)",
            Sweep::OwnWholeShards => "OwnShards, one hold per shard (`sweep()`)",
            Sweep::DashRetain => "OnDashMap, `retain` + `shrink_to_fit`",
            Sweep::DashIterRemove => {
                "OnDashMap, `iter` pass (read locks) + `remove_if` in batches of 128"
            }
        }
    }
}

/// `ids` as sessions, `ended[i]` of them idle past the timeout, in a fresh table; swept once.
fn sweep_once(variant: Sweep, ids: &[Box<str>], ended: &[bool]) -> SweepStats {
    let last_seen = |i: usize| if ended[i] { 0 } else { NOW };
    match variant {
        Sweep::OwnStepped | Sweep::OwnWholeShards => {
            let own = OwnShards::new();
            for (i, id) in ids.iter().enumerate() {
                own.insert(E::new(Arc::from(&**id), last_seen(i), 0, 0));
            }
            let max = match variant {
                Sweep::OwnStepped => SWEEP_STEP,
                _ => usize::MAX,
            };
            own.sweep(NOW, max)
        }
        Sweep::DashRetain | Sweep::DashIterRemove => {
            let dash = OnDashMap::new();
            for (i, id) in ids.iter().enumerate() {
                let shard = dash.shard_of(id);
                dash.insert(E::new(Arc::from(&**id), last_seen(i), 0, shard));
            }
            match variant {
                Sweep::DashRetain => dash.sweep_retain(NOW),
                _ => dash.sweep_iter_remove(NOW),
            }
        }
    }
}

/// `E::dash_shard` is DashMap's shard: its iteration visits shards in order.
fn check_dash_shards() {
    let dash = OnDashMap::new();
    let mut rng = Rng::new(7);
    for _ in 0..20_000 {
        let id = new_id(&mut rng);
        let shard = dash.shard_of(&id);
        dash.insert(E::new(id, NOW, 0, shard));
    }
    let seen: Vec<u8> = dash.map.iter().map(|e| e.value().dash_shard).collect();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "E::dash_shard is not DashMap's shard"
    );
}

// ---------------------------------------------------------------------------------------------
// Paired pass and report

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_sizes(key: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(key)
        .ok()
        .map(|s| {
            s.split(',')
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().parse().expect("a size"))
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Paired figures of one operation: ns per op of each map, per round.
struct Paired {
    op: &'static str,
    n: usize,
    threads: usize,
    group: String,
    own: Vec<f64>,
    dash: Vec<f64>,
}

/// How each map is run in the paired pass.
enum Count {
    /// The same count for both.
    Fixed(u64),
    /// Per map, as many as take about this long (measured on a warm-up run of 16).
    Time(Duration),
}

/// Runs `run(map, count)` for both maps, interleaved (the order alternating), for `rounds`
/// rounds, after one warm-up run each; ns per op of each map, per round.
fn pair(rounds: usize, count: Count, mut run: impl FnMut(Map, u64) -> Duration) -> [Vec<f64>; 2] {
    let counts = MAPS.map(|map| match count {
        Count::Fixed(k) => {
            run(map, k / 4);
            k
        }
        Count::Time(target) => {
            let took = run(map, 16).as_secs_f64() / 16.0;
            ((target.as_secs_f64() / took.max(1e-9)) as u64).clamp(8, 1 << 20)
        }
    });
    let mut out = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in 0..2 {
            let m = (round + k) % 2;
            let took = run(MAPS[m], counts[m]);
            out[m].push(took.as_nanos() as f64 / counts[m] as f64);
        }
    }
    out
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fmt_rate(ns: f64) -> String {
    let r = 1e9 / ns;
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let since = SystemTime::now();
    let full = measuring();
    let sizes = env_sizes(
        "TABLE_MAP_SIZES",
        if full {
            &[1_000, 100_000, 1_000_000]
        } else {
            &[1_000]
        },
    );
    let evict_sizes = env_sizes(
        "TABLE_MAP_EVICT_SIZES",
        if full {
            &[100_000, 1_000_000]
        } else {
            &[1_000]
        },
    );
    let sweep_n = env_usize(
        "TABLE_MAP_SWEEP_SIZE",
        if full { 1_000_000 } else { 10_000 },
    );
    let rounds = env_usize("TABLE_MAP_ROUNDS", if full { 9 } else { 3 }).max(1);
    let count = env_usize("TABLE_MAP_PAIRED_COUNT", if full { 200_000 } else { 2_000 }) as u64;
    let paired_only = std::env::var("TABLE_MAP_PAIRED_ONLY").as_deref() == Ok("1");
    check_dash_shards();

    let mut c: Criterion = criterion();
    let mut all: Vec<usize> = sizes.iter().chain(&evict_sizes).copied().collect();
    all.sort_unstable();
    all.dedup();
    let mut pairs: Vec<Paired> = Vec::new();
    let mut iter_cost = Vec::new();
    let tid = thread_id();
    for &n in &all {
        let fx = Fixture::new(n);
        let do_lookups = sizes.contains(&n);
        let do_evict = evict_sizes.contains(&n);
        // Lookups first (criterion, then paired), then evictions, which replace the ids.
        if do_lookups {
            if !paired_only {
                for threads in [1, 2] {
                    let mut group =
                        c.benchmark_group(format!("table_map_lookup_{threads}t_{}", label(n)));
                    group.throughput(Throughput::Elements(1));
                    for map in MAPS {
                        group.bench_function(map.name(), |b| {
                            b.iter_custom(|iters| fx.lookups(map, threads, iters))
                        });
                    }
                    group.finish();
                }
            }
            let raised = prioritize(tid.as_deref(), true);
            for threads in [1, 2] {
                let [own, dash] = pair(rounds, Count::Fixed(count), |map, k| {
                    fx.lookups(map, threads, k)
                });
                pairs.push(Paired {
                    op: "lookup",
                    n,
                    threads,
                    group: format!("table_map_lookup_{threads}t_{}", label(n)),
                    own,
                    dash,
                });
            }
            if raised {
                prioritize(tid.as_deref(), false);
            }
        }
        if do_evict {
            if !paired_only {
                let mut group = c.benchmark_group(format!("table_map_evict_{}", label(n)));
                group.throughput(Throughput::Elements(1));
                for map in MAPS {
                    group.bench_function(map.name(), |b| {
                        b.iter_custom(|iters| fx.evictions(map, iters))
                    });
                }
                group.finish();
            }
            let raised = prioritize(tid.as_deref(), true);
            let [own, dash] = pair(rounds, Count::Time(Duration::from_millis(60)), |map, k| {
                fx.evictions(map, k)
            });
            pairs.push(Paired {
                op: "evict + insert",
                n,
                threads: 1,
                group: format!("table_map_evict_{}", label(n)),
                own,
                dash,
            });
            // What one skipped entry costs: a full `iter()` pass of each map.
            let start = Instant::now();
            let k = fx.dash.map.iter().count();
            let dash_ns = start.elapsed().as_nanos() as f64 / k as f64;
            let start = Instant::now();
            let k: usize = fx
                .own
                .shards
                .iter()
                .map(|s| read(&s.0).iter().count())
                .sum();
            let own_ns = start.elapsed().as_nanos() as f64 / k as f64;
            iter_cost.push((n, own_ns, dash_ns));
            if raised {
                prioritize(tid.as_deref(), false);
            }
        }
    }

    // The sweep: a fresh table per variant and round, 99% of it ended.
    let mut sweeps: Vec<[SweepStats; SWEEPS.len()]> = Vec::new();
    if sweep_n > 0 {
        let mut rng = Rng::new(0x5eee_5eee);
        let ids: Vec<Box<str>> = (0..sweep_n)
            .map(|_| Box::from(std::str::from_utf8(&uuid_v4(&mut rng)).expect("ascii")))
            .collect();
        let ended: Vec<bool> = (0..sweep_n).map(|_| rng.below(100) != 0).collect();
        let expect = ended.iter().filter(|e| **e).count();
        let raised = prioritize(tid.as_deref(), true);
        for round in 0..rounds {
            let mut row: [SweepStats; SWEEPS.len()] = Default::default();
            for k in 0..SWEEPS.len() {
                let v = (round + k) % SWEEPS.len();
                row[v] = sweep_once(SWEEPS[v], &ids, &ended);
                assert_eq!(row[v].removed, expect, "{}", SWEEPS[v].label());
                assert_eq!(row[v].left, sweep_n - expect);
            }
            sweeps.push(row);
        }
        if raised {
            prioritize(tid.as_deref(), false);
        }
    }

    c.final_summary();
    summarize(since, &pairs, &iter_cost, &sweeps, sweep_n, rounds);
}

fn summarize(
    since: SystemTime,
    pairs: &[Paired],
    iter_cost: &[(usize, f64, f64)],
    sweeps: &[[SweepStats; SWEEPS.len()]],
    sweep_n: usize,
    rounds: usize,
) {
    let mut out = String::new();
    out.push_str("### 8. The table's map: own shards vs DashMap\n\n");
    out.push_str(&format!(
        "Both maps in one run, same ids (UUID v4), same entries. Paired pass: {rounds} rounds, \
         the two maps interleaved (order alternating), threads at {} priority; figures are \
         medians of the per-round values, the ratio the median of the per-round ratios \
         (below 1: the own shards are faster). Criterion's estimates of the same operations \
         beside them. OnDashMap uses DashMap's safe API only (`get`, `entry`, `remove_if`, \
         `retain`, `iter`, `shrink_to_fit`): the crate forbids `unsafe`, and DashMap's `raw-api` \
         shards are hashbrown 0.14 `RawTable`s whose iteration and bucket access are `unsafe`.\n\n",
        priority_label()
    ));
    out.push_str(
        "| operation | sessions | threads | OwnShards | OnDashMap | Own/Dash (paired) | per-round Own/Dash, min–max | criterion OwnShards | criterion OnDashMap | Own/Dash (criterion) |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in pairs {
        let own = median(p.own.clone());
        let dash = median(p.dash.clone());
        let ratios: Vec<f64> = p.own.iter().zip(&p.dash).map(|(o, d)| o / d).collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        let r = median(ratios);
        let c_own = estimate_ns(since, &p.group, Map::Own.name());
        let c_dash = estimate_ns(since, &p.group, Map::Dash.name());
        let cell =
            |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{} ({})", fmt_ns(v), fmt_rate(v)));
        out.push_str(&format!(
            "| {} | {} | {} | {} ({}) | {} ({}) | {r:.2}× | {lo:.2}–{hi:.2} | {} | {} | {} |\n",
            p.op,
            label(p.n),
            p.threads,
            fmt_ns(own),
            fmt_rate(own),
            fmt_ns(dash),
            fmt_rate(dash),
            cell(c_own),
            cell(c_dash),
            c_own
                .zip(c_dash)
                .map_or("n/a".into(), |(o, d)| format!("{:.2}×", o / d)),
        ));
    }
    for (n, own, dash) in iter_cost {
        out.push_str(&format!(
            "\n- one `iter()` step at {}: OwnShards (`HashTable::iter`, under a read guard) {own:.1} ns, \
             DashMap `iter()` {dash:.1} ns (it clones and drops its shard guard's `Arc` per entry); \
             DashMap's eviction skips on average n/2 = {} entries, the own shards' at most 4 × 63 \
             (a start among each sampled shard's first 64 entries)",
            label(*n),
            n / 2,
        ));
    }
    if !sweeps.is_empty() {
        out.push_str(&format!(
            "\n\nSweep of {} sessions, 99% ended: a fresh table per variant and round, {} rounds, \
             medians over the rounds of each round's p99 and maximum (the maxima catch the \
             scheduler's preemptions on a shared machine; the p99 do not). A lock hold blocks the \
             shard; a stretch without a yield holds a runtime worker.\n\n\
             | variant | total | lock hold p50 | lock hold p99 | lock hold max | no-yield stretch p99 | no-yield stretch max | holds | stretches |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            label(sweep_n),
            sweeps.len()
        ));
        let col = |k: usize, f: &dyn Fn(&SweepStats) -> f64| {
            median(sweeps.iter().map(|r| f(&r[k])).collect())
        };
        for (k, variant) in SWEEPS.iter().enumerate() {
            out.push_str(&format!(
                "| {} | {:.1} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {} | {} |\n",
                variant.label(),
                col(k, &|s| ms(s.total)),
                col(k, &|s| quantile_ms(&s.holds, 0.5)),
                col(k, &|s| quantile_ms(&s.holds, 0.99)),
                col(k, &|s| quantile_ms(&s.holds, 1.0)),
                col(k, &|s| quantile_ms(&s.units, 0.99)),
                col(k, &|s| quantile_ms(&s.units, 1.0)),
                sweeps[0][k].holds.len(),
                sweeps[0][k].units.len(),
            ));
        }
        let ratio = |a: usize, b: usize, f: &dyn Fn(&SweepStats) -> f64| {
            median(sweeps.iter().map(|r| f(&r[a]) / f(&r[b])).collect())
        };
        let total = |s: &SweepStats| s.total.as_secs_f64();
        let hold99 = |s: &SweepStats| quantile_ms(&s.holds, 0.99);
        let unit_max = |s: &SweepStats| quantile_ms(&s.units, 1.0);
        out.push_str(&format!(
            "\nRatios (median of per-round ratios): total time, OwnShards stepped / `retain` \
             {:.2}×, OwnShards one hold per shard / `retain` {:.2}×, OwnShards stepped / `iter` + \
             `remove_if` {:.2}×; lock hold p99, OwnShards stepped / `retain` {:.2}×, one hold per \
             shard / `retain` {:.2}×; longest stretch without a yield, OwnShards stepped / \
             `retain` {:.4}×, / `iter` + `remove_if` {:.4}×.\n",
            ratio(0, 2, &total),
            ratio(1, 2, &total),
            ratio(0, 3, &total),
            ratio(0, 2, &hold99),
            ratio(1, 2, &hold99),
            ratio(0, 2, &unit_max),
            ratio(0, 3, &unit_max),
        ));
    }
    write_summary("8-table-map", &out);
}
