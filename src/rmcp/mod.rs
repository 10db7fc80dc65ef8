//! A *stateful* [rmcp](https://docs.rs/rmcp) (the official Rust MCP SDK) session per layer
//! session, under the layer's id and lifecycle (feature `rmcp`).
//!
//! rmcp's [`StreamableHttpService`] has two modes. In stateless mode it fits behind the layer
//! as it is, but it has no GET stream, cannot send requests to the client (sampling,
//! elicitation, `roots/list`) and builds a handler per request that never sees the client's
//! `initialize`. In stateful mode it mints its own session ids and answers 404 to the
//! layer's. [`stateful`] gives you stateful mode with the layer's ids:
//!
//! ```no_run
//! # use std::convert::Infallible;
//! use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
//! use tower::ServiceBuilder;
//! use tower_mcp_session::SessionLayer;
//! use tower_mcp_session::rmcp::{stateful, stateless};
//! # #[derive(Clone, Default)] struct MyServer;
//! # impl rmcp::ServerHandler for MyServer {}
//!
//! # async fn run() {
//! let config = StreamableHttpServerConfig::default();
//! let factory = stateful(|| Ok(MyServer::default()), config.clone());
//! let layer = SessionLayer::mcp(factory).max_sessions(1_000).build();
//! // Sessionless requests (MCP-Protocol-Version >= 2026-07-28) go to rmcp's stateless mode.
//! let app = ServiceBuilder::new().layer(layer).service(stateless(|| Ok(MyServer), config));
//! # let _ = app;
//! # }
//! ```
//!
//! # Design
//!
//! rmcp (3.9 and later; built against 3.11) makes its `SessionManager` a public trait, and its in-memory
//! [`LocalSessionManager`] can create a session under an id the caller chooses (its
//! `restore_session`, meant for rmcp's own cross-instance restore), with or without an
//! [`EventStore`]. When the layer opens a session, [`Stateful`] builds a
//! `StreamableHttpService` whose session manager (`OneSession`) wraps a `LocalSessionManager`
//! that holds exactly one session, created with the layer's id on the `initialize` that
//! opened it. Every later request of that session reaches the same service (the layer routes
//! by id), so rmcp runs unchanged: JSON-RPC, SSE answers, the GET stream, server-initiated
//! requests routed back to their originating request (SEP-2260), cancellation, and
//! `Last-Event-ID` resumption (see [below](#resumption-and-the-event-store)).
//!
//! The other way, an adapter service in front of one shared rmcp stateful service that
//! rewrites ids both ways, was rejected: two id spaces to keep in step, rmcp's own 404s and
//! DELETE handling in the path, and rmcp's table growing beside the layer's with its own
//! limits and timeouts. With one manager per session there is a single table (the layer's)
//! and rmcp never decides whether an id exists.
//!
//! So the layer stays the one owner of ids, 400/404, DELETE (rmcp never sees it), the limits,
//! idle expiry, lifetime, eviction and principal binding (MCP 2025-11-25, Basic, Transports,
//! Streamable HTTP, Session Management; Security Best Practices, Session Hijacking).
//!
//! ## Ending rmcp's tasks
//!
//! rmcp runs a session as tasks that hold an `Arc` of the session manager, and the manager
//! holds the only sender of the session worker's channel: dropping the per-session service
//! would not end them. The per-session service ([`RmcpService`]) therefore holds a guard that
//! cancels the session's cancellation token (a child of the config's
//! [`cancellation_token`](StreamableHttpServerConfig::cancellation_token)) when the layer
//! drops it, which it does once the session is closed (DELETE, expiry, eviction,
//! [`Sessions::close`](crate::Sessions::close), shutdown) and its in-flight requests have finished.
//!
//! The other way round, when rmcp ends a session by itself (its handler quits, its worker
//! fails, its `keep_alive` runs out, the config's token is cancelled), the manager closes
//! the layer's session too ([`CloseReason::Closed`](crate::CloseReason::Closed)), through the
//! [`WeakSession`] of the session's opening request: it keeps nothing alive, and it closes
//! that very session, never a newer one under the same id (restored here since).
//!
//! ## Resumption and the event store
//!
//! rmcp gives every SSE event of a session an id, and a client that lost a stream sends a GET
//! with `Last-Event-ID` to get what followed.
//!
//! - **Without an event store** (the default), rmcp keeps each stream's events in the
//!   session's memory (a finished request's stream for `completed_cache_ttl`), and resumes
//!   the stream itself: the events the client missed, then the live rest. This works on the
//!   node that holds the session. A session [restored](crate::Cluster) on another
//!   node is a new rmcp session with an empty cache: the missed events are lost (rmcp answers
//!   the id of a request's stream with an empty stream, and that of the GET stream with a new
//!   GET stream).
//! - **With [`Stateful::event_store`]** (for example `RedisEventStore`, features `rmcp` and
//!   `redis`), rmcp writes every event of the session's streams (request streams, the GET
//!   stream, the priming events) to the store before sending it, under the id the store
//!   returns, and answers `Last-Event-ID` from the store alone. Any node can answer it: the
//!   layer restores the session there (factory, replayed `initialize` and
//!   `notifications/initialized`), then rmcp replays the events after the given id from the
//!   store. The ids the client sees are the store's, prefixed with `<session id>/`: a
//!   session replays only ids of its own, so an event id obtained elsewhere does not read
//!   another session's stream (which would bypass the layer's principal binding).
//!
//! A request stream resumed with `Last-Event-ID` is what the store holds when the GET arrives,
//! and then the stream ends (rmcp's `LocalSessionManager::resume`, `session/local.rs` in rmcp
//! 3.11): a request still running on the node that received it keeps running there, and its
//! later events reach the client on its next reconnection (the SSE `retry` hint). A GET
//! stream resumed with `Last-Event-ID` on a layer with a bus replays what it missed and then
//! stays live ([below](#several-nodes)). The answer to `initialize` carries the priming id
//! `0` whatever the store (rmcp's `tower.rs`): resuming from it replays nothing. Events are
//! stored as the JSON of rmcp's message and replayed as rmcp parses it back (what rmcp's
//! model types keep). The store is on the path of every event: an event the store fails to
//! write (past its timeout) is not sent, and a request whose stream cannot start (its
//! priming event not written) fails with 500.
//!
//! ## Several nodes
//!
//! Behind a balancer without stickiness, each node a session's requests land on holds its
//! own rmcp copy of the session (the layer restores it there). What must cross between the
//! copies goes through the layer's [bus](crate::Cluster::bus) (with a cluster that has one;
//! without, nothing changes from rmcp's behaviour on one node):
//!
//! - **State**: an rmcp handler keeps what must survive a change of node in the layer
//!   session's [data](crate::SessionData), reached with [`session`] from its request context;
//!   the handler's own fields are per copy.
//! - **The GET stream**: what a copy sends outside a request (logging, list-changed, resource
//!   updates, requests not tied to a client request) is published on the bus, and a GET
//!   stream on any node is the session's bus subscription there: it gets every copy's
//!   messages, each copy's in order, once per open GET stream. With an event store their
//!   ids are the store's, and a GET with `Last-Event-ID` on any node replays what the client
//!   missed, then continues live; without one, it continues live only (the missed events
//!   were in the memory of the copy that sent them). Two GET streams open at once (on one
//!   node or two) each get every message, where rmcp on one node feeds only the first.
//! - **Answers to server-initiated requests**: rmcp numbers each copy's requests to the
//!   client from 0, so the layer renames them `tms.<copy>.<number>` on the way out (the
//!   client answers with the id it was given, MCP 2025-11-25, Basic, Requests); an answer
//!   POSTed to another node is sent over the bus to the copy that asked, which gets it under
//!   its own number: its `create_message`, `list_roots` or elicitation completes. An answer
//!   with an id no copy gave is taken by the copy that received it, as rmcp does (202).
//! - **Cancellations**: a `notifications/cancelled` reaches every copy; the one running the
//!   request cancels it, the others ignore an id they do not know (as rmcp does).
//!
//! Each relayed message is one bus publish; the relay holds one bus subscription per session
//! per node (the layer's channel per session, already subscribed while the node holds the
//! session: no extra round trip). A message the bus fails to take is lost and logged at
//! debug level (the bus's outage itself is logged once by the layer).
//!
//! rmcp checks the `Host` header of every request, the replayed `initialize` included, against
//! [`allowed_hosts`](StreamableHttpServerConfig::allowed_hosts) (DNS rebinding protection),
//! and answers 403 to a request without one: keep `host` in the layer's
//! [`replay_headers`](crate::Cluster::replay_headers) (it is there by default), or the
//! replay is refused and the layer answers 404 and forgets the session.
//!
//! ## What differs from rmcp's own session handling
//!
//! - rmcp's `keep_alive` (its own idle timeout, 5 minutes by default) is off unless set with
//!   [`Stateful::session_config`]: it counts only messages, so it would end a session whose
//!   only activity is an open GET stream; the layer's idle timeout counts open streams as
//!   activity.
//! - The config's `session_store` is not used: restoring a session from a store on another
//!   instance needs an id the layer does not know, which it answers 404 first. The layer's
//!   own [store](crate::Cluster) does that job.
//! - Event ids are scoped to their session (above); rmcp's own manager replays any id its
//!   store knows.
//! - With a bus, the ids of the server's requests to the client are strings
//!   `tms.<copy>.<number>` instead of rmcp's numbers ([Several nodes](#several-nodes)).
//! - rmcp answers in SSE in stateful mode, even with `json_response`.

