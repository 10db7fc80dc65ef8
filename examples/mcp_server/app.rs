//! The MCP server of the `mcp_server` example, as a router anyone can serve: `main.rs` binds
//! it to a port, `suite/tests/rmcp_client.rs` serves it on `127.0.0.1:0` and drives it with the
//! official Rust MCP client.
//!
//! # Shape
//!
//! ```text
//! Router ── trace ── Origin guard (400/403) ── body limit (413) ── CORS (if origins are allowed)
//!   ── /mcp ─┬─ GET ──────────────────── SessionLayer::mcp(factory).build() ──┬─ per-session MethodRouter (POST, GET)
//!            └─ others ── timeout (408) ─┘ (one layer, one table)      └─ sessionless MethodRouter (400)
//! ```
//!
//! - **One MCP server per session.** The factory builds, for each `initialize`, a fresh
//!   [`MethodRouter`] whose state is that session's [`Session`]: its counter, its log level
//!   and a broadcast channel feeding its GET SSE streams. The layer routes every later
//!   request with the session's `Mcp-Session-Id` to that router, answers DELETE (204) and
//!   unknown or closed ids (404) itself, and drops the router when the session closes.
//! - **POST** takes one JSON-RPC message. Requests get a JSON body, or an SSE stream holding
//!   the one response if the `Accept` header prefers `text/event-stream` (clients that accept
//!   both, as MCP clients must, get JSON); notifications and responses get 202 with no body.
//!   Methods: `initialize`, `ping`, `tools/list`, `tools/call`, `logging/setLevel`; any other
//!   gets JSON-RPC -32601. Batches (MCP 2025-03-26 only) are refused with -32600.
//! - **GET** opens an SSE stream of server-to-client messages for the session; a session
//!   may hold several at once. Each call of the `increment` tool sends a
//!   `notifications/message` log entry (level `info`, filtered by `logging/setLevel`) to every
//!   open GET stream of its session, and only of its session.
//! - **Faults.** A call whose session data is unreachable (the store is down) gets JSON-RPC
//!   [`DATA_UNAVAILABLE`] with `data.retryAfterMs`, at once while the layer's circuit breaker
//!   is open; a call that finds the session's record gone gets the layer's 404, and the layer
//!   has ended the session on every node. `increment` with an idempotency key in
//!   `params._meta` ([`IDEMPOTENCY_KEY`]) applies once however often it is retried, on any
//!   node: the pattern for a tool whose retry must not count twice.
//! - **Protocol versions.** `initialize` answers with the client's version if it is one of
//!   [`SUPPORTED_VERSIONS`], else [`LATEST_VERSION`]. Later requests whose
//!   `MCP-Protocol-Version` is not supported get 400 (no header means 2025-03-26, as the
//!   spec says). Requests declaring 2026-07-28 or later are sessionless (SEP-2567): the layer
//!   hands them to the inner service, which here refuses them with 400 and JSON-RPC -32600,
//!   listing the supported versions; a client that probes with `server/discover` first (as
//!   rmcp's `Auto` lifecycle does) reads that as "legacy server" and falls back to
//!   `initialize`.
//! - **DNS rebinding.** The crate's [`OriginGuardLayer`] refuses, with 403 before the session
//!   layer, every request whose `Host`, absolute-form target (`POST http://host/mcp`) or
//!   `Origin` (if present) does not name `localhost`, `127.0.0.1` or `[::1]` (any port) or one
//!   of [`Config::allowed_hosts`], so it can neither open nor use a session (MCP 2025-11-25,
//!   Streamable HTTP, Security Warning); an `Origin` listed exactly in
//!   [`Config::allowed_origins`] is accepted too. A request with two `Host` headers gets 400.
//! - **Browsers.** With [`Config::allowed_origins`], tower-http's `CorsLayer` answers
//!   preflights (OPTIONS) before the session layer and exposes `Mcp-Session-Id` to those
//!   origins' scripts; other origins get no `Access-Control-Allow-Origin`, so their scripts
//!   cannot use the server.
//! - **Limits.** Request bodies over [`Config::body_limit`] get 413; requests other than GET
//!   that take longer than [`Config::request_timeout`] get 408 (a GET is an SSE stream meant
//!   to stay open, so it is exempt). Connection-level limits are in `server.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, post};
use futures_util::stream;
use serde_json::{Map, Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_mcp_session::guard::OriginGuardLayer;
use tower_mcp_session::mcp::MCP_PROTOCOL_VERSION;
use tower_mcp_session::{
    ClientKey, Cluster, DataError, Eviction, Rejection, Session as LayerSession, SessionData,
    SessionInfo, SessionLayer, Sessions,
};

/// Protocol versions this server speaks, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
/// The version `initialize` answers when the client asks for one it does not speak.
pub const LATEST_VERSION: &str = "2025-11-25";
/// What a request without `MCP-Protocol-Version` is taken to speak (MCP 2025-11-25,
/// Streamable HTTP, Protocol Version Header).
pub const DEFAULT_HEADER_VERSION: &str = "2025-03-26";
/// The text of the `test_simple_text` tool, as the conformance suite's
/// `tools-call-simple-text` scenario documents it.
pub const SIMPLE_TEXT: &str = "This is a simple text response for testing.";

/// Log levels of MCP logging, least severe first (RFC 5424 order).
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];
/// Index of `info` in [`LEVELS`]: the level of the `increment` log entries and the default
/// minimum level of a session.
const INFO: u8 = 1;

