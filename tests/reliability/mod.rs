//! Support for the reliability tests (`hostile_input`, `model`, `stress`): a session layer
//! whose per-session services echo their own id, count themselves alive, and report any
//! request that reaches the wrong session.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tower::{Service, ServiceExt};
use tower_mcp_session::body::RequestBody;
use tower_mcp_session::{Session, SessionFactory, SessionId, SessionInfo, SessionService};

/// The error of the bodies in these tests: a concrete type, because a boxed `dyn Error`
/// trips rustc's "implementation is not general enough" in spawned tasks.
pub type BodyError = std::io::Error;
/// The body of every request and response in these tests.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;
/// A request as the inner and per-session services see it.
pub type Req = Request<RequestBody<Body>>;
/// The layered service under test.
pub type Svc = SessionService<Inner, EchoFactory>;

/// A JSON-RPC `initialize` request, as MCP clients send it.
pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"reliability","version":"0"}}}"#;
/// A JSON-RPC request for an open session.
pub const PING: &str = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
/// An `initialize` the per-session service answers 400 (no session may be stored).
pub const INIT_REJECTED: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"reject":true}}"#;
/// A request the per-session service answers after a short sleep.
pub const SLOW: &str = r#"{"jsonrpc":"2.0","id":3,"method":"slow"}"#;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Counters shared by all per-session services of one layer.
#[derive(Default, Debug)]
pub struct Tracker {
    /// Per-session services built by the factory.
    pub created: AtomicUsize,
    /// Per-session services (and all their clones and response bodies) dropped.
    pub dropped: AtomicUsize,
    /// Requests that reached a session's service carrying another session's id.
    pub misrouted: AtomicUsize,
    /// Requests served by per-session services.
    pub served: AtomicUsize,
    /// Requests served by the inner (sessionless) service.
    pub sessionless: AtomicUsize,
}

impl Tracker {
    /// Per-session services alive: built and not yet dropped.
    pub fn live(&self) -> usize {
        self.created.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }

    pub fn misrouted(&self) -> usize {
        self.misrouted.load(Ordering::SeqCst)
    }
}

/// Held by a per-session service, its clones and its response bodies; the last one dropped
/// counts the service as dropped.
struct Token(Arc<Tracker>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// The inner service: answers sessionless requests with `inner`.
#[derive(Clone)]
pub struct Inner {
    tracker: Arc<Tracker>,
}

impl Service<Req> for Inner {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if req.extensions().get::<Session>().is_some() {
            self.tracker.misrouted.fetch_add(1, Ordering::SeqCst);
        }
        self.tracker.sessionless.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(full("inner"))))
    }
}

/// Builds [`Echo`] services.
#[derive(Clone)]
pub struct EchoFactory {
    tracker: Arc<Tracker>,
    /// Chunks a GET stream sends at most, one per millisecond.
    stream_chunks: usize,
}

impl<S> SessionFactory<S> for EchoFactory {
    type Service = Echo;
    type State = ();
    type Error = Infallible;
    type Future = std::future::Ready<Result<(Echo, ()), Infallible>>;

    fn make_session(&self, info: SessionInfo, _inner: S) -> Self::Future {
        self.tracker.created.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok((
            Echo {
                id: info.id().clone(),
                token: Arc::new(Token(Arc::clone(&self.tracker))),
                stream_chunks: self.stream_chunks,
            },
            (),
        )))
    }
}

/// A per-session service. POST: answers `<own id>\n<request body>` (an `initialize` whose
/// params hold `"reject"` gets 400; a `slow` request waits 2 ms first). GET: streams
/// `<own id>\n` chunks, one per millisecond, until the session closes (at most
/// `stream_chunks`). Any request carrying another session's id, or another session's
/// `Session`, is counted in [`Tracker::misrouted`].
#[derive(Clone)]
pub struct Echo {
    id: SessionId,
    token: Arc<Token>,
    stream_chunks: usize,
}

impl Service<Req> for Echo {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let tracker = &self.token.0;
        tracker.served.fetch_add(1, Ordering::SeqCst);
        let info_ok = req
            .extensions()
            .get::<Session>()
            .is_some_and(|session| session.info().id() == &self.id);
        let header_ok = req
            .headers()
            .get_all("mcp-session-id")
            .iter()
            .all(|value| value.as_bytes() == self.id.as_str().as_bytes());
        if !info_ok || !header_ok {
            tracker.misrouted.fetch_add(1, Ordering::SeqCst);
        }
        let id = self.id.clone();
        let token = Arc::clone(&self.token);
        let chunks = self.stream_chunks;
        Box::pin(async move {
            if req.method() == http::Method::GET {
                let line = Bytes::from(format!("{id}\n"));
                // The stream holds the token: a stream that outlives its session shows up
                // as a service that was never dropped.
                let stream = futures_util::stream::unfold(0usize, move |sent| {
                    let line = line.clone();
                    let _alive = &token;
                    async move {
                        if sent >= chunks {
                            return None;
                        }
                        if sent > 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Some((Ok::<_, BodyError>(http_body::Frame::data(line)), sent + 1))
                    }
                });
                return Ok(Response::new(StreamBody::new(stream).boxed_unsync()));
            }
            let body = match req.into_body().collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            if body.as_ref() == SLOW.as_bytes() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let mut answer = format!("{id}\n").into_bytes();
            answer.extend_from_slice(&body);
            let mut response = Response::new(full(answer));
            if body.as_ref() == INIT_REJECTED.as_bytes() {
                *response.status_mut() = StatusCode::BAD_REQUEST;
            }
            drop(token);
            Ok(response)
        })
    }
}

