//! The DNS-rebinding guard in front of the session layer, under the requests a browser-based
//! attack would send: foreign `Host`, foreign `Origin`, `Origin: null`, an allowed origin on
//! another port, upper-case names, IPv6 literals, a name that resolves to loopback but is not
//! allowed, absolute-form targets, a repeated `Host`. Each is sent as an `initialize`, a
//! request of a live session, a GET stream, a DELETE and a sessionless 2026-07-28 request; a
//! refused one never opens, touches or closes a session, nor reaches the inner service.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_mcp_session::guard::{OriginGuardLayer, Refused};
use tower_mcp_session::{SessionLayer, Sessions};

use common::*;

const FORBIDDEN: &str = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Forbidden: Host or Origin not allowed"},"id":null}"#;
const REPEATED: &str = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: more than one Host header"},"id":null}"#;

/// The inner service, counting the requests that reach it (sessionless ones).
#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

impl Service<Request<Body>> for Counted {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(full("inner"))))
    }
}

struct Guarded<S> {
    app: S,
    sessions: Sessions,
    inner_calls: Arc<AtomicUsize>,
}

fn guarded(
    guard: OriginGuardLayer,
) -> Guarded<
    impl Service<
        Request<ReqBody>,
        Response = Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug>>,
        Error = Infallible,
    > + Clone,
> {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live)).build();
    let sessions = layer.sessions();
    let inner = Counted::default();
    let inner_calls = Arc::clone(&inner.0);
    let app = ServiceBuilder::new()
        .layer(guard)
        .layer(layer)
        .service(inner);
    Guarded {
        app,
        sessions,
        inner_calls,
    }
}

fn guard() -> OriginGuardLayer {
    OriginGuardLayer::loopback()
        .allow_host("mcp.example.com")
        .allow_origin("https://app.example.com")
}

async fn answer<S, B>(app: &S, req: Request<ReqBody>) -> (StatusCode, http::HeaderMap, String)
where
    S: Service<Request<ReqBody>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes, Error: std::fmt::Debug>,
{
    let resp = tokio::time::timeout(WAIT, app.clone().oneshot(req))
        .await
        .expect("answered in time")
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("a body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// How a test request names its host and origin.
#[derive(Clone, Copy, Debug)]
struct Target {
    hosts: &'static [&'static str],
    uri: &'static str,
    origin: Option<&'static str>,
}

const fn t(
    hosts: &'static [&'static str],
    uri: &'static str,
    origin: Option<&'static str>,
) -> Target {
    Target { hosts, uri, origin }
}

fn aimed(mut req: Request<ReqBody>, target: Target) -> Request<ReqBody> {
    *req.uri_mut() = target.uri.parse().unwrap();
    for host in target.hosts {
        req.headers_mut()
            .append(header::HOST, HeaderValue::from_static(host));
    }
    if let Some(origin) = target.origin {
        req.headers_mut()
            .insert(header::ORIGIN, HeaderValue::from_static(origin));
    }
    req
}

/// Requests that pass: loopback and the allowed host, any case and port, IPv6 with and
/// without port, allowed origins (on allowed hosts, any port; listed ones exactly).
const ALLOWED: [Target; 10] = [
    t(&["localhost:3000"], "/mcp", None),
    t(&["127.0.0.1"], "/mcp", Some("http://127.0.0.1:5173")),
    t(&["[::1]"], "/mcp", None),
    t(&["[::1]:8080"], "/mcp", Some("http://[::1]:8080")),
    t(&["LOCALHOST:3000"], "/mcp", Some("HTTP://LocalHost:9999")),
    t(
        &["mcp.example.com"],
        "/mcp",
        Some("https://mcp.example.com"),
    ),
    t(&["MCP.Example.COM:443"], "/mcp", None),
    t(&["localhost"], "/mcp", Some("https://app.example.com")),
    t(&["localhost"], "/mcp", Some("https://APP.example.com/")),
    t(&["localhost"], "http://localhost:3000/mcp", None),
];

/// Requests refused with 403.
const FOREIGN: [Target; 12] = [
    t(&["evil.example.com"], "/mcp", None),
    t(&["localhost"], "/mcp", Some("http://evil.example.com")),
    t(&["localhost"], "/mcp", Some("null")),
    // An allowed origin on another port is another origin.
    t(&["localhost"], "/mcp", Some("https://app.example.com:8443")),
    t(&["localhost"], "/mcp", Some("http://app.example.com")),
    // Resolves to 127.0.0.1 (a DNS-rebinding name), but is not an allowed name.
    t(&["localtest.me"], "/mcp", None),
    t(&["localhost.evil.example.com"], "/mcp", None),
    t(&["127.0.0.1.nip.io:3000"], "/mcp", None),
    // Absolute-form target naming another host than `Host`.
    t(&["localhost"], "http://evil.example.com/mcp", None),
    t(&[], "http://user@evil.example.com:80/mcp", None),
    // Neither `Host` nor an authority.
    t(&[], "/mcp", None),
    t(&["[::2]:3000"], "/mcp", Some("http://[::1]")),
];

/// The kinds of request each target is sent as.
fn requests(id: &str) -> Vec<(&'static str, Request<ReqBody>)> {
    let mut sessionless = post_raw(rpc_body(9, "tools/list"));
    sessionless.headers_mut().insert(
        "mcp-protocol-version",
        HeaderValue::from_static("2026-07-28"),
    );
    vec![
        ("initialize", initialize()),
        ("session request", post(id)),
        ("GET stream", get_stream(id)),
        ("DELETE", delete(id)),
        ("2026-07-28", sessionless),
    ]
}