/// Settings of [`build`].
#[derive(Clone, Debug)]
pub struct Config {
    /// A session unused this long expires (its id then gets 404). Default: 30 minutes.
    pub idle_timeout: Duration,
    /// Most sessions open at once; past it `initialize` gets 503 (or the idlest session is
    /// closed, with [`Config::evict_idlest`]). Default: 1,000.
    pub max_sessions: usize,
    /// At [`Config::max_sessions`], close the idlest session instead of answering 503.
    /// Default: off.
    pub evict_idlest: bool,
    /// Host names allowed in `Host`/`Origin` besides [`LOCAL_HOSTS`], without port
    /// (`mcp.example.com`, `[fd00::1]`). Default: none.
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`scheme://host[:port]`, exactly as browsers send `Origin`) allowed to
    /// call the server cross-origin: their `Origin` passes the DNS-rebinding check and CORS
    /// answers them. Empty: no CORS at all (preflights get the layer's 405). Default: none.
    pub allowed_origins: Vec<String>,
    /// Most time a request other than GET may take until its response head (reading its
    /// body included); then 408. GET (the SSE stream) is exempt. Default: 30 s.
    pub request_timeout: Duration,
    /// Most bytes of a request body; more gets 413. Default: 4 MiB.
    pub body_limit: usize,
    /// Most bytes of an opening request's body the layer reads to find `initialize`; more
    /// gets 413. Default: 64 KiB (an `initialize` is well under 1 KiB).
    pub peek_limit: usize,
    /// Most time the layer waits for an opening request's body (then 408). Default: the
    /// layer's, 10 s.
    pub peek_timeout: Option<Duration>,
    /// Most bytes the layer holds in opening-request bodies across all requests at once.
    /// Default: the layer's, 16 MiB.
    pub peek_budget: Option<usize>,
    /// Most live sessions per client (keyed on the peer IP address); past it 429. Default:
    /// no limit.
    pub max_sessions_per_client: Option<usize>,
    /// A session is closed this long after it opened, however busy. Default: no limit.
    pub max_lifetime: Option<Duration>,
    /// Session records, data and messages shared with the other servers of the deployment
    /// (in Redis with `--redis-url`, in PostgreSQL with `--postgres-url`). Default: none
    /// (everything in this process).
    pub cluster: Option<Cluster>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            max_sessions: 1_000,
            evict_idlest: false,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            request_timeout: Duration::from_secs(30),
            body_limit: 4 * 1024 * 1024,
            peek_limit: 64 * 1024,
            peek_timeout: None,
            peek_budget: None,
            max_sessions_per_client: None,
            max_lifetime: None,
            cluster: None,
        }
    }
}

