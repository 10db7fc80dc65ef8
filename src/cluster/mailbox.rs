//! The local subscribers of each session: what [`Session::subscribe`](crate::Session::subscribe)
//! receives, fed by [`Session::publish`](crate::Session::publish) on this node or by the bus.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::id::SessionId;
use crate::sync::lock;

/// Messages a local subscriber may fall behind by before it skips the oldest.
pub(crate) const MAILBOX_CAPACITY: usize = 64;

/// One broadcast channel per session with subscribers on this node.
#[derive(Default)]
pub(crate) struct Mailboxes {
    boxes: Mutex<HashMap<SessionId, broadcast::Sender<Bytes>>>,
    /// `boxes.len()`, readable without the lock: most tables have no subscriber at all.
    count: AtomicUsize,
}

impl Mailboxes {
    /// A receiver of the messages delivered to `id` from now on.
    pub(crate) fn subscribe(&self, id: &SessionId) -> broadcast::Receiver<Bytes> {
        let mut boxes = lock(&self.boxes);
        if let Some(sender) = boxes.get(id) {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(MAILBOX_CAPACITY);
        boxes.insert(id.clone(), sender);
        self.count.store(boxes.len(), Ordering::Release);
        receiver
    }

    /// Whether any session has a mailbox here.
    pub(crate) fn is_empty(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    /// Drops the mailbox of `id`: every subscription of the session on this node ends.
    pub(crate) fn remove(&self, id: &SessionId) {
        if !self.is_empty() {
            let mut boxes = lock(&self.boxes);
            if boxes.remove(id).is_some() {
                self.count.store(boxes.len(), Ordering::Release);
            }
        }
    }

    /// Hands `message` to the subscribers of `id` on this node, if it has any.
    pub(crate) fn deliver(&self, id: &SessionId, message: Bytes) {
        if self.is_empty() {
            return;
        }
        if let Some(sender) = lock(&self.boxes).get(id) {
            // No receiver left: nobody listens right now, which is not an error.
            let _ = sender.send(message);
        }
    }
}
