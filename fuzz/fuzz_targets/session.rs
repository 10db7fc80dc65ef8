//! Fuzzes `SessionLayer::mcp` with sequences of (method, headers, body) requests and table
//! operations, checking after each request that the layer's answer is one it defines.
//!
//! Each input builds a fresh layer (peek limit 256 bytes, at most 4 sessions) whose
//! per-session services echo their own id, and runs up to 16 steps on it. No runtime is
//! needed: every body is ready at once, so each call is driven with `now_or_never`, and a
//! call that does not finish is itself a finding (the layer waited on nothing).
//!
//! Oracle, per response:
//! - the status is one of 200, 204, 400, 404, 405, 413, 503 (never 500: the factory never
//!   fails and the generator is the default one);
//! - every status other than 200 comes from the layer and carries a JSON-RPC 2.0 error body
//!   whose code matches the status (400: -32000/-32600/-32700; 404: -32001; others -32000),
//!   405 carries `Allow`, 503 for a full table carries `Retry-After`;
//! - a 200 comes from the inner service (`inner`) or from a session's service, and then
//!   from the session the request named (or the one it just opened); a request with a live
//!   id and nothing else wrong with it reaches exactly that session;
//! - `Mcp-Session-Id` is set on a response only when it opened a session, which is then
//!   live; 204 only answers DELETE, after which the id is gone;
//! - the table never holds more than 4 sessions, and after a final shutdown it is empty and
//!   every per-session service has been dropped.
#![no_main]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use arbitrary::Arbitrary;
use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, Service, ServiceExt};
use tower_mcp_session::body::RequestBody;
use tower_mcp_session::{
    Session, SessionFactory, SessionInfo, SessionLayer, SessionService, Sessions,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;
type Req = Request<RequestBody<Body>>;

const PEEK_LIMIT: usize = 256;
const MAX_SESSIONS: usize = 4;
const MAX_STEPS: usize = 16;
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Live per-session services (clones and bodies included).
static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Token;

impl Token {
    fn new() -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Token
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Inner;

impl Service<Req> for Inner {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        assert!(req.extensions().get::<Session>().is_none());
        std::future::ready(Ok(Response::new(full("inner"))))
    }
}

#[derive(Clone)]
struct Factory;

impl<S> SessionFactory<S> for Factory {
    type Service = Echo;
    type State = ();
    type Error = Infallible;
    type Future = std::future::Ready<Result<(Echo, ()), Infallible>>;

    fn make_session(&self, info: SessionInfo, _: S) -> Self::Future {
        std::future::ready(Ok((
            Echo {
                info,
                _token: Arc::new(Token::new()),
            },
            (),
        )))
    }
}

/// Answers `session <id>`; checks the request names its session.
#[derive(Clone)]
struct Echo {
    info: SessionInfo,
    _token: Arc<Token>,
}

impl Service<Req> for Echo {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        assert_eq!(
            req.extensions().get::<Session>().map(Session::info),
            Some(&self.info)
        );
        for value in req.headers().get_all("mcp-session-id") {
            assert_eq!(
                value.as_bytes(),
                self.info.id().as_str().as_bytes(),
                "misrouted"
            );
        }
        std::future::ready(Ok(Response::new(full(format!(
            "session {}",
            self.info.id()
        )))))
    }
}

