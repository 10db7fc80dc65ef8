//! End to end: requests/s over loopback HTTP/1.1 for the same trivial axum handler, with and
//! without the layer, in one process.
//!
//! - Two axum servers on `127.0.0.1:0`: `Router::new().route("/mcp", post(handler))`, and the
//!   same router with `.layer(SessionLayer::mcp(..).build())` whose factory hands each session the
//!   route itself. The layered server is first given 100k idle sessions (`E2E_PRELOAD`),
//!   opened in-process through the router, so its table is not a toy.
//! - A load generator on the same tokio runtime (2 worker threads): `E2E_CONNS` (16) HTTP/1.1
//!   connections (hyper's client connection API), each opening its own session with
//!   `initialize` (layered server only), then sending `POST /mcp` with `Mcp-Session-Id`,
//!   `MCP-Protocol-Version` and a JSON-RPC `ping` body, one request at a time, until
//!   `E2E_TOTAL` (100k) requests are done or `E2E_LIMIT_SECS` (10) have passed. Both servers
//!   get byte-identical requests (the plain one ignores the id).
//! - `E2E_ROUNDS` (10) rounds, each measuring both variants back to back, the order
//!   alternating, after one discarded warm-up round. Reported: the median requests/s of each
//!   and the median of the per-round ratios.
//!
//! Client and servers share the 2 cores, so absolute figures are lower than with a separate
//! load generator; the comparison is the ratio.

mod common;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{Route, post};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;
use tower::ServiceExt;
use tower_mcp_session::{SessionInfo, SessionLayer};

const PING: &str = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;

async fn handler() -> &'static str {
    "ok"
}

fn passthrough(_info: SessionInfo, route: Route) -> Ready<Result<Route, Infallible>> {
    ready(Ok(route))
}

type Passthrough = fn(SessionInfo, Route) -> Ready<Result<Route, Infallible>>;

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

fn request(addr: SocketAddr, body: &'static str, session: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri("/mcp")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, text/event-stream");
    if let Some(id) = session {
        builder = builder
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-11-25");
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request")
}

/// Sends `total` requests (or until `limit`) over `conns` connections; returns requests/s.
async fn load(addr: SocketAddr, layered: bool, conns: usize, total: u64, limit: Duration) -> f64 {
    let counter = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(conns + 1));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (counter, done, barrier) = (counter.clone(), done.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let id = if layered {
                let init = request(addr, common::INIT_BODY, None);
                let response = sender.send_request(init).await.expect("initialize");
                assert_eq!(response.status(), StatusCode::OK);
                let id = response.headers()["mcp-session-id"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                response.into_body().collect().await.expect("body");
                id
            } else {
                // Same bytes on the wire; the plain server ignores it.
                "00000000-0000-4000-8000-000000000000".to_owned()
            };
            barrier.wait().await;
            let begun = Instant::now();
            while counter.fetch_add(1, Ordering::Relaxed) < total && begun.elapsed() < limit {
                sender.ready().await.expect("connection ready");
                let response = sender
                    .send_request(request(addr, PING, Some(&id)))
                    .await
                    .expect("response");
                assert_eq!(response.status(), StatusCode::OK, "request failed");
                response.into_body().collect().await.expect("body");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    for task in tasks {
        task.await.expect("load task");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mode = common::mode("end_to_end");
    if mode == common::Mode::Skip {
        return;
    }
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let smoke = mode == common::Mode::Smoke;
    let conns = env("E2E_CONNS", 16) as usize;
    let total = env("E2E_TOTAL", if smoke { 1_000 } else { 100_000 });
    let rounds = env("E2E_ROUNDS", if smoke { 2 } else { 10 }) as usize;
    let preload = env("E2E_PRELOAD", if smoke { 1_000 } else { 100_000 }) as usize;
    let limit = Duration::from_secs(env("E2E_LIMIT_SECS", 10));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let plain = Router::new().route("/mcp", post(handler));
        let layer = SessionLayer::mcp(passthrough as Passthrough).max_sessions(preload + 10_000).build();
        let sessions = layer.sessions();
        let layered = Router::new().route("/mcp", post(handler)).layer(layer);

        let preloading = Instant::now();
        for _ in 0..preload {
            let init = Request::post("/mcp")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(common::INIT_BODY))
                .unwrap();
            let response = layered.clone().oneshot(init).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let preload_took = preloading.elapsed();
        assert_eq!(sessions.len(), preload);

        let addr_plain = serve(plain).await;
        let addr_layered = serve(layered).await;

        // Warm-up round, discarded.
        load(addr_plain, false, conns, total / 4, limit).await;
        load(addr_layered, true, conns, total / 4, limit).await;

        let mut plain_rates = Vec::new();
        let mut layered_rates = Vec::new();
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let (p, l) = if round % 2 == 0 {
                let p = load(addr_plain, false, conns, total, limit).await;
                (p, load(addr_layered, true, conns, total, limit).await)
            } else {
                let l = load(addr_layered, true, conns, total, limit).await;
                (load(addr_plain, false, conns, total, limit).await, l)
            };
            eprintln!("round {}: without {p:.0} req/s, with {l:.0} req/s, ratio {:.3}", round + 1, l / p);
            plain_rates.push(p);
            layered_rates.push(l);
            ratios.push(l / p);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
        };
        let (p, l, r) = (median(plain_rates.clone()), median(layered_rates.clone()), median(ratios.clone()));
        let mut out = format!(
            "### 5. End to end (axum, HTTP/1.1 over 127.0.0.1, {conns} connections, {total} requests per round, {rounds} rounds, {preload} idle sessions preloaded)\n\n\
             | variant | median req/s | per-round req/s |\n|---|---|---|\n"
        );
        let list = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
        out.push_str(&format!("| without the layer | {p:.0} | {} |\n", list(&plain_rates)));
        out.push_str(&format!("| with the layer | {l:.0} | {} |\n", list(&layered_rates)));
        out.push_str(&format!(
            "\n- with the layer: {:.3}× the throughput without it (median of per-round ratios; range {:.3}–{:.3}) = the layer costs {:.1}% of throughput (target < 5%)\n\
             - preloading {preload} sessions in-process through the axum router: {:.0} k opens/s\n",
            r,
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
            (1.0 - r) * 100.0,
            preload as f64 / preload_took.as_secs_f64() / 1e3,
        ));
        common::write_summary("5-end_to_end", &out);
    });
}
