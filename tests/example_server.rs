//! The production hardening of the `mcp_server` example: its Host/Origin checks and CORS
//! (driven in-process with `oneshot`), its request limits, and the connection-level limits
//! of its hyper-util server (over loopback, with short real timeouts).
//!
//! - `two_host_headers_are_refused_with_400`, `an_absolute_form_target_is_checked_like_host`:
//!   DNS-rebinding checks beyond the `Host` header.
//! - `cors_*`: preflights from allowed origins are answered with the exact CORS headers
//!   before the session layer; other origins get none, foreign ones 403; scripts of an allowed
//!   origin can read `Mcp-Session-Id`.
//! - `an_oversized_body_gets_413`, `a_stalled_post_gets_408`: the request limits.
//! - `server_*`: connection cap, header-read timeout, peer address, bounded shutdown.

#[path = "../examples/mcp_server/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "../examples/mcp_server/server.rs"]
#[allow(dead_code)]
mod server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tower::ServiceExt;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
const PAGE: &str = "http://127.0.0.1:8000";
const ALLOW_HEADERS: &str =
    "mcp-session-id,mcp-protocol-version,last-event-id,content-type,authorization";
/// What the session layer answers a request without a session id that is not `initialize`.
const NEEDS_SESSION: &str = "Bad Request: Mcp-Session-Id header is required";
const FORBIDDEN: &str = "Forbidden: Host or Origin not allowed";

fn router(config: app::Config) -> Router {
    app::build(config).router
}

