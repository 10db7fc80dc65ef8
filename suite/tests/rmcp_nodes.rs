//! rmcp sessions on two nodes sharing a real Redis: `RedisEventStore` on its own, and
//! `Last-Event-ID` resumption through the node that did not serve the stream (features `rmcp`
//! and `redis`).
//!
//! What each test shows:
//! - `the_event_store_replays_one_stream_after_an_id`: events of two streams stored
//!   interleaved; a replay gives the later events of the named stream only, with their ids,
//!   messages and retry hints; malformed and unknown ids are errors; a stream has a TTL.
//! - `the_event_store_keeps_a_bounded_number_of_events`: a stream keeps the latest
//!   `max_events`; an id no longer kept is an error, not a silent gap.
//! - `a_stream_served_by_one_node_resumes_through_the_other`: two layers (`RedisStore`,
//!   `RedisBus`, `stateful(..).event_store(RedisEventStore)`); a tool call on A answers in SSE
//!   (priming event, two progress notifications, the result), then a GET with `Last-Event-ID`
//!   on B restores the session there and replays the rest of that stream from Redis; an event
//!   id of another session replays nothing; a tool call on B works on the restored rmcp
//!   session; DELETE on B gives 404 on A.
//! - `the_example_keeps_its_state_in_the_layer_session_on_every_node`: two nodes of the rmcp
//!   example (`suite/examples/rmcp_server`) sharing Redis; `increment` on A, B, A counts
//!   1, 2, 3 (the counter is the layer session's data, reached from rmcp's request context);
//!   a log level set on B filters `notify_later` on A; DELETE on A gives 404 on B.
//!
//! - `notifications_and_answers_cross_to_whichever_node_the_client_uses`: two example nodes;
//!   a notification A's copy sends outside a request reaches the GET stream on B (and B's own
//!   after it); `list_roots` on A asks on its answer stream with an id naming A's copy, the
//!   answer POSTed to B completes the tool on A; a stray answer is 202; a GET stream cut on B
//!   and resumed on A with `Last-Event-ID` replays what it missed and stays live.
//! - `a_cancellation_posted_to_another_node_cancels_the_request`: a tool running on A is
//!   cancelled by a `notifications/cancelled` POSTed to B.
//!
//! Redis at 127.0.0.1:6379 or `REDIS_URL`; a Redis that cannot be reached fails the tests.
//! Keys live under a unique prefix per test and only those are deleted.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use futures_util::StreamExt;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ProgressNotificationParam,
    ServerConfig, ServerJsonRpcMessage,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::transport::streamable_http_server::session::{EventStore, ServerSseMessage};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_mcp_session::bus::RedisBus;
use tower_mcp_session::rmcp::{RedisEventStore, stateful, stateless};
use tower_mcp_session::store::RedisStore;
use tower_mcp_session::{Cluster, SessionLayer, Sessions};

#[path = "../examples/rmcp_server/app.rs"]
#[allow(dead_code)]
mod app;

const WAIT: Duration = Duration::from_secs(10);
const VERSION: &str = "2025-11-25";
const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
const MCP_SESSION_ID: &str = "mcp-session-id";
const LAST_EVENT_ID: &str = "last-event-id";

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unique_prefix() -> String {
    format!("tms-test:{}:", uuid_like())
}

/// A random hex string (the suite does not depend on `uuid`).
fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out
}

async fn admin() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a Redis URL");
    match tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(con)) => con,
        _ => panic!("this test needs a Redis 7 at {url} (set REDIS_URL to use another)"),
    }
}

/// Deletes the keys under `prefix` (and nothing else).
async fn delete_keys(prefix: &str) {
    let mut con = admin().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut con).await;
    }
}

fn from_json<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid MCP message")
}

// --- RedisEventStore on its own --------------------------------------------------------------

fn progress(text: &str) -> ServerJsonRpcMessage {
    from_json(json!({"jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": "t", "progress": 1, "message": text}}))
}

fn event(message: Option<ServerJsonRpcMessage>, retry: Option<Duration>) -> ServerSseMessage {
    let mut event = ServerSseMessage::default();
    event.message = message.map(Arc::new);
    event.retry = retry;
    event
}

