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
//! - **Readiness**: `GET /ready` (outside the Origin guard, for balancers and Kubernetes,
//!   which send no `Host` the guard accepts) answers 200 `ready` while the server takes new
//!   work, 503 `draining` once it is going away.
//! - **Drain, then a bounded graceful shutdown**: when `shutdown` resolves with
//!   [`Stop::Drain`] (SIGTERM), the server first *drains* for [`ServerConfig::drain`]: `/ready`
//!   fails at once, `/mcp` keeps serving (new connections too), and every response carries
//!   `Connection: close`, so each keep-alive client (a balancer's pooled connections
//!   included) closes its connection after its answer and sends its next request elsewhere;
//!   nothing is cut mid-request. Then (at once for [`Stop::Now`], Ctrl-C) every session on
//!   this node is closed ([`Sessions::shutdown`], which ends their SSE streams; with a cluster
//!   the records stay, and the sessions carry on on the other nodes), the listener is
//!   dropped, every connection is told to finish its current request and close, and [`serve`]
//!   returns once they all have, or after [`ServerConfig::shutdown_grace`], whichever comes
//!   first.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
    /// How long the server drains after SIGTERM ([`Stop::Drain`]) before it stops: `/ready`
    /// answers 503 and responses carry `Connection: close`, while `/mcp` keeps serving.
    /// Longer than the balancer needs to see `/ready` fail (HAProxy: `inter` × `fall`;
    /// Kubernetes: `periodSeconds` × `failureThreshold`, plus the endpoint update). Default:
    /// 5 s.
    pub drain: Duration,
    /// Most time connections get to finish after shutdown begins. Default: 5 s.
    pub shutdown_grace: Duration,
}

/// What the `shutdown` future of [`serve`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Drain for [`ServerConfig::drain`], then stop (SIGTERM: an orchestrator replacing this
    /// node).
    Drain,
    /// Stop at once (Ctrl-C: someone at a terminal).
    Now,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1_024,
            h2c: false,
            h2_max_streams: 100,
            drain: Duration::from_secs(5),
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

/// `GET /ready`: 200 while serving, 503 while draining.
async fn ready(draining: Arc<AtomicBool>) -> Response {
    if draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

/// Serves `router` (and `/ready`) on `listener` until `shutdown` resolves, then drains and
/// shuts down as described in the module docs. Errors of single connections are logged,
/// never returned.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    sessions: Sessions,
    config: ServerConfig,
    shutdown: impl Future<Output = Stop>,
) -> Stopped {
    let draining = Arc::new(AtomicBool::new(false));
    let probe = Arc::clone(&draining);
    let router = Router::new()
        .route("/ready", get(move || ready(Arc::clone(&probe))))
        .merge(router);
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

    let shutdown = async {
        if shutdown.await == Stop::Drain && !config.drain.is_zero() {
            draining.store(true, Ordering::Release);
            tracing::info!(
                drain = ?config.drain,
                "draining: /ready answers 503, responses close their connections"
            );
            tokio::time::sleep(config.drain).await;
        }
    };
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
        let closing = Arc::clone(&draining);
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .map_response(move |mut response: Response| {
                // HTTP/1.1 closes the connection after this response; HTTP/2 has no
                // connection header (hyper drops it) and gets GOAWAY when the drain ends.
                if closing.load(Ordering::Acquire) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
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