fn with_origins(origins: &[&str]) -> Router {
    router(app::Config {
        allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
        ..app::Config::default()
    })
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn post_initialize(origin: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/mcp")
        .header(header::HOST, "127.0.0.1:3000")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream");
    if let Some(origin) = origin {
        builder = builder.header(header::ORIGIN, origin);
    }
    builder.body(Body::from(INITIALIZE)).unwrap()
}

fn preflight(origin: &str, method: &str, headers: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/mcp")
        .header(header::HOST, "127.0.0.1:3000")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
        .body(Body::empty())
        .unwrap()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

fn message(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["error"]["message"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------
// Host checks
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn two_host_headers_are_refused_with_400() {
    let app = router(app::Config::default());
    for (first, second) in [
        ("localhost:3000", "localhost:3000"),
        ("localhost:3000", "evil.example"),
    ] {
        let request = Request::get("/mcp")
            .header(header::HOST, first)
            .header(header::HOST, second)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{first} + {second}");
        assert_eq!(message(&body), "Bad Request: more than one Host header");
    }
    // One Host header reaches the session layer (which wants a session id).
    let request = Request::get("/mcp")
        .header(header::HOST, "localhost:3000")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), NEEDS_SESSION);
}

#[tokio::test]
async fn an_absolute_form_target_is_checked_like_host() {
    let app = router(app::Config {
        allowed_hosts: vec!["mcp.example.com".to_owned()],
        ..app::Config::default()
    });
    // (target, Host header, expected status, expected message)
    let cases = [
        ("http://evil.example/mcp", None, 403, FORBIDDEN),
        (
            "http://evil.example/mcp",
            Some("127.0.0.1:3000"),
            403,
            FORBIDDEN,
        ),
        (
            "http://127.0.0.1:3000/mcp",
            Some("evil.example"),
            403,
            FORBIDDEN,
        ),
        ("http://user@evil.example:80/mcp", None, 403, FORBIDDEN),
        ("http://127.0.0.1:3000/mcp", None, 400, NEEDS_SESSION),
        (
            "http://[::1]:3000/mcp",
            Some("[::1]:3000"),
            400,
            NEEDS_SESSION,
        ),
        ("http://MCP.example.com/mcp", None, 400, NEEDS_SESSION),
        // Neither a Host header nor an authority: nothing to check, refused.
        ("/mcp", None, 403, FORBIDDEN),
    ];
    for (target, host, status, expected) in cases {
        let mut builder = Request::post(target)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let (got, _, body) = send(&app, builder.body(Body::from(body)).unwrap()).await;
        assert_eq!(got.as_u16(), status, "{target} with Host {host:?}");
        assert_eq!(message(&body), expected, "{target} with Host {host:?}");
    }
}

// ---------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cors_preflight_from_an_allowed_origin_gets_the_cors_headers() {
    let app = with_origins(&[PAGE, "https://app.example.com"]);
    for (origin, method, headers) in [
        (PAGE, "POST", "content-type,mcp-protocol-version"),
        (PAGE, "DELETE", "mcp-session-id,mcp-protocol-version"),
        (
            "https://app.example.com",
            "GET",
            "mcp-session-id,last-event-id",
        ),
    ] {
        let (status, got, body) = send(&app, preflight(origin, method, headers)).await;
        assert_eq!(status, StatusCode::OK, "{origin} {method}");
        assert_eq!(header(&got, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            header(&got, "access-control-allow-methods"),
            Some("GET,POST,DELETE")
        );
        assert_eq!(
            header(&got, "access-control-allow-headers"),
            Some(ALLOW_HEADERS)
        );
        assert_eq!(header(&got, "access-control-max-age"), Some("600"));
        assert_eq!(
            header(&got, "vary"),
            Some("origin, access-control-request-method, access-control-request-headers")
        );
        assert_eq!(header(&got, "allow"), None);
        assert_eq!(body, "");
    }
}

#[tokio::test]
async fn cors_preflight_from_another_origin_gets_no_allow_origin() {
    let app = with_origins(&[PAGE]);
    // A loopback page on another port passes the DNS-rebinding check (loopback, any port)
    // but is not a CORS origin: no Access-Control-Allow-Origin, so the browser refuses.
    let (status, got, _) = send(
        &app,
        preflight("http://127.0.0.1:8001", "POST", "content-type"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&got, "access-control-allow-origin"), None);
    // A foreign origin is refused before CORS.
    let (status, got, body) = send(
        &app,
        preflight("http://evil.example", "POST", "content-type"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(header(&got, "access-control-allow-origin"), None);
    assert_eq!(message(&body), FORBIDDEN);
}

#[tokio::test]
async fn cors_initialize_from_an_allowed_origin_exposes_the_session_id() {
    let app = with_origins(&[PAGE, "https://app.example.com"]);
    for origin in [PAGE, "https://app.example.com"] {
        let (status, got, _) = send(&app, post_initialize(Some(origin))).await;
        assert_eq!(status, StatusCode::OK, "{origin}");
        let id = header(&got, "mcp-session-id").expect("a session id");
        assert_eq!(id.len(), 36);
        assert_eq!(header(&got, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            header(&got, "access-control-expose-headers"),
            Some("mcp-session-id")
        );
        assert_eq!(header(&got, "allow"), None);
    }
    // An origin neither listed nor on an allowed host: 403, no session.
    let (status, got, body) = send(&app, post_initialize(Some("https://evil.example"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(header(&got, "mcp-session-id"), None);
    assert_eq!(message(&body), FORBIDDEN);
}

#[tokio::test]
async fn without_allowed_origins_there_is_no_cors() {
    let app = router(app::Config::default());
    let (status, got, _) = send(&app, preflight(PAGE, "POST", "content-type")).await;
    // The session layer's own answer to OPTIONS.
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&got, "access-control-allow-origin"), None);
    let (status, got, _) = send(&app, post_initialize(Some(PAGE))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&got, "access-control-allow-origin"), None);
    assert_eq!(header(&got, "access-control-expose-headers"), None);
    // A listed-nowhere, non-loopback origin stays refused.
    let (status, _, _) = send(&app, post_initialize(Some("https://app.example.com"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------------------------------
// Request limits
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let app = router(app::Config {
        body_limit: 1_000,
        ..app::Config::default()
    });
    let body = format!("{INITIALIZE}{}", " ".repeat(1_000));
    let request = Request::post("/mcp")
        .header(header::HOST, "127.0.0.1:3000")
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(Body::from(body))
        .unwrap();
    let (status, got, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(header(&got, "mcp-session-id"), None);
    let (status, _, _) = send(&app, post_initialize(None)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_post_gets_408() {
    let app = app::build(app::Config {
        request_timeout: Duration::from_secs(3),
        ..app::Config::default()
    });
    // A body that never ends: the layer's initialize peek waits for it.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    tx.send(Ok(bytes::Bytes::from_static(b"{\"jsonrpc\":")))
        .await
        .unwrap();
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let request = Request::post("/mcp")
        .header(header::HOST, "127.0.0.1:3000")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(body)
        .unwrap();
    let start = tokio::time::Instant::now();
    let (status, got, _) = send(&app.router, request).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(header(&got, "mcp-session-id"), None);
    assert_eq!(app.sessions.len(), 0);
    drop(tx);
}

// ---------------------------------------------------------------------------------------
// The hyper-util server, over loopback
// ---------------------------------------------------------------------------------------

/// Serves `router` on a loopback port until the returned sender fires (or is dropped).
struct Served {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<server::Stop>>,
    done: tokio::task::JoinHandle<server::Stopped>,
}

async fn serve(
    router: Router,
    sessions: tower_mcp_session::Sessions,
    config: server::ServerConfig,
) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<server::Stop>();
    let done = tokio::spawn(server::serve(
        listener,
        router,
        sessions,
        config,
        async move { stopped.await.unwrap_or(server::Stop::Now) },
    ));
    Served {
        addr,
        stop: Some(stop),
        done,
    }
}

impl Served {
    /// Stops at once (Ctrl-C).
    async fn shutdown(self) -> (server::Stopped, Duration) {
        self.stop_with(server::Stop::Now).await
    }

    /// Asks `serve` to stop as `how` says and waits (at most 10 s) until it has.
    fn begin(&mut self, how: server::Stop) {
        self.stop.take().unwrap().send(how).unwrap();
    }

    async fn stop_with(mut self, how: server::Stop) -> (server::Stopped, Duration) {
        let start = Instant::now();
        if self.stop.is_some() {
            self.begin(how);
        }
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("serve returns within 10 s")
            .unwrap();
        (stopped, start.elapsed())
    }
}

/// Sends one HTTP/1.1 request on `stream` and reads the response head and its
/// content-length body.
async fn round_trip(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    return text.into_owned();
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("a response within 5 s")
}

/// Waits (at most `limit`) for the server to close `stream`, reading and returning what it
/// sends until then; `None` if it did not close it in time.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    let drain = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(limit, drain).await.ok()?;
    Some(received)
}

fn peer_router() -> Router {
    Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    )
}

const GET_PEER: &str = "GET /peer HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
/// What a balancer's health check sends: no `Host` the Origin guard would accept.
const GET_READY: &str = "GET /ready HTTP/1.1\r\n\r\n";

#[tokio::test]
async fn server_drains_on_sigterm_ready_fails_and_every_answer_closes_its_connection() {
    let app = app::build(app::Config::default());
    let config = server::ServerConfig {
        drain: Duration::from_secs(2),
        ..server::ServerConfig::default()
    };
    let mut served = serve(app.router, app.sessions, config).await;
    let mut pooled = TcpStream::connect(served.addr).await.unwrap();
    let response = round_trip(&mut pooled, GET_READY).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nready\n"), "{response}");
    assert!(
        !response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );

    served.begin(server::Stop::Drain);
    // The flag is raised once `serve` sees the signal: poll /ready (bounded) on new
    // connections, which are still accepted.
    let mut draining = String::new();
    for _ in 0..100 {
        let mut probe = TcpStream::connect(served.addr).await.unwrap();
        draining = round_trip(&mut probe, GET_READY).await;
        if draining.starts_with("HTTP/1.1 503") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        draining.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{draining}"
    );
    assert!(draining.ends_with("\r\n\r\ndraining\n"), "{draining}");
    assert!(
        draining
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{draining}"
    );

    // /mcp keeps serving on the pooled keep-alive connection: the answer is complete, says
    // `Connection: close`, and the server then closes that connection.
    let initialize = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{INITIALIZE}",
        INITIALIZE.len()
    );
    let response = round_trip(&mut pooled, &initialize).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let head = response.to_ascii_lowercase();
    assert!(head.contains("\r\nconnection: close\r\n"), "{response}");
    assert!(head.contains("\r\nmcp-session-id: "), "{response}");
    assert_eq!(
        closed_within(&mut pooled, Duration::from_secs(1)).await,
        Some(Vec::new()),
        "the server closes the connection after that answer"
    );

    // After the drain period the server stops as on Ctrl-C.
    let (stopped, _) = served.stop_with(server::Stop::Drain).await;
    assert_eq!(stopped, server::Stopped::Drained);
}

#[tokio::test]
async fn server_passes_the_peer_address_as_connect_info() {
    let app = app::build(app::Config::default());
    let served = serve(peer_router(), app.sessions, server::ServerConfig::default()).await;
    let mut client = TcpStream::connect(served.addr).await.unwrap();
    let response = round_trip(&mut client, GET_PEER).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let local = client.local_addr().unwrap().to_string();
    assert!(
        response.ends_with(&format!("\r\n\r\n{local}")),
        "{response}"
    );
    drop(client);
    assert_eq!(served.shutdown().await.0, server::Stopped::Drained);
}

#[tokio::test]
async fn server_closes_connections_over_the_cap_at_once() {
    let app = app::build(app::Config::default());
    let config = server::ServerConfig {
        max_connections: 2,
        ..server::ServerConfig::default()
    };
    let served = serve(peer_router(), app.sessions, config).await;
    // Two connections, each proven accepted (and holding its permit) by a response.
    let mut first = TcpStream::connect(served.addr).await.unwrap();
    let mut second = TcpStream::connect(served.addr).await.unwrap();
    for client in [&mut first, &mut second] {
        assert!(
            round_trip(client, GET_PEER)
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
    }
    // The third is closed without an answer, long before any timeout.
    let mut third = TcpStream::connect(served.addr).await.unwrap();
    let _ = third.write_all(GET_PEER.as_bytes()).await;
    assert_eq!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        Some(Vec::new())
    );
    // The first two still work; closing one makes room again.
    assert!(
        round_trip(&mut first, GET_PEER)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    drop(first);
    let mut fourth = None;
    for _ in 0..50 {
        let mut client = TcpStream::connect(served.addr).await.unwrap();
        client.write_all(GET_PEER.as_bytes()).await.unwrap();
        let mut head = [0u8; 12];
        if tokio::time::timeout(Duration::from_secs(2), client.read_exact(&mut head))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            assert_eq!(&head, b"HTTP/1.1 200");
            fourth = Some(client);
            break;
        }
        // The first connection's task has not released its permit yet.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fourth.is_some(),
        "a slot freed by a closed connection is reused"
    );
    drop((second, third, fourth));
    served.shutdown().await;
}

#[tokio::test]
async fn server_drops_a_client_that_sends_its_head_too_slowly() {
    let app = app::build(app::Config::default());
    let config = server::ServerConfig {
        header_read_timeout: Duration::from_secs(1),
        ..server::ServerConfig::default()
    };
    let served = serve(peer_router(), app.sessions, config).await;
    let mut slow = TcpStream::connect(served.addr).await.unwrap();
    let start = Instant::now();
    slow.write_all(b"GET /peer HTTP/1.1\r\nHost: 127.0")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(4))
            .await
            .is_some()
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed after {elapsed:?}"
    );
    // A client that sends its head in time is served.
    let mut fast = TcpStream::connect(served.addr).await.unwrap();
    assert!(
        round_trip(&mut fast, GET_PEER)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    drop(fast);
    served.shutdown().await;
}

#[tokio::test]
async fn server_shutdown_ends_sse_streams_and_is_bounded_by_the_grace_period() {
    // An open SSE stream ends when the sessions are shut down: the server drains.
    let app = app::build(app::Config::default());
    let served = serve(app.router, app.sessions, server::ServerConfig::default()).await;
    let mut client = TcpStream::connect(served.addr).await.unwrap();
    let init = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{INITIALIZE}",
        INITIALIZE.len()
    );
    let response = round_trip(&mut client, &init).await;
    let id = response
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .expect("a session id")
        .to_owned();
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    let get = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nMcp-Session-Id: {id}\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n"
    );
    stream.write_all(get.as_bytes()).await.unwrap();
    let mut head = [0u8; 15];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK");
    let (stopped, elapsed) = served.shutdown().await;
    assert_eq!(stopped, server::Stopped::Drained);
    assert!(
        elapsed < Duration::from_secs(2),
        "drained after {elapsed:?}"
    );
    let rest = closed_within(&mut stream, Duration::from_secs(2))
        .await
        .expect("the SSE stream ends");
    // The chunked body's terminator, after any keep-alive comment.
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    drop(client);

    // A client stuck in the middle of a request head does not hold the exit past the grace.
    let app = app::build(app::Config::default());
    let config = server::ServerConfig {
        header_read_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(1),
        ..server::ServerConfig::default()
    };
    let served = serve(peer_router(), app.sessions, config).await;
    let mut stuck = TcpStream::connect(served.addr).await.unwrap();
    stuck
        .write_all(b"GET /peer HTTP/1.1\r\nHost: 1")
        .await
        .unwrap();
    // Let the server accept it before shutting down.
    let mut probe = TcpStream::connect(served.addr).await.unwrap();
    assert!(
        round_trip(&mut probe, GET_PEER)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    let (stopped, elapsed) = served.shutdown().await;
    assert!(
        matches!(stopped, server::Stopped::GraceExpired { open } if open >= 1),
        "{stopped:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "stopped after {elapsed:?}"
    );
    drop((stuck, probe));
}

#[tokio::test]
async fn server_speaks_http2_only_with_h2c() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    for h2c in [false, true] {
        let app = app::build(app::Config::default());
        let config = server::ServerConfig {
            h2c,
            h2_max_streams: 7,
            ..server::ServerConfig::default()
        };
        let served = serve(peer_router(), app.sessions, config).await;
        let mut client = TcpStream::connect(served.addr).await.unwrap();
        // Preface + an empty SETTINGS frame.
        client.write_all(PREFACE).await.unwrap();
        client
            .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(3), client.read(&mut buf))
            .await
            .expect("an answer within 3 s")
            .unwrap_or(0);
        let buf = &buf[..n];
        if h2c {
            // The server's SETTINGS frame, carrying MAX_CONCURRENT_STREAMS (0x3) = 7.
            assert!(n >= 9 && buf[3] == 4, "{buf:?}");
            let length = usize::from(buf[2]);
            let settings = &buf[9..9 + length];
            assert!(
                settings.chunks(6).any(|s| s == [0, 3, 0, 0, 0, 7]),
                "{settings:?}"
            );
        } else {
            // HTTP/1.1 only: hyper drops the connection on the HTTP/2 preface.
            assert_eq!(buf, b"", "{:?}", String::from_utf8_lossy(buf));
        }
        drop(client);
        served.shutdown().await;
    }
}
