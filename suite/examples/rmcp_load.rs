//! Load client for `scripts/compare_rmcp.sh`: opens N MCP sessions on a running
//! `rmcp_server` (any `--mode`), then sends `tools/call test_simple_text` round-robin over
//! them, and prints one tab-separated result row:
//!
//! ```text
//! label  sessions  opens/s  calls/s  p50_ms  p99_ms  rss_per_session_bytes  errors  calls
//! ```
//!
//! `--protocol stateful` opens a session as MCP 2025-11-25 does: `initialize` (the answer's
//! `Mcp-Session-Id` is kept), then `notifications/initialized`; calls carry the id.
//! `--protocol stateless` speaks 2026-07-28 (SEP-2567, no sessions): an "open" is the
//! client's `server/discover`, and every call carries its protocol version, capabilities
//! and client info in `_meta` plus the `Mcp-Method`/`Mcp-Name` headers (SEP-2243).
//!
//! RSS per session: `VmRSS` of `--pid` (from `/proc/PID/status`) read before the first open
//! and after the last, the difference divided by the number of sessions. Loopback only;
//! the number of calls and the time of the call phase are both bounded.
//!
//! ```text
//! cargo run --release -p tower-mcp-session-suite --example rmcp_load -- \
//!     --url http://127.0.0.1:3000/mcp --pid 1234 --sessions 1000 --protocol stateful
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// MCP 2025-11-25: sessions opened by `initialize`.
    Stateful,
    /// MCP 2026-07-28: no sessions (`server/discover`, then self-contained calls).
    Stateless,
}

#[derive(Debug, Parser)]
#[command(
    name = "rmcp_load",
    about = "MCP session load client (see scripts/compare_rmcp.sh)"
)]
struct Args {
    /// The MCP endpoint; must be on a loopback address.
    #[arg(long)]
    url: String,
    /// The server's process id, for VmRSS.
    #[arg(long)]
    pid: u32,
    /// Sessions to open.
    #[arg(long, default_value_t = 1_000)]
    sessions: usize,
    #[arg(long, value_enum, default_value_t = Protocol::Stateful)]
    protocol: Protocol,
    /// Requests in flight at once (each on its own keep-alive connection).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Most `tools/call` requests sent.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Most seconds the call phase (and, separately, the open phase) may take.
    #[arg(long, default_value_t = 10)]
    max_secs: u64,
    /// First column of the row.
    #[arg(long, default_value = "run")]
    label: String,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const ACCEPT: &str = "application/json, text/event-stream";
const SIMPLE_TEXT: &str = "This is a simple text response for testing.";

struct Ctx {
    client: HttpClient,
    url: String,
    protocol: Protocol,
}

impl Ctx {
    /// POSTs `body`; returns the status, the session id header and the whole body.
    async fn post(
        &self,
        body: serde_json::Value,
        session: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, Option<String>, Bytes), String> {
        let mut req = Request::post(&self.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT);
        if let Some(id) = session {
            req = req.header("mcp-session-id", id);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let res = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = res.status();
        let id = res
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, id, body))
    }

    /// Opens one session; returns its id (stateless: an empty string).
    async fn open(&self, n: usize) -> Result<String, String> {
        match self.protocol {
            Protocol::Stateful => {
                let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": format!("load-{n}"), "version": "1.0.0"}}});
                let (status, id, body) = self.post(init, None, &[]).await?;
                let id = match (status, id) {
                    (StatusCode::OK, Some(id)) => id,
                    (s, _) => return Err(format!("initialize: {s} {}", lossy(&body))),
                };
                let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                let (status, _, body) = self
                    .post(note, Some(&id), &[("mcp-protocol-version", "2025-11-25")])
                    .await?;
                if !status.is_success() {
                    return Err(format!("initialized: {status} {}", lossy(&body)));
                }
                Ok(id)
            }
            Protocol::Stateless => {
                let discover = json!({"jsonrpc": "2.0", "id": 0, "method": "server/discover",
                    "params": {"_meta": meta(n)}});
                let (status, _, body) = self
                    .post(
                        discover,
                        None,
                        &[
                            ("mcp-protocol-version", "2026-07-28"),
                            ("mcp-method", "server/discover"),
                        ],
                    )
                    .await?;
                if status != StatusCode::OK || !contains(&body, "2026-07-28") {
                    return Err(format!("server/discover: {status} {}", lossy(&body)));
                }
                Ok(String::new())
            }
        }
    }

