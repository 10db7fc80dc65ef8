//! [`MemoryStore`]: records in this process's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sync::lock;
use std::time::Duration;

use tokio::time::Instant;

use crate::id::SessionId;
use crate::store::{SessionRecord, SessionStore, StoreError, StoreFuture};

/// Records of sessions in this process's memory, shared by clones.
///
/// Given to several layers in one process (through a [`Cluster`](crate::Cluster) each), a
/// `MemoryStore` lets each restore the others' sessions, as
/// [`RedisStore`](crate::store::RedisStore) does across processes: the tests of the multi-node
/// logic run on it, without a network. A layer without a cluster needs no store: its sessions'
/// data maps live in their entries.
///
/// Times to live follow tokio's clock (so paused-clock tests can expire records); expired
/// records are dropped when next read and by [`purge_expired`](Self::purge_expired).
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    map: Mutex<HashMap<SessionId, Stored>>,
    /// `map.len()`, readable without the lock.
    len: AtomicUsize,
    /// The map's length after the last purge of expired records.
    purged_at: AtomicUsize,
}

/// One session's record and data map, with their expiry.
struct Stored {
    record: SessionRecord,
    data: HashMap<String, String>,
    expires: Option<Instant>,
}

impl Stored {
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

    /// How many sessions have a record (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Acquire)
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
        map.retain(|_, stored| stored.live(now));
        before - map.len()
    }

    fn map(&self) -> MapGuard<'_> {
        MapGuard {
            map: lock(&self.inner.map),
            len: &self.inner.len,
        }
    }

    /// Runs `f` on the live record of `id` (dropping it if expired).
    fn with_live<T>(&self, id: &SessionId, f: impl FnOnce(Option<&mut Stored>) -> T) -> T {
        let now = Instant::now();
        let mut map = self.map();
        if map.get(id).is_some_and(|stored| !stored.live(now)) {
            map.remove(id);
        }
        f(map.get_mut(id))
    }
}

/// The map under its lock; publishes its length when let go.
struct MapGuard<'a> {
    map: MutexGuard<'a, HashMap<SessionId, Stored>>,
    len: &'a AtomicUsize,
}

impl std::ops::Deref for MapGuard<'_> {
    type Target = HashMap<SessionId, Stored>;
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
            map.retain(|_, stored| stored.live(now));
            self.inner.purged_at.store(map.len(), Ordering::Relaxed);
        }
        if map.get(&record.id).is_some_and(|stored| stored.live(now)) {
            return ready(Ok(false));
        }
        let stored = Stored {
            record: record.clone(),
            data: HashMap::new(),
            expires: ttl.and_then(|ttl| now.checked_add(ttl)),
        };
        map.insert(record.id.clone(), stored);
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
            Some(stored) if !stored.live(now) => {
                map.remove(id);
                false
            }
            Some(stored) => {
                let remaining = stored.expires.map(|at| at.saturating_duration_since(now));
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
        let record = self.with_live(id, |stored| stored.map(|s| s.record.clone()));
        ready(Ok(record))
    }

    fn touch<'a>(&'a self, ids: &'a [SessionId], ttl: Duration) -> StoreFuture<'a, Vec<SessionId>> {
        let now = Instant::now();
        let mut map = self.map();
        let mut missing = Vec::new();
        for id in ids {
            match map.get_mut(id).filter(|stored| stored.live(now)) {
                Some(stored) => stored.expires = now.checked_add(ttl),
                None => missing.push(id.clone()),
            }
        }
        ready(Ok(missing))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let removed = self.map().remove(id).is_some_and(|stored| stored.live(now));
        ready(Ok(removed))
    }

    fn data_get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, Option<String>> {
        let value = self.with_live(id, |stored| stored.and_then(|s| s.data.get(key).cloned()));
        ready(Ok(value))
    }

    fn data_insert<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        json: String,
    ) -> StoreFuture<'a, bool> {
        let written = self.with_live(id, |stored| {
            stored
                .map(|s| s.data.insert(key.to_owned(), json))
                .is_some()
        });
        ready(Ok(written))
    }

    fn data_remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, bool> {
        let removed = self.with_live(id, |stored| {
            stored.is_some_and(|s| s.data.remove(key).is_some())
        });
        ready(Ok(removed))
    }

    fn data_increment<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        by: i64,
    ) -> StoreFuture<'a, Option<i64>> {
        let result = self.with_live(id, |stored| {
            let Some(stored) = stored else {
                return Ok(None);
            };
            let next =
                crate::store::incremented(stored.data.get(key).map(String::as_str), key, by)?;
            stored.data.insert(key.to_owned(), next.to_string());
            Ok(Some(next))
        });
        ready(result)
    }
}
