//! Session middleware for [`tower`](https://docs.rs/tower): sessions keyed by a request header,
//! with the lifecycle and status codes of the Model Context Protocol's Streamable HTTP
//! transport (MCP 2025-11-25, Basic, Transports, Streamable HTTP, Session Management).
//!
//! A [`SessionLayer`] reads the session header (`Mcp-Session-Id` by default) of every request.
//! A request that opens a session gets a fresh id and its own service (and, if you want, a
//! typed state), built by a [`SessionFactory`]; every later request with that id is routed to
//! that service; the layer enforces idle expiry, a lifetime, the close policy (DELETE in MCP),
//! global, per-principal and per-client limits and shutdown, bounds what clients without a
//! session can cost, and answers everything else with the status codes MCP clients expect.
//! It works unchanged under axum, hyper and tonic.
//!
//! # Quick start (axum)
//!
//! One `Router` serves every session; each session gets its own state, which handlers read
//! with the [`SessionState`] extractor (feature `axum`).
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//!
//! use axum::{Router, routing::post};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_mcp_session::{SessionInfo, SessionLayer, SessionState, with_state};
//!
//! async fn mcp(info: SessionInfo, SessionState(count): SessionState<Arc<AtomicU64>>) -> String {
//!     let n = count.fetch_add(1, Ordering::Relaxed) + 1;
//!     format!("request {n} of session {}", info.id())
//! }
//!
//! let per_session = Router::new().route("/mcp", post(mcp));
//! let layer = SessionLayer::mcp(with_state(move |_info: SessionInfo, _inner: Router| {
//!     let router = per_session.clone();
//!     async move { Ok::<_, Infallible>((router, Arc::new(AtomicU64::new(0)))) }
//! }))
//! .idle_timeout(Duration::from_secs(30 * 60))
//! .max_sessions(10_000)
//! .on_close(|info, reason| tracing::info!(session = %info.id().redacted(), ?reason, "closed"))
//! .build();
//! let sessions = layer.sessions(); // len, state, snapshot, close, close_where, shutdown
//!
//! // Put the layer around the MCP route only: `route_service`, not `Router::layer` (which
//! // wraps every route separately and would apply the MCP rules to all of them).
//! let sessionless = Router::new(); // MCP-Protocol-Version >= 2026-07-28 lands here
//! let app = Router::new()
//!     .route_service("/mcp", ServiceBuilder::new().layer(layer).service(sessionless))
//!     .route("/health", axum::routing::get(|| async { "ok" }));
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async move {
//! use http::Request;
//! use axum::body::Body;
//! // initialize opens a session; the id comes back in `Mcp-Session-Id`.
//! let init = Request::post("/mcp")
//!     .body(Body::from(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#))
//!     .unwrap();
//! let response = app.clone().oneshot(init).await.unwrap();
//! let id = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
//! assert_eq!(sessions.state::<Arc<AtomicU64>>(&id).unwrap().load(Ordering::Relaxed), 1);
//!
//! // DELETE closes it; the id is then unknown: 404.
//! let delete = Request::delete("/mcp").header("mcp-session-id", &id).body(Body::empty());
//! assert_eq!(app.clone().oneshot(delete.unwrap()).await.unwrap().status(), 204);
//! let again = Request::post("/mcp").header("mcp-session-id", &id).body(Body::empty());
//! assert_eq!(app.clone().oneshot(again.unwrap()).await.unwrap().status(), 404);
//! # });
//! ```
//!
//! Other placements: `Router::new().nest_service("/mcp", ..)`, or
//! `ServiceBuilder::new().layer(layer).service(router)` around a whole router with a
//! [`sessionless`](SessionLayerBuilder::sessionless) predicate for the routes without sessions. With
//! hyper 1, pass the layered service through `hyper_util::service::TowerToHyperService`. With
//! tonic 0.14, use `Server::builder().layer(SessionLayer::generic(..).header(..).build())` and a
//! [`rejection`](SessionLayerBuilder::rejection) hook that answers with a gRPC status. The layer's
//! response body has `Default`, so tower-http's `TimeoutLayer` can sit outside it.
//!
//! # What the layer answers
//!
//! | request | answer |
//! |---|---|
//! | no session header, opens a session (MCP: POST `initialize`) | the per-session service's response; if 2xx (or what [`keep_session_if`](SessionLayerBuilder::keep_session_if) says), the session is stored and the response carries `Mcp-Session-Id` |
//! | no session header, does not open one | 400, JSON-RPC -32000 |
//! | header repeated, empty, over 255 bytes or not visible ASCII | 400, JSON-RPC -32000 |
//! | id unknown, expired, closed, or of another principal | 404, JSON-RPC -32001 `Session not found` |
//! | a request the [`ClosePolicy`] claims (MCP: DELETE) with a live id | 204, the session is closed |
//! | MCP: DELETE under [`ClosePolicy::refuse_delete`] | 405, `Allow: GET, POST` |
//! | MCP: method other than GET, POST, DELETE | 405, `Allow` |
//! | MCP: opening body over the peek limit / not in time / not JSON / batched `initialize` | 413 / 408 / 400 -32700 / 400 -32600 |
//! | the principal's or client's session limit is reached | 429 with `Retry-After` |
//! | the factory failed | 500, JSON-RPC -32603, nothing stored |
//! | the session limit is reached / the peek budget is spent / after shutdown | 503 with `Retry-After` / 503 with `Retry-After` / 503 |
//! | the request is a sessionless one the [`sessionless`](SessionLayerBuilder::sessionless) predicate picks | passed to the inner service, no session |
//! | MCP: `MCP-Protocol-Version` ≥ 2026-07-28 | passed to the inner service, no session |
//! | MCP: malformed `MCP-Protocol-Version` with a session id, or repeated | 400 |
//! | MCP: one `MCP-Protocol-Version` that is not a date, no session id | passed to the inner service (it knows its versions), no session |
//! | with a [cluster](crate::Cluster): an id not live on this node | restored from its record and routed; 404 if there is none; 503 with `Retry-After` if the store does not answer, the replay may pass, or 256 restores are in flight |
//!
//! See [`Rejection`] for the bodies and [`SessionLayerBuilder::rejection`] to replace them.
//!
//! # Concurrency and closing
//!
//! Requests of one session run concurrently: the per-session service is cloned for each
//! request and no lock is held across an `.await`. A response body of a session (an SSE
//! stream, say) keeps the session busy, so it does not expire while the body is open; closing
//! the session (DELETE, expiry, lifetime, eviction, [`Sessions::close`],
//! [`Sessions::shutdown`]) ends such bodies at once (a complete answer of known length is
//! still delivered whole) and drops the per-session service when the last in-flight request
//! finishes.
//!
//! # Where things are
//!
//! The source is laid out in floors, each importing only the ones below it: leaves (ids,
//! [`SessionInfo`], [`CloseReason`], errors; the [`store`] and [`bus`] traits and their
//! implementations) → the live-session table and the [`mcp`] rules → the cluster link
//! ([`Cluster`], [`SessionData`]) → the handles ([`Session`], [`Sessions`]) → the tower layer
//! ([`SessionLayer`], [`SessionService`], [`body`], [`future`], [`Rejection`]) → [`client`]
//! and [`rmcp`](mod@rmcp).
//!
//! # Cargo features
//!
//! None is on by default; the MCP profile ([`SessionLayer::mcp`]) needs no feature.
//!
//! | feature | what it adds |
//! |---|---|
//! | `axum` | extractors for [`Session`], [`SessionInfo`] and [`SessionState`] (axum-core); [`Rejection`] as an axum response |
//! | `client` | [`client`]: a client-side layer that keeps the session and re-initializes on 404 |
//! | `rmcp` | [`rmcp`](mod@rmcp): one stateful rmcp (official Rust SDK) session per layer session, under the layer's id |
//! | `postgres` | [`store::PostgresStore`] and [`bus::PostgresBus`]: the same on PostgreSQL alone (one table, LISTEN/NOTIFY; tokio-postgres and deadpool-postgres) |
//! | `metrics` | the series of [`metrics`](mod@metrics) through the `metrics` facade (0.24): live sessions and the limit, opens and closes, session duration, rejections by status, restores, store and bus latency, outages, the client layer's re-initializations; nothing compiled in without it |
//! | `spans` | a `tracing` span per request, `mcp_session.request` at DEBUG, with the fields `session` (redacted, as in the logs), `mcp.protocol.version` (the header), `decision` (`routed`, `restored`, `opened`, `declined`, `closed`, `sessionless`, `rejected`) and `http.response.status_code`; the layer's events (`session opened`, `session closed`, `request rejected`) happen inside it. Off by default so that the hot path carries no span; `tracing-opentelemetry`'s layer on the subscriber turns the spans into OpenTelemetry spans |
//! | `redis` | [`store::RedisStore`] and [`bus::RedisBus`]: sessions that survive restarts and span nodes (redis-rs); with `rmcp` too, `rmcp::RedisEventStore` (resumption with `Last-Event-ID` through any node) |

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The crate's floors, each importing only the ones above it in this list:
// leaves (ids, info, close reasons, errors, time, locks; the store and bus traits and their
// implementations) → `table` (the live-session table) and `mcp` (the MCP rules) → `cluster`
// (store and bus links, restores, refresh, data) → `handle` (what users hold) → `http` (the
// tower layer) → `client` and `rmcp` (integrations, on the public API).
mod close;
mod error;
mod id;
mod info;
#[cfg(feature = "postgres")]
mod pg_link;
#[cfg(feature = "redis")]
mod redis_config;
#[cfg(feature = "redis")]
mod redis_link;
mod sync;
mod time;

pub mod bus;
pub mod metrics;
pub mod store;

pub mod mcp;
mod table;

mod cluster;

mod handle;

mod http;

pub mod guard;

/// The client side: keep the MCP session of an HTTP client, start a new one on 404.
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "rmcp")]
pub mod rmcp;

