//! Property test: no setting the builder takes can make the layer panic.
//!
//! Every duration and count of [`SessionLayerBuilder`] (and of [`Cluster`]) is drawn from
//! its extremes, `0`, `1` and `MAX` (plus a usual value), and each layer so built is driven
//! through an open, a call, a DELETE, an expiry (tokio's paused clock advanced by 1 ms, by
//! an hour and by a year), a sweep and a shutdown. Every answer must be a status the layer
//! documents for that request; none may be a panic (a panic fails the case) or a 500.

#[path = "../../tests/reliability/mod.rs"]
mod reliability;

use std::time::Duration;

use http::StatusCode;
use proptest::prelude::*;
use reliability::*;
use tower_mcp_session::bus::MemoryBus;
use tower_mcp_session::store::MemoryStore;
use tower_mcp_session::{ClientKey, Cluster, Eviction, Principal};

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(10)),
        Just(Duration::MAX),
    ]
}

fn count() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0), Just(1), Just(4), Just(usize::MAX)]
}

fn eviction() -> impl Strategy<Value = Eviction> {
    prop_oneof![
        Just(Eviction::Off),
        Just(Eviction::LastRequest),
        Just(Eviction::LastActivity),
    ]
}

/// One layer's settings.
#[derive(Debug, Clone)]
struct Settings {
    idle: Option<Duration>,
    lifetime: Option<Duration>,
    sweep: Duration,
    peek_timeout: Duration,
    retry_after: Duration,
    max_sessions: usize,
    per_principal: Option<usize>,
    per_client: Option<usize>,
    peek_limit: usize,
    peek_budget: usize,
    eviction: Eviction,
    /// `Some(refresh interval)`: a cluster on a `MemoryStore` and a `MemoryBus`.
    cluster: Option<Duration>,
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        (
            proptest::option::of(duration()),
            proptest::option::of(duration()),
            duration(),
            duration(),
            duration(),
        ),
        (
            count(),
            proptest::option::of(count()),
            proptest::option::of(count()),
            count(),
            count(),
            eviction(),
            proptest::option::of(duration()),
        ),
    )
        .prop_map(
            |(
                (idle, lifetime, sweep, peek_timeout, retry_after),
                (
                    max_sessions,
                    per_principal,
                    per_client,
                    peek_limit,
                    peek_budget,
                    eviction,
                    cluster,
                ),
            )| Settings {
                idle,
                lifetime,
                sweep,
                peek_timeout,
                retry_after,
                max_sessions,
                per_principal,
                per_client,
                peek_limit,
                peek_budget,
                eviction,
                cluster,
            },
        )
}

fn harness_for(s: &Settings) -> Harness {
    let s = s.clone();
    harness(move |layer| {
        let mut layer = layer
            .sweep_interval(s.sweep)
            .peek_timeout(s.peek_timeout)
            .retry_after(s.retry_after)
            .max_sessions(s.max_sessions)
            .peek_limit(s.peek_limit)
            .peek_budget(s.peek_budget)
            .eviction(s.eviction)
            .principal(|_| Some(Principal::from("p")))
            .client_key(|_| Some(ClientKey::new("c")));
        layer = match s.idle {
            Some(idle) => layer.idle_timeout(idle),
            None => layer.without_idle_timeout(),
        };
        if let Some(lifetime) = s.lifetime {
            layer = layer.max_lifetime(lifetime);
        }
        if let Some(max) = s.per_principal {
            layer = layer.max_sessions_per_principal(max);
        }
        if let Some(max) = s.per_client {
            layer = layer.max_sessions_per_client(max);
        }
        if let Some(refresh) = s.cluster {
            layer = layer.cluster(
                Cluster::new(MemoryStore::new())
                    .bus(MemoryBus::new())
                    .refresh_interval(refresh),
            );
        }
        layer
    })
}

/// Statuses an opening request may get under some settings.
const OPEN: [StatusCode; 5] = [
    StatusCode::OK,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::REQUEST_TIMEOUT,
];

async fn drive(s: Settings) -> Result<(), TestCaseError> {
    let h = harness_for(&s);
    let opened = send(&h.svc, initialize()).await;
    prop_assert!(OPEN.contains(&opened.status), "open: {opened:?}");
    let id = opened.session_id().map(str::to_owned);
    for advance in [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_secs(3600),
        Duration::from_secs(365 * 24 * 3600),
    ] {
        tokio::time::advance(advance).await;
        if let Some(id) = &id {
            let call = send(&h.svc, post(id, PING)).await;
            let allowed = [StatusCode::OK, StatusCode::NOT_FOUND];
            prop_assert!(
                allowed.contains(&call.status),
                "call after {advance:?}: {call:?}"
            );
        }
        let again = send(&h.svc, initialize()).await;
        prop_assert!(
            OPEN.contains(&again.status),
            "open after {advance:?}: {again:?}"
        );
        h.sessions.sweep();
    }
    if let Some(id) = &id {
        let deleted = send(&h.svc, delete(id)).await;
        let allowed = [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND];
        prop_assert!(allowed.contains(&deleted.status), "delete: {deleted:?}");
        let after = send(&h.svc, post(id, PING)).await;
        prop_assert_eq!(after.status, StatusCode::NOT_FOUND);
    }
    h.sessions.shutdown();
    let late = send(&h.svc, initialize()).await;
    prop_assert_eq!(late.status, StatusCode::SERVICE_UNAVAILABLE);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_setting_makes_the_layer_panic(s in settings()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(drive(s))?;
    }
}
