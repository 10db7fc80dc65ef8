//! [`SessionLayer`]: configuration as a plain value, and the [`Layer`] that builds
//! [`SessionService`].

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Response, StatusCode};
use tower_layer::Layer;

use crate::bus::SessionBus;
use crate::config::{ClientKey, Config, EvictBy, millis};
use crate::hooks::CloseReason;
use crate::id::MakeSessionId;
use crate::info::{Principal, SessionInfo};
use crate::policy::{ClosePolicy, OpenPolicy};
use crate::registry::Registry;
use crate::rejection::Rejection;
use crate::service::SessionService;
use crate::sessions::Sessions;
use crate::store::SessionStore;

/// A [`Layer`] that gives the wrapped service sessions keyed by a request header.
///
/// The wrapped service `S` is the *inner* service: it is handed to the
/// [`SessionFactory`](crate::SessionFactory) as a template for each new per-session service,
/// and it serves sessionless requests. See the [crate docs](crate) for the request flow and
/// the status codes.
///
/// # A plain value, and one table
///
/// Every builder method returns a new layer and leaves the one it was called on unchanged:
/// `let b = a.clone().max_sessions(1)` does not change `a`. The session table and its
/// settings come into being, frozen, the first time [`sessions`](Self::sessions) or
/// [`Layer::layer`] is called on a layer; clones made from that layer (and every service it
/// builds) share that table. So configure first, then take the handle and build services:
///
/// ```
/// # use std::convert::Infallible;
/// # use tower_mcp_session::{SessionInfo, SessionLayer};
/// # let factory = |_: SessionInfo, inner: tower::util::BoxCloneSyncService<http::Request<()>, (), Infallible>| async move { Ok::<_, Infallible>(inner) };
/// let layer = SessionLayer::mcp(factory).max_sessions(100);
/// let sessions = layer.sessions();        // the table exists from here on
/// let same_table = layer.clone();         // shares it, with `sessions`
/// let other = layer.clone().max_sessions(5); // a new layer: its own table, once used
/// # let _ = (sessions, same_table, other);
/// ```
///
/// The only setting that can change at run time is the session limit, through
/// [`Sessions::set_max_sessions`].
#[must_use = "a layer does nothing until it wraps a service"]
pub struct SessionLayer<F> {
    factory: F,
    config: Config,
    table: Arc<OnceLock<Arc<Registry>>>,
}

impl<F> SessionLayer<F> {
    /// A layer for any header-keyed session protocol: header `Mcp-Session-Id` (change it with
    /// [`header`](Self::header)), every request without an id opens a session
    /// ([`OpenPolicy::any_request`]), no request closes one ([`ClosePolicy::never`]: DELETE
    /// reaches the session's service), no protocol-version routing, no method restrictions.
    pub fn new(factory: F) -> Self {
        Self {
            factory,
            config: Config::new(OpenPolicy::any_request(), ClosePolicy::never()),
            table: Arc::default(),
        }
    }

    /// A layer with the MCP Streamable HTTP rules (MCP 2025-11-25, Basic, Transports,
    /// Streamable HTTP, Session Management):
    ///
    /// - header `Mcp-Session-Id`;
    /// - a POST whose body is a JSON-RPC `initialize` request opens a session
    ///   ([`OpenPolicy::mcp_initialize`]);
    /// - DELETE closes the session ([`ClosePolicy::delete`]);
    /// - only GET, POST and DELETE are served (others: 405 Method Not Allowed);
    /// - requests declaring `MCP-Protocol-Version` 2026-07-28 or later are sessionless
    ///   (SEP-2567): they go to the inner service, any session id is ignored and none is
    ///   minted; a malformed version gets 400. Any client can send that header, so the inner
    ///   service faces the internet without session checks: give it its own authentication.
    #[cfg(feature = "mcp")]
    pub fn mcp(factory: F) -> Self {
        let mut layer = Self::new(factory);
        layer.config.open = OpenPolicy::mcp_initialize();
        layer.config.close = ClosePolicy::delete();
        layer.config.mcp = true;
        layer
    }

