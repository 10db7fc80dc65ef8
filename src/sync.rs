//! Locks that survive a panic elsewhere, and the background tasks of a table and its cluster.
//!
//! Every lock in the crate guards data that each update leaves whole (one insert, one
//! removal, one assignment), so a panic while one is held cannot leave it half-updated: the
//! guard of a poisoned lock is taken as it is instead of propagating the panic.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// The atomics of the [handshakes](crate::table::handshake); loom's in `suite/tests/loom.rs`.
pub(crate) mod atomic {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, Ordering, fence};
}

/// `mutex.lock()`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `lock.read()`, poisoned or not.
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// `lock.write()`, poisoned or not.
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// Spawns `task` on the tokio runtime of the calling thread; `false` (and nothing runs) if the
/// thread is not on one.
pub(crate) fn spawn<F>(task: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(task);
            true
        }
        Err(_) => false,
    }
}

/// A periodic background task, started at most once, on the runtime of the first caller of
/// [`start`](Self::start) that is on one; it ends when [`stop`](Self::stop) is called (its
/// owner's `Drop` does), when its owner is gone, or when its round says so.
#[derive(Default)]
pub(crate) struct Periodic {
    started: AtomicBool,
    signal: Arc<Signal>,
}

#[derive(Default)]
struct Signal {
    stopped: AtomicBool,
    notify: Notify,
}

impl Periodic {
    /// Starts running `round` every `interval` (any `Duration`, `MAX` included), unless the
    /// task runs already or the caller is not on a tokio runtime. The task holds `owner` only
    /// weakly: each round gets a clone of the `Weak` and upgrades it for as long as it needs
    /// (the task ends once it is gone).
    pub(crate) fn start<O, F, Fut>(&self, interval: Duration, owner: Weak<O>, round: F)
    where
        O: Send + Sync + 'static,
        F: FnMut(Weak<O>) -> Fut + Send + 'static,
        Fut: Future<Output = ControlFlow<()>> + Send + 'static,
    {
        if self.started.load(Ordering::Relaxed) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        spawn(every(interval, Arc::clone(&self.signal), owner, round));
    }

    /// Whether the task was started.
    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Ends the task at once, also while it waits for its next round.
    pub(crate) fn stop(&self) {
        self.signal.stopped.store(true, Ordering::SeqCst);
        self.signal.notify.notify_waiters();
    }
}

/// The loop of a [`Periodic`] task.
async fn every<O, F, Fut>(interval: Duration, signal: Arc<Signal>, owner: Weak<O>, mut round: F)
where
    F: FnMut(Weak<O>) -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    loop {
        let notified = signal.notify.notified();
        // `notify_waiters` reaches every `Notified` created before it: checking the flag after
        // creating the future cannot miss a stop.
        if signal.stopped.load(Ordering::SeqCst) {
            return;
        }
        // tokio's `timeout` saturates a deadline past what an `Instant` holds.
        if tokio::time::timeout(interval, notified).await.is_ok() {
            return;
        }
        if owner.strong_count() == 0 || round(owner.clone()).await.is_break() {
            return;
        }
    }
}
