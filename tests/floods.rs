//! What a client without a session can cost, bounded before it is paid: shutdown and a full
//! table are answered before the body is read; the peek has a deadline (408), a per-request
//! limit (413) and a budget across all requests (503 + Retry-After), and a client that sends
//! its small body at once is not held up by bodies that trickle. Also the `Sessions` views
//! a flood response needs: `snapshot`, `close_where`, `state`.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{Either, Full};
use tower::{Layer, ServiceExt};
use tower_mcp_session::body::RequestBody;
use tower_mcp_session::{SessionInfo, SessionLayer, SessionLayerBuilder, with_state};

use common::*;

/// A request body that sends `first` and then never ends; records whether it was polled.
struct Trickle {
    first: Option<Bytes>,
    polled: Arc<AtomicBool>,
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polled.store(true, Ordering::SeqCst);
        match self.first.take() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None => Poll::Pending,
        }
    }
}

/// The request body of these tests: whole, or trickling.
type In = Either<Full<Bytes>, Trickle>;
type Out = http::Response<tower_mcp_session::body::ResponseBody<Full<Bytes>>>;

fn trickling(first: &'static str) -> (Request<In>, Arc<AtomicBool>) {
    let polled = Arc::new(AtomicBool::new(false));
    let body = Trickle {
        first: Some(Bytes::from_static(first.as_bytes())),
        polled: Arc::clone(&polled),
    };
    (
        Request::post(PATH).body(Either::Right(body)).unwrap(),
        polled,
    )
}

fn whole_initialize() -> Request<In> {
    Request::post(PATH)
        .body(Either::Left(Full::from(initialize_body(1))))
        .unwrap()
}

/// The same answer from every service: these tests are about what happens before one.
fn ok() -> impl tower::Service<
    Request<RequestBody<In>>,
    Response = http::Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(|_req: Request<RequestBody<In>>| async {
        Ok::<_, Infallible>(http::Response::new(Full::from("ok")))
    })
}

type Factory = fn(SessionInfo, Inner2) -> std::future::Ready<Result<Inner2, Infallible>>;
type Inner2 = tower::util::BoxCloneSyncService<
    Request<RequestBody<In>>,
    http::Response<Full<Bytes>>,
    Infallible,
>;

fn base() -> SessionLayerBuilder<Factory> {
    SessionLayer::mcp((|_info, inner| std::future::ready(Ok(inner))) as Factory)
}

fn inner() -> Inner2 {
    tower::util::BoxCloneSyncService::new(ok())
}

async fn status(
    app: &tower_mcp_session::SessionService<Inner2, Factory>,
    req: Request<In>,
) -> StatusCode {
    app.clone().oneshot(req).await.unwrap().status()
}

type Resp = Out;

