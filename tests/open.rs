//! Opening a session: `initialize` (POST, JSON-RPC `initialize`, no session id) mints an id,
//! builds the per-session service and stores the session only if that service answers 2xx.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use http::StatusCode;
use tower::Layer;
use tower_mcp_session::{SessionInfo, SessionLayer};

fn is_uuid_v4(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            14 => *b == b'4',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
        && matches!(bytes[19], b'8' | b'9' | b'a' | b'b')
}

#[tokio::test]
async fn initialize_opens_a_session_and_echoes_its_id() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live)).build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    let resp = send(&app, initialize()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let id = session_id_of(&resp).expect("Mcp-Session-Id on the initialize answer");
    assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{id:?}");
    assert!(is_uuid_v4(&id), "default ids are UUID v4: {id:?}");
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );

    // The per-session service saw the initialize request exactly as sent, and its SessionInfo.
    let echo = body_json(resp).await;
    assert_eq!(echo["session"], id.as_str());
    assert_eq!(echo["seen"], id.as_str());
    assert_eq!(echo["n"], 1);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], initialize_body(1));

    assert_eq!(sessions.len(), 1);
    assert!(sessions.contains(&id));
    assert_eq!(sessions.get(&id).unwrap().id().as_str(), id);
    let ids: Vec<String> = sessions.ids().iter().map(|i| i.to_string()).collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(live.made(), 1);

    // A later request with the id reaches the same service, body unchanged, no id echoed.
    let body = rpc_body(7, "tools/list");
    let resp = send(&app, post_with(&id, body.clone())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(SESSION_HEADER).is_none());
    let echo = body_json(resp).await;
    assert_eq!(echo["session"], id.as_str());
    assert_eq!(echo["seen"], id.as_str());
    assert_eq!(echo["n"], 2);
    assert_eq!(echo["body"], body);
    assert_eq!(live.made(), 1, "one service per session, not per request");
}

#[tokio::test]
async fn every_initialize_gets_a_fresh_id() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live)).build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    let mut ids = std::collections::HashSet::new();
    for _ in 0..50 {
        assert!(ids.insert(open(&app).await), "an id was minted twice");
    }
    assert_eq!(sessions.len(), 50);
    assert_eq!(live.alive(), 50);
}

#[tokio::test]
async fn initialize_is_detected_by_method_not_by_rpc_id_or_field_order() {
    let live = Live::default();
    let app = SessionLayer::mcp(echo_factory(&live)).build().layer(Inner);
    let bodies = [
        r#"{"method":"initialize","params":{},"jsonrpc":"2.0","id":"abc"}"#,
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#,
        "\n  {\"jsonrpc\": \"2.0\", \"id\": 9, \"method\": \"initialize\", \"params\": {}}  \n",
    ];
    for body in bodies {
        let resp = send(&app, post_raw(body)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{body}");
        assert!(session_id_of(&resp).is_some(), "{body}");
        assert_eq!(
            body_json(resp).await["body"],
            body,
            "the body is handed on unchanged"
        );
    }
}

#[tokio::test]
async fn a_non_2xx_answer_to_initialize_stores_nothing() {
    let live = Live::default();
    // One slot only: a leaked reservation would make the final open fail with 503.
    // Configure first, then take the table: a builder method called after `sessions()`
    // would make a layer with a new table.
    let closed = Closed::default();
    let layer = SessionLayer::mcp(echo_factory(&live))
        .max_sessions(1)
        .on_close(closed.hook())
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    for status in [301u16, 400, 401, 403, 404, 422, 500, 503] {
        let mut req = initialize();
        req.headers_mut().insert(RESPOND_STATUS, status.into());
        let resp = send(&app, req).await;
        assert_eq!(
            resp.status().as_u16(),
            status,
            "the service's answer passes through"
        );
        assert!(
            resp.headers().get(SESSION_HEADER).is_none(),
            "no id is echoed with a {status}"
        );
        // The echo reveals the id that was minted for the attempt: it must be unknown.
        let minted = body_json(resp).await["session"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(sessions.len(), 0, "nothing stored after a {status}");
        assert!(!sessions.contains(&minted));
        assert_eq!(
            live.alive(),
            0,
            "the per-session service is dropped after a {status}"
        );
        assert_not_found(send(&app, post(&minted)).await).await;
        assert_not_found(send(&app, get(&minted)).await).await;
    }
    assert_eq!(live.made(), 8);
    assert_eq!(closed.len(), 0, "a session never stored is never closed");

    // No slot leaked.
    let id = open(&app).await;
    assert_eq!(sessions.len(), 1);
    assert!(sessions.contains(&id));
}

#[tokio::test]
async fn factory_failure_is_500_and_stores_nothing() {
    let live = Live::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let factory = {
        let live = live.clone();
        let calls = Arc::clone(&calls);
        move |info: SessionInfo, _inner: Inner| {
            let live = live.clone();
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                // Build a service, then fail the first call: the service must be dropped.
                let service = Echo::new(info, &live);
                if n == 0 {
                    drop(service);
                    Err("database unreachable")
                } else {
                    Ok::<_, &str>(service)
                }
            }
        }
    };
    let layer = SessionLayer::mcp(factory).max_sessions(1).build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    let resp = send(&app, initialize()).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(resp.headers().get(SESSION_HEADER).is_none());
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    let body = body_json(resp).await;
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], -32603);
    assert_eq!(body["id"], serde_json::Value::Null);
    let text = body.to_string();
    assert!(
        !text.contains("database"),
        "the factory's error is not sent to the client: {text}"
    );
    assert_eq!(sessions.len(), 0);
    assert_eq!(live.made(), 1);
    assert_eq!(live.alive(), 0);

    // The slot taken for the failed attempt was given back: the next open works.
    let id = open(&app).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(status_of(&app, post(&id)).await, StatusCode::OK);
}

#[tokio::test]
async fn the_session_extension_can_be_turned_off_for_routed_requests() {
    let live = Live::default();
    let app = SessionLayer::mcp(echo_factory(&live))
        .session_extension(false)
        .build()
        .layer(Inner);

    // The opening request still carries it; routed ones do not, yet reach their session.
    let resp = send(&app, initialize()).await;
    let id = session_id_of(&resp).unwrap();
    assert_eq!(body_json(resp).await["seen"], id.as_str());
    let echo = body_json(send(&app, post(&id)).await).await;
    assert_eq!(echo["session"], id.as_str());
    assert!(echo["seen"].is_null(), "{echo}");
}
