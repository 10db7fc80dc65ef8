//! [`Session`]: the session a request is routed to, as the request's extensions carry it.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::bus::BusError;
use crate::data::{SessionData, Subscription};
use crate::info::SessionInfo;
use crate::registry::DynEntry;

/// The session a request belongs to, inserted by the layer into the extensions of every
/// request it routes to a session (unless
/// [`session_extension(false)`](crate::SessionLayer::session_extension)) and always into the
/// opening request's.
///
/// Read it with `req.extensions().get::<Session>()`, or, with the `axum` feature, as an
/// extractor (also [`SessionInfo`] and [`SessionState`](crate::SessionState)). Cloning costs
/// one reference-count increment. It keeps the session's service and state alive while held,
/// so do not store it beyond the request.
#[derive(Clone)]
pub struct Session {
    pub(crate) entry: Arc<DynEntry>,
}

impl Session {
    /// The session's id, principal and creation time.
    pub fn info(&self) -> &SessionInfo {
        &self.entry.info
    }

    /// The typed state the [`SessionFactory`](crate::SessionFactory) returned for this
    /// session, if it is a `T`.
    pub fn state<T: 'static>(&self) -> Option<&T> {
        self.entry.slot.state().downcast_ref::<T>()
    }

    /// Whether the session has been closed since the request was routed (DELETE, expiry,
    /// eviction, [`Sessions::close`](crate::Sessions::close), shutdown).
    pub fn is_closed(&self) -> bool {
        self.entry.is_closed()
    }

    /// The session's data map (see [`SessionData`]): in the layer's
    /// [store](crate::SessionLayer::store), shared by every node, or in this process without
    /// one.
    pub fn data(&self) -> SessionData {
        SessionData {
            id: self.entry.info.id().clone(),
            node: Arc::clone(&self.entry.node),
        }
    }

    /// The messages published to this session from now on, as this node receives them (see
    /// [`Subscription`]); e.g. what a GET SSE stream sends.
    pub fn subscribe(&self) -> Subscription {
        let id = self.entry.info.id();
        let receiver = self.entry.node.subscribe(id);
        // Closed meanwhile: its close may have dropped the mailbox before this made a new
        // one, which nobody would drop. (Checked after, so one of the two drops it.)
        if self.entry.is_closed() {
            self.entry.node.drop_mailbox(id);
        }
        Subscription { receiver }
    }

    /// Sends `message` to every [subscription](Self::subscribe) of this session: on every node
    /// that holds it when the layer has a [bus](crate::SessionLayer::bus), else on this one.
    ///
    /// # Errors
    ///
    /// [`BusError`] if the bus did not take the message (it is then lost; the outage is
    /// logged once).
    pub async fn publish(&self, message: impl Into<Bytes>) -> Result<(), BusError> {
        self.entry
            .node
            .publish(self.entry.info.id(), message.into())
            .await
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.entry.info)
            .field("closed", &self.is_closed())
            .finish()
    }
}
