//! DELETE with a session id closes the session: 204, then 404 for that id; open response
//! streams of the session end and its service is dropped.

mod common;

use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use http::StatusCode;
use http_body_util::BodyExt;
use tower_mcp_session::CloseReason;

#[tokio::test]
async fn delete_closes_the_session() {
    let Fixture(live, closed, sessions, app) = Fixture::mcp(|layer| layer);
    let id = open(&app).await;
    let other = open(&app).await;

    // MCP clients send DELETE with only the session id (no Accept, no body).
    let resp = send(&app, delete(&id)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.headers().get(SESSION_HEADER).is_none());
    assert_eq!(body_string(resp).await, "");

    assert_eq!(closed.all(), [(id.clone(), CloseReason::Deleted)]);
    assert!(!sessions.contains(&id));
    assert_eq!(sessions.len(), 1);
    assert_eq!(live.alive(), 1, "the deleted session's service is dropped");

    assert_not_found(send(&app, post(&id)).await).await;
    assert_not_found(send(&app, get(&id)).await).await;
    // DELETE twice: the second finds nothing.
    assert_not_found(send(&app, delete(&id)).await).await;
    assert_eq!(closed.len(), 1, "the hook runs once per session");

    // The other session is untouched.
    assert_eq!(body_json(send(&app, post(&other)).await).await["n"], 2);
}

#[tokio::test]
async fn delete_of_an_unknown_id_is_404_not_202() {
    let Fixture(_, closed, sessions, app) = Fixture::mcp(|layer| layer);
    let id = open(&app).await;
    for unknown in ["3f1c2b4a-0000-4000-8000-000000000000", "never-issued"] {
        assert_not_found(send(&app, delete(unknown)).await).await;
    }
    assert_eq!(closed.len(), 0);
    assert!(sessions.contains(&id));
}

#[tokio::test]
async fn delete_ends_an_open_stream_and_drops_the_service_with_the_body() {
    let Fixture(live, closed, sessions, app) = Fixture::mcp(|layer| layer);
    let id = open(&app).await;
    let other = open(&app).await;

    let resp = send(&app, get_stream(&id)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = resp.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), FIRST_EVENT);
    // The stream stays open while the session lives.
    assert!(
        body.frame().now_or_never().is_none(),
        "the endless body ended by itself"
    );

    // A stream of another session, which DELETE must leave alone.
    let mut other_body = send(&app, get_stream(&other)).await.into_body();
    assert_eq!(next_data(&mut other_body).await.unwrap(), FIRST_EVENT);

    assert_eq!(status_of(&app, delete(&id)).await, StatusCode::NO_CONTENT);
    assert_eq!(closed.all(), [(id.clone(), CloseReason::Deleted)]);

    // The bound only keeps a broken build from hanging; the body should end at once.
    assert!(
        ends_within(&mut body, Duration::from_secs(1)).await,
        "the open stream of a deleted session did not end"
    );
    assert!(http_body::Body::is_end_stream(&body));
    drop(body);
    assert_eq!(
        live.alive(),
        1,
        "the deleted session's service outlived its last body"
    );

    assert!(
        other_body.frame().now_or_never().is_none(),
        "another session's stream ended"
    );
    assert!(sessions.contains(&other));
    assert_not_found(send(&app, post(&id)).await).await;
    drop(other_body);
}

#[tokio::test]
async fn delete_wakes_a_reader_waiting_on_the_stream() {
    let Fixture(live, closed, _, app) = Fixture::mcp(|layer| layer);
    let id = open(&app).await;

    let resp = send(&app, get_stream(&id)).await;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    // The reader receives the first event, then waits for more (registering its waker).
    let reader = tokio::spawn(async move {
        let mut body = resp.into_body();
        let first = next_data(&mut body).await;
        ready_tx.send(()).unwrap();
        let mut rest = Vec::new();
        while let Some(frame) = body.frame().await {
            rest.push(frame.unwrap());
        }
        (first, rest.len())
    });
    ready_rx.await.unwrap();
    tokio::task::yield_now().await;

    assert_eq!(status_of(&app, delete(&id)).await, StatusCode::NO_CONTENT);
    let (first, more) = tokio::time::timeout(Duration::from_secs(1), reader)
        .await
        .expect("the waiting reader was not woken when its session was deleted")
        .unwrap();
    assert_eq!(first.unwrap(), FIRST_EVENT);
    assert_eq!(more, 0);
    assert_eq!(live.alive(), 0);
    assert_eq!(closed.all(), [(id, CloseReason::Deleted)]);
}

#[tokio::test]
async fn delete_while_a_request_is_in_flight_answers_both() {
    // The in-flight request's response was already produced when DELETE arrives: it is
    // delivered; everything after the DELETE gets 404; the service goes with the last body.
    let Fixture(live, _, sessions, app) = Fixture::mcp_unhooked(|layer| layer);
    let id = open(&app).await;

    let in_flight = send(&app, post(&id)).await;
    assert_eq!(in_flight.status(), StatusCode::OK);
    assert_eq!(status_of(&app, delete(&id)).await, StatusCode::NO_CONTENT);
    assert_eq!(sessions.len(), 0);
    // A complete answer (exact size hint) already produced is delivered whole, byte for byte.
    let text = body_string(in_flight).await;
    let echo: serde_json::Value = serde_json::from_str(&text).expect("the whole JSON answer");
    assert_eq!(
        echo,
        serde_json::json!({
            "session": id,
            "seen": id,
            "principal": null,
            "n": 2,
            "method": "POST",
            "body": rpc_body(2, "tools/list"),
        })
    );
    assert_eq!(live.alive(), 0);
    assert_not_found(send(&app, post(&id)).await).await;
}

/// `http_body::Body::size_hint` must be honoured: hyper sends an exact hint as
/// `Content-Length` and aborts the connection if the body then ends early. An answer the
/// session's service had already produced in full when DELETE arrived is delivered whole.
#[tokio::test]
async fn a_body_cut_by_delete_honours_its_size_hint() {
    let Fixture(_, _, _, app) = Fixture::mcp_unhooked(|layer| layer);
    let id = open(&app).await;

    let answer = send(&app, post(&id)).await;
    let hint = http_body::Body::size_hint(answer.body()).exact();
    assert!(hint.is_some(), "a complete JSON answer has an exact size");
    assert_eq!(status_of(&app, delete(&id)).await, StatusCode::NO_CONTENT);
    let text = body_string(answer).await;
    assert_eq!(
        Some(text.len() as u64),
        hint,
        "the body broke its size hint: {text:?}"
    );
}
