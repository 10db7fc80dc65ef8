//! An MCP Streamable HTTP server (MCP 2025-11-25) written with rmcp, the official Rust SDK,
//! behind `tower_mcp_session::SessionLayer`: one *stateful* rmcp session per layer session,
//! under the layer's id (feature `rmcp` of tower-mcp-session).
//!
//! ```text
//! cargo run -p tower-mcp-session-suite --example rmcp_server -- --bind 127.0.0.1:3000
//! cargo run -p tower-mcp-session-suite --example rmcp_server -- --max-sessions 100 --idle-timeout-secs 60
//! cargo run -p tower-mcp-session-suite --example rmcp_server -- --mode rmcp-native
//! cargo run -p tower-mcp-session-suite --example rmcp_server -- --redis-url redis://127.0.0.1:6379
//! ```
//!
//! `--mode layer` (the default) is the layer with one stateful rmcp session per layer session
//! and rmcp's stateless mode as its inner service for sessionless requests
//! (MCP-Protocol-Version >= 2026-07-28): the same server serves both of the layer's paths.
//! `--mode rmcp-native` is rmcp's own stateful server (`StreamableHttpService` with its
//! `LocalSessionManager`, default config) with the same handler and no layer, for
//! side-by-side measurements (`scripts/compare_rmcp.sh`).
//!
//! It serves the tools, resources and prompts that the MCP conformance suite's server
//! scenarios call (`scripts/interop/conformance_rmcp.sh` runs them), plus `increment` (a
//! per-session counter), `whoami`, `list_roots` and `notify_later`.
//!
//! DNS-rebinding protection (MCP 2025-11-25, Streamable HTTP, Security Warning): the crate's
//! `OriginGuardLayer` runs first, in both modes, and refuses with 403 every request whose
//! `Host`, absolute-form target or `Origin` names neither loopback nor `--allow-host`
//! (`Origin` may also be an exact `--allow-origin`); rmcp then checks `Host` again (its
//! `allowed_hosts`: loopback and `--allow-host`). rmcp alone checks no `Origin` by default.
//! Ctrl-C closes every session (ending rmcp's tasks for each) and stops. SIGTERM drains first,
//! for `--drain-secs` (5 s by default): `GET /ready` (outside the guard, for balancers and
//! Kubernetes) answers 503 `draining` instead of 200 `ready`, `/mcp` keeps serving and every
//! response carries `Connection: close`, so clients and balancers move to another server
//! before this one stops.