use std::fmt;
use std::future::{Ready, ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use rmcp::ServerHandler;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::WorkerTransport;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker, SessionConfig, SessionError,
};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::session::{
    EventId, EventStore, EventStoreError, EventStream, RestoreOutcome, ServerSseMessage,
    SessionId as RmcpSessionId, SessionManager,
};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::handle::session::{Session, WeakSession};
use crate::http::factory::SessionFactory;
use crate::info::SessionInfo;

mod context;
#[cfg(feature = "redis")]
mod event_store;
mod relay;

use relay::{Relay, Route};

pub use context::session;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "rmcp", feature = "redis"))))]
pub use event_store::RedisEventStore;

/// The rmcp service of one layer session: rmcp's [`StreamableHttpService`] in stateful mode,
/// whose session manager holds only this session.
pub type RmcpHttpService<H> = StreamableHttpService<H, OneSession>;

type HandlerFactory<H> = Arc<dyn Fn() -> Result<H, io::Error> + Send + Sync>;

/// The future of an [`EventStore`] method, as `async_trait` spells it.
type EventFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EventStoreError>> + Send + 'a>>;

/// A [`SessionFactory`] that runs one stateful rmcp session per layer session, under the
/// layer's id; made by [`stateful`].
pub struct Stateful<H> {
    handler: HandlerFactory<H>,
    config: StreamableHttpServerConfig,
    session_config: SessionConfig,
    event_store: Option<Arc<dyn EventStore>>,
}