/// The server: serve `router`; use `sessions` to inspect the live sessions and to close them
/// all on shutdown.
pub struct App {
    /// Serves MCP Streamable HTTP at `/mcp`.
    pub router: Router,
    /// The session table of the router's [`SessionLayer`].
    pub sessions: Sessions,
}

/// Request headers a browser client may send cross-origin.
pub const CORS_ALLOW_HEADERS: [&str; 5] = [
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "content-type",
    "authorization",
];

/// Builds the server.
///
/// ```text
/// TraceLayer ── OriginGuard (400/403) ── RequestBodyLimit (413) ── CorsLayer (preflights)
///   ── /mcp ─┬─ GET ────────────────────────────── SessionLayer ── per-session router
///            └─ other methods ── Timeout (408) ── SessionLayer (same table)
/// ```
pub fn build(config: Config) -> App {
    // Sessionless requests (MCP-Protocol-Version >= 2026-07-28) go here.
    let inner: MethodRouter = any(sessionless);
    let mut layer = SessionLayer::mcp(|info: SessionInfo, _inner: MethodRouter| async move {
        tracing::debug!(session = %info.id().redacted(), "building the session's MCP server");
        Ok::<_, Infallible>(session_server(Session::new(info)))
    })
    .idle_timeout(config.idle_timeout)
    .max_sessions(config.max_sessions)
    .eviction(if config.evict_idlest {
        Eviction::LastRequest
    } else {
        Eviction::Off
    })
    .peek_limit(config.peek_limit);
    if let Some(timeout) = config.peek_timeout {
        layer = layer.peek_timeout(timeout);
    }
    if let Some(budget) = config.peek_budget {
        layer = layer.peek_budget(budget);
    }
    if let Some(max) = config.max_sessions_per_client {
        // One client = one peer IP (the port changes with every connection).
        layer = layer.max_sessions_per_client(max).client_key(|parts| {
            let ConnectInfo(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
            Some(ClientKey::from(*peer))
        });
    }
    if let Some(lifetime) = config.max_lifetime {
        layer = layer.max_lifetime(lifetime);
    }
    if let Some(cluster) = config.cluster {
        layer = layer.cluster(cluster);
    }
    let layer = layer
        .on_close(
            |info, reason| tracing::info!(session = %info.id().redacted(), ?reason, "session closed"),
        )
        .build();
    let sessions = layer.sessions();
    let mcp = ServiceBuilder::new().layer(layer).service(inner);

    // The request timeout bounds POST and DELETE (body read included). A GET is an SSE
    // stream meant to stay open for the whole session, so it is routed around the timeout
    // (tower-http's timeout only bounds the response head, which a GET answers at once, but
    // the stream should not depend on that). Both routes share one session table.
    let timed = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .map_response(IntoResponse::into_response)
        .service(mcp.clone());
    // Not axum's `get_service(..).fallback_service(..)`: its method router adds
    // `Allow: GET,HEAD` to every answer of the fallback, the layer's 405s included.
    let endpoint = tower::service_fn(move |request: Request| {
        let (mcp, timed) = (mcp.clone(), timed.clone());
        async move {
            if request.method() == Method::GET {
                mcp.oneshot(request).await.map(IntoResponse::into_response)
            } else {
                timed.oneshot(request).await
            }
        }
    });

    let mut router = Router::new().route_service("/mcp", endpoint);
    if !config.allowed_origins.is_empty() {
        router = router.layer(cors(&config.allowed_origins));
    }
    // DNS-rebinding protection, before anything else sees the request (the crate's guard).
    let guard = OriginGuardLayer::loopback()
        .allow_hosts(&config.allowed_hosts)
        .allow_origins(&config.allowed_origins);
    let router = router
        .layer(RequestBodyLimitLayer::new(config.body_limit))
        .layer(guard)
        .layer(TraceLayer::new_for_http());
    App { router, sessions }
}

/// `Origin` as browsers send it: lower case, no trailing slash.
fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Answers CORS preflights from `origins` (before the session layer, which would answer
/// OPTIONS with 405) and lets their scripts read `Mcp-Session-Id`.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(&normalize_origin(o)) {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::warn!(origin = %o, "ignoring an allowed origin that is not a header value");
                None
            }
        })
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers(CORS_ALLOW_HEADERS.map(HeaderName::from_static))
        .expose_headers([HeaderName::from_static("mcp-session-id")])
        .max_age(Duration::from_secs(600))
}

