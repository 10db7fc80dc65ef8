//! `Sessions::shutdown` closes every session and refuses new ones; `Sessions::close` closes
//! one. Both end the open response streams of the sessions they close.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use futures_util::FutureExt;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tower::{Layer, Service};
use tower_mcp_session::{CloseReason, SessionInfo, SessionLayer, WeakSessions};

#[tokio::test]
async fn shutdown_closes_everything_and_refuses_new_sessions() {
    let Fixture(live, closed, sessions, app) = Fixture::mcp(|layer| layer);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(open(&app).await);
    }
    let mut stream = send(&app, get_stream(&ids[0])).await.into_body();
    assert_eq!(next_data(&mut stream).await.unwrap(), FIRST_EVENT);
    assert!(!sessions.is_shut_down());

    assert_eq!(sessions.shutdown(), 3);
    assert!(sessions.is_shut_down());
    assert_eq!(sessions.len(), 0);
    assert_eq!(closed.len(), 3);
    for id in &ids {
        assert_eq!(closed.reasons_of(id), [CloseReason::Shutdown]);
    }

    assert!(
        ends_within(&mut stream, Duration::from_secs(1)).await,
        "an open stream outlived shutdown"
    );
    drop(stream);
    assert_eq!(live.alive(), 0, "every per-session service was dropped");

    for id in &ids {
        assert_not_found(send(&app, post(id)).await).await;
        assert_not_found(send(&app, get(id)).await).await;
        assert_not_found(send(&app, delete(id)).await).await;
    }
    let headers = assert_rejection(
        send(&app, initialize()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        -32000,
    )
    .await;
    assert!(
        headers.get(header::RETRY_AFTER).is_none(),
        "no Retry-After: the server is going away"
    );
    assert_eq!(live.made(), 3, "no service is built after shutdown");
    assert_eq!(
        sessions.shutdown(),
        0,
        "a second shutdown has nothing to close"
    );
    assert_eq!(closed.len(), 3);
}

#[tokio::test]
async fn close_closes_one_session() {
    let Fixture(live, closed, sessions, app) = Fixture::mcp(|layer| layer);
    let id = open(&app).await;
    let other = open(&app).await;
    let mut stream = send(&app, get_stream(&id)).await.into_body();
    assert_eq!(next_data(&mut stream).await.unwrap(), FIRST_EVENT);
    let mut other_stream = send(&app, get_stream(&other)).await.into_body();
    assert_eq!(next_data(&mut other_stream).await.unwrap(), FIRST_EVENT);

    assert!(sessions.close(&id));
    assert!(!sessions.close(&id), "a second close finds nothing");
    assert!(!sessions.close("never-issued"));
    assert_eq!(closed.all(), [(id.clone(), CloseReason::Closed)]);
    assert!(ends_within(&mut stream, Duration::from_secs(1)).await);
    drop(stream);
    assert_eq!(live.alive(), 1);
    assert_not_found(send(&app, post(&id)).await).await;

    // Only that session: the other one and new ones are fine.
    assert!(other_stream.frame().now_or_never().is_none());
    assert!(!sessions.is_shut_down());
    assert_eq!(body_json(send(&app, post(&other)).await).await["n"], 3);
    open(&app).await;
    assert_eq!(sessions.len(), 2);
}

/// A per-session service whose answer to `initialize` waits for a gate.
#[derive(Clone)]
struct Gated {
    gate: Arc<Notify>,
    echo: Echo,
}

impl Service<Request<Body>> for Gated {
    type Response = http::Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let gate = Arc::clone(&self.gate);
        let answer = self.echo.call(req);
        Box::pin(async move {
            gate.notified().await;
            answer.await
        })
    }
}

