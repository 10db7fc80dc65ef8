//! Every request the MCP profile answers itself (DESIGN.md's status table): status, headers
//! and body, byte for byte where the official SDKs fix the bytes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;
use tower::Layer;
use tower_mcp_session::{ClosePolicy, SessionLayer};

/// Asserts the 400 of a request without a session id, byte for byte.
async fn assert_missing_id(resp: Resp) {
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    assert!(resp.headers().get(SESSION_HEADER).is_none());
    assert_eq!(body_string(resp).await, MISSING_ID_BODY);
}

fn request(method: Method, id: Option<&str>, body: &str) -> Request<ReqBody> {
    let mut builder = Request::builder()
        .method(method)
        .uri(PATH)
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(id) = id {
        builder = builder.header(SESSION_HEADER, id);
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

#[tokio::test]
async fn requests_without_a_session_id_other_than_initialize_get_400() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live)).build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    // A live session must not change the answer.
    open(&app).await;

    let ping = rpc_body(1, "ping");
    let notification = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let batch = format!("[{ping}]");
    // `initialize` as a notification (no id, or a null id) is not an InitializeRequest.
    let init_notification = r#"{"jsonrpc":"2.0","method":"initialize","params":{}}"#;
    let init_null_id = r#"{"jsonrpc":"2.0","id":null,"method":"initialize","params":{}}"#;
    for (method, body) in [
        (Method::POST, ping.as_str()),
        (Method::POST, notification),
        (Method::POST, batch.as_str()),
        (Method::POST, "{}"),
        (Method::POST, init_notification),
        (Method::POST, init_null_id),
        (Method::GET, ""),
        (Method::DELETE, ""),
        // GET and DELETE never open a session, whatever their body.
        (Method::GET, initialize_body(1).as_str()),
        (Method::DELETE, initialize_body(1).as_str()),
    ] {
        assert_missing_id(send(&app, request(method, None, body)).await).await;
    }
    assert_eq!(sessions.len(), 1);
    assert_eq!(live.made(), 1);
}

#[tokio::test]
async fn a_well_formed_unknown_id_gets_404() {
    let live = Live::default();
    let app = SessionLayer::mcp(echo_factory(&live)).build().layer(Inner);
    let real = open(&app).await;
    let unknown = "0b0f4c4e-5f7d-4e5b-9c8a-2f0e6d1c3b2a";
    assert_ne!(real, unknown);
    let longest = "x".repeat(255);
    for id in [unknown, "x", "~!", longest.as_str(), &real.to_uppercase()] {
        assert_not_found(send(&app, post(id)).await).await;
        assert_not_found(send(&app, get(id)).await).await;
        assert_not_found(send(&app, delete(id)).await).await;
        // An initialize body with an id is not an open: still 404.
        assert_not_found(send(&app, post_with(id, initialize_body(1))).await).await;
    }
    assert_eq!(live.made(), 1, "no session was opened on the way");
}

