//! Many open / use / close cycles leave nothing behind: the table is empty, every
//! per-session service has been dropped, and no closed id ever answers again.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use http::StatusCode;
use tower_mcp_session::CloseReason;

const IDLE: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn a_thousand_cycles_leave_nothing_behind() {
    const CYCLES: usize = 1000;
    let Fixture(live, closed, sessions, app) =
        Fixture::mcp(|layer| layer.idle_timeout(IDLE).max_sessions(8));
    let mut seen = HashSet::new();
    let mut refused = 0;

    for i in 0..CYCLES {
        // Now and then an initialize the session's service refuses: nothing may stay.
        if i % 10 == 9 {
            let mut req = initialize();
            req.headers_mut().insert(RESPOND_STATUS, 500.into());
            let resp = send(&app, req).await;
            assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(session_id_of(&resp).is_none());
            body_string(resp).await;
            refused += 1;
        }

        let id = open(&app).await;
        assert!(seen.insert(id.clone()), "cycle {i}: id {id} came back");
        let echo = body_json(send(&app, post(&id)).await).await;
        assert_eq!(
            (echo["session"].as_str(), echo["n"].as_u64()),
            (Some(id.as_str()), Some(2))
        );

        match i % 4 {
            0 => assert_eq!(status_of(&app, delete(&id)).await, StatusCode::NO_CONTENT),
            1 => assert!(sessions.close(&id)),
            // Expired, found by the next request (or by the sweeper first).
            2 => {
                tokio::time::advance(IDLE + Duration::from_secs(1)).await;
                assert_not_found(send(&app, post(&id)).await).await;
            }
            // Expired, reclaimed with nobody asking.
            _ => {
                tokio::time::advance(IDLE + Duration::from_secs(1)).await;
                sessions.sweep();
                assert!(!sessions.ids().iter().any(|live| live.as_str() == id));
            }
        }
        assert_eq!(
            sessions.len(),
            0,
            "cycle {i}: a session stayed in the table"
        );
        assert_eq!(
            live.alive(),
            0,
            "cycle {i}: a per-session service was not dropped"
        );
        assert_not_found(send(&app, get(&id)).await).await;
    }

    assert_eq!(live.made(), CYCLES + refused);
    let all = closed.all();
    assert_eq!(
        all.len(),
        CYCLES,
        "one close per stored session, none for refused ones"
    );
    let count = |reason| all.iter().filter(|(_, r)| *r == reason).count();
    assert_eq!(count(CloseReason::Deleted), CYCLES / 4);
    assert_eq!(count(CloseReason::Closed), CYCLES / 4);
    assert_eq!(count(CloseReason::Expired), CYCLES / 2);
    assert_eq!(
        all.iter().map(|(id, _)| id).collect::<HashSet<_>>().len(),
        CYCLES
    );

    // No closed id is ever valid again.
    for id in &seen {
        assert_not_found(send(&app, post(id)).await).await;
    }
    assert_eq!(sessions.len(), 0);
    assert_eq!(live.alive(), 0);
    assert_eq!(closed.len(), CYCLES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_and_deletes_get_well_defined_answers_and_leak_nothing() {
    const WORKERS: usize = 4;
    const CYCLES: usize = 100;
    let Fixture(live, closed, sessions, app) = Fixture::mcp(|layer| layer);

    let workers = (0..WORKERS).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..CYCLES {
                let id = open(&app).await;
                // A request, a stream, and two DELETEs, all at once.
                // Each on its own task, so the two worker threads interleave them.
                let spawn = |req| {
                    let app = app.clone();
                    tokio::spawn(async move { send(&app, req).await })
                };
                let (post_resp, stream_resp, del1, del2) = tokio::join!(
                    spawn(post(&id)),
                    spawn(get_stream(&id)),
                    spawn(delete(&id)),
                    spawn(delete(&id)),
                );
                let (post_resp, stream_resp, del1, del2) = (
                    post_resp.unwrap(),
                    stream_resp.unwrap(),
                    del1.unwrap(),
                    del2.unwrap(),
                );
                let post_status = post_resp.status();
                assert!(
                    [StatusCode::OK, StatusCode::NOT_FOUND].contains(&post_status),
                    "{post_status}"
                );
                let text = body_string(post_resp).await;
                if post_status == StatusCode::NOT_FOUND {
                    assert_eq!(text, NOT_FOUND_BODY);
                } else {
                    // The echo's answer has an exact size: delivered whole even when the
                    // DELETE lands before it is read. `n` is 2 or 3: the stream may have
                    // reached the session's service first.
                    let echo: serde_json::Value =
                        serde_json::from_str(&text).expect("the whole JSON answer");
                    let n = echo["n"].as_u64().expect("a request number");
                    assert!(n == 2 || n == 3, "{echo}");
                    assert_eq!(
                        echo,
                        serde_json::json!({
                            "session": id,
                            "seen": id,
                            "principal": null,
                            "n": n,
                            "method": "POST",
                            "body": rpc_body(2, "tools/list"),
                        })
                    );
                }
                match stream_resp.status() {
                    StatusCode::OK => {
                        let mut body = stream_resp.into_body();
                        assert!(
                            ends_within(&mut body, Duration::from_secs(1)).await,
                            "a stream outlived the DELETE of its session"
                        );
                    }
                    StatusCode::NOT_FOUND => assert_not_found(stream_resp).await,
                    other => panic!("stream got {other}"),
                }
                let mut deletes = [del1.status(), del2.status()];
                deletes.sort();
                assert_eq!(
                    deletes,
                    [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND],
                    "exactly one DELETE closes the session"
                );
                body_string(del1).await;
                body_string(del2).await;
                ids.push(id);
            }
            ids
        })
    });
    let mut all_ids = HashSet::new();
    for worker in futures_util::future::join_all(workers).await {
        for id in worker.unwrap() {
            assert!(all_ids.insert(id));
        }
    }

    assert_eq!(sessions.len(), 0);
    assert_eq!(live.made(), WORKERS * CYCLES);
    assert_eq!(live.alive(), 0, "a per-session service leaked");
    assert_eq!(closed.len(), WORKERS * CYCLES);
    assert!(closed.all().iter().all(|(_, r)| *r == CloseReason::Deleted));
    for id in all_ids.iter().take(50) {
        assert_not_found(send(&app, post(id)).await).await;
    }
}