#[tokio::test]
async fn shutdown_during_an_initialize_stores_nothing() {
    let live = Live::default();
    let closed = Closed::default();
    let gate = Arc::new(Notify::new());
    let factory = {
        let (live, gate) = (live.clone(), Arc::clone(&gate));
        move |info: SessionInfo, _inner: Inner| {
            let echo = Echo::new(info, &live);
            let gate = Arc::clone(&gate);
            async move { Ok::<_, Infallible>(Gated { gate, echo }) }
        }
    };
    let layer = SessionLayer::mcp(factory).on_close(closed.hook()).build();
    let sessions = layer.sessions();
    let app = layer.layer(Inner);

    let opening = tokio::spawn({
        let app = app.clone();
        async move { send(&app, initialize()).await }
    });
    // Wait until the per-session service is built and answering.
    for _ in 0..1000 {
        if live.made() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(live.made(), 1);
    assert_eq!(
        sessions.shutdown(),
        0,
        "the opening session is not stored yet"
    );
    gate.notify_one();

    let resp = tokio::time::timeout(WAIT, opening).await.unwrap().unwrap();
    assert_rejection(resp, StatusCode::SERVICE_UNAVAILABLE, -32000).await;
    assert_eq!(
        sessions.len(),
        0,
        "a session opened across shutdown was stored"
    );
    assert_eq!(live.alive(), 0);
    assert_eq!(
        closed.len(),
        0,
        "a session never stored is never reported closed"
    );
}

/// Runs `f` on its own thread and fails the test if it does not return within [`WAIT`]
/// (a deadlock would otherwise hang the test).
fn without_deadlock<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WAIT)
        .expect("closing deadlocked when the close hook used the Sessions handle")
}

#[tokio::test]
async fn a_close_hook_may_use_the_sessions_handle() {
    let live = Live::default();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    // Hooks get no handle to the table, and a `Sessions` captured by the hook would keep the
    // table alive forever (the table owns the hook): the hook holds a `WeakSessions`, filled
    // in once the table exists (configure first, then take the table).
    let weak: Arc<OnceLock<WeakSessions>> = Arc::default();
    // The hook looks at the table and closes a "linked" session ("the peer of a closed
    // session goes too").
    let layer = SessionLayer::mcp(echo_factory(&live))
        .on_close({
            let (weak, seen) = (Arc::clone(&weak), Arc::clone(&seen));
            move |info: &SessionInfo, reason| {
                let Some(sessions) = weak.get().and_then(WeakSessions::upgrade) else {
                    return;
                };
                let id = info.id();
                let peer = sessions.ids().into_iter().find(|other| other != id);
                seen.lock()
                    .unwrap()
                    .push((id.to_string(), reason, sessions.len()));
                if let Some(peer) = peer
                    && reason == CloseReason::Deleted
                {
                    sessions.close(peer.as_str());
                }
            }
        })
        .build();
    let sessions = layer.sessions();
    weak.set(sessions.downgrade()).unwrap();
    let app = layer.clone().layer(Inner);

    let a = open(&app).await;
    let b = open(&app).await;
    assert_eq!(status_of(&app, delete(&a)).await, StatusCode::NO_CONTENT);
    assert_eq!(sessions.len(), 0, "the hook closed the peer");
    assert_not_found(send(&app, post(&b)).await).await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[0].0.as_str(), seen[0].1),
            (a.as_str(), CloseReason::Deleted)
        );
        assert_eq!(
            (seen[1].0.as_str(), seen[1].1),
            (b.as_str(), CloseReason::Closed)
        );
    }

    let c = open(&app).await;
    let handle = sessions.clone();
    assert!(without_deadlock(move || handle.close(&c)));
    for _ in 0..3 {
        open(&app).await;
    }
    let handle = sessions.clone();
    assert_eq!(without_deadlock(move || handle.shutdown()), 3);
    assert_eq!(seen.lock().unwrap().len(), 6);
    assert_eq!(live.alive(), 0);

    // No cycle: once the layer, its service and the handle are gone, the table is freed.
    drop((layer, app, sessions));
    tokio::task::yield_now().await;
    assert!(
        weak.get().unwrap().upgrade().is_none(),
        "the close hook kept the session table alive"
    );
}

#[tokio::test]
async fn a_table_with_live_sessions_and_hooks_is_freed_with_its_last_handle() {
    let live = Live::default();
    let closed = Closed::default();
    let layer = SessionLayer::mcp(echo_factory(&live))
        .on_close(closed.hook())
        .build();
    let sessions = layer.sessions();
    let weak = sessions.downgrade();
    let app = layer.layer(Inner);
    for _ in 0..3 {
        open(&app).await;
    }
    assert_eq!(live.alive(), 3);
    drop((layer, app, sessions));
    tokio::task::yield_now().await;
    assert!(weak.upgrade().is_none(), "the table outlived every handle");
    assert_eq!(
        live.alive(),
        0,
        "dropping the table drops the sessions' services"
    );
}