/// A factory for [`SessionLayer::mcp`](crate::SessionLayer::mcp) that serves each session
/// with a stateful rmcp session whose id is the layer's.
///
/// `handler` builds the session's [`ServerHandler`]; rmcp calls it once, on the session's
/// `initialize`, and the handler then sees the client's real `initialize` parameters (its
/// info and capabilities) and can send requests to it. `config` is rmcp's HTTP
/// configuration: Host and Origin validation, SSE keep-alive and retry, body size, and the
/// parent cancellation token (cancelling it ends every session). Its `legacy_session_mode`
/// is forced on (that is rmcp's stateful mode) and its `session_store` off (see the
/// [module docs](self)).
pub fn stateful<H, F>(handler: F, config: StreamableHttpServerConfig) -> Stateful<H>
where
    H: ServerHandler + Send + 'static,
    F: Fn() -> Result<H, io::Error> + Send + Sync + 'static,
{
    let mut config = config.with_legacy_session_mode(true);
    config.session_store = None;
    let mut session_config = SessionConfig::default();
    session_config.keep_alive = None;
    session_config.sse_retry = config.sse_retry;
    Stateful {
        handler: Arc::new(handler),
        config,
        session_config,
        event_store: None,
    }
}

/// rmcp's stateless mode (no sessions, a handler per request): the inner service for the
/// requests the layer passes on without a session (MCP-Protocol-Version 2026-07-28 or later,
/// SEP-2567). `config`'s `legacy_session_mode` is forced off.
pub fn stateless<H, F>(
    handler: F,
    config: StreamableHttpServerConfig,
) -> StreamableHttpService<H, NeverSessionManager>
where
    H: ServerHandler + Send + 'static,
    F: Fn() -> Result<H, io::Error> + Send + Sync + 'static,
{
    StreamableHttpService::new(
        handler,
        Arc::new(NeverSessionManager::default()),
        config.with_legacy_session_mode(false),
    )
}

