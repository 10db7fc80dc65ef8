//! An MCP Streamable HTTP server (MCP 2025-11-25) on axum, with one MCP server instance per
//! session, built on `tower_mcp_session::SessionLayer`.
//!
//! ```text
//! cargo run --example mcp_server                         # http://127.0.0.1:3000/mcp
//! cargo run --example mcp_server -- --bind 127.0.0.1:8080
//! MCP_BIND=127.0.0.1:8080 RUST_LOG=debug cargo run --example mcp_server
//! cargo run --example mcp_server -- --help                # every limit, with its env var
//! cargo run --example mcp_server --features metrics -- --metrics-bind 127.0.0.1:9464
//! ```
//!
//! Each session has its own counter: call the `increment` tool from two clients and each
//! counts from 1. See `app.rs` for what the server answers and `TRANSCRIPT.md` for a
//! session driven with `curl`, `server.rs` for how connections are served (timeouts,
//! connection cap, drain, bounded graceful shutdown). SIGTERM first drains for
//! `--drain-secs` (GET /ready answers 503, responses carry `Connection: close`, /mcp keeps
//! serving); then, as at once on Ctrl-C, the server closes every session, ending their open
//! SSE streams, and stops within `--shutdown-grace-secs`.

mod app;
mod metrics_http;
mod server;
mod trim;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tower_mcp_session::Cluster;
use tracing_subscriber::EnvFilter;

const ABOUT: &str = "Example MCP Streamable HTTP server (MCP 2025-11-25) built on \
tower-mcp-session: one MCP server per session at http://BIND/mcp, with the limits a public \
server needs.";

const LONG_ABOUT: &str = "Example MCP Streamable HTTP server (MCP 2025-11-25) built on \
tower-mcp-session: one MCP server per session at http://BIND/mcp, each with its own counter \
(the `increment` tool).

It is meant as a template for production: every limit below has a flag and an environment \
variable. Requests whose Host or Origin is not localhost/127.0.0.1/[::1] or allowed with \
--allow-host / --allow-origin are refused (DNS-rebinding protection). SIGTERM first drains for \
--drain-secs (GET /ready answers 503 so a balancer moves away, responses carry Connection: close, \
/mcp keeps serving); then, as at once on Ctrl-C, the server closes every session, stops accepting \
and waits at most --shutdown-grace-secs for open connections.

Logs go to stdout (RUST_LOG sets the filter, default info), without colour codes when stdout \
is not a terminal.";