/// What the client would see of an event: its id, its message as JSON, its retry.
fn seen(event: &ServerSseMessage) -> (Option<String>, Option<Value>, Option<Duration>) {
    (
        event.event_id.clone(),
        event
            .message
            .as_ref()
            .map(|m| serde_json::to_value(m.as_ref()).unwrap()),
        event.retry,
    )
}

async fn replay(store: &RedisEventStore, after: &str) -> Vec<ServerSseMessage> {
    let stream = tokio::time::timeout(WAIT, store.replay_events_after(after))
        .await
        .expect("replayed in time")
        .unwrap_or_else(|e| panic!("replay after {after:?}: {e}"));
    tokio::time::timeout(WAIT, stream.collect())
        .await
        .expect("the replay ends")
}

#[tokio::test]
async fn the_event_store_replays_one_stream_after_an_id() {
    let prefix = unique_prefix();
    let store = RedisEventStore::open(&redis_url(), &prefix)
        .expect("store")
        .with_ttl(Duration::from_secs(60));
    let (x, y) = ("stream-x", "stream-y");
    let xs = [
        event(None, Some(Duration::from_secs(3))),
        event(Some(progress("x1")), None),
        event(Some(progress("x2")), Some(Duration::from_millis(1500))),
    ];
    let ys = [
        event(Some(progress("y0")), None),
        event(Some(progress("y1")), None),
    ];
    // Interleaved: x0 y0 x1 y1 x2.
    let mut xid = Vec::new();
    let mut yid = Vec::new();
    for (i, stored) in xs.iter().enumerate() {
        xid.push(store.store_event(x, stored).await.expect("stored"));
        if let Some(stored) = ys.get(i) {
            yid.push(store.store_event(y, stored).await.expect("stored"));
        }
    }
    let mut all: Vec<&String> = xid.iter().chain(&yid).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 5, "ids are unique: {xid:?} {yid:?}");
    assert!(all.iter().all(|id| !id.contains(['\n', '\r'])));

    let replayed = replay(&store, &xid[0]).await;
    let expected: Vec<_> = xs[1..]
        .iter()
        .zip(&xid[1..])
        .map(|(event, id)| {
            let (_, message, retry) = seen(event);
            (Some(id.clone()), message, retry)
        })
        .collect();
    assert_eq!(replayed.iter().map(seen).collect::<Vec<_>>(), expected);
    assert!(
        replay(&store, &xid[2]).await.is_empty(),
        "nothing after the last"
    );
    let replayed = replay(&store, &yid[0]).await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].event_id.as_deref(), Some(yid[1].as_str()));
    assert_eq!(seen(&replayed[0]).1, seen(&ys[1]).1);

    // Malformed and unknown ids are errors.
    let (entry, _) = xid[0].split_once('@').unwrap();
    for bad in [
        String::new(),
        "garbage".to_owned(),
        entry.to_owned(),
        format!("x{}", xid[0]),
        format!("{entry}@stream-z"),
        format!("0-1@{x}"),
    ] {
        assert!(
            store.replay_events_after(&bad).await.is_err(),
            "{bad:?} is refused"
        );
    }
    assert!(store.store_event("a\nb", &xs[1]).await.is_err());

    // A session's GET stream (`<session id>:common`) is hashed on the session id.
    let common = store.store_event("s-1:common", &xs[1]).await.unwrap();
    assert!(common.ends_with("@s-1:common"), "{common}");

    let mut con = admin().await;
    for key in [
        format!("{prefix}ev:{{{x}}}"),
        format!("{prefix}ev:{{s-1}}:common"),
    ] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{key} expires: {ttl}");
    }

    delete_keys(&prefix).await;
}

