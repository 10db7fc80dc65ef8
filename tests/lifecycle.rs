//! The lifecycle: settings as values, one table per built layer, hooks that pair up
//! and cannot keep the table alive, the sweeper ending on drop, `max_lifetime`, eviction by
//! last request, per-client and per-principal limits, and an open racing `shutdown()`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use tower::Layer;
use tower_mcp_session::{
    ClientKey, CloseReason, SessionInfo, SessionLayer, SessionLayerBuilder, WeakSessions,
};

use common::*;

/// Every hook call, in order: ("open" | reason, id).
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, String)>>>);

impl Events {
    fn layer(&self, layer: SessionLayerBuilder<EchoFactory>) -> SessionLayerBuilder<EchoFactory> {
        let (opens, closes) = (self.clone(), self.clone());
        layer
            .on_open(move |info| opens.push("open", info))
            .on_close(move |info, reason| closes.push(&format!("{reason:?}"), info))
    }

    fn push(&self, what: &str, info: &SessionInfo) {
        let id = info.id().as_str().to_owned();
        self.0.lock().unwrap().push((what.to_owned(), id));
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_builder_method_on_a_clone_leaves_the_original_unchanged() {
    let live = Live::default();
    let a = SessionLayer::mcp(echo_factory(&live)).max_sessions(2);
    let b = a.clone().max_sessions(1);
    // Each build makes a table of its own.
    let (a, b) = (a.build(), b.build());
    let (a_sessions, b_sessions) = (a.sessions(), b.sessions());
    let (a_app, b_app) = (a.layer(Inner), b.layer(Inner));

    open(&b_app).await;
    assert_eq!(
        status_of(&b_app, initialize()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // `a` still allows two, in a table of its own.
    open(&a_app).await;
    open(&a_app).await;
    assert_eq!((a_sessions.len(), b_sessions.len()), (2, 1));
    assert_eq!(
        (a_sessions.max_sessions(), b_sessions.max_sessions()),
        (2, 1)
    );
}

#[tokio::test]
async fn clones_of_a_layer_share_its_table() {
    let live = Live::default();
    let layer = SessionLayer::mcp(echo_factory(&live)).build();
    let sessions = layer.sessions();
    let first = layer.clone().layer(Inner);
    let second = layer.layer(Inner);
    let id = open(&first).await;
    // A session opened through one service is routed by the other and seen by the handle.
    let resp = send(&second, post(&id)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await["session"], id.as_str());
    assert!(sessions.contains(&id));
    // The one run-time setting goes through the handle and holds for every service.
    sessions.set_max_sessions(1);
    assert_eq!(
        status_of(&second, initialize()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn on_open_and_on_close_pair_up_in_order_with_the_info() {
    let events = Events::default();
    let Fixture(_, _, sessions, app) = Fixture::mcp_unhooked(|l| events.layer(l));
    let deleted = open(&app).await;
    let closed = open(&app).await;
    assert_eq!(
        status_of(&app, delete(&deleted)).await,
        StatusCode::NO_CONTENT
    );
    assert!(sessions.close(&closed));
    assert_eq!(sessions.shutdown(), 0);
    assert_eq!(
        events.all(),
        [
            ("open".into(), deleted.clone()),
            ("open".into(), closed.clone()),
            ("Deleted".into(), deleted),
            ("Closed".into(), closed),
        ]
    );
}

#[tokio::test]
async fn session_info_carries_the_creation_time() {
    let Fixture(_, _, sessions, app) = Fixture::mcp(|l| l);
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    let id = open(&app).await;
    let created = sessions.get(&id).unwrap().created_at();
    assert!(created >= before && created <= std::time::SystemTime::now());
}

#[tokio::test]
async fn a_hook_holding_a_weak_handle_does_not_keep_the_table_alive() {
    let live = Live::default();
    let weak: Arc<Mutex<WeakSessions>> = Arc::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (hook_weak, hook_seen) = (Arc::clone(&weak), Arc::clone(&seen));
    let layer = SessionLayer::mcp(echo_factory(&live))
        .on_close(move |_, _| {
            // The hook may look at the table while it is alive.
            let len = hook_weak.lock().unwrap().upgrade().map(|s| s.len());
            hook_seen.lock().unwrap().push(len);
        })
        .build();
    let sessions = layer.sessions();
    *weak.lock().unwrap() = sessions.downgrade();
    let app = layer.layer(Inner);
    let id = open(&app).await;
    assert!(sessions.close(&id));
    assert_eq!(*seen.lock().unwrap(), [Some(0)]);
    // Dropping the last strong holders frees the table (and every session service).
    open(&app).await;
    drop((app, sessions, layer));
    assert!(weak.lock().unwrap().upgrade().is_none());
    assert_eq!(live.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_ends_when_the_table_is_dropped() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let Fixture(live, _, sessions, app) = Fixture::mcp(|l| {
        l.idle_timeout(Duration::from_secs(365 * 24 * 3600))
            .sweep_interval(Duration::from_secs(365 * 24 * 3600))
    });
    assert_eq!(metrics.num_alive_tasks(), 0);
    open(&app).await; // the first request starts the sweeper
    assert_eq!(metrics.num_alive_tasks(), 1);
    drop((app, sessions));
    // No clock advance: the drop itself wakes the sweeper, which then ends.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), 0);
    assert_eq!(live.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_at_its_max_lifetime_even_while_streaming() {
    let Fixture(live, closed, sessions, app) =
        Fixture::mcp(|l| l.max_lifetime(Duration::from_secs(60)));
    let id = open(&app).await;
    let resp = send(&app, get_stream(&id)).await;
    let mut stream = resp.into_body();
    assert_eq!(
        next_data(&mut stream).await.as_deref(),
        Some(FIRST_EVENT.as_bytes())
    );
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(status_of(&app, post(&id)).await, StatusCode::OK);
    tokio::time::advance(Duration::from_secs(1)).await;
    // The sweeper (interval: a quarter of the lifetime) closes it; its stream ends.
    tokio::time::advance(Duration::from_secs(15)).await;
    assert!(ends_within(&mut stream, WAIT).await);
    assert_eq!(closed.reasons_of(&id), [CloseReason::LifetimeEnded]);
    assert_not_found(send(&app, post(&id)).await).await;
    drop(stream);
    assert_eq!((sessions.len(), live.alive()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn eviction_ranks_by_last_request_so_an_idle_stream_is_evicted() {
    let Fixture(_, closed, _sessions, app) = Fixture::mcp(|l| {
        l.max_sessions(2)
            .eviction(tower_mcp_session::Eviction::LastRequest)
    });
    let streaming = open(&app).await;
    let mut stream = send(&app, get_stream(&streaming)).await.into_body();
    assert_eq!(
        next_data(&mut stream).await.as_deref(),
        Some(FIRST_EVENT.as_bytes())
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let active = open(&app).await;
    // The table is full; the session whose last request is oldest goes, though it streams.
    let newcomer = open(&app).await;
    assert!(ends_within(&mut stream, WAIT).await);
    assert_eq!(closed.all(), [(streaming.clone(), CloseReason::Evicted)]);
    assert_eq!(status_of(&app, post(&active)).await, StatusCode::OK);
    assert_eq!(status_of(&app, post(&newcomer)).await, StatusCode::OK);
    assert_not_found(send(&app, post(&streaming)).await).await;
}

#[tokio::test(start_paused = true)]
async fn eviction_by_last_activity_spares_busy_sessions() {
    let Fixture(_, closed, _sessions, app) = Fixture::mcp(|l| {
        l.max_sessions(1)
            .eviction(tower_mcp_session::Eviction::LastActivity)
    });
    let streaming = open(&app).await;
    let _stream = send(&app, get_stream(&streaming)).await.into_body();
    let headers = assert_rejection(
        send(&app, initialize()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        -32000,
    )
    .await;
    assert_eq!(headers[http::header::RETRY_AFTER], "5");
    assert!(closed.all().is_empty());
}

fn from_client(name: &str) -> http::Request<ReqBody> {
    let mut req = initialize();
    req.headers_mut()
        .insert("x-client", http::HeaderValue::from_str(name).unwrap());
    req
}

#[tokio::test]
async fn a_client_over_its_limit_gets_429_and_others_still_open() {
    let Fixture(_, _, sessions, app) = Fixture::mcp(|l| {
        l.max_sessions_per_client(2).client_key(|parts| {
            let name = parts.headers.get("x-client")?.to_str().ok()?;
            Some(ClientKey::new(name))
        })
    });
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = send(&app, from_client("attacker")).await;
        assert_eq!(resp.status(), StatusCode::OK);
        ids.push(session_id_of(&resp).unwrap());
        body_string(resp).await;
    }
    let resp = send(&app, from_client("attacker")).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()[http::header::RETRY_AFTER], "5");
    assert_eq!(
        body_string(resp).await,
        r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Too many requests: too many sessions for this client"},"id":null}"#
    );
    assert_eq!(
        status_of(&app, from_client("someone")).await,
        StatusCode::OK
    );
    // Requests without a key are not counted.
    assert_eq!(status_of(&app, initialize()).await, StatusCode::OK);
    // Closing one of the client's sessions gives its slot back.
    assert!(sessions.close(&ids[0]));
    assert_eq!(
        status_of(&app, from_client("attacker")).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, from_client("attacker")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_principal_over_its_limit_gets_429() {
    let Fixture(_, _, _, app) =
        Fixture::mcp(|l| l.max_sessions_per_principal(1).principal(user_of));
    assert_eq!(
        status_of(&app, as_user("ann", initialize())).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, as_user("ann", initialize())).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status_of(&app, as_user("bob", initialize())).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_open_refused_by_a_racing_shutdown_runs_no_hook() {
    // The per-session service shuts the table down while it answers the opening request:
    // the id it answered with is never sent, so neither hook may run for it.
    let events = Events::default();
    let weak: Arc<Mutex<WeakSessions>> = Arc::default();
    let factory_weak = Arc::clone(&weak);
    let layer = SessionLayer::mcp(move |info: SessionInfo, _inner: Inner| {
        let weak = Arc::clone(&factory_weak);
        async move {
            let sessions = weak.lock().unwrap().upgrade().unwrap();
            let echo = Echo::new(info, &Live::default());
            Ok::<_, std::convert::Infallible>(tower::service_fn(move |req| {
                sessions.shutdown();
                let mut echo = echo.clone();
                tower::Service::call(&mut echo, req)
            }))
        }
    });
    let (opens, closes) = (events.clone(), events.clone());
    let layer = layer
        .on_open(move |info| opens.push("open", info))
        .on_close(move |info, reason| closes.push(&format!("{reason:?}"), info))
        .build();
    let sessions = layer.sessions();
    *weak.lock().unwrap() = sessions.downgrade();
    let app = layer.layer(Inner);
    let resp = send(&app, initialize()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(session_id_of(&resp).is_none());
    assert!(events.all().is_empty());
    assert!(sessions.is_empty());
}
