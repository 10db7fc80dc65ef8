//! Load for the fault checks: many MCP sessions calling the example server's `increment` tool
//! for a bounded time, each answer sorted by what a client can do with it.
//!
//! ```text
//! cargo run --release --example load -- --url http://127.0.0.1:3000/mcp --secs 10
//! ```
//!
//! `--concurrency` workers share `--sessions` sessions (each worker owns its share and calls
//! them in turn, one request at a time). A session answered 404 is opened again (what a
//! client does, MCP 2025-11-25, Streamable HTTP, Session Management); an `initialize` answered
//! 503 is tried again after 100 ms. Nothing else is retried: a transport error or a 5xx is
//! counted and the worker goes on with its next session.
//!
//! It prints one JSON object on stdout (`scripts/faults/run.sh` reads it): counts by kind —
//! `ok`, `unavailable` (JSON-RPC -32010, the example's retriable "data temporarily
//! unavailable"), `rpc_other` (any other JSON-RPC error), `not_found` (404), `busy` (503),
//! `http_5xx` (5xx other than 503), `http_other` (other statuses), `transport` (no answer:
//! refused, reset, closed, or no answer within `--timeout-ms`) — plus, for every kind but
//! `ok`, when it was first and last seen (ms since the start) and the slowest answer (ms);
//! the `window` from the first to the last answer that was not `ok`, the answers per second
//! before it and inside it, and the latency percentiles of the calls before and inside it. Opens are
//! counted apart (`opens`, `open_failed`); `most_failed_by_one_worker` is the largest number of
//! answers other than `ok` that one worker saw. Bounded: the run ends after `--secs`, and every
//! request after `--timeout-ms`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const VERSION: &str = "2025-11-25";
const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"load","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"increment","arguments":{}}}"#;
/// The example's retriable JSON-RPC code for "data temporarily unavailable".
const DATA_UNAVAILABLE: i64 = -32010;

#[derive(Debug, Parser)]
#[command(about = "Bounded MCP load: sessions calling `increment`, answers sorted by kind")]
struct Args {
    /// The MCP endpoint.
    #[arg(long, default_value = "http://127.0.0.1:3000/mcp")]
    url: String,
    /// Sessions in all.
    #[arg(long, default_value_t = 256)]
    sessions: usize,
    /// Workers, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds the load runs.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Milliseconds a request may take before it counts as `transport`.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ok,
    Unavailable,
    RpcOther,
    NotFound,
    Busy,
    Http5xx,
    HttpOther,
    Transport,
}

const KINDS: [(Kind, &str); 8] = [
    (Kind::Ok, "ok"),
    (Kind::Unavailable, "unavailable"),
    (Kind::RpcOther, "rpc_other"),
    (Kind::NotFound, "not_found"),
    (Kind::Busy, "busy"),
    (Kind::Http5xx, "http_5xx"),
    (Kind::HttpOther, "http_other"),
    (Kind::Transport, "transport"),
];

/// One answered (or failed) call: when it started and ended, in µs since the start.
#[derive(Clone, Copy)]
struct Sample {
    kind: Kind,
    start: u64,
    end: u64,
}

type Http = Client<HttpConnector, Full<Bytes>>;

struct Answer {
    status: StatusCode,
    session: Option<HeaderValue>,
    body: Bytes,
}

