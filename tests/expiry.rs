//! Idle expiry, on tokio's paused clock: sessions unused for the idle timeout expire (404,
//! `CloseReason::Expired`), requests slide the timeout, an open response body keeps its
//! session busy, and the sweeper reclaims abandoned sessions on its own, even when the close
//! hook panics.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::time::{advance, sleep};
use tower::Layer;
use tower_mcp_session::{CloseReason, SessionLayer};

const IDLE: Duration = Duration::from_secs(60);
const SECOND: Duration = Duration::from_secs(1);
/// A sweep interval long enough that the sweeper never runs during a test.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

#[tokio::test(start_paused = true)]
async fn an_unused_session_expires_on_lookup_without_the_sweeper() {
    let Fixture(live, closed, sessions, app) =
        Fixture::mcp(|layer| layer.idle_timeout(IDLE).sweep_interval(NEVER));
    let id = open(&app).await;

    advance(IDLE - SECOND).await;
    // `contains` looks without using the session: it does not restart the timeout.
    assert!(sessions.contains(&id));
    advance(2 * SECOND).await;
    assert_eq!(
        sessions.len(),
        1,
        "not reclaimed yet: nobody looked and no sweep ran"
    );
    assert_eq!(closed.len(), 0);

    assert_not_found(send(&app, post(&id)).await).await;
    assert_eq!(closed.all(), [(id.clone(), CloseReason::Expired)]);
    assert_eq!(sessions.len(), 0, "the lookup removed the expired session");
    assert_eq!(live.alive(), 0);
    // And it stays gone.
    assert_not_found(send(&app, get(&id)).await).await;
    assert_not_found(send(&app, delete(&id)).await).await;
    assert_eq!(closed.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn sessions_handle_lookups_also_expire() {
    let Fixture(_, closed, sessions, app) =
        Fixture::mcp(|layer| layer.idle_timeout(IDLE).sweep_interval(NEVER));
    let id = open(&app).await;
    advance(IDLE + SECOND).await;
    assert!(sessions.get(&id).is_none());
    assert!(!sessions.contains(&id));
    assert_eq!(sessions.len(), 0);
    assert_eq!(closed.all(), [(id, CloseReason::Expired)]);
}

#[tokio::test(start_paused = true)]
async fn requests_inside_the_timeout_keep_the_session_alive() {
    let Fixture(live, closed, sessions, app) =
        Fixture::mcp(|layer| layer.idle_timeout(IDLE).sweep_interval(5 * SECOND));
    let id = open(&app).await;

    // Ten requests 50 s apart: 500 s in all, far past the 60 s timeout.
    for n in 2..=11 {
        sleep(50 * SECOND).await;
        let echo = body_json(send(&app, post(&id)).await).await;
        assert_eq!(echo["n"], n);
    }
    assert_eq!(closed.len(), 0);

    // Then silence: the sweeper reclaims it.
    sleep(IDLE + 10 * SECOND).await;
    assert_eq!(sessions.len(), 0);
    assert_eq!(closed.all(), [(id.clone(), CloseReason::Expired)]);
    assert_eq!(live.alive(), 0);
    assert_not_found(send(&app, post(&id)).await).await;
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_alone_reclaims_abandoned_sessions() {
    let Fixture(live, closed, sessions, app) =
        Fixture::mcp(|layer| layer.idle_timeout(IDLE).sweep_interval(5 * SECOND));
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(open(&app).await);
    }
    sleep(30 * SECOND).await;
    let late = open(&app).await;
    assert_eq!(sessions.len(), 4);

    // Nobody sends another request; only time passes.
    sleep(IDLE - 20 * SECOND).await;
    assert_eq!(sessions.len(), 1, "the three early sessions were swept");
    assert!(
        ids.iter()
            .all(|id| closed.reasons_of(id) == [CloseReason::Expired])
    );
    assert_eq!(live.alive(), 1);

    sleep(IDLE).await;
    assert_eq!(sessions.len(), 0);
    assert_eq!(closed.reasons_of(&late), [CloseReason::Expired]);
    assert_eq!(closed.len(), 4);
    assert_eq!(live.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_open_response_body_keeps_its_session_from_expiring() {
    let Fixture(live, closed, sessions, app) =
        Fixture::mcp(|layer| layer.idle_timeout(IDLE).sweep_interval(5 * SECOND));
    let id = open(&app).await;

    let mut body = send(&app, get_stream(&id)).await.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), FIRST_EVENT);

    // Ten idle timeouts pass with the stream open and no request: the session is busy.
    sleep(10 * IDLE).await;
    assert_eq!(sessions.len(), 1);
    assert!(sessions.contains(&id));
    assert_eq!(closed.len(), 0);
    assert!(
        body.frame().now_or_never().is_none(),
        "the stream was ended"
    );

    // The stream closes (client went away); the idle timeout starts from there.
    drop(body);
    sleep(IDLE - 10 * SECOND).await;
    assert_eq!(
        sessions.len(),
        1,
        "expired before the timeout after the body was dropped"
    );
    sleep(20 * SECOND).await;
    assert_eq!(sessions.len(), 0);
    assert_eq!(closed.all(), [(id.clone(), CloseReason::Expired)]);
    assert_eq!(live.alive(), 0);
    assert_not_found(send(&app, post(&id)).await).await;
}

#[tokio::test(start_paused = true)]
async fn an_unread_response_keeps_its_session_busy_too() {
    let Fixture(_, _, sessions, app) =
        Fixture::mcp_unhooked(|layer| layer.idle_timeout(IDLE).sweep_interval(NEVER));
    let id = open(&app).await;
    // The response has arrived but its body is not read yet.
    let pending = send(&app, post(&id)).await;
    advance(3 * IDLE).await;
    assert!(
        sessions.contains(&id),
        "a session with a response in flight expired"
    );
    drop(pending);
    advance(IDLE + SECOND).await;
    assert!(!sessions.contains(&id));

    // The same holds for the answer to initialize.
    let opening = send(&app, initialize()).await;
    let id = session_id_of(&opening).unwrap();
    advance(3 * IDLE).await;
    assert!(
        sessions.contains(&id),
        "a session with its opening answer unread expired"
    );
    drop(opening);
    advance(IDLE + SECOND).await;
    assert!(!sessions.contains(&id));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_close_hook_does_not_stop_the_sweeper() {
    let live = Live::default();
    let hook_calls = Arc::new(AtomicUsize::new(0));
    let layer = SessionLayer::mcp(echo_factory(&live))
        .idle_timeout(IDLE)
        .sweep_interval(5 * SECOND)
        .on_close({
            let hook_calls = Arc::clone(&hook_calls);
            move |_, _| {
                hook_calls.fetch_add(1, Ordering::SeqCst);
                panic!("close hook failure (expected by this test)");
            }
        })
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    for round in 1..=3 {
        let id = open(&app).await;
        sleep(IDLE + 10 * SECOND).await;
        assert_eq!(hook_calls.load(Ordering::SeqCst), round);
        assert_eq!(
            sessions.len(),
            0,
            "round {round}: the sweeper stopped sweeping"
        );
        assert_eq!(live.alive(), 0);
        assert_not_found(send(&app, post(&id)).await).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_close_hook_does_not_break_a_request() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live))
        .idle_timeout(IDLE)
        .sweep_interval(NEVER)
        .on_close(|_, _| panic!("close hook failure (expected by this test)"))
        .build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);
    let expiring = open(&app).await;
    advance(IDLE + SECOND).await;
    let deleted = open(&app).await;
    // Closed by the lookup of a request, and by DELETE: the hook panics both times.
    assert_not_found(send(&app, post(&expiring)).await).await;
    assert_eq!(
        status_of(&app, delete(&deleted)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(sessions.len(), 0);
    assert_eq!(live.alive(), 0);
    // The layer still works.
    let id = open(&app).await;
    assert_eq!(status_of(&app, post(&id)).await, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn the_default_idle_timeout_is_30_minutes() {
    let Fixture(_, _, sessions, app) = Fixture::mcp_unhooked(|layer| layer);
    let a = open(&app).await;
    let b = open(&app).await;
    advance(Duration::from_secs(29 * 60)).await;
    assert_eq!(status_of(&app, post(&a)).await, StatusCode::OK);
    advance(Duration::from_secs(2 * 60)).await;
    assert!(sessions.contains(&a));
    assert_not_found(send(&app, post(&b)).await).await;
}

#[tokio::test(start_paused = true)]
async fn without_idle_timeout_sessions_never_expire() {
    let Fixture(_, _, sessions, app) = Fixture::mcp_unhooked(|layer| layer.without_idle_timeout());
    let id = open(&app).await;
    sleep(Duration::from_secs(90 * 24 * 3600)).await;
    assert_eq!(sessions.sweep(), 0);
    assert_eq!(body_json(send(&app, post(&id)).await).await["n"], 2);
}