/// Request and response bodies of [`SessionService`].
pub mod body {
    pub use crate::http::body::{RequestBody, ResponseBody};
}

/// The response future of [`SessionService`].
pub mod future {
    pub use crate::http::future::ResponseFuture;
}

pub use close::{CloseReason, UnknownCloseReason};
pub use cluster::Cluster;
pub use cluster::data::{DataError, SessionData, Subscription};
pub use error::BoxError;
#[cfg(feature = "axum")]
pub use handle::extract::{MissingSession, SessionState};
pub use handle::session::{Session, WeakSession};
pub use handle::sessions::{Sessions, WeakSessions};
pub use handle::snapshot::SessionSnapshot;
pub use http::factory::{SessionFactory, WithState, with_state};
pub use http::layer::{SessionLayer, SessionLayerBuilder};
pub use http::policy::{ClosePolicy, OpenPolicy};
pub use http::rejection::{InvalidSessionHeader, Rejection};
pub use http::service::SessionService;
pub use id::{InvalidSessionId, MakeSessionId, Redacted, SessionId, UuidV4};
pub use info::{ClientKey, Principal, SessionInfo};
#[cfg(feature = "redis")]
pub use redis_config::RedisConfig;
pub use table::Eviction;

/// The README's examples, compiled and run as doctests (with `cargo test --workspace`, which
/// builds the crate with the features they use).
#[cfg(all(doctest, feature = "redis", feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