#[tokio::test]
async fn malformed_session_ids_get_400() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live)).build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let live_id = open(&app).await;

    let too_long = "a".repeat(256);
    let values: Vec<HeaderValue> = vec![
        HeaderValue::from_static(""),
        HeaderValue::from_static("a b"),
        HeaderValue::from_static(" leading"),
        HeaderValue::from_static("tab\there"),
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        HeaderValue::from_bytes(b"\x80\xff").unwrap(),
        HeaderValue::from_str(&too_long).unwrap(),
        // A live id made invalid by one trailing space.
        HeaderValue::from_str(&format!("{live_id} x")).unwrap(),
    ];
    for value in values {
        for method in [Method::POST, Method::GET, Method::DELETE] {
            let mut req = request(method.clone(), None, &rpc_body(1, "ping"));
            req.headers_mut().insert(SESSION_HEADER, value.clone());
            let resp = send(&app, req).await;
            assert_rejection(resp, StatusCode::BAD_REQUEST, -32000).await;
        }
        // Not even an initialize body opens a session past a malformed header.
        let mut req = initialize();
        req.headers_mut().insert(SESSION_HEADER, value.clone());
        assert_rejection(send(&app, req).await, StatusCode::BAD_REQUEST, -32000).await;
    }

    // The header repeated, even with the same live id twice: 400, not routed, not closed.
    for method in [Method::POST, Method::GET, Method::DELETE] {
        let mut req = request(method, Some(&live_id), &rpc_body(1, "ping"));
        req.headers_mut()
            .append(SESSION_HEADER, HeaderValue::from_str(&live_id).unwrap());
        assert_rejection(send(&app, req).await, StatusCode::BAD_REQUEST, -32000).await;
    }
    assert!(
        sessions.contains(&live_id),
        "a rejected DELETE closed nothing"
    );
    let echo = body_json(send(&app, post(&live_id)).await).await;
    assert_eq!(
        echo["n"], 2,
        "no rejected request reached the session's service"
    );
    assert_eq!(live.made(), 1);
}

#[tokio::test]
async fn methods_other_than_get_post_delete_get_405_with_allow() {
    let live = Live::default();
    let app = SessionLayer::mcp(echo_factory(&live)).build().layer(Inner);
    let id = open(&app).await;
    for method in [Method::PUT, Method::PATCH, Method::OPTIONS, Method::HEAD] {
        for session in [None, Some(id.as_str())] {
            let resp = send(&app, request(method.clone(), session, &initialize_body(1))).await;
            let headers = assert_rejection(resp, StatusCode::METHOD_NOT_ALLOWED, -32000).await;
            assert_eq!(
                headers[header::ALLOW],
                "GET, POST, DELETE",
                "{method} {session:?}"
            );
        }
    }
    assert_eq!(live.made(), 1);
    assert_eq!(body_json(send(&app, post(&id)).await).await["n"], 2);
}

#[tokio::test]
async fn delete_when_termination_is_disabled_gets_405_and_keeps_the_session() {
    let live = Live::default();
    let closed = Closed::default();
    let layer = SessionLayer::mcp(echo_factory(&live))
        .close_policy(ClosePolicy::refuse_delete())
        .on_close(closed.hook())
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let id = open(&app).await;

    let headers = assert_rejection(
        send(&app, delete(&id)).await,
        StatusCode::METHOD_NOT_ALLOWED,
        -32000,
    )
    .await;
    assert_eq!(headers[header::ALLOW], "GET, POST");
    // Unknown ids too: the method is refused before the id is looked at.
    let headers = assert_rejection(
        send(&app, delete("no-such-session")).await,
        StatusCode::METHOD_NOT_ALLOWED,
        -32000,
    )
    .await;
    assert_eq!(headers[header::ALLOW], "GET, POST");
    // The Allow of other refused methods does not advertise DELETE either.
    let headers = assert_rejection(
        send(&app, request(Method::PUT, Some(&id), "")).await,
        StatusCode::METHOD_NOT_ALLOWED,
        -32000,
    )
    .await;
    assert_eq!(headers[header::ALLOW], "GET, POST");

    assert!(sessions.contains(&id));
    assert_eq!(closed.len(), 0);
    assert_eq!(body_json(send(&app, post(&id)).await).await["n"], 2);
}

#[tokio::test]
async fn an_opening_body_over_the_peek_limit_gets_413() {
    let live = Live::default();
    let body = initialize_body(1);
    let layer = SessionLayer::mcp(echo_factory(&live))
        .peek_limit(body.len())
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    // Exactly at the limit: accepted.
    let id = open(&app).await;

    // One byte over (trailing whitespace keeps it valid JSON): 413.
    let over = format!("{body} ");
    let resp = send(&app, post_raw(over.clone())).await;
    assert_rejection(resp, StatusCode::PAYLOAD_TOO_LARGE, -32000).await;

    // A declared Content-Length over the limit: 413 without reading.
    let mut req = post_raw(over);
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len() + 1));
    assert_rejection(send(&app, req).await, StatusCode::PAYLOAD_TOO_LARGE, -32000).await;

    // Requests with a session id are never peeked: a large body streams through.
    let large = "x".repeat(body.len() * 10);
    let echo = body_json(send(&app, post_with(&id, large.clone())).await).await;
    assert_eq!(echo["body"], large);

    assert_eq!(sessions.len(), 1);
    assert_eq!(live.made(), 1);
}

