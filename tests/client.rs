//! `tower_mcp_session::client` against the `mcp_server` example over real HTTP on
//! `127.0.0.1`, with hyper-util's client underneath.
//!
//! "Restarting the server process" happens in-process: the first server stops (graceful
//! shutdown, its sessions closed), and a fresh `app::build` is served on the same port, so
//! its session table is empty and the old id gets 404. A counting middleware in front of each
//! server counts the JSON-RPC methods POSTed to it and the DELETEs, so "exactly one
//! `initialize`" is counted on the wire. The hyper client keeps no idle connections
//! (`pool_max_idle_per_host(0)`), so no request can reach the stopped server over a pooled
//! connection.
//!
//! What each test shows:
//! - `restart_mid_conversation_continues_in_one_new_session`: one new `initialize` and one
//!   `notifications/initialized`, the example's counter starts again at 1 and continues, the
//!   handle's id changes, the restart signal fires once, the negotiated version is kept.
//! - `fifty_concurrent_calls_at_the_restart_cause_one_initialize`: 50 `tools/call` all get
//!   404 at once (the new server holds them until all 50 arrived), then exactly one
//!   `initialize` follows and all 50 succeed in the same new session (counter values 1..=50).
//! - `a_streaming_request_gets_session_lost`: a body that cannot be sent twice gets the typed
//!   `SessionLost::NotReplayable`, and the session is replaced anyway.
//! - `close_sends_delete`: DELETE with the id, the server's session is gone, the old id gets
//!   404, the handle forgets it.
//! - `sse_answers_give_the_version_too`: a client that accepts only SSE gets the
//!   `InitializeResult` as an SSE event; the layer reads the negotiated version from it, both
//!   for the application's `initialize` and for its own after a restart.
//! - `a_rejected_reinitialize_is_typed_and_the_next_404_tries_again` (test double): the new
//!   `initialize` answered 503 gives `SessionLost::ReinitializeRejected(503)` and no restart;
//!   once the server accepts again, the next 404 recovers.
//! - `a_404_without_the_session_id_passes_through` (test double): a 404 to a request that did
//!   not carry the layer's id is returned unchanged, without any re-initialization.

#[path = "../examples/mcp_server/app.rs"]
#[allow(dead_code)]
mod app;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request as AxumRequest, State};
use axum::middleware::{self, Next};
use axum::response::Response as AxumResponse;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_mcp_session::Sessions;
use tower_mcp_session::client::{
    ClientBody, Error, SessionClient, SessionClientLayer, SessionHandle, SessionLost,
};

/// Bound on each whole test (a guard, not a synchronisation).
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

type Http = Client<HttpConnector, ClientBody>;
type McpClient = SessionClient<Http>;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Holds the first `target` `tools/call` requests until all of them have arrived.
struct Gate {
    target: usize,
    arrivals: AtomicUsize,
    open: watch::Sender<bool>,
}

/// What a server saw: JSON-RPC methods POSTed (and `DELETE`), with counts.
#[derive(Default)]
struct Seen {
    counts: Mutex<HashMap<String, usize>>,
    gate: Mutex<Option<Arc<Gate>>>,
}

impl Seen {
    fn count(&self, what: &str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .get(what)
            .copied()
            .unwrap_or_default()
    }
}

async fn count(State(seen): State<Arc<Seen>>, request: AxumRequest, next: Next) -> AxumResponse {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let what = if parts.method == http::Method::DELETE {
        Some("DELETE".to_owned())
    } else {
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_owned))
    };
    if let Some(what) = what {
        *seen.counts.lock().unwrap().entry(what.clone()).or_default() += 1;
        let gate = seen.gate.lock().unwrap().clone();
        if let Some(gate) = gate.filter(|_| what == "tools/call") {
            let n = gate.arrivals.fetch_add(1, Ordering::AcqRel) + 1;
            if n == gate.target {
                gate.open.send_replace(true);
            } else if n < gate.target {
                let mut open = gate.open.subscribe();
                let _ = open.wait_for(|open| *open).await;
            }
        }
    }
    next.run(AxumRequest::from_parts(parts, Body::from(bytes)))
        .await
}

