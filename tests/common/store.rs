//! [`TestStore`]: a [`MemoryStore`] that counts its calls and can be switched off, for the
//! tests of sessions across nodes and of the example server's faults.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_mcp_session::SessionId;
use tower_mcp_session::store::{MemoryStore, SessionRecord, SessionStore, StoreError, StoreFuture};

/// How many times each kind of store operation was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallCount {
    pub create: usize,
    pub load: usize,
    pub touch: usize,
    pub delete: usize,
    pub data: usize,
    pub ping: usize,
}

#[derive(Default)]
struct Calls {
    create: AtomicUsize,
    load: AtomicUsize,
    touch: AtomicUsize,
    delete: AtomicUsize,
    data: AtomicUsize,
    ping: AtomicUsize,
    /// The number of ids in each `touch` batch.
    touch_batches: Mutex<Vec<usize>>,
    /// How long each `load` takes (tokio's clock).
    load_delay: Mutex<Duration>,
}

/// A [`MemoryStore`] that counts every call made through it and, while switched down, fails
/// every call with `StoreError::unavailable("down")` (switched down from the start, it is a store whose
/// methods all fail). The tests read the records through [`inner`](Self::inner), which does
/// not count.
#[derive(Clone, Default)]
pub struct TestStore {
    pub inner: MemoryStore,
    down: Arc<AtomicBool>,
    calls: Arc<Calls>,
}

impl TestStore {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn calls(&self) -> CallCount {
        let c = &self.calls;
        CallCount {
            create: c.create.load(Ordering::SeqCst),
            load: c.load.load(Ordering::SeqCst),
            touch: c.touch.load(Ordering::SeqCst),
            delete: c.delete.load(Ordering::SeqCst),
            data: c.data.load(Ordering::SeqCst),
            ping: c.ping.load(Ordering::SeqCst),
        }
    }

    /// Makes every later `load` take `delay` (tokio's clock) before it answers.
    pub fn set_load_delay(&self, delay: Duration) {
        *self.calls.load_delay.lock().unwrap() = delay;
    }

    pub fn touch_batches(&self) -> Vec<usize> {
        self.calls.touch_batches.lock().unwrap().clone()
    }

    /// The record of `id`, read without counting.
    pub async fn record(&self, id: &str) -> Option<SessionRecord> {
        let id = SessionId::parse(id).unwrap();
        self.inner.load(&id).await.unwrap()
    }

    /// Counts a call; `Err` while the store is down.
    fn count(&self, counter: &AtomicUsize) -> Result<(), StoreError> {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("down"))
        } else {
            Ok(())
        }
    }
}

fn failed<'a, T: Send + 'a>(error: StoreError) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(Err(error)))
}

impl SessionStore for TestStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        match self.count(&self.calls.ping) {
            Ok(()) => Box::pin(std::future::ready(Ok(()))),
            Err(error) => failed(error),
        }
    }

    fn create(&self, record: &SessionRecord, ttl: Option<Duration>) -> StoreFuture<'_, bool> {
        match self.count(&self.calls.create) {
            Ok(()) => self.inner.create(record, ttl),
            Err(error) => failed(error),
        }
    }

    fn delete_if_unused<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
        unused_for: Duration,
    ) -> StoreFuture<'a, bool> {
        match self.count(&self.calls.delete) {
            Ok(()) => self.inner.delete_if_unused(id, ttl, unused_for),
            Err(error) => failed(error),
        }
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        let delay = *self.calls.load_delay.lock().unwrap();
        let counted = self.count(&self.calls.load);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            counted?;
            self.inner.load(id).await
        })
    }

    fn touch<'a>(&'a self, ids: &'a [SessionId], ttl: Duration) -> StoreFuture<'a, Vec<SessionId>> {
        self.calls.touch_batches.lock().unwrap().push(ids.len());
        match self.count(&self.calls.touch) {
            Ok(()) => self.inner.touch(ids, ttl),
            Err(error) => failed(error),
        }
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        match self.count(&self.calls.delete) {
            Ok(()) => self.inner.delete(id),
            Err(error) => failed(error),
        }
    }

    fn data_get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, Option<String>> {
        match self.count(&self.calls.data) {
            Ok(()) => self.inner.data_get(id, key),
            Err(error) => failed(error),
        }
    }

    fn data_insert<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        json: String,
    ) -> StoreFuture<'a, bool> {
        match self.count(&self.calls.data) {
            Ok(()) => self.inner.data_insert(id, key, json),
            Err(error) => failed(error),
        }
    }

    fn data_remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, bool> {
        match self.count(&self.calls.data) {
            Ok(()) => self.inner.data_remove(id, key),
            Err(error) => failed(error),
        }
    }

    fn data_increment<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        by: i64,
    ) -> StoreFuture<'a, Option<i64>> {
        match self.count(&self.calls.data) {
            Ok(()) => self.inner.data_increment(id, key, by),
            Err(error) => failed(error),
        }
    }
}
