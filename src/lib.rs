//! Session middleware for [`tower`]: sessions keyed by a request header, with the lifecycle
//! and status codes of the Model Context Protocol's Streamable HTTP transport
//! (MCP 2025-11-25, Basic, Transports, Streamable HTTP, Session Management).
//!
//! A [`SessionLayer`] reads the session header (`Mcp-Session-Id` by default) of every request.
//! A request that opens a session gets a fresh id and its own service, built by a
//! [`SessionFactory`]; every later request with that id is routed to that service; the layer
//! enforces idle expiry, DELETE, a session limit and shutdown, and answers everything else
//! with the status codes MCP clients expect. It works unchanged under axum, hyper and tonic.
//!
//! # Quick start
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_mcp_session::{RequestBody, SessionInfo, SessionLayer};
//!
//! type Body = RequestBody<Full<Bytes>>;
//!
//! // The inner service answers sessionless requests; here it only says so.
//! let inner = service_fn(|_req: Request<Body>| async {
//!     Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("no session")))
//! });
//!
//! // Each session gets its own service, with its own request counter.
//! let layer = SessionLayer::mcp(|session: SessionInfo, _inner| async move {
//!     let counter = Arc::new(AtomicU64::new(0));
//!     Ok::<_, Infallible>(service_fn(move |_req: Request<Body>| {
//!         let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
//!         let text = format!("session {} request {n}", session.id());
//!         async move { Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(text))) }
//!     }))
//! })
//! .idle_timeout(Duration::from_secs(30 * 60))
//! .max_sessions(10_000)
//! .on_close(|id, reason| tracing::info!(%id, ?reason, "session closed"));
//! let sessions = layer.sessions();
//! let app = ServiceBuilder::new().layer(layer).service(inner);
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async move {
//! // initialize opens a session; the id comes back in `Mcp-Session-Id`.
//! let init = Request::post("/mcp")
//!     .body(Full::from(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#))
//!     .unwrap();
//! let response = app.clone().oneshot(init).await.unwrap();
//! let id = response.headers()["mcp-session-id"].to_str().unwrap().to_owned();
//! assert_eq!(sessions.len(), 1);
//!
//! // DELETE closes it; the id is then unknown: 404.
//! let delete = Request::delete("/mcp").header("mcp-session-id", &id).body(Full::default());
//! assert_eq!(app.clone().oneshot(delete.unwrap()).await.unwrap().status(), 204);
//! let again = Request::post("/mcp").header("mcp-session-id", &id).body(Full::default());
//! assert_eq!(app.clone().oneshot(again.unwrap()).await.unwrap().status(), 404);
//! # });
//! ```
//!
//! With axum, wrap a `Router` the same way: `router.layer(layer)`, or
//! `Router::new().route_service("/mcp", ServiceBuilder::new().layer(layer).service(inner))`.
//! With hyper 1, pass the layered service through
//! `hyper_util::service::TowerToHyperService`. With tonic 0.14, use
//! `Server::builder().layer(SessionLayer::new(..).header(..))` and a
//! [`rejection`](SessionLayer::rejection) hook that answers with a gRPC status.
//!
//! # What the layer answers
//!
//! | request | answer |
//! |---|---|
//! | no session header, opens a session (MCP: POST `initialize`) | the per-session service's response; if 2xx (or what [`keep_session_if`](SessionLayer::keep_session_if) says), the session is stored and the response carries `Mcp-Session-Id` |
//! | no session header, does not open one | 400, JSON-RPC -32000 |
//! | header repeated, empty, over 255 bytes or not visible ASCII | 400, JSON-RPC -32000 |
//! | id unknown, expired, closed, or of another principal | 404, JSON-RPC -32001 `Session not found` |
//! | DELETE with a live id | 204, the session is closed |
//! | DELETE when [`terminate_on_delete`](SessionLayer::terminate_on_delete) is off | 405, `Allow: GET, POST` |
//! | MCP: method other than GET, POST, DELETE | 405, `Allow` |
//! | MCP: opening body over the peek limit / not JSON / batched `initialize` | 413 / 400 -32700 / 400 -32600 |
//! | the factory failed | 500, JSON-RPC -32603, nothing stored |
//! | the session limit is reached / after shutdown | 503 with `Retry-After` / 503 |
//! | MCP: `MCP-Protocol-Version` ≥ 2026-07-28 | passed to the inner service, no session |
//! | MCP: malformed `MCP-Protocol-Version` | 400 |
//!
//! See [`Rejection`] for the bodies and [`SessionLayer::rejection`] to replace them.
//!
//! # Concurrency and closing
//!
//! Requests of one session run concurrently: the per-session service is cloned for each
//! request and no lock is held across an `.await`. A response body of a session (an SSE
//! stream, say) keeps the session busy, so it does not expire while the body is open; closing
//! the session (DELETE, expiry, [`Sessions::close`], [`Sessions::shutdown`]) ends such bodies
//! at once (a complete answer of known length is still delivered whole) and drops the
//! per-session service when the last in-flight request finishes.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
/// The client side: keep the MCP session of an HTTP client, start a new one on 404.
#[cfg(feature = "client")]
pub mod client;
pub mod future;
pub mod mcp;

mod config;
#[cfg(feature = "axum")]
mod extract;
mod factory;
mod hooks;
mod id;
mod info;
mod layer;
mod open;
mod policy;
mod registry;
mod rejection;
mod service;
mod session;
mod sessions;
mod sweeper;

pub use config::{
    ClientKey, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS, DEFAULT_PEEK_BUDGET, DEFAULT_PEEK_LIMIT,
    DEFAULT_PEEK_TIMEOUT, DEFAULT_RETRY_AFTER, EvictBy,
};
#[cfg(feature = "axum")]
pub use extract::{MissingSession, SessionState};
pub use factory::{SessionFactory, WithState, with_state};
pub use hooks::CloseReason;
pub use id::{InvalidSessionId, MAX_SESSION_ID_LEN, MakeSessionId, Redacted, SessionId, UuidV4};
pub use info::{Principal, SessionInfo};
pub use layer::SessionLayer;
pub use policy::{ClosePolicy, OpenPolicy};
pub use registry::SessionSnapshot;
pub use rejection::{InvalidSessionHeader, Rejection};
pub use service::SessionService;
pub use session::Session;
pub use sessions::{Sessions, WeakSessions};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