async fn post(
    http: &Http,
    url: &str,
    session: Option<&HeaderValue>,
    body: &'static str,
    timeout: Duration,
) -> Option<Answer> {
    let mut request = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(id) = session {
        request = request
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", VERSION);
    }
    let request = request
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .ok()?;
    let exchange = async {
        let response = http.request(request).await.ok()?;
        let status = response.status();
        let session = response.headers().get("mcp-session-id").cloned();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(Answer {
            status,
            session,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

/// The JSON-RPC message of an answer sent as JSON or as one SSE event.
fn message(body: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    let json = text
        .lines()
        .find_map(|line| line.strip_prefix("data:"))
        .unwrap_or(text);
    serde_json::from_str(json.trim()).ok()
}

fn classify(answer: Option<&Answer>) -> Kind {
    let Some(answer) = answer else {
        return Kind::Transport;
    };
    match answer.status {
        StatusCode::OK => match message(&answer.body) {
            Some(m) if m.get("result").is_some() => Kind::Ok,
            Some(m) if m["error"]["code"].as_i64() == Some(DATA_UNAVAILABLE) => Kind::Unavailable,
            _ => Kind::RpcOther,
        },
        StatusCode::NOT_FOUND => Kind::NotFound,
        StatusCode::SERVICE_UNAVAILABLE => Kind::Busy,
        s if s.is_server_error() => Kind::Http5xx,
        _ => Kind::HttpOther,
    }
}

/// Opens a session: `initialize` (503 tried again after 100 ms until `until`), then
/// `notifications/initialized`. `None` when no session could be opened in time.
async fn open(
    http: &Http,
    args: &Args,
    until: Instant,
    opens: &AtomicUsize,
    failed: &AtomicUsize,
) -> Option<HeaderValue> {
    let timeout = Duration::from_millis(args.timeout_ms);
    while Instant::now() < until {
        match post(http, &args.url, None, INIT, timeout).await {
            Some(Answer {
                status: StatusCode::OK,
                session: Some(id),
                ..
            }) => {
                // 202 expected; an error here shows on the session's first call.
                let _ = post(http, &args.url, Some(&id), INITIALIZED, timeout).await;
                opens.fetch_add(1, Ordering::Relaxed);
                return Some(id);
            }
            _ => {
                failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    None
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank] as f64 / 1_000.0
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1_000.0 * 10.0).round() / 10.0
}

fn summary(samples: &[Sample], elapsed: u64, opens: usize, open_failed: usize) -> Value {
    let mut kinds = serde_json::Map::new();
    for (kind, name) in KINDS {
        let of_kind: Vec<&Sample> = samples.iter().filter(|s| s.kind == kind).collect();
        let mut entry = json!({ "count": of_kind.len() });
        if kind != Kind::Ok && !of_kind.is_empty() {
            entry["first_ms"] = json!(ms(of_kind.iter().map(|s| s.start).min().unwrap_or(0)));
            entry["last_ms"] = json!(ms(of_kind.iter().map(|s| s.end).max().unwrap_or(0)));
            entry["slowest_ms"] = json!(ms(of_kind
                .iter()
                .map(|s| s.end - s.start)
                .max()
                .unwrap_or(0)));
        }
        kinds.insert(name.to_owned(), entry);
    }
    let bad: Vec<&Sample> = samples.iter().filter(|s| s.kind != Kind::Ok).collect();
    let window = match (
        bad.iter().map(|s| s.start).min(),
        bad.iter().map(|s| s.end).max(),
    ) {
        (Some(from), Some(to)) => {
            let mut before: Vec<u64> = samples
                .iter()
                .filter(|s| s.end < from)
                .map(|s| s.end - s.start)
                .collect();
            before.sort_unstable();
            let mut inside: Vec<u64> = samples
                .iter()
                .filter(|s| s.start >= from && s.end <= to)
                .map(|s| s.end - s.start)
                .collect();
            inside.sort_unstable();
            let span = (to - from).max(1);
            json!({
                "from_ms": ms(from),
                "to_ms": ms(to),
                "per_sec_before": if from > 0 { before.len() as f64 * 1e6 / from as f64 } else { 0.0 },
                "p50_ms_before": percentile(&before, 0.50),
                "p99_ms_before": percentile(&before, 0.99),
                "per_sec_inside": inside.len() as f64 * 1e6 / span as f64,
                "p50_ms_inside": percentile(&inside, 0.50),
                "p99_ms_inside": percentile(&inside, 0.99),
                "max_ms_inside": percentile(&inside, 1.0),
            })
        }
        _ => Value::Null,
    };
    json!({
        "secs": elapsed as f64 / 1e6,
        "calls": samples.len(),
        "per_sec": samples.len() as f64 * 1e6 / elapsed.max(1) as f64,
        "kinds": kinds,
        "window": window,
        "opens": opens,
        "open_failed": open_failed,
    })
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency)
        .build(connector);
    let opens = Arc::new(AtomicUsize::new(0));
    let open_failed = Arc::new(AtomicUsize::new(0));
    let workers = args.concurrency.max(1);
    // First every session is opened (within --secs), then the calls start: the fault
    // script waits for the "calling" line on stderr before it starts its clock.
    let open_until = Instant::now() + Duration::from_secs(args.secs);
    let mut opening = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (http, args) = (http.clone(), Arc::clone(&args));
        let (opens, open_failed) = (Arc::clone(&opens), Arc::clone(&open_failed));
        opening.push(tokio::spawn(async move {
            let share = args.sessions / workers + usize::from(worker < args.sessions % workers);
            let mut sessions = Vec::with_capacity(share);
            for _ in 0..share.max(1) {
                if let Some(id) = open(&http, &args, open_until, &opens, &open_failed).await {
                    sessions.push(id);
                }
            }
            sessions
        }));
    }
    let mut shares = Vec::with_capacity(workers);
    for task in opening {
        shares.push(task.await.unwrap_or_default());
    }
    eprintln!(
        "load: {} sessions open, calling for {} s",
        shares.iter().map(Vec::len).sum::<usize>(),
        args.secs
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(args.secs);
    let mut tasks = Vec::with_capacity(workers);
    for mut sessions in shares {
        let (http, args) = (http.clone(), Arc::clone(&args));
        let (opens, open_failed) = (Arc::clone(&opens), Arc::clone(&open_failed));
        tasks.push(tokio::spawn(async move {
            let timeout = Duration::from_millis(args.timeout_ms);
            let mut samples = Vec::new();
            let mut next = 0;
            while !sessions.is_empty() && Instant::now() < until {
                next = (next + 1) % sessions.len();
                let start = started.elapsed().as_micros() as u64;
                let answer = post(&http, &args.url, Some(&sessions[next]), CALL, timeout).await;
                let kind = classify(answer.as_ref());
                let end = started.elapsed().as_micros() as u64;
                samples.push(Sample { kind, start, end });
                if kind == Kind::NotFound {
                    match open(&http, &args, until, &opens, &open_failed).await {
                        Some(id) => sessions[next] = id,
                        None => break,
                    }
                }
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    let mut most_failed_by_one_worker = 0;
    for task in tasks {
        let of_worker = task.await.unwrap_or_default();
        let failed = of_worker.iter().filter(|s| s.kind != Kind::Ok).count();
        most_failed_by_one_worker = most_failed_by_one_worker.max(failed);
        samples.extend(of_worker);
    }
    let elapsed = started.elapsed().as_micros() as u64;
    let mut report = summary(
        &samples,
        elapsed,
        opens.load(Ordering::Relaxed),
        open_failed.load(Ordering::Relaxed),
    );
    report["most_failed_by_one_worker"] = json!(most_failed_by_one_worker);
    println!("{report}");
}
