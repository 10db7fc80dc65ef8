//! The `rmcp_server` example (rmcp server sessions behind the layer, feature `rmcp`) driven by
//! rmcp's client over real HTTP on `127.0.0.1`.
//!
//! What each test shows:
//! - `sessions_are_isolated_and_the_handler_sees_the_real_initialize`: two clients get two
//!   layer sessions, each served by its own stateful rmcp session (counters independent),
//!   under the layer's ids; each handler sees its own client's `initialize` (client info and
//!   capabilities), which rmcp's stateless mode cannot give.
//! - `a_notification_on_the_get_stream_reaches_only_its_session`: a message sent by the
//!   server outside any request travels on its session's GET stream only.
//! - `server_initiated_requests_round_trip`: `roots/list` from the server, answered by the
//!   client of that session.
//! - `delete_then_404_and_rmcp_tasks_end`: DELETE (answered by the layer, rmcp never sees it)
//!   gives 204, then the id gets 404; the session's handler is dropped.
//! - `a_client_reinitializes_after_its_session_is_closed`: `Sessions::close` on the server;
//!   rmcp's client gets 404, initializes again and gets a fresh rmcp session.
//! - `closing_a_session_ends_rmcps_tasks`: after `Sessions::close`, the handler is dropped
//!   and the runtime runs at least two fewer tasks (rmcp's session and worker tasks).
//! - `a_session_rmcp_ends_is_closed_in_the_layer`: with rmcp's own `keep_alive` set, rmcp
//!   ends an idle session by itself and the bound factory closes the layer's session too.

#![allow(deprecated)] // roots and logging: current in 2025-11-25, deprecated after (SEP-2577)

#[path = "../examples/rmcp_server/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "../../examples/mcp_server/metrics_http.rs"]
#[allow(dead_code)]
mod metrics_http;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientConfig, ListRootsResult, LoggingMessageNotificationParam,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::local::SessionConfig;
use rmcp::{ClientHandler, ErrorData, ServiceExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower::ServiceBuilder;
use tower_mcp_session::{SessionLayer, Sessions};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test did not finish in time")
}

/// Polls `done` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

struct Server {
    url: String,
    sessions: Sessions,
    handlers: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Self {
        let app::App {
            router,
            sessions,
            handlers,
        } = app::build(app::Config::default());
        Self::serve(router, sessions, handlers).await
    }

    async fn serve(
        router: axum::Router,
        sessions: Sessions,
        handlers: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        Self {
            url: format!("http://{addr}/mcp"),
            sessions,
            handlers,
            task,
        }
    }

    fn ids(&self) -> HashSet<String> {
        self.sessions
            .ids()
            .into_iter()
            .map(|id| id.as_str().to_owned())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.sessions.shutdown();
        self.task.abort();
    }
}

/// A client that names itself, declares `roots`, answers `roots/list` with one root of its
/// own, and forwards the log messages it receives.
#[derive(Clone)]
struct Client {
    name: &'static str,
    logs: mpsc::UnboundedSender<Value>,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        serde_json::from_value(json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"roots": {"listChanged": true}},
            "clientInfo": {"name": self.name, "version": "1.2.3"}
        }))
        .expect("client info")
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(serde_json::from_value(
            json!({"roots": [{"uri": format!("file:///work/{}", self.name), "name": self.name}]}),
        )
        .expect("roots"))
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.logs.send(params.data);
    }
}

type Running = RunningService<RoleClient, Client>;

/// Connects a client named `name` and returns it with the id of the session it opened.
async fn connect(
    server: &Server,
    name: &'static str,
) -> (Running, String, mpsc::UnboundedReceiver<Value>) {
    let before = server.ids();
    let (logs, rx) = mpsc::unbounded_channel();
    let transport = StreamableHttpClientTransport::from_uri(server.url.clone());
    let client = Client { name, logs }
        .serve(transport)
        .await
        .expect("rmcp client connects");
    let new: Vec<String> = server.ids().difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "one new session: {new:?}");
    (client, new[0].clone(), rx)
}

