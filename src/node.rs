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
/// forgetting task; past that, a record is left to its time to live (and logged, once per
/// overflow).
const FORGET_QUEUE: usize = 4096;

/// Restores that may wait on the store or a factory at once on one node; past it a restore
/// answers 503 with `Retry-After`. Bounds what made-up session ids can cost: at most this many
/// store reads in flight.
pub(crate) const MAX_RESTORING: usize = 256;

/// One restore of an id in flight: its lock, and the failure it ended with if that holds for
/// every request of the id (they then get it without asking the store again).
pub(crate) type Flight = Arc<tokio::sync::Mutex<Option<crate::rejection::Rejection>>>;

/// A session to forget: its record deleted, its close published.
struct Forget {
    id: SessionId,
    reason: CloseReason,
    /// For an eviction: how long the session had gone unused on this node (minus the refresh
    /// lag). The record is deleted only if no node has refreshed it more recently.
    unused_for: Option<Duration>,
}

/// Store and bus of one session table.
pub(crate) struct Node {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) bus: Option<Arc<dyn BusConnection>>,
    /// The same store as `store` when it is the table's private one.
    private: Option<MemoryStore>,
    /// Subscribers of each session on this node.
    mailboxes: Mutex<HashMap<SessionId, broadcast::Sender<Bytes>>>,
    mailbox_count: AtomicUsize,
    /// Sessions being restored here, one flight each.
    restoring: Mutex<HashMap<SessionId, Flight>>,
    pub(crate) restore_permits: tokio::sync::Semaphore,
    forget: Mutex<Option<mpsc::Sender<Forget>>>,
    /// Whether the forget queue overflowed since it last had room (logged once per overflow).
    forget_full: AtomicBool,
    /// The records' time to live and the refresh interval (for eviction's conditional delete).
    ttl: Option<Duration>,
    refresh: Duration,
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
        let bus = config
            .bus
            .as_ref()
            .map(|bus| connect(&**bus, registry.clone()));
        Self {
            store,
            bus,
            private,
            mailboxes: Mutex::default(),
            mailbox_count: AtomicUsize::new(0),
            restoring: Mutex::default(),
            restore_permits: tokio::sync::Semaphore::new(MAX_RESTORING),
            forget: Mutex::new(None),
            forget_full: AtomicBool::new(false),
            ttl: (config.idle_ms != 0).then(|| Duration::from_millis(config.idle_ms)),
            refresh: refresh_interval(config),
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

    /// Drops the mailbox of `id`: every subscription of the session on this node ends.
    pub(crate) fn drop_mailbox(&self, id: &SessionId) {
        if self.mailbox_count.load(Ordering::Acquire) != 0 {
            let mut boxes = lock(&self.mailboxes);
            if boxes.remove(id).is_some() {
                self.mailbox_count.store(boxes.len(), Ordering::Release);
            }
        }
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

    /// A session opened or is being restored here: listen to its events.
    pub(crate) fn opened(&self, id: &SessionId) {
        if let Some(bus) = &self.bus {
            bus.listen(id);
        }
    }

    /// A restore that listened to `id` failed: stop listening.
    pub(crate) fn unlisten(&self, id: &SessionId) {
        if let Some(bus) = &self.bus {
            bus.unlisten(id);
        }
    }

    /// A session closed here. `forward`: it closed here first (not on word from the bus), so
    /// if it closed for good its record is deleted and the other nodes are told. `unused_for`:
    /// how long it had gone without a request here (eviction's conditional delete).
    pub(crate) fn closed(
        &self,
        id: &SessionId,
        reason: CloseReason,
        forward: bool,
        unused_for: Duration,
    ) {
        // A newer copy of the same id may be live here already (restored while this one's
        // close was on its way): its listening and its subscribers stay.
        let shared_by_copies =
            self.bus.is_some() || self.mailbox_count.load(Ordering::Acquire) != 0;
        if !(shared_by_copies && self.is_live(id)) {
            self.unlisten(id);
            self.drop_mailbox(id);
        }
        if let Some(private) = &self.private {
            // The private data-map store: nothing outlives the session.
            if !private.is_empty() {
                private.remove(id);
            }
            return;
        }
        if forward && reason.ends_everywhere() {
            // Eviction frees memory here; it ends the session everywhere only if no other node
            // has used it since this one did (an attacker's sessions, used nowhere else, go;
            // a session busy through another node stays). This node's own refresh may have
            // reset the time to live up to one refresh interval after its last request.
            let unused_for =
                (reason == CloseReason::Evicted).then(|| unused_for.saturating_sub(self.refresh));
            self.queue_forget(Forget {
                id: id.clone(),
                reason,
                unused_for,
            });
        }
    }

    /// Deletes the record of `id` and closes it on the other nodes, off the caller's path.
    pub(crate) fn forget_later(&self, id: &SessionId, reason: CloseReason) {
        self.queue_forget(Forget {
            id: id.clone(),
            reason,
            unused_for: None,
        });
    }

    fn queue_forget(&self, forget_one: Forget) {
        self.queue_forget_once(forget_one, false);
    }

    fn queue_forget_once(&self, forget_one: Forget, retried: bool) {
        let id = &forget_one.id;
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
                self.ttl,
                receiver,
            ));
            *forget = Some(sender);
        }
        let Some(sender) = forget.as_ref() else {
            return;
        };
        match sender.try_send(forget_one) {
            Ok(()) => {
                self.forget_full.store(false, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.forget_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "too many closes waiting for the session store: their records are left \
                         to their time to live until the queue has room again"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(forget_one)) => {
                // The runtime that ran the task is gone: start it again on this one (once: a
                // runtime that is shutting down drops the new task too).
                *forget = None;
                drop(forget);
                if !retried {
                    self.queue_forget_once(forget_one, true);
                }
            }
        }
    }

    /// Tells every node that holds `id` to close it (DELETE's path, after the record is gone).
    pub(crate) async fn publish_closed(&self, id: &SessionId, reason: CloseReason) {
        if let Some(bus) = &self.bus {
            let result = bus.publish(id, BusEvent::Closed(reason)).await;
            self.bus_health(&result);
        }
    }

    /// The single-flight lock of restoring `id` on this node.
    pub(crate) fn restore_lock(&self, id: &SessionId) -> Flight {
        Arc::clone(lock(&self.restoring).entry(id.clone()).or_default())
    }

    /// Drops the restore lock of `id` once no other request waits on it.
    pub(crate) fn restore_done(&self, id: &SessionId, flight: &Flight) {
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
    ttl: Option<Duration>,
    mut queue: mpsc::Receiver<Forget>,
) {
    while let Some(Forget {
        id,
        reason,
        unused_for,
    }) = queue.recv().await
    {
        let deleted = match (unused_for, ttl) {
            (Some(unused_for), Some(ttl)) => store.delete_if_unused(&id, ttl, unused_for).await,
            _ => store.delete(&id).await,
        };
        match deleted {
            // Used through another node since: it lives on there; nothing to tell.
            Ok(false) if unused_for.is_some() => continue,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, session = %id.redacted(), "could not delete a session record; it expires by its time to live");
            }
        }
        if let Some(bus) = &bus
            && let Err(error) = bus.publish(&id, BusEvent::Closed(reason)).await
        {
            tracing::debug!(%error, session = %id.redacted(), "could not tell the other nodes of a close");
        }
    }
}

/// The refresh interval: the configured one, or a quarter of the idle timeout clamped to
/// 100 ms..=30 s; never more than half the idle timeout (a record must be refreshed well
/// before its time to live ends).
pub(crate) fn refresh_interval(config: &Config) -> Duration {
    let interval = config.store_refresh.unwrap_or_else(|| {
        Duration::from_millis(config.idle_ms / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30))
    });
    if config.idle_ms == 0 {
        return interval;
    }
    interval.min(Duration::from_millis(config.idle_ms / 2).max(Duration::from_millis(1)))
}

/// Starts the refresher of a table with a shared store and an idle timeout, once, on the
/// current tokio runtime (without one, records keep the time to live they were created with).
pub(crate) fn ensure_refresher(registry: &Arc<Registry>) {
    if !registry.shared || registry.config.idle_ms == 0 {
        return;
    }
    let node = registry.node();
    if node.refresh_started.load(Ordering::Relaxed) {
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