#[derive(Arbitrary, Debug)]
enum MethodChoice {
    Get,
    Post,
    Delete,
    Put,
    Head,
    Options,
    Patch,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum IdChoice {
    None,
    /// The id of the n-th session opened in this input (live or not).
    Known(u8),
    /// A known id with the case of one letter flipped.
    Flipped(u8, u8),
    /// A known id with bytes appended.
    Extended(u8, Vec<u8>),
    /// A known id cut short.
    Truncated(u8, u8),
    /// A known id twice.
    Repeated(u8),
    /// A known id and raw bytes, both as session headers.
    Pair(u8, Vec<u8>),
    Raw(Vec<u8>),
    /// A long run of one byte.
    Long(u16, u8),
}

#[derive(Arbitrary, Debug)]
enum VersionChoice {
    Old,
    Modern,
    Raw(Vec<u8>),
    Repeated,
}

#[derive(Arbitrary, Debug)]
enum BodyChoice {
    Empty,
    Init,
    /// `initialize` followed by `n` spaces (crosses the peek limit for large `n`).
    InitPadded(u16),
    /// `initialize` inside a batch.
    Batch,
    Raw(Vec<u8>),
    /// Several frames, possibly with trailers.
    Chunks(Vec<Vec<u8>>, bool),
    /// Some bytes, then a body error.
    Failing(Vec<u8>),
    /// `[` nested `n` times.
    Deep(u16),
}

#[derive(Arbitrary, Debug)]
enum Step {
    Request {
        method: MethodChoice,
        id: IdChoice,
        version: Option<VersionChoice>,
        content_length: Option<u32>,
        headers: Vec<(u8, Vec<u8>)>,
        body: BodyChoice,
    },
    Close(u8),
    Sweep,
    Shutdown,
}

/// A body whose frames are all ready; it may end in an error or trailers.
struct Frames {
    frames: std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.frames.next())
    }
}

fn known(ids: &[String], n: u8) -> Option<&String> {
    (!ids.is_empty()).then(|| &ids[n as usize % ids.len()])
}

const HEADER_NAMES: [&str; 6] = [
    "content-type",
    "accept",
    "content-length",
    "mcp-session-id",
    "mcp-protocol-version",
    "x-other",
];

/// What this step's request was built with, for the oracle.
struct Sent {
    method: Method,
    /// The single, unaltered known id the request names, if that is all it names.
    clean_id: Option<String>,
    has_id_header: bool,
    version_header: bool,
}