impl<H> Stateful<H> {
    /// Replaces the configuration of rmcp's session worker (channel capacity, `keep_alive`,
    /// SSE retry, how long finished request streams stay resumable, init timeout). Default:
    /// rmcp's defaults with `keep_alive` off (the layer's idle timeout applies) and
    /// `sse_retry` from the HTTP config.
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.session_config = config;
        self
    }

    /// Keeps the SSE events of every session in `store`, shared by the nodes of a deployment,
    /// so that a client can resume a stream (`Last-Event-ID`) through any node, after the
    /// layer has restored the session there (see [Resumption and the event
    /// store](self#resumption-and-the-event-store) for how, and its limits). Default: no
    /// store; rmcp resumes from each session's memory, on the node that holds it.
    ///
    /// Every session writes to the same store; its event ids are scoped to the session: the
    /// ids the client sees are the store's prefixed with `<session id>/`, and a session
    /// replays no other ids. With the `redis` feature, `RedisEventStore` keeps the events in
    /// Redis Streams.
    pub fn event_store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.event_store = Some(store);
        self
    }
}

impl<H> Clone for Stateful<H> {
    fn clone(&self) -> Self {
        Self {
            handler: Arc::clone(&self.handler),
            config: self.config.clone(),
            session_config: self.session_config.clone(),
            event_store: self.event_store.clone(),
        }
    }
}

impl<H> fmt::Debug for Stateful<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stateful")
            .field("config", &self.config)
            .field("session_config", &self.session_config)
            .field("event_store", &self.event_store.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, H> SessionFactory<S> for Stateful<H>
where
    H: ServerHandler + Send + 'static,
{
    type Service = RmcpService<H>;
    type State = ();
    type Error = io::Error;
    type Future = Ready<Result<(RmcpService<H>, ()), io::Error>>;

    fn make_session(&self, info: SessionInfo, _inner: S) -> Self::Future {
        let cancel = self.config.cancellation_token.child_token();
        let relay = Relay::new();
        let config = self.config.clone().with_cancellation_token(cancel.clone());
        let id: RmcpSessionId = Arc::from(info.id().as_str());
        let mut inner = LocalSessionManager::default();
        inner.session_config = self.session_config.clone();
        if let Some(store) = &self.event_store {
            inner = inner.with_event_store(Arc::new(SessionEvents {
                prefix: format!("{id}/"),
                store: Arc::clone(store),
                relay: Arc::clone(&relay),
            }));
        }
        let manager = OneSession {
            id,
            inner: Arc::new(inner),
            relay: Arc::clone(&relay),
            cancel: cancel.clone(),
        };
        let handler = Arc::clone(&self.handler);
        let service = StreamableHttpService::new(move || handler(), Arc::new(manager), config);
        ready(Ok((
            RmcpService {
                service,
                relay,
                _cancel: Arc::new(CancelOnDrop { token: cancel }),
            },
            (),
        )))
    }
}

/// Cancels the session's token when the last clone of its [`RmcpService`] is dropped.
struct CancelOnDrop {
    token: CancellationToken,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The per-session service [`Stateful`] builds: rmcp's [`StreamableHttpService`] for this
/// one session, plus the guard that ends rmcp's tasks for the session when the layer drops
/// the service (after the session is closed and its requests have finished).
pub struct RmcpService<H> {
    service: RmcpHttpService<H>,
    /// Holds the layer's session, taken from the first request (the opening one always
    /// carries it).
    relay: Arc<Relay>,
    _cancel: Arc<CancelOnDrop>,
}

impl<H> RmcpService<H> {
    /// The rmcp service inside.
    pub fn get_ref(&self) -> &RmcpHttpService<H> {
        &self.service
    }
}

impl<H> Clone for RmcpService<H> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            relay: Arc::clone(&self.relay),
            _cancel: Arc::clone(&self._cancel),
        }
    }
}

