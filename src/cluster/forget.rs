//! Sessions closed for good on this node, forgotten in the background: their record deleted,
//! their close published to the other nodes, off the path of the request or task that closed
//! them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::bus::{BusConnection, BusEvent};
use crate::close::CloseReason;
use crate::id::SessionId;
use crate::metrics::{BusOp, Metrics, StoreOp};
use crate::store::SessionStore;
use crate::sync::{self, lock};

/// Sessions to forget that may wait for the forgetting task; past that, a record is left to
/// its time to live (and logged, once per overflow).
const FORGET_QUEUE: usize = 4096;

/// A session to forget: its record deleted, its close published.
pub(crate) struct Forget {
    pub(crate) id: SessionId,
    pub(crate) reason: CloseReason,
    /// For an eviction: how long the session had gone unused on this node (minus the refresh
    /// lag). The record is deleted only if no node has refreshed it more recently.
    pub(crate) unused_for: Option<Duration>,
}

/// The queue of sessions to forget, and its task.
pub(crate) struct ForgetQueue {
    sender: Mutex<Option<mpsc::Sender<Forget>>>,
    /// Whether the queue overflowed since it last had room (logged once per overflow).
    full: AtomicBool,
    store: Arc<dyn SessionStore>,
    bus: Option<Arc<dyn BusConnection>>,
    ttl: Option<Duration>,
    metrics: Metrics,
}

impl ForgetQueue {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        bus: Option<Arc<dyn BusConnection>>,
        ttl: Option<Duration>,
        metrics: Metrics,
    ) -> Self {
        Self {
            sender: Mutex::new(None),
            full: AtomicBool::new(false),
            store,
            bus,
            ttl,
            metrics,
        }
    }

    /// Queues `forget`; the task starts on the current runtime when the first one comes (and
    /// again if the runtime that ran it is gone).
    pub(crate) fn push(&self, forget: Forget) {
        self.push_once(forget, false);
    }

    fn push_once(&self, forget: Forget, retried: bool) {
        let mut sender = lock(&self.sender);
        if sender.is_none() {
            let (tx, rx) = mpsc::channel(FORGET_QUEUE);
            if !sync::spawn(forget_task(
                Arc::clone(&self.store),
                self.bus.clone(),
                self.ttl,
                rx,
                self.metrics.clone(),
            )) {
                tracing::warn!(
                    session = %forget.id.redacted(),
                    "session closed outside a tokio runtime: its store record is left to its time to live"
                );
                return;
            }
            *sender = Some(tx);
        }
        let Some(tx) = sender.as_ref() else {
            return;
        };
        match tx.try_send(forget) {
            Ok(()) => {
                self.metrics.forget_queue(true);
                self.full.store(false, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "too many closes waiting for the session store: their records are left \
                         to their time to live until the queue has room again"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(forget)) => {
                // The runtime that ran the task is gone: start it again on this one (once: a
                // runtime that is shutting down drops the new task too).
                *sender = None;
                drop(sender);
                if !retried {
                    self.push_once(forget, true);
                }
            }
        }
    }
}

async fn forget_task(
    store: Arc<dyn SessionStore>,
    bus: Option<Arc<dyn BusConnection>>,
    ttl: Option<Duration>,
    mut queue: mpsc::Receiver<Forget>,
    metrics: Metrics,
) {
    while let Some(Forget {
        id,
        reason,
        unused_for,
    }) = queue.recv().await
    {
        metrics.forget_queue(false);
        let deleted = match (unused_for, ttl) {
            (Some(unused_for), Some(ttl)) => {
                let deleting = store.delete_if_unused(&id, ttl, unused_for);
                metrics.store(StoreOp::DeleteIfUnused, deleting).await
            }
            _ => metrics.store(StoreOp::Delete, store.delete(&id)).await,
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
            && let Err(error) = metrics
                .bus(BusOp::Publish, bus.publish(&id, BusEvent::Closed(reason)))
                .await
        {
            tracing::debug!(%error, session = %id.redacted(), "could not tell the other nodes of a close");
        }
    }
}
