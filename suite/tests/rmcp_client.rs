//! The `mcp_server` example driven by the official Rust MCP client, `rmcp`, over real HTTP
//! on `127.0.0.1`.
//!
//! The client's HTTP backend is reqwest wrapped in [`Recorder`], which notes the session id
//! each response carries and every DELETE the client sends, so the tests see exactly which
//! session the client used and when it ended it. The server side is read through the
//! layer's `Sessions` handle.
//!
//! What a user relies on, and what each test shows:
//! - `two_clients_count_independently_and_a_closed_session_is_gone`: two clients at once get
//!   two sessions, each with its own MCP server (counters independent); closing a client
//!   sends DELETE and ends only its session; its id then gets 404; a new client starts over.
//! - `rmcp_reinitializes_when_the_server_closes_its_session`: a session closed on the server
//!   answers 404 and rmcp opens a new one by itself, whose state starts fresh.
//! - `get_streams_carry_each_sessions_own_notifications`: server-to-client messages reach
//!   the GET stream of their own session only, filtered by `logging/setLevel`.
//! - `auto_lifecycle_falls_back_to_initialize`: a client that first tries sessionless MCP
//!   (`server/discover`, 2026-07-28) is refused by the inner service in a way rmcp reads as
//!   "legacy server", and then opens a session with `initialize`.

// MCP logging (`notifications/message`, `logging/setLevel`) is deprecated in rmcp after
// 2025-11-25 (SEP-2577); this server speaks 2025-11-25, where it is current.
#![allow(deprecated)]

#[path = "../../examples/mcp_server/app.rs"]
#[allow(dead_code)]
mod app;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, LoggingLevel, LoggingMessageNotificationParam,
    ProtocolVersion, SetLevelRequestParams,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, RoleClient, RunningService,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse,
};
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_mcp_session::Sessions;

/// Bound on each whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

type HeaderMap = HashMap<http::HeaderName, http::HeaderValue>;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// The example's router, served on an ephemeral port of 127.0.0.1.
struct Server {
    url: String,
    sessions: Sessions,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Self {
        let app::App { router, sessions } = app::build(app::Config::default());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        Self {
            url: format!("http://{addr}/mcp"),
            sessions,
            task,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.sessions.shutdown();
        self.task.abort();
    }
}

/// What a [`Recorder`] saw.
#[derive(Debug, Default)]
struct Seen {
    /// Session ids in the responses, in order of first appearance.
    opened: Vec<String>,
    /// Session ids of the DELETE requests sent, with whether each succeeded.
    deleted: Vec<(String, bool)>,
    /// The JSON-RPC method of each POSTed message (`None` for responses), with the session
    /// id it was sent with.
    posted: Vec<(Option<String>, Option<String>)>,
}

/// rmcp's reqwest backend, noting the session ids of responses and the DELETEs sent.
#[derive(Clone, Default)]
struct Recorder {
    http: reqwest::Client,
    seen: Arc<Mutex<Seen>>,
}

impl Recorder {
    fn opened(&self) -> Vec<String> {
        self.seen.lock().unwrap().opened.clone()
    }

    fn deleted(&self) -> Vec<(String, bool)> {
        self.seen.lock().unwrap().deleted.clone()
    }

    fn posted(&self) -> Vec<(Option<String>, Option<String>)> {
        self.seen.lock().unwrap().posted.clone()
    }

    /// The session the client uses now.
    fn session_id(&self) -> String {
        self.opened()
            .last()
            .cloned()
            .expect("the server assigned no session id")
    }
}

impl StreamableHttpClient for Recorder {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HeaderMap,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let method = serde_json::to_value(&message)
            .ok()
            .and_then(|m| m.get("method").and_then(Value::as_str).map(str::to_owned));
        let sent_with = session_id.as_deref().map(str::to_owned);
        self.seen.lock().unwrap().posted.push((sent_with, method));
        let response = self
            .http
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await?;
        let assigned = match &response {
            StreamableHttpPostResponse::Json(_, id) | StreamableHttpPostResponse::Sse(_, id) => {
                id.clone()
            }
            _ => None,
        };
        if let Some(id) = assigned {
            let mut seen = self.seen.lock().unwrap();
            if !seen.opened.contains(&id) {
                seen.opened.push(id);
            }
        }
        Ok(response)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HeaderMap,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let result = self
            .http
            .delete_session(uri, session_id.clone(), auth_header, custom_headers)
            .await;
        let mut seen = self.seen.lock().unwrap();
        seen.deleted.push((session_id.to_string(), result.is_ok()));
        result
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HeaderMap,
    ) -> Result<BoxedSseResponse, StreamableHttpError<Self::Error>> {
        self.http
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }
}

