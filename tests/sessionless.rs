//! Protocol-version routing (MCP 2026-07-28, SEP-2567, removed sessions): requests declaring
//! `MCP-Protocol-Version` 2026-07-28 or later go to the inner service untouched, whatever
//! session id they carry; a malformed version gets 400; older versions use sessions.

mod common;

use common::*;
use http::{HeaderValue, Method, Request, StatusCode};
use tower::Layer;
use tower_mcp_session::SessionLayer;
use tower_mcp_session::mcp::MCP_PROTOCOL_VERSION;

fn with_version(mut req: Request<ReqBody>, version: &'static str) -> Request<ReqBody> {
    req.headers_mut()
        .insert(MCP_PROTOCOL_VERSION, HeaderValue::from_static(version));
    req
}

fn with_session_header(mut req: Request<ReqBody>, value: HeaderValue) -> Request<ReqBody> {
    req.headers_mut().insert(SESSION_HEADER, value);
    req
}

#[tokio::test]
async fn modern_versions_go_to_the_inner_service_without_a_session() {
    let Fixture(live, _, sessions, app) = Fixture::mcp_unhooked(|layer| layer);

    for version in ["2026-07-28", "2026-12-01", "2030-01-01"] {
        // initialize: no session is opened, no id minted or echoed.
        let resp = send(&app, with_version(initialize(), version)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get(SESSION_HEADER).is_none(), "{version}");
        let inner = body_json(resp).await;
        assert_eq!(inner["inner"], true);
        assert_eq!(inner["has_session_info"], false);
        assert_eq!(
            inner["body"],
            initialize_body(1),
            "the body reaches the inner service"
        );

        // Other requests without an id: no 400.
        for method in [Method::POST, Method::GET, Method::DELETE, Method::PUT] {
            let req = Request::builder()
                .method(method.clone())
                .uri(PATH)
                .body(Default::default())
                .unwrap();
            let resp = send(&app, with_version(req, version)).await;
            assert_eq!(resp.status(), StatusCode::OK, "{version} {method}");
            assert!(resp.headers().get(SESSION_HEADER).is_none());
            assert_eq!(body_json(resp).await["inner"], true);
        }
    }
    assert_eq!(sessions.len(), 0);
    assert_eq!(live.made(), 0);
}

#[tokio::test]
async fn a_session_id_on_a_modern_request_is_ignored() {
    let Fixture(_, closed, sessions, app) = Fixture::mcp(|layer| layer);
    let id = open(&app).await;

    let values = [
        HeaderValue::from_str(&id).unwrap(),
        HeaderValue::from_static("unknown-session"),
        HeaderValue::from_static("not visible ascii"),
        HeaderValue::from_static(""),
    ];
    for value in values {
        for req in [post(&id), get(&id), delete(&id)] {
            let req = with_version(with_session_header(req, value.clone()), "2026-07-28");
            let resp = send(&app, req).await;
            assert_eq!(resp.status(), StatusCode::OK, "{value:?}: no 404 / 400");
            assert!(resp.headers().get(SESSION_HEADER).is_none());
            let inner = body_json(resp).await;
            assert_eq!(inner["inner"], true, "{value:?}: not routed to a session");
            assert_eq!(inner["has_session_info"], false);
            assert_eq!(
                inner["session_header"],
                value.to_str().unwrap(),
                "header left as is"
            );
        }
    }
    // The live session was neither used nor closed by the DELETEs.
    assert!(sessions.contains(&id));
    assert_eq!(closed.len(), 0);
    assert_eq!(body_json(send(&app, post(&id)).await).await["n"], 2);
}

