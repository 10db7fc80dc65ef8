//! [`SessionLayer`]: configuration and builder methods.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Response, StatusCode};
use tower_layer::Layer;

use crate::id::{MakeSessionId, SessionId, UuidV4};
use crate::info::Principal;
use crate::lifecycle::{CloseReason, Sessions};
use crate::mcp::MCP_SESSION_ID;
use crate::policy::OpenPolicy;
use crate::registry::Registry;
use crate::rejection::Rejection;
use crate::service::SessionService;

/// Default peek limit: 1 MiB.
pub const DEFAULT_PEEK_LIMIT: usize = 1024 * 1024;
/// Default `Retry-After` of a 503 for a full session table: 5 seconds.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

type PrincipalFn = Arc<dyn Fn(&Parts) -> Option<Principal> + Send + Sync>;
type SessionlessFn = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;
type RejectionFn = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync>;
type KeepFn = Arc<dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync>;

/// Per-request settings, frozen into an `Arc` when the layer wraps a service.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) header: HeaderName,
    pub(crate) open: OpenPolicy,
    pub(crate) peek_limit: usize,
    pub(crate) mcp: bool,
    pub(crate) terminate_on_delete: bool,
    pub(crate) retry_after: Duration,
    pub(crate) sessionless: Option<SessionlessFn>,
    pub(crate) make_id: Arc<dyn MakeSessionId>,
    pub(crate) principal: Option<PrincipalFn>,
    pub(crate) rejection: Option<RejectionFn>,
    pub(crate) keep_session: Option<KeepFn>,
    pub(crate) session_info_extension: bool,
}

/// A [`Layer`] that gives the wrapped service sessions keyed by a request header.
///
/// The wrapped service `S` is the *inner* service: it is handed to the
/// [`SessionFactory`](crate::SessionFactory) as a template for each new per-session service,
/// and it serves sessionless requests. See the [crate docs](crate) for the request flow and
/// the status codes.
///
/// Every clone of a layer, and every service it builds, shares one session table and its
/// lifecycle settings ([`idle_timeout`](Self::idle_timeout),
/// [`max_sessions`](Self::max_sessions), [`evict_idlest`](Self::evict_idlest),
/// [`on_close`](Self::on_close)): setting one of those on any clone changes it for all.
/// The other settings are taken when [`Layer::layer`] is called.
pub struct SessionLayer<F> {
    factory: F,
    config: Config,
    registry: Arc<Registry>,
}

impl<F> SessionLayer<F> {
    /// A layer for any header-keyed session protocol: header `Mcp-Session-Id` (change it with
    /// [`header`](Self::header)), every request without an id opens a session
    /// ([`OpenPolicy::any_request`]), no protocol-version routing, no method restrictions.
    pub fn new(factory: F) -> Self {
        Self {
            factory,
            config: Config {
                header: MCP_SESSION_ID,
                open: OpenPolicy::any_request(),
                peek_limit: DEFAULT_PEEK_LIMIT,
                mcp: false,
                terminate_on_delete: true,
                retry_after: DEFAULT_RETRY_AFTER,
                sessionless: None,
                make_id: Arc::new(UuidV4),
                principal: None,
                rejection: None,
                keep_session: None,
                session_info_extension: true,
            },
            registry: Arc::new(Registry::new()),
        }
    }

    /// A layer with the MCP Streamable HTTP rules (MCP 2025-11-25, Basic, Transports,
    /// Streamable HTTP, Session Management):
    ///
    /// - header `Mcp-Session-Id`;
    /// - a POST whose body is a JSON-RPC `initialize` request opens a session
    ///   ([`OpenPolicy::mcp_initialize`]);
    /// - only GET, POST and DELETE are served (others: 405 Method Not Allowed);
    /// - requests declaring `MCP-Protocol-Version` 2026-07-28 or later are sessionless
    ///   (SEP-2567): they go to the inner service, any session id is ignored and none is
    ///   minted; a malformed version gets 400.
    pub fn mcp(factory: F) -> Self {
        let mut layer = Self::new(factory);
        layer.config.open = OpenPolicy::mcp_initialize();
        layer.config.mcp = true;
        layer
    }

