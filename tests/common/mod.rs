//! Helpers shared by the integration tests: request builders, an `initialize` body, a
//! per-session echo service with its own counter, a counter of live per-session services,
//! a recorder for the close hook, body readers and [`Fixture`], the usual layer setup.
//!
//! Every test file uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod store;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};
use tower_mcp_session::body::{RequestBody, ResponseBody};
use tower_mcp_session::{
    CloseReason, Session, SessionFactory, SessionInfo, SessionLayer, SessionLayerBuilder,
    SessionService, Sessions,
};

/// The request body the layer is given.
pub type ReqBody = Full<Bytes>;
/// The request body the inner and per-session services receive.
pub type Body = RequestBody<ReqBody>;
/// The response body of the inner and per-session services.
pub type ResBody = UnsyncBoxBody<Bytes, Infallible>;
/// The response of the layer.
pub type Resp = Response<ResponseBody<ResBody>>;

/// The MCP endpoint path used by every test.
pub const PATH: &str = "/mcp";
/// `Mcp-Session-Id`.
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// The 400 body for a request without a session id (bytes as the official SDKs send them).
pub const MISSING_ID_BODY: &str = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Mcp-Session-Id header is required"},"id":null}"#;
/// The 404 body for an unknown session.
pub const NOT_FOUND_BODY: &str =
    r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#;
/// Bound on any single wait in a test, so that a bug makes a test fail instead of hang.
pub const WAIT: Duration = Duration::from_secs(5);

/// A JSON-RPC `initialize` request body as MCP clients send it.
pub fn initialize_body(rpc_id: u64) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": rpc_id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "integration-test", "version": "1.0.0"}
        }
    })
    .to_string()
}

/// A JSON-RPC request body for any method.
pub fn rpc_body(rpc_id: u64, method: &str) -> String {
    json!({"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": {}}).to_string()
}

fn builder(method: http::Method) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(PATH)
        .header(http::header::ACCEPT, "application/json, text/event-stream")
}

/// POST `initialize` without a session id.
pub fn initialize() -> Request<ReqBody> {
    post_raw(initialize_body(1))
}

