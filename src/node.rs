//! This node's link to the [store](crate::store) and the [bus](crate::bus): the records written
//! and forgotten, the background refresh of their time to live, the local subscribers of each
//! session, single-flight restores, and one log line per outage.
//!
//! Nothing here runs on the path of a request routed to a session live on this node: such a
//! request touches only the [registry](crate::registry). A session used here since the last
//! refresh round is found by the refresher from the registry's own timestamps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use crate::bus::{BusConnection, BusError, BusEvent, SessionBus};
use crate::config::Config;
use crate::hooks::CloseReason;
use crate::id::SessionId;
use crate::registry::Registry;
use crate::store::{MemoryStore, SessionStore, StoreError};

/// Messages a local subscriber may fall behind by before it skips the oldest.
pub(crate) const MAILBOX_CAPACITY: usize = 64;

/// Sessions to forget (delete their record, tell the other nodes) that may wait for the
/// forgetting task; past that, a record is left to its time to live (and logged).
const FORGET_QUEUE: usize = 4096;

/// Store and bus of one session table.
pub(crate) struct Node {
    pub(crate) store: Arc<dyn SessionStore>,
    /// Whether `store` is shared with other nodes (configured): records are written, misses
    /// are restored, closes for good are forgotten there. Otherwise `store` is the table's
    /// private data-map store.
    pub(crate) shared: bool,
    pub(crate) bus: Option<Arc<dyn BusConnection>>,
    /// The same store as `store` when it is the table's private one.
    private: Option<MemoryStore>,
    /// Subscribers of each session on this node.
    mailboxes: Mutex<HashMap<SessionId, broadcast::Sender<Bytes>>>,
    mailbox_count: AtomicUsize,
    /// Sessions being restored here, one flight each.
    restoring: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>,
    forget: Mutex<Option<mpsc::Sender<(SessionId, CloseReason)>>>,
    store_down: AtomicBool,
    bus_down: AtomicBool,
    /// Table time (ms) of the last refresh round's start.
    pub(crate) refreshed_at: AtomicU64,
    pub(crate) refresh_started: AtomicBool,
    registry: Weak<Registry>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    pub(crate) fn new(config: &Config, registry: Weak<Registry>) -> Self {
        let (store, private) = match &config.store {
            Some(store) => (Arc::clone(store), None),
            None => {
                let private = MemoryStore::data_only();
                (
                    Arc::new(private.clone()) as Arc<dyn SessionStore>,
                    Some(private),
                )
            }
        };
        let shared = private.is_none();
        let bus = config
            .bus
            .as_ref()
            .map(|bus| connect(&**bus, registry.clone()));
        Self {
            store,
            shared,
            bus,
            private,
            mailboxes: Mutex::default(),
            mailbox_count: AtomicUsize::new(0),
            restoring: Mutex::default(),
            forget: Mutex::new(None),
            store_down: AtomicBool::new(false),
            bus_down: AtomicBool::new(false),
            refreshed_at: AtomicU64::new(0),
            refresh_started: AtomicBool::new(false),
            registry,
        }
    }

    /// Whether the store is the table's private one (no shared store configured).
    pub(crate) fn is_private(&self) -> bool {
        self.private.is_some()
    }

    /// Whether `id` is live in this node's table.
    pub(crate) fn is_live(&self, id: &SessionId) -> bool {
        self.registry
            .upgrade()
            .is_some_and(|registry| registry.get(id.as_str()).is_some())
    }

    /// Drops the data of `id` from the private store.
    pub(crate) fn forget_private(&self, id: &SessionId) {
        if let Some(private) = &self.private {
            private.remove(id);
        }
    }

