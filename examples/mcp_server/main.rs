//! An MCP Streamable HTTP server (MCP 2025-11-25) on axum, with one MCP server instance per
//! session, built on `tower_mcp_session::SessionLayer`.
//!
//! ```text
//! cargo run --example mcp_server                         # http://127.0.0.1:3000/mcp
//! cargo run --example mcp_server -- --bind 127.0.0.1:8080
//! MCP_BIND=127.0.0.1:8080 RUST_LOG=debug cargo run --example mcp_server
//! ```
//!
//! Each session has its own counter: call the `increment` tool from two clients and each
//! counts from 1. See `app.rs` for what the server answers and `TRANSCRIPT.md` for a
//! session driven with `curl`. Ctrl-C (or SIGTERM) closes every session, ending their open
//! SSE streams, and then stops the server gracefully.

mod app;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing_subscriber::EnvFilter;

/// How long open connections get to finish after the sessions are closed on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// An MCP Streamable HTTP server with one MCP server instance per session.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; the MCP endpoint is `/mcp`.
    #[arg(long, env = "MCP_BIND", default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// Seconds a session may stay unused before it expires.
    #[arg(long, env = "MCP_IDLE_TIMEOUT_SECS", default_value_t = 30 * 60)]
    idle_timeout_secs: u64,
    /// Most sessions open at once; further `initialize` requests get 503.
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 1_000)]
    max_sessions: usize,
    /// Host names accepted in `Host`/`Origin` besides localhost, 127.0.0.1 and [::1]
    /// (DNS-rebinding protection); repeat the flag or separate names with commas.
    #[arg(long = "allow-host", env = "MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let app::App { router, sessions } = app::build(app::Config {
        idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
        max_sessions: args.max_sessions,
        allowed_hosts: args.allowed_hosts,
    });

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

    let (stopping_tx, stopping_rx) = oneshot::channel();
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: closing all sessions");
        // Ends every session's open SSE streams, so the connections can finish.
        let closed = sessions.shutdown();
        tracing::info!(closed, "all sessions closed");
        let _ = stopping_tx.send(());
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown);
    let deadline = async move {
        if stopping_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result?,
        () = deadline => tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after shutdown; exiting"),
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
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
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