// ---------------------------------------------------------------------------------------
// One session's MCP server
// ---------------------------------------------------------------------------------------

/// The state of one session on this node, shared by every request routed to it here.
///
/// What must survive a restart and be the same on every node (the counter, the log level)
/// lives in the session's data map ([`SessionData`](tower_mcp_session::SessionData)): in
/// Redis with `--redis-url` or PostgreSQL with `--postgres-url`, else in this process.
/// Notifications go through
/// [`Session::publish`](LayerSession::publish), so a `tools/call` answered by one node reaches
/// the GET stream a client holds on another.
pub struct Session {
    info: SessionInfo,
    /// Set by the first `initialize` (the one that opened the session, or its replay when
    /// another node's session is restored here).
    initialized: AtomicBool,
}

/// Data-map key of the session's counter.
const COUNTER: &str = "counter";
/// Data-map key of the session's minimum log level (an index into [`LEVELS`]).
const LOG_LEVEL: &str = "logLevel";

/// `_meta` key of a `tools/call` naming its idempotency key (see [`increment_once`]).
pub const IDEMPOTENCY_KEY: &str = "tower-mcp-session/idempotencyKey";
/// How many idempotency keys a session remembers (the most recent ones).
const REMEMBERED_KEYS: i64 = 32;
/// The longest idempotency key accepted, in bytes.
const MAX_KEY_LEN: usize = 128;

/// JSON-RPC error code of a call whose session data could not be reached (the store is down):
/// retry after `data.retryAfterMs` (with the same idempotency key if the call must not apply
/// twice). In the implementation-defined server-error range of JSON-RPC 2.0 (-32000 to
/// -32099), clear of the codes MCP and its SDKs use (-32000 to -32002, -32042).
pub const DATA_UNAVAILABLE: i64 = -32010;
/// JSON-RPC error code of a call whose idempotency key names a call that started but never
/// recorded its result (its node died, or the store went away mid-call): whether it applied is
/// unknown, and this key will not apply it again.
pub const OUTCOME_UNKNOWN: i64 = -32011;
/// The `retryAfterMs` of [`DATA_UNAVAILABLE`]: the layer's default probe interval, after which
/// a store that is back serves again.
const RETRY_AFTER_MS: u64 = 500;

/// The answer to a request whose data-map operation failed:
///
/// - the session has no record any more (the store lost it, or it closed on another node):
///   the layer has ended the session everywhere, and this request is answered as the layer
///   answers any request of an ended session, HTTP 404 with its body, so the client starts a
///   new session (MCP 2025-11-25, Streamable HTTP, Session Management). Nothing of the request
///   was applied.
/// - the store is unavailable: JSON-RPC [`DATA_UNAVAILABLE`] with `data.retryAfterMs`, at once
///   while the layer's circuit breaker is open. A JSON-RPC error rather than HTTP 503: MCP
///   clients hand a JSON-RPC error to the caller of that one request, with its code, while a
///   503 on a POST is a transport failure most SDKs surface as a generic error (or treat as
///   the session's end).
/// - anything else: JSON-RPC -32603, internal error.
fn data_error(error: DataError) -> (StatusCode, Value) {
    match error {
        DataError::SessionGone => {
            let gone = Rejection::SessionNotFound;
            let error = error_object(i64::from(gone.json_rpc_code()), gone.message());
            (gone.status(), error)
        }
        DataError::Unavailable(error) => {
            tracing::debug!(%error, "session data unavailable");
            let mut answer = error_object(
                DATA_UNAVAILABLE,
                "Session data temporarily unavailable: retry later",
            );
            answer["data"] = json!({ "retryAfterMs": RETRY_AFTER_MS });
            rpc_error_value(answer)
        }
        error => {
            tracing::warn!(%error, "session data operation failed");
            rpc_error(-32603, format!("Internal error: {error}"))
        }
    }
}