impl<H> fmt::Debug for RmcpService<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RmcpService")
            .field("cancelled", &self._cancel.token.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl<B, H> tower_service::Service<Request<B>> for RmcpService<H>
where
    RmcpHttpService<H>: tower_service::Service<
            Request<B>,
            Response = Response<BoxBody<Bytes, std::convert::Infallible>>,
            Error = std::convert::Infallible,
        >,
{
    type Response = Response<BoxBody<Bytes, std::convert::Infallible>>;
    type Error = std::convert::Infallible;
    type Future = <RmcpHttpService<H> as tower_service::Service<Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.relay.session().is_none()
            && let Some(session) = req.extensions().get::<Session>()
        {
            self.relay.attach(session);
        }
        self.service.call(req)
    }
}

/// rmcp's session manager for one layer session: rmcp's [`LocalSessionManager`] holding at
/// most one session, created with the layer's id when the session's `initialize` arrives.
/// Built by [`Stateful`]; it has no public constructor.
pub struct OneSession {
    id: RmcpSessionId,
    /// Holds this session only; its event store (if any) is a `SessionEvents`.
    inner: Arc<LocalSessionManager>,
    /// The layer's session (see [`RmcpService`]), to close when rmcp ends it, and what this
    /// copy shares with the session's copies on other nodes.
    relay: Arc<Relay>,
    /// The session's token: ends the relay's tasks.
    cancel: CancellationToken,
}

impl fmt::Debug for OneSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self.inner.sessions.try_read().ok().map(|s| !s.is_empty());
        f.debug_struct("OneSession")
            .field("live", &live)
            .field("event_store", &self.inner.event_store().is_some())
            .finish_non_exhaustive()
    }
}

impl OneSession {
    fn check(&self, id: &RmcpSessionId) -> Result<(), LocalSessionManagerError> {
        if *id == self.id {
            Ok(())
        } else {
            Err(LocalSessionManagerError::SessionNotFound(id.clone()))
        }
    }
}

/// A boxed stream of SSE events, for the methods that return one of two kinds.
type SseStream = Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync + 'static>>;

impl OneSession {
    /// The layer session, when this copy relays through the layer's bus.
    fn relayed(&self) -> Option<Session> {
        if !self.relay.across() {
            return None;
        }
        self.relay.session().and_then(WeakSession::upgrade)
    }

    /// Publishes `message` to the session's copies; a failure is logged (the bus's outage is
    /// logged once by the layer).
    async fn publish(&self, message: Bytes) {
        if let Some(session) = self.relayed()
            && let Err(error) = session.publish(message).await
        {
            tracing::debug!(%error, "rmcp session: a message for another node was lost");
        }
    }

