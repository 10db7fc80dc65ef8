//! Shared pieces of the benches: the no-op per-session service, the trivial factory, request
//! builders, opening sessions through the real service, a minimal executor, and reading back
//! criterion's estimates so each bench can print its ratios from the same run.
//!
//! Not a bench target itself: Cargo only discovers `benches/*.rs` and `benches/*/main.rs`.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::Criterion;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use tower::Service;
use tower_mcp_session::mcp::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use tower_mcp_session::{SessionInfo, SessionLayer, SessionLayerBuilder, SessionService};

/// The per-session (and inner) service of the benches: answers 200 with an empty body at once.
/// Zero-sized, so the layer's memory per session is all the layer's own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Noop;

impl<B> Service<Request<B>> for Noop {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        ready(Ok(Response::new(Empty::new())))
    }
}

/// The trivial session factory: every session gets a copy of the (zero-sized) inner service.
pub type Factory = fn(SessionInfo, Noop) -> Ready<Result<Noop, Infallible>>;

fn make_session(_info: SessionInfo, inner: Noop) -> Ready<Result<Noop, Infallible>> {
    ready(Ok(inner))
}

/// The service under test: the MCP profile over [`Noop`].
pub type Svc = SessionService<Noop, Factory>;

/// An MCP layer builder with the trivial factory and room for `max` sessions.
pub fn mcp_layer(max: usize) -> SessionLayerBuilder<Factory> {
    SessionLayer::mcp(make_session as Factory).max_sessions(max)
}

pub const INIT_BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1.0"}}}"#;

/// The request a client sends to open a session: POST `initialize`, no session id.
pub fn init_request() -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::from_static(INIT_BODY.as_bytes())));
    *req.method_mut() = Method::POST;
    let headers = req.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    req
}

/// A request of a live session, as a client sends it after `initialize`: POST with the
/// session id and the negotiated protocol version. The id is copied into a fresh header value,
/// as a server's HTTP parser would.
#[inline]
pub fn session_request(id: &str) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.method_mut() = Method::POST;
    let headers = req.headers_mut();
    headers.insert(MCP_SESSION_ID, HeaderValue::from_str(id).expect("valid id"));
    headers.insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static("2025-11-25"));
    req
}

/// Polls a future once with a no-op waker, spinning if it is not ready yet. Every future the
/// benches drive is ready at its first poll (the services are no-ops, bodies are in memory).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::hint::spin_loop();
    }
}

/// Opens one session through the full service path and returns its id.
pub fn open_one(svc: &mut Svc) -> String {
    let response = block_on(svc.call(init_request())).expect("infallible");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "initialize was not served"
    );
    response.headers()[MCP_SESSION_ID]
        .to_str()
        .expect("ascii id")
        .to_owned()
}

/// Opens `n` sessions through the full service path; returns their ids in opening order and
/// the wall time it took (id collection included).
pub fn open_sessions(svc: &mut Svc, n: usize) -> (Vec<String>, Duration) {
    let mut ids = Vec::with_capacity(n);
    let start = std::time::Instant::now();
    for _ in 0..n {
        ids.push(open_one(svc));
    }
    (ids, start.elapsed())
}

/// A small deterministic PRNG (xorshift64*), so every variant sees the same access pattern.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough index below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Criterion settings of these benches; the command line (`scripts/bench.sh`) overrides them.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .nresamples(20_000)
        .without_plots()
        .configure_from_args()
}

/// Where criterion writes its results: the same rule criterion follows.
fn criterion_home() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRITERION_HOME") {
        return dir.into();
    }
    target_dir().join("criterion")
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return dir.into();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output();
    if let Ok(out) = out
        && let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        && let Some(dir) = meta["target_directory"].as_str()
    {
        return dir.into();
    }
    PathBuf::from("target")
}

/// Where the benches write their summaries (`scripts/bench.sh` gathers them).
pub fn results_dir() -> PathBuf {
    let dir = std::env::var_os("BENCH_RESULTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench-results"));
    std::fs::create_dir_all(&dir).expect("create results dir");
    dir
}

/// Reads back what criterion measured in this process for `group/function`: nanoseconds per
/// iteration (criterion's headline figure: the slope if it has one, else the mean). `None` if
/// the benchmark did not run in this process (filtered out).
pub fn estimate_ns(since: SystemTime, group: &str, function: &str) -> Option<f64> {
    let path = criterion_home()
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let pick = |key: &str| json.get(key)?.get("point_estimate")?.as_f64();
    pick("slope").or_else(|| pick("mean"))
}

/// Formats nanoseconds per request.
pub fn ns(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.1} ns"))
}

