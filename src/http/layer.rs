//! [`SessionLayerBuilder`]: the settings as a plain value; [`SessionLayer`]: the built layer,
//! one session table, and the [`Layer`] that wraps services in [`SessionService`].
//!
//! # Why an explicit `build`
//!
//! The session table is shared state: every service the layer builds, every clone of the
//! layer and every [`Sessions`] handle must see the same one. 0.2 created it lazily, on the
//! first `sessions()` or `layer()` call, behind a lock shared by clones, and reset it on every
//! builder call; a `sessions()` taken before the last builder call then pointed to another
//! table, and rmcp's factory had to be bound after the last builder call. Building it in an
//! explicit step makes the order visible in the types: a [`SessionLayerBuilder`] has settings
//! and no table, a [`SessionLayer`] has a table and no settings to change, and nothing can
//! observe a half-configured table. `build` needs no tokio runtime: the background tasks start
//! with the first request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Response, StatusCode};
use tower_layer::Layer;

use crate::close::CloseReason;
use crate::cluster::{Cluster, Link};
use crate::handle::sessions::Sessions;
use crate::http::config::Config;
use crate::http::endpoint::Endpoint;
use crate::http::policy::{ClosePolicy, OpenPolicy};
use crate::http::profile::Profile;
use crate::http::rejection::Rejection;
use crate::http::service::SessionService;
use crate::id::MakeSessionId;
use crate::info::ClientKey;
use crate::info::{Principal, SessionInfo};
use crate::metrics::{Metrics, Setup};
use crate::table::{Eviction, Table, TableSettings};
use crate::time::millis;

/// The settings of a [`SessionLayer`], as a plain value: every method takes the builder and
/// returns it changed; [`build`](Self::build) makes the layer and its session table.
///
/// Start from [`SessionLayer::mcp`] (the MCP Streamable HTTP rules) or
/// [`SessionLayer::generic`] (any header-keyed session protocol). Every duration and count is
/// accepted as given, `0` and `MAX` included, without a panic: durations are counted in whole
/// milliseconds and saturate, and a duration too long to be a deadline means "never".
#[must_use = "a builder does nothing until it is built"]
pub struct SessionLayerBuilder<F> {
    factory: F,
    config: Config,
    table: TableSettings,
    cluster: Option<Cluster>,
}

/// A [`Layer`] that gives the wrapped service sessions keyed by a request header; built by
/// [`SessionLayerBuilder::build`].
///
/// The wrapped service `S` is the *inner* service: it is handed to the
/// [`SessionFactory`](crate::SessionFactory) as a template for each new per-session service,
/// and it serves sessionless requests. See the [crate docs](crate) for the request flow and
/// the status codes.
///
/// The layer owns one session table. Clones of the layer, every service it builds and every
/// [`Sessions`] handle share it:
///
/// ```
/// # use std::convert::Infallible;
/// # use tower_mcp_session::{SessionInfo, SessionLayer};
/// # let factory = |_: SessionInfo, inner: tower::util::BoxCloneSyncService<http::Request<()>, (), Infallible>| async move { Ok::<_, Infallible>(inner) };
/// let layer = SessionLayer::mcp(factory).max_sessions(100).build();
/// let sessions = layer.sessions(); // this layer's table
/// let same_table = layer.clone(); // shares it
/// # let _ = (sessions, same_table);
/// ```
///
/// The only setting that can change at run time is the session limit, through
/// [`Sessions::set_max_sessions`].
pub struct SessionLayer<F> {
    factory: F,
    endpoint: Arc<Endpoint>,
}

impl<F> SessionLayer<F> {
    /// A builder for any header-keyed session protocol: header `Mcp-Session-Id` (change it
    /// with [`header`](SessionLayerBuilder::header)), every request without an id opens a
    /// session ([`OpenPolicy::any_request`]), no request closes one ([`ClosePolicy::never`]:
    /// DELETE reaches the session's service), no protocol-version routing, no method
    /// restrictions.
    pub fn generic(factory: F) -> SessionLayerBuilder<F> {
        SessionLayerBuilder::new(
            factory,
            Profile::Generic,
            OpenPolicy::any_request(),
            ClosePolicy::never(),
        )
    }

    /// A builder with the MCP Streamable HTTP rules (MCP 2025-11-25, Basic, Transports,
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
    pub fn mcp(factory: F) -> SessionLayerBuilder<F> {
        SessionLayerBuilder::new(
            factory,
            Profile::Mcp,
            OpenPolicy::mcp_initialize(),
            ClosePolicy::delete(),
        )
    }