/// The request counter of the session, read with an allowed request (which adds one).
async fn served<S, B>(app: &S, id: &str) -> u64
where
    S: Service<Request<ReqBody>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes, Error: std::fmt::Debug>,
{
    let (status, _, body) = answer(app, aimed(post(id), ALLOWED[0])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let value: Value = serde_json::from_str(&body).unwrap();
    value["n"].as_u64().expect("a request counter")
}

#[tokio::test]
async fn foreign_hosts_and_origins_get_403_and_touch_nothing() {
    let g = guarded(guard());
    let (status, headers, _) = answer(&g.app, aimed(initialize(), ALLOWED[0])).await;
    assert_eq!(status, StatusCode::OK);
    let id = headers[SESSION_HEADER].to_str().unwrap().to_owned();
    let mut count = served(&g.app, &id).await;
    for target in FOREIGN {
        for (what, req) in requests(&id) {
            let (status, headers, body) = answer(&g.app, aimed(req, target)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} {target:?}: {body}");
            assert_eq!(body, FORBIDDEN, "{what} {target:?}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert!(headers.get(SESSION_HEADER).is_none());
        }
        // Nothing opened, the session neither closed nor used, the inner service not reached.
        assert_eq!(g.sessions.len(), 1, "{target:?}");
        assert!(g.sessions.contains(&id), "{target:?}");
        assert_eq!(g.sessions.snapshot()[0].in_flight(), 0, "{target:?}");
        assert_eq!(g.inner_calls.load(Ordering::SeqCst), 0, "{target:?}");
        let next = served(&g.app, &id).await;
        assert_eq!(
            next,
            count + 1,
            "{target:?}: a refused request reached the session"
        );
        count = next;
    }
}

#[tokio::test]
async fn a_repeated_host_gets_400() {
    let g = guarded(guard());
    let (_, headers, _) = answer(&g.app, aimed(initialize(), ALLOWED[0])).await;
    let id = headers[SESSION_HEADER].to_str().unwrap().to_owned();
    for hosts in [
        &["localhost", "localhost"][..],
        &["localhost", "evil.example.com"],
    ] {
        for (what, req) in requests(&id) {
            let target = t(hosts, "/mcp", None);
            let (status, _, body) = answer(&g.app, aimed(req, target)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what} {hosts:?}");
            assert_eq!(body, REPEATED);
        }
    }
    assert_eq!(g.sessions.len(), 1);
    assert_eq!(g.inner_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn allowed_hosts_and_origins_pass_every_kind_of_request() {
    for target in ALLOWED {
        let g = guarded(guard());
        let (status, headers, body) = answer(&g.app, aimed(initialize(), target)).await;
        assert_eq!(status, StatusCode::OK, "{target:?}: {body}");
        let id = headers[SESSION_HEADER].to_str().unwrap().to_owned();
        let (status, _, _) = answer(&g.app, aimed(post(&id), target)).await;
        assert_eq!(status, StatusCode::OK, "{target:?}");
        let mut sessionless = post_raw(rpc_body(9, "tools/list"));
        sessionless.headers_mut().insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2026-07-28"),
        );
        let (status, _, body) = answer(&g.app, aimed(sessionless, target)).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "inner"),
            "{target:?}"
        );
        let (status, _, _) = answer(&g.app, aimed(delete(&id), target)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{target:?}");
        assert!(g.sessions.is_empty());
    }
}

#[tokio::test]
async fn only_loopback_by_default() {
    let g = guarded(OriginGuardLayer::default());
    let (status, _, _) = answer(&g.app, aimed(initialize(), ALLOWED[0])).await;
    assert_eq!(status, StatusCode::OK);
    for target in [
        t(&["mcp.example.com"], "/mcp", None),
        t(&["localhost"], "/mcp", Some("https://app.example.com")),
    ] {
        let (status, _, _) = answer(&g.app, aimed(initialize(), target)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{target:?}");
    }
    assert_eq!(g.sessions.len(), 1);
}

#[tokio::test]
async fn null_passes_only_when_listed() {
    let g = guarded(OriginGuardLayer::loopback().allow_origin("null"));
    let target = t(&["localhost"], "/mcp", Some("null"));
    let (status, _, _) = answer(&g.app, aimed(initialize(), target)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_rejection_hook_reshapes_the_answer() {
    let g = guarded(guard().rejection(|refused: &Refused| {
        let mut response = Response::new(Bytes::from(format!("no: {}", refused.status())));
        *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
        response
    }));
    let (status, _, body) = answer(&g.app, aimed(initialize(), FOREIGN[0])).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(body, "no: 403 Forbidden");
    assert!(g.sessions.is_empty());
}

#[test]
fn refusals_are_errors_with_their_status() {
    let refused = Refused::ForeignOrigin("null".into());
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.to_string(),
        "Forbidden: Host or Origin not allowed (403 Forbidden)"
    );
    let _: &dyn std::error::Error = &refused;
    assert_eq!(Refused::RepeatedHost.status(), StatusCode::BAD_REQUEST);
    let response = Refused::NoHost.to_response();
    assert_eq!(response.body().as_ref(), FORBIDDEN.as_bytes());
}