    /// Starts this copy's part of the relay: its common stream pumped into the bus, and the
    /// answers and cancellations for it taken from the bus.
    async fn start_relay(&self, id: &RmcpSessionId) {
        let Some(session) = self.relayed() else {
            return;
        };
        // Subscribed before the first answer can be sent to another node.
        let mut subscription = session.subscribe();
        let common = match self.inner.create_standalone_stream(id).await {
            Ok(common) => common,
            Err(error) => {
                tracing::warn!(%error, "rmcp session: its common stream cannot be relayed");
                return;
            }
        };
        let (relay, weak) = (Arc::clone(&self.relay), session.downgrade());
        tokio::spawn(self.cancel.clone().run_until_cancelled_owned(async move {
            let mut common = std::pin::pin!(common);
            while let Some(event) = common.next().await {
                let event = relay.name_event(event);
                let Some(session) = weak.upgrade() else {
                    break;
                };
                if let Err(error) = session.publish(relay::event_message(&event)).await {
                    tracing::debug!(%error, "rmcp session: an event of its GET stream was lost");
                }
            }
        }));
        let (relay, inner, id) = (Arc::clone(&self.relay), Arc::clone(&self.inner), id.clone());
        tokio::spawn(self.cancel.clone().run_until_cancelled_owned(async move {
            while let Some(bytes) = subscription.recv().await {
                if let Some(message) = relay.take(&bytes)
                    && let Err(error) = inner.accept_message(&id, message).await
                {
                    tracing::debug!(%error, "rmcp session: a message from another node was refused");
                }
            }
        }));
    }
}

/// The events of the session's common stream published on the bus, as this node receives
/// them from now on; ends when the session closes here.
fn bus_events(session: &Session) -> impl Stream<Item = ServerSseMessage> + Send + Sync + 'static {
    BroadcastStream::new(session.subscribe().receiver)
        .filter_map(|message| relay::event_of(&message.ok()?))
}

/// Whether `event_id` is one of a common (GET) stream's: the store's `<entry>@<stream>` with
/// a stream id ending in `:common`, or rmcp's own `<index>` (a request's is `<index>/<id>`).
fn is_common(event_id: &str) -> bool {
    match event_id.split_once('@') {
        Some((_, stream)) => stream.ends_with(":common"),
        None => !event_id.contains('/'),
    }
}