    async fn call(&self, session: &str, n: usize) -> Result<(), String> {
        let (status, _, body) = match self.protocol {
            Protocol::Stateful => {
                let call = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                    "params": {"name": "test_simple_text", "arguments": {}}});
                self.post(
                    call,
                    Some(session),
                    &[("mcp-protocol-version", "2025-11-25")],
                )
                .await?
            }
            Protocol::Stateless => {
                let call = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                    "params": {"name": "test_simple_text", "arguments": {}, "_meta": meta(n)}});
                self.post(
                    call,
                    None,
                    &[
                        ("mcp-protocol-version", "2026-07-28"),
                        ("mcp-method", "tools/call"),
                        ("mcp-name", "test_simple_text"),
                    ],
                )
                .await?
            }
        };
        if status != StatusCode::OK || !contains(&body, SIMPLE_TEXT) {
            return Err(format!("tools/call: {status} {}", lossy(&body)));
        }
        Ok(())
    }
}

/// The per-request metadata of 2026-07-28.
fn meta(n: usize) -> serde_json::Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": format!("load-{n}"), "version": "1.0.0"}
    })
}

fn contains(body: &[u8], needle: &str) -> bool {
    body.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn lossy(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

fn vm_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

// One thread: the client takes at most one of the machine's cores, the same for every server.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let host = args
        .url
        .strip_prefix("http://")
        .and_then(|r| r.split(['/', ':']).next())
        .unwrap_or_default();
    assert!(
        matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
        "loopback URLs only: {}",
        args.url
    );
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency)
        .build(connector);
    let ctx = Arc::new(Ctx {
        client,
        url: args.url.clone(),
        protocol: args.protocol,
    });
    let errors = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let note = |errors: &AtomicUsize, first: &std::sync::Mutex<Option<String>>, e: String| {
        errors.fetch_add(1, Ordering::Relaxed);
        first.lock().unwrap().get_or_insert(e);
    };

    // Open phase.
    let rss_before = vm_rss_bytes(args.pid);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (ctx, next, errors, first) = (
            Arc::clone(&ctx),
            Arc::clone(&next),
            Arc::clone(&errors),
            Arc::clone(&first_error),
        );
        let total = args.sessions;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total || Instant::now() > deadline {
                    break;
                }
                match ctx.open(n).await {
                    Ok(id) => ids.push(id),
                    Err(e) => note(&errors, &first, e),
                }
            }
            ids
        }));
    }
    let mut sessions = Vec::with_capacity(args.sessions);
    for t in tasks {
        sessions.extend(t.await.expect("open task"));
    }
    let open_secs = start.elapsed().as_secs_f64();
    // Let the server settle (tasks spawned by the last opens) before reading its RSS.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after = vm_rss_bytes(args.pid);
    let opened = sessions.len();
    assert!(opened > 0, "no session opened: {:?}", first_error.lock());

    // Call phase.
    let sessions = Arc::new(sessions);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (ctx, next, errors, first, sessions) = (
            Arc::clone(&ctx),
            Arc::clone(&next),
            Arc::clone(&errors),
            Arc::clone(&first_error),
            Arc::clone(&sessions),
        );
        let total = args.calls;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                match ctx.call(&sessions[n % sessions.len()], n).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => note(&errors, &first, e),
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(args.calls);
    for t in tasks {
        latencies.extend(t.await.expect("call task"));
    }
    let call_secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();

    let per_session = rss_after.saturating_sub(rss_before) / opened as u64;
    if let Some(e) = first_error.lock().unwrap().as_ref() {
        eprintln!("rmcp_load {}: first error: {e}", args.label);
    }
    println!(
        "{}\t{}\t{:.0}\t{:.0}\t{:.2}\t{:.2}\t{}\t{}\t{}",
        args.label,
        opened,
        opened as f64 / open_secs,
        latencies.len() as f64 / call_secs,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        per_session,
        errors.load(Ordering::Relaxed),
        latencies.len(),
    );
}