#[tokio::test]
async fn a_malformed_protocol_version_gets_400_with_an_id_and_goes_to_the_inner_service_without() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live)).build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let id = open(&app).await;
    for version in [
        "",
        "2026-7-28",
        "2026/07/28",
        "latest",
        "2026-07-28 ",
        "20260728",
        "2026-07-280",
        "v2026-07-28",
    ] {
        for req in [post(&id), get(&id), delete(&id)] {
            let resp = send(&app, with_version(req, version)).await;
            assert_rejection(resp, StatusCode::BAD_REQUEST, -32000).await;
        }
        // Without an id the server behind the layer answers (it knows its versions; MCP
        // 2026-07-28 wants -32022 with the request's id): nothing opens.
        let resp = send(&app, with_version(initialize(), version)).await;
        assert_eq!(resp.status(), StatusCode::OK, "{version:?}");
        assert!(resp.headers().get(SESSION_HEADER).is_none());
        assert_eq!(body_json(resp).await["inner"], true);
    }
    // The header repeated, even with two valid values.
    let mut req = with_version(post(&id), "2025-11-25");
    req.headers_mut()
        .append(MCP_PROTOCOL_VERSION, HeaderValue::from_static("2026-07-28"));
    assert_rejection(send(&app, req).await, StatusCode::BAD_REQUEST, -32000).await;

    assert_eq!(sessions.len(), 1, "no malformed DELETE closed the session");
    assert_eq!(live.made(), 1);
    assert_eq!(body_json(send(&app, post(&id)).await).await["n"], 2);
}

#[tokio::test]
async fn session_versions_are_routed_as_usual() {
    let Fixture(live, _, sessions, app) = Fixture::mcp_unhooked(|layer| layer);

    for version in ["2025-11-25", "2025-06-18", "2025-03-26", "2026-07-27"] {
        let resp = send(&app, with_version(initialize(), version)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let id = session_id_of(&resp).expect("an id is minted below 2026-07-28");
        let echo = body_json(resp).await;
        assert_eq!(echo["session"], id.as_str());

        let echo = body_json(send(&app, with_version(post(&id), version)).await).await;
        assert_eq!(
            (echo["session"].as_str(), echo["n"].as_u64()),
            (Some(id.as_str()), Some(2))
        );
        assert_not_found(send(&app, with_version(post("unknown-session"), version)).await).await;
        let resp = send(&app, with_version(get_without_id(), version)).await;
        assert_eq!(
            resp.status(),
            StatusCode::BAD_REQUEST,
            "no id: 400 below 2026-07-28"
        );
        assert_eq!(body_string(resp).await, MISSING_ID_BODY);
        assert_eq!(
            status_of(&app, with_version(delete(&id), version)).await,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(sessions.len(), 0);
    assert_eq!(live.alive(), 0);
}

/// A GET without a session id.
fn get_without_id() -> Request<ReqBody> {
    Request::get(PATH).body(Default::default()).unwrap()
}

#[tokio::test]
async fn the_sessionless_predicate_routes_to_the_inner_service() {
    let Fixture(live, closed, sessions, app) =
        Fixture::mcp(|layer| layer.sessionless(|parts| parts.uri.path() == "/health"));
    let id = open(&app).await;

    let health = |method: Method, id: Option<&str>| {
        let mut builder = Request::builder().method(method).uri("/health");
        if let Some(id) = id {
            builder = builder.header(SESSION_HEADER, id);
        }
        builder.body(Default::default()).unwrap()
    };
    for method in [Method::GET, Method::POST, Method::DELETE, Method::PUT] {
        for session in [None, Some(id.as_str()), Some("unknown"), Some("bad id")] {
            let resp = send(&app, health(method.clone(), session)).await;
            assert_eq!(resp.status(), StatusCode::OK, "{method} {session:?}");
            assert!(resp.headers().get(SESSION_HEADER).is_none());
            assert_eq!(body_json(resp).await["inner"], true);
        }
    }
    // The version rule still comes first: a malformed version with a session id is 400 even
    // there; without one it is the inner service's to answer.
    let resp = send(&app, with_version(health(Method::GET, Some(&id)), "latest")).await;
    assert_rejection(resp, StatusCode::BAD_REQUEST, -32000).await;
    let resp = send(&app, with_version(health(Method::GET, None), "latest")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await["inner"], true);

    // Other paths keep their sessions; the DELETEs above closed nothing.
    assert!(sessions.contains(&id));
    assert_eq!(closed.len(), 0);
    assert_eq!(body_json(send(&app, post(&id)).await).await["n"], 2);
    assert_missing_id_400(&app).await;
    assert_eq!(live.made(), 1);
}

async fn assert_missing_id_400<S>(app: &S)
where
    S: tower::Service<Request<ReqBody>, Response = Resp, Error = std::convert::Infallible> + Clone,
{
    let resp = send(app, get_without_id()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_string(resp).await, MISSING_ID_BODY);
}
