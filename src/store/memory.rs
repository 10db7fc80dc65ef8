//! [`MemoryStore`]: records in this process's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{SessionRecord, SessionStore, StoreError, StoreFuture};
use crate::id::SessionId;

/// Records of sessions in this process's memory, shared by clones.
///
/// A layer without [`store`](crate::SessionLayer::store) keeps its sessions' data maps in a
/// private `MemoryStore` (no records, nothing survives its process: the behaviour of 0.1).
/// Given to several layers in one process, a `MemoryStore` lets each restore the others'
/// sessions, the same as [`RedisStore`](crate::store::RedisStore) across processes: the tests
/// of the multi-node logic run on it, without a network.
///
/// Times to live follow tokio's clock (so paused-clock tests can expire records); expired
/// records are dropped when next read and by [`purge_expired`](Self::purge_expired).
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    map: Mutex<HashMap<SessionId, Slot>>,
    /// `map.len()`, readable without the lock.
    len: AtomicUsize,
    /// The map's length after the last purge of expired records.
    purged_at: AtomicUsize,
    /// Private to one table without a store: data-map writes create the session's slot.
    upsert: bool,
}

struct Slot {
    record: Option<SessionRecord>,
    data: HashMap<String, String>,
    expires: Option<Instant>,
}

impl Slot {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The private store of a table without a store: data maps only, created on first write.
    pub(crate) fn data_only() -> Self {
        Self {
            inner: Arc::new(Inner {
                map: Mutex::default(),
                len: AtomicUsize::new(0),
                purged_at: AtomicUsize::new(0),
                upsert: true,
            }),
        }
    }

    /// How many sessions have a record or data (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Acquire)
    }

    /// Drops the slot of `id` now (the private store of a table, on close).
    pub(crate) fn remove(&self, id: &SessionId) {
        self.map().remove(id);
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired record; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = Instant::now();
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, slot| slot.live(now));
        before - map.len()
    }

    fn map(&self) -> MapGuard<'_> {
        // A panic while holding the lock cannot leave a map half-updated (every update is one
        // call on it): the data is still good.
        MapGuard {
            map: self.inner.map.lock().unwrap_or_else(|e| e.into_inner()),
            len: &self.inner.len,
        }
    }

    /// Runs `f` on the live slot of `id` (dropping it if expired); a `write` to the private
    /// store of a table creates it.
    fn with_slot<T>(
        &self,
        id: &SessionId,
        write: bool,
        f: impl FnOnce(Option<&mut Slot>) -> T,
    ) -> T {
        let now = Instant::now();
        let mut map = self.map();
        if map.get(id).is_some_and(|slot| !slot.live(now)) {
            map.remove(id);
        }
        if write && self.inner.upsert {
            let slot = map.entry(id.clone()).or_insert_with(|| Slot {
                record: None,
                data: HashMap::new(),
                expires: None,
            });
            return f(Some(slot));
        }
        f(map.get_mut(id))
    }
}

/// The map under its lock; publishes its length when let go.
struct MapGuard<'a> {
    map: MutexGuard<'a, HashMap<SessionId, Slot>>,
    len: &'a AtomicUsize,
}

impl std::ops::Deref for MapGuard<'_> {
    type Target = HashMap<SessionId, Slot>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl std::ops::DerefMut for MapGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl Drop for MapGuard<'_> {
    fn drop(&mut self) {
        self.len.store(self.map.len(), Ordering::Release);
    }
}

fn ready<'a, T: Send + 'a>(value: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl SessionStore for MemoryStore {
    fn create(&self, record: &SessionRecord, ttl: Option<Duration>) -> StoreFuture<'_, bool> {
        let now = Instant::now();
        let mut map = self.map();
        // Expired records are dropped now and then, so that a long-running process does not
        // keep them: whenever the map has doubled since the last purge.
        if map.len() >= 2 * self.inner.purged_at.load(Ordering::Relaxed).max(512) {
            map.retain(|_, slot| slot.live(now));
            self.inner.purged_at.store(map.len(), Ordering::Relaxed);
        }
        if map.get(&record.id).is_some_and(|slot| slot.live(now)) {
            return ready(Ok(false));
        }
        let slot = Slot {
            record: Some(record.clone()),
            data: HashMap::new(),
            expires: ttl.and_then(|ttl| now.checked_add(ttl)),
        };
        map.insert(record.id.clone(), slot);
        ready(Ok(true))
    }

    fn delete_if_unused<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
        unused_for: Duration,
    ) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let mut map = self.map();
        let deleted = match map.get(id) {
            None => false,
            Some(slot) if !slot.live(now) => {
                map.remove(id);
                false
            }
            Some(slot) => {
                let remaining = slot.expires.map(|at| at.saturating_duration_since(now));
                let unused = remaining.is_none_or(|left| left <= ttl.saturating_sub(unused_for));
                if unused {
                    map.remove(id);
                }
                unused
            }
        };
        ready(Ok(deleted))
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        let record = self.with_slot(id, false, |slot| slot.and_then(|slot| slot.record.clone()));
        ready(Ok(record))
    }

    fn touch<'a>(&'a self, ids: &'a [SessionId], ttl: Duration) -> StoreFuture<'a, Vec<SessionId>> {
        let now = Instant::now();
        let mut map = self.map();
        let mut missing = Vec::new();
        for id in ids {
            match map.get_mut(id).filter(|slot| slot.live(now)) {
                Some(slot) => slot.expires = now.checked_add(ttl),
                None => missing.push(id.clone()),
            }
        }
        ready(Ok(missing))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let removed = self.map().remove(id).is_some_and(|slot| slot.live(now));
        ready(Ok(removed))
    }

    fn data_get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, Option<String>> {
        let value = self.with_slot(id, false, |slot| {
            slot.and_then(|slot| slot.data.get(key).cloned())
        });
        ready(Ok(value))
    }

    fn data_insert<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        json: String,
    ) -> StoreFuture<'a, bool> {
        let written = self.with_slot(id, true, |slot| {
            slot.map(|slot| slot.data.insert(key.to_owned(), json))
                .is_some()
        });
        ready(Ok(written))
    }

    fn data_remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, bool> {
        let removed = self.with_slot(id, false, |slot| {
            slot.is_some_and(|slot| slot.data.remove(key).is_some())
        });
        ready(Ok(removed))
    }

    fn data_increment<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        by: i64,
    ) -> StoreFuture<'a, Option<i64>> {
        let result = self.with_slot(id, true, |slot| {
            let Some(slot) = slot else {
                return Ok(None);
            };
            let current = match slot.data.get(key) {
                None => 0,
                // As strict as Redis's HINCRBY: no spaces, no sign `+`.
                Some(text) if text.starts_with('+') => {
                    return Err(StoreError::new(format!(
                        "the value of `{key}` is not an integer"
                    )));
                }
                Some(text) => text.parse::<i64>().map_err(|_| {
                    StoreError::new(format!("the value of `{key}` is not an integer"))
                })?,
            };
            let next = current
                .checked_add(by)
                .ok_or_else(|| StoreError::new(format!("`{key}` would overflow")))?;
            slot.data.insert(key.to_owned(), next.to_string());
            Ok(Some(next))
        });
        ready(result)
    }
}