fn build(
    ids: &[String],
    method: MethodChoice,
    id: IdChoice,
    version: Option<VersionChoice>,
    content_length: Option<u32>,
    headers: Vec<(u8, Vec<u8>)>,
    body: BodyChoice,
) -> Option<(Request<Body>, Sent)> {
    let method = match method {
        MethodChoice::Get => Method::GET,
        MethodChoice::Post => Method::POST,
        MethodChoice::Delete => Method::DELETE,
        MethodChoice::Put => Method::PUT,
        MethodChoice::Head => Method::HEAD,
        MethodChoice::Options => Method::OPTIONS,
        MethodChoice::Patch => Method::PATCH,
        MethodChoice::Raw(bytes) => Method::from_bytes(&bytes).ok()?,
    };
    let body = match body {
        BodyChoice::Empty => full(Bytes::new()),
        BodyChoice::Init => full(INIT),
        BodyChoice::InitPadded(n) => full(format!("{INIT}{}", " ".repeat(n as usize % 1024))),
        BodyChoice::Batch => full(format!("[{INIT}]")),
        BodyChoice::Raw(bytes) => full(bytes),
        BodyChoice::Chunks(chunks, trailers) => {
            let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
                .into_iter()
                .take(64)
                .map(|c| Ok(Frame::data(Bytes::from(c))))
                .collect();
            if trailers {
                frames.push(Ok(Frame::trailers(http::HeaderMap::new())));
            }
            Frames {
                frames: frames.into_iter(),
            }
            .boxed_unsync()
        }
        BodyChoice::Failing(bytes) => Frames {
            frames: vec![Ok(Frame::data(Bytes::from(bytes))), Err("reset".into())].into_iter(),
        }
        .boxed_unsync(),
        BodyChoice::Deep(n) => full("[".repeat(n as usize % 20_000)),
    };
    let mut request = Request::builder()
        .method(method.clone())
        .uri("/mcp")
        .body(body)
        .ok()?;
    let h = request.headers_mut();
    for (name, value) in headers.into_iter().take(8) {
        let name = HeaderName::from_static(HEADER_NAMES[name as usize % HEADER_NAMES.len()]);
        h.append(name, HeaderValue::from_bytes(&value).ok()?);
    }
    if let Some(len) = content_length {
        h.insert(http::header::CONTENT_LENGTH, len.into());
    }
    let sid = HeaderName::from_static("mcp-session-id");
    let value = |bytes: &[u8]| HeaderValue::from_bytes(bytes).ok();
    match id {
        IdChoice::None => {}
        IdChoice::Known(n) => {
            let id = known(ids, n)?;
            h.append(sid.clone(), value(id.as_bytes())?);
        }
        IdChoice::Flipped(n, at) => {
            let mut bytes = known(ids, n)?.clone().into_bytes();
            let at = at as usize % bytes.len();
            bytes[at] = if bytes[at].is_ascii_lowercase() {
                bytes[at].to_ascii_uppercase()
            } else {
                bytes[at].to_ascii_lowercase()
            };
            h.append(sid.clone(), value(&bytes)?);
        }
        IdChoice::Extended(n, extra) => {
            let mut bytes = known(ids, n)?.clone().into_bytes();
            bytes.extend_from_slice(&extra);
            h.append(sid.clone(), value(&bytes)?);
        }
        IdChoice::Truncated(n, len) => {
            let id = known(ids, n)?;
            h.append(
                sid.clone(),
                value(&id.as_bytes()[..len as usize % id.len()])?,
            );
        }
        IdChoice::Repeated(n) => {
            let id = known(ids, n)?;
            h.append(sid.clone(), value(id.as_bytes())?);
            h.append(sid.clone(), value(id.as_bytes())?);
        }
        IdChoice::Pair(n, raw) => {
            let id = known(ids, n)?;
            h.append(sid.clone(), value(id.as_bytes())?);
            h.append(sid.clone(), value(&raw)?);
        }
        IdChoice::Raw(bytes) => {
            h.append(sid.clone(), value(&bytes)?);
        }
        IdChoice::Long(len, byte) => {
            h.append(sid.clone(), value(&vec![byte; len as usize % 70_000])?);
        }
    }
    let version_name = HeaderName::from_static("mcp-protocol-version");
    match version {
        None => {}
        Some(VersionChoice::Old) => {
            h.append(version_name.clone(), HeaderValue::from_static("2025-11-25"));
        }
        Some(VersionChoice::Modern) => {
            h.append(version_name.clone(), HeaderValue::from_static("2026-07-28"));
        }
        Some(VersionChoice::Raw(bytes)) => {
            h.append(version_name.clone(), value(&bytes)?);
        }
        Some(VersionChoice::Repeated) => {
            h.append(version_name.clone(), HeaderValue::from_static("2025-11-25"));
            h.append(version_name.clone(), HeaderValue::from_static("2025-11-25"));
        }
    }
    let has_id_header = h.contains_key(&sid);
    // Whatever the choice, a request whose single session header equals a known id names it.
    let mut values = h.get_all(&sid).iter();
    let clean_id = match (values.next(), values.next()) {
        (Some(value), None) => ids
            .iter()
            .find(|id| id.as_bytes() == value.as_bytes())
            .cloned(),
        _ => None,
    };
    let version_header = h.contains_key(&version_name);
    let sent = Sent {
        method,
        clean_id,
        has_id_header,
        version_header,
    };
    Some((request, sent))
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

fn call(svc: &SessionService<Inner, Factory>, request: Request<Body>) -> Answer {
    let response = svc
        .clone()
        .oneshot(request)
        .now_or_never()
        .expect("the layer waited although every body was ready")
        .expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .now_or_never()
        .expect("response bodies are ready")
        .expect("response bodies do not fail")
        .to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn check_rejection(answer: &Answer) {
    let value: serde_json::Value =
        serde_json::from_slice(&answer.body).expect("a rejection body is JSON");
    assert_eq!(value["jsonrpc"], "2.0");
    assert!(value["id"].is_null());
    assert!(value["error"]["message"].is_string());
    let code = value["error"]["code"]
        .as_i64()
        .expect("a JSON-RPC error code");
    let allowed: &[i64] = match answer.status {
        StatusCode::BAD_REQUEST => &[-32000, -32600, -32700],
        StatusCode::NOT_FOUND => &[-32001],
        StatusCode::METHOD_NOT_ALLOWED => {
            assert_eq!(answer.headers[http::header::ALLOW], "GET, POST, DELETE");
            &[-32000]
        }
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::SERVICE_UNAVAILABLE => &[-32000],
        other => panic!("undefined status {other}"),
    };
    assert!(
        allowed.contains(&code),
        "code {code} with {}",
        answer.status
    );
    assert_eq!(
        answer.headers[http::header::CONTENT_TYPE],
        "application/json"
    );
}

fn run(steps: Vec<Step>) {
    let layer = SessionLayer::mcp(Factory)
        .peek_limit(PEEK_LIMIT)
        .max_sessions(MAX_SESSIONS).build();
    let sessions: Sessions = layer.sessions();
    let svc = layer.layer(Inner);
    let mut ids: Vec<String> = Vec::new();
    let mut shut_down = false;

    for step in steps.into_iter().take(MAX_STEPS) {
        let (method, id, version, content_length, headers, body) = match step {
            Step::Close(n) => {
                if let Some(id) = known(&ids, n) {
                    sessions.close(id);
                    assert!(!sessions.contains(id));
                }
                continue;
            }
            Step::Sweep => {
                sessions.sweep();
                continue;
            }
            Step::Shutdown => {
                sessions.shutdown();
                shut_down = true;
                assert!(sessions.is_empty());
                continue;
            }
            Step::Request {
                method,
                id,
                version,
                content_length,
                headers,
                body,
            } => (method, id, version, content_length, headers, body),
        };
        let Some((request, sent)) = build(&ids, method, id, version, content_length, headers, body)
        else {
            continue;
        };
        let live_before = sent.clean_id.as_ref().map(|id| sessions.contains(id));
        let answer = call(&svc, request);
        assert!(sessions.len() <= MAX_SESSIONS);

        let opened = answer
            .headers
            .get("mcp-session-id")
            .map(|v| v.to_str().expect("a minted id is visible ASCII").to_owned());
        match answer.status {
            StatusCode::OK => {
                let text = std::str::from_utf8(&answer.body).expect("echo bodies are text");
                if text == "inner" {
                    assert!(opened.is_none());
                } else {
                    let served = text.strip_prefix("session ").expect("an echo body");
                    match &opened {
                        Some(new) => {
                            assert_eq!(served, new);
                            assert!(
                                !sent.has_id_header,
                                "opened a session for a request with an id"
                            );
                            assert!(!ids.contains(new), "minted a known id again");
                            assert!(sessions.contains(new));
                            assert!(!shut_down);
                            ids.push(new.clone());
                        }
                        None => {
                            assert_eq!(Some(served), sent.clean_id.as_deref(), "misrouted");
                        }
                    }
                }
            }
            StatusCode::NO_CONTENT => {
                assert_eq!(sent.method, Method::DELETE);
                assert!(answer.body.is_empty());
                let id = sent
                    .clean_id
                    .as_ref()
                    .expect("204 for a request naming one known id");
                assert_eq!(live_before, Some(true));
                assert!(!sessions.contains(id), "DELETE left the session open");
            }
            _ => {
                assert!(opened.is_none(), "a rejection carries a session id");
                check_rejection(&answer);
                if answer.status == StatusCode::SERVICE_UNAVAILABLE && !shut_down {
                    assert!(answer.headers.contains_key(http::header::RETRY_AFTER));
                }
            }
        }
        // A request naming exactly one live session, with nothing else odd about it, is that
        // session's: 200 from it, or 204 for DELETE.
        if live_before == Some(true)
            && !sent.version_header
            && [Method::GET, Method::POST, Method::DELETE].contains(&sent.method)
        {
            let expected = if sent.method == Method::DELETE {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::OK
            };
            assert_eq!(
                answer.status, expected,
                "a live session's request was not served"
            );
        }
    }
    sessions.shutdown();
    assert!(sessions.is_empty());
    drop(svc);
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        0,
        "a per-session service outlived shutdown"
    );
}

fuzz_target!(|steps: Vec<Step>| run(steps));