/// The idempotency key of a `tools/call`, from `params._meta`: `Ok(None)` if it has none.
fn idempotency_key(params: Option<&Value>) -> Result<Option<&str>, (StatusCode, Value)> {
    let Some(key) = params
        .and_then(|p| p.get("_meta"))
        .and_then(|meta| meta.get(IDEMPOTENCY_KEY))
    else {
        return Ok(None);
    };
    match key.as_str() {
        Some(key)
            if !key.is_empty()
                && key.len() <= MAX_KEY_LEN
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key))
        }
        _ => Err(rpc_error(
            -32602,
            format!(
                "Invalid params: `_meta.{IDEMPOTENCY_KEY}` must be 1 to {MAX_KEY_LEN} visible \
                 ASCII characters"
            ),
        )),
    }
}

/// `increment` under an idempotency key: the first call with `key` increments and records its
/// result; any later call with the same key (a retry after a lost answer, on any node) gets
/// that result without incrementing again, `fresh == false`. Each step is one atomic data-map
/// operation, so two nodes racing on one key apply it once: the claim (`idem:<key>`, an
/// atomic increment) decides which call applies it.
///
/// A claimed key whose result was never recorded (the claiming node died, or the store went
/// away mid-call) answers [`OUTCOME_UNKNOWN`] for good: it may or may not have applied, and
/// this key will not apply it again. A session remembers its [`REMEMBERED_KEYS`] most recent
/// keys; older ones are forgotten (a retry that late counts again).
async fn increment_once(data: &SessionData, key: &str) -> Result<(i64, bool), (StatusCode, Value)> {
    let claim = format!("idem:{key}");
    let result = format!("idem-result:{key}");
    if data.increment(&claim, 1).await.map_err(data_error)? > 1 {
        return match data.get::<i64>(&result).await.map_err(data_error)? {
            Some(value) => Ok((value, false)),
            None => Err(rpc_error(
                OUTCOME_UNKNOWN,
                "A call with this idempotency key started but did not finish: its outcome is \
                 unknown, and it is not applied again",
            )),
        };
    }
    let value = data.increment(COUNTER, 1).await.map_err(data_error)?;
    data.insert(&result, &value).await.map_err(data_error)?;
    // Bookkeeping only: the call has applied, whatever happens here.
    if let Err(error) = forget_oldest_key(data, key).await {
        tracing::debug!(%error, "idempotency key ring not updated");
    }
    Ok((value, true))
}

/// Puts `key` in the next of [`REMEMBERED_KEYS`] slots and forgets the key it held.
async fn forget_oldest_key(data: &SessionData, key: &str) -> Result<(), DataError> {
    let n = data.increment("idem:seq", 1).await?;
    let slot = format!("idem:slot:{}", n.rem_euclid(REMEMBERED_KEYS));
    if let Some(old) = data.get::<String>(&slot).await? {
        data.remove(&format!("idem:{old}")).await?;
        data.remove(&format!("idem-result:{old}")).await?;
    }
    data.insert(&slot, key).await
}

impl Session {
    fn new(info: SessionInfo) -> Arc<Self> {
        Arc::new(Self {
            info,
            initialized: AtomicBool::new(false),
        })
    }

