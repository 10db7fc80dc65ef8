//! Sessions bound to a principal (MCP 2025-11-25, Security Best Practices, Session
//! Hijacking): another principal, or none, gets exactly the 404 of an unknown id.

mod common;

use std::time::Duration;

use common::*;
use http::{Request, StatusCode};
use tower_mcp_session::{CloseReason, Principal, SessionLayerBuilder};

/// What an authentication layer in front of the session layer would insert.
#[derive(Clone)]
struct User(&'static str);

fn as_user(mut req: Request<ReqBody>, user: &'static str) -> Request<ReqBody> {
    req.extensions_mut().insert(User(user));
    req
}

/// Binds each session to the [`User`] of its opening request.
fn by_user(layer: SessionLayerBuilder<EchoFactory>) -> SessionLayerBuilder<EchoFactory> {
    layer.principal(|parts| parts.extensions.get::<User>().map(|u| Principal::from(u.0)))
}

async fn open_as<S>(app: &S, user: &'static str) -> String
where
    S: tower::Service<Request<ReqBody>, Response = Resp, Error = std::convert::Infallible> + Clone,
{
    let resp = send(app, as_user(initialize(), user)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let id = session_id_of(&resp).unwrap();
    let echo = body_json(resp).await;
    assert_eq!(
        echo["principal"], user,
        "the SessionInfo carries the principal"
    );
    id
}

/// Status, headers and body of a response, for comparing two rejections.
async fn parts_of(resp: Resp) -> (StatusCode, http::HeaderMap, String) {
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, body_string(resp).await)
}

#[tokio::test]
async fn the_same_principal_is_routed() {
    let Fixture(_, _, sessions, app) = Fixture::mcp(by_user);
    let id = open_as(&app, "alice").await;
    assert_eq!(
        sessions.get(&id).unwrap().principal(),
        Some(&Principal::from("alice"))
    );
    let echo = body_json(send(&app, as_user(post(&id), "alice")).await).await;
    assert_eq!(echo["session"], id.as_str());
    assert_eq!(echo["principal"], "alice");
    assert_eq!(echo["n"], 2);
}

#[tokio::test]
async fn another_or_no_principal_gets_the_404_of_an_unknown_id() {
    let Fixture(_, closed, sessions, app) = Fixture::mcp(by_user);
    let id = open_as(&app, "alice").await;
    let unknown = "6d9c1f0e-2b3a-4c5d-8e7f-001122334455";

    for req in [
        |id: &str| as_user(post(id), "mallory"),
        |id: &str| as_user(get(id), "mallory"),
        |id: &str| post(id),
        |id: &str| get(id),
    ] {
        let foreign = parts_of(send(&app, req(&id)).await).await;
        let reference = parts_of(send(&app, req(unknown)).await).await;
        assert_eq!(foreign.0, StatusCode::NOT_FOUND);
        assert_eq!(foreign.2, NOT_FOUND_BODY);
        assert_eq!(
            foreign, reference,
            "a foreign principal must look like an unknown id"
        );
    }
    // None of it reached alice's service or closed the session.
    let echo = body_json(send(&app, as_user(post(&id), "alice")).await).await;
    assert_eq!(echo["n"], 2);
    assert!(sessions.contains(&id));
    assert_eq!(closed.len(), 0);
}

#[tokio::test]
async fn delete_by_another_principal_is_404_and_the_session_survives() {
    let Fixture(live, closed, sessions, app) = Fixture::mcp(by_user);
    let id = open_as(&app, "alice").await;

    let foreign = parts_of(send(&app, as_user(delete(&id), "mallory")).await).await;
    let anonymous = parts_of(send(&app, delete(&id)).await).await;
    let unknown = parts_of(send(&app, as_user(delete("no-such-id"), "mallory")).await).await;
    assert_eq!(foreign.0, StatusCode::NOT_FOUND);
    assert_eq!(foreign, unknown);
    assert_eq!(anonymous, unknown);
    assert!(sessions.contains(&id));
    assert_eq!(closed.len(), 0);
    assert_eq!(live.alive(), 1);

    // Alice can still use it, and delete it.
    assert_eq!(
        status_of(&app, as_user(post(&id), "alice")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, as_user(delete(&id), "alice")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(closed.all(), [(id, CloseReason::Deleted)]);
}

#[tokio::test]
async fn two_principals_each_keep_their_own_session() {
    let Fixture(_, _, _, app) = Fixture::mcp(by_user);
    let alice = open_as(&app, "alice").await;
    let bob = open_as(&app, "bob").await;
    assert_not_found(send(&app, as_user(post(&alice), "bob")).await).await;
    assert_not_found(send(&app, as_user(post(&bob), "alice")).await).await;
    let echo = body_json(send(&app, as_user(post(&bob), "bob")).await).await;
    assert_eq!(
        (echo["session"].as_str(), echo["n"].as_u64()),
        (Some(bob.as_str()), Some(2))
    );
}

/// A foreign principal's request must have no effect on the session, as for an unknown id:
/// it must not restart the idle timeout (else whoever holds a stolen id could keep the
/// victim's session alive forever, and shield it from eviction).
#[tokio::test(start_paused = true)]
async fn a_foreign_principal_does_not_keep_a_session_alive() {
    const IDLE: Duration = Duration::from_secs(60);
    let Fixture(_, closed, sessions, app) = Fixture::mcp(|layer| {
        by_user(layer)
            .idle_timeout(IDLE)
            .sweep_interval(Duration::from_secs(3600))
    });
    let id = open_as(&app, "alice").await;

    tokio::time::advance(Duration::from_secs(40)).await;
    assert_not_found(send(&app, as_user(post(&id), "mallory")).await).await;
    tokio::time::advance(Duration::from_secs(25)).await;
    // 65 s since alice last used it: expired, whatever mallory did.
    assert!(
        !sessions.contains(&id),
        "mallory's 404 request kept alice's session alive"
    );
    assert_eq!(closed.all(), [(id, CloseReason::Expired)]);
}