#[tokio::test]
async fn the_default_peek_limit_is_64_kib() {
    let live = Live::default();
    let app = SessionLayer::mcp(echo_factory(&live)).build().layer(Inner);
    let init = initialize_body(1);
    // Padded with whitespace to exactly the limit, then one byte more.
    let at_limit = format!("{init}{}", " ".repeat(64 * 1024 - init.len()));
    assert_eq!(
        status_of(&app, post_raw(at_limit.clone())).await,
        StatusCode::OK
    );
    let resp = send(&app, post_raw(format!("{at_limit} "))).await;
    assert_rejection(resp, StatusCode::PAYLOAD_TOO_LARGE, -32000).await;
    assert_eq!(live.made(), 1);
}

#[tokio::test]
async fn a_non_json_opening_body_gets_400_parse_error() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live)).build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    for body in ["", "not json", "{\"jsonrpc\":\"2.0\",", "\u{feff}{}"] {
        let resp = send(&app, post_raw(body)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_string(resp).await,
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#,
            "{body:?}"
        );
    }
    assert_eq!(sessions.len(), 0);
    assert_eq!(live.made(), 0);
}

#[tokio::test]
async fn a_batched_initialize_gets_400_invalid_request() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live)).build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    for body in [
        format!("[{}]", initialize_body(1)),
        format!("[{},{}]", rpc_body(1, "ping"), initialize_body(2)),
    ] {
        let resp = send(&app, post_raw(body)).await;
        assert_rejection(resp, StatusCode::BAD_REQUEST, -32600).await;
    }
    assert_eq!(sessions.len(), 0);
    assert_eq!(live.made(), 0);
}

#[tokio::test]
async fn the_session_limit_gets_503_with_retry_after() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live))
        .max_sessions(1)
        .retry_after(Duration::from_secs(7))
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let id = open(&app).await;

    let resp = send(&app, initialize()).await;
    let headers = assert_rejection(resp, StatusCode::SERVICE_UNAVAILABLE, -32000).await;
    assert_eq!(headers[header::RETRY_AFTER], "7");
    assert_eq!(
        live.made(),
        1,
        "the factory is not called when the table is full"
    );
    assert_eq!(sessions.len(), 1);
    // The live session is unaffected.
    assert_eq!(body_json(send(&app, post(&id)).await).await["n"], 2);
}

#[tokio::test]
async fn the_default_retry_after_is_5_seconds() {
    let live = Live::default();
    let app = SessionLayer::mcp(echo_factory(&live))
        .max_sessions(0)
        .build()
        .layer(Inner);
    let headers = assert_rejection(
        send(&app, initialize()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        -32000,
    )
    .await;
    assert_eq!(headers[header::RETRY_AFTER], "5");
}

#[tokio::test]
async fn a_202_of_a_live_session_passes_through_untouched() {
    let live = Live::default();
    let app = SessionLayer::mcp(echo_factory(&live)).build().layer(Inner);
    let id = open(&app).await;
    let notification = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let mut req = post_with(&id, notification);
    req.headers_mut().insert(RESPOND_STATUS, 202.into());
    let resp = send(&app, req).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(resp.headers().get(SESSION_HEADER).is_none());
    let echo = body_json(resp).await;
    assert_eq!(echo["session"], id.as_str());
    assert_eq!(echo["body"], notification);
}