/// POST with `body` and no session id.
pub fn post_raw(body: impl Into<Bytes>) -> Request<ReqBody> {
    builder(http::Method::POST)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

/// POST of a JSON-RPC request (`tools/list`) to session `id`.
pub fn post(id: &str) -> Request<ReqBody> {
    post_with(id, rpc_body(2, "tools/list"))
}

/// POST with `body` to session `id`.
pub fn post_with(id: &str, body: impl Into<Bytes>) -> Request<ReqBody> {
    builder(http::Method::POST)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(SESSION_HEADER, id)
        .body(Full::new(body.into()))
        .unwrap()
}

/// GET (the SSE stream of MCP) of session `id`.
pub fn get(id: &str) -> Request<ReqBody> {
    builder(http::Method::GET)
        .header(SESSION_HEADER, id)
        .body(Full::default())
        .unwrap()
}

/// GET of session `id` whose per-session [`Echo`] answers with a body that never ends.
pub fn get_stream(id: &str) -> Request<ReqBody> {
    let mut req = get(id);
    req.headers_mut()
        .insert(STREAM, http::HeaderValue::from_static("1"));
    req
}

/// DELETE of session `id`, with only the session header (MCP clients send no Accept).
pub fn delete(id: &str) -> Request<ReqBody> {
    Request::delete(PATH)
        .header(SESSION_HEADER, id)
        .body(Full::default())
        .unwrap()
}

/// Request header telling [`Echo`] to answer with this status.
pub const RESPOND_STATUS: HeaderName = HeaderName::from_static("x-respond-status");
/// Request header telling [`Echo`] to answer with this `grpc-status` header.
pub const RESPOND_GRPC_STATUS: HeaderName = HeaderName::from_static("x-respond-grpc-status");
/// Request header telling [`Echo`] to answer with a body that never ends.
pub const STREAM: HeaderName = HeaderName::from_static("x-stream");

/// Sends one request through a clone of `svc`.
pub async fn send<S>(svc: &S, req: Request<ReqBody>) -> Resp
where
    S: Service<Request<ReqBody>, Response = Resp, Error = Infallible> + Clone,
{
    tokio::time::timeout(WAIT, svc.clone().oneshot(req))
        .await
        .expect("the service answered in time")
        .unwrap()
}

/// Reads a whole body to a string (the body is dropped afterwards).
pub async fn body_string(resp: Resp) -> String {
    let bytes = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("the body ended in time")
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
}

/// Reads a whole body as JSON.
pub async fn body_json(resp: Resp) -> Value {
    let text = body_string(resp).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The session id a response carries, if any.
pub fn session_id_of(resp: &Resp) -> Option<String> {
    resp.headers()
        .get(SESSION_HEADER)
        .map(|v| v.to_str().expect("visible ASCII").to_owned())
}

/// Opens a session with `initialize`, checks the answer is 200 with an id, reads the body
/// (so the opening request is no longer in flight) and returns the id.
pub async fn open<S>(svc: &S) -> String
where
    S: Service<Request<ReqBody>, Response = Resp, Error = Infallible> + Clone,
{
    let resp = send(svc, initialize()).await;
    assert_eq!(resp.status(), StatusCode::OK, "initialize failed");
    let id = session_id_of(&resp).expect("initialize answer carries Mcp-Session-Id");
    body_string(resp).await;
    id
}

/// Sends `req` and returns the status, after reading the body.
pub async fn status_of<S>(svc: &S, req: Request<ReqBody>) -> StatusCode
where
    S: Service<Request<ReqBody>, Response = Resp, Error = Infallible> + Clone,
{
    let resp = send(svc, req).await;
    let status = resp.status();
    body_string(resp).await;
    status
}

/// Asserts `resp` is the default 404 of an unknown session, byte for byte.
pub async fn assert_not_found(resp: Resp) {
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    assert!(resp.headers().get(SESSION_HEADER).is_none());
    assert_eq!(body_string(resp).await, NOT_FOUND_BODY);
}

/// Asserts a response is a default rejection with this status and JSON-RPC code; returns
/// the response headers for further checks.
pub async fn assert_rejection(resp: Resp, status: StatusCode, code: i64) -> http::HeaderMap {
    assert_eq!(resp.status(), status);
    let headers = resp.headers().clone();
    assert_eq!(headers[http::header::CONTENT_TYPE], "application/json");
    assert!(
        headers.get(SESSION_HEADER).is_none(),
        "a rejection echoes no id"
    );
    let body = body_json(resp).await;
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert_eq!(body["id"], Value::Null, "{body}");
    headers
}

/// Counts per-session services: made, and still alive (dropped ones are not).
#[derive(Clone, Default)]
pub struct Live {
    made: Arc<AtomicUsize>,
    alive: Arc<AtomicUsize>,
}

impl Live {
    /// A token counted alive until dropped.
    pub fn token(&self) -> LiveToken {
        self.made.fetch_add(1, Ordering::SeqCst);
        self.alive.fetch_add(1, Ordering::SeqCst);
        LiveToken(Arc::clone(&self.alive))
    }

    /// Services made so far.
    pub fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    /// Services not dropped yet.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }
}

/// Counted alive by its [`Live`] until dropped.
pub struct LiveToken(Arc<AtomicUsize>);

impl Drop for LiveToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct EchoState {
    info: SessionInfo,
    requests: AtomicU64,
    _live: LiveToken,
}

/// A per-session service. It answers every request with JSON:
/// `{"session": <its own session id>, "seen": <the id in the request's SessionInfo>,
///   "n": <its request counter>, "method": .., "body": <the request body>}`.
///
/// With [`RESPOND_STATUS`] it answers that status, with [`RESPOND_GRPC_STATUS`] it adds
/// that `grpc-status` header; with [`STREAM`] it answers 200 with a
/// `text/event-stream` body that sends one event and then never ends.
#[derive(Clone)]
pub struct Echo {
    state: Arc<EchoState>,
}

impl Echo {
    /// A new per-session service for `info`, counted by `live`.
    pub fn new(info: SessionInfo, live: &Live) -> Self {
        Self {
            state: Arc::new(EchoState {
                info,
                requests: AtomicU64::new(0),
                _live: live.token(),
            }),
        }
    }
}

/// A boxed response future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

/// The first event of a streaming [`Echo`] body.
pub const FIRST_EVENT: &str = "event: message\ndata: {}\n\n";

/// A body that yields [`FIRST_EVENT`] and then stays open forever.
pub fn endless_body() -> ResBody {
    let first = futures_util::stream::once(async { Ok(Frame::data(Bytes::from(FIRST_EVENT))) });
    StreamBody::new(first.chain(futures_util::stream::pending())).boxed_unsync()
}

/// A complete body.
pub fn full(data: impl Into<Bytes>) -> ResBody {
    Full::new(data.into()).boxed_unsync()
}

impl Service<Request<Body>> for Echo {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let n = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
            if req.headers().contains_key(STREAM) {
                let mut resp = Response::new(endless_body());
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/event-stream"),
                );
                return Ok(resp);
            }
            let status = req
                .headers()
                .get(RESPOND_STATUS)
                .map(|v| v.to_str().unwrap().parse::<u16>().unwrap())
                .map_or(StatusCode::OK, |s| StatusCode::from_u16(s).unwrap());
            let grpc_status = req.headers().get(RESPOND_GRPC_STATUS).cloned();
            let seen = req
                .extensions()
                .get::<Session>()
                .map(|session| session.info().id().to_string());
            let principal = req
                .extensions()
                .get::<Session>()
                .and_then(|session| session.info().principal().map(|p| p.to_string()));
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let text = json!({
                "session": state.info.id().as_str(),
                "seen": seen,
                "principal": principal,
                "n": n,
                "method": parts.method.as_str(),
                "body": String::from_utf8_lossy(&body),
            });
            let mut resp = Response::new(full(text.to_string()));
            *resp.status_mut() = status;
            if let Some(grpc_status) = grpc_status {
                resp.headers_mut().insert("grpc-status", grpc_status);
            }
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        })
    }
}