mod app;
#[path = "../../../examples/mcp_server/metrics_http.rs"]
mod metrics_http;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;
use tower_mcp_session::bus::RedisBus;
use tower_mcp_session::rmcp::RedisEventStore;
use tower_mcp_session::store::RedisStore;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "rmcp_server",
    about = "rmcp (official Rust MCP SDK) server behind tower-mcp-session: one stateful rmcp session per layer session, at http://BIND/mcp"
)]
struct Args {
    /// Address to listen on; the MCP endpoint is `/mcp`.
    #[arg(long, env = "MCP_BIND", default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// Most sessions open at once (then 503 with Retry-After).
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 10_000)]
    max_sessions: usize,
    /// Seconds a session may stay unused (no request, no open stream) before it expires.
    #[arg(long, env = "MCP_IDLE_TIMEOUT_SECS", default_value_t = 30 * 60)]
    idle_timeout_secs: u64,
    /// Which server to run.
    #[arg(long, value_enum, default_value_t = Mode::Layer)]
    mode: Mode,
    /// Redis URL: keep session records, data, messages and rmcp's SSE events in Redis, shared
    /// with the other servers using the same URL and prefix (sessions survive restarts and
    /// work on every server; streams resume with Last-Event-ID anywhere).
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Prefix of every Redis key and channel of this deployment.
    #[arg(long, env = "MCP_REDIS_PREFIX", default_value = "mcp-rmcp:")]
    redis_prefix: String,
    /// Host names the server is reached by besides loopback (repeat the flag or separate
    /// with commas); any other `Host` or `Origin` gets 403.
    #[arg(long = "allow-host", env = "MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Browser origins (`https://app.example.com`) whose pages may call the server: CORS
    /// answers them. Without it there is no CORS.
    #[arg(
        long = "allow-origin",
        env = "MCP_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Seconds the server drains after SIGTERM before it stops: GET /ready answers 503 and
    /// every response carries `Connection: close`, while /mcp keeps serving. Ctrl-C stops
    /// without draining.
    #[arg(long, env = "MCP_DRAIN_SECS", default_value_t = 5)]
    drain_secs: u64,
    /// Seals SEP-2322 `requestState` handles with this key (HMAC-SHA256, at least 32 bytes),
    /// so that a multi round-trip request may retry on any server given the same key.
    /// Without it the handles are kept in this process.
    #[arg(long, env = "MCP_REQUEST_STATE_KEY", hide_env_values = true)]
    request_state_key: Option<String>,
    /// Serve the layer's metrics as Prometheus text at http://ADDR/metrics, on a listener of
    /// its own. Off by default.
    #[arg(long, env = "MCP_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The layer: a stateful rmcp session per layer session, rmcp stateless for 2026-07-28.
    #[value(alias = "layer-stateful", alias = "layer-stateless")]
    Layer,
    /// rmcp's own stateful server (its LocalSessionManager), no layer.
    RmcpNative,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let args = Args::parse();
    // The recorder first: the layer registers its series with it when it is built.
    if let Some(addr) = args.metrics_bind {
        metrics_http::serve(addr, metrics_http::install()).await?;
    }
    let redis = match &args.redis_url {
        None => None,
        Some(url) => {
            let prefix = args.redis_prefix.clone();
            Some(app::Redis {
                store: RedisStore::open(url, prefix.clone()).map_err(std::io::Error::other)?,
                bus: RedisBus::open(url, prefix.clone()).map_err(std::io::Error::other)?,
                events: RedisEventStore::open(url, prefix).map_err(std::io::Error::other)?,
            })
        }
    };
    let app::App {
        router, sessions, ..
    } = app::build(app::Config {
        max_sessions: args.max_sessions,
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        redis,
        allowed_hosts: args.allowed_hosts.clone(),
        allowed_origins: args.allowed_origins.clone(),
        request_states: Arc::new(match &args.request_state_key {
            Some(key) => {
                app::RequestStates::sealed(key.as_bytes()).map_err(std::io::Error::other)?
            }
            None => app::RequestStates::default(),
        }),
    });
    let native = app::Config {
        allowed_hosts: args.allowed_hosts,
        allowed_origins: args.allowed_origins,
        ..app::Config::default()
    };
    let router = match args.mode {
        Mode::Layer => router,
        Mode::RmcpNative => app::build_native(&native),
    };
    // Readiness and drain: `/ready` sits outside the Origin guard (a balancer's or kubelet's
    // probe names no allowed Host); while draining, every answer closes its connection.
    let draining = Arc::new(AtomicBool::new(false));
    let probe = Arc::clone(&draining);
    let closing = Arc::clone(&draining);
    let router = axum::Router::new()
        .route(
            "/ready",
            get(move || {
                let draining = probe.load(Ordering::Acquire);
                async move {
                    if draining {
                        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
                    } else {
                        (StatusCode::OK, "ready\n").into_response()
                    }
                }
            }),
        )
        .merge(router)
        .layer(axum::middleware::map_response(
            move |mut response: Response| {
                let close = closing.load(Ordering::Acquire);
                async move {
                    if close {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    response
                }
            },
        ));
    let drain = Duration::from_secs(args.drain_secs);
    // rmcp writes SSE answers in several small pieces: without TCP_NODELAY each waits for
    // the peer's delayed ACK (about 40 ms).
    let listener = TcpListener::bind(args.bind).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tracing::info!(mode = ?args.mode, "listening on http://{}/mcp", args.bind);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            if shutdown_signal().await == Stop::Drain && !drain.is_zero() {
                draining.store(true, Ordering::Release);
                tracing::info!(
                    ?drain,
                    "draining: /ready answers 503, responses close their connections"
                );
                tokio::time::sleep(drain).await;
            }
            let closed = sessions.shutdown();
            tracing::info!(closed, "shutting down");
        })
        .await
}

/// What ends the server: Ctrl-C stops at once, SIGTERM drains first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Drain,
    Now,
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() -> Stop {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => Stop::Now,
        () = terminate => {
            tracing::info!("received SIGTERM");
            Stop::Drain
        }
    }
}
