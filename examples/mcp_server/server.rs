//! Serving the example's router with hyper-util instead of `axum::serve`, for the knobs a
//! public server needs and `axum::serve` does not offer:
//!
//! - **Header-read timeout** (HTTP/1.1): a client that does not send a whole request head
//!   within [`ServerConfig::header_read_timeout`] is disconnected (slowloris).
//! - **HTTP/1.1 only** unless [`ServerConfig::h2c`]; then HTTP/2 over cleartext (prior
//!   knowledge) is accepted too, with at most [`ServerConfig::h2_max_streams`] streams per
//!   connection.
//! - **`TCP_NODELAY`** on every accepted socket: without it, answers written in several small
//!   pieces (SSE) stall about 40 ms each (Nagle + delayed ACK).
//! - **Connection cap**: at most [`ServerConfig::max_connections`] connections at once; a
//!   connection over the cap is closed as soon as it is accepted, before anything is read,
//!   so a flood of connections costs a file descriptor for an instant and no task.
//! - **Peer address**: every request carries axum's `ConnectInfo<SocketAddr>` in its
//!   extensions, for per-client limits and logs.
//! - **Bounded graceful shutdown**: when `shutdown` resolves, every session is closed
//!   ([`Sessions::shutdown`], which ends their SSE streams), the listener is dropped, every
//!   connection is told to finish its current request and close, and [`serve`] returns once
//!   they all have, or after [`ServerConfig::shutdown_grace`], whichever comes first.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_mcp_session::Sessions;

/// Connection-level settings of [`serve`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Most time a client may take to send a whole HTTP/1.1 request head. Default: 10 s.
    pub header_read_timeout: Duration,
    /// Most connections open at once; more are closed at once. Default: 1,024.
    pub max_connections: usize,
    /// Accept HTTP/2 over cleartext (prior knowledge) besides HTTP/1.1. Default: off.
    pub h2c: bool,
    /// Most concurrent streams of one HTTP/2 connection. Default: 100.
    pub h2_max_streams: u32,
    /// Most time connections get to finish after shutdown begins. Default: 5 s.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1_024,
            h2c: false,
            h2_max_streams: 100,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// How [`serve`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the grace period.
    Drained,
    /// Connections were still open when the grace period ran out; they are dropped.
    GraceExpired {
        /// Connections still open.
        open: usize,
    },
}

/// Serves `router` on `listener` until `shutdown` resolves, then shuts down as described in
/// the module docs. Errors of single connections are logged, never returned.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    sessions: Sessions,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Stopped {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    if config.h2c {
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.h2_max_streams);
    } else {
        builder = builder.http1_only();
    }
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically EMFILE/ENFILE: back off instead of spinning on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                %peer,
                max_connections = config.max_connections,
                "connection limit reached: closing a new connection"
            );
            drop(stream);
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }

    tracing::info!("shutting down: closing all sessions");
    let closed = sessions.shutdown();
    tracing::info!(closed, "all sessions closed");
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open,
        grace = ?config.shutdown_grace,
        "stopped accepting; waiting for open connections"
    );
    match tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => Stopped::Drained,
        // Each open connection's task holds one permit.
        Err(_) => Stopped::GraceExpired {
            open: config.max_connections - permits.available_permits(),
        },
    }
}
