//! The settings of one session table, frozen when the table comes into being.
//!
//! [`SessionLayer`](crate::SessionLayer)'s builder methods change a plain [`Config`] value; the
//! [`Registry`](crate::registry::Registry) takes it over, read-only, when the layer is first
//! used. Only the session limit can change afterwards, through
//! [`Sessions::set_max_sessions`](crate::Sessions::set_max_sessions).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Response, StatusCode};

use crate::bus::SessionBus;
use crate::hooks::{OnClose, OnOpen};
use crate::id::MakeSessionId;
use crate::info::Principal;
use crate::policy::{ClosePolicy, OpenPolicy};
use crate::rejection::Rejection;
use crate::store::SessionStore;

/// Default most bytes read from the body of a request that may open a session: 64 KiB. Real
/// MCP `initialize` requests are a few hundred bytes to a few KiB.
pub const DEFAULT_PEEK_LIMIT: usize = 64 * 1024;
/// Default deadline for reading the body of a request that may open a session: 10 seconds.
pub const DEFAULT_PEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default most bytes held by all body peeks of one session table at once: 16 MiB.
pub const DEFAULT_PEEK_BUDGET: usize = 16 * 1024 * 1024;
/// Default `Retry-After` of a 503 or 429 the layer answers: 5 seconds.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Default idle timeout: 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default session limit: 10,000 sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

pub(crate) type PrincipalFn = Arc<dyn Fn(&Parts) -> Option<Principal> + Send + Sync>;
pub(crate) type ClientKeyFn = Arc<dyn Fn(&Parts) -> Option<ClientKey> + Send + Sync>;
pub(crate) type PartsPredicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;
pub(crate) type RejectionFn = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync>;
pub(crate) type KeepFn = Arc<dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync>;

/// Who a request comes from, for [`max_sessions_per_client`](crate::SessionLayer::max_sessions_per_client):
/// an IP address (the usual choice: the peer address from axum's `ConnectInfo`, or the first
/// hop of a trusted `X-Forwarded-For`) or any string.
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

/// How [`evict_idlest`](crate::SessionLayer::evict_idlest) ranks sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EvictBy {
    /// By the start of the session's last request. A session whose only activity is an open
    /// response stream (an MCP GET stream) ranks by the request that opened the stream, so it
    /// can be evicted; its streams end, and MCP clients then re-initialize on 404
    /// (MCP 2025-11-25, Streamable HTTP, Session Management). The default.
    #[default]
    LastRequest,
    /// By the session's last activity (a request starting or a response ending); sessions
    /// with a request or response body in flight are never evicted.
    LastActivity,
}

/// The headers of an opening request kept for replay by default: what a per-session service
/// needs to read an MCP `initialize` (`content-type`, `accept`, `mcp-protocol-version`) and
/// `host` (services that check it against DNS rebinding, rmcp's among them, refuse a request
/// without it).
pub(crate) fn default_replay_headers() -> Vec<HeaderName> {
    vec![
        http::header::HOST,
        http::header::CONTENT_TYPE,
        http::header::ACCEPT,
        HeaderName::from_static("mcp-protocol-version"),
    ]
}

/// Milliseconds in `d`, saturating instead of truncating; at least 1.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Everything a session table and its services read; see the builder methods of
/// [`SessionLayer`](crate::SessionLayer) for each field's meaning and default.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) header: HeaderName,
    pub(crate) open: OpenPolicy,
    pub(crate) close: ClosePolicy,
    pub(crate) mcp: bool,
    pub(crate) peek_limit: usize,
    pub(crate) peek_timeout: Option<Duration>,
    pub(crate) peek_budget: usize,
    /// Idle timeout in ms; 0: sessions never expire.
    pub(crate) idle_ms: u64,
    pub(crate) sweep_interval: Option<Duration>,
    /// Most lifetime in ms; 0: unlimited.
    pub(crate) lifetime_ms: u64,
    pub(crate) max_sessions: usize,
    pub(crate) max_per_principal: Option<usize>,
    pub(crate) max_per_client: Option<usize>,
    pub(crate) client_key: Option<ClientKeyFn>,
    pub(crate) evict: Option<EvictBy>,
    pub(crate) retry_after: Duration,
    pub(crate) sessionless: Option<PartsPredicate>,
    pub(crate) make_id: Arc<dyn MakeSessionId>,
    pub(crate) principal: Option<PrincipalFn>,
    pub(crate) rejection: Option<RejectionFn>,
    pub(crate) keep_session: Option<KeepFn>,
    pub(crate) session_extension: bool,
    pub(crate) on_open: Option<OnOpen>,
    pub(crate) on_close: Option<OnClose>,
    /// Shared records (restore on any node); `None`: sessions live in this table only.
    pub(crate) store: Option<Arc<dyn SessionStore>>,
    pub(crate) bus: Option<Arc<dyn SessionBus>>,
    /// Headers of the opening request kept in its record, for replay.
    pub(crate) replay_headers: Vec<HeaderName>,
    pub(crate) store_refresh: Option<Duration>,
    /// The wall clock (ms since the Unix epoch) at the table's epoch; set by the table.
    pub(crate) epoch_wall_ms: u64,
}

impl Config {
    pub(crate) fn new(open: OpenPolicy, close: ClosePolicy) -> Self {
        Self {
            header: crate::mcp::MCP_SESSION_ID,
            open,
            close,
            mcp: false,
            peek_limit: DEFAULT_PEEK_LIMIT,
            peek_timeout: Some(DEFAULT_PEEK_TIMEOUT),
            peek_budget: DEFAULT_PEEK_BUDGET,
            idle_ms: millis(DEFAULT_IDLE_TIMEOUT),
            sweep_interval: None,
            lifetime_ms: 0,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_per_principal: None,
            max_per_client: None,
            client_key: None,
            evict: None,
            retry_after: DEFAULT_RETRY_AFTER,
            sessionless: None,
            make_id: Arc::new(crate::id::UuidV4),
            principal: None,
            rejection: None,
            keep_session: None,
            session_extension: true,
            on_open: None,
            on_close: None,
            store: None,
            bus: None,
            replay_headers: default_replay_headers(),
            store_refresh: None,
            epoch_wall_ms: 0,
        }
    }

    /// The configured interval, or a quarter of the idle timeout (or of the lifetime, if that
    /// is shorter) clamped to 1 s..=60 s.
    pub(crate) fn sweep_interval(&self) -> Duration {
        self.sweep_interval.unwrap_or_else(|| {
            Duration::from_millis(self.shortest_timeout_ms() / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(60))
        })
    }

    /// The shorter of the idle timeout and the lifetime, in ms (0 when neither is set): no
    /// session opened at `t` can end by time before `t` plus this.
    pub(crate) fn shortest_timeout_ms(&self) -> u64 {
        match (self.idle_ms, self.lifetime_ms) {
            (0, l) => l,
            (i, 0) => i,
            (i, l) => i.min(l),
        }
    }

    /// Whether sessions can end by time at all (then a sweeper is worth running).
    pub(crate) fn expires(&self) -> bool {
        self.idle_ms != 0 || self.lifetime_ms != 0
    }
}
