//! The DNS-rebinding guard: [`OriginGuardLayer`] validates `Host` and `Origin` of every
//! request before anything else sees it.
//!
//! MCP 2025-11-25, Basic, Transports, Streamable HTTP, Security Warning: servers **MUST**
//! validate the `Origin` header of every incoming connection, to stop DNS-rebinding attacks
//! (a web page whose host name is made to resolve to 127.0.0.1 sending requests to a local
//! server), and SHOULD bind to localhost when they run locally. A page can choose the `Host` it
//! reaches the server under and always sends its own `Origin`; so the guard checks both, plus
//! the authority of an absolute-form request target (`POST http://host/mcp`, and HTTP/2's
//! `:authority`):
//!
//! | request | answer |
//! |---|---|
//! | `Host` (and the target's authority, if any) names an allowed host, `Origin` absent or allowed | passed on |
//! | two or more `Host` headers | 400 Bad Request ([`Refused::RepeatedHost`]) |
//! | neither a `Host` header nor an authority in the target | 403 Forbidden ([`Refused::NoHost`]) |
//! | `Host` or the target's authority names another host | 403 Forbidden ([`Refused::ForeignHost`]) |
//! | `Origin` is neither an allowed origin nor on an allowed host (`Origin: null` included) | 403 Forbidden ([`Refused::ForeignOrigin`]) |
//!
//! Allowed hosts are `localhost`, `127.0.0.1` and `[::1]` (any port) by default, plus the
//! names given to [`allow_host`](OriginGuardLayer::allow_host); names compare
//! case-insensitively and are never resolved (a name that resolves to loopback is not
//! loopback). An `Origin` is allowed if its host is an allowed host (any scheme and port), or
//! if it is listed exactly with [`allow_origin`](OriginGuardLayer::allow_origin)
//! (`scheme://host[:port]`, as browsers send it; `null` only if listed). Refusals have a
//! JSON-RPC error body (`"id": null`, code -32000); [`rejection`](OriginGuardLayer::rejection)
//! replaces them.
//!
//! # Where it goes
//!
//! Outermost, before CORS and the session layer, so that a refused request never opens,
//! restores or touches a session, and every method is checked (POST, GET streams, DELETE, and
//! OPTIONS preflights, which an allowed origin's then get from tower-http's `CorsLayer`):
//!
//! ```
//! # use std::convert::Infallible;
//! # use tower_mcp_session::{SessionInfo, SessionLayer};
//! # type Req = http::Request<tower_mcp_session::body::RequestBody<http_body_util::Full<bytes::Bytes>>>;
//! # type Inner = tower::util::BoxCloneSyncService<Req, http::Response<http_body_util::Full<bytes::Bytes>>, Infallible>;
//! # let inner = Inner::new(tower::service_fn(|_: Req| async {
//! #     Ok::<_, Infallible>(http::Response::new(http_body_util::Full::default()))
//! # }));
//! # let factory = |_: SessionInfo, inner: Inner| async move { Ok::<_, Infallible>(inner) };
//! use tower::ServiceBuilder;
//! use tower_mcp_session::guard::OriginGuardLayer;
//!
//! let sessions = SessionLayer::mcp(factory).build();
//! let mcp = ServiceBuilder::new()
//!     .layer(OriginGuardLayer::loopback().allow_host("mcp.example.com"))
//!     // .layer(tower_http::cors::CorsLayer::new()...) for browser clients
//!     .layer(sessions)
//!     .service(inner);
//! # let _ = mcp;
//! ```
//!
//! It costs a lookup of two standard headers and a few short string comparisons per request
//! (BENCHMARKS.md, "The Origin guard").

mod body;
mod layer;
mod refused;
mod service;

pub use body::ResponseBody;
pub use layer::OriginGuardLayer;
pub use refused::Refused;
pub use service::{OriginGuard, ResponseFuture};
