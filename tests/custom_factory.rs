//! The custom-factory example (`examples/custom_factory.rs`), driven with `oneshot`: an async
//! factory that loads state and can fail, a custom id generator and a custom header.

#[allow(dead_code)]
#[path = "../examples/custom_factory.rs"]
mod example;

use std::sync::Arc;
use std::time::Duration;

use example::{AppResponse, ID_PREFIX, SESSION_HEADER, Store, request};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_mcp_session::Principal;

async fn read(response: AppResponse) -> (Response<()>, String) {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn is_custom_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[test]
fn generator_mints_prefixed_random_ids() {
    let a = example::make_session_id();
    let b = example::make_session_id();
    assert!(is_custom_id(&a), "{a}");
    assert!(is_custom_id(&b), "{b}");
    assert_ne!(a, b);
}

#[tokio::test(start_paused = true)]
async fn factory_loads_state_and_the_custom_header_carries_the_custom_id() {
    let store = Store::new(Duration::from_millis(5));
    let (app, sessions) = example::app(Arc::clone(&store));

    let opened = app
        .clone()
        .oneshot(request(Method::POST, "/login", Some("alice"), None));
    let (response, body) = read(opened.await.unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The id is in the custom header only, in the generator's format.
    assert!(response.headers().get("mcp-session-id").is_none());
    let id = response.headers()[SESSION_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(is_custom_id(&id), "{id}");
    // The per-session service serves with the state the factory loaded.
    assert_eq!(
        body,
        format!("Alice (pro plan) POST /login: request 1 of session {id}\n")
    );
    assert_eq!(store.loads(), 1);

    // The session is stored, bound to its user.
    assert_eq!(sessions.len(), 1);
    let info = sessions.get(&id).unwrap();
    assert_eq!(info.principal(), Some(&Principal::from("alice")));

    // Later requests reach the same state; the factory does not run again.
    let again = app
        .clone()
        .oneshot(request(Method::GET, "/whoami", Some("alice"), Some(&id)));
    let (response, body) = read(again.await.unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body,
        format!("Alice (pro plan) GET /whoami: request 2 of session {id}\n")
    );
    assert_eq!(store.loads(), 1);

    // The default header means nothing to this app: without the custom one, no session.
    let wrong_header = request(Method::GET, "/whoami", Some("alice"), None);
    let (mut parts, body) = wrong_header.into_parts();
    parts.headers.insert("mcp-session-id", id.parse().unwrap());
    let response = app
        .clone()
        .oneshot(http::Request::from_parts(parts, body))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Another user holding the token is treated as holding an unknown id.
    let stolen = app
        .clone()
        .oneshot(request(Method::GET, "/whoami", Some("mallory"), Some(&id)));
    assert_eq!(stolen.await.unwrap().status(), StatusCode::NOT_FOUND);
    assert!(sessions.contains(&id));
}

#[tokio::test(start_paused = true)]
async fn factory_failure_is_500_and_stores_nothing() {
    let store = Store::new(Duration::from_millis(5));
    let (app, sessions) = example::app(Arc::clone(&store));
    store.set_available(false);

    let failed = app
        .clone()
        .oneshot(request(Method::POST, "/login", Some("bob"), None));
    let (response, body) = read(failed.await.unwrap()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["jsonrpc"], "2.0");
    assert_eq!(json["error"]["code"], -32603);
    assert!(json["id"].is_null());
    // The factory's error is logged, not sent to the client.
    assert!(!body.contains("unavailable"), "{body}");

    // No token was issued and nothing was stored.
    assert!(response.headers().get(SESSION_HEADER).is_none());
    assert!(sessions.is_empty());
    assert_eq!(store.loads(), 0);

    // The failure leaves no trace: once the store is back, the same user logs in.
    store.set_available(true);
    let started = tokio::time::Instant::now();
    let opened = app
        .clone()
        .oneshot(request(Method::POST, "/login", Some("bob"), None));
    let (response, body) = read(opened.await.unwrap()).await;
    // The paused clock makes the store's latency exact: the opening waited for the factory.
    assert_eq!(started.elapsed(), Duration::from_millis(5));
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()[SESSION_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        body,
        format!("Bob (free plan) POST /login: request 1 of session {id}\n")
    );
    assert_eq!(sessions.ids().len(), 1);
    assert_eq!(sessions.ids()[0].as_str(), id);
}

#[tokio::test(start_paused = true)]
async fn only_login_opens_and_delete_logs_out() {
    let store = Store::new(Duration::from_millis(5));
    let (app, sessions) = example::app(store);

    // Without a token, only `POST /login` opens a session.
    let response = app
        .clone()
        .oneshot(request(Method::GET, "/whoami", Some("bob"), None));
    let (response, body) = read(response.await.unwrap()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(body.contains("-32000"), "{body}");
    assert!(sessions.is_empty());

    // An unknown user still gets a session, with a guest profile.
    let opened = app
        .clone()
        .oneshot(request(Method::POST, "/login", Some("carol"), None));
    let (response, body) = read(opened.await.unwrap()).await;
    let id = response.headers()[SESSION_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(body.starts_with("carol (guest plan)"), "{body}");

    // Only `DELETE /logout` closes: a DELETE elsewhere is the session's own request.
    let other = app
        .clone()
        .oneshot(request(Method::DELETE, "/whoami", Some("carol"), Some(&id)));
    let (response, body) = read(other.await.unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body,
        format!("carol (guest plan) DELETE /whoami: request 2 of session {id}\n")
    );
    assert!(sessions.contains(&id));

    // DELETE /logout with the token closes the session; the token is then unknown.
    let logout = app
        .clone()
        .oneshot(request(Method::DELETE, "/logout", Some("carol"), Some(&id)));
    assert_eq!(logout.await.unwrap().status(), StatusCode::NO_CONTENT);
    assert!(sessions.is_empty());
    let after = app
        .clone()
        .oneshot(request(Method::GET, "/whoami", Some("carol"), Some(&id)));
    assert_eq!(after.await.unwrap().status(), StatusCode::NOT_FOUND);
}