async fn call(client: &Running, tool: &str, arguments: Value) -> String {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(arguments) = arguments {
        params = params.with_arguments(arguments);
    }
    let result = client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"));
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    result.content[0]
        .as_text()
        .unwrap_or_else(|| panic!("{tool} returned no text: {result:?}"))
        .text
        .clone()
}

async fn raw(method: reqwest::Method, url: &str, id: &str, body: &'static str) -> u16 {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", "2025-11-25");
    if !body.is_empty() {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    request.send().await.expect("raw request").status().as_u16()
}

const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_isolated_and_the_handler_sees_the_real_initialize() {
    bounded(async {
        let server = Server::start().await;
        let (a, id_a, _) = connect(&server, "client-a").await;
        let (b, id_b, _) = connect(&server, "client-b").await;
        assert_ne!(id_a, id_b);
        assert_eq!(server.sessions.len(), 2);
        assert_eq!(
            server.handlers.load(Ordering::SeqCst),
            2,
            "one rmcp handler per session"
        );

        assert_eq!(call(&a, "increment", json!({})).await, "1");
        assert_eq!(call(&a, "increment", json!({})).await, "2");
        assert_eq!(call(&b, "increment", json!({})).await, "1");

        // Each handler saw its own client's initialize, capabilities included.
        for (client, name) in [(&a, "client-a"), (&b, "client-b")] {
            let seen: Value = serde_json::from_str(&call(client, "whoami", json!({})).await)
                .expect("whoami is JSON");
            assert_eq!(seen["clientInfo"]["name"], json!(name), "{seen}");
            assert_eq!(seen["clientInfo"]["version"], json!("1.2.3"), "{seen}");
            assert_eq!(
                seen["capabilities"]["roots"]["listChanged"],
                json!(true),
                "{seen}"
            );
        }
        a.cancel().await.expect("close A");
        b.cancel().await.expect("close B");
        eventually("both sessions deleted", || server.sessions.is_empty()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_on_the_get_stream_reaches_only_its_session() {
    bounded(async {
        let server = Server::start().await;
        let (a, _, mut logs_a) = connect(&server, "client-a").await;
        let (b, _, mut logs_b) = connect(&server, "client-b").await;
        // rmcp's client opens its GET stream after `initialized`, in the background; a message
        // sent before it is open would be kept by rmcp for the stream, so no race to lose.
        assert_eq!(
            call(&a, "notify_later", json!({"message": "for a"})).await,
            "scheduled"
        );
        let got = tokio::time::timeout(Duration::from_secs(10), logs_a.recv())
            .await
            .expect("A's GET stream carried the message");
        assert_eq!(got, Some(json!("for a")));
        assert_eq!(
            call(&b, "notify_later", json!({"message": "for b"})).await,
            "scheduled"
        );
        let got = tokio::time::timeout(Duration::from_secs(10), logs_b.recv())
            .await
            .expect("B's GET stream carried the message");
        assert_eq!(got, Some(json!("for b")));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(logs_a.try_recv().is_err(), "A got a message of B's session");
        assert!(logs_b.try_recv().is_err(), "B got a second message");
        a.cancel().await.expect("close A");
        b.cancel().await.expect("close B");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_initiated_requests_round_trip() {
    bounded(async {
        let server = Server::start().await;
        let (a, _, _) = connect(&server, "client-a").await;
        let (b, _, _) = connect(&server, "client-b").await;
        let roots_a = call(&a, "list_roots", json!({})).await;
        let roots_b = call(&b, "list_roots", json!({})).await;
        assert!(roots_a.contains("file:///work/client-a"), "{roots_a}");
        assert!(roots_b.contains("file:///work/client-b"), "{roots_b}");
        a.cancel().await.expect("close A");
        b.cancel().await.expect("close B");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_404_and_rmcp_tasks_end() {
    bounded(async {
        let server = Server::start().await;
        let (a, id, _) = connect(&server, "client-a").await;
        assert_eq!(
            raw(reqwest::Method::POST, &server.url, &id, TOOLS_LIST).await,
            200
        );
        assert_eq!(
            raw(reqwest::Method::DELETE, &server.url, &id, "").await,
            204
        );
        assert!(!server.sessions.contains(&id));
        assert_eq!(
            raw(reqwest::Method::POST, &server.url, &id, TOOLS_LIST).await,
            404
        );
        assert_eq!(raw(reqwest::Method::GET, &server.url, &id, "").await, 404);
        eventually("the session's rmcp handler is dropped", || {
            server.handlers.load(Ordering::SeqCst) == 0
        })
        .await;
        drop(a);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reinitializes_after_its_session_is_closed() {
    bounded(async {
        let server = Server::start().await;
        let (a, id, _) = connect(&server, "client-a").await;
        assert_eq!(call(&a, "increment", json!({})).await, "1");
        assert_eq!(call(&a, "increment", json!({})).await, "2");
        assert!(server.sessions.close(&id));
        // rmcp's client gets 404, initializes again and retries: a fresh session.
        assert_eq!(call(&a, "increment", json!({})).await, "1");
        let ids = server.ids();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert!(!ids.contains(&id), "the closed id came back");
        let seen: Value = serde_json::from_str(&call(&a, "whoami", json!({})).await).expect("JSON");
        assert_eq!(seen["clientInfo"]["name"], json!("client-a"), "{seen}");
        a.cancel().await.expect("close A");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_session_ends_rmcps_tasks() {
    bounded(async {
        let server = Server::start().await;
        let metrics = tokio::runtime::Handle::current().metrics();
        let (a, id, _) = connect(&server, "client-a").await;
        assert_eq!(call(&a, "increment", json!({})).await, "1");
        assert_eq!(server.handlers.load(Ordering::SeqCst), 1);
        // The client alone would open a new session after the close: stop it first (its
        // DELETE would close the session through the layer, so keep a raw session instead).
        drop(a);
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
        let http = reqwest::Client::new();
        let response = http
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(init)
            .send()
            .await
            .expect("initialize");
        assert_eq!(response.status(), 200);
        let raw_id = response.headers()["mcp-session-id"]
            .to_str()
            .expect("ascii id")
            .to_owned();
        let _ = response.bytes().await;
        eventually("the first client's session is gone", || {
            !server.sessions.contains(&id) || server.sessions.close(&id)
        })
        .await;
        eventually("only the raw session's handler is left", || {
            server.handlers.load(Ordering::SeqCst) == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let open = metrics.num_alive_tasks();

        assert!(server.sessions.close(&raw_id));
        eventually("the handler is dropped", || {
            server.handlers.load(Ordering::SeqCst) == 0
        })
        .await;
        eventually("rmcp's session tasks end", || {
            metrics.num_alive_tasks() + 2 <= open
        })
        .await;
        assert_eq!(
            raw(reqwest::Method::POST, &server.url, &raw_id, TOOLS_LIST).await,
            404
        );
    })
    .await;
}

#[derive(Clone, Default)]
struct Empty;

impl rmcp::ServerHandler for Empty {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_rmcp_ends_is_closed_in_the_layer() {
    bounded(async {
        // rmcp's own idle timeout, far shorter than the layer's: rmcp ends the session.
        let mut session_config = SessionConfig::default();
        session_config.keep_alive = Some(Duration::from_millis(300));
        let factory = tower_mcp_session::rmcp::stateful(
            || Ok(Empty),
            StreamableHttpServerConfig::default(),
        )
        .session_config(session_config);
        let layer = SessionLayer::mcp(factory)
            .idle_timeout(Duration::from_secs(600))
            .build();
        let sessions = layer.sessions();
        let router = axum::Router::new().route_service(
            "/mcp",
            ServiceBuilder::new()
                .layer(layer)
                .service(tower_mcp_session::rmcp::stateless(
                    || Ok(Empty),
                    StreamableHttpServerConfig::default(),
                )),
        );
        let server = Server::serve(router, sessions, Default::default()).await;
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
        let response = reqwest::Client::new()
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(init)
            .send()
            .await
            .expect("initialize");
        assert_eq!(response.status(), 200);
        let id = response.headers()["mcp-session-id"]
            .to_str()
            .expect("ascii id")
            .to_owned();
        let _ = response.bytes().await;
        assert!(server.sessions.contains(&id));
        eventually("rmcp's keep_alive ends the layer's session", || {
            !server.sessions.contains(&id)
        })
        .await;
        assert_eq!(
            raw(reqwest::Method::POST, &server.url, &id, TOOLS_LIST).await,
            404
        );
    })
    .await;
}

/// MCP 2025-11-25, Streamable HTTP, Security Warning: the example refuses a foreign `Origin`
/// (and a foreign `Host`) with 403 before any session opens; rmcp alone checks no `Origin`.
/// In both modes: the layer's and rmcp's own server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_or_host_gets_403_and_opens_nothing() {
    bounded(async {
        let layer = Server::start().await;
        let native = Server::serve(
            app::build_native(&app::Config::default()),
            app::build(app::Config::default()).sessions,
            Default::default(),
        )
        .await;
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
        for server in [&layer, &native] {
            for (origin, host, status) in [
                (Some("http://evil.example.com"), None, 403),
                (Some("null"), None, 403),
                (None, Some("evil.example.com"), 403),
                (Some("http://localhost:5173"), None, 200),
                (None, None, 200),
            ] {
                let mut request = reqwest::Client::new()
                    .post(&server.url)
                    .header("accept", "application/json, text/event-stream")
                    .header("content-type", "application/json")
                    .body(init);
                if let Some(origin) = origin {
                    request = request.header("origin", origin);
                }
                if let Some(host) = host {
                    request = request.header("host", host);
                }
                let response = request.send().await.expect("an answer");
                assert_eq!(response.status().as_u16(), status, "{origin:?} {host:?}");
                assert_eq!(
                    response.headers().contains_key("mcp-session-id"),
                    status == 200,
                    "{origin:?} {host:?}"
                );
                let _ = response.bytes().await;
            }
        }
        assert_eq!(layer.sessions.len(), 2, "only the allowed opens made a session");
    })
    .await;
}

/// The rmcp example's `--metrics-bind`: its app built inside the Prometheus recorder, one rmcp
/// client's session opened, used, deleted, then a 404; the scrape counts each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layers_metrics_count_an_rmcp_session() {
    bounded(async {
        let recorder = metrics_http::recorder();
        let handle = recorder.handle();
        let app::App {
            router,
            sessions,
            handlers,
        } = metrics::with_local_recorder(&recorder, || app::build(app::Config::default()));
        let server = Server::serve(router, sessions, handlers).await;
        let (client, id, _) = connect(&server, "client-a").await;
        assert_eq!(
            raw(reqwest::Method::POST, &server.url, &id, TOOLS_LIST).await,
            200
        );
        assert_eq!(
            raw(reqwest::Method::DELETE, &server.url, &id, "").await,
            204
        );
        assert_eq!(
            raw(reqwest::Method::POST, &server.url, &id, TOOLS_LIST).await,
            404
        );
        drop(client);

        let scrape = http::Request::get("/metrics")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(metrics_http::router(handle), scrape)
            .await
            .unwrap();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
                .parse()
                .unwrap()
        };
        assert_eq!(value(r#"tower_mcp_session_sessions_opened{outcome="opened"}"#), 1.0);
        assert_eq!(value(r#"tower_mcp_session_sessions_closed{reason="deleted"}"#), 1.0);
        assert_eq!(
            value(r#"tower_mcp_session_rejections{kind="session_not_found",http_response_status_code="404"}"#),
            1.0
        );
        assert_eq!(value("tower_mcp_session_sessions_live"), 0.0);
        // notifications/initialized and tools/list at least (the client may also open its
        // GET stream).
        assert!(value("tower_mcp_session_requests_routed") >= 2.0, "{text}");
    })
    .await;
}
