//! What the `mcp_server` example answers when its session data fails, on two nodes sharing a
//! store and a bus (in-process, paused clock):
//!
//! - `increment` with an idempotency key applies once however often it is sent, on either
//!   node, and a malformed key is refused;
//! - the store down: JSON-RPC -32010 with `retryAfterMs`, at once, while calls that need no
//!   data keep working;
//! - the record gone: the layer's 404 for that call, and 404 for the session's next request on
//!   either node.

#[path = "../examples/mcp_server/app.rs"]
#[allow(dead_code)]
mod app;
mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_mcp_session::bus::MemoryBus;
use tower_mcp_session::store::SessionStore;
use tower_mcp_session::{Cluster, SessionId};

use common::store::TestStore;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const NOT_FOUND: &str =
    r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#;

/// Two example nodes on one store and one bus.
fn nodes(store: &TestStore) -> (Router, Router) {
    let bus = MemoryBus::new();
    let node = || {
        app::build(app::Config {
            cluster: Some(Cluster::new(store.clone()).bus(bus.clone())),
            ..app::Config::default()
        })
        .router
    };
    (node(), node())
}

fn post(session: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::post("/mcp")
        .header(header::HOST, "127.0.0.1:3000")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(id) = session {
        builder = builder.header("mcp-session-id", id);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Opens a session on `router` and returns its id.
async fn open(router: &Router) -> String {
    let response = router
        .clone()
        .oneshot(post(None, INITIALIZE))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, _) = send(router, post(Some(&id), INITIALIZED)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    id
}

/// A `tools/call` of `increment`, with `meta` as its `_meta` if given.
fn increment(id: u64, meta: Option<Value>) -> String {
    let mut params = json!({ "name": "increment", "arguments": {} });
    if let Some(meta) = meta {
        params["_meta"] = meta;
    }
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }).to_string()
}

fn keyed(key: &str) -> Option<Value> {
    Some(json!({ app::IDEMPOTENCY_KEY: key }))
}

/// The text of a successful `tools/call` answer.
fn text_of(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap();
    value["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {body}"))
        .to_owned()
}

async fn call(router: &Router, session: &str, body: &str) -> String {
    let (status, body) = send(router, post(Some(session), body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    text_of(&body)
}

#[tokio::test(start_paused = true)]
async fn an_increment_retried_with_its_idempotency_key_counts_once_on_any_node() {
    let store = TestStore::default();
    let (a, b) = nodes(&store);
    let id = open(&a).await;

    assert_eq!(call(&a, &id, &increment(2, keyed("k-1"))).await, "1");
    // The answer was lost; the client retries with the same key, through either node.
    assert_eq!(call(&a, &id, &increment(3, keyed("k-1"))).await, "1");
    assert_eq!(call(&b, &id, &increment(4, keyed("k-1"))).await, "1");
    // Another key, or none, counts.
    assert_eq!(call(&b, &id, &increment(5, keyed("k-2"))).await, "2");
    assert_eq!(call(&a, &id, &increment(6, None)).await, "3");
    assert_eq!(call(&a, &id, &increment(7, keyed("k-2"))).await, "2");
}

#[tokio::test(start_paused = true)]
async fn a_session_remembers_its_32_latest_idempotency_keys() {
    let store = TestStore::default();
    let (a, _b) = nodes(&store);
    let id = open(&a).await;
    for n in 1..=33 {
        let key = format!("k-{n}");
        assert_eq!(
            call(&a, &id, &increment(n, keyed(&key))).await,
            n.to_string()
        );
    }
    // k-2..=k-33 are remembered; k-1 was forgotten when k-33 took its slot.
    assert_eq!(call(&a, &id, &increment(40, keyed("k-2"))).await, "2");
    assert_eq!(call(&a, &id, &increment(41, keyed("k-33"))).await, "33");
    assert_eq!(call(&a, &id, &increment(42, keyed("k-1"))).await, "34");
}

#[tokio::test(start_paused = true)]
async fn a_malformed_idempotency_key_is_invalid_params_and_counts_nothing() {
    let store = TestStore::default();
    let (a, _b) = nodes(&store);
    let id = open(&a).await;
    let long = "k".repeat(129);
    for meta in [
        json!({ app::IDEMPOTENCY_KEY: "" }),
        json!({ app::IDEMPOTENCY_KEY: 7 }),
        json!({ app::IDEMPOTENCY_KEY: "a b" }),
        json!({ app::IDEMPOTENCY_KEY: long }),
    ] {
        let (status, body) = send(&a, post(Some(&id), &increment(2, Some(meta)))).await;
        assert_eq!(status, StatusCode::OK);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], -32602, "{body}");
    }
    assert_eq!(call(&a, &id, &increment(3, None)).await, "1");
}

#[tokio::test(start_paused = true)]
async fn with_the_store_down_a_data_call_gets_a_retriable_error_at_once() {
    let store = TestStore::default();
    let (a, _b) = nodes(&store);
    let id = open(&a).await;
    assert_eq!(call(&a, &id, &increment(2, None)).await, "1");

    store.set_down(true);
    let clock = tokio::time::Instant::now();
    for n in 3..8 {
        let (status, body) = send(&a, post(Some(&id), &increment(n, None))).await;
        assert_eq!(status, StatusCode::OK);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({
                "jsonrpc": "2.0",
                "id": n,
                "error": {
                    "code": app::DATA_UNAVAILABLE,
                    "message": "Session data temporarily unavailable: retry later",
                    "data": { "retryAfterMs": 500 },
                },
            })
        );
    }
    assert_eq!(tokio::time::Instant::now(), clock);
    // A call that needs no data is served as before.
    let (status, body) = send(
        &a,
        post(
            Some(&id),
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#""name":"increment""#), "{body}");

    // Back: once the layer's probe has seen it, the counter goes on where it was.
    store.set_down(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(call(&a, &id, &increment(10, None)).await, "2");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_finds_the_record_gone_gets_404_and_so_does_the_next_request_on_either_node() {
    let store = TestStore::default();
    let (a, b) = nodes(&store);
    let id = open(&a).await;
    assert_eq!(call(&b, &id, &increment(2, None)).await, "1");
    // The store loses the record (flushed, or a failover that lost the last writes).
    store
        .inner
        .delete(&SessionId::parse(&id).unwrap())
        .await
        .unwrap();

    let (status, body) = send(&a, post(Some(&id), &increment(3, None))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        r#"{"error":{"code":-32001,"message":"Session not found"},"id":3,"jsonrpc":"2.0"}"#
    );
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    for node in [&a, &b] {
        let (status, body) = send(node, post(Some(&id), &increment(4, None))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, NOT_FOUND);
    }
}