#[derive(Debug, Parser)]
#[command(name = "mcp_server", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Args {
    /// Address to listen on; the MCP endpoint is `/mcp`.
    #[arg(long, env = "MCP_BIND", default_value = "127.0.0.1:3000")]
    bind: SocketAddr,

    // --- connections ---
    /// Seconds a client may take to send a whole HTTP/1.1 request head (against slowloris).
    #[arg(long, env = "MCP_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    header_read_timeout_secs: u64,
    /// Most connections open at once; more are closed as soon as they are accepted. Keep it
    /// well under the process's file limit (ulimit -n).
    #[arg(long, env = "MCP_MAX_CONNECTIONS", default_value_t = 1_024)]
    max_connections: usize,
    /// Also accept HTTP/2 over cleartext (prior knowledge). Off: HTTP/1.1 only.
    #[arg(long, env = "MCP_H2C")]
    h2c: bool,
    /// Most concurrent streams per HTTP/2 connection (with --h2c).
    #[arg(long, env = "MCP_H2_MAX_STREAMS", default_value_t = 100)]
    h2_max_streams: u32,
    /// Seconds the server drains after SIGTERM before it stops: GET /ready answers 503 (point
    /// the balancer's health check at it) and every response carries `Connection: close`,
    /// while /mcp keeps serving. Ctrl-C stops without draining.
    #[arg(long, env = "MCP_DRAIN_SECS", default_value_t = 5)]
    drain_secs: u64,
    /// Seconds open connections get to finish after Ctrl-C/SIGTERM before the server exits.
    #[arg(long, env = "MCP_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    shutdown_grace_secs: u64,

    // --- requests ---
    /// Seconds a POST or DELETE may take until its response head, body upload included
    /// (then 408). GET SSE streams are exempt.
    #[arg(long, env = "MCP_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    request_timeout_secs: u64,
    /// Most bytes of a request body (then 413).
    #[arg(long, env = "MCP_BODY_LIMIT_BYTES", default_value_t = 4 * 1024 * 1024)]
    body_limit_bytes: usize,
    /// Host names accepted in `Host`/`Origin` besides localhost, 127.0.0.1 and [::1]
    /// (DNS-rebinding protection); repeat the flag or separate names with commas.
    #[arg(long = "allow-host", env = "MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Browser origin (`http://app.example.com:8080`) allowed to call the server: CORS
    /// answers its preflights and exposes `Mcp-Session-Id` to it; repeat the flag or
    /// separate origins with commas. None: no CORS.
    #[arg(
        long = "allow-origin",
        env = "MCP_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,

    // --- sessions ---
    /// Seconds a session may stay unused before it expires.
    #[arg(long, env = "MCP_IDLE_TIMEOUT_SECS", default_value_t = 30 * 60)]
    idle_timeout_secs: u64,
    /// Most sessions open at once; further `initialize` requests get 503.
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 1_000)]
    max_sessions: usize,
    /// At --max-sessions, close a sampled least-recently-requested session (its GET streams
    /// end) instead of answering 503. Pair it with --max-sessions-per-client.
    #[arg(long, env = "MCP_EVICT_IDLEST")]
    evict_idlest: bool,
    /// Most bytes of an opening request's body read to find `initialize` (then 413).
    #[arg(long, env = "MCP_PEEK_LIMIT_BYTES", default_value_t = 64 * 1024)]
    peek_limit_bytes: usize,
    /// Seconds the layer waits for an opening request's body (then 408). Default: 10.
    #[arg(long, env = "MCP_PEEK_TIMEOUT_SECS")]
    peek_timeout_secs: Option<u64>,
    /// Most bytes of opening-request bodies held at once, all requests together (then 503
    /// with Retry-After). Default: 16 MiB.
    #[arg(long, env = "MCP_PEEK_BUDGET_BYTES")]
    peek_budget_bytes: Option<usize>,
    /// Most live sessions per client IP address (then 429 with Retry-After). Default: none.
    #[arg(long, env = "MCP_MAX_SESSIONS_PER_CLIENT")]
    max_sessions_per_client: Option<usize>,
    /// Seconds after which a session is closed however busy it is. Default: none.
    #[arg(long, env = "MCP_MAX_LIFETIME_SECS")]
    max_lifetime_secs: Option<u64>,

    // --- several servers ---
    /// Redis URL (`redis://127.0.0.1:6379`): keep session records and data in Redis and join
    /// the other servers with the same URL and prefix through its pub/sub, so sessions
    /// survive restarts and work on every server. Without it everything stays in memory.
    /// `rediss://` for TLS; `redis[s]://user:password@host:port` for an ACL user. With
    /// --redis-cluster: the URLs of some nodes of a Redis Cluster, separated by commas. The
    /// server checks it at startup (PING) and exits with Redis's error if it cannot use it
    /// (wrong password, refused certificate, unreachable). Needs a build with
    /// `--features redis`.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// --redis-url names nodes of a Redis Cluster (comma-separated URLs; one reachable node
    /// is enough).
    #[arg(long, env = "MCP_REDIS_CLUSTER")]
    redis_cluster: bool,
    /// PEM file of the CA certificates to trust for `rediss://` instead of the system's roots.
    #[arg(long, env = "MCP_REDIS_CA")]
    redis_ca: Option<std::path::PathBuf>,
    /// PEM file of the client certificate chain for mutual TLS (with --redis-key).
    #[arg(long, env = "MCP_REDIS_CERT", requires = "redis_key")]
    redis_cert: Option<std::path::PathBuf>,
    /// PEM file of the client certificate's private key (with --redis-cert).
    #[arg(long, env = "MCP_REDIS_KEY", requires = "redis_cert")]
    redis_key: Option<std::path::PathBuf>,
    /// Prefix of every Redis key and channel of this deployment.
    #[arg(long, env = "MCP_REDIS_PREFIX", default_value = "mcp:")]
    redis_prefix: String,
    /// PostgreSQL connection string (`postgresql://user@127.0.0.1:5432/db`): keep session
    /// records and data in one table of that database and join the other servers with the
    /// same database and schema through LISTEN/NOTIFY, like --redis-url with PostgreSQL alone.
    /// At most one of --redis-url and --postgres-url. Needs a build with
    /// `--features postgres`.
    #[arg(long, env = "POSTGRES_URL", conflicts_with = "redis_url")]
    postgres_url: Option<String>,
    /// Schema of this deployment's table (created when missing) and name of its NOTIFY
    /// channel: lowercase letters, digits and `_`.
    #[arg(long, env = "MCP_POSTGRES_SCHEMA", default_value = "mcp")]
    postgres_schema: String,

    // --- observability ---
    /// Serve the layer's metrics as Prometheus text at http://ADDR/metrics (needs the crate
    /// feature `metrics` for the session series). Off by default.
    #[arg(long, env = "MCP_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,

    // --- memory ---
    /// After many sessions have closed (expiry sweeps, evictions), hand the freed heap back
    /// to the OS with glibc's malloc_trim (Linux/glibc only; see BENCHMARKS.md).
    #[arg(long, env = "MCP_MALLOC_TRIM", default_value_t = true, action = clap::ArgAction::Set)]
    malloc_trim: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let args = Args::parse();
    let secs = |s: u64| Duration::from_secs(s.max(1));
    let cluster = cluster(&args).await?;
    // The recorder first: the layer registers its series with it when it is built.
    if let Some(addr) = args.metrics_bind {
        metrics_http::serve(addr, metrics_http::install()).await?;
        if !cfg!(feature = "metrics") {
            tracing::warn!(
                "built without the crate feature `metrics`: /metrics shows no session series \
                 (cargo run --example mcp_server --features metrics)"
            );
        }
    }

    let app::App { router, sessions } = app::build(app::Config {
        idle_timeout: secs(args.idle_timeout_secs),
        max_sessions: args.max_sessions,
        evict_idlest: args.evict_idlest,
        allowed_hosts: args.allowed_hosts,
        allowed_origins: args.allowed_origins,
        request_timeout: secs(args.request_timeout_secs),
        body_limit: args.body_limit_bytes,
        peek_limit: args.peek_limit_bytes,
        peek_timeout: args.peek_timeout_secs.map(secs),
        peek_budget: args.peek_budget_bytes,
        max_sessions_per_client: args.max_sessions_per_client,
        max_lifetime: args.max_lifetime_secs.map(secs),
        cluster,
    });
    let config = server::ServerConfig {
        header_read_timeout: secs(args.header_read_timeout_secs),
        max_connections: args.max_connections.max(1),
        h2c: args.h2c,
        h2_max_streams: args.h2_max_streams.max(1),
        drain: Duration::from_secs(args.drain_secs),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
    };

    let listener = TcpListener::bind(args.bind).await?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "listening on a non-loopback address: requests are still refused unless their Host is \
             localhost or named with --allow-host"
        );
    }
    tracing::info!("MCP server listening on http://{addr}/mcp");

    if args.malloc_trim {
        trim::spawn(sessions.clone());
    }
    match server::serve(listener, router, sessions, config, shutdown_signal()).await {
        server::Stopped::Drained => tracing::info!("server stopped"),
        server::Stopped::GraceExpired { open } => tracing::warn!(
            open,
            "connections still open after the shutdown grace period; exiting anyway"
        ),
    }
    Ok(())
}

