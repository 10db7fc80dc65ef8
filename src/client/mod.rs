//! Feature `client`, off by default.
//!
//! Sessions end: a server restart, idle expiry, a node that lost its state. MCP 2025-11-25,
//! Basic, Transports, Streamable HTTP, Session Management says what a client does then:
//! "When a client receives HTTP 404 in response to a request containing an
//! `Mcp-Session-Id`, it MUST start a new session by sending a new `InitializeRequest`
//! without a session ID attached." [`SessionClientLayer`] does that for any
//! `tower::Service<http::Request<ClientBody>>` (hyper-util's legacy `Client`, a reqwest
//! adapter, a test double):
//!
//! - It remembers the session id from the `initialize` answer and the negotiated protocol
//!   version (the `InitializeResult`'s `protocolVersion`, read from the JSON or SSE answer as
//!   the application reads it), and adds `Mcp-Session-Id` and `MCP-Protocol-Version` to every
//!   later request.
//! - On 404 to a request that carried the id it re-sends the recorded `initialize`, then
//!   `notifications/initialized`, takes the new id and sends the failed request again, once.
//!   A request whose body is a stream cannot be sent again: it gets
//!   [`SessionLost::NotReplayable`] (the new session is started anyway).
//! - [`SessionHandle`] shows the current id and version and signals restarts: a new session
//!   has none of the old one's state, so an application that subscribed to resources or set
//!   a log level must do it again.
//! - [`SessionClient::close`] sends DELETE; 200, 204, 404 and 405 all count as closed.
//!
//! ```text
//! application ──► SessionClient ──► HTTP client (hyper-util, …) ──► MCP server
//!                  │ initialize: record it, take Mcp-Session-Id, read protocolVersion
//!                  │ others: + Mcp-Session-Id, + MCP-Protocol-Version
//!                  └ 404 with the id: initialize again (once for all), initialized, retry once
//! ```
//!
//! # Example
//!
//! ```no_run
//! use http::Request;
//! use http_body_util::BodyExt;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_mcp_session::client::{ClientBody, SessionClientLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let http = Client::builder(TokioExecutor::new()).build_http::<ClientBody>();
//! let layer = SessionClientLayer::new();
//! let session = layer.handle();
//! let mut client = ServiceBuilder::new().layer(layer).service(http);
//!
//! let post = |body: &'static str| {
//!     Request::post("http://127.0.0.1:3000/mcp")
//!         .header("content-type", "application/json")
//!         .header("accept", "application/json, text/event-stream")
//!         .body(ClientBody::from(body))
//! };
//! let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"demo","version":"1"}}}"#;
//! let answer = client.ready().await?.call(post(init)?).await?;
//! let result = answer.into_body().collect().await?.to_bytes(); // the InitializeResult
//! client.ready().await?.call(post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?).await?;
//! println!("session {:?}, version {:?}", session.session_id(), session.protocol_version());
//!
//! // From here on the layer adds the session headers, and survives a server restart.
//! let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"increment"}}"#;
//! let answer = client.ready().await?.call(post(call)?).await?;
//! println!("{}", String::from_utf8_lossy(&answer.into_body().collect().await?.to_bytes()));
//! client.close().await?; // DELETE
//! # Ok(()) }
//! ```
//!
//! # What it sends again, and what it never does
//!
//! | the answer | what the layer does | why |
//! |---|---|---|
//! | 404 to a request that carried the session id | starts a new session, then sends the request again, once, whatever its method (`tools/call` included) | a 404 says the server found no session for the id, so it handed the request to nothing: sending it again cannot apply it twice |
//! | a transport error (connection refused or reset, closed without an answer, a timeout of the inner client) | returns it ([`Error::Inner`](crate::client::Error::Inner)); sends nothing again | the server may have run the request and died before answering (a node killed with `kill -9` after a tool ran): a second `tools/call` would run it twice |
//! | 503 with `Retry-After`, 429, other 4xx and 5xx | returns the response as it is | the server said what it did; the application decides whether and when to try again |
//! | a JSON-RPC error in a 200 (for example the example server's `-32010`, data temporarily unavailable) | returns the response as it is | the layer does not read answers beyond `initialize` |
//!
//! So the only requests sent twice are ones the server provably never ran. MCP gives no
//! request an at-most-once guarantee of its own (a tool's `idempotentHint` annotation is a
//! hint, not a contract), so retrying after a transport error is the application's call, one
//! tool at a time: retry reads (`tools/list`, `resources/read`, `ping`) freely, and give a
//! tool whose effect must not happen twice an idempotency key the server remembers. The
//! example server's `increment` shows the pattern: the same key in the request's
//! `params._meta["tower-mcp-session/idempotencyKey"]` returns the first call's result
//! instead of counting again, on any node (`examples/mcp_server/app.rs`).
//!
//! # Design decisions
//!
//! - **Replayable means bytes.** The service takes [`ClientBody`], which is either bytes
//!   (the layer keeps a cheap `Bytes` clone and can send them again) or a stream (sent once).
//!   Accepting any body `B` and guessing from its size hint would either buffer bodies the
//!   caller meant to stream or silently give up on ones that happened to lack a hint; a body
//!   type the layer controls makes replayability a fact the caller chose, and the typed
//!   [`SessionLost::NotReplayable`] error follows from it.
//! - **The `initialize` is recognised by its body**, not by a method on the layer: the first
//!   POST whose bytes are a JSON-RPC `initialize` request (method `initialize`, string or
//!   number `id`) is sent without `Mcp-Session-Id`, recorded (URI, headers such as
//!   `Authorization`, bytes), and opens the session. An application that initializes again
//!   later simply replaces the session. Only bodies containing `"initialize"` are parsed.
//! - **The protocol version is read as the body streams by**, not by buffering the answer:
//!   buffering would delay an SSE answer until its stream ends and turn body errors into a
//!   new error type. Until the `InitializeResult` has been read (the application reads it
//!   before its next request anyway), the version the request asked for is used; if the
//!   answer names none, that one stays. The layer does not send
//!   `notifications/initialized` after the application's own `initialize` (the application
//!   does, as the lifecycle says), only after a re-initialization of its own.
//! - **One re-initialization at a time** (single flight). The session has an epoch that
//!   changes whenever the session does. A request that got 404 takes the flight lock; if
//!   the epoch is still the one it was sent in, it re-initializes, otherwise another request
//!   already did and it retries with the new id. Requests that start while a
//!   re-initialization runs wait for it instead of sending the dead id. If the attempt
//!   fails, the requests that waited for it get the same failure instead of each trying
//!   again (a server that is still down is not hammered); the next 404 tries afresh. No lock
//!   is held across a request except the flight lock during re-initialization, and a
//!   cancelled re-initialization releases its waiters.
//! - **`S: Clone`, always ready.** Recovering needs several calls of the inner service per
//!   request (request, `initialize`, `notifications/initialized`, retry), so each call
//!   drives its own clone of `S` (`ready().await`, then `call`) inside its future, as axum
//!   does; `poll_ready` of [`SessionClient`] is always ready. hyper-util's client is a cheap
//!   clone over a shared pool.
//! - **Retry once.** A second 404 after a fresh session is returned as it is: the server is
//!   not keeping sessions and looping would not help. Retries copy the request head (method,
//!   URI, version, headers) but not its extensions, which are not `Clone`.
//! - **The application stays in charge where it says so**: a request that already carries
//!   `Mcp-Session-Id` passes through untouched (no headers added, no recovery), and an
//!   `MCP-Protocol-Version` the application set is kept.
//! - **One layer, one session.** The state lives in the layer, so every service it builds
//!   shares the session and the [`SessionHandle`] exists before the service.
//!
//! [`ClientBody`]: crate::client::ClientBody
//! [`SessionClient`]: crate::client::SessionClient
//! [`SessionClient::close`]: crate::client::SessionClient::close
//! [`SessionClientLayer`]: crate::client::SessionClientLayer
//! [`SessionHandle`]: crate::client::SessionHandle
//! [`SessionLost::NotReplayable`]: crate::client::SessionLost::NotReplayable

mod body;
mod error;
mod future;
mod layer;
mod message;
mod service;
mod state;

pub use body::{ClientBody, ResponseBody};
pub use error::{Error, SessionLost};
pub use future::ResponseFuture;
pub use layer::SessionClientLayer;
pub use service::SessionClient;
pub use state::SessionHandle;
