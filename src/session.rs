//! [`Session`]: the session a request is routed to, as the request's extensions carry it.

use std::fmt;
use std::sync::Arc;

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
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.entry.info)
            .field("closed", &self.is_closed())
            .finish()
    }
}