#[tokio::test]
async fn the_event_store_keeps_a_bounded_number_of_events() {
    let prefix = unique_prefix();
    let store = RedisEventStore::open(&redis_url(), &prefix)
        .expect("store")
        .with_max_events(5);
    assert_eq!(store.max_events(), 5);
    let mut ids = Vec::new();
    for i in 0..12 {
        let message = progress(&format!("z{i}"));
        ids.push(
            store
                .store_event("z", &event(Some(message), None))
                .await
                .unwrap(),
        );
    }
    let mut con = admin().await;
    let len: i64 = redis::cmd("XLEN")
        .arg(format!("{prefix}ev:{{z}}"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(len, 5);
    assert!(
        store.replay_events_after(&ids[0]).await.is_err(),
        "an id no longer kept is an error"
    );
    let replayed = replay(&store, &ids[7]).await;
    let replayed: Vec<_> = replayed.iter().filter_map(|e| e.event_id.clone()).collect();
    assert_eq!(replayed, ids[8..]);

    delete_keys(&prefix).await;
}

// --- Two nodes -------------------------------------------------------------------------------

/// A tool server: every tool reports progress twice (if the call has a progress token), then
/// answers `done <tool>`; but `wait`, which runs until it is cancelled and counts that in
/// [`CANCELLED`].
struct Worker;

/// `wait` calls running now, and `wait` calls ended by a cancellation.
static WAITING: AtomicUsize = AtomicUsize::new(0);
static CANCELLED: AtomicUsize = AtomicUsize::new(0);

impl ServerHandler for Worker {
    fn get_info(&self) -> ServerConfig {
        from_json(json!({
            "protocolVersion": VERSION,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "rmcp-nodes", "version": "1"}
        }))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == "wait" {
            WAITING.fetch_add(1, Ordering::SeqCst);
            context.ct.cancelled().await;
            CANCELLED.fetch_add(1, Ordering::SeqCst);
            return Err(ErrorData::internal_error("cancelled", None));
        }
        if let Some(token) = context.meta.get_progress_token() {
            for progress in [1, 2] {
                let param: ProgressNotificationParam =
                    from_json(json!({"progressToken": token, "progress": progress, "total": 2}));
                context
                    .peer
                    .notify_progress(param)
                    .await
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            }
        }
        let result: CallToolResult = from_json(json!({
            "content": [{"type": "text", "text": format!("done {}", request.name)}],
            "resultType": "complete"
        }));
        Ok(result.into())
    }
}

struct Node {
    router: Router,
    sessions: Sessions,
    built: Arc<AtomicUsize>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.sessions.shutdown();
    }
}

fn node(prefix: &str, events: &RedisEventStore) -> Node {
    let built = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&built);
    let config = StreamableHttpServerConfig::default();
    let factory = stateful(
        move || {
            count.fetch_add(1, Ordering::SeqCst);
            Ok(Worker)
        },
        config.clone(),
    )
    .event_store(Arc::new(events.clone()));
    // rmcp checks Host on every request, the replayed `initialize` included: the default
    // replay headers keep it.
    let cluster = Cluster::new(RedisStore::open(&redis_url(), prefix).expect("store"))
        .bus(RedisBus::open(&redis_url(), prefix).expect("bus"));
    let layer = SessionLayer::mcp(factory).cluster(cluster).build();
    let sessions = layer.sessions();
    let sessionless = stateless(|| Ok(Worker), config.with_json_response(true));
    let router = Router::new().route_service(
        "/mcp",
        ServiceBuilder::new().layer(layer).service(sessionless),
    );
    Node {
        router,
        sessions,
        built,
    }
}

fn post(id: Option<&str>, body: Value) -> Request<Body> {
    let mut builder = Request::post("/mcp")
        .header(HOST, "localhost")
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream")
        .header(MCP_PROTOCOL_VERSION, VERSION);
    if let Some(id) = id {
        builder = builder.header(MCP_SESSION_ID, id);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

fn resume(id: &str, last_event_id: &str) -> Request<Body> {
    Request::get("/mcp")
        .header(HOST, "localhost")
        .header(ACCEPT, "text/event-stream")
        .header(MCP_PROTOCOL_VERSION, VERSION)
        .header(MCP_SESSION_ID, id)
        .header(LAST_EVENT_ID, last_event_id)
        .body(Body::empty())
        .unwrap()
}

fn delete(id: &str) -> Request<Body> {
    Request::delete("/mcp")
        .header(HOST, "localhost")
        .header(MCP_PROTOCOL_VERSION, VERSION)
        .header(MCP_SESSION_ID, id)
        .body(Body::empty())
        .unwrap()
}

/// One SSE event: its id, its data (JSON, `None` for a priming event), its retry.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: Option<String>,
    data: Option<Value>,
    retry: Option<u64>,
}

/// Sends `request` to `node`, checks the status and reads the SSE answer to its end.
async fn send(node: &Node, request: Request<Body>, status: StatusCode) -> Vec<Sse> {
    let what = format!("{} {:?}", request.method(), request.headers());
    let response = tokio::time::timeout(WAIT, node.router.clone().oneshot(request))
        .await
        .expect("answered in time")
        .unwrap_or_else(|e: Infallible| match e {});
    assert_eq!(response.status(), status, "{what}");
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("the answer ends in time")
        .expect("a readable answer")
        .to_bytes();
    parse_sse(&String::from_utf8_lossy(&body))
}

fn parse_sse(text: &str) -> Vec<Sse> {
    let mut events = Vec::new();
    for block in text.replace("\r\n", "\n").split("\n\n") {
        let (mut id, mut data, mut retry, mut any) = (None, String::new(), None, false);
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = Some(value.to_owned()),
                "data" => data.push_str(value),
                "retry" => retry = value.parse().ok(),
                _ => continue, // comments (keep-alive) and unknown fields
            }
            any = true;
        }
        if any {
            let data =
                (!data.is_empty()).then(|| serde_json::from_str(&data).expect("SSE data is JSON"));
            events.push(Sse { id, data, retry });
        }
    }
    events
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {},
        "clientInfo": {"name": "rmcp-nodes-test", "version": "1"}}})
}

fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

fn call(id: u64, tool: &str, token: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": {}, "_meta": {"progressToken": token}}})
}

/// Opens a session on `node`: `initialize` (answered by the server named `server`), then
/// `notifications/initialized`.
async fn open_on(node: &Node, server: &str) -> String {
    let response =
        tokio::time::timeout(WAIT, node.router.clone().oneshot(post(None, initialize())))
            .await
            .expect("answered in time")
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()[MCP_SESSION_ID]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains(server),
        "the initialize answer"
    );
    send(node, post(Some(&id), initialized()), StatusCode::ACCEPTED).await;
    id
}

/// Waits (up to `WAIT`) until `node` no longer holds session `id`; panics with `what` if it
/// still does.
async fn closed(node: &Node, id: &str, what: &str) {
    let gone = async {
        while node.sessions.ids().iter().any(|live| live.as_str() == id) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, gone).await.expect(what);
}

/// Opens a session of the test's own server on `node`.
async fn open(node: &Node) -> String {
    open_on(node, "rmcp-nodes").await
}

/// The events of a tool call's answer: a priming event, two progress notifications, the
/// result; every id is the session's.
fn check_call_answer(events: &[Sse], session: &str, id: u64, tool: &str) {
    assert_eq!(events.len(), 4, "{events:#?}");
    assert!(
        events[0].data.is_none() && events[0].retry.is_some(),
        "priming: {:?}",
        events[0]
    );
    for (event, progress) in events[1..3].iter().zip([1.0, 2.0]) {
        let data = event.data.as_ref().unwrap();
        assert_eq!(data["method"], "notifications/progress");
        assert_eq!(data["params"]["progress"].as_f64(), Some(progress));
    }
    let answer = events[3].data.as_ref().unwrap();
    assert_eq!(answer["id"], id);
    assert_eq!(
        answer["result"]["content"][0]["text"],
        format!("done {tool}")
    );
    for event in events {
        let event_id = event.id.as_deref().expect("every event has an id");
        let (_, stream) = event_id.split_once('@').expect("<entry id>@<stream id>");
        assert!(
            stream.starts_with(&format!("{session}/")),
            "{event_id} names a stream of {session}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_served_by_one_node_resumes_through_the_other() {
    let prefix = unique_prefix();
    // Short-lived streams: what a failed run leaves behind goes away by itself.
    let events = RedisEventStore::open(&redis_url(), &prefix)
        .expect("event store")
        .with_ttl(Duration::from_secs(120));
    let a = node(&prefix, &events);
    let b = node(&prefix, &events);

    // The session opens on A and a tool call answers there, in SSE.
    let id = open(&a).await;
    assert_eq!(a.built.load(Ordering::SeqCst), 1);
    let answer = send(&a, post(Some(&id), call(2, "work", "p-2")), StatusCode::OK).await;
    check_call_answer(&answer, &id, 2, "work");
    let ids: Vec<String> = answer.iter().map(|e| e.id.clone().unwrap()).collect();

    // Resumed through A, from the store.
    let replayed = send(&a, resume(&id, &ids[1]), StatusCode::OK).await;
    assert_eq!(replayed, answer[2..]);

    // Resumed through B, which does not hold the session: B restores it (the factory once,
    // `initialize` replayed), and rmcp replays the rest of the stream from Redis.
    let replayed = send(&b, resume(&id, &ids[0]), StatusCode::OK).await;
    assert_eq!(b.built.load(Ordering::SeqCst), 1, "B restored the session");
    assert_eq!(
        replayed,
        answer[1..],
        "the events after the first, ids included"
    );
    let replayed = send(&b, resume(&id, &ids[2]), StatusCode::OK).await;
    assert_eq!(replayed, answer[3..]);
    let replayed = send(&b, resume(&id, &ids[3]), StatusCode::OK).await;
    assert!(replayed.is_empty(), "nothing after the last: {replayed:?}");

    // An event id of another session (its stream exists, in the same store) replays nothing
    // in this one; neither does a malformed one (rmcp answers an empty stream).
    let other = open(&a).await;
    let other_answer = send(
        &a,
        post(Some(&other), call(2, "other", "p-o")),
        StatusCode::OK,
    )
    .await;
    check_call_answer(&other_answer, &other, 2, "other");
    let foreign = other_answer[0].id.clone().unwrap();
    assert!(
        send(&b, resume(&id, &foreign), StatusCode::OK)
            .await
            .is_empty()
    );
    // Forged: this session's id where a scope used to be, the other session's stream after
    // the `@`.
    let forged = format!("{id}/{foreign}");
    assert!(
        send(&b, resume(&id, &forged), StatusCode::OK)
            .await
            .is_empty()
    );
    let (entry, _) = foreign.split_once('@').unwrap();
    let other_common = format!("{entry}@{other}/{other}:common");
    assert!(
        send(&b, resume(&id, &other_common), StatusCode::OK)
            .await
            .is_empty()
    );
    assert!(
        send(&b, resume(&id, "garbage"), StatusCode::OK)
            .await
            .is_empty()
    );
    // The other session's own client can resume it.
    let replayed = send(&b, resume(&other, &foreign), StatusCode::OK).await;
    assert_eq!(replayed, other_answer[1..]);

    // The restored rmcp session answers on B as usual.
    let on_b = send(&b, post(Some(&id), call(3, "again", "p-3")), StatusCode::OK).await;
    check_call_answer(&on_b, &id, 3, "again");
    let replayed = send(
        &a,
        resume(&id, on_b[0].id.as_ref().unwrap()),
        StatusCode::OK,
    )
    .await;
    assert_eq!(replayed, on_b[1..], "and A resumes B's stream");

    // DELETE through B ends the session on both nodes.
    send(&b, delete(&id), StatusCode::NO_CONTENT).await;
    closed(&a, &id, "the bus closes the session on A").await;
    send(
        &a,
        post(Some(&id), call(4, "x", "p-4")),
        StatusCode::NOT_FOUND,
    )
    .await;
    send(&b, resume(&id, &ids[0]), StatusCode::NOT_FOUND).await;
    assert_eq!(
        a.built.load(Ordering::SeqCst),
        2,
        "A built its two sessions only"
    );

    // Every stream under the prefix expires.
    let mut con = admin().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}ev:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(keys.len() >= 3, "{keys:?}");
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} expires");
    }

    delete_keys(&prefix).await;
}