/// The layered service and what to observe it with.
pub struct Harness {
    pub svc: Svc,
    pub sessions: tower_mcp_session::Sessions,
    pub tracker: Arc<Tracker>,
}

/// `SessionLayer::mcp` over [`Inner`] with [`EchoFactory`], configured by `configure`.
pub fn harness(
    configure: impl FnOnce(
        tower_mcp_session::SessionLayerBuilder<EchoFactory>,
    ) -> tower_mcp_session::SessionLayerBuilder<EchoFactory>,
) -> Harness {
    harness_with(10_000, configure)
}

/// Like [`harness`], with GET streams of at most `stream_chunks` chunks.
pub fn harness_with(
    stream_chunks: usize,
    configure: impl FnOnce(
        tower_mcp_session::SessionLayerBuilder<EchoFactory>,
    ) -> tower_mcp_session::SessionLayerBuilder<EchoFactory>,
) -> Harness {
    use tower::Layer;
    let tracker = Arc::new(Tracker::default());
    let factory = EchoFactory {
        tracker: Arc::clone(&tracker),
        stream_chunks,
    };
    let layer = configure(tower_mcp_session::SessionLayer::mcp(factory)).build();
    let sessions = layer.sessions();
    let svc = layer.layer(Inner {
        tracker: Arc::clone(&tracker),
    });
    Harness {
        svc,
        sessions,
        tracker,
    }
}

/// A response with its body read to the end.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The session id the response assigned, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.headers
            .get("mcp-session-id")
            .map(|v| v.to_str().expect("ids are visible ASCII"))
    }

    /// The first line of an echo body: the id of the session that served the request.
    pub fn served_by(&self) -> Option<&str> {
        let text = std::str::from_utf8(&self.body).ok()?;
        text.split('\n').next().filter(|line| !line.is_empty())
    }

    /// The JSON-RPC error code of a layer rejection; panics (with the answer) if the body is
    /// not a JSON-RPC 2.0 error with `"id": null` and a message, or the content type is not
    /// JSON.
    pub fn json_rpc_code(&self) -> i64 {
        assert_eq!(
            self.headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/json"[..]),
            "rejection without a JSON content type: {self:?}"
        );
        let value: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("rejection body is not JSON ({e}): {self:?}"));
        assert_eq!(value["jsonrpc"], "2.0", "{self:?}");
        assert_eq!(value["id"], serde_json::Value::Null, "{self:?}");
        assert!(value["error"]["message"].is_string(), "{self:?}");
        value["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no error code: {self:?}"))
    }
}

/// The response type of the layered service.
pub type LayerResponse = Response<tower_mcp_session::body::ResponseBody<Body>>;

/// Calls a clone of `svc` with `req`. Boxed so that futures holding it stay `Send` for any
/// lifetime (spawned tasks otherwise hit rustc's "implementation is not general enough").
pub fn call(svc: &Svc, req: Request<Body>) -> Pin<Box<dyn Future<Output = LayerResponse> + Send>> {
    let future = svc.clone().oneshot(req);
    Box::pin(async move { future.await.expect("services are infallible") })
}

/// Sends `req` through a clone of `svc` and reads the whole response body.
pub fn send(svc: &Svc, req: Request<Body>) -> Pin<Box<dyn Future<Output = Answer> + Send>> {
    let response = call(svc, req);
    Box::pin(async move {
        let (parts, body) = response.await.into_parts();
        let body = body
            .collect()
            .await
            .expect("bodies in these tests do not fail")
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
}

/// POST `initialize` without a session id.
pub fn initialize() -> Request<Body> {
    Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(full(INIT))
        .unwrap()
}

/// POST `body` with session id `id`.
pub fn post(id: &str, body: &'static str) -> Request<Body> {
    Request::post("/mcp")
        .header("mcp-session-id", id)
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap()
}

/// DELETE with session id `id`.
pub fn delete(id: &str) -> Request<Body> {
    Request::delete("/mcp")
        .header("mcp-session-id", id)
        .body(empty())
        .unwrap()
}

/// GET (a server-to-client stream) with session id `id`.
pub fn get(id: &str) -> Request<Body> {
    Request::get("/mcp")
        .header("mcp-session-id", id)
        .header("accept", "text/event-stream")
        .body(empty())
        .unwrap()
}

/// Opens a session and returns its id; panics unless the layer answers 200 with an id.
pub async fn open(svc: &Svc) -> String {
    let answer = send(svc, initialize()).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let id = answer
        .session_id()
        .expect("a 200 to initialize carries the id")
        .to_owned();
    assert_eq!(answer.served_by(), Some(id.as_str()), "{answer:?}");
    id
}