    /// A receiver of the messages published to `id` from now on (on any node, with a bus).
    pub(crate) fn subscribe(&self, id: &SessionId) -> broadcast::Receiver<Bytes> {
        let mut boxes = lock(&self.mailboxes);
        if let Some(sender) = boxes.get(id) {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(MAILBOX_CAPACITY);
        boxes.insert(id.clone(), sender);
        self.mailbox_count.store(boxes.len(), Ordering::Release);
        receiver
    }

    /// Hands `message` to the local subscribers of `id`.
    fn deliver(&self, id: &SessionId, message: Bytes) {
        if self.mailbox_count.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(sender) = lock(&self.mailboxes).get(id) {
            // No receiver left: nobody listens right now, which is not an error.
            let _ = sender.send(message);
        }
    }

    /// Publishes `message` to every subscriber of `id`: through the bus if there is one, else
    /// to this node's.
    pub(crate) async fn publish(&self, id: &SessionId, message: Bytes) -> Result<(), BusError> {
        match &self.bus {
            Some(bus) => {
                let result = bus.publish(id, BusEvent::Message(message)).await;
                self.bus_health(&result);
                result
            }
            None => {
                self.deliver(id, message);
                Ok(())
            }
        }
    }

    /// A session opened or was restored here: listen to its events.
    pub(crate) fn opened(&self, id: &SessionId) {
        if let Some(bus) = &self.bus {
            bus.listen(id);
        }
    }

    /// A session closed here. `forward`: it closed here first (not on word from the bus), so
    /// if it closed for good its record is deleted and the other nodes are told.
    pub(crate) fn closed(&self, id: &SessionId, reason: CloseReason, forward: bool) {
        if let Some(bus) = &self.bus {
            bus.unlisten(id);
        }
        if self.mailbox_count.load(Ordering::Acquire) != 0 {
            let mut boxes = lock(&self.mailboxes);
            // Dropping the sender ends every subscription of the session on this node.
            if boxes.remove(id).is_some() {
                self.mailbox_count.store(boxes.len(), Ordering::Release);
            }
        }
        if let Some(private) = &self.private {
            // The private data-map store: nothing outlives the session.
            if !private.is_empty() {
                private.remove(id);
            }
            return;
        }
        if forward && reason.ends_everywhere() {
            self.queue_forget(id, reason);
        }
    }

    /// Deletes the record of `id` and closes it on the other nodes, off the caller's path.
    fn queue_forget(&self, id: &SessionId, reason: CloseReason) {
        let mut forget = lock(&self.forget);
        if forget.is_none() {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::warn!(
                    session = %id.redacted(),
                    "session closed outside a tokio runtime: its store record is left to its time to live"
                );
                return;
            };
            let (sender, receiver) = mpsc::channel(FORGET_QUEUE);
            runtime.spawn(forget_task(
                Arc::clone(&self.store),
                self.bus.clone(),
                receiver,
            ));
            *forget = Some(sender);
        }
        if let Some(sender) = forget.as_ref()
            && sender.try_send((id.clone(), reason)).is_err()
        {
            tracing::warn!(
                session = %id.redacted(),
                "too many closes waiting for the session store: this record is left to its time to live"
            );
        }
    }

    /// Deletes the record of `id` and tells every node to close it, now (DELETE's path).
    pub(crate) async fn forget_now(
        &self,
        id: &SessionId,
        reason: CloseReason,
    ) -> Result<bool, StoreError> {
        let deleted = self.store.delete(id).await;
        self.store_health(&deleted);
        let deleted = deleted?;
        if let Some(bus) = &self.bus {
            let result = bus.publish(id, BusEvent::Closed(reason)).await;
            self.bus_health(&result);
        }
        Ok(deleted)
    }

    /// The single-flight lock of restoring `id` on this node.
    pub(crate) fn restore_lock(&self, id: &SessionId) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.restoring).entry(id.clone()).or_default())
    }

    /// Drops the restore lock of `id` once no other request waits on it.
    pub(crate) fn restore_done(&self, id: &SessionId, flight: &Arc<tokio::sync::Mutex<()>>) {
        let mut restoring = lock(&self.restoring);
        // The map's handle and the caller's: nobody else waits.
        if Arc::strong_count(flight) <= 2
            && let Some(current) = restoring.get(id)
            && Arc::ptr_eq(current, flight)
        {
            restoring.remove(id);
        }
    }

    /// Logs the first failure of the store and the first success after it, once each.
    pub(crate) fn store_health<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Err(error) => {
                if !self.store_down.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        %error,
                        "session store unreachable: opening and restoring sessions answer 503 \
                         until it is back; sessions live on this node keep working"
                    );
                }
            }
            Ok(_) => {
                if self.store_down.swap(false, Ordering::AcqRel) {
                    tracing::info!("session store reachable again");
                }
            }
        }
    }

    fn bus_health<T>(&self, result: &Result<T, BusError>) {
        match result {
            Err(error) => {
                if !self.bus_down.swap(true, Ordering::AcqRel) {
                    tracing::warn!(%error, "session bus unreachable: messages to other nodes are lost until it is back");
                }
            }
            Ok(_) => {
                if self.bus_down.swap(false, Ordering::AcqRel) {
                    tracing::info!("session bus reachable again");
                }
            }
        }
    }
}