async fn assert_json_rejection(resp: Resp, status: StatusCode, message: &str) -> http::HeaderMap {
    assert_eq!(resp.status(), status);
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        String::from_utf8(body.to_vec()).unwrap(),
        format!(r#"{{"jsonrpc":"2.0","error":{{"code":-32000,"message":"{message}"}},"id":null}}"#)
    );
    headers
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_frees_its_budget() {
    let layer = base()
        .peek_timeout(Duration::from_secs(10))
        .peek_budget(64)
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(inner());
    let (req, _) = trickling(r#"{"jsonrpc":"2.0","#);
    let started = tokio::time::Instant::now();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_json_rejection(
        resp,
        StatusCode::REQUEST_TIMEOUT,
        "Request timeout: the request body was not received in time",
    )
    .await;
    assert!(sessions.is_empty());
    // The 17 bytes it held are free again: an initialize that needs more than 64 - 17 fits.
    assert!(initialize_body(1).len() > 64 - 17);
    let app = base()
        .peek_budget(initialize_body(1).len())
        .build()
        .layer(inner());
    assert_eq!(status(&app, whole_initialize()).await, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn trickling_bodies_hold_at_most_the_budget_and_a_prompt_client_still_opens() {
    const PART: &str = r#"{"jsonrpc":"2.0","id""#;
    let budget = initialize_body(1).len() + 2 * PART.len();
    let layer = base().peek_budget(budget).build();
    let sessions = layer.sessions();
    let app = layer.layer(inner());
    // Two clients trickle a part each and stall: they hold that much of the budget.
    let mut parked = Vec::new();
    for _ in 0..2 {
        let (req, _) = trickling(PART);
        parked.push(tokio::spawn(app.clone().oneshot(req)));
    }
    tokio::task::yield_now().await;
    // A client that sends its whole initialize at once fits in what is left.
    assert_eq!(status(&app, whole_initialize()).await, StatusCode::OK);
    assert_eq!(sessions.len(), 1);
    // Another trickler fills what is left; the next one is refused at once.
    let fill: &'static str = Box::leak("x".repeat(budget - 2 * PART.len()).into_boxed_str());
    let (filler, _) = trickling(fill);
    parked.push(tokio::spawn(app.clone().oneshot(filler)));
    tokio::task::yield_now().await;
    let (req, _) = trickling("{");
    let headers = assert_json_rejection(
        app.clone().oneshot(req).await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
        "Service unavailable: too many request bodies are being read at once",
    )
    .await;
    assert_eq!(headers[http::header::RETRY_AFTER], "5");
    // The budget is spent, yet a client whose body arrives whole never waits: it still opens.
    assert_eq!(status(&app, whole_initialize()).await, StatusCode::OK);
    assert_eq!(sessions.len(), 2);
    for task in parked {
        task.abort();
    }
}

#[tokio::test]
async fn shutdown_and_a_full_table_answer_before_the_body_is_read() {
    let full = base().max_sessions(1).build().layer(inner());
    assert_eq!(status(&full, whole_initialize()).await, StatusCode::OK);
    let (req, polled) = trickling("{");
    let headers = assert_json_rejection(
        full.clone().oneshot(req).await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
        "Service unavailable: too many sessions",
    )
    .await;
    assert_eq!(headers[http::header::RETRY_AFTER], "5");
    assert!(!polled.load(Ordering::SeqCst), "a full table reads no body");

    full.sessions().shutdown();
    let (req, polled) = trickling("{");
    assert_json_rejection(
        full.oneshot(req).await.unwrap(),
        StatusCode::SERVICE_UNAVAILABLE,
        "Service unavailable: shutting down",
    )
    .await;
    assert!(
        !polled.load(Ordering::SeqCst),
        "a shut-down table reads no body"
    );
}

#[tokio::test(start_paused = true)]
async fn snapshot_close_where_and_state_reach_sessions_from_outside() {
    let layer = SessionLayer::mcp(with_state(|info: SessionInfo, _inner: Inner| async move {
        let owner = info.principal().map(|p| p.to_string());
        Ok::<_, Infallible>((Echo::new(info, &Live::default()), owner))
    }))
    .principal(user_of)
    .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let mut ids = Vec::new();
    for user in ["ann", "ann", "bob"] {
        let resp = send(&app, as_user(user, initialize())).await;
        ids.push(session_id_of(&resp).unwrap());
        body_string(resp).await;
    }
    tokio::time::advance(Duration::from_secs(7)).await;
    let stream = send(&app, as_user("bob", get_stream(&ids[2]))).await;

    let mut snapshot = sessions.snapshot();
    snapshot.sort_by_key(|s| s.in_flight());
    assert_eq!(snapshot.len(), 3);
    assert_eq!(
        (snapshot[0].in_flight(), snapshot[0].idle_for()),
        (0, Duration::from_secs(7))
    );
    assert_eq!(
        (snapshot[2].in_flight(), snapshot[2].idle_for()),
        (1, Duration::ZERO)
    );
    assert_eq!(snapshot[2].info().id().as_str(), ids[2]);

    assert_eq!(
        sessions.state::<Option<String>>(&ids[0]),
        Some(Some("ann".into()))
    );
    assert_eq!(sessions.state::<u32>(&ids[0]), None, "another type");

    // Revoke ann: both her sessions close, bob's stays.
    let revoked = sessions.close_where(|info| info.principal().map(|p| p.as_str()) == Some("ann"));
    assert_eq!(revoked, 2);
    assert_eq!(
        sessions
            .ids()
            .iter()
            .map(|id| id.as_str())
            .collect::<Vec<_>>(),
        [ids[2].as_str()]
    );
    assert_not_found(send(&app, as_user("ann", post(&ids[0]))).await).await;
    drop(stream);
}
