//! `SessionLayer` under a plain hyper 1.x server, no framework.
//!
//! Each session gets its own `tower::service_fn` with its own request counter:
//!
//! - `POST /` without a session header opens a session. The answer is `session <id>: request 1`
//!   and carries the new id in `Mcp-Session-Id`.
//! - Any request with `Mcp-Session-Id: <id>` goes to that session's service, which counts it.
//! - `DELETE /` with the header closes the session (204); the id then gets 404.
//! - `GET /health` skips sessions and goes to the inner service (the
//!   [`sessionless`](tower_mcp_session::SessionLayer::sessionless) predicate).
//! - Any other request without the header gets 400.
//!
//! The layer is the same one the axum and tonic examples use; only the open policy differs
//! (`SessionLayer::mcp` would open sessions on JSON-RPC `initialize` instead).
//!
//! ```text
//! cargo run --example hyper              # listens on 127.0.0.1:3001 (or $PORT, or the first argument)
//! curl -i -X POST http://127.0.0.1:3001/                                  # opens a session
//! curl -i -X POST -H 'Mcp-Session-Id: <id>' http://127.0.0.1:3001/        # request 2 of it
//! curl -i -X DELETE -H 'Mcp-Session-Id: <id>' http://127.0.0.1:3001/      # 204
//! curl -i http://127.0.0.1:3001/health                                    # no session needed
//! ```
//!
//! Stop it with Ctrl-C: it stops accepting, closes every session and lets open connections
//! finish (for at most 10 seconds).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, service_fn};
use tower_mcp_session::body::RequestBody;
use tower_mcp_session::{ClosePolicy, OpenPolicy, Session, SessionInfo, SessionLayer};

/// What the inner and the per-session services receive.
type Body = RequestBody<Incoming>;

/// Port used when neither the first argument nor `$PORT` gives one.
pub const DEFAULT_PORT: u16 = 3001;

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().unwrap(),
    );
    response
}

/// Serves the session-counter app on `listener` until `shutdown` resolves, then closes every
/// session and waits (at most 10 s) for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // The inner service: only sessionless requests (here `GET /health`) reach it. It is also
    // handed to the factory for each new session; this factory does not need it.
    let inner = service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(text(StatusCode::OK, "ok\n".to_owned()))
    });

    // The factory: a fresh service with its own counter for each session.
    let layer = SessionLayer::generic(|session: SessionInfo, _inner| async move {
        tracing::info!(id = %session.id(), "session opened");
        let counter = Arc::new(AtomicU64::new(0));
        Ok::<_, Infallible>(service_fn(move |req: Request<Body>| {
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            // The layer also puts the session into the extensions of each routed request.
            debug_assert_eq!(
                req.extensions().get::<Session>().map(Session::info),
                Some(&session)
            );
            let body = format!("session {}: request {n}\n", session.id());
            async move { Ok::<_, Infallible>(text(StatusCode::OK, body)) }
        }))
    })
    .open_policy(OpenPolicy::when(|parts| parts.method == Method::POST))
    .close_policy(ClosePolicy::delete())
    .sessionless(|parts| parts.method == Method::GET && parts.uri.path() == "/health")
    .idle_timeout(Duration::from_secs(30 * 60))
    .max_sessions(10_000)
    .on_close(
        |info: &SessionInfo, reason| tracing::info!(id = %info.id(), ?reason, "session closed"),
    )
    .build();
    let sessions = layer.sessions();
    let app = ServiceBuilder::new().layer(layer).service(inner);

    let server = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: wait a little, keep serving.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(app.clone());
                let connection = server.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    let closed = sessions.shutdown();
    tracing::info!(closed, "shutting down");
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; dropping them");
    }
    Ok(())
}

/// The port to listen on: the first argument, else `$PORT`, else [`DEFAULT_PORT`].
fn port() -> u16 {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .map(|p| {
            p.parse()
                .expect("the port must be a number from 0 to 65535")
        })
        .unwrap_or(DEFAULT_PORT)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let addr = SocketAddr::from(([127, 0, 0, 1], port()));
    let listener = TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
