//! Who is who: [`SessionInfo`] (what a session knows about itself), the [`Principal`] a
//! session is bound to, and the [`ClientKey`] a request comes from.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::id::SessionId;

/// The identity of the authenticated user (or client) a session is bound to.
///
/// MCP 2025-11-25, Security Best Practices, Session Hijacking: servers should bind a session
/// to the user it was opened for, so that a stolen or guessed id is useless to anyone else.
/// The layer reads the principal of every request with the extractor given to
/// [`SessionLayerBuilder::principal`](crate::SessionLayerBuilder::principal), stores the one seen on the
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

/// A live session as the layer sees it: its id, the principal it is bound to and when it was
/// created.
///
/// Given to the [`SessionFactory`](crate::SessionFactory) when the session opens and to the
/// [`on_open`](crate::SessionLayerBuilder::on_open) and
/// [`on_close`](crate::SessionLayerBuilder::on_close) hooks. A request routed to a session
/// carries it inside its [`Session`](crate::Session) extension
/// (`req.extensions().get::<Session>().map(Session::info)`); with the `axum` feature it is
/// also an extractor of its own. Cloning costs two reference-count increments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    id: SessionId,
    principal: Option<Principal>,
    /// Milliseconds since the Unix epoch.
    created_ms: u64,
}

impl SessionInfo {
    /// The info of a session created now, e.g. to unit-test a factory or a per-session
    /// service without running the layer.
    pub fn new(id: SessionId, principal: Option<Principal>) -> Self {
        Self {
            id,
            principal,
            created_ms: crate::time::wall_ms(),
        }
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

    /// The info of a session created at `created_ms` (ms since the Unix epoch): a restored
    /// one (its record's time), or a new one at its table's clock.
    pub(crate) fn created(id: SessionId, principal: Option<Principal>, created_ms: u64) -> Self {
        Self {
            id,
            principal,
            created_ms,
        }
    }

    /// When the session opened, in milliseconds since the Unix epoch.
    pub(crate) fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// When the session was created (wall clock, millisecond precision).
    pub fn created_at(&self) -> SystemTime {
        // A creation time read from a store record could be anything: capped at the end of
        // year 9999, which every platform's `SystemTime` holds.
        const LATEST_MS: u64 = 253_402_300_799_999;
        UNIX_EPOCH + Duration::from_millis(self.created_ms.min(LATEST_MS))
    }
}

/// Who a request comes from, for
/// [`max_sessions_per_client`](crate::SessionLayerBuilder::max_sessions_per_client): an IP
/// address (the usual choice: the peer address from axum's `ConnectInfo`, or the first hop of
/// a trusted `X-Forwarded-For`) or any string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(ClientKeyKind);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ClientKeyKind {
    Ip(IpAddr),
    Name(Arc<str>),
}

impl ClientKey {
    /// A client named by any string (an API key's id, a tenant).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(ClientKeyKind::Name(name.into()))
    }
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        Self(ClientKeyKind::Ip(ip))
    }
}

impl From<std::net::SocketAddr> for ClientKey {
    /// The address's IP; the port is dropped (one client opens many connections).
    fn from(addr: std::net::SocketAddr) -> Self {
        Self::from(addr.ip())
    }
}