    /// Answers one JSON-RPC request: `Ok(result)` or `Err((status, error))`.
    async fn handle(
        &self,
        layer: &LayerSession,
        method: &str,
        params: Option<&Value>,
    ) -> Result<Value, (StatusCode, Value)> {
        match method {
            "initialize" => self.initialize(params),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({ "tools": tools() })),
            "tools/call" => self.call_tool(layer, params).await,
            "logging/setLevel" => set_level(layer, params).await,
            _ => Err(rpc_error(-32601, format!("Method not found: {method}"))),
        }
    }

    fn initialize(&self, params: Option<&Value>) -> Result<Value, (StatusCode, Value)> {
        if self.initialized.swap(true, Ordering::AcqRel) {
            let error = error_object(
                -32600,
                "Invalid Request: the session is already initialized",
            );
            return Err((StatusCode::BAD_REQUEST, error));
        }
        let requested = params
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str);
        let version = match requested {
            Some(v) if SUPPORTED_VERSIONS.contains(&v) => v,
            _ => LATEST_VERSION,
        };
        let client = params.and_then(|p| p.get("clientInfo"));
        let name = client.and_then(|c| c.get("name")).and_then(Value::as_str);
        let client_version = client
            .and_then(|c| c.get("version"))
            .and_then(Value::as_str);
        tracing::info!(
            session_id = %self.info.id(),
            client = name.unwrap_or("?"),
            client_version = client_version.unwrap_or("?"),
            requested = requested.unwrap_or("?"),
            protocol_version = version,
            "session opened"
        );
        Ok(json!({
            "protocolVersion": version,
            "capabilities": { "tools": { "listChanged": false }, "logging": {} },
            "serverInfo": {
                "name": "tower-mcp-session-example",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "instructions": "Each session has its own counter: call the `increment` tool.",
        }))
    }

    async fn call_tool(
        &self,
        layer: &LayerSession,
        params: Option<&Value>,
    ) -> Result<Value, (StatusCode, Value)> {
        let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            return Err(rpc_error(
                -32602,
                "Invalid params: tools/call needs a tool `name`",
            ));
        };
        let text = match name {
            "increment" => {
                let (value, fresh) = match idempotency_key(params)? {
                    Some(key) => increment_once(&layer.data(), key).await?,
                    // One atomic step in the store: increments through two nodes lose no
                    // count.
                    None => (
                        layer
                            .data()
                            .increment(COUNTER, 1)
                            .await
                            .map_err(data_error)?,
                        true,
                    ),
                };
                if fresh {
                    log(
                        layer,
                        INFO,
                        "increment",
                        json!({ "sessionId": self.info.id().as_str(), "counter": value }),
                    )
                    .await;
                }
                value.to_string()
            }
            "test_simple_text" => SIMPLE_TEXT.to_owned(),
            _ => return Err(rpc_error(-32602, format!("Unknown tool: {name}"))),
        };
        Ok(json!({ "content": [{ "type": "text", "text": text }], "isError": false }))
    }
}

async fn set_level(
    layer: &LayerSession,
    params: Option<&Value>,
) -> Result<Value, (StatusCode, Value)> {
    let level = params.and_then(|p| p.get("level")).and_then(Value::as_str);
    let Some(index) = level.and_then(|l| LEVELS.iter().position(|known| *known == l)) else {
        let message = format!(
            "Invalid params: `level` must be one of {}",
            LEVELS.join(", ")
        );
        return Err(rpc_error(-32602, message));
    };
    layer
        .data()
        .insert(LOG_LEVEL, &index)
        .await
        .map_err(data_error)?;
    Ok(json!({}))
}

/// Publishes a `notifications/message` log entry to the session's GET streams (on every
/// node), if its level is at or above the session's minimum level.
async fn log(layer: &LayerSession, level: u8, logger: &str, data: Value) {
    let minimum = match layer.data().get::<u8>(LOG_LEVEL).await {
        Ok(minimum) => minimum.unwrap_or(INFO),
        Err(error) => {
            tracing::warn!(%error, "session log level unavailable; using info");
            INFO
        }
    };
    if level < minimum {
        return;
    }
    let message = json!({
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": { "level": LEVELS[usize::from(level)], "logger": logger, "data": data },
    });
    if let Err(error) = layer.publish(message.to_string()).await {
        tracing::warn!(%error, "log notification not sent");
    }
}

/// The tools every session offers.
fn tools() -> Value {
    json!([
        {
            "name": "increment",
            "title": "Increment",
            "description": "Adds one to this session's counter and returns the new value.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false },
        },
        {
            "name": "test_simple_text",
            "title": "Simple text",
            "description": "Returns a fixed text (the conformance suite's simple-text tool).",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false },
        },
    ])
}

/// The per-session service: POST for client messages, GET for the server's stream.
fn session_server(session: Arc<Session>) -> MethodRouter {
    post(post_message).get(open_stream).with_state(session)
}

