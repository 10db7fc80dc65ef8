//! The layer's metrics (feature `metrics`), read from `metrics-util`'s `DebuggingRecorder`
//! installed for each test alone (`metrics::with_local_recorder` around the layer's build:
//! the layer registers its series then, and records through those handles wherever it runs).
//!
//! - `a_scripted_run_gives_exact_values`: 3 opens, 5 calls, 1 DELETE, 1 idle expiry (tokio's
//!   paused clock, the sweeper), one 404, one 400: every series of the layer, value by value.
//! - `in_flight_requests_and_open_streams_are_counted_while_they_wait`: an SSE stream that
//!   waits counts in both gauges until closing its session ends it.
//! - `cardinality_stays_bounded_after_10000_sessions`: the same series (names and labels)
//!   before the first session and after 10,000 (with eviction at 100), none naming an id.
//! - `a_restore_is_counted_on_the_node_that_restored`: two layers sharing a `MemoryStore`,
//!   each with its own recorder; the store operations and the restore land on the right one.
//! - `client_layer_counts_reinitializations_retries_and_lost_sessions`: the client layer over
//!   the server layer in process; the server forgets its sessions twice.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{Service, ServiceExt};
use tower_mcp_session::bus::MemoryBus;
use tower_mcp_session::client::{ClientBody, Error, SessionClient, SessionLost};
use tower_mcp_session::store::MemoryStore;
use tower_mcp_session::{Cluster, Eviction};

const IDLE: Duration = Duration::from_secs(60);

/// One series' value.
#[derive(Debug, Clone, PartialEq)]
enum V {
    C(u64),
    G(f64),
    H(Vec<f64>),
}

/// Every series of `recorder` as `name{label=value,..}` (labels sorted) → value. Taking it
/// resets the recorder's counters and gauges (the debugging recorder swaps them out), so each
/// test takes it once, at the end.
fn snapshot(recorder: &DebuggingRecorder) -> BTreeMap<String, V> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (_, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = if labels.is_empty() {
                key.name().to_owned()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            let value = match value {
                DebugValue::Counter(n) => V::C(n),
                DebugValue::Gauge(g) => V::G(g.0),
                DebugValue::Histogram(h) => V::H(h.into_iter().map(|f| f.0).collect()),
            };
            (name, value)
        })
        .collect()
}

