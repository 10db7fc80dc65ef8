//! The defaults, pinned: the session limit (10,000) and its 503, the sweep interval (a
//! quarter of the idle timeout, clamped to 1..=60 s), factories written as `async` closures,
//! a per-session service that is not `Clone` behind `tower::buffer::Buffer`, and the MCP open
//! policy under the generic profile.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tower::buffer::Buffer;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_mcp_session::{OpenPolicy, Session, SessionInfo, SessionLayer, Sessions};

/// Lets the sweeper (a task on this current-thread runtime, which yields between shards)
/// run a whole pass.
async fn settle() {
    for _ in 0..2_000 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_default_session_limit_is_10_000_and_the_next_open_gets_503() {
    let Fixture(live, _, sessions, app) = Fixture::mcp_unhooked(|layer| layer);
    assert_eq!(sessions.max_sessions(), 10_000);
    for _ in 0..10_000 {
        let resp = send(&app, initialize()).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(sessions.len(), 10_000);

    let resp = send(&app, initialize()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    assert!(session_id_of(&resp).is_none());
    assert_eq!(
        body_string(resp).await,
        r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Service unavailable: too many sessions"},"id":null}"#
    );
    assert_eq!(sessions.len(), 10_000);
    assert_eq!(
        live.made(),
        10_000,
        "no service is built for a refused open"
    );
}

/// Opens one session at `at` after the sweeper started (it starts with the first request,
/// here an open at time 0), and returns the handle, the service and the session's id.
async fn one_session_used_at(
    idle: Option<Duration>,
    at: Duration,
) -> (Sessions, SessionServiceOf, String) {
    let Fixture(_, _, sessions, app) = Fixture::mcp_unhooked(|layer| match idle {
        Some(idle) => layer.idle_timeout(idle),
        None => layer,
    });
    let id = open(&app).await;
    tokio::time::advance(at).await;
    assert_eq!(status_of(&app, post(&id)).await, StatusCode::OK);
    (sessions, app, id)
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

type SessionServiceOf = tower_mcp_session::SessionService<Inner, EchoFactory>;

/// Advances the paused clock to `to` (measured from `start`), stopping at every multiple of
/// `tick` on the way and letting the sweeper run there: one `advance` over several ticks
/// would fire the sweeper's timer once, late, at the new time.
async fn advance_to(start: tokio::time::Instant, to: Duration, tick: Duration) {
    loop {
        let now = start.elapsed();
        assert!(to >= now);
        let next_tick = tick * (now.as_millis() / tick.as_millis() + 1) as u32;
        let step = next_tick.min(to) - now;
        tokio::time::advance(step).await;
        settle().await;
        if next_tick >= to {
            return;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn with_the_default_idle_timeout_the_sweeper_runs_every_60_s() {
    // Idle 30 min: a quarter is 7.5 min, clamped to 60 s. The sweeper ticks at 60 s, 120 s,
    // ... after the first request; the session is last used at 10 s, so it expires at
    // 1,810 s and the sweeper reclaims it at its tick of 1,860 s, not before.
    let start = tokio::time::Instant::now();
    let (sessions, _app, id) = one_session_used_at(None, Duration::from_secs(10)).await;
    advance_to(start, Duration::from_secs(1_810), MINUTE).await;
    assert_eq!(sessions.len(), 1, "expired, but no tick yet");
    advance_to(start, Duration::from_millis(1_859_999), MINUTE).await;
    assert_eq!(sessions.len(), 1, "reclaimed before the 60 s tick");
    advance_to(start, Duration::from_secs(1_860), MINUTE).await;
    assert_eq!(sessions.len(), 0, "not reclaimed by 60 s after it expired");
    assert!(!sessions.contains(&id));
}

#[tokio::test(start_paused = true)]
async fn with_a_2_s_idle_timeout_the_sweeper_runs_every_second() {
    // Idle 2 s: a quarter is 0.5 s, clamped to 1 s. Last used at 0.3 s, expired at 2.3 s,
    // reclaimed at the tick of 3 s: within 1 s of expiry.
    let start = tokio::time::Instant::now();
    let (sessions, _app, _id) =
        one_session_used_at(Some(Duration::from_secs(2)), Duration::from_millis(300)).await;
    advance_to(start, Duration::from_millis(2_300), SECOND).await;
    assert_eq!(sessions.len(), 1);
    advance_to(start, Duration::from_millis(2_999), SECOND).await;
    assert_eq!(sessions.len(), 1, "reclaimed before the 1 s tick");
    advance_to(start, Duration::from_secs(3), SECOND).await;
    assert_eq!(sessions.len(), 0, "not reclaimed within 1 s of expiry");
}

#[tokio::test]
async fn a_factory_can_be_an_async_closure() {
    let layer = SessionLayer::mcp(async |info: SessionInfo, _inner: Inner| {
        // Any async work may happen here.
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(service_fn(move |req: Request<Body>| {
            let routed = req
                .extensions()
                .get::<Session>()
                .map(|s| s.info().id().to_string());
            let me = info.id().to_string();
            async move {
                assert_eq!(routed.as_deref(), Some(me.as_str()));
                Ok::<_, Infallible>(Response::new(full(me)))
            }
        }))
    })
    .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let id = open(&app).await;
    let resp = send(&app, post(&id)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_string(resp).await, id);
    assert_eq!(sessions.len(), 1);
}

/// A per-session service that cannot be cloned: it counts its requests in a plain field.
struct Counter {
    id: String,
    requests: usize,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Request<Body>> for Counter {
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<Body>) -> Self::Future {
        self.requests += 1;
        let text = format!("{} {}", self.id, self.requests);
        std::future::ready(Ok(Response::new(full(text))))
    }
}

#[tokio::test]
async fn a_service_that_is_not_clone_works_behind_a_buffer() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let factory = {
        let dropped = Arc::clone(&dropped);
        move |info: SessionInfo, _inner| {
            let counter = Counter {
                id: info.id().to_string(),
                requests: 0,
                dropped: Arc::clone(&dropped),
            };
            // `Buffer` is `Clone`: its clones share one worker task driving the service.
            async move { Ok::<_, Infallible>(Buffer::new(counter, 16)) }
        }
    };
    let inner =
        service_fn(|_req: Request<Body>| async { Ok::<_, BoxError>(Response::new(full("inner"))) });
    let layer = SessionLayer::mcp(factory).build();
    let sessions = layer.sessions();
    let app = layer.layer(inner);

    let call = |req| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.expect("no service error");
            let status = resp.status();
            let id = resp
                .headers()
                .get(SESSION_HEADER)
                .map(|v| v.to_str().unwrap().to_owned());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, id, String::from_utf8(body.to_vec()).unwrap())
        }
    };
    let (status, id, body) = call(initialize()).await;
    assert_eq!(status, StatusCode::OK);
    let id = id.expect("an id");
    assert_eq!(body, format!("{id} 1"));
    // Requests of the session reach the one service, which keeps its own count.
    for n in 2..=4 {
        let (status, _, body) = call(post(&id)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("{id} {n}"));
    }
    let (status, _, body) = call(initialize()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with(" 1"), "a second session has its own service");
    assert_eq!(sessions.len(), 2);

    // Closing the session drops the buffer's worker and with it the service.
    assert!(sessions.close(&id));
    for _ in 0..100 {
        if dropped.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    let (status, _, body) = call(post(&id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, NOT_FOUND_BODY);
}

#[tokio::test]
async fn the_mcp_open_policy_works_under_the_generic_profile() {
    let live = Live::default();
    let layer = SessionLayer::generic(echo_factory(&live))
        .open_policy(OpenPolicy::mcp_initialize())
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    // `initialize` opens.
    let resp = send(&app, initialize()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let id = session_id_of(&resp).expect("the id in Mcp-Session-Id");
    let echo = body_json(resp).await;
    assert_eq!(echo["session"], id.as_str());
    assert_eq!(echo["body"], initialize_body(1));

    // A ping without an id opens nothing: 400 with the exact body.
    let resp = send(&app, post_raw(rpc_body(2, "ping"))).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    assert!(session_id_of(&resp).is_none());
    assert_eq!(body_string(resp).await, MISSING_ID_BODY);
    assert_eq!(sessions.len(), 1);
    assert_eq!(live.made(), 1);

    // The ping with the id reaches the session.
    let echo = body_json(send(&app, post_with(&id, rpc_body(3, "ping"))).await).await;
    assert_eq!(
        (echo["session"].as_str(), echo["n"].as_u64()),
        (Some(id.as_str()), Some(2))
    );
}