async fn post_message(
    State(session): State<Arc<Session>>,
    layer: LayerSession,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_json(&headers) {
        let message = "Unsupported Media Type: Content-Type must be application/json";
        return http_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, -32000, message);
    }
    let Some(format) = response_format(&headers) else {
        let message = "Not Acceptable: Accept must allow application/json or text/event-stream";
        return http_error(StatusCode::NOT_ACCEPTABLE, -32000, message);
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return http_error(
            StatusCode::BAD_REQUEST,
            -32700,
            "Parse error: the body is not JSON",
        );
    };
    let Value::Object(message) = message else {
        let text =
            "Invalid Request: expected one JSON-RPC message object (batches are not supported)";
        return http_error(StatusCode::BAD_REQUEST, -32600, text);
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return http_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "Invalid Request: jsonrpc must be \"2.0\"",
        );
    }
    let method = message.get("method").and_then(Value::as_str);
    let id = message
        .get("id")
        .filter(|id| id.is_string() || id.is_number());
    match (method, id) {
        (Some(method), Some(id)) => {
            request(&session, &layer, &headers, format, method, id, &message).await
        }
        // `initialize` must be a request: a 2xx here would make the layer store a session
        // that never got an InitializeResult.
        (Some(method), None) if !message.contains_key("id") && method != "initialize" => {
            if method == "notifications/initialized" {
                tracing::debug!(session_id = %session.info.id(), "client initialized");
            }
            StatusCode::ACCEPTED.into_response()
        }
        // A response to a server request: this server sends none, so there is nothing to match.
        (None, Some(_)) if message.contains_key("result") || message.contains_key("error") => {
            StatusCode::ACCEPTED.into_response()
        }
        _ => http_error(StatusCode::BAD_REQUEST, -32600, "Invalid Request"),
    }
}

async fn request(
    session: &Session,
    layer: &LayerSession,
    headers: &HeaderMap,
    format: Format,
    method: &str,
    id: &Value,
    message: &Map<String, Value>,
) -> Response {
    if method != "initialize"
        && let Err(response) = check_protocol_version(headers)
    {
        return response;
    }
    let (status, body) = match session.handle(layer, method, message.get("params")).await {
        Ok(result) => (
            StatusCode::OK,
            json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        ),
        Err((status, error)) => (
            status,
            json!({ "jsonrpc": "2.0", "id": id, "error": error }),
        ),
    };
    match format {
        // A session that ended under this request gets the layer's 404, never a stream.
        Format::Json => json_response(status, &body),
        Format::Sse if status == StatusCode::NOT_FOUND => json_response(status, &body),
        Format::Sse => {
            let event = Event::default().event("message").data(body.to_string());
            let stream = stream::once(async move { Ok::<_, Infallible>(event) });
            (status, Sse::new(stream)).into_response()
        }
    }
}

async fn open_stream(
    State(session): State<Arc<Session>>,
    layer: LayerSession,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = check_protocol_version(&headers) {
        return response;
    }
    if quality(&headers, "text", "event-stream") == 0 {
        let message = "Not Acceptable: Accept must allow text/event-stream";
        return http_error(StatusCode::NOT_ACCEPTABLE, -32000, message);
    }
    // Messages published to the session on any node (with a bus), from now on.
    let subscription = layer.subscribe();
    tracing::debug!(session_id = %session.info.id(), "GET stream opened");
    let events = stream::unfold(subscription, |mut subscription| async move {
        // `None` once the session closes on this node; the layer ends the body then too.
        let message = subscription.recv().await?;
        let text = String::from_utf8_lossy(&message).into_owned();
        let event = Event::default().event("message").data(text);
        Some((Ok::<_, Infallible>(event), subscription))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// 400 unless `MCP-Protocol-Version` names a supported version; a request without it speaks
/// [`DEFAULT_HEADER_VERSION`]. The layer has already refused malformed values and routed
/// 2026-07-28 and later away.
#[allow(clippy::result_large_err)]
fn check_protocol_version(headers: &HeaderMap) -> Result<(), Response> {
    let version = match headers.get(MCP_PROTOCOL_VERSION) {
        None => DEFAULT_HEADER_VERSION,
        Some(value) => value.to_str().unwrap_or_default(),
    };
    if SUPPORTED_VERSIONS.contains(&version) {
        return Ok(());
    }
    let message = format!(
        "Bad Request: Unsupported protocol version: {version} (supported: {})",
        SUPPORTED_VERSIONS.join(", ")
    );
    Err(http_error(StatusCode::BAD_REQUEST, -32000, message))
}

// ---------------------------------------------------------------------------------------
// Sessionless requests
// ---------------------------------------------------------------------------------------

/// Answers requests declaring a sessionless protocol version (2026-07-28 or later): this
/// example speaks only the session-based versions, so it says so, as the 2025-11-25 spec
/// asks of a server given an unsupported `MCP-Protocol-Version` (400 Bad Request).
async fn sessionless(headers: HeaderMap, body: Bytes) -> Response {
    let requested = headers
        .get(MCP_PROTOCOL_VERSION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|m| m.get("id").cloned())
        .filter(|id| id.is_string() || id.is_number())
        .unwrap_or(Value::Null);
    let message = format!(
        "Unsupported protocol version: {}. This server speaks MCP {} with sessions (initialize); sessionless MCP (2026-07-28 and later) is not supported",
        requested.as_deref().unwrap_or("?"),
        SUPPORTED_VERSIONS.join(", ")
    );
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32600,
            "message": message,
            "data": { "supported": SUPPORTED_VERSIONS, "requested": requested },
        },
    });
    json_response(StatusCode::BAD_REQUEST, &body)
}

