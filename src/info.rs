//! What a session knows about itself: [`SessionInfo`] and the [`Principal`] it is bound to.

use std::fmt;
use std::sync::Arc;

use crate::id::SessionId;

/// The identity of the authenticated user (or client) a session is bound to.
///
/// MCP 2025-11-25, Security Best Practices, Session Hijacking: servers should bind a session
/// to the user it was opened for, so that a stolen or guessed id is useless to anyone else.
/// The layer reads the principal of every request with the extractor given to
/// [`SessionLayer::principal`](crate::SessionLayer::principal), stores the one seen on the
/// opening request, and answers a later request whose principal differs (or is missing)
/// exactly like an unknown session: 404 Not Found.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal(Arc<str>);

impl Principal {
    /// Creates a principal from any string-like user or client identifier.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The identifier as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Principal {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Principal {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<Arc<str>> for Principal {
    fn from(value: Arc<str>) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A live session as the layer sees it: its id and the principal it is bound to.
///
/// Given to the [`SessionFactory`](crate::SessionFactory) when the session opens, and inserted
/// into the extensions of every request routed to the session (read it with
/// `req.extensions().get::<SessionInfo>()`, or axum's `Extension<SessionInfo>` extractor).
/// Cloning costs two reference-count increments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    id: SessionId,
    principal: Option<Principal>,
}

impl SessionInfo {
    pub(crate) fn new(id: SessionId, principal: Option<Principal>) -> Self {
        Self { id, principal }
    }

    /// The session's id, as sent in the session header.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The principal the session is bound to; `None` when no principal extractor is
    /// configured or the opening request had none.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }
}