    /// A handle to this layer's session table: count, look up, reach state, close sessions,
    /// shut down.
    pub fn sessions(&self) -> Sessions {
        self.endpoint.sessions()
    }
}

impl<F> SessionLayerBuilder<F> {
    fn new(factory: F, profile: Profile, open: OpenPolicy, close: ClosePolicy) -> Self {
        Self {
            factory,
            config: Config::new(profile, open, close),
            table: TableSettings::default(),
            cluster: None,
        }
    }

    /// Makes the layer: its session table, with these settings frozen, and the link to the
    /// [cluster](Self::cluster) if there is one. No tokio runtime is needed; the background
    /// tasks (the sweeper, the refresher) start with the first request.
    pub fn build(mut self) -> SessionLayer<F> {
        // Registered with the recorder installed now (see the `metrics` module).
        let metrics = Metrics::register(&Setup {
            clustered: self.cluster.is_some(),
            bus: self.cluster.as_ref().is_some_and(Cluster::has_bus),
            max_sessions: self.table.max_sessions,
            peek_budget: self.config.peek_budget,
        });
        self.config.metrics = metrics.clone();
        self.table.metrics = metrics;
        let table = Table::new(self.table);
        let link = Link::new(&table, self.cluster);
        SessionLayer {
            factory: self.factory,
            endpoint: Arc::new(Endpoint::new(self.config, table, link)),
        }
    }