/// Formats requests per second from nanoseconds per request.
pub fn per_sec(v: Option<f64>) -> String {
    match v {
        Some(v) if v > 0.0 => {
            let r = 1e9 / v;
            if r >= 1e6 {
                format!("{:.2} M/s", r / 1e6)
            } else {
                format!("{:.0} k/s", r / 1e3)
            }
        }
        _ => "n/a".into(),
    }
}

/// Formats a ratio.
pub fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.2}×"))
}

/// Prints a bench's summary and, when measuring for real, writes it to the results directory
/// (a smoke run must not overwrite real results).
pub fn write_summary(name: &str, text: &str) {
    if !measuring() {
        println!("\n{text}\n(smoke run: not written)");
        return;
    }
    let path = results_dir().join(format!("{name}.md"));
    std::fs::write(&path, text).expect("write summary");
    println!("\n{text}\n(written to {})", path.display());
}

/// How a bench binary was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `cargo bench`: measure for real.
    Bench,
    /// `cargo test --benches` (no `--bench` flag), `--test`, or `--profile-time`: a quick smoke
    /// run that checks the bench works.
    Smoke,
    /// `--list`, or a filter that excludes this bench: do nothing.
    Skip,
}

/// Criterion's flags that take a value (their values are not filters).
const VALUE_FLAGS: [&str; 15] = [
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--save-baseline",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--profile-time",
    "--plotting-backend",
    "--output-format",
    "--format",
];

/// The mode of a bench with a custom `main` named `name`, from its command line, following
/// criterion's rules (`--bench` measures, its absence means a test run).
pub fn mode(name: &str) -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        return Mode::Skip;
    }
    let mut filter = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if VALUE_FLAGS.contains(&a.as_str()) || a == "-c" || a == "--color" {
            i += 2;
            continue;
        }
        if !a.starts_with('-') && filter.is_none() {
            filter = Some(a.clone());
        }
        i += 1;
    }
    if let Some(filter) = filter
        && !name.contains(filter.as_str())
        && !filter.contains(name)
    {
        return Mode::Skip;
    }
    if has("--bench") && !has("--test") && !has("--profile-time") {
        Mode::Bench
    } else {
        Mode::Smoke
    }
}

/// Whether criterion will measure (`--bench`, not `--test`, `--list` or `--profile-time`).
pub fn measuring() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

/// The calling thread's id (Linux).
pub fn thread_id() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// Raises (`on`) or restores the scheduling priority of thread `tid`, as `BENCH_PRIORITY` says:
/// `rt` puts it under the real-time FIFO policy (`chrt -f 1`), `nice` gives it nice -20
/// (`renice`); anything else does nothing. Needs root or `CAP_SYS_NICE`. Threads the thread
/// creates afterwards inherit the setting. On a machine shared with other work this keeps the
/// measured threads from being preempted; keep such windows short (a real-time thread can
/// starve everything else on its core, up to the kernel's 95% real-time budget). Returns
/// whether it worked.
pub fn prioritize(tid: Option<&str>, on: bool) -> bool {
    let Some(tid) = tid else { return false };
    let args: [&str; 4] = match (std::env::var("BENCH_PRIORITY").as_deref(), on) {
        (Ok("rt"), true) => ["-f", "-p", "1", tid],
        (Ok("rt"), false) => ["-o", "-p", "0", tid],
        (Ok("nice"), on) => ["-n", if on { "-20" } else { "0" }, "-p", tid],
        _ => return false,
    };
    let tool = if std::env::var("BENCH_PRIORITY").as_deref() == Ok("rt") {
        "chrt"
    } else {
        "renice"
    };
    std::process::Command::new(tool)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `BENCH_PRIORITY` setting, for reports.
pub fn priority_label() -> &'static str {
    match std::env::var("BENCH_PRIORITY").as_deref() {
        Ok("rt") => "real-time FIFO",
        Ok("nice") => "nice -20",
        _ => "normal",
    }
}

/// What the baselines store per session: a cloneable handle holding the session's service and
/// id, as rmcp's `LocalSessionHandle` holds its channel and id.
pub struct Handle {
    pub service: Noop,
    pub id: std::sync::Arc<str>,
}

impl Handle {
    /// A handle for `id`, with the key that shares its allocation.
    pub fn new(id: &str) -> (std::sync::Arc<str>, std::sync::Arc<Handle>) {
        let id: std::sync::Arc<str> = std::sync::Arc::from(id);
        let handle = std::sync::Arc::new(Handle {
            service: Noop,
            id: std::sync::Arc::clone(&id),
        });
        (id, handle)
    }
}

/// A current-thread tokio runtime to enter (never driven): inside tokio, as on a server, the
/// layer starts its sweeper once per table and then only checks a flag.
pub fn tokio_context() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The session id header of a request, as a router reads it.
pub fn header_id<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(&MCP_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .expect("session id header")
}