/// Resolves on Ctrl-C (stop now) or, on Unix, SIGTERM (drain first).
async fn shutdown_signal() -> server::Stop {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
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
        () = ctrl_c => {
            tracing::info!("received Ctrl-C");
            server::Stop::Now
        }
        () = terminate => {
            tracing::info!("received SIGTERM");
            server::Stop::Drain
        }
    }
}

/// The cluster the flags name, if any (clap refuses both URLs at once).
async fn cluster(args: &Args) -> std::io::Result<Option<Cluster>> {
    match (&args.redis_url, &args.postgres_url) {
        (Some(_), Some(_)) => Err(std::io::Error::other(
            "--redis-url and --postgres-url name two stores: give at most one",
        )),
        (Some(url), None) => redis_cluster(url, args).await.map(Some),
        (None, Some(url)) => postgres_cluster(url, &args.postgres_schema).map(Some),
        (None, None) => Ok(None),
    }
}

/// Records, data and messages in the PostgreSQL at `url`, in `schema`.
#[cfg(feature = "postgres")]
fn postgres_cluster(url: &str, schema: &str) -> std::io::Result<Cluster> {
    use tower_mcp_session::bus::PostgresBus;
    use tower_mcp_session::store::PostgresStore;
    let store = PostgresStore::open(url, schema).map_err(std::io::Error::other)?;
    let bus = PostgresBus::open(url, schema).map_err(std::io::Error::other)?;
    tracing::info!(schema, "sessions kept in PostgreSQL");
    Ok(Cluster::new(store).bus(bus))
}

#[cfg(not(feature = "postgres"))]
fn postgres_cluster(_url: &str, _schema: &str) -> std::io::Result<Cluster> {
    Err(std::io::Error::other(
        "--postgres-url needs PostgreSQL support: build the example with `--features postgres`",
    ))
}

/// Records, data and messages in the Redis (or Redis Cluster) at `url`, under the prefix;
/// checked with a PING, so that a wrong password or a refused certificate stops the server at
/// startup with Redis's error (at run time the same failures are an outage: 503, logged once).
#[cfg(feature = "redis")]
async fn redis_cluster(url: &str, args: &Args) -> std::io::Result<Cluster> {
    use tower_mcp_session::RedisConfig;
    use tower_mcp_session::bus::RedisBus;
    use tower_mcp_session::store::{RedisStore, SessionStore};
    let mut config = if args.redis_cluster {
        RedisConfig::cluster(url.split(',').map(str::trim).filter(|u| !u.is_empty()))
    } else {
        RedisConfig::new(url)
    };
    if let Some(ca) = &args.redis_ca {
        config = config.ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (&args.redis_cert, &args.redis_key) {
        config = config.client_cert(cert, key);
    }
    let prefix = args.redis_prefix.as_str();
    let store = RedisStore::connect(&config, prefix).map_err(std::io::Error::other)?;
    let bus = RedisBus::connect_with(&config, prefix).map_err(std::io::Error::other)?;
    if let Err(error) = store.ping().await {
        // `config`'s Debug and the store's errors never hold the password.
        return Err(std::io::Error::other(format!(
            "cannot use Redis ({config:?}): {error}"
        )));
    }
    tracing::info!(prefix, redis = ?config, "sessions kept in Redis");
    Ok(Cluster::new(store).bus(bus))
}

#[cfg(not(feature = "redis"))]
async fn redis_cluster(_url: &str, _args: &Args) -> std::io::Result<Cluster> {
    Err(std::io::Error::other(
        "--redis-url needs Redis support: build the example with `--features redis`",
    ))
}