    /// The header that carries the session id. Default: `Mcp-Session-Id`. Names are
    /// case-insensitive; the response that opens a session carries the id in this header.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.config.header = name;
        self
    }

    /// Which requests without a session id open a session. Default:
    /// [`OpenPolicy::any_request`] for [`generic`](SessionLayer::generic),
    /// [`OpenPolicy::mcp_initialize`] for [`mcp`](SessionLayer::mcp).
    pub fn open_policy(mut self, policy: OpenPolicy) -> Self {
        self.config.open = policy;
        self
    }

    /// Which requests with a session id close it. Default: [`ClosePolicy::never`] for
    /// [`generic`](SessionLayer::generic), [`ClosePolicy::delete`] for
    /// [`mcp`](SessionLayer::mcp). A request the policy does not claim goes to the session's
    /// service.
    pub fn close_policy(mut self, policy: ClosePolicy) -> Self {
        self.config.close = policy;
        self
    }

    /// Most bytes read from the body of a request that may open a session, when the open
    /// policy looks at the body (and, with a [cluster](Self::cluster), of every opening
    /// request, whose body the record keeps). Default: 64 KiB. A larger body is answered 413
    /// Payload Too Large without reading the rest.
    pub fn peek_limit(mut self, bytes: usize) -> Self {
        self.config.peek_limit = bytes;
        self
    }

    /// Longest time the layer waits for the body of a request that may open a session.
    /// Default: 10 s. Past it the request is answered 408 Request Timeout (JSON-RPC -32000).
    /// Applies only inside a tokio runtime (the deadline is a tokio timer); a timeout too long
    /// to be a deadline is none.
    pub fn peek_timeout(mut self, timeout: Duration) -> Self {
        self.config.peek_timeout = Some(timeout);
        self
    }

    /// Most memory, in bytes, that the bodies of requests that may open a session may hold
    /// at once while they wait for more data (counted as the capacity of their copies).
    /// Default: 16 MiB. A request whose next chunk would exceed it is answered 503 Service
    /// Unavailable with `Retry-After` ([`Rejection::PeekBudgetSpent`]). A body that arrives
    /// whole in its first chunk never waits and is not counted, so clients trickling bodies
    /// cannot lock out one that sends its body at once. Together with the peek limit and
    /// timeout it bounds what clients without a session can make the server buffer, however
    /// many connections they open.
    pub fn peek_budget(mut self, bytes: usize) -> Self {
        self.config.peek_budget = bytes;
        self
    }

    /// A session unused for `timeout` while none of its requests or response bodies is in
    /// flight expires: later requests get 404 and the close hook runs with
    /// [`CloseReason::Expired`]. The timeout slides: every request and every finished
    /// response restarts it. Default: 30 minutes. Millisecond resolution (at least 1 ms);
    /// longer than `u64::MAX` ms saturates. With a [cluster](Self::cluster) it is also the
    /// time to live of the session records.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.table.idle_ms = millis(timeout).max(1);
        self
    }

    /// Sessions never expire for being idle; they end only by the close policy, eviction,
    /// [`max_lifetime`](Self::max_lifetime), [`Sessions::close`] or shutdown (with a
    /// [cluster](Self::cluster), their records have no time to live). Not advised on a public
    /// server: clients often disappear without sending DELETE.
    pub fn without_idle_timeout(mut self) -> Self {
        self.table.idle_ms = 0;
        self
    }

    /// Closes every session `lifetime` after it opened, busy or not (its open streams end),
    /// with [`CloseReason::LifetimeEnded`]; MCP clients then re-initialize on 404. A restored
    /// session counts from its creation on the node that opened it. Default: none.
    /// Millisecond resolution (at least 1 ms).
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.table.lifetime_ms = millis(lifetime).max(1);
        self
    }

    /// How often the background sweeper closes sessions that have ended by time. Default: a
    /// quarter of the idle timeout (or of the lifetime, if shorter), between 1 s and 60 s; at
    /// least 1 ms. Expiry itself does not wait for the sweeper: a request for an expired
    /// session is answered 404 at once.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.table.sweep_interval = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// Most sessions open at once. Default: 10,000. Past it an opening request gets 503
    /// Service Unavailable with `Retry-After` (see [`retry_after`](Self::retry_after)), unless
    /// [`eviction`](Self::eviction) is on. Change it at run time with
    /// [`Sessions::set_max_sessions`].
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.table.max_sessions = max;
        self
    }

    /// Most sessions one principal (see [`principal`](Self::principal)) may hold at once.
    /// Past it the principal's opening requests get 429 Too Many Requests with
    /// `Retry-After`. Requests without a principal are not counted. Default: no limit.
    pub fn max_sessions_per_principal(mut self, max: usize) -> Self {
        self.table.max_per_principal = Some(max);
        self
    }

    /// Most sessions one client (see [`client_key`](Self::client_key)) may hold at once. Past
    /// it the client's opening requests get 429 Too Many Requests with `Retry-After`; so one
    /// client cannot fill the table that every other client shares. Default: no limit.
    pub fn max_sessions_per_client(mut self, max: usize) -> Self {
        self.table.max_per_client = Some(max);
        self
    }

    /// Who an opening request comes from, for
    /// [`max_sessions_per_client`](Self::max_sessions_per_client); a request for which it
    /// returns `None` is not counted. With axum, key on the peer address:
    /// `|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ci| ClientKey::from(ci.0))`
    /// (served with `into_make_service_with_connect_info`). Behind a proxy, use the address
    /// the proxy reports, from a header only it can set. Default: none.
    pub fn client_key<K>(mut self, key: K) -> Self
    where
        K: Fn(&Parts) -> Option<ClientKey> + Send + Sync + 'static,
    {
        self.config.client_key = Some(Arc::new(key));
        self
    }

    /// What a full table does with an opening request: refuse it (503 with `Retry-After`,
    /// [`Eviction::Off`], the default) or close a sampled session to make room
    /// ([`Eviction::LastRequest`], [`Eviction::LastActivity`]; O(1) per open however large
    /// the table, never a scan; the victim's close reason is [`CloseReason::Evicted`]). Pair
    /// eviction with per-client limits: eviction alone lets a fast client push out everyone
    /// else.
    pub fn eviction(mut self, eviction: Eviction) -> Self {
        self.table.eviction = eviction;
        self
    }

    /// The `Retry-After` of the layer's 503 and 429 answers, rounded down to whole seconds
    /// (at least 1). Default: 5 s.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.config.retry_after = delay;
        self
    }

    /// Requests for which `predicate` returns `true` skip sessions entirely and go to the
    /// inner service, whatever session header they carry (health checks, say). Checked after
    /// the MCP protocol-version rule. Default: none.
    pub fn sessionless<P>(mut self, predicate: P) -> Self
    where
        P: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.config.sessionless = Some(Arc::new(predicate));
        self
    }

    /// The generator of new session ids. Default: [`UuidV4`](crate::UuidV4) (122 bits from
    /// the OS CSPRNG). Each id it produces is checked with
    /// [`SessionId::parse`](crate::SessionId::parse); an invalid id, or one that is already
    /// live three times in a row, fails the open with 500.
    pub fn make_session_id<G: MakeSessionId>(mut self, generator: G) -> Self {
        self.config.make_id = Arc::new(generator);
        self
    }

    /// Binds each session to the principal `extractor` finds on its opening request (for
    /// example a user id an authentication layer put in the extensions). A later request
    /// whose principal differs gets 404 Not Found exactly as an unknown id (MCP 2025-11-25,
    /// Security Best Practices, Session Hijacking). A session opened without a principal is
    /// usable only by requests without one, and a session opened with one only by requests
    /// with the same. Default: none.
    pub fn principal<P>(mut self, extractor: P) -> Self
    where
        P: Fn(&Parts) -> Option<Principal> + Send + Sync + 'static,
    {
        self.config.principal = Some(Arc::new(extractor));
        self
    }

    /// Replaces the layer's own responses (see [`Rejection`]) with what `responder`
    /// returns, e.g. a gRPC status for tonic clients. Default: [`Rejection::to_response`], a
    /// JSON-RPC error body.
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
    /// once, no id is sent and no hook runs.
    pub fn keep_session_if<K>(mut self, keep: K) -> Self
    where
        K: Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    {
        self.config.keep_session = Some(Arc::new(keep));
        self
    }

    /// Whether requests routed to a session carry a [`Session`](crate::Session) in their
    /// extensions (read by the `axum` extractors and by `req.extensions().get::<Session>()`).
    /// Default: `true`. Turning it off saves the small allocation `http::Extensions` makes per
    /// request; the per-session service still receives the [`SessionInfo`] from the factory.
    /// The opening request always carries it.
    pub fn session_extension(mut self, insert: bool) -> Self {
        self.config.session_extension = insert;
        self
    }

    /// Runs `hook` each time a session opens, after it is stored and before the opening
    /// response leaves (and on each node for its own copy: a restore is an open there).
    /// Every `on_open` is followed by exactly one [`on_close`](Self::on_close), in that
    /// order; a session whose opening answer was not kept (or that a racing shutdown refused)
    /// runs neither. A panic in it is caught and logged. Default: none.
    pub fn on_open<H>(mut self, hook: H) -> Self
    where
        H: Fn(&SessionInfo) + Send + Sync + 'static,
    {
        self.table.hooks.on_open = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` each time a session closes, with its info and why. It runs on the thread
    /// that closed the session (a request's, the sweeper's or the caller of [`Sessions`]
    /// methods), with no lock held; keep it short. It receives nothing that keeps the table
    /// alive, so it cannot form a reference cycle with it. A panic in it is caught and logged.
    /// Default: none.
    pub fn on_close<H>(mut self, hook: H) -> Self
    where
        H: Fn(&SessionInfo, CloseReason) + Send + Sync + 'static,
    {
        self.table.hooks.on_close = Some(Arc::new(hook));
        self
    }

    /// Shares the sessions with the other nodes of a deployment through `cluster` (a store
    /// for records and data, optionally a bus for messages and closes): sessions survive a
    /// restart and any node serves any session. See [`Cluster`] for what changes. Default:
    /// none, sessions live in this process only.
    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = Some(cluster);
        self
    }
}

impl<S, F: Clone> Layer<S> for SessionLayer<F> {
    type Service = SessionService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.factory.clone(), Arc::clone(&self.endpoint))
    }
}

impl<F: Clone> Clone for SessionLayer<F> {
    /// A layer that shares this one's table.
    fn clone(&self) -> Self {
        Self {
            factory: self.factory.clone(),
            endpoint: Arc::clone(&self.endpoint),
        }
    }
}

impl<F: Clone> Clone for SessionLayerBuilder<F> {
    /// The same settings; each builder's `build` makes a table of its own.
    fn clone(&self) -> Self {
        Self {
            factory: self.factory.clone(),
            config: self.config.clone(),
            table: self.table.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

impl<F> fmt::Debug for SessionLayerBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .field("header", &self.config.header)
            .field("profile", &self.config.profile)
            .field("open_policy", &self.config.open)
            .field("close_policy", &self.config.close)
            .field("max_sessions", &self.table.max_sessions)
            .field("eviction", &self.table.eviction)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl<F> fmt::Debug for SessionLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLayer")
            .field("header", &self.endpoint.config.header)
            .field("profile", &self.endpoint.config.profile)
            .field("sessions", &self.sessions())
            .field("clustered", &self.endpoint.clustered)
            .finish_non_exhaustive()
    }
}