/// A node of the rmcp example with the store, bus and event store on Redis under `prefix`.
fn example_node(prefix: &str) -> Node {
    let url = redis_url();
    let app = app::build(app::Config {
        redis: Some(app::Redis {
            store: RedisStore::open(&url, prefix).expect("store"),
            bus: RedisBus::open(&url, prefix).expect("bus"),
            events: RedisEventStore::open(&url, prefix)
                .expect("event store")
                .with_ttl(Duration::from_secs(120)),
        }),
        ..app::Config::default()
    });
    Node {
        router: app.router,
        sessions: app.sessions,
        built: app.handlers,
    }
}

/// The text of a tool call's result in an SSE answer (its last event).
fn result_text(events: &[Sse]) -> String {
    let last = events
        .last()
        .and_then(|e| e.data.clone())
        .expect("an answer");
    last["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {last}"))
        .to_owned()
}

/// Calls the example's `notify_later` on `node` (it answers at once and sends `message` on the
/// session's GET stream 100 ms later); the answer.
async fn notify_later(node: &Node, id: &str, n: u64, message: &str) -> Vec<Sse> {
    let call = tool(n, "notify_later", json!({ "message": message }));
    send(node, post(Some(id), call), StatusCode::OK).await
}

fn tool(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": name, "arguments": arguments}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_keeps_its_state_in_the_layer_session_on_every_node() {
    let prefix = unique_prefix();
    let a = example_node(&prefix);
    let b = example_node(&prefix);
    let id = open_on(&a, "tower-mcp-session-rmcp-example").await;

    // A, B, A: one counter, in the layer session's data (Redis), whichever node answers.
    let mut counts = Vec::new();
    for (n, node) in [&a, &b, &a].into_iter().enumerate() {
        let answer = send(
            node,
            post(Some(&id), tool(10 + n as u64, "increment", json!({}))),
            StatusCode::OK,
        )
        .await;
        counts.push(result_text(&answer));
    }
    assert_eq!(counts, ["1", "2", "3"]);
    assert_eq!(b.sessions.len(), 1, "B restored the session");

    // The level set on B is the session's: A's notify_later obeys it.
    let set_level = json!({"jsonrpc": "2.0", "id": 20, "method": "logging/setLevel",
        "params": {"level": "error"}});
    let answer = send(&b, post(Some(&id), set_level), StatusCode::OK).await;
    assert!(
        answer
            .last()
            .and_then(|e| e.data.clone())
            .expect("an answer")["result"]
            .is_object()
    );
    let answer = notify_later(&a, &id, 21, "hi").await;
    assert_eq!(result_text(&answer), "filtered by the session's log level");

    // DELETE on A ends the session on B too (the bus closes B's copy).
    send(&a, delete(&id), StatusCode::NO_CONTENT).await;
    closed(&b, &id, "the bus closes the session on B").await;
    let response = tokio::time::timeout(
        WAIT,
        b.router
            .clone()
            .oneshot(post(Some(&id), tool(30, "increment", json!({})))),
    )
    .await
    .expect("answered in time")
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    delete_keys(&prefix).await;
}