/// The Redis entry id (`<ms>-<seq>`) of an event stored by the event store, as numbers.
fn entry_of(event: &ServerSseMessage) -> Option<(u64, u64)> {
    let (entry, _) = event.event_id.as_deref()?.split_once('@')?;
    let (ms, seq) = entry.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl SessionManager for OneSession {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(RmcpSessionId, Self::Transport), Self::Error> {
        // `restore_session` is how `LocalSessionManager` creates a session under a chosen id
        // (with its event store); it refuses an id it already holds.
        match self.inner.restore_session(self.id.clone()).await? {
            RestoreOutcome::Restored(transport) => Ok((self.id.clone(), transport)),
            // A second `initialize` without a session id would open a second session; the
            // layer sends those to a new per-session service, so this is unreachable behind it.
            _ => Err(SessionError::SessionServiceTerminated.into()),
        }
    }

    async fn initialize_session(
        &self,
        id: &RmcpSessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.check(id)?;
        let answer = self.inner.initialize_session(id, message).await?;
        if self.relay.across() {
            self.start_relay(id).await;
        }
        Ok(answer)
    }

    async fn has_session(&self, id: &RmcpSessionId) -> Result<bool, Self::Error> {
        Ok(*id == self.id && self.inner.has_session(id).await?)
    }

    async fn close_session(&self, id: &RmcpSessionId) -> Result<(), Self::Error> {
        if *id != self.id {
            return Ok(());
        }
        self.inner.close_session(id).await?;
        // rmcp ended the session (or the layer did, and dropped this service: then its entry
        // is gone and this does nothing). The layer's session closes too, so that its id
        // answers 404 and its place under the limits is free; only this very session, never a newer copy.
        if let Some(session) = self.relay.session() {
            session.close();
        }
        Ok(())
    }

    async fn create_stream(
        &self,
        id: &RmcpSessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.check(id)?;
        let relay = Arc::clone(&self.relay);
        let stream = self.inner.create_stream(id, message).await?;
        Ok(stream.map(move |event| relay.name_event(event)))
    }

    async fn accept_message(
        &self,
        id: &RmcpSessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.check(id)?;
        match self.relay.route(message) {
            Route::Here(message) => self.inner.accept_message(id, message).await,
            Route::To(tag, message) => {
                self.publish(relay::answer_message(&tag, &message)).await;
                Ok(())
            }
            Route::Everywhere(message) => {
                self.publish(relay::cancel_message(self.relay.tag(), &message))
                    .await;
                self.inner.accept_message(id, message).await
            }
        }
    }

    async fn create_standalone_stream(
        &self,
        id: &RmcpSessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.check(id)?;
        if let Some(session) = self.relayed() {
            return Ok(Box::pin(bus_events(&session)) as SseStream);
        }
        Ok(Box::pin(self.inner.create_standalone_stream(id).await?) as SseStream)
    }

    async fn resume(
        &self,
        id: &RmcpSessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        // With an event store, `LocalSessionManager::resume` replays from the store without
        // looking at `id`: the id is checked here, the event id by `SessionEvents`.
        self.check(id)?;
        if let Some(session) = self.relayed()
            && is_common(&last_event_id)
        {
            // Subscribed before the replay, so that nothing falls between the two; what the
            // live stream repeats of the replay is skipped by entry id.
            let live = bus_events(&session);
            if self.inner.event_store().is_none() {
                // The missed events were in the memory of the copy that sent them.
                return Ok(Box::pin(live) as SseStream);
            }
            let replay = self.inner.resume(id, last_event_id).await?;
            let last = Arc::new(std::sync::Mutex::new(None));
            let seen = Arc::clone(&last);
            let replay = replay.map(move |event| {
                if let Some(entry) = entry_of(&event) {
                    *crate::sync::lock(&seen) = Some(entry);
                }
                event
            });
            let live = live.filter(move |event| {
                let last = *crate::sync::lock(&last);
                last.is_none() || entry_of(event).is_none_or(|entry| Some(entry) > last)
            });
            return Ok(Box::pin(replay.chain(live)) as SseStream);
        }
        let relay = Arc::clone(&self.relay);
        let stream = self.inner.resume(id, last_event_id).await?;
        Ok(Box::pin(stream.map(move |event| relay.name_event(event))) as SseStream)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}

/// The event store as one session sees it: its streams are stored as `<session id>/<stream
/// id>`, and a replay must name one of them (the part of the event id after its first `@`, as
/// [`RedisEventStore`] writes ids, starts with `<session id>/`), so that no event id, forged
/// or stolen, replays another session's stream. A store whose ids do not have that form
/// replays nothing through a session.
struct SessionEvents {
    /// `<session id>/`.
    prefix: String,
    store: Arc<dyn EventStore>,
    /// Names the requests of the events stored, as the copy's streams show them.
    relay: Arc<Relay>,
}

impl SessionEvents {
    /// Whether `event_id` names a stream of this session.
    fn owns(&self, event_id: &str) -> bool {
        event_id
            .split_once('@')
            .is_some_and(|(_, stream)| stream.starts_with(self.prefix.as_str()))
    }
}

impl EventStore for SessionEvents {
    fn store_event<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        stream_id: &'life1 str,
        event: &'life2 ServerSseMessage,
    ) -> EventFuture<'async_trait, EventId>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let scoped = format!("{}{stream_id}", self.prefix);
            let event = self.relay.name_event(event.clone());
            self.store.store_event(&scoped, &event).await
        })
    }

    fn replay_events_after<'life0, 'life1, 'async_trait>(
        &'life0 self,
        last_event_id: &'life1 str,
    ) -> EventFuture<'async_trait, EventStream>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            if !self.owns(last_event_id) {
                return Err(EventStoreError::from(
                    "the event id is not one of this session's",
                ));
            }
            self.store.replay_events_after(last_event_id).await
        })
    }
}
