//! The `mcp_server` example's `--metrics-bind`: its Prometheus recorder and `/metrics`
//! router (`examples/mcp_server/metrics_http.rs`) in front of its app, in process.
//!
//! - `a_scripted_run_scrapes_exact_values`: on tokio's paused clock, 3 sessions opened, 5
//!   `tools/call`, 1 DELETE, 1 idle expiry (the sweeper), one 404, one 400; the scrape of
//!   `/metrics` holds exactly these values, in Prometheus names.
//! - `metrics_are_served_on_their_own_listener`: `serve` binds its own address (loopback,
//!   port 0) and answers `GET /metrics` with Prometheus text over TCP.

#[path = "../examples/mcp_server/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "../examples/mcp_server/metrics_http.rs"]
#[allow(dead_code)]
mod metrics_http;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const IDLE: Duration = Duration::from_secs(60);

fn initialize_body() -> String {
    json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "tests/example_metrics.rs", "version": "0" },
        },
    })
    .to_string()
}

fn request(method: http::Method, session: Option<&str>, body: String) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(id) = session {
        request = request
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-06-18");
    }
    request.body(Body::from(body)).unwrap()
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Option<String>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let id = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    response.into_body().collect().await.unwrap();
    (status, id)
}

async fn open(router: &Router) -> String {
    let (status, id) = send(router, request(http::Method::POST, None, initialize_body())).await;
    assert_eq!(status, StatusCode::OK);
    id.unwrap()
}

async fn call(router: &Router, id: &str) -> StatusCode {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "increment", "arguments": {} },
    });
    send(
        router,
        request(http::Method::POST, Some(id), body.to_string()),
    )
    .await
    .0
}

/// The scraped sample lines (no comments, no blank lines) of the series named `prefix*`.
fn samples<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(prefix) && !l.starts_with('#'))
        .collect();
    lines.sort_unstable();
    lines
}

#[tokio::test(start_paused = true)]
async fn a_scripted_run_scrapes_exact_values() {
    // The recorder before the layer: the app is built inside it.
    let recorder = metrics_http::recorder();
    let handle = recorder.handle();
    let app::App { router, sessions } = metrics::with_local_recorder(&recorder, || {
        app::build(app::Config {
            idle_timeout: IDLE,
            max_sessions: 10,
            ..app::Config::default()
        })
    });
    let scrape = metrics_http::router(handle);

    let (a, b, c) = (
        open(&router).await,
        open(&router).await,
        open(&router).await,
    );
    for id in [&a, &a, &b, &b] {
        assert_eq!(call(&router, id).await, StatusCode::OK);
    }
    let (deleted, _) = send(
        &router,
        request(http::Method::DELETE, Some(&b), String::new()),
    )
    .await;
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    tokio::time::advance(IDLE / 2).await;
    assert_eq!(call(&router, &c).await, StatusCode::OK);
    // a has been idle for 61 s, c for 31 s: the sweeper (every 15 s) expires a only.
    tokio::time::advance(IDLE / 2 + Duration::from_secs(1)).await;
    for _ in 0..100_000 {
        if sessions.len() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        call(&router, "no-such-session").await,
        StatusCode::NOT_FOUND
    );
    let no_id = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let (missing, _) = send(&router, request(http::Method::POST, None, no_id)).await;
    assert_eq!(missing, StatusCode::BAD_REQUEST);

    let response = scrape
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();

    let nonzero = |prefix: &str| -> Vec<String> {
        samples(&text, prefix)
            .into_iter()
            .filter(|l| !l.ends_with(" 0"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        nonzero("tower_mcp_session_sessions_"),
        [
            r#"tower_mcp_session_sessions_closed{reason="deleted"} 1"#,
            r#"tower_mcp_session_sessions_closed{reason="expired"} 1"#,
            "tower_mcp_session_sessions_limit 10",
            "tower_mcp_session_sessions_live 1",
            r#"tower_mcp_session_sessions_opened{outcome="opened"} 3"#,
        ]
    );
    assert_eq!(
        nonzero("tower_mcp_session_rejections"),
        [
            r#"tower_mcp_session_rejections{kind="missing_session_id",http_response_status_code="400"} 1"#,
            r#"tower_mcp_session_rejections{kind="session_not_found",http_response_status_code="404"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "tower_mcp_session_requests_"),
        [
            "tower_mcp_session_requests_in_flight 0",
            "tower_mcp_session_requests_routed 5",
            "tower_mcp_session_requests_sessionless 0",
        ]
    );
    // Durations: b at 0 s (deleted at once), a at 61 s, both asking for 2025-06-18.
    let version = r#"mcp_protocol_version="2025-06-18""#;
    let of_version: Vec<&str> = samples(&text, "mcp_server_session_duration")
        .into_iter()
        .filter(|l| l.contains(version))
        .collect();
    assert!(of_version.contains(&&*format!(
        "mcp_server_session_duration_count{{{version}}} 2"
    )));
    assert!(of_version.contains(&&*format!(
        "mcp_server_session_duration_sum{{{version}}} 61"
    )));
    assert!(of_version.contains(&&*format!(
        r#"mcp_server_session_duration_bucket{{{version},le="5"}} 1"#
    )));
    assert!(of_version.contains(&&*format!(
        r#"mcp_server_session_duration_bucket{{{version},le="86400"}} 2"#
    )));
    // No other version saw a session close.
    assert!(
        samples(&text, "mcp_server_session_duration_count")
            .iter()
            .filter(|l| !l.contains(version))
            .all(|l| l.ends_with(" 0"))
    );
    assert_eq!(
        samples(&text, "tower_mcp_session_streams_open"),
        ["tower_mcp_session_streams_open 0"]
    );
    assert_eq!(
        samples(&text, "tower_mcp_session_peek_"),
        [
            "tower_mcp_session_peek_budget 16777216",
            "tower_mcp_session_peek_held 0"
        ]
    );
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener() {
    let recorder = metrics_http::recorder();
    let handle = recorder.handle();
    let _app = metrics::with_local_recorder(&recorder, || app::build(app::Config::default()));
    let addr = metrics_http::serve("127.0.0.1:0".parse().unwrap(), handle)
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("\ntower_mcp_session_sessions_limit 1000\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\ntower_mcp_session_sessions_live 0\n"),
        "{answer}"
    );
}