fn get(id: &str, last_event_id: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("/mcp")
        .header(HOST, "localhost")
        .header(ACCEPT, "text/event-stream")
        .header(MCP_PROTOCOL_VERSION, VERSION)
        .header(MCP_SESSION_ID, id);
    if let Some(last) = last_event_id {
        builder = builder.header(LAST_EVENT_ID, last);
    }
    builder.body(Body::empty()).unwrap()
}

/// An SSE answer read event by event while it is still open.
struct Live {
    body: Body,
    buffer: String,
}

impl Live {
    /// Sends `request` to `node` and checks that it answers 200.
    async fn open(node: &Node, request: Request<Body>) -> Self {
        let response = tokio::time::timeout(WAIT, node.router.clone().oneshot(request))
            .await
            .expect("answered in time")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event with data (priming events and keep-alives skipped).
    async fn next(&mut self, what: &str) -> Value {
        self.next_event(what).await.data.expect("data")
    }

    /// The next event with data, with its id.
    async fn next_event(&mut self, what: &str) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_sse(&block).into_iter().find(|e| e.data.is_some()) {
                    return event;
                }
                continue;
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
                .unwrap_or_else(|| panic!("{what}: the stream ended"))
                .expect("a readable stream");
            if let Ok(data) = frame.into_data() {
                self.buffer
                    .push_str(&String::from_utf8_lossy(&data).replace("\r\n", "\n"));
            }
        }
    }
}