/// The series of `snapshot` with a value other than zero (empty histograms left out too).
fn nonzero(snapshot: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    snapshot
        .iter()
        .filter(|(_, v)| !matches!(v, V::C(0)) && **v != V::G(0.0) && **v != V::H(vec![]))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn expect(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Lets background tasks (the sweeper) run, on the paused clock, until `done` or a bound.
async fn settle(mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("background work did not finish");
}

#[tokio::test(start_paused = true)]
async fn a_scripted_run_gives_exact_values() {
    let recorder = DebuggingRecorder::new();
    let Fixture(_, closed, sessions, app) = metrics::with_local_recorder(&recorder, || {
        Fixture::mcp(|layer| {
            layer
                .idle_timeout(IDLE)
                .sweep_interval(Duration::from_secs(1))
                .max_sessions(100)
        })
    });
    // 3 opens.
    let a = open(&app).await;
    let b = open(&app).await;
    let c = open(&app).await;
    // 5 calls: two on a, two on b, one on c (30 s later).
    for id in [&a, &a, &b, &b] {
        assert_eq!(status_of(&app, post(id)).await, StatusCode::OK);
    }
    // 1 DELETE.
    assert_eq!(status_of(&app, delete(&b)).await, StatusCode::NO_CONTENT);
    tokio::time::advance(IDLE / 2).await;
    assert_eq!(status_of(&app, post(&c)).await, StatusCode::OK);
    // 1 idle expiry: a, unused for 61 s, by the sweeper (c was used 31 s ago).
    tokio::time::advance(IDLE / 2 + Duration::from_secs(1)).await;
    settle(|| sessions.len() == 1).await;
    assert_eq!(
        closed.reasons_of(&a),
        [tower_mcp_session::CloseReason::Expired]
    );
    // One 404, one 400.
    assert_not_found(send(&app, post("no-such-session")).await).await;
    assert_eq!(
        status_of(&app, post_raw(rpc_body(1, "tools/list"))).await,
        StatusCode::BAD_REQUEST
    );

    let all = snapshot(&recorder);
    // Every series of a layer without a cluster, each label value once: nothing of a cluster
    // or of the client layer.
    assert_eq!(all.len(), 44, "{:#?}", all.keys());
    let cluster_or_client = [
        "store.", "restore", "bus.", "outage", "refresh", "forget", "client.",
    ];
    assert!(all.keys().all(|k| {
        let name = k.split('{').next().unwrap();
        cluster_or_client.iter().all(|part| !name.contains(part))
    }));
    assert_eq!(
        nonzero(&all),
        expect(&[
            (
                "mcp.server.session.duration{mcp.protocol.version=2025-11-25}",
                // b deleted at once, a expired 61 s after its open.
                V::H(vec![0.0, 61.0])
            ),
            (
                "tower_mcp_session.peek.budget",
                V::G(16.0 * 1024.0 * 1024.0)
            ),
            (
                "tower_mcp_session.rejections{http.response.status_code=400,kind=missing_session_id}",
                V::C(1)
            ),
            (
                "tower_mcp_session.rejections{http.response.status_code=404,kind=session_not_found}",
                V::C(1)
            ),
            ("tower_mcp_session.requests.routed", V::C(5)),
            ("tower_mcp_session.sessions.closed{reason=deleted}", V::C(1)),
            ("tower_mcp_session.sessions.closed{reason=expired}", V::C(1)),
            ("tower_mcp_session.sessions.limit", V::G(100.0)),
            ("tower_mcp_session.sessions.live", V::G(1.0)),
            ("tower_mcp_session.sessions.opened{outcome=opened}", V::C(3)),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn in_flight_requests_and_open_streams_are_counted_while_they_wait() {
    let recorder = DebuggingRecorder::new();
    let Fixture(_, _, sessions, app) =
        metrics::with_local_recorder(&recorder, || Fixture::mcp(|layer| layer));
    let id = open(&app).await;
    let mut stream = send(&app, get_stream(&id)).await.into_body();
    assert_eq!(
        next_data(&mut stream).await.as_deref(),
        Some(FIRST_EVENT.as_bytes())
    );
    // The stream waits for its next event.
    assert!(
        futures_util::FutureExt::now_or_never(stream.frame()).is_none(),
        "the stream is open"
    );
    let during = snapshot(&recorder);
    assert_eq!(during["tower_mcp_session.streams.open"], V::G(1.0));
    assert_eq!(during["tower_mcp_session.requests.in_flight"], V::G(1.0));
    // Closing the session ends the stream; both gauges go back down (the snapshot above
    // reset them to 0, so they read -1 now).
    assert!(sessions.close(&id));
    assert!(stream.frame().await.is_none());
    drop(stream);
    let after = snapshot(&recorder);
    assert_eq!(after["tower_mcp_session.streams.open"], V::G(-1.0));
    assert_eq!(after["tower_mcp_session.requests.in_flight"], V::G(-1.0));
    assert_eq!(
        after["tower_mcp_session.sessions.closed{reason=closed}"],
        V::C(1)
    );
}

#[tokio::test(start_paused = true)]
async fn cardinality_stays_bounded_after_10000_sessions() {
    let recorder = DebuggingRecorder::new();
    let Fixture(_, _, sessions, app) = metrics::with_local_recorder(&recorder, || {
        Fixture::mcp_unhooked(|layer| {
            layer
                .idle_timeout(IDLE)
                .max_sessions(100)
                .eviction(Eviction::LastRequest)
        })
    });
    let before: Vec<String> = snapshot(&recorder).into_keys().collect();
    let mut ids = Vec::new();
    for _ in 0..10_000 {
        let id = open(&app).await;
        assert_eq!(status_of(&app, post(&id)).await, StatusCode::OK);
        ids.push(id);
    }
    assert_eq!(sessions.len(), 100);
    let after = snapshot(&recorder);
    let keys: Vec<String> = after.keys().cloned().collect();
    assert_eq!(keys, before, "the same series, no new label value");
    for id in &ids {
        assert!(keys.iter().all(|k| !k.contains(id.as_str())));
    }
    assert_eq!(
        after["tower_mcp_session.sessions.opened{outcome=opened}"],
        V::C(100)
    );
    assert_eq!(
        after["tower_mcp_session.sessions.opened{outcome=evicted}"],
        V::C(9_900)
    );
    assert_eq!(
        after["tower_mcp_session.sessions.closed{reason=evicted}"],
        V::C(9_900)
    );
    assert_eq!(after["tower_mcp_session.requests.routed"], V::C(10_000));
    assert_eq!(after["tower_mcp_session.sessions.live"], V::G(100.0));
}

#[tokio::test(start_paused = true)]
async fn a_restore_is_counted_on_the_node_that_restored() {
    let (store, bus) = (MemoryStore::new(), MemoryBus::new());
    let node = |recorder: &DebuggingRecorder| {
        let cluster = Cluster::new(store.clone()).bus(bus.clone());
        metrics::with_local_recorder(recorder, || {
            Fixture::mcp(|layer| layer.idle_timeout(IDLE).cluster(cluster))
        })
    };
    let (rec_a, rec_b) = (DebuggingRecorder::new(), DebuggingRecorder::new());
    let Fixture(_, _, _, app_a) = node(&rec_a);
    let Fixture(_, _, sessions_b, app_b) = node(&rec_b);

    let id = open(&app_a).await;
    assert_eq!(status_of(&app_b, post(&id)).await, StatusCode::OK);
    assert!(sessions_b.contains(&id));
    assert_not_found(send(&app_b, post("made-up")).await).await;

    let (a, b) = (snapshot(&rec_a), snapshot(&rec_b));
    let restored = "tower_mcp_session.restores{outcome=restored}";
    let not_found = "tower_mcp_session.restores{outcome=not_found}";
    assert_eq!((&a[restored], &a[not_found]), (&V::C(0), &V::C(0)));
    assert_eq!((&b[restored], &b[not_found]), (&V::C(1), &V::C(1)));
    let ops = |s: &BTreeMap<String, V>, op: &str| match &s
        [&format!("tower_mcp_session.store.operation.duration{{operation={op}}}")]
    {
        V::H(values) => values.len(),
        other => panic!("{other:?}"),
    };
    // a wrote the record; b loaded it (and the made-up id's), and reset its time to live.
    assert_eq!((ops(&a, "create"), ops(&a, "load")), (1, 0));
    assert_eq!(
        (ops(&b, "create"), ops(&b, "load"), ops(&b, "touch")),
        (0, 2, 1)
    );
    // Two restores, each timed; the store never failed.
    assert_eq!(
        b["tower_mcp_session.restore.duration"],
        V::H(vec![0.0, 0.0]),
        "the paused clock does not move during a memory store's operations"
    );
    assert!(
        b.iter()
            .filter(|(k, _)| k.starts_with("tower_mcp_session.store.errors"))
            .all(|(_, v)| *v == V::C(0))
    );
    assert_eq!(b["tower_mcp_session.outage{part=store}"], V::G(0.0));
    assert_eq!(b["tower_mcp_session.sessions.live"], V::G(1.0));
    assert_eq!(a["tower_mcp_session.sessions.live"], V::G(1.0));
}

/// A request of the client through `client`.
async fn through<S>(client: &mut S, body: ClientBody) -> Result<S::Response, S::Error>
where
    S: Service<Request<ClientBody>>,
{
    let request = Request::post(PATH)
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    client.ready().await?.call(request).await
}

#[tokio::test(start_paused = true)]
async fn client_layer_counts_reinitializations_retries_and_lost_sessions() {
    let Fixture(_, _, sessions, server) = Fixture::mcp(|layer| layer);
    // The server layer in process, its request body read whole first.
    let server = tower::service_fn(move |request: Request<ClientBody>| {
        let server = server.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let request = Request::from_parts(parts, http_body_util::Full::new(bytes));
            Ok::<_, tower_mcp_session::BoxError>(server.oneshot(request).await?)
        }
    });
    let recorder = DebuggingRecorder::new();
    let mut client = metrics::with_local_recorder(&recorder, || SessionClient::new(server));
    let status = |response: Result<http::Response<_>, _>| match response {
        Ok(response) => response.status(),
        Err(error) => panic!("{error:?}"),
    };

    let opened = through(&mut client, initialize_body(1).into()).await;
    assert_eq!(status(opened), StatusCode::OK);
    let replayable = || ClientBody::from(rpc_body(2, "tools/list"));
    assert_eq!(
        status(through(&mut client, replayable()).await),
        StatusCode::OK
    );

    // The server forgets the session: 404, a new initialize, the call sent again.
    sessions.close_where(|_| true);
    assert_eq!(
        status(through(&mut client, replayable()).await),
        StatusCode::OK
    );

    // Again, with a body that cannot be sent twice: the session is replaced, the call lost.
    sessions.close_where(|_| true);
    let frames = [Ok::<_, Infallible>(Frame::data(Bytes::from(rpc_body(
        3,
        "tools/list",
    ))))];
    let streaming = ClientBody::streaming(StreamBody::new(futures_util::stream::iter(frames)));
    let error = through(&mut client, streaming).await.unwrap_err();
    assert!(
        matches!(error, Error::SessionLost(SessionLost::NotReplayable)),
        "{error:?}"
    );

    assert_eq!(
        nonzero(&snapshot(&recorder)),
        expect(&[
            ("tower_mcp_session.client.reinitializations", V::C(2)),
            ("tower_mcp_session.client.retries", V::C(1)),
            ("tower_mcp_session.client.session_lost", V::C(1)),
        ])
    );
}