/// The example server on `addr`, behind the counting middleware.
struct Server {
    addr: SocketAddr,
    url: String,
    sessions: Sessions,
    seen: Arc<Seen>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(addr: SocketAddr) -> Self {
        let app::App { router, sessions } = app::build(app::Config::default());
        let seen = Arc::new(Seen::default());
        let router = router.layer(middleware::from_fn_with_state(Arc::clone(&seen), count));
        let listener = TcpListener::bind(addr).await.expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        Self {
            addr,
            url: format!("http://{addr}/mcp"),
            sessions,
            seen,
            stop: Some(stop),
            task,
        }
    }

    /// Stops this server (sessions closed, connections finished, port released) and serves a
    /// fresh one, with an empty session table, on the same port.
    async fn restart(mut self) -> Self {
        let addr = self.addr;
        let _ = self.stop.take().expect("running").send(());
        self.sessions.shutdown();
        (&mut self.task)
            .await
            .expect("the server task ended cleanly");
        Self::start(addr).await
    }

    fn count(&self, what: &str) -> usize {
        self.seen.count(what)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.sessions.shutdown();
        self.task.abort();
    }
}

fn http() -> Http {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// A client with its own session, and the session's handle.
fn client() -> (McpClient, SessionHandle) {
    let layer = SessionClientLayer::new();
    let handle = layer.handle();
    (ServiceBuilder::new().layer(layer).service(http()), handle)
}

fn post(url: &str, body: impl Into<ClientBody>) -> Request<ClientBody> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.into())
        .unwrap()
}

/// POSTs through the layer: status and JSON body (`null` if empty).
async fn rpc(
    client: &McpClient,
    request: Request<ClientBody>,
) -> Result<(StatusCode, Value), Error<hyper_util::client::legacy::Error>> {
    let response = client.clone().oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("a JSON body")
    };
    Ok((status, json))
}

/// `initialize` (asking for a version the server does not speak, so the answer's version
/// differs from the request's) and `notifications/initialized`.
async fn initialize(client: &McpClient, url: &str) {
    let init = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2024-11-05",
            "capabilities": {},
            "clientInfo": { "name": "tests/client.rs", "version": "0" },
        },
    });
    let (status, body) = rpc(client, post(url, init.to_string())).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["protocolVersion"],
        json!(app::LATEST_VERSION)
    );
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _) = rpc(client, post(url, note)).await.unwrap();
    assert_eq!(status, 202);
}

fn increment_body(id: u64) -> String {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "increment", "arguments": {} },
    })
    .to_string()
}