fn log_text(data: &Value) -> &str {
    assert_eq!(data["method"], "notifications/message", "{data}");
    data["params"]["data"].as_str().expect("a text log message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_and_answers_cross_to_whichever_node_the_client_uses() {
    let prefix = unique_prefix();
    let a = example_node(&prefix);
    let b = example_node(&prefix);
    let id = open_on(&a, "tower-mcp-session-rmcp-example").await;

    // The GET stream is on B; the notification is sent by A's copy, outside any request.
    let mut stream = Live::open(&b, get(&id, None)).await;
    let answer = notify_later(&a, &id, 2, "from a").await;
    assert_eq!(result_text(&answer), "scheduled");
    assert_eq!(
        log_text(&stream.next("A's notification on B").await),
        "from a"
    );
    // And one sent by B's own copy arrives on the same stream, after it.
    notify_later(&b, &id, 3, "from b").await;
    assert_eq!(
        log_text(&stream.next("B's notification on B").await),
        "from b"
    );
    drop(stream);

    // A's tool asks the client for its roots on its answer stream; the client answers
    // through B, and the tool on A completes.
    let mut call = Live::open(&a, post(Some(&id), tool(4, "list_roots", json!({})))).await;
    let ask = call.next("roots/list from A").await;
    assert_eq!(ask["method"], "roots/list", "{ask}");
    let asked = ask["id"].clone();
    assert!(
        asked.as_str().is_some_and(|id| id.starts_with("tms.")),
        "the request's id names the copy that asked: {asked}"
    );
    let roots = json!({"jsonrpc": "2.0", "id": asked, "result": {"roots": [
        {"uri": "file:///from-b", "name": "b"}]}});
    send(&b, post(Some(&id), roots), StatusCode::ACCEPTED).await;
    let done = call.next("the tool's answer on A").await;
    assert_eq!(done["id"], 4, "{done}");
    let text = done["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("file:///from-b"), "{text}");

    // An answer nobody asked for is taken as on one node: 202, nothing else happens.
    let stray = json!({"jsonrpc": "2.0", "id": "tms.000000000000.7", "result": {}});
    send(&b, post(Some(&id), stray), StatusCode::ACCEPTED).await;

    // The GET stream on B is cut after "one"; "two" is sent meanwhile; resumed on A with
    // the id of "one", it replays "two" and stays live: "three" arrives on it.
    let mut stream = Live::open(&b, get(&id, None)).await;
    notify_later(&a, &id, 5, "one").await;
    let one = stream.next_event("one").await;
    assert_eq!(log_text(one.data.as_ref().unwrap()), "one");
    let one_id = one.id.expect("an event id");
    assert!(
        one_id.contains(&format!("@{id}/")),
        "a stored event of this session: {one_id}"
    );
    drop(stream);
    // The session's common stream in the event store (see `RedisEventStore`'s key layout).
    let common = format!("{prefix}ev:{{{id}}}/{id}:common");
    let stored = || async {
        let len: usize = redis::cmd("XLEN")
            .arg(&common)
            .query_async(&mut admin().await)
            .await
            .unwrap();
        len
    };
    let before = stored().await;
    notify_later(&b, &id, 6, "two").await;
    // notify_later sends 100 ms after its answer: "two" is in the store before the resume.
    let in_store = async {
        while stored().await == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, in_store)
        .await
        .expect("two is stored");
    let mut stream = Live::open(&a, get(&id, Some(&one_id))).await;
    assert_eq!(log_text(&stream.next("two, replayed").await), "two");
    notify_later(&b, &id, 7, "three").await;
    assert_eq!(log_text(&stream.next("three, live").await), "three");
    drop(stream);
    send(&a, delete(&id), StatusCode::NO_CONTENT).await;
    closed(&b, &id, "the bus closes the session on B").await;
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_posted_to_another_node_cancels_the_request() {
    let prefix = unique_prefix();
    let events = RedisEventStore::open(&redis_url(), &prefix)
        .expect("event store")
        .with_ttl(Duration::from_secs(120));
    let a = node(&prefix, &events);
    let b = node(&prefix, &events);
    let id = open(&a).await;

    // `wait` runs on A until it is cancelled; the cancellation is POSTed to B.
    let _call = Live::open(&a, post(Some(&id), call(7, "wait", "p-7"))).await;
    let started = async {
        while WAITING.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, started)
        .await
        .expect("wait runs on A");
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "the user stopped it"}});
    send(&b, post(Some(&id), cancel), StatusCode::ACCEPTED).await;
    assert_eq!(b.built.load(Ordering::SeqCst), 1, "B restored the session");
    let cancelled = async {
        while CANCELLED.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, cancelled)
        .await
        .expect("the request on A is cancelled");
    send(&a, delete(&id), StatusCode::NO_CONTENT).await;
    delete_keys(&prefix).await;
}