/// A client handler that forwards the log entries the server sends.
struct LogCollector(mpsc::UnboundedSender<LoggingMessageNotificationParam>);

impl ClientHandler for LogCollector {
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params);
    }
}

fn transport(url: &str) -> (StreamableHttpClientTransport<Recorder>, Recorder) {
    let recorder = Recorder::default();
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    (
        StreamableHttpClientTransport::with_client(recorder.clone(), config),
        recorder,
    )
}

/// An rmcp client with the default handler, connected with `initialize`.
async fn connect(url: &str) -> (RunningService<RoleClient, ()>, Recorder) {
    let (transport, recorder) = transport(url);
    let client = ().serve(transport).await.expect("rmcp client connects");
    (client, recorder)
}

/// The one text of a successful tool result.
async fn call_text(client: &RunningService<RoleClient, impl ClientHandler>, tool: &str) -> String {
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"));
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} reported an error: {result:?}"
    );
    assert_eq!(result.content.len(), 1, "{tool}: {result:?}");
    result.content[0]
        .as_text()
        .unwrap_or_else(|| panic!("{tool} returned no text: {result:?}"))
        .text
        .clone()
}

/// A raw `tools/call increment` POST with session `id`: (status, JSON body).
async fn raw_increment(url: &str, id: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", app::LATEST_VERSION)
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"increment"}}"#)
        .send()
        .await
        .expect("raw POST");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("raw POST body");
    (status, serde_json::from_slice(&body).expect("a JSON body"))
}

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test did not finish in time")
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_count_independently_and_a_closed_session_is_gone() {
    bounded(async {
        let server = Server::start().await;
        let ((a, rec_a), (b, rec_b)) = tokio::join!(connect(&server.url), connect(&server.url));
        let (id_a, id_b) = (rec_a.session_id(), rec_b.session_id());
        assert_ne!(id_a, id_b, "two clients share a session");
        assert_eq!(server.sessions.len(), 2);
        assert!(server.sessions.contains(&id_a) && server.sessions.contains(&id_b));

        let info = a.peer_info().expect("initialize result");
        assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
        let name = info.server_info.as_ref().map(|s| s.name.as_str());
        assert_eq!(name, Some("tower-mcp-session-example"));
        let tools: Vec<String> = a
            .list_all_tools()
            .await
            .expect("tools/list")
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        assert!(tools.contains(&"increment".to_owned()), "{tools:?}");
        assert!(tools.contains(&"test_simple_text".to_owned()), "{tools:?}");
        assert_eq!(call_text(&b, "test_simple_text").await, app::SIMPLE_TEXT);

        // Each session has its own counter.
        assert_eq!(call_text(&a, "increment").await, "1");
        assert_eq!(call_text(&a, "increment").await, "2");
        assert_eq!(call_text(&b, "increment").await, "1");

        // Closing A sends DELETE with A's id; only A's session ends.
        a.cancel().await.expect("close client A");
        assert_eq!(rec_a.deleted(), vec![(id_a.clone(), true)]);
        assert!(
            !server.sessions.contains(&id_a),
            "A's session outlived its DELETE"
        );
        assert!(server.sessions.contains(&id_b));

        // A's id is now unknown: 404 with the JSON-RPC "Session not found" body.
        let (status, body) = raw_increment(&server.url, &id_a).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], json!(-32001), "{body}");

        // B is unaffected, and a new client starts from scratch.
        assert_eq!(call_text(&b, "increment").await, "2");
        let (c, rec_c) = connect(&server.url).await;
        let id_c = rec_c.session_id();
        assert!(id_c != id_a && id_c != id_b, "a session id was reused");
        assert_eq!(call_text(&c, "increment").await, "1");

        b.cancel().await.expect("close client B");
        c.cancel().await.expect("close client C");
        assert_eq!(rec_b.deleted(), vec![(id_b, true)]);
        assert_eq!(rec_c.deleted(), vec![(id_c, true)]);
        assert!(server.sessions.is_empty(), "{:?}", server.sessions.ids());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_reinitializes_when_the_server_closes_its_session() {
    bounded(async {
        let server = Server::start().await;
        let (a, rec_a) = connect(&server.url).await;
        let first = rec_a.session_id();
        assert_eq!(call_text(&a, "increment").await, "1");
        assert_eq!(call_text(&a, "increment").await, "2");

        // The server ends the session (as idle expiry or an operator would).
        assert!(server.sessions.close(&first));
        let (status, _) = raw_increment(&server.url, &first).await;
        assert_eq!(status, 404);

        // rmcp gets 404, initializes a new session and retries the call there: the new
        // session's MCP server has its own, fresh counter.
        assert_eq!(call_text(&a, "increment").await, "1");
        let opened = rec_a.opened();
        assert_eq!(opened.len(), 2, "{opened:?}");
        assert_eq!(opened[0], first);
        let second = opened[1].clone();
        assert!(server.sessions.contains(&second));
        assert!(!server.sessions.contains(&first));

        a.cancel().await.expect("close client");
        assert_eq!(rec_a.deleted(), vec![(second, true)]);
        assert!(server.sessions.is_empty());
    })
    .await;
}

/// Increments until a log entry arrives on the client's GET stream (the stream opens in the
/// background after `initialize`; entries sent before it opened are not kept), then takes
/// every entry up to the last increment. Returns the last counter value.
async fn sync_log_stream(
    client: &RunningService<RoleClient, LogCollector>,
    logs: &mut mpsc::UnboundedReceiver<LoggingMessageNotificationParam>,
    session_id: &str,
) -> u64 {
    let mut last = 0;
    let mut first_seen = None;
    for _ in 0..100 {
        last = call_text(client, "increment").await.parse().unwrap();
        if let Ok(Some(entry)) = tokio::time::timeout(Duration::from_millis(100), logs.recv()).await
        {
            first_seen = Some(entry);
            break;
        }
    }
    let mut entry = first_seen.expect("no log entry reached the GET stream");
    loop {
        assert_eq!(entry.level, LoggingLevel::Info);
        assert_eq!(entry.logger.as_deref(), Some("increment"));
        assert_eq!(
            entry.data["sessionId"],
            json!(session_id),
            "{:?}",
            entry.data
        );
        if entry.data["counter"] == json!(last) {
            return last;
        }
        entry = logs.recv().await.expect("the GET stream ended");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_streams_carry_each_sessions_own_notifications() {
    bounded(async {
        let server = Server::start().await;
        let (tx_a, mut logs_a) = mpsc::unbounded_channel();
        let (tx_b, mut logs_b) = mpsc::unbounded_channel();
        let (transport_a, rec_a) = transport(&server.url);
        let (transport_b, rec_b) = transport(&server.url);
        let a = LogCollector(tx_a)
            .serve(transport_a)
            .await
            .expect("client A");
        let b = LogCollector(tx_b)
            .serve(transport_b)
            .await
            .expect("client B");
        let (id_a, id_b) = (rec_a.session_id(), rec_b.session_id());

        // Every entry each client receives names its own session, in counter order.
        let last_a = sync_log_stream(&a, &mut logs_a, &id_a).await;
        sync_log_stream(&b, &mut logs_b, &id_b).await;
        assert!(logs_a.is_empty() && logs_b.is_empty());

        // Above the level of the entries, the server sends none: the next entry A gets is
        // the one of the increment after the level went back down.
        #[allow(deprecated)] // logging/setLevel is deprecated after 2025-11-25 (SEP-2577)
        {
            a.set_level(SetLevelRequestParams::new(LoggingLevel::Warning))
                .await
                .expect("logging/setLevel warning");
            assert_eq!(call_text(&a, "increment").await, (last_a + 1).to_string());
            a.set_level(SetLevelRequestParams::new(LoggingLevel::Info))
                .await
                .expect("logging/setLevel info");
        }
        assert_eq!(call_text(&a, "increment").await, (last_a + 2).to_string());
        let entry = logs_a.recv().await.expect("the GET stream ended");
        assert_eq!(entry.data["counter"], json!(last_a + 2), "{:?}", entry.data);
        assert_eq!(entry.data["sessionId"], json!(id_a));

        a.cancel().await.expect("close client A");
        b.cancel().await.expect("close client B");
        assert!(server.sessions.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_lifecycle_falls_back_to_initialize() {
    bounded(async {
        let server = Server::start().await;
        let (transport, recorder) = transport(&server.url);
        let lifecycle = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        let client =
            ().serve_with_lifecycle(transport, lifecycle)
                .await
                .expect("Auto lifecycle falls back to initialize");
        let info = client.peer_info().expect("initialize result");
        assert_eq!(info.protocol_version, ProtocolVersion::V_2025_11_25);
        let id = recorder.session_id();
        // The sessionless probe came first, without a session id; then the handshake.
        let posted = recorder.posted();
        let first_two: Vec<_> = posted.iter().take(2).cloned().collect();
        let expected = vec![
            (None, Some("server/discover".to_owned())),
            (None, Some("initialize".to_owned())),
        ];
        assert_eq!(first_two, expected, "{posted:?}");
        assert_eq!(server.sessions.ids().len(), 1);
        assert!(server.sessions.contains(&id));
        assert_eq!(call_text(&client, "increment").await, "1");
        client.cancel().await.expect("close client");
        assert_eq!(recorder.deleted(), vec![(id, true)]);
        assert!(server.sessions.is_empty());
    })
    .await;
}
