//! [`Session`]: the session a request is routed to, as the request's extensions carry it.

use std::fmt;
use std::sync::{Arc, Weak};

use bytes::Bytes;

use crate::bus::BusError;
use crate::close::CloseReason;
use crate::cluster::Entry;
use crate::cluster::data::{SessionData, Subscription};
use crate::info::SessionInfo;
use crate::table::Close;

/// The session a request belongs to, inserted by the layer into the extensions of every
/// request it routes to a session (unless
/// [`session_extension(false)`](crate::SessionLayerBuilder::session_extension)) and always into
/// the opening request's.
///
/// Read it with `req.extensions().get::<Session>()`, or, with the `axum` feature, as an
/// extractor (also [`SessionInfo`] and [`SessionState`](crate::SessionState)). Cloning costs
/// one reference-count increment. It keeps the session's service and state alive while held,
/// so do not store it beyond the request: keep a [`WeakSession`] instead.
#[derive(Clone)]
pub struct Session {
    pub(crate) entry: Arc<Entry>,
}

impl Session {
    pub(crate) fn new(entry: &Arc<Entry>) -> Self {
        Self {
            entry: Arc::clone(entry),
        }
    }

    /// The session's id, principal and creation time.
    pub fn info(&self) -> &SessionInfo {
        &self.entry.info
    }

    /// The typed state the [`SessionFactory`](crate::SessionFactory) returned for this
    /// session, if it is a `T`.
    pub fn state<T: 'static>(&self) -> Option<&T> {
        self.entry.payload.state().downcast_ref::<T>()
    }

    /// Whether the session has been closed since the request was routed (DELETE, expiry,
    /// eviction, [`close`](Self::close), shutdown).
    pub fn is_closed(&self) -> bool {
        self.entry.is_closed()
    }

    /// Closes this session with [`CloseReason::Closed`], as
    /// [`Sessions::close`](crate::Sessions::close) would (with a [cluster](crate::Cluster):
    /// everywhere, its record deleted in the background); `false` if it was closed already.
    /// The request that calls it still gets its answer; later requests get 404.
    pub fn close(&self) -> bool {
        close(&self.entry)
    }

    /// A handle that does not keep the session's service and state alive.
    pub fn downgrade(&self) -> WeakSession {
        WeakSession {
            entry: Arc::downgrade(&self.entry),
        }
    }

    /// The session's data map (see [`SessionData`]): in the layer's
    /// [cluster](crate::Cluster)'s store, shared by every node, or in this process without
    /// one.
    pub fn data(&self) -> SessionData {
        SessionData::of(&self.entry)
    }

    /// The messages published to this session from now on, as this node receives them (see
    /// [`Subscription`]); e.g. what a GET SSE stream sends.
    pub fn subscribe(&self) -> Subscription {
        let id = self.entry.info.id();
        let link = &self.entry.backend;
        let receiver = link.subscribe(id);
        // Closed meanwhile: its close may have dropped the mailbox before this made a new
        // one, which nobody would drop. (Checked after, so one of the two drops it.)
        if self.entry.is_closed() {
            link.drop_mailbox(id);
        }
        Subscription { receiver }
    }

    /// Whether [`publish`](Self::publish) reaches the session's subscriptions on other nodes
    /// (the layer's cluster has a bus).
    #[cfg_attr(not(feature = "rmcp"), allow(dead_code))]
    pub(crate) fn has_bus(&self) -> bool {
        self.entry.backend.has_bus()
    }

    /// Sends `message` to every [subscription](Self::subscribe) of this session: on every node
    /// that holds it when the layer's [cluster](crate::Cluster) has a bus, else on this one.
    ///
    /// # Errors
    ///
    /// [`BusError`] if the bus did not take the message (it is then lost; the outage is
    /// logged once).
    pub async fn publish(&self, message: impl Into<Bytes>) -> Result<(), BusError> {
        self.entry
            .backend
            .publish(self.entry.info.id(), message.into())
            .await
    }
}

/// Closes the session of `entry`, if its table still holds that very entry.
fn close(entry: &Entry) -> bool {
    entry
        .backend
        .table()
        .is_some_and(|table| table.close_entry(entry, Close::by_reason(CloseReason::Closed)))
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.entry.info)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A [`Session`] that does not keep the session's service and state alive; see
/// [`Session::downgrade`]. Hold it where a `Session` would form a cycle (inside the
/// per-session service or its state) or outlive the request.
#[derive(Clone)]
pub struct WeakSession {
    entry: Weak<Entry>,
}

impl WeakSession {
    /// The session, if its entry still exists (it may be closed: see
    /// [`Session::is_closed`]).
    pub fn upgrade(&self) -> Option<Session> {
        self.entry.upgrade().map(|entry| Session { entry })
    }

    /// Closes the session, as [`Session::close`] does; `false` if it is gone or closed
    /// already. A newer session under the same id (a custom id generator that repeats ids,
    /// or a copy restored since) is never touched.
    pub fn close(&self) -> bool {
        self.entry.upgrade().is_some_and(|entry| close(&entry))
    }
}

impl fmt::Debug for WeakSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSession")
            .field("alive", &(self.entry.strong_count() > 0))
            .finish()
    }
}