/// Joins `bus` with a delivery that reaches the table through a weak reference (the bus must
/// not keep the table alive).
fn connect(bus: &dyn SessionBus, registry: Weak<Registry>) -> Arc<dyn BusConnection> {
    bus.connect(Arc::new(move |id: &SessionId, event: BusEvent| {
        let Some(registry) = registry.upgrade() else {
            return;
        };
        match event {
            BusEvent::Message(message) => registry.node().deliver(id, message),
            BusEvent::Closed(reason) => {
                registry.close_from_bus(id, reason);
            }
        }
    }))
}

async fn forget_task(
    store: Arc<dyn SessionStore>,
    bus: Option<Arc<dyn BusConnection>>,
    mut queue: mpsc::Receiver<(SessionId, CloseReason)>,
) {
    while let Some((id, reason)) = queue.recv().await {
        if let Err(error) = store.delete(&id).await {
            tracing::debug!(%error, session = %id.redacted(), "could not delete a session record; it expires by its time to live");
        }
        if let Some(bus) = &bus
            && let Err(error) = bus.publish(&id, BusEvent::Closed(reason)).await
        {
            tracing::debug!(%error, session = %id.redacted(), "could not tell the other nodes of a close");
        }
    }
}

/// The refresh interval: the configured one, or a quarter of the idle timeout clamped to
/// 100 ms..=30 s.
pub(crate) fn refresh_interval(config: &Config) -> Duration {
    config.store_refresh.unwrap_or_else(|| {
        Duration::from_millis(config.idle_ms / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30))
    })
}

/// Starts the refresher of a table with a shared store and an idle timeout, once, on the
/// current tokio runtime (without one, records keep the time to live they were created with).
pub(crate) fn ensure_refresher(registry: &Arc<Registry>) {
    let node = registry.node();
    if !node.shared || registry.config.idle_ms == 0 || node.refresh_started.load(Ordering::Relaxed)
    {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if node.refresh_started.swap(true, Ordering::AcqRel) {
        return;
    }
    let ttl = Duration::from_millis(registry.config.idle_ms);
    handle.spawn(refresher(
        Arc::downgrade(registry),
        Arc::clone(&registry.sweeper.stop),
        Arc::clone(&registry.sweeper.stopped),
        refresh_interval(&registry.config),
        ttl,
    ));
}

/// Refreshes, once per interval, the records of the sessions used on this node since the last
/// round (or with a request or stream still open), in batches of 1,024 ids. Ends when the
/// table is dropped or shut down.
async fn refresher(
    registry: Weak<Registry>,
    stop: Arc<tokio::sync::Notify>,
    stopped: Arc<AtomicBool>,
    interval: Duration,
    ttl: Duration,
) {
    loop {
        let notified = stop.notified();
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        if tokio::time::timeout(interval, notified).await.is_ok() {
            return;
        }
        let Some(table) = registry.upgrade() else {
            return;
        };
        let node = Arc::clone(table.node());
        let now = table.now();
        let since = node.refreshed_at.swap(now, Ordering::AcqRel);
        let ids = table.used_since(since);
        drop(table);
        for batch in ids.chunks(1024) {
            // A failed round is retried at the next one, well within the time to live (a
            // quarter of it by default); the outage itself is logged by opens and restores.
            match node.store.touch(batch, ttl).await {
                Ok(gone) => {
                    // No record any more: closed for good elsewhere (a bus message this node
                    // missed) or expired. Close this node's copies too.
                    if !gone.is_empty()
                        && let Some(table) = registry.upgrade()
                    {
                        for id in &gone {
                            table.close_from_bus(id, CloseReason::Closed);
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "could not refresh session records");
                    break;
                }
            }
        }
    }
}