/// Calls `increment`: the counter's new value.
async fn increment(client: &McpClient, url: &str, id: u64) -> u64 {
    let (status, body) = rpc(client, post(url, increment_body(id))).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!(id), "{body}");
    body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {body}"))
        .parse()
        .unwrap()
}

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test did not finish in time")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_conversation_continues_in_one_new_session() {
    bounded(async {
        let server = Server::start(loopback()).await;
        let (client, handle) = client();
        let mut restarted = handle.restarted();
        assert_eq!(handle.session_id(), None);

        initialize(&client, &server.url).await;
        let first = handle.session_id().expect("a session id");
        assert!(server.sessions.contains(&first));
        // Read from the InitializeResult, not the version the request asked for.
        assert_eq!(
            handle.protocol_version().as_deref(),
            Some(app::LATEST_VERSION)
        );
        assert_eq!(increment(&client, &server.url, 1).await, 1);
        assert_eq!(increment(&client, &server.url, 2).await, 2);
        assert_eq!(server.count("initialize"), 1);

        let server = server.restart().await;
        assert!(server.sessions.is_empty());
        assert!(!restarted.has_changed().unwrap());

        // The old id gets 404; the layer opens one new session and retries there, where the
        // example's counter starts again.
        assert_eq!(increment(&client, &server.url, 3).await, 1);
        assert_eq!(increment(&client, &server.url, 4).await, 2);
        assert_eq!(server.count("initialize"), 1);
        assert_eq!(server.count("notifications/initialized"), 1);
        assert_eq!(
            server.count("tools/call"),
            3,
            "one failed call, its retry, one more"
        );

        let second = handle.session_id().expect("a new session id");
        assert_ne!(first, second);
        assert_eq!(server.sessions.ids().len(), 1);
        assert!(server.sessions.contains(&second));
        assert_eq!(
            handle.protocol_version().as_deref(),
            Some(app::LATEST_VERSION)
        );
        assert!(restarted.has_changed().unwrap());
        assert_eq!(*restarted.borrow_and_update(), 1);
        assert_eq!(handle.restarts(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_at_the_restart_cause_one_initialize() {
    const CALLS: usize = 50;
    bounded(async {
        let server = Server::start(loopback()).await;
        let (client, handle) = client();
        initialize(&client, &server.url).await;
        let first = handle.session_id().unwrap();
        assert_eq!(increment(&client, &server.url, 1).await, 1);

        let server = server.restart().await;
        // The new server holds the first 50 calls until all have arrived: all 50 carry the
        // old id and get 404 together.
        *server.seen.gate.lock().unwrap() = Some(Arc::new(Gate {
            target: CALLS,
            arrivals: AtomicUsize::new(0),
            open: watch::channel(false).0,
        }));
        let calls: Vec<_> = (0..CALLS as u64)
            .map(|i| {
                let client = client.clone();
                let url = server.url.clone();
                tokio::spawn(async move { increment(&client, &url, 100 + i).await })
            })
            .collect();
        let mut values = Vec::new();
        for call in calls {
            values.push(call.await.expect("a call panicked"));
        }
        values.sort_unstable();
        // All 50 ran in the one new session, each once.
        assert_eq!(values, (1..=CALLS as u64).collect::<Vec<_>>());
        assert_eq!(server.count("initialize"), 1);
        assert_eq!(server.count("notifications/initialized"), 1);
        assert_eq!(server.count("tools/call"), 2 * CALLS);
        assert_eq!(handle.restarts(), 1);
        let second = handle.session_id().unwrap();
        assert_ne!(first, second);
        assert_eq!(server.sessions.len(), 1);
        assert!(server.sessions.contains(&second));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_request_gets_session_lost() {
    bounded(async {
        let server = Server::start(loopback()).await;
        let (client, handle) = client();
        initialize(&client, &server.url).await;
        assert_eq!(increment(&client, &server.url, 1).await, 1);
        let server = server.restart().await;

        let frames = [Ok::<_, Infallible>(Frame::data(Bytes::from(
            increment_body(2),
        )))];
        let body = ClientBody::streaming(StreamBody::new(futures_util::stream::iter(frames)));
        assert!(!body.is_replayable());
        let error = rpc(&client, post(&server.url, body))
            .await
            .expect_err("a stream cannot be sent twice");
        assert!(
            matches!(error, Error::SessionLost(SessionLost::NotReplayable)),
            "{error:?}"
        );
        assert_eq!(error.session_lost(), Some(&SessionLost::NotReplayable));
        let _: &dyn std::error::Error = &error;

        // The new session was started anyway: sending the call again works, without another
        // initialize.
        assert_eq!(handle.restarts(), 1);
        assert_eq!(increment(&client, &server.url, 3).await, 1);
        assert_eq!(server.count("initialize"), 1);
        assert_eq!(server.count("tools/call"), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_sends_delete() {
    bounded(async {
        let server = Server::start(loopback()).await;
        let (client, handle) = client();
        initialize(&client, &server.url).await;
        let id = handle.session_id().unwrap();
        assert_eq!(server.sessions.len(), 1);

        assert_eq!(client.close().await.unwrap(), Some(StatusCode::NO_CONTENT));
        assert_eq!(server.count("DELETE"), 1);
        assert_eq!(server.sessions.len(), 0);
        assert_eq!(handle.session_id(), None);
        assert_eq!(handle.protocol_version(), None);

        // The old id is gone on the server: 404 (sent around the layer).
        let mut stale = post(&server.url, increment_body(1));
        stale
            .headers_mut()
            .insert("mcp-session-id", id.parse().unwrap());
        stale
            .headers_mut()
            .insert("mcp-protocol-version", app::LATEST_VERSION.parse().unwrap());
        assert_eq!(http().request(stale).await.unwrap().status(), 404);

        // Closing again sends nothing; without a session a call is the server's 400, not a
        // recovery.
        assert_eq!(client.close().await.unwrap(), None);
        assert_eq!(server.count("DELETE"), 1);
        let (status, _) = rpc(&client, post(&server.url, increment_body(2)))
            .await
            .unwrap();
        assert_eq!(status, 400);
        assert_eq!(server.count("initialize"), 1);
        assert_eq!(handle.restarts(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_404_without_the_session_id_passes_through() {
    bounded(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let inner = service_fn(move |request: Request<ClientBody>| {
            seen.fetch_add(1, Ordering::SeqCst);
            let carried = request.headers().get("mcp-session-id").cloned();
            async move {
                let mut response = Response::new(Full::new(Bytes::from_static(b"not here")));
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
                    .headers_mut()
                    .insert("x-test", "kept".parse().unwrap());
                if let Some(id) = carried {
                    response.headers_mut().insert("x-carried", id);
                }
                Ok::<_, Infallible>(response)
            }
        });
        let layer = SessionClientLayer::new();
        let handle = layer.handle();
        let client = ServiceBuilder::new().layer(layer).service(inner);

        // No session yet: the 404 comes back as it is.
        let request = post("http://127.0.0.1/mcp", increment_body(1));
        let response = client.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["x-test"], "kept");
        assert!(!response.headers().contains_key("x-carried"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"not here");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // An id the application set itself is its own business: no recovery either.
        let mut request = post("http://127.0.0.1/mcp", increment_body(2));
        request
            .headers_mut()
            .insert("mcp-session-id", "app-owned".parse().unwrap());
        let response = client.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["x-carried"], "app-owned");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(handle.session_id(), None);
        assert_eq!(handle.restarts(), 0);
    })
    .await;
}

/// POSTs through the layer accepting only SSE: status and the JSON of the first `data`
/// event (`null` if none).
async fn rpc_sse(client: &McpClient, url: &str, body: String) -> (StatusCode, Value) {
    let mut request = post(url, body);
    request
        .headers_mut()
        .insert("accept", "text/event-stream".parse().unwrap());
    let response = client.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .map_or(Value::Null, |d| serde_json::from_str(d.trim()).unwrap());
    (status, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_answers_give_the_version_too() {
    bounded(async {
        let server = Server::start(loopback()).await;
        let (client, handle) = client();
        // Asks for a version the server does not speak: the answer names another one.
        let init = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": "2024-11-05", "capabilities": {},
                        "clientInfo": { "name": "sse", "version": "0" } },
        });
        let (status, answer) = rpc_sse(&client, &server.url, init.to_string()).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer["result"]["protocolVersion"],
            json!(app::LATEST_VERSION)
        );
        assert_eq!(
            handle.protocol_version().as_deref(),
            Some(app::LATEST_VERSION)
        );
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(rpc_sse(&client, &server.url, note.into()).await.0, 202);
        // The server refuses tool calls declaring 2024-11-05 (400): this works only with the
        // negotiated version in MCP-Protocol-Version.
        let (status, answer) = rpc_sse(&client, &server.url, increment_body(1)).await;
        assert_eq!(
            (status, &answer["result"]["content"][0]["text"]),
            (StatusCode::OK, &json!("1"))
        );

        // The layer's own initialize replays the SSE-only Accept; it reads that answer too.
        let server = server.restart().await;
        let (status, answer) = rpc_sse(&client, &server.url, increment_body(2)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], json!("1"));
        assert_eq!(
            handle.protocol_version().as_deref(),
            Some(app::LATEST_VERSION)
        );
        assert_eq!(server.count("initialize"), 1);
        assert_eq!(handle.restarts(), 1);
    })
    .await;
}

/// A test double of an MCP server: one live session at a time, `initialize` answered with
/// `init_status` (a new session for 200).
#[derive(Default)]
struct Double {
    live: Mutex<Option<String>>,
    opened: AtomicUsize,
    init_status: Mutex<Option<StatusCode>>,
    requests: AtomicUsize,
}

impl Double {
    fn answer(&self, parts: &http::request::Parts, body: &[u8]) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let method = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_owned));
        let id = parts
            .headers
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let mut response = Response::new(Full::new(Bytes::new()));
        match method.as_deref() {
            Some("initialize") => {
                let status = self.init_status.lock().unwrap().unwrap_or(StatusCode::OK);
                *response.status_mut() = status;
                if status.is_success() {
                    let n = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
                    let id = format!("session-{n}");
                    response
                        .headers_mut()
                        .insert("mcp-session-id", id.parse().unwrap());
                    *self.live.lock().unwrap() = Some(id);
                    let result =
                        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#;
                    *response.body_mut() = Full::new(Bytes::from_static(result.as_bytes()));
                }
            }
            _ if id.is_none() || id != *self.live.lock().unwrap() => {
                *response.status_mut() = StatusCode::NOT_FOUND;
            }
            Some("notifications/initialized") => *response.status_mut() = StatusCode::ACCEPTED,
            _ => *response.body_mut() = Full::new(Bytes::from_static(b"ok")),
        }
        response
    }

    /// The double under the client layer.
    fn client(self: &Arc<Self>) -> (SessionClient<DoubleService>, SessionHandle) {
        let layer = SessionClientLayer::new();
        let handle = layer.handle();
        let service = DoubleService(Arc::clone(self));
        (ServiceBuilder::new().layer(layer).service(service), handle)
    }
}

/// [`Double`] as a tower service.
#[derive(Clone)]
struct DoubleService(Arc<Double>);

type DoubleFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

impl tower::Service<Request<ClientBody>> for DoubleService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = DoubleFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ClientBody>) -> DoubleFuture {
        let double = Arc::clone(&self.0);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Ok(double.answer(&parts, &body))
        })
    }
}

#[tokio::test]
async fn a_rejected_reinitialize_is_typed_and_the_next_404_tries_again() {
    bounded(async {
        let double = Arc::new(Double::default());
        let (client, handle) = double.client();
        let call = || post("http://127.0.0.1/mcp", increment_body(1));
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#;
        let response = client.clone().oneshot(post("http://127.0.0.1/mcp", init)).await.unwrap();
        assert_eq!(response.status(), 200);
        // Dropped unread: the version the request asked for stays.
        drop(response);
        assert_eq!(handle.session_id().as_deref(), Some("session-1"));
        assert_eq!(handle.protocol_version().as_deref(), Some("2025-03-26"));
        assert_eq!(client.clone().oneshot(call()).await.unwrap().status(), 200);

        // The session ends, and the server refuses new ones for now.
        *double.live.lock().unwrap() = None;
        *double.init_status.lock().unwrap() = Some(StatusCode::SERVICE_UNAVAILABLE);
        let error = client.clone().oneshot(call()).await.unwrap_err();
        assert_eq!(
            error.session_lost(),
            Some(&SessionLost::ReinitializeRejected(StatusCode::SERVICE_UNAVAILABLE)),
            "{error}"
        );
        assert_eq!(handle.restarts(), 0);
        assert_eq!(double.opened.load(Ordering::SeqCst), 1);

        // Accepted again: the next 404 starts a session, whose answer's version is read.
        *double.init_status.lock().unwrap() = None;
        let response = client.clone().oneshot(call()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(handle.session_id().as_deref(), Some("session-2"));
        assert_eq!(handle.protocol_version().as_deref(), Some("2025-06-18"));
        assert_eq!(handle.restarts(), 1);
        // 1 init + 1 call, 1 call (404) + 1 init (503), 1 call (404) + init + initialized + retry
        assert_eq!(double.requests.load(Ordering::SeqCst), 8);
    })
    .await;
}
