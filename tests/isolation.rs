//! Sessions never see each other's service, and the requests of one session run concurrently.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use common::*;
use futures_util::future::join_all;
use http::{Request, Response, StatusCode};
use tokio::sync::Barrier;
use tower::{Layer, service_fn};
use tower_mcp_session::{Session, SessionInfo, SessionLayer};

#[tokio::test]
async fn two_sessions_have_independent_services() {
    let Fixture(live, _, _, app) = Fixture::mcp_unhooked(|layer| layer);
    let a = open(&app).await;
    let b = open(&app).await;
    assert_ne!(a, b);

    for expected in 2..=4 {
        let echo = body_json(send(&app, post(&a)).await).await;
        assert_eq!(echo["session"], a.as_str());
        assert_eq!(echo["seen"], a.as_str());
        assert_eq!(echo["n"], expected);
    }
    let echo = body_json(send(&app, post(&b)).await).await;
    assert_eq!(echo["session"], b.as_str());
    assert_eq!(echo["seen"], b.as_str());
    assert_eq!(echo["n"], 2, "B's counter is untouched by A's requests");
    let echo = body_json(send(&app, get(&a)).await).await;
    assert_eq!(echo["n"], 5, "A's counter is untouched by B's requests");
    assert_eq!(live.made(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_under_concurrent_traffic_stay_apart() {
    const SESSIONS: usize = 40;
    const ROUNDS: usize = 10;
    let Fixture(live, _, _, app) = Fixture::mcp_unhooked(|layer| layer);
    let ids = join_all((0..SESSIONS).map(|_| open(&app))).await;

    // Every session gets ROUNDS requests, all in flight at once, interleaved across sessions.
    let requests = (0..ROUNDS).flat_map(|_| ids.iter().cloned());
    let tasks = requests.map(|id| {
        let app = app.clone();
        tokio::spawn(async move {
            let echo = body_json(send(&app, post(&id)).await).await;
            (id, echo)
        })
    });
    let mut counts: HashMap<String, Vec<u64>> = HashMap::new();
    for task in join_all(tasks).await {
        let (id, echo) = task.unwrap();
        assert_eq!(
            echo["session"],
            id.as_str(),
            "a request reached another session's service"
        );
        assert_eq!(echo["seen"], id.as_str());
        counts
            .entry(id)
            .or_default()
            .push(echo["n"].as_u64().unwrap());
    }
    assert_eq!(counts.len(), SESSIONS);
    for (id, mut seen) in counts {
        seen.sort_unstable();
        let expected: Vec<u64> = (2..=ROUNDS as u64 + 1).collect();
        assert_eq!(seen, expected, "session {id} counted only its own requests");
    }
    assert_eq!(live.made(), SESSIONS);
}

#[tokio::test]
async fn requests_of_one_session_run_concurrently() {
    // Each session's service holds every request until a second one of the same session
    // arrives: if the layer ran a session's requests one at a time, this would never finish.
    let factory = |_info: SessionInfo, _inner: Inner| async move {
        let barrier = Arc::new(Barrier::new(2));
        Ok::<_, Infallible>(service_fn(move |req: Request<Body>| {
            let barrier = Arc::clone(&barrier);
            async move {
                let is_initialize = req.extensions().get::<Session>().is_some()
                    && req.headers().get(SESSION_HEADER).is_none();
                if !is_initialize {
                    barrier.wait().await;
                }
                Ok::<_, Infallible>(Response::new(full("done")))
            }
        }))
    };
    let app = SessionLayer::mcp(factory).build().layer(Inner);
    let a = open(&app).await;
    let b = open(&app).await;

    // Two requests of A at once, and two of B: each pair meets at its own barrier.
    let (a1, a2, b1, b2) = tokio::time::timeout(WAIT, async {
        tokio::join!(
            send(&app, post(&a)),
            send(&app, get(&a)),
            send(&app, post(&b)),
            send(&app, post(&b)),
        )
    })
    .await
    .expect("concurrent requests of one session were not served concurrently");
    for resp in [a1, a2, b1, b2] {
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body_string(resp).await, "done");
    }
}

#[tokio::test]
async fn a_post_is_served_while_a_stream_of_the_same_session_is_open() {
    let Fixture(_, _, _, app) = Fixture::mcp_unhooked(|layer| layer);
    let id = open(&app).await;
    let other = open(&app).await;

    let stream = send(&app, get_stream(&id)).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let mut stream = stream.into_body();
    assert_eq!(next_data(&mut stream).await.unwrap(), FIRST_EVENT);

    let echo = body_json(send(&app, post(&id)).await).await;
    assert_eq!(echo["session"], id.as_str());
    assert_eq!(echo["n"], 3);
    let echo = body_json(send(&app, post(&other)).await).await;
    assert_eq!(echo["session"], other.as_str());
    assert_eq!(echo["n"], 2);
    drop(stream);
}
