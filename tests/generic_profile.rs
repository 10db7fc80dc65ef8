//! The generic profile, `SessionLayer::new`: any header, any open policy, custom id
//! generators (checked by the layer) and a rejection hook replacing the layer's responses.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::Layer;
use tower_mcp_session::{ClosePolicy, CloseReason, OpenPolicy, Rejection, SessionLayer};

const X_SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");

fn request(method: Method, path: &str, id: Option<&str>, body: &'static str) -> Request<ReqBody> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(id) = id {
        builder = builder.header(X_SESSION_ID, id);
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn x_session_id(resp: &Resp) -> Option<String> {
    resp.headers()
        .get(X_SESSION_ID)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn any_request_without_the_custom_header_opens_a_session() {
    let live = Live::default();
    let layer = SessionLayer::generic(echo_factory(&live))
        .header(X_SESSION_ID)
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    // Any method, any body (not JSON: the generic profile does not read it).
    let resp = send(
        &app,
        request(Method::PUT, "/anything", None, "raw \x00 bytes"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let id = x_session_id(&resp).expect("the id comes back in the configured header");
    assert!(
        resp.headers().get(SESSION_HEADER).is_none(),
        "not in Mcp-Session-Id"
    );
    let echo = body_json(resp).await;
    assert_eq!(echo["session"], id.as_str());
    assert_eq!(echo["seen"], id.as_str());
    assert_eq!(echo["body"], "raw \u{0} bytes");

    // Routed by the configured header, for any method.
    for (n, method) in [Method::GET, Method::PATCH, Method::POST]
        .into_iter()
        .enumerate()
    {
        let resp = send(&app, request(method, "/other", Some(&id), "x")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            x_session_id(&resp).is_none(),
            "the id is echoed only when opening"
        );
        let echo = body_json(resp).await;
        assert_eq!(echo["session"], id.as_str());
        assert_eq!(echo["n"], n as u64 + 2);
    }

    // `Mcp-Session-Id` means nothing here: such a request opens a new session.
    let mut req = request(Method::GET, "/", None, "");
    req.headers_mut()
        .insert(SESSION_HEADER, HeaderValue::from_str(&id).unwrap());
    let resp = send(&app, req).await;
    let other = x_session_id(&resp).expect("a new session");
    assert_ne!(other, id);
    body_string(resp).await;

    assert_not_found(send(&app, request(Method::GET, "/", Some("unknown"), "")).await).await;
    let resp = send(&app, request(Method::GET, "/", Some("bad id"), "")).await;
    assert_rejection(resp, StatusCode::BAD_REQUEST, -32000).await;

    // No close policy by default: DELETE is just another request of the session.
    let resp = send(&app, request(Method::DELETE, "/", Some(&id), "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let echo = body_json(resp).await;
    assert_eq!(
        (echo["session"].as_str(), echo["method"].as_str()),
        (Some(id.as_str()), Some("DELETE"))
    );
    assert!(sessions.contains(&id));
    assert_eq!(sessions.len(), 2);
}

#[tokio::test]
async fn under_new_a_delete_reaches_the_sessions_service_and_the_session_stays_open() {
    let live = Live::default();
    let closed = Closed::default();
    let layer = SessionLayer::generic(echo_factory(&live))
        .on_close(closed.hook())
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let resp = send(&app, request(Method::POST, "/items", None, "")).await;
    let id = session_id_of(&resp).expect("Mcp-Session-Id by default");
    body_string(resp).await;

    let mut req = request(Method::DELETE, "/items/42", None, "");
    req.headers_mut()
        .insert(SESSION_HEADER, HeaderValue::from_str(&id).unwrap());
    let resp = send(&app, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let echo = body_json(resp).await;
    assert_eq!(echo["session"], id.as_str());
    assert_eq!(echo["seen"], id.as_str());
    assert_eq!(echo["method"], "DELETE");
    assert_eq!(echo["n"], 2);
    assert!(sessions.contains(&id));
    assert_eq!(closed.len(), 0);
    assert_eq!(live.alive(), 1);
    // And the session goes on serving.
    let resp = send(&app, post(&id)).await;
    assert_eq!(body_json(resp).await["n"], 3);
}

#[tokio::test]
async fn close_policy_delete_makes_delete_close_under_new() {
    let live = Live::default();
    let closed = Closed::default();
    let layer = SessionLayer::generic(echo_factory(&live))
        .header(X_SESSION_ID)
        .close_policy(ClosePolicy::delete())
        .on_close(closed.hook())
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let resp = send(&app, request(Method::POST, "/", None, "")).await;
    let id = x_session_id(&resp).unwrap();
    body_string(resp).await;

    let resp = send(&app, request(Method::DELETE, "/anywhere", Some(&id), "")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(body_string(resp).await, "");
    assert_eq!(closed.all(), [(id.clone(), CloseReason::Deleted)]);
    assert_eq!(live.alive(), 0);
    assert_not_found(send(&app, request(Method::GET, "/", Some(&id), "")).await).await;
    assert_not_found(send(&app, request(Method::DELETE, "/", Some(&id), "")).await).await;
    assert_eq!(sessions.len(), 0);
}

#[tokio::test]
async fn close_policy_when_closes_only_the_requests_it_claims() {
    let live = Live::default();
    let closed = Closed::default();
    let layer = SessionLayer::generic(echo_factory(&live))
        .header(X_SESSION_ID)
        .close_policy(ClosePolicy::when(|parts| {
            parts.method == Method::POST && parts.uri.path() == "/logout"
        }))
        .on_close(closed.hook())
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let resp = send(&app, request(Method::POST, "/", None, "")).await;
    let id = x_session_id(&resp).unwrap();
    body_string(resp).await;

    // Not claimed: served by the session (DELETE included).
    for (method, path) in [
        (Method::DELETE, "/logout"),
        (Method::GET, "/logout"),
        (Method::POST, "/data"),
    ] {
        let resp = send(&app, request(method.clone(), path, Some(&id), "")).await;
        assert_eq!(resp.status(), StatusCode::OK, "{method} {path}");
        assert_eq!(body_json(resp).await["method"], method.as_str());
    }
    assert_eq!(closed.len(), 0);
    // Claimed: 204 and closed; then 404.
    let resp = send(&app, request(Method::POST, "/logout", Some(&id), "")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    body_string(resp).await;
    assert_eq!(closed.all(), [(id.clone(), CloseReason::Deleted)]);
    assert_not_found(send(&app, request(Method::POST, "/logout", Some(&id), "")).await).await;
    assert_eq!(sessions.len(), 0);
}

#[tokio::test]
async fn open_policy_when_decides_which_requests_open() {
    let live = Live::default();
    let layer = SessionLayer::generic(echo_factory(&live))
        .header(X_SESSION_ID)
        .open_policy(OpenPolicy::when(|parts| {
            parts.method == Method::POST && parts.uri.path() == "/login"
        }))
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    for (method, path) in [
        (Method::GET, "/login"),
        (Method::POST, "/data"),
        (Method::POST, "/"),
    ] {
        let resp = send(&app, request(method, path, None, "{}")).await;
        assert_rejection(resp, StatusCode::BAD_REQUEST, -32000).await;
    }
    assert_eq!(live.made(), 0);
    // The 400 names the configured header, not MCP's.
    let resp = send(&app, request(Method::GET, "/data", None, "")).await;
    let body = body_json(resp).await;
    assert_eq!(
        body["error"]["message"],
        "Bad Request: x-session-id header is required"
    );

    let resp = send(&app, request(Method::POST, "/login", None, "user=alice")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let id = x_session_id(&resp).unwrap();
    assert_eq!(body_json(resp).await["body"], "user=alice");
    let echo = body_json(send(&app, request(Method::GET, "/data", Some(&id), "")).await).await;
    assert_eq!(echo["session"], id.as_str());
    assert_eq!(sessions.len(), 1);
}

#[tokio::test]
async fn a_custom_id_generator_names_the_sessions() {
    let live = Live::default();
    let next = Arc::new(AtomicUsize::new(0));
    let layer = SessionLayer::generic(echo_factory(&live))
        .header(X_SESSION_ID)
        .make_session_id({
            let next = Arc::clone(&next);
            move || format!("s-{}", next.fetch_add(1, Ordering::SeqCst))
        })
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    for expected in ["s-0", "s-1", "s-2"] {
        let resp = send(&app, request(Method::POST, "/", None, "")).await;
        assert_eq!(x_session_id(&resp).as_deref(), Some(expected));
        assert_eq!(body_json(resp).await["session"], expected);
    }
    let echo = body_json(send(&app, request(Method::GET, "/", Some("s-1"), "")).await).await;
    assert_eq!(
        (echo["session"].as_str(), echo["n"].as_u64()),
        (Some("s-1"), Some(2))
    );
    assert_eq!(sessions.len(), 3);
}

#[tokio::test]
async fn an_invalid_generated_id_is_500_and_nothing_is_built() {
    let too_long = "a".repeat(256);
    for bad in ["", "has space", "caf\u{e9}", "tab\t", too_long.as_str()] {
        let live = Live::default();
        let bad_owned = bad.to_owned();
        let layer = SessionLayer::generic(echo_factory(&live))
            .header(X_SESSION_ID)
            .max_sessions(1)
            .make_session_id(move || bad_owned.clone())
            .build();
        let sessions = layer.sessions();
        let app = layer.layer(Inner);
        let resp = send(&app, request(Method::POST, "/", None, "")).await;
        assert!(x_session_id(&resp).is_none());
        assert_rejection(resp, StatusCode::INTERNAL_SERVER_ERROR, -32603).await;
        assert_eq!(sessions.len(), 0, "{bad:?}");
        assert_eq!(
            live.made(),
            0,
            "{bad:?}: the factory is not called without a valid id"
        );
    }
}

#[tokio::test]
async fn a_generator_repeating_a_live_id_is_500_and_the_live_session_is_untouched() {
    let live = Live::default();
    let layer = SessionLayer::generic(echo_factory(&live))
        .header(X_SESSION_ID)
        .make_session_id(|| "always-the-same".to_owned())
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let resp = send(&app, request(Method::POST, "/", None, "")).await;
    assert_eq!(x_session_id(&resp).as_deref(), Some("always-the-same"));
    body_string(resp).await;

    let resp = send(&app, request(Method::POST, "/", None, "")).await;
    assert!(x_session_id(&resp).is_none());
    assert_rejection(resp, StatusCode::INTERNAL_SERVER_ERROR, -32603).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(live.made(), 1, "no second service was built for a taken id");
    let echo =
        body_json(send(&app, request(Method::GET, "/", Some("always-the-same"), "")).await).await;
    assert_eq!(echo["n"], 2);
}

#[tokio::test]
async fn the_rejection_hook_replaces_the_404() {
    let live = Live::default();
    let layer = SessionLayer::generic(echo_factory(&live))
        .header(X_SESSION_ID)
        .open_policy(OpenPolicy::when(|parts| parts.uri.path() == "/open"))
        .rejection(|rejection| match rejection {
            // gRPC: HTTP 200, `grpc-status: 5` (NOT_FOUND) in the headers.
            Rejection::SessionNotFound => Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/grpc")
                .header("grpc-status", "5")
                .header("grpc-message", "session not found")
                .body(Bytes::new())
                .unwrap(),
            other => other.to_response(),
        })
        .build();
    let app = layer.layer(Inner);
    let resp = send(&app, request(Method::POST, "/open", None, "")).await;
    let id = x_session_id(&resp).unwrap();
    body_string(resp).await;

    for req in [
        request(Method::POST, "/svc/Method", Some("unknown"), ""),
        request(Method::DELETE, "/svc/Method", Some("unknown"), ""),
    ] {
        let resp = send(&app, req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["grpc-status"], "5");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(body_string(resp).await, "");
    }
    // Other rejections keep the default unless the hook changes them.
    let resp = send(&app, request(Method::POST, "/svc/Method", None, "")).await;
    assert_rejection(resp, StatusCode::BAD_REQUEST, -32000).await;
    // The live session is served normally.
    let resp = send(&app, request(Method::POST, "/svc/Method", Some(&id), "")).await;
    assert!(resp.headers().get("grpc-status").is_none());
    assert_eq!(body_json(resp).await["session"], id.as_str());
}

#[tokio::test]
async fn keep_session_if_decides_from_the_opening_answer() {
    let live = Live::default();
    let closed = Closed::default();
    // The rule the docs give tonic users: a failed gRPC call is HTTP 200 with grpc-status != 0.
    let layer = SessionLayer::generic(echo_factory(&live))
        .header(X_SESSION_ID)
        .max_sessions(1)
        .keep_session_if(|status, headers| {
            status.is_success() && headers.get("grpc-status").is_none_or(|s| s == "0")
        })
        .on_close(closed.hook())
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    for grpc_status in ["5", "13", "16"] {
        let mut req = request(Method::POST, "/svc/Open", None, "");
        req.headers_mut()
            .insert(RESPOND_GRPC_STATUS, HeaderValue::from_static(grpc_status));
        let resp = send(&app, req).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["grpc-status"],
            grpc_status,
            "the answer passes through"
        );
        assert!(x_session_id(&resp).is_none(), "no id for a failed call");
        let minted = body_json(resp).await["session"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(sessions.len(), 0);
        assert_eq!(live.alive(), 0);
        assert_not_found(send(&app, request(Method::POST, "/", Some(&minted), "")).await).await;
    }
    // A successful call keeps its session (and no slot leaked: max_sessions is 1).
    let mut req = request(Method::POST, "/svc/Open", None, "");
    req.headers_mut()
        .insert(RESPOND_GRPC_STATUS, HeaderValue::from_static("0"));
    let resp = send(&app, req).await;
    let id = x_session_id(&resp).expect("grpc-status 0 keeps the session");
    body_string(resp).await;
    assert!(sessions.contains(&id));
    assert_eq!(closed.len(), 0);

    // The rule replaces the 2xx default entirely: a non-2xx answer still stores nothing.
    assert!(sessions.close(&id));
    let mut req = request(Method::POST, "/svc/Open", None, "");
    req.headers_mut().insert(RESPOND_STATUS, 503.into());
    let resp = send(&app, req).await;
    assert!(x_session_id(&resp).is_none());
    body_string(resp).await;
    assert_eq!(sessions.len(), 0);
}