    /// The header that carries the session id. Default: `Mcp-Session-Id`. Names are
    /// case-insensitive; the response that opens a session carries the id in this header.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.config.header = name;
        self
    }

    /// Which requests without a session id open a session. Default:
    /// [`OpenPolicy::any_request`] for [`new`](Self::new), [`OpenPolicy::mcp_initialize`]
    /// for [`mcp`](Self::mcp).
    pub fn open_policy(mut self, policy: OpenPolicy) -> Self {
        self.config.open = policy;
        self
    }

    /// Most bytes read from the body of a request that may open a session, when the open
    /// policy looks at the body. Default: [`DEFAULT_PEEK_LIMIT`] (1 MiB). A larger body is
    /// answered 413 Payload Too Large without reading the rest.
    pub fn peek_limit(mut self, bytes: usize) -> Self {
        self.config.peek_limit = bytes;
        self
    }

    /// A session unused for `timeout` while none of its requests or response bodies is in
    /// flight expires: later requests get 404 and the close hook runs with
    /// [`CloseReason::Expired`]. The timeout slides: every request and every finished
    /// response restarts it. Default: 30 minutes. Shared by all clones of the layer.
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.registry.settings.set_idle_timeout(Some(timeout));
        self
    }

    /// Sessions never expire; they end only by DELETE, eviction or shutdown. Not advised on
    /// a public server: clients often disappear without sending DELETE.
    pub fn without_idle_timeout(self) -> Self {
        self.registry.settings.set_idle_timeout(None);
        self
    }

    /// How often the background sweeper closes expired sessions. Default: a quarter of the
    /// idle timeout, between 1 s and 60 s. Expiry itself does not wait for the sweeper: a
    /// request for an expired session is answered 404 at once.
    pub fn sweep_interval(self, interval: Duration) -> Self {
        self.registry.settings.set_sweep_interval(interval);
        self
    }

    /// Most sessions open at once. Default: 10,000. Past it an opening request gets 503
    /// Service Unavailable with `Retry-After` (see [`retry_after`](Self::retry_after)),
    /// unless [`evict_idlest`](Self::evict_idlest) is on. Shared by all clones of the layer.
    pub fn max_sessions(self, max: usize) -> Self {
        self.registry.settings.set_max_sessions(max);
        self
    }

    /// When the table is full, close the session idle the longest (one with nothing in
    /// flight; [`CloseReason::Evicted`]) to make room, instead of answering 503. Finding it
    /// scans the table (O(sessions)). Default: off.
    pub fn evict_idlest(self, evict: bool) -> Self {
        self.registry.settings.set_evict_idlest(evict);
        self
    }

    /// The `Retry-After` of a 503 for a full table, rounded down to whole seconds (at least
    /// 1). Default: [`DEFAULT_RETRY_AFTER`] (5 s).
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.config.retry_after = delay;
        self
    }

    /// Whether DELETE with a session id closes the session (answering 204 No Content).
    /// Default: `true`. When `false`, DELETE gets 405 Method Not Allowed with
    /// `Allow: GET, POST` (MCP 2025-11-25: servers may refuse client-initiated termination).
    pub fn terminate_on_delete(mut self, terminate: bool) -> Self {
        self.config.terminate_on_delete = terminate;
        self
    }

    /// Requests for which `predicate` returns `true` skip sessions entirely and go to the
    /// inner service, whatever session header they carry (health checks, a sessionless
    /// protocol version). Checked after the MCP protocol-version rule. Default: none.
    pub fn sessionless<P>(mut self, predicate: P) -> Self
    where
        P: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.config.sessionless = Some(Arc::new(predicate));
        self
    }

    /// The generator of new session ids. Default: [`UuidV4`] (122 bits from the OS CSPRNG).
    /// Each id it produces is checked with [`SessionId::parse`]; an invalid id, or one that
    /// is already live three times in a row, fails the open with 500.
    pub fn session_id<G: MakeSessionId>(mut self, generator: G) -> Self {
        self.config.make_id = Arc::new(generator);
        self
    }

    /// Binds each session to the principal `extractor` finds on its opening request (for
    /// example a user id an authentication layer put in the extensions). A later request
    /// whose principal differs, or is missing, gets 404 Not Found exactly as an unknown id
    /// (MCP 2025-11-25, Security Best Practices, Session Hijacking). Default: none.
    pub fn principal<P>(mut self, extractor: P) -> Self
    where
        P: Fn(&Parts) -> Option<Principal> + Send + Sync + 'static,
    {
        self.config.principal = Some(Arc::new(extractor));
        self
    }

    /// Replaces the layer's own responses (400, 404, 405, 413, 500, 503; see
    /// [`Rejection`]) with what `responder` returns, e.g. a gRPC status for tonic clients.
    /// Default: [`Rejection::to_response`], a JSON-RPC error body.
    pub fn rejection<R>(mut self, responder: R) -> Self
    where
        R: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.config.rejection = Some(Arc::new(responder));
        self
    }

    /// Decides from the opening response's status and headers whether the new session is
    /// kept. Default: the status is 2xx (MCP 2025-11-25: the id is assigned with a successful
    /// `InitializeResult`). gRPC answers failed calls with HTTP 200 and a `grpc-status`
    /// header, so tonic users pass
    /// `|status, headers| status.is_success() && headers.get("grpc-status").is_none_or(|s| s == "0")`.
    /// A status sent only in trailers cannot be seen here. A session not kept is dropped at
    /// once and no id is sent.
    pub fn keep_session_if<K>(mut self, keep: K) -> Self
    where
        K: Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    {
        self.config.keep_session = Some(Arc::new(keep));
        self
    }

    /// Whether requests routed to a session carry its [`SessionInfo`](crate::SessionInfo) in
    /// their extensions. Default: `true`. The per-session service already receives the
    /// `SessionInfo` from the factory, so it rarely needs the extension; turning it off saves
    /// the three small allocations `http::Extensions` makes per request (about 15% of the
    /// layer's per-request cost, see BENCHMARKS.md). The opening request always carries it.
    pub fn session_info_extension(mut self, insert: bool) -> Self {
        self.config.session_info_extension = insert;
        self
    }

    /// Runs `hook` each time a session closes, with its id and why. It runs on the thread that
    /// closed the session (a request's, the sweeper's or the caller of
    /// [`Sessions::close`]); keep it short. A panic in it is caught and logged. Replaces any
    /// earlier hook; shared by all clones of the layer.
    pub fn on_close<H>(self, hook: H) -> Self
    where
        H: Fn(&SessionId, CloseReason) + Send + Sync + 'static,
    {
        self.registry.settings.set_on_close(Arc::new(hook));
        self
    }

    /// A handle to the session table: count, look up, close sessions, shut down.
    pub fn sessions(&self) -> Sessions {
        Sessions {
            registry: Arc::clone(&self.registry),
        }
    }
}

impl<S, F: Clone> Layer<S> for SessionLayer<F> {
    type Service = SessionService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(
            inner,
            self.factory.clone(),
            Arc::new(self.config.clone()),
            Arc::clone(&self.registry),
        )
    }
}

impl<F: Clone> Clone for SessionLayer<F> {
    fn clone(&self) -> Self {
        Self {
            factory: self.factory.clone(),
            config: self.config.clone(),
            registry: Arc::clone(&self.registry),
        }
    }
}

impl<F> fmt::Debug for SessionLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("header", &self.config.header)
            .field("open_policy", &self.config.open)
            .field("peek_limit", &self.config.peek_limit)
            .field("mcp", &self.config.mcp)
            .field("sessions", &self.sessions())
            .finish_non_exhaustive()
    }
}