/// The inner service: answers sessionless requests with
/// `{"inner": true, "session_header": <the session header, if any>, "body": ..}`.
#[derive(Clone, Default)]
pub struct Inner;

impl Service<Request<Body>> for Inner {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(async move {
            let header = req
                .headers()
                .get(SESSION_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let has_info = req.extensions().get::<Session>().is_some();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let text = json!({
                "inner": true,
                "session_header": header,
                "has_session_info": has_info,
                "body": String::from_utf8_lossy(&body),
            });
            Ok(Response::new(full(text.to_string())))
        })
    }
}

/// The future of [`echo_factory`].
pub type EchoFuture = std::future::Ready<Result<(Echo, ()), Infallible>>;

/// A session factory building one [`Echo`] per session, counted by its [`Live`].
#[derive(Clone)]
pub struct EchoFactory {
    live: Live,
}

impl<S> SessionFactory<S> for EchoFactory {
    type Service = Echo;
    type State = ();
    type Error = Infallible;
    type Future = EchoFuture;

    fn make_session(&self, info: SessionInfo, _inner: S) -> EchoFuture {
        std::future::ready(Ok((Echo::new(info, &self.live), ())))
    }
}

/// A session factory building one [`Echo`] per session, counted by `live`.
pub fn echo_factory(live: &Live) -> EchoFactory {
    EchoFactory { live: live.clone() }
}