    /// A new layer (with no table yet) whose settings are this one's, changed by `change`.
    fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self.table = Arc::default();
        self
    }

    /// The header that carries the session id. Default: `Mcp-Session-Id`. Names are
    /// case-insensitive; the response that opens a session carries the id in this header.
    pub fn header(self, name: HeaderName) -> Self {
        self.with(|c| c.header = name)
    }

    /// Which requests without a session id open a session. Default:
    /// [`OpenPolicy::any_request`] for [`new`](Self::new), [`OpenPolicy::mcp_initialize`]
    /// for [`mcp`](Self::mcp).
    pub fn open_policy(self, policy: OpenPolicy) -> Self {
        self.with(|c| c.open = policy)
    }

    /// Which requests with a session id close it. Default: [`ClosePolicy::never`] for
    /// [`new`](Self::new), [`ClosePolicy::delete`] for [`mcp`](Self::mcp). A request the
    /// policy does not claim goes to the session's service.
    pub fn close_policy(self, policy: ClosePolicy) -> Self {
        self.with(|c| c.close = policy)
    }

    /// Most bytes read from the body of a request that may open a session, when the open
    /// policy looks at the body. Default: [`DEFAULT_PEEK_LIMIT`](crate::DEFAULT_PEEK_LIMIT)
    /// (64 KiB). A larger body is answered 413 Payload Too Large without reading the rest.
    pub fn peek_limit(self, bytes: usize) -> Self {
        self.with(|c| c.peek_limit = bytes)
    }

    /// Longest time the layer waits for the body of a request that may open a session.
    /// Default: [`DEFAULT_PEEK_TIMEOUT`](crate::DEFAULT_PEEK_TIMEOUT) (10 s). Past it the
    /// request is answered 408 Request Timeout (JSON-RPC -32000). Applies only inside a tokio
    /// runtime (the deadline is a tokio timer).
    pub fn peek_timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.peek_timeout = Some(timeout))
    }

    /// Most memory, in bytes, that the bodies of requests that may open a session may hold
    /// at once while they wait for more data (counted as the capacity of their copies).
    /// Default: [`DEFAULT_PEEK_BUDGET`](crate::DEFAULT_PEEK_BUDGET) (16 MiB). A request whose
    /// next chunk would exceed it is answered 503 Service Unavailable with `Retry-After`. A
    /// body that arrives whole in its first chunk never waits and is not counted, so clients
    /// trickling bodies cannot lock out one that sends its body at once. Together with the peek
    /// limit and timeout it bounds what clients without a session can make the server buffer,
    /// however many connections they open.
    pub fn peek_budget(self, bytes: usize) -> Self {
        self.with(|c| c.peek_budget = bytes)
    }

    /// A session unused for `timeout` while none of its requests or response bodies is in
    /// flight expires: later requests get 404 and the close hook runs with
    /// [`CloseReason::Expired`]. The timeout slides: every request and every finished
    /// response restarts it. Default: 30 minutes. Millisecond resolution; longer than
    /// `u64::MAX` ms saturates.
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.idle_ms = millis(timeout))
    }

    /// Sessions never expire for being idle; they end only by the close policy, eviction,
    /// [`max_lifetime`](Self::max_lifetime), [`Sessions::close`] or shutdown. Not advised on a
    /// public server: clients often disappear without sending DELETE.
    pub fn without_idle_timeout(self) -> Self {
        self.with(|c| c.idle_ms = 0)
    }

    /// Closes every session `lifetime` after it opened, busy or not (its open streams end),
    /// with [`CloseReason::LifetimeEnded`]; MCP clients then re-initialize on 404. Default:
    /// none.
    pub fn max_lifetime(self, lifetime: Duration) -> Self {
        self.with(|c| c.lifetime_ms = millis(lifetime))
    }

    /// How often the background sweeper closes sessions that have ended by time. Default: a
    /// quarter of the idle timeout (or of the lifetime, if shorter), between 1 s and 60 s.
    /// Expiry itself does not wait for the sweeper: a request for an expired session is
    /// answered 404 at once.
    pub fn sweep_interval(self, interval: Duration) -> Self {
        self.with(|c| c.sweep_interval = Some(interval.max(Duration::from_millis(1))))
    }

    /// Most sessions open at once. Default:
    /// [`DEFAULT_MAX_SESSIONS`](crate::DEFAULT_MAX_SESSIONS) (10,000). Past it an opening
    /// request gets 503 Service Unavailable with `Retry-After` (see
    /// [`retry_after`](Self::retry_after)), unless [`evict_idlest`](Self::evict_idlest) is
    /// on. Change it at run time with [`Sessions::set_max_sessions`].
    pub fn max_sessions(self, max: usize) -> Self {
        self.with(|c| c.max_sessions = max)
    }

    /// Most sessions one principal (see [`principal`](Self::principal)) may hold at once.
    /// Past it the principal's opening requests get 429 Too Many Requests with
    /// `Retry-After`. Requests without a principal are not counted. Default: no limit.
    pub fn max_sessions_per_principal(self, max: usize) -> Self {
        self.with(|c| c.max_per_principal = Some(max))
    }

    /// Most sessions one client (see [`client_key`](Self::client_key)) may hold at once. Past
    /// it the client's opening requests get 429 Too Many Requests with `Retry-After`; so one
    /// client cannot fill the table that every other client shares. Default: no limit.
    pub fn max_sessions_per_client(self, max: usize) -> Self {
        self.with(|c| c.max_per_client = Some(max))
    }

    /// Who an opening request comes from, for
    /// [`max_sessions_per_client`](Self::max_sessions_per_client); a request for which it
    /// returns `None` is not counted. With axum, key on the peer address:
    /// `|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ci| ClientKey::from(ci.0))`
    /// (served with `into_make_service_with_connect_info`). Behind a proxy, use the address
    /// the proxy reports, from a header only it can set. Default: none.
    pub fn client_key<K>(self, key: K) -> Self
    where
        K: Fn(&Parts) -> Option<ClientKey> + Send + Sync + 'static,
    {
        self.with(|c| c.client_key = Some(Arc::new(key)))
    }

    /// When the table is full, close a session to make room for the new one instead of
    /// answering 503 ([`CloseReason::Evicted`]). The victim is the oldest-ranked of a small
    /// sample (a few entries of four shards, as Redis samples keys): O(1) per open however
    /// large the table, never a scan. Ranked by the start of the last request unless
    /// [`evict_by`](Self::evict_by) says otherwise, so a session whose only activity is an
    /// open GET stream can be evicted (its stream ends). Pair it with per-client limits:
    /// eviction alone lets a fast client push out everyone else. Default: off.
    pub fn evict_idlest(self, evict: bool) -> Self {
        self.with(|c| c.evict = evict.then(|| c.evict.unwrap_or_default()))
    }

    /// How eviction ranks sessions (and turns eviction on). Default: [`EvictBy::LastRequest`].
    pub fn evict_by(self, by: EvictBy) -> Self {
        self.with(|c| c.evict = Some(by))
    }

    /// The `Retry-After` of the layer's 503 and 429 answers, rounded down to whole seconds
    /// (at least 1). Default: [`DEFAULT_RETRY_AFTER`](crate::DEFAULT_RETRY_AFTER) (5 s).
    pub fn retry_after(self, delay: Duration) -> Self {
        self.with(|c| c.retry_after = delay)
    }

    /// Requests for which `predicate` returns `true` skip sessions entirely and go to the
    /// inner service, whatever session header they carry (health checks, say). Checked after
    /// the MCP protocol-version rule. Default: none.
    pub fn sessionless<P>(self, predicate: P) -> Self
    where
        P: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.with(|c| c.sessionless = Some(Arc::new(predicate)))
    }

    /// The generator of new session ids. Default: [`UuidV4`](crate::UuidV4) (122 bits from
    /// the OS CSPRNG). Each id it produces is checked with
    /// [`SessionId::parse`](crate::SessionId::parse); an invalid id, or one that is already
    /// live three times in a row, fails the open with 500.
    pub fn make_session_id<G: MakeSessionId>(self, generator: G) -> Self {
        self.with(|c| c.make_id = Arc::new(generator))
    }

    /// Binds each session to the principal `extractor` finds on its opening request (for
    /// example a user id an authentication layer put in the extensions). A later request
    /// whose principal differs gets 404 Not Found exactly as an unknown id (MCP 2025-11-25,
    /// Security Best Practices, Session Hijacking). A session opened without a principal is
    /// usable only by requests without one, and a session opened with one only by requests
    /// with the same. Default: none.
    pub fn principal<P>(self, extractor: P) -> Self
    where
        P: Fn(&Parts) -> Option<Principal> + Send + Sync + 'static,
    {
        self.with(|c| c.principal = Some(Arc::new(extractor)))
    }

    /// Replaces the layer's own responses (see [`Rejection`]) with what `responder`
    /// returns, e.g. a gRPC status for tonic clients. Default: [`Rejection::to_response`], a
    /// JSON-RPC error body.
    pub fn rejection<R>(self, responder: R) -> Self
    where
        R: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.with(|c| c.rejection = Some(Arc::new(responder)))
    }

    /// Decides from the opening response's status and headers whether the new session is
    /// kept. Default: the status is 2xx (MCP 2025-11-25: the id is assigned with a successful
    /// `InitializeResult`). gRPC answers failed calls with HTTP 200 and a `grpc-status`
    /// header, so tonic users pass
    /// `|status, headers| status.is_success() && headers.get("grpc-status").is_none_or(|s| s == "0")`.
    /// A status sent only in trailers cannot be seen here. A session not kept is dropped at
    /// once, no id is sent and no hook runs.
    pub fn keep_session_if<K>(self, keep: K) -> Self
    where
        K: Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    {
        self.with(|c| c.keep_session = Some(Arc::new(keep)))
    }

    /// Whether requests routed to a session carry a [`Session`](crate::Session) in their
    /// extensions (read by the `axum` extractors and by
    /// `req.extensions().get::<Session>()`). Default: `true`. Turning it off saves the small
    /// allocations `http::Extensions` makes per request (see BENCHMARKS.md); the per-session
    /// service still receives the [`SessionInfo`] from the factory. The opening request
    /// always carries it.
    pub fn session_extension(self, insert: bool) -> Self {
        self.with(|c| c.session_extension = insert)
    }

    /// Runs `hook` each time a session opens, after it is stored and before the opening
    /// response leaves. Every `on_open` is followed by exactly one
    /// [`on_close`](Self::on_close), in that order; a session whose opening answer was not
    /// kept (or that a racing shutdown refused) runs neither. A panic in it is caught and
    /// logged. Default: none.
    pub fn on_open<H>(self, hook: H) -> Self
    where
        H: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        self.with(|c| c.on_open = Some(Arc::new(hook)))
    }

    /// Runs `hook` each time a session closes, with its info and why. It runs on the thread
    /// that closed the session (a request's, the sweeper's or the caller of [`Sessions`]
    /// methods), with no lock held; keep it short. It receives nothing that keeps the table
    /// alive, so it cannot form a reference cycle with it. A panic in it is caught and logged.
    /// Default: none.
    pub fn on_close<H>(self, hook: H) -> Self
    where
        H: Fn(&SessionInfo, CloseReason) + Send + Sync + 'static,
    {
        self.with(|c| c.on_close = Some(Arc::new(hook)))
    }

    /// Keeps a record of every session in `store`, shared by the nodes of a deployment, so
    /// that sessions survive a restart and span nodes. Default: no store, sessions live only
    /// in this table (as in 0.1) and their [data maps](crate::SessionData) in this process.
    ///
    /// With a store:
    ///
    /// * Opening a session writes its record (id, principal, creation time, the opening
    ///   request: method, URI, the [`replay_headers`](Self::replay_headers) and the body, read
    ///   whole within the [peek limit](Self::peek_limit) for every open policy) with a time to
    ///   live equal to the idle timeout, before the id is sent. The store unreachable: 503 with
    ///   `Retry-After` ([`Rejection::StoreUnavailable`]).
    /// * A request for a session live on this node makes no store round trip. A request for
    ///   one that is not is *restored*: loaded, rebuilt with the factory, the opening request
    ///   replayed into it (MCP: followed by `notifications/initialized`), then routed; one
    ///   restore per id per node at a time (see the [`store`](crate::store) module). No record:
    ///   404. The store unreachable: 503, never 404.
    /// * Records of sessions used on this node are refreshed in the background, once per
    ///   [`store_refresh_interval`](Self::store_refresh_interval), in batches.
    /// * A close policy request (DELETE) deletes the record and, with a [`bus`](Self::bus),
    ///   closes the session on every node; so do [`Sessions::close`] and the end of the
    ///   [lifetime](Self::max_lifetime) (in the background), and eviction unless another node
    ///   has used the session since this one did (then only this node's copy closes). Idle
    ///   expiry on one node and [`Sessions::shutdown`] (a rolling deploy) close only this
    ///   node's copy: the record stays for the others, until its time to live ends.
    /// * Data-map writes need the record, which is written once the per-session service has
    ///   answered the opening request: a handler of `initialize` cannot write yet (it gets
    ///   [`DataError::SessionGone`](crate::DataError::SessionGone)); treat an absent key as
    ///   its default instead of seeding it. A restore replays `initialize`: handlers of it must
    ///   not reset data either.
    pub fn store<T: SessionStore>(self, store: T) -> Self {
        let store: Arc<dyn SessionStore> = Arc::new(store);
        self.with(|c| c.store = Some(store))
    }

    /// Joins `bus` as one node: closes for good reach every node that holds the session, and
    /// [published](crate::Session::publish) messages reach the session's
    /// [subscribers](crate::Session::subscribe) on every node. Default: no bus; messages reach
    /// this node's subscribers only. Use it together with [`store`](Self::store).
    ///
    /// A node listens to a session from its open or restore there; with a networked bus the
    /// subscription takes a round trip to be in place, so a message published in the first
    /// milliseconds of a session's life on a node may miss that node's subscribers (a close
    /// it misses is caught by the next refresh round, see
    /// [`store_refresh_interval`](Self::store_refresh_interval)).
    pub fn bus<T: SessionBus>(self, bus: T) -> Self {
        let bus: Arc<dyn SessionBus> = Arc::new(bus);
        self.with(|c| c.bus = Some(bus))
    }

    /// The headers of the opening request kept in its [store](Self::store) record and replayed
    /// on restore. Default: `host`, `content-type`, `accept` and `mcp-protocol-version`, what
    /// an MCP server reads of `initialize` (a service that checks `Host` against DNS
    /// rebinding, as rmcp's does, refuses a replay without it). `authorization`, `cookie` and `proxy-authorization` are
    /// never kept, even if named: the record is readable by anyone with access to the store.
    pub fn replay_headers(self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        let names: Vec<HeaderName> = names.into_iter().collect();
        self.with(|c| c.replay_headers = names)
    }

    /// How often the records of sessions used on this node have their time to live reset to
    /// the idle timeout, in one batch per round. Default: a quarter of the idle timeout,
    /// clamped to 100 ms..=30 s; never more than half the idle timeout, whatever is set (so a
    /// record outlives every node's copy of its session). Each session costs at most one
    /// store command per interval, however many requests it gets. A round also closes this
    /// node's copies of sessions whose record is gone (closed through another node whose bus
    /// message this node missed).
    pub fn store_refresh_interval(self, interval: Duration) -> Self {
        self.with(|c| c.store_refresh = Some(interval.max(Duration::from_millis(10))))
    }

    /// The table of this layer, created with its settings on first use.
    fn registry(&self) -> Arc<Registry> {
        Arc::clone(
            self.table
                .get_or_init(|| Registry::new(self.config.clone())),
        )
    }

    /// A handle to this layer's session table (created now if this is its first use): count,
    /// look up, reach state, close sessions, shut down.
    pub fn sessions(&self) -> Sessions {
        Sessions {
            registry: self.registry(),
        }
    }
}

impl<S, F: Clone> Layer<S> for SessionLayer<F> {
    type Service = SessionService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.factory.clone(), self.registry())
    }
}

impl<F: Clone> Clone for SessionLayer<F> {
    /// A layer with the same settings that shares this one's table (the table this one has,
    /// or the one either creates first).
    fn clone(&self) -> Self {
        Self {
            factory: self.factory.clone(),
            config: self.config.clone(),
            table: Arc::clone(&self.table),
        }
    }
}

impl<F> fmt::Debug for SessionLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("header", &self.config.header)
            .field("open_policy", &self.config.open)
            .field("close_policy", &self.config.close)
            .field("mcp", &self.config.mcp)
            .field("max_sessions", &self.config.max_sessions)
            .field("evict", &self.config.evict)
            .finish_non_exhaustive()
    }
}
