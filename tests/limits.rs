//! The session limit: past `max_sessions` an open gets 503 with `Retry-After`, or, with
//! eviction, the idlest session with nothing in flight is closed to make room.

mod common;

use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use http::{StatusCode, header};
use http_body_util::BodyExt;
use tokio::time::advance;
use tower_mcp_session::{CloseReason, Eviction};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn the_session_past_the_limit_gets_503_until_one_closes() {
    let Fixture(live, closed, sessions, app) = Fixture::mcp(|layer| layer.max_sessions(3));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(open(&app).await);
    }

    for _ in 0..5 {
        let resp = send(&app, initialize()).await;
        let headers = assert_rejection(resp, StatusCode::SERVICE_UNAVAILABLE, -32000).await;
        assert_eq!(headers[header::RETRY_AFTER], "5");
    }
    assert_eq!(sessions.len(), 3);
    assert_eq!(
        live.made(),
        3,
        "no per-session service is built for a refused open"
    );
    assert_eq!(closed.len(), 0, "nothing is evicted unless asked for");
    // The sessions already open keep working.
    for id in &ids {
        assert_eq!(status_of(&app, post(id)).await, StatusCode::OK);
    }

    // A DELETE makes room for exactly one more.
    assert_eq!(
        status_of(&app, delete(&ids[0])).await,
        StatusCode::NO_CONTENT
    );
    let newcomer = open(&app).await;
    assert_eq!(sessions.len(), 3);
    assert_eq!(
        status_of(&app, initialize()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // So does `Sessions::close`.
    assert!(sessions.close(&newcomer));
    open(&app).await;
    assert_eq!(sessions.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_never_exceed_the_limit() {
    const MAX: usize = 10;
    let Fixture(_, _, sessions, app) = Fixture::mcp_unhooked(|layer| layer.max_sessions(MAX));
    let tasks = (0..60).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { status_of(&app, initialize()).await })
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let full = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(ok, MAX, "{statuses:?}");
    assert_eq!(full, 60 - MAX, "{statuses:?}");
    assert_eq!(sessions.len(), MAX);
}

#[tokio::test(start_paused = true)]
async fn evict_idlest_closes_the_session_idle_the_longest() {
    let Fixture(live, closed, sessions, app) =
        Fixture::mcp(|layer| layer.max_sessions(3).eviction(Eviction::LastRequest));
    let a = open(&app).await;
    advance(SECOND).await;
    let b = open(&app).await;
    advance(SECOND).await;
    let c = open(&app).await;
    advance(SECOND).await;
    // A is the oldest but was just used: B is now the idlest.
    assert_eq!(status_of(&app, post(&a)).await, StatusCode::OK);
    advance(SECOND).await;

    let d = open(&app).await;
    assert_eq!(closed.all(), [(b.clone(), CloseReason::Evicted)]);
    assert_eq!(sessions.len(), 3);
    assert_not_found(send(&app, post(&b)).await).await;
    assert_eq!(live.alive(), 3, "the evicted session's service was dropped");

    advance(SECOND).await;
    let _e = open(&app).await;
    assert_eq!(closed.reasons_of(&c), [CloseReason::Evicted]);
    for id in [&a, &d] {
        assert_eq!(status_of(&app, post(id)).await, StatusCode::OK);
    }
}

#[tokio::test(start_paused = true)]
async fn evict_by_last_activity_never_evicts_a_session_with_a_request_in_flight() {
    // `Eviction::LastActivity`: a session with a request or response body in flight is never
    // evicted (the default, `LastRequest`, may evict a session whose only activity is an
    // open stream; see `evict_by_last_request_may_evict_a_session_with_an_open_stream`).
    let Fixture(_, closed, sessions, app) =
        Fixture::mcp(|layer| layer.max_sessions(2).eviction(Eviction::LastActivity));

    // A is the idlest by its clock (used first) but has an open stream.
    let a = open(&app).await;
    let mut stream = send(&app, get_stream(&a)).await.into_body();
    assert_eq!(next_data(&mut stream).await.unwrap(), FIRST_EVENT);
    advance(10 * SECOND).await;
    let b = open(&app).await;
    advance(10 * SECOND).await;

    let _c = open(&app).await;
    assert_eq!(
        closed.all(),
        [(b.clone(), CloseReason::Evicted)],
        "B, not the busy A"
    );
    assert!(sessions.contains(&a));

    // With C's opening answer still unread, both sessions are busy: nothing to evict.
    let c_pending = send(&app, initialize()).await;
    assert_eq!(c_pending.status(), StatusCode::OK);
    let headers = assert_rejection(
        send(&app, initialize()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        -32000,
    )
    .await;
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert!(
        stream.frame().now_or_never().is_none(),
        "A's stream was ended"
    );
    assert!(sessions.contains(&a));
    assert_eq!(closed.len(), 2, "only _c was evicted for c_pending");

    // Once A's stream is gone, A can be evicted (it went idle first).
    let pending_id = session_id_of(&c_pending).unwrap();
    drop(stream);
    advance(SECOND).await;
    drop(c_pending);
    advance(SECOND).await;
    open(&app).await;
    assert_eq!(closed.reasons_of(&a), [CloseReason::Evicted]);
    assert!(sessions.contains(&pending_id));
    assert_eq!(sessions.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn evict_by_last_request_may_evict_a_session_with_an_open_stream() {
    // The default ranking is the start of the last request: A's stream was opened first, so
    // A is the victim, and its stream ends.
    let Fixture(_, closed, sessions, app) =
        Fixture::mcp(|layer| layer.max_sessions(2).eviction(Eviction::LastRequest));
    let a = open(&app).await;
    let mut stream = send(&app, get_stream(&a)).await.into_body();
    assert_eq!(next_data(&mut stream).await.unwrap(), FIRST_EVENT);
    advance(10 * SECOND).await;
    let b = open(&app).await;
    advance(10 * SECOND).await;

    let c = open(&app).await;
    assert_eq!(closed.all(), [(a.clone(), CloseReason::Evicted)]);
    assert!(ends_within(&mut stream, WAIT).await, "A's stream ended");
    assert!(!sessions.contains(&a));
    assert!(sessions.contains(&b) && sessions.contains(&c));
    assert_eq!(sessions.len(), 2);
}