// ---------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------

/// How a POST request is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Sse,
}

/// JSON if `Accept` allows it at least as much as `text/event-stream`, else SSE if allowed;
/// `None` if neither is acceptable. No `Accept` accepts everything.
fn response_format(headers: &HeaderMap) -> Option<Format> {
    let json = quality(headers, "application", "json");
    let sse = quality(headers, "text", "event-stream");
    match (json, sse) {
        (0, 0) => None,
        (json, sse) if json >= sse => Some(Format::Json),
        _ => Some(Format::Sse),
    }
}

/// The quality (0..=1000) `Accept` gives `type/subtype`: that of the most specific media
/// range matching it; 1000 if there is no `Accept`, 0 if no range matches.
fn quality(headers: &HeaderMap, ty: &str, subtype: &str) -> u16 {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return 1000;
    }
    let mut best: Option<(u8, u16)> = None; // (specificity, quality)
    for range in values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let Some((t, s)) = media.split_once('/') else {
            continue;
        };
        let specificity = match (t.trim(), s.trim()) {
            (t, s) if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(subtype) => 2,
            (t, "*") if t.eq_ignore_ascii_case(ty) => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .next()
            .and_then(|q| q.trim().parse::<f32>().ok())
            .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0) as u16);
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0, |(_, q)| q)
}

/// Whether `Content-Type` is `application/json` (any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON-RPC error object.
fn error_object(code: i64, message: impl Into<String>) -> Value {
    json!({ "code": code, "message": message.into() })
}

/// A JSON-RPC error answered with HTTP 200, the usual way for a request that was understood.
fn rpc_error(code: i64, message: impl Into<String>) -> (StatusCode, Value) {
    rpc_error_value(error_object(code, message))
}

/// [`rpc_error`] for an error object made already.
fn rpc_error_value(error: Value) -> (StatusCode, Value) {
    (StatusCode::OK, error)
}

/// An HTTP error with a JSON-RPC error body of id `null`, like the layer's own rejections.
fn http_error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    let body = json!({ "jsonrpc": "2.0", "error": error_object(code, message), "id": null });
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    (status, content_type, body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn negotiates_the_response_format() {
        assert_eq!(response_format(&HeaderMap::new()), Some(Format::Json));
        assert_eq!(
            response_format(&accept("application/json, text/event-stream")),
            Some(Format::Json)
        );
        assert_eq!(
            response_format(&accept("text/event-stream, application/json")),
            Some(Format::Json)
        );
        assert_eq!(
            response_format(&accept("text/event-stream")),
            Some(Format::Sse)
        );
        assert_eq!(
            response_format(&accept("application/json;q=0.5, text/*")),
            Some(Format::Sse)
        );
        assert_eq!(response_format(&accept("*/*")), Some(Format::Json));
        assert_eq!(response_format(&accept("text/html")), None);
        assert_eq!(response_format(&accept("application/json;q=0")), None);
    }
}