/// The usual test setup, destructured as `let Fixture(live, closed, sessions, app) = ..`:
/// the [`Live`] counter of an MCP layer over [`echo_factory`], the [`Closed`] recorder of its
/// close hook, its session table and the service it builds over [`Inner`].
pub struct Fixture(
    pub Live,
    pub Closed,
    pub Sessions,
    pub SessionService<Inner, EchoFactory>,
);

impl Fixture {
    /// `SessionLayer::mcp(echo_factory(&live)).build()`, then `configure`, then
    /// `on_close(closed.hook())` (which replaces any hook `configure` set).
    pub fn mcp(
        configure: impl FnOnce(SessionLayerBuilder<EchoFactory>) -> SessionLayerBuilder<EchoFactory>,
    ) -> Self {
        Self::build(configure, true)
    }

    /// As [`mcp`](Self::mcp) without a close hook: `closed` stays empty.
    pub fn mcp_unhooked(
        configure: impl FnOnce(SessionLayerBuilder<EchoFactory>) -> SessionLayerBuilder<EchoFactory>,
    ) -> Self {
        Self::build(configure, false)
    }

    fn build(
        configure: impl FnOnce(SessionLayerBuilder<EchoFactory>) -> SessionLayerBuilder<EchoFactory>,
        hooked: bool,
    ) -> Self {
        let live = Live::default();
        let closed = Closed::default();
        let mut layer = configure(SessionLayer::mcp(echo_factory(&live)));
        if hooked {
            layer = layer.on_close(closed.hook());
        }
        let layer = layer.build();
        let sessions = layer.sessions();
        let app = layer.layer(Inner);
        Self(live, closed, sessions, app)
    }
}

/// Records every call of the close hook.
#[derive(Clone, Default)]
pub struct Closed(Arc<Mutex<Vec<(String, CloseReason)>>>);

impl Closed {
    /// A hook for [`SessionLayerBuilder::on_close`](tower_mcp_session::SessionLayerBuilder::on_close).
    pub fn hook(&self) -> impl Fn(&SessionInfo, CloseReason) + Send + Sync + 'static {
        let log = Arc::clone(&self.0);
        move |info, reason| log.lock().unwrap().push((info.id().to_string(), reason))
    }

    /// Every close so far, in order.
    pub fn all(&self) -> Vec<(String, CloseReason)> {
        self.0.lock().unwrap().clone()
    }

    /// The reasons `id` was closed with (more than one would be a bug).
    pub fn reasons_of(&self, id: &str) -> Vec<CloseReason> {
        self.all()
            .into_iter()
            .filter(|(closed, _)| closed == id)
            .map(|(_, reason)| reason)
            .collect()
    }

    /// Number of closes so far.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Reads the next data frame of a body, waiting at most [`WAIT`].
pub async fn next_data<B>(body: &mut B) -> Option<Bytes>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    loop {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("a frame or the end of the body in time")?;
        if let Ok(data) = frame.expect("no body error").into_data() {
            return Some(data);
        }
    }
}

/// Whether the body ends within `bound` (a bound so a test cannot hang, not a speed claim).
pub async fn ends_within<B>(body: &mut B, bound: Duration) -> bool
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    loop {
        match tokio::time::timeout(bound, body.frame()).await {
            Err(_) => return false,
            Ok(None) => return true,
            Ok(Some(frame)) => {
                frame.expect("no body error");
            }
        }
    }
}

/// The header the tests' principal extractor reads (a stand-in for an authentication layer).
pub const USER: HeaderName = HeaderName::from_static("x-user");

/// A principal extractor for [`SessionLayer::principal`]: the [`USER`] header, if any.
pub fn user_of(parts: &http::request::Parts) -> Option<tower_mcp_session::Principal> {
    let user = parts.headers.get(USER)?.to_str().ok()?;
    Some(tower_mcp_session::Principal::from(user))
}

/// `req` sent as `user` (with the [`USER`] header).
pub fn as_user(user: &str, mut req: Request<ReqBody>) -> Request<ReqBody> {
    req.headers_mut()
        .insert(USER, http::HeaderValue::from_str(user).unwrap());
    req
}
