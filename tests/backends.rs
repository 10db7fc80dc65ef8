//! One body of tests for every networked backend: each test below is written once, generic
//! over [`Backend`], and run against Redis (`RedisStore`, `RedisBus`) and PostgreSQL
//! (`PostgresStore`, `PostgresBus`) by the `backend_tests!` macro at the end (modules
//! `on_redis` and `on_postgres`). They cover the store and bus behaviour of the Redis tests
//! (tests/redis_backends.rs keeps what is Redis's own: key layout, hash tags, batched
//! subscriptions) and the two-node test of tests/redis_nodes.rs, through the layer.
//!
//! Redis at 127.0.0.1:6379 or `REDIS_URL`; PostgreSQL at
//! `postgresql://postgres@127.0.0.1:5432/test` or `POSTGRES_URL`. A backend that cannot be
//! reached fails these tests; they never skip. Each test works under its own Redis key
//! prefix (`tms-test:<uuid>:`) or PostgreSQL schema (`tms_test_<uuid>`), deleted when it
//! ends (also when it panics); nothing else is touched.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower_mcp_session::body::RequestBody;
use tower_mcp_session::bus::{BusConnection, BusEvent, Deliver, SessionBus};
use tower_mcp_session::store::{OpeningRequest, SessionRecord, SessionStore};
use tower_mcp_session::{
    CloseReason, Cluster, Principal, Session, SessionId, SessionInfo, SessionLayer,
};

/// How long a test waits for something that should happen.
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// What a test needs of a backend beyond the traits.
// ---------------------------------------------------------------------------------------------

/// One test's private corner of a backend, and the backend-specific checks.
trait Backend: Sized + Send + Sync + 'static {
    type Store: SessionStore + Clone + std::fmt::Debug;
    type Bus: SessionBus + Clone + std::fmt::Debug;

    /// The words of the bus's log lines when its receiving connection goes down and is back.
    const DOWN: &'static str;
    const BACK: &'static str;

    /// A fresh private scope (fails the test if the backend cannot be reached).
    async fn new() -> Self;
    fn store(&self) -> Self::Store;
    fn store_with_timeout(&self, timeout: Duration) -> Self::Store;
    fn bus(&self) -> Self::Bus;
    fn bus_with_timeout(&self, timeout: Duration) -> Self::Bus;
    /// A store and a bus of this scope whose connections [`kill`](Self::kill) ends.
    async fn killable(&mut self) -> (Self::Store, Self::Bus);
    /// Ends the connections of [`killable`](Self::killable)'s store and bus; how many.
    async fn kill(&self) -> usize;
    /// A store and bus at `addr` (`host:port`) with `timeout`.
    fn store_at(addr: &str, timeout: Duration) -> Self::Store;
    fn bus_at(addr: &str, timeout: Duration) -> Self::Bus;
    /// A store and bus whose connection string carries the user `user` and password `s3cret`.
    fn with_credentials() -> (Self::Store, Self::Bus);

    /// The remaining time to live of `id`'s record: `None` if it has none (or it expired),
    /// `Some(None)` if it never expires.
    async fn remaining(&self, id: &SessionId) -> Option<Option<Duration>>;
    /// Sets the remaining time to live of `id`'s record.
    async fn set_remaining(&self, id: &SessionId, remaining: Duration);
    /// Whether anything at all is kept for `id` (an expired record not yet deleted counts).
    async fn exists(&self, id: &SessionId) -> bool;
    /// Writes a record for `id` whose creation time cannot be read.
    async fn write_malformed(&self, id: &SessionId);
    /// Sends, for session `id`, events a node cannot decode, straight through the backend.
    async fn publish_junk(&self, id: &SessionId);
    /// Waits until `bus`'s node (connected with [`Self::bus`]) receives events of `id`.
    async fn await_listening(&self, node: &dyn BusConnection, inbox: &mut Inbox, id: &SessionId) {
        await_by_probing(node, inbox, id).await;
    }
    /// Waits until no connection of this scope's buses is left (after they were dropped).
    async fn await_no_bus_connection(&self, id: &SessionId);
    /// Waits until the node built with [`node_store_bus`](Self::node_store_bus)`(name)`
    /// receives the events of session `id`.
    async fn await_node_listening(&self, name: &str, id: &SessionId);
    /// A store and bus for a layer node called `name` (so that its connections can be told
    /// apart).
    fn node_store_bus(&self, name: &str) -> (Self::Store, Self::Bus);
}

/// Events delivered to one node.
type Inbox = mpsc::UnboundedReceiver<(SessionId, BusEvent)>;

fn node(bus: &impl SessionBus) -> (Arc<dyn BusConnection>, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let deliver: Deliver = Arc::new(move |id: &SessionId, event: BusEvent| {
        let _ = tx.send((id.clone(), event));
    });
    (bus.connect(deliver), rx)
}

/// Publishes probes to `id` through `node` until one comes back, then a fence, and drops
/// everything up to the fence: afterwards `inbox` is empty and `node` receives `id`'s events.
async fn await_by_probing(node: &dyn BusConnection, inbox: &mut Inbox, id: &SessionId) {
    let deadline = Instant::now() + WAIT;
    loop {
        node.publish(id, BusEvent::Message(Bytes::from_static(b"probe")))
            .await
            .unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), inbox.recv()).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node never received {id}'s events"
        );
    }
    let fence = Bytes::from(format!("fence-{}", uuid::Uuid::new_v4()));
    node.publish(id, BusEvent::Message(fence.clone()))
        .await
        .unwrap();
    loop {
        let (_, event) = next(inbox).await;
        if event == BusEvent::Message(fence.clone()) {
            return;
        }
    }
}

/// The next event delivered to a node, within [`WAIT`].
async fn next(inbox: &mut Inbox) -> (SessionId, BusEvent) {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("no event delivered within 5 s")
        .expect("deliver dropped")
}

/// Asserts that nothing is delivered for a while.
async fn assert_quiet(inbox: &mut Inbox) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Ok(event) = inbox.try_recv() {
        panic!("unexpected delivery {event:?}");
    }
}

/// Log lines written while the returned guard lives, on this thread (the tests that use it
/// run on a current-thread runtime, so the bus's task logs here too).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    struct Writer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // See tests/redis_backends.rs: a global subscriber at INFO keeps tracing's level hint up.
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        let quiet = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        let _ = tracing::subscriber::set_global_default(quiet);
    });
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || Writer(sink.clone()))
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// How many captured log lines contain `needle`.
fn count_lines(logs: &Mutex<Vec<u8>>, needle: &str) -> usize {
    let logs = logs.lock().unwrap();
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

fn new_id() -> SessionId {
    SessionId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
}

fn record(id: &SessionId, principal: Option<&str>) -> SessionRecord {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.append("accept", HeaderValue::from_static("application/json"));
    headers.append("accept", HeaderValue::from_static("text/event-stream"));
    headers.insert(
        "mcp-protocol-version",
        HeaderValue::from_static("2025-11-25"),
    );
    // Not UTF-8 (obs-text), a tab, and an empty value: all must come back byte for byte.
    headers.insert(
        "x-binary",
        HeaderValue::from_bytes(b"caf\xe9 \xff\tx").unwrap(),
    );
    headers.insert("x-empty", HeaderValue::from_static(""));
    SessionRecord {
        id: id.clone(),
        principal: principal.map(Principal::from),
        created_ms: 1_764_000_000_123,
        opening: OpeningRequest {
            method: Method::POST,
            uri: Uri::from_static("https://example.com/mcp?x=1&y=%7B"),
            headers,
            body: Bytes::from((0..=255u8).chain(*b"\r\n\0{}").collect::<Vec<u8>>()),
        },
    }
}

/// The JSON value of `text`.
fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

/// `future`'s output; fails the test if it takes over 3 s.
async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(3), future)
        .await
        .expect("no answer within 3 s")
}

/// Polls `future` once with a waker that does nothing, outside any runtime.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = pin!(future);
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// A TCP server that accepts connections and never answers (a backend that hangs, or a
/// half-open connection); returns its address.
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

fn within(ms: i64, range: std::ops::RangeInclusive<i64>) -> bool {
    range.contains(&ms)
}

async fn remaining_ms<B: Backend>(backend: &B, id: &SessionId) -> i64 {
    match backend.remaining(id).await {
        None => -2,
        Some(None) => -1,
        Some(Some(left)) => i64::try_from(left.as_millis()).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// The store.
// ---------------------------------------------------------------------------------------------

async fn create_and_load_round_trip<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();

    let alice = record(&new_id(), Some("alice@example.com"));
    assert!(
        store
            .create(&alice, Some(Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert_eq!(store.load(&alice.id).await.unwrap().as_ref(), Some(&alice));
    let accept: Vec<&HeaderValue> = alice.opening.headers.get_all("accept").iter().collect();
    assert_eq!(accept.len(), 2, "repeated header names are kept, in order");

    let mut anonymous = record(&new_id(), None);
    anonymous.opening.headers.clear();
    anonymous.opening.body = Bytes::new();
    anonymous.opening.method = Method::GET;
    anonymous.opening.uri = Uri::from_static("/mcp");
    assert!(store.create(&anonymous, None).await.unwrap());
    assert_eq!(
        store.load(&anonymous.id).await.unwrap(),
        Some(anonymous.clone())
    );
}

async fn load_of_a_missing_id_is_none<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();
    let id = new_id();
    assert_eq!(store.load(&id).await.unwrap(), None);
    assert!(!backend.exists(&id).await);
}

async fn malformed_record_is_an_error<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();
    let id = new_id();
    backend.write_malformed(&id).await;
    let error = store.load(&id).await.unwrap_err();
    assert!(error.to_string().contains("created"), "{error}");
    assert!(!error.is_unavailable(), "the store answered: {error}");
}

async fn ttl_is_set_and_touch_refreshes_it<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();
    let session = record(&new_id(), None);

    store
        .create(&session, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    let ms = remaining_ms(&backend, &session.id).await;
    assert!(within(ms, 9_000..=10_000), "remaining {ms}");

    let missing = new_id();
    let gone = store
        .touch(
            &[session.id.clone(), missing.clone()],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        gone.as_slice(),
        std::slice::from_ref(&missing),
        "touch reports the id without a record"
    );
    let ms = remaining_ms(&backend, &session.id).await;
    assert!(within(ms, 59_000..=60_000), "remaining after touch {ms}");
    assert!(!backend.exists(&missing).await, "touch creates nothing");

    assert!(
        store
            .touch(&[], Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );

    // More ids than one pipeline or statement holds.
    let many: Vec<SessionId> = std::iter::repeat_with(new_id)
        .take(5_000)
        .chain([session.id.clone()])
        .collect();
    let gone = store.touch(&many, Duration::from_secs(120)).await.unwrap();
    assert_eq!(gone.len(), 5_000, "every id but the live one is missing");
    assert!(!gone.contains(&session.id));
    let ms = remaining_ms(&backend, &session.id).await;
    assert!(within(ms, 119_000..=120_000), "after a large touch {ms}");

    // An expired record counts as missing, and touch does not bring it back.
    backend
        .set_remaining(&session.id, Duration::from_millis(1))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let gone = store
        .touch(std::slice::from_ref(&session.id), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(gone, std::slice::from_ref(&session.id));
    assert_eq!(store.load(&session.id).await.unwrap(), None);
}

async fn record_without_ttl_does_not_expire<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();
    let session = record(&new_id(), None);

    store
        .create(&session, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(
        store
            .data_insert(&session.id, "k", "1".into())
            .await
            .unwrap()
    );
    // An id that has a record is never written over: the record, its TTL and data stay.
    let mut other = session.clone();
    other.principal = Some(Principal::from("mallory"));
    assert!(!store.create(&other, None).await.unwrap());
    assert!(remaining_ms(&backend, &session.id).await > 0);
    assert_eq!(
        store.load(&session.id).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        store.data_get(&session.id, "k").await.unwrap().as_deref(),
        Some("1")
    );
    // Created again (after a delete) without a TTL: a fresh record, no expiry, no data left
    // over.
    assert!(store.delete(&session.id).await.unwrap());
    assert!(store.create(&session, None).await.unwrap());
    assert_eq!(remaining_ms(&backend, &session.id).await, -1);
    assert_eq!(store.data_get(&session.id, "k").await.unwrap(), None);

    // An id whose record expired can be created again, fresh.
    let expiring = record(&new_id(), None);
    assert!(
        store
            .create(&expiring, Some(Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert!(
        store
            .data_insert(&expiring.id, "k", "2".into())
            .await
            .unwrap()
    );
    backend
        .set_remaining(&expiring.id, Duration::from_millis(1))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        store
            .create(&expiring, Some(Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert_eq!(store.data_get(&expiring.id, "k").await.unwrap(), None);
    assert_eq!(store.load(&expiring.id).await.unwrap(), Some(expiring));
}

async fn delete_if_unused_spares_a_record_refreshed_since<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();
    let ttl = Duration::from_secs(60);
    let session = record(&new_id(), None);
    assert!(store.create(&session, Some(ttl)).await.unwrap());
    // Refreshed just now (remaining ~60 s): unused for 10 s on the evicting node means
    // another node refreshed it since.
    assert!(
        !store
            .delete_if_unused(&session.id, ttl, Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(remaining_ms(&backend, &session.id).await > 0, "kept");
    // Last refreshed 20 s ago (remaining 40 s) while unused for 30 s on the evicting node:
    // someone else refreshed it since — kept.
    backend
        .set_remaining(&session.id, Duration::from_secs(40))
        .await;
    assert!(
        !store
            .delete_if_unused(&session.id, ttl, Duration::from_secs(30))
            .await
            .unwrap()
    );
    // Last refreshed 40 s ago (remaining 20 s), unused for 30 s: nobody refreshed it since
    // this node last used it — deleted.
    backend
        .set_remaining(&session.id, Duration::from_secs(20))
        .await;
    assert!(
        store
            .delete_if_unused(&session.id, ttl, Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert_eq!(remaining_ms(&backend, &session.id).await, -2, "deleted");
    // No record: nothing to delete.
    assert!(
        !store
            .delete_if_unused(&session.id, ttl, Duration::ZERO)
            .await
            .unwrap()
    );
    // No expiry: never refreshed by anyone, deleted.
    let forever = record(&new_id(), None);
    assert!(store.create(&forever, None).await.unwrap());
    assert!(
        store
            .delete_if_unused(&forever.id, ttl, Duration::ZERO)
            .await
            .unwrap()
    );
    assert_eq!(store.load(&forever.id).await.unwrap(), None);
}

async fn delete_answers_whether_there_was_a_record<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();
    let session = record(&new_id(), Some("bob"));
    store.create(&session, None).await.unwrap();
    assert!(
        store
            .data_insert(&session.id, "k", "2".into())
            .await
            .unwrap()
    );

    assert!(store.delete(&session.id).await.unwrap());
    assert!(!store.delete(&session.id).await.unwrap());
    assert!(!backend.exists(&session.id).await);
    assert_eq!(store.load(&session.id).await.unwrap(), None);
    assert_eq!(store.data_get(&session.id, "k").await.unwrap(), None);
}

async fn data_insert_get_remove<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();
    let session = record(&new_id(), None);
    store
        .create(&session, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let id = &session.id;

    assert_eq!(store.data_get(id, "user").await.unwrap(), None);
    let value = r#"{"name":"Zoë","tags":["a","b"],"n":12345678901234567890}"#.to_owned();
    assert!(store.data_insert(id, "user", value.clone()).await.unwrap());
    let read = store.data_get(id, "user").await.unwrap().expect("stored");
    assert_eq!(json(&read), json(&value), "the same JSON value comes back");
    assert!(store.data_insert(id, "user", "null".into()).await.unwrap());
    assert_eq!(
        store.data_get(id, "user").await.unwrap().as_deref(),
        Some("null"),
        "a stored null is not an absent key"
    );
    // Data keys cannot collide with the record's fields.
    for key in ["created", "id", "principal", "d:x", "", "a'b\"c", "ключ"] {
        assert!(store.data_insert(id, key, "7".into()).await.unwrap());
        assert_eq!(store.data_get(id, key).await.unwrap().as_deref(), Some("7"));
    }
    assert_eq!(store.load(id).await.unwrap(), Some(session.clone()));

    assert!(store.data_remove(id, "user").await.unwrap());
    assert!(!store.data_remove(id, "user").await.unwrap());
    assert_eq!(store.data_get(id, "user").await.unwrap(), None);
    assert_eq!(
        store.data_get(id, "created").await.unwrap().as_deref(),
        Some("7")
    );

    // Writing data leaves the TTL alone.
    let ms = remaining_ms(&backend, id).await;
    assert!(within(ms, 50_000..=60_000), "remaining {ms}");
}

async fn writes_to_a_missing_record_create_nothing<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();
    let id = new_id();

    assert!(!store.data_insert(&id, "k", "1".into()).await.unwrap());
    assert_eq!(store.data_increment(&id, "n", 5).await.unwrap(), None);
    assert!(!store.data_remove(&id, "k").await.unwrap());
    assert_eq!(store.data_get(&id, "k").await.unwrap(), None);
    assert!(!backend.exists(&id).await);

    // Nor after a delete: a late write does not bring the record back.
    let session = record(&new_id(), None);
    store.create(&session, None).await.unwrap();
    store.delete(&session.id).await.unwrap();
    assert!(
        !store
            .data_insert(&session.id, "k", "1".into())
            .await
            .unwrap()
    );
    assert_eq!(
        store.data_increment(&session.id, "n", 1).await.unwrap(),
        None
    );
    assert!(!backend.exists(&session.id).await);

    // Nor after it expired.
    let expired = record(&new_id(), None);
    store
        .create(&expired, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(
        store
            .data_insert(&expired.id, "k", "1".into())
            .await
            .unwrap()
    );
    backend
        .set_remaining(&expired.id, Duration::from_millis(1))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !store
            .data_insert(&expired.id, "k", "2".into())
            .await
            .unwrap()
    );
    assert_eq!(
        store.data_increment(&expired.id, "n", 1).await.unwrap(),
        None
    );
    assert!(!store.data_remove(&expired.id, "k").await.unwrap());
    assert_eq!(store.data_get(&expired.id, "k").await.unwrap(), None);
    assert_eq!(store.load(&expired.id).await.unwrap(), None);
    assert!(
        !store.delete(&expired.id).await.unwrap(),
        "an expired record is no record"
    );
}

async fn increments_through_two_stores_lose_no_count<B: Backend>() {
    let backend = B::new().await;
    let first = backend.store();
    let second = backend.store();
    let session = record(&new_id(), None);
    first
        .create(&session, Some(Duration::from_secs(60)))
        .await
        .unwrap();

    let tasks: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .map(|store| {
            let id = session.id.clone();
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(500);
                for _ in 0..500 {
                    seen.push(
                        store
                            .data_increment(&id, "count", 1)
                            .await
                            .unwrap()
                            .unwrap(),
                    );
                }
                seen
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        for value in task.await.unwrap() {
            assert!(all.insert(value), "{value} returned twice");
        }
    }
    assert_eq!(all.len(), 1000);
    assert_eq!(all.iter().max(), Some(&1000));
    assert_eq!(
        second
            .data_get(&session.id, "count")
            .await
            .unwrap()
            .as_deref(),
        Some("1000")
    );
    assert_eq!(
        first
            .data_increment(&session.id, "count", -1000)
            .await
            .unwrap(),
        Some(0)
    );
}

async fn increment_is_exact_over_i64_and_refuses_what_is_not_an_integer<B: Backend>() {
    let backend = B::new().await;
    let store = backend.store();
    let session = record(&new_id(), None);
    store.create(&session, None).await.unwrap();
    let id = &session.id;

    for value in [
        r#""text""#,
        "1.5",
        "[1]",
        r#"{"a":1}"#,
        "null",
        "true",
        r#""5""#,
    ] {
        assert!(store.data_insert(id, "n", value.into()).await.unwrap());
        let error = store.data_increment(id, "n", 1).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the value of `n` is not an integer"),
            "{value}: {error}"
        );
        assert!(!error.is_unavailable());
        let kept = store.data_get(id, "n").await.unwrap().unwrap();
        assert_eq!(json(&kept), json(value), "left as it was");
    }

    // The whole i64 range, exactly (no float on the way), and overflow is an error.
    assert_eq!(
        store.data_increment(id, "big", i64::MAX).await.unwrap(),
        Some(i64::MAX)
    );
    let error = store.data_increment(id, "big", 1).await.unwrap_err();
    assert!(
        error.to_string().contains("`big` would overflow"),
        "{error}"
    );
    assert_eq!(
        store.data_get(id, "big").await.unwrap().as_deref(),
        Some(i64::MAX.to_string().as_str()),
        "an overflow writes nothing"
    );
    assert_eq!(
        store.data_increment(id, "big", -1).await.unwrap(),
        Some(i64::MAX - 1)
    );
    assert_eq!(
        store.data_increment(id, "big", i64::MIN).await.unwrap(),
        Some(-2),
        "i64::MAX - 1 + i64::MIN"
    );
    assert_eq!(
        store.data_increment(id, "big", i64::MIN + 2).await.unwrap(),
        Some(i64::MIN)
    );
    let error = store.data_increment(id, "big", -1).await.unwrap_err();
    assert!(error.to_string().contains("overflow"), "{error}");
    assert!(
        store
            .data_insert(id, "n", "9007199254740993".into())
            .await
            .unwrap()
    );
    assert_eq!(
        store.data_increment(id, "n", 1).await.unwrap(),
        Some(9_007_199_254_740_994),
        "beyond f64's integers"
    );
    assert_eq!(
        store.data_increment(id, "fresh", -7).await.unwrap(),
        Some(-7)
    );
    assert_eq!(
        store.data_increment(id, "fresh", 0).await.unwrap(),
        Some(-7)
    );
}

async fn debug_hides_credentials<B: Backend>() {
    let (store, bus) = B::with_credentials();
    for text in [format!("{store:?}"), format!("{bus:?}")] {
        assert!(!text.contains("s3cret") && !text.contains("user"), "{text}");
        assert!(text.contains("127.0.0.1"), "{text}");
    }
}

fn outside_a_runtime_nothing_panics<B: Backend>() {
    let store = B::store_at("127.0.0.1:1", Duration::from_millis(100));
    let id = new_id();
    match poll_once(store.load(&id)) {
        Poll::Ready(Err(error)) => assert!(error.to_string().contains("tokio"), "{error}"),
        other => panic!("expected an error at once, got {other:?}"),
    }
    let bus = B::bus_at("127.0.0.1:1", Duration::from_millis(100));
    let connection = bus.connect(Arc::new(|_: &SessionId, _: BusEvent| {}));
    connection.listen(&id);
    connection.unlisten(&id);
    let published = poll_once(connection.publish(&id, BusEvent::Message(Bytes::new())));
    assert!(matches!(published, Poll::Ready(Err(_))));
}

async fn store_against_a_closed_port_fails_in_bounded_time<B: Backend>() {
    let store = B::store_at("127.0.0.1:1", Duration::from_millis(300));
    let session = record(&new_id(), None);
    let id = &session.id;
    let start = Instant::now();
    let mut errors = vec![
        bounded(store.create(&session, None)).await.unwrap_err(),
        bounded(store.load(id)).await.unwrap_err(),
        bounded(store.touch(std::slice::from_ref(id), WAIT))
            .await
            .unwrap_err(),
        bounded(store.delete(id)).await.unwrap_err(),
        bounded(store.data_get(id, "k")).await.unwrap_err(),
        bounded(store.data_insert(id, "k", "1".into()))
            .await
            .unwrap_err(),
        bounded(store.data_remove(id, "k")).await.unwrap_err(),
        bounded(store.data_increment(id, "k", 1)).await.unwrap_err(),
        bounded(store.ping()).await.unwrap_err(),
    ];
    // Connection refused is an outage (the layer's 503), never the other kind.
    for error in errors.drain(..) {
        assert!(error.is_unavailable(), "{error}");
    }
    // Nine operations of at most 300 ms each, with slack for a loaded machine.
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
}

async fn store_reconnects_after_its_connection_is_killed<B: Backend>() {
    let mut backend = B::new().await;
    let (store, _bus) = backend.killable().await;
    let session = record(&new_id(), None);
    store.create(&session, None).await.unwrap();

    assert!(backend.kill().await >= 1);
    let deadline = Instant::now() + WAIT;
    loop {
        match store.load(&session.id).await {
            Ok(loaded) => {
                assert_eq!(loaded, Some(session));
                break;
            }
            Err(error) => assert!(Instant::now() < deadline, "no reconnection: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn store_and_bus_against_a_silent_server_fail_in_bounded_time<B: Backend>() {
    let addr = silent_server().await;
    let store = B::store_at(&addr, Duration::from_millis(300));
    let session = record(&new_id(), None);
    for _ in 0..3 {
        let start = Instant::now();
        let error = bounded(store.create(&session, None)).await.unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        assert!(bounded(store.load(&session.id)).await.is_err());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    let bus = B::bus_at(&addr, Duration::from_millis(300));
    let (a, _inbox) = node(&bus);
    a.listen(&session.id);
    for _ in 0..3 {
        let published = bounded(a.publish(&session.id, BusEvent::Message(Bytes::new()))).await;
        assert!(published.is_err());
    }
}

/// No timeout the builders take panics or hangs: `Duration::MAX` is no timeout at all (every
/// operation works), zero fails every operation at once.
async fn extreme_timeouts_neither_panic_nor_hang<B: Backend>() {
    let backend = B::new().await;
    let session = record(&new_id(), None);
    let id = &session.id;

    let store = backend.store_with_timeout(Duration::MAX);
    assert!(store.create(&session, Some(Duration::MAX)).await.unwrap());
    assert!(store.load(id).await.unwrap().is_some());
    assert!(
        remaining_ms(&backend, id).await > 1_000_000_000,
        "a very long TTL"
    );
    assert_eq!(
        store
            .touch(std::slice::from_ref(id), Duration::MAX)
            .await
            .unwrap(),
        []
    );
    let zero = backend.store_with_timeout(Duration::ZERO);
    let loaded = bounded(zero.load(id)).await;
    assert!(loaded.unwrap_err().is_unavailable());

    let bus = backend.bus_with_timeout(Duration::MAX);
    let (a, mut inbox) = node(&bus);
    a.listen(id);
    backend.await_listening(&*a, &mut inbox, id).await;
    let message = BusEvent::Message(Bytes::from_static(b"max"));
    a.publish(id, message.clone()).await.unwrap();
    assert_eq!(next(&mut inbox).await, (id.clone(), message));
    let zero = backend.bus_with_timeout(Duration::ZERO);
    let (b, _inbox) = node(&zero);
    let published = bounded(b.publish(id, BusEvent::Closed(CloseReason::Closed))).await;
    assert!(published.is_err());
}

// ---------------------------------------------------------------------------------------------
// The bus.
// ---------------------------------------------------------------------------------------------

async fn bus_delivers_to_the_listening_node_only<B: Backend>() {
    let backend = B::new().await;
    // Two nodes, each with its own bus (as two processes would have).
    let (a, mut inbox_a) = node(&backend.bus());
    let (b, mut inbox_b) = node(&backend.bus());
    let id = new_id();

    a.listen(&id);
    a.listen(&id); // idempotent
    backend.await_listening(&*a, &mut inbox_a, &id).await;

    b.publish(&id, BusEvent::Message(Bytes::from_static(b"hello")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox_a).await,
        (id.clone(), BusEvent::Message(Bytes::from_static(b"hello")))
    );

    for reason in CloseReason::ALL {
        b.publish(&id, BusEvent::Closed(reason)).await.unwrap();
        assert_eq!(
            next(&mut inbox_a).await,
            (id.clone(), BusEvent::Closed(reason))
        );
    }

    // A node hears its own publishes to a session it listens to.
    a.publish(&id, BusEvent::Message(Bytes::from_static(b"self")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox_a).await.1,
        BusEvent::Message(Bytes::from_static(b"self"))
    );

    // Binary payloads, an empty one, non-ASCII text, and one over NOTIFY's 8000 bytes.
    let binary = Bytes::from((0..=255u8).collect::<Vec<u8>>());
    let large = Bytes::from(
        (0..100_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let messages = [
        binary,
        Bytes::new(),
        Bytes::from("Zoë 🎉".as_bytes()),
        Bytes::from(vec![b'j'; 7_990]),
        large,
    ];
    for message in &messages {
        b.publish(&id, BusEvent::Message(message.clone()))
            .await
            .unwrap();
    }
    for message in messages {
        assert_eq!(
            next(&mut inbox_a).await,
            (id.clone(), BusEvent::Message(message))
        );
    }

    assert_quiet(&mut inbox_b).await;

    // After unlisten nothing more is delivered.
    a.unlisten(&id);
    b.publish(&id, BusEvent::Message(Bytes::from_static(b"late")))
        .await
        .unwrap();
    assert_quiet(&mut inbox_a).await;
    assert_quiet(&mut inbox_b).await;
}

async fn bus_ignores_what_it_cannot_decode<B: Backend>() {
    let backend = B::new().await;
    let (a, mut inbox) = node(&backend.bus());
    let id = new_id();
    a.listen(&id);
    backend.await_listening(&*a, &mut inbox, &id).await;

    backend.publish_junk(&id).await;
    a.publish(&id, BusEvent::Message(Bytes::from_static(b"ok")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox).await,
        (id, BusEvent::Message(Bytes::from_static(b"ok")))
    );
    assert_quiet(&mut inbox).await;
}

async fn bus_listens_to_many_sessions<B: Backend>() {
    let backend = B::new().await;
    let (a, mut inbox) = node(&backend.bus());
    let ids: Vec<SessionId> = std::iter::repeat_with(new_id).take(2_500).collect();
    for id in &ids {
        a.listen(id);
    }
    for id in [&ids[0], &ids[1_500], &ids[2_499]] {
        backend.await_listening(&*a, &mut inbox, id).await;
        a.publish(id, BusEvent::Message(Bytes::from_static(b"m")))
            .await
            .unwrap();
        assert_eq!(&next(&mut inbox).await.0, id);
    }
    for id in &ids {
        a.unlisten(id);
    }
    for id in [&ids[0], &ids[1_500], &ids[2_499]] {
        a.publish(id, BusEvent::Message(Bytes::from_static(b"m")))
            .await
            .unwrap();
    }
    assert_quiet(&mut inbox).await;
}

async fn dropping_the_connection_leaves_the_bus<B: Backend>() {
    let backend = B::new().await;
    let (a, mut inbox) = node(&backend.bus());
    let id = new_id();
    a.listen(&id);
    backend.await_listening(&*a, &mut inbox, &id).await;
    drop(a);
    // The callback was dropped with the connection (the task held it weakly).
    let ended = tokio::time::timeout(WAIT, inbox.recv()).await;
    assert!(matches!(ended, Ok(None)), "{ended:?}");
    backend.await_no_bus_connection(&id).await;
}

async fn bus_listens_again_after_its_connection_is_killed<B: Backend>() {
    let (logs, _guard) = capture_logs();
    let mut backend = B::new().await;
    let (_store, bus) = backend.killable().await;
    let (a, mut inbox) = node(&bus);
    let id = new_id();
    a.listen(&id);
    backend.await_listening(&*a, &mut inbox, &id).await;

    assert!(backend.kill().await >= 1);
    // Listened to while the link is down: listened to with the rest on reconnection.
    let second = new_id();
    a.listen(&second);
    let publisher = backend.bus();
    let (b, _inbox_b) = node(&publisher);
    backend.await_listening(&*a, &mut inbox, &id).await;
    backend.await_listening(&*a, &mut inbox, &second).await;

    b.publish(&id, BusEvent::Message(Bytes::from_static(b"again")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox).await,
        (id, BusEvent::Message(Bytes::from_static(b"again")))
    );
    b.publish(&second, BusEvent::Closed(CloseReason::Evicted))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox).await,
        (second, BusEvent::Closed(CloseReason::Evicted))
    );
    assert_eq!(count_lines(&logs, B::DOWN), 1);
    assert_eq!(count_lines(&logs, B::BACK), 1);
}

async fn bus_against_a_closed_port_fails_in_bounded_time<B: Backend>() {
    let bus = B::bus_at("127.0.0.1:1", Duration::from_millis(300));
    let (a, mut inbox) = node(&bus);
    let id = new_id();
    a.listen(&id);
    a.unlisten(&id);
    a.listen(&id);
    let start = Instant::now();
    let published = bounded(a.publish(&id, BusEvent::Message(Bytes::from_static(b"x")))).await;
    assert!(published.is_err());
    assert!(bounded(a.ping()).await.is_err());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(inbox.try_recv().is_err());
    drop(a);
}

async fn a_long_outage_warns_once<B: Backend>() {
    let (logs, _guard) = capture_logs();
    let bus = B::bus_at("127.0.0.1:1", Duration::from_millis(200));
    let (a, _inbox) = node(&bus);
    a.listen(&new_id());
    // Attempts at about 0, 0.1, 0.3, 0.7 and 1.5 s.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(count_lines(&logs, B::DOWN), 1);
    assert_eq!(count_lines(&logs, "WARN"), 1);
    drop(a);
}

// ---------------------------------------------------------------------------------------------
// Two layers sharing the backend (the several-nodes test of tests/redis_nodes.rs).
// ---------------------------------------------------------------------------------------------

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
type LayerBody = tower_mcp_session::body::ResponseBody<Body, Body>;

const SAMPLING: &str =
    r#"{"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage","params":{}}"#;
const ANSWER: &str = r#"{"jsonrpc":"2.0","id":"srv-1","result":{"role":"assistant","content":{"type":"text","text":"hi"}}}"#;
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}"#;
const INCREMENT: &str =
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"increment"}}"#;

/// One session's service: answers `initialize`; a GET stream sends a sampling request, then
/// whatever is published to the session; a POSTed JSON-RPC response is published to the
/// session (so it reaches the stream on whichever node holds it); `increment` adds 1 to the
/// session's `count` and answers the new value.
async fn session_service(
    request: Request<RequestBody<Full<Bytes>>>,
) -> Result<Response<Body>, Infallible> {
    let session = request
        .extensions()
        .get::<Session>()
        .cloned()
        .expect("the layer inserts the Session");
    if request.method() == Method::GET {
        let subscription = session.subscribe();
        let first = futures_util::stream::once(async { Bytes::from_static(SAMPLING.as_bytes()) });
        let rest = futures_util::stream::unfold(subscription, |mut subscription| async move {
            let message = subscription.recv().await?;
            Some((message, subscription))
        });
        let frames = first
            .chain(rest)
            .map(|bytes| Ok::<_, Infallible>(http_body::Frame::data(bytes)));
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(frames))));
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let (status, answer) = if text.contains(r#""method":"initialize""#) {
        (StatusCode::OK, Bytes::from_static(b"{}"))
    } else if text.contains(r#""name":"increment""#) {
        let count = session
            .data()
            .increment("count", 1)
            .await
            .expect("incremented");
        (StatusCode::OK, Bytes::from(count.to_string()))
    } else if text.contains(r#""result""#) {
        session.publish(body.clone()).await.expect("published");
        (StatusCode::ACCEPTED, Bytes::new())
    } else {
        (StatusCode::ACCEPTED, Bytes::new())
    };
    let mut response = Response::new(BodyExt::boxed(Full::new(answer)));
    *response.status_mut() = status;
    Ok(response)
}

fn layer_node<S: SessionStore, Bs: SessionBus>(
    store: S,
    bus: Option<Bs>,
    built: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<LayerBody>,
    Error = Infallible,
    Future: Send,
> + Clone {
    let inner = tower::service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(BodyExt::boxed(Full::new(Bytes::new()))))
    });
    let mut cluster = Cluster::new(store);
    if let Some(bus) = bus {
        cluster = cluster.bus(bus);
    }
    let layer = SessionLayer::mcp(move |_info: SessionInfo, _inner| {
        built.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(tower::service_fn(session_service)) }
    })
    .cluster(cluster)
    .build();
    tower::ServiceBuilder::new().layer(layer).service(inner)
}

fn post(id: Option<&str>, body: &'static str) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(id) = id {
        builder = builder
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-11-25");
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// The next data frame of a response body (`None` at its end), within 10 s.
async fn next_frame(body: &mut LayerBody) -> Option<Bytes> {
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("a frame in time");
    frame.map(|f| f.unwrap().into_data().unwrap())
}

async fn text(response: Response<LayerBody>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn two_nodes_share_sessions_data_messages_and_closes<B: Backend>() {
    let backend = B::new().await;
    let (built_a, built_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (store_a, bus_a) = backend.node_store_bus("a");
    let (store_b, bus_b) = backend.node_store_bus("b");
    let a = layer_node(store_a, Some(bus_a), Arc::clone(&built_a));
    let b = layer_node(store_b, Some(bus_b), Arc::clone(&built_b));

    let opened = a.clone().oneshot(post(None, INITIALIZE)).await.unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    let id = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let session_id = SessionId::parse(&id).unwrap();
    backend.await_node_listening("a", &session_id).await;

    // The client's GET stream on A receives the server's sampling request.
    let get = Request::get("/mcp")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &id)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let stream = a.clone().oneshot(get).await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut stream = stream.into_body();
    assert_eq!(next_frame(&mut stream).await.unwrap(), SAMPLING.as_bytes());

    // The data map is shared: increments on A, B, A count 1, 2, 3.
    for (node, expected) in [(&a, "1"), (&b, "2"), (&a, "3")] {
        let answered = node
            .clone()
            .oneshot(post(Some(&id), INCREMENT))
            .await
            .unwrap();
        assert_eq!(answered.status(), StatusCode::OK);
        assert_eq!(text(answered).await, expected);
    }
    assert_eq!(
        built_b.load(Ordering::SeqCst),
        1,
        "B restored the session once"
    );

    // The client answers through node B: its service publishes the answer, and the bus
    // carries it to A's stream.
    let answered = b.clone().oneshot(post(Some(&id), ANSWER)).await.unwrap();
    assert_eq!(answered.status(), StatusCode::ACCEPTED);
    assert_eq!(built_b.load(Ordering::SeqCst), 1);
    assert_eq!(next_frame(&mut stream).await.unwrap(), ANSWER.as_bytes());

    // DELETE through B closes the session on A too: A's stream ends, both answer 404.
    let delete = Request::delete("/mcp")
        .header("mcp-session-id", &id)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let deleted = b.clone().oneshot(delete).await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(next_frame(&mut stream).await.is_none(), "A's stream ends");
    for node in [&a, &b] {
        let gone = node.clone().oneshot(post(Some(&id), ANSWER)).await.unwrap();
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(built_a.load(Ordering::SeqCst), 1);
    assert_eq!(built_b.load(Ordering::SeqCst), 1);
    assert!(!backend.exists(&session_id).await, "the record is gone");
}

/// The store refusing connections: opening answers 503 (the layer's store-unavailable
/// answer), never a session without a record.
async fn an_unreachable_store_answers_503<B: Backend>() {
    let store = B::store_at("127.0.0.1:1", Duration::from_millis(300));
    let node = layer_node(store, None::<B::Bus>, Arc::new(AtomicUsize::new(0)));
    let refused = bounded(node.clone().oneshot(post(None, INITIALIZE)))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.headers().get("mcp-session-id").is_none());
    assert_eq!(
        text(refused).await,
        r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Service unavailable: session store unreachable"},"id":null}"#
    );
    // A restore too: 503, not 404 (the session may well exist).
    let restore = bounded(node.clone().oneshot(post(Some(new_id().as_str()), ANSWER)))
        .await
        .unwrap();
    assert_eq!(restore.status(), StatusCode::SERVICE_UNAVAILABLE);
}

// ---------------------------------------------------------------------------------------------
// The backends.
// ---------------------------------------------------------------------------------------------

mod redis_backend {
    use super::*;
    use redis::aio::MultiplexedConnection;
    use tower_mcp_session::bus::RedisBus;
    use tower_mcp_session::store::RedisStore;

    fn url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    async fn admin() -> MultiplexedConnection {
        let url = url();
        let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a Redis URL");
        match tokio::time::timeout(
            Duration::from_secs(3),
            client.get_multiplexed_async_connection(),
        )
        .await
        {
            Ok(Ok(con)) => con,
            _ => panic!("these tests need a Redis 7 at {url} (set REDIS_URL to use another)"),
        }
    }

    /// A test's key prefix; its keys (and its ACL user, if any) are deleted when dropped.
    pub(super) struct Redis {
        prefix: String,
        con: MultiplexedConnection,
        /// The ACL user of `killable`, and its password.
        user: Option<(String, String)>,
    }

    impl Redis {
        fn key(&self, id: &SessionId) -> String {
            format!("{}{{{}}}", self.prefix, id)
        }

        fn client_as(&self, user: &str, password: &str) -> redis::Client {
            let info: redis::ConnectionInfo = url().parse().expect("REDIS_URL");
            let settings = info
                .redis_settings()
                .clone()
                .set_username(user)
                .set_password(password);
            redis::Client::open(info.set_redis_settings(settings)).expect("client")
        }
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            let Ok(client) = redis::Client::open(url().as_str()) else {
                return;
            };
            let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
                return;
            };
            if let Some((user, _)) = &self.user {
                let _: redis::RedisResult<i64> =
                    redis::cmd("ACL").arg("DELUSER").arg(user).query(&mut con);
            }
            let pattern = format!("{}*", self.prefix);
            let mut cursor = 0u64;
            loop {
                let Ok((next, keys)): redis::RedisResult<(u64, Vec<Vec<u8>>)> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut con)
                else {
                    return;
                };
                if !keys.is_empty() {
                    let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut con);
                }
                if next == 0 {
                    return;
                }
                cursor = next;
            }
        }
    }

    impl Backend for Redis {
        type Store = RedisStore;
        type Bus = RedisBus;
        const DOWN: &'static str = "subscription connection is down";
        const BACK: &'static str = "subscription connection is back";

        async fn new() -> Self {
            let con = admin().await;
            Self {
                prefix: format!("tms-test:{}:", uuid::Uuid::new_v4()),
                con,
                user: None,
            }
        }

        fn store(&self) -> RedisStore {
            RedisStore::open(&url(), self.prefix.clone()).expect("store")
        }

        fn store_with_timeout(&self, timeout: Duration) -> RedisStore {
            self.store().with_timeout(timeout)
        }

        fn bus(&self) -> RedisBus {
            RedisBus::open(&url(), self.prefix.clone()).expect("bus")
        }

        fn bus_with_timeout(&self, timeout: Duration) -> RedisBus {
            self.bus().with_timeout(timeout)
        }

        async fn killable(&mut self) -> (RedisStore, RedisBus) {
            let name = format!("tms-test-{}", uuid::Uuid::new_v4().simple());
            let password = uuid::Uuid::new_v4().simple().to_string();
            let _: () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&name)
                .arg("on")
                .arg(format!(">{password}"))
                .arg(format!("~{}*", self.prefix))
                .arg(format!("&{}*", self.prefix))
                .arg("+@all")
                .query_async(&mut self.con)
                .await
                .expect("ACL SETUSER");
            let client = self.client_as(&name, &password);
            self.user = Some((name, password));
            (
                RedisStore::new(client.clone(), self.prefix.clone()).unwrap(),
                RedisBus::new(client, self.prefix.clone()).unwrap(),
            )
        }

        async fn kill(&self) -> usize {
            let (user, _) = self.user.as_ref().expect("killable first");
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("USER")
                .arg(user)
                .query_async(&mut self.con.clone())
                .await
                .unwrap();
            usize::try_from(killed).unwrap()
        }

        fn store_at(addr: &str, timeout: Duration) -> RedisStore {
            RedisStore::open(&format!("redis://{addr}"), "tms-test:elsewhere:")
                .unwrap()
                .with_timeout(timeout)
        }

        fn bus_at(addr: &str, timeout: Duration) -> RedisBus {
            RedisBus::open(&format!("redis://{addr}"), "tms-test:elsewhere:")
                .unwrap()
                .with_timeout(timeout)
        }

        fn with_credentials() -> (RedisStore, RedisBus) {
            let url = "redis://user:s3cret@127.0.0.1:1/2";
            (
                RedisStore::open(url, "p:").unwrap(),
                RedisBus::open(url, "p:").unwrap(),
            )
        }

        async fn remaining(&self, id: &SessionId) -> Option<Option<Duration>> {
            let ms: i64 = redis::cmd("PTTL")
                .arg(self.key(id))
                .query_async(&mut self.con.clone())
                .await
                .unwrap();
            match ms {
                -2 => None,
                -1 => Some(None),
                ms => Some(Some(Duration::from_millis(ms.unsigned_abs()))),
            }
        }

        async fn set_remaining(&self, id: &SessionId, remaining: Duration) {
            let _: () = redis::cmd("PEXPIRE")
                .arg(self.key(id))
                .arg(u64::try_from(remaining.as_millis()).unwrap())
                .query_async(&mut self.con.clone())
                .await
                .unwrap();
        }

        async fn exists(&self, id: &SessionId) -> bool {
            redis::cmd("EXISTS")
                .arg(self.key(id))
                .query_async::<i64>(&mut self.con.clone())
                .await
                .unwrap()
                == 1
        }

        async fn write_malformed(&self, id: &SessionId) {
            let _: () = redis::cmd("HSET")
                .arg(self.key(id))
                .arg("created")
                .arg("yesterday")
                .query_async(&mut self.con.clone())
                .await
                .unwrap();
        }

        async fn publish_junk(&self, id: &SessionId) {
            for junk in [&b""[..], b"x", b"c", b"c\xff", b"c\x00\x00"] {
                let _: i64 = redis::cmd("SPUBLISH")
                    .arg(self.key(id))
                    .arg(junk)
                    .query_async(&mut self.con.clone())
                    .await
                    .unwrap();
            }
        }

        async fn await_no_bus_connection(&self, id: &SessionId) {
            let deadline = Instant::now() + WAIT;
            loop {
                let (_, count): (String, i64) = redis::cmd("PUBSUB")
                    .arg("SHARDNUMSUB")
                    .arg(self.key(id))
                    .query_async(&mut self.con.clone())
                    .await
                    .unwrap();
                if count == 0 {
                    return;
                }
                assert!(Instant::now() < deadline, "{count} subscribers left");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        async fn await_node_listening(&self, _name: &str, id: &SessionId) {
            let deadline = Instant::now() + WAIT;
            loop {
                let (_, count): (String, i64) = redis::cmd("PUBSUB")
                    .arg("SHARDNUMSUB")
                    .arg(self.key(id))
                    .query_async(&mut self.con.clone())
                    .await
                    .unwrap();
                if count >= 1 {
                    return;
                }
                assert!(Instant::now() < deadline, "the node never subscribed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        fn node_store_bus(&self, _name: &str) -> (RedisStore, RedisBus) {
            (self.store(), self.bus())
        }
    }
}

mod postgres_backend {
    use super::*;
    use tower_mcp_session::bus::PostgresBus;
    use tower_mcp_session::store::PostgresStore;

    pub(super) fn url() -> String {
        std::env::var("POSTGRES_URL")
            .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".to_owned())
    }

    /// `url` with the connection parameter `application_name=name`.
    fn url_named(name: &str) -> String {
        let url = url();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}application_name={name}")
    }

    pub(super) async fn admin() -> tokio_postgres::Client {
        let url = url();
        let connecting = tokio_postgres::connect(&url, tokio_postgres::NoTls);
        let (client, connection) = match tokio::time::timeout(Duration::from_secs(3), connecting)
            .await
        {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => panic!(
                "these tests need a PostgreSQL at {url} (set POSTGRES_URL to use another): {e}"
            ),
            Err(_) => panic!("these tests need a PostgreSQL at {url}: no connection within 3 s"),
        };
        tokio::spawn(connection);
        client
    }

    /// Drops `schema` (and everything in it) on a thread of its own, so that it also runs
    /// from `Drop` inside a runtime and when the test panics.
    pub(super) fn drop_schema(schema: &str) {
        let schema = schema.to_owned();
        let done = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let url = url();
                let connecting = tokio_postgres::connect(&url, tokio_postgres::NoTls);
                let Ok(Ok((client, connection))) =
                    tokio::time::timeout(Duration::from_secs(3), connecting).await
                else {
                    return;
                };
                tokio::spawn(connection);
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")),
                )
                .await;
            });
        });
        let _ = done.join();
    }

    /// A test's schema (`tms_test_<uuid>`), dropped when dropped.
    pub(super) struct Postgres {
        pub(super) schema: String,
        admin: tokio_postgres::Client,
        /// The application name of `killable`'s connections.
        killable: String,
    }

    impl Drop for Postgres {
        fn drop(&mut self) {
            drop_schema(&self.schema);
        }
    }

    impl Postgres {
        pub(super) fn app(&self, name: &str) -> String {
            format!("{}_{name}", self.schema)
        }

        async fn connections(&self, app: &str, queries: Option<&[&str]>) -> i64 {
            let row = match queries {
                None => self
                    .admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                        &[&app],
                    )
                    .await
                    .unwrap(),
                Some(queries) => self
                    .admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                         AND query = ANY($2)",
                        &[&app, &queries],
                    )
                    .await
                    .unwrap(),
            };
            row.get(0)
        }
    }

    impl Backend for Postgres {
        type Store = PostgresStore;
        type Bus = PostgresBus;
        const DOWN: &'static str = "listener connection is down";
        const BACK: &'static str = "listener connection is back";

        async fn new() -> Self {
            let admin = admin().await;
            let schema = format!("tms_test_{}", uuid::Uuid::new_v4().simple());
            Self {
                killable: format!("{schema}_killable"),
                schema,
                admin,
            }
        }

        fn store(&self) -> PostgresStore {
            PostgresStore::open(&url(), self.schema.clone()).expect("store")
        }

        fn store_with_timeout(&self, timeout: Duration) -> PostgresStore {
            self.store().with_timeout(timeout)
        }

        /// A bus whose connections carry the application name `<schema>_bus`.
        fn bus(&self) -> PostgresBus {
            PostgresBus::open(&url_named(&self.app("bus")), self.schema.clone()).expect("bus")
        }

        fn bus_with_timeout(&self, timeout: Duration) -> PostgresBus {
            self.bus().with_timeout(timeout)
        }

        async fn killable(&mut self) -> (PostgresStore, PostgresBus) {
            let url = url_named(&self.killable);
            (
                PostgresStore::open(&url, self.schema.clone()).unwrap(),
                PostgresBus::open(&url, self.schema.clone()).unwrap(),
            )
        }

        async fn kill(&self) -> usize {
            let rows = self
                .admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1",
                    &[&self.killable],
                )
                .await
                .unwrap();
            rows.len()
        }

        fn store_at(addr: &str, timeout: Duration) -> PostgresStore {
            PostgresStore::open(
                &format!("postgresql://postgres@{addr}/test"),
                "tms_elsewhere",
            )
            .unwrap()
            .with_timeout(timeout)
        }

        fn bus_at(addr: &str, timeout: Duration) -> PostgresBus {
            PostgresBus::open(
                &format!("postgresql://postgres@{addr}/test"),
                "tms_elsewhere",
            )
            .unwrap()
            .with_timeout(timeout)
        }

        fn with_credentials() -> (PostgresStore, PostgresBus) {
            let url = "postgresql://user:s3cret@127.0.0.1:1/test";
            (
                PostgresStore::open(url, "p").unwrap(),
                PostgresBus::open(url, "p").unwrap(),
            )
        }

        async fn remaining(&self, id: &SessionId) -> Option<Option<Duration>> {
            let sql = format!(
                "SELECT (extract(epoch FROM expires_at - now()) * 1000)::bigint FROM {}.sessions \
                 WHERE id = $1 AND (expires_at IS NULL OR expires_at > now())",
                self.schema
            );
            let row = self.admin.query_opt(&sql, &[&id.as_str()]).await.unwrap()?;
            let ms: Option<i64> = row.get(0);
            Some(ms.map(|ms| Duration::from_millis(ms.unsigned_abs())))
        }

        async fn set_remaining(&self, id: &SessionId, remaining: Duration) {
            let sql = format!(
                "UPDATE {}.sessions SET expires_at = now() + $2::bigint * interval '1 ms' \
                 WHERE id = $1",
                self.schema
            );
            let ms = i64::try_from(remaining.as_millis()).unwrap();
            let updated = self
                .admin
                .execute(&sql, &[&id.as_str(), &ms])
                .await
                .unwrap();
            assert_eq!(updated, 1);
        }

        async fn exists(&self, id: &SessionId) -> bool {
            // The table exists once the store ran its migration; before, nothing exists.
            let sql = format!(
                "SELECT count(*) FROM {}.sessions WHERE id = $1",
                self.schema
            );
            match self.admin.query_one(&sql, &[&id.as_str()]).await {
                Ok(row) => row.get::<_, i64>(0) == 1,
                Err(error)
                    if error.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
                {
                    false
                }
                Err(error)
                    if error.code()
                        == Some(&tokio_postgres::error::SqlState::INVALID_SCHEMA_NAME) =>
                {
                    false
                }
                Err(error) => panic!("{error}"),
            }
        }

        async fn write_malformed(&self, id: &SessionId) {
            self.store().migrate().await.unwrap();
            let sql = format!(
                "INSERT INTO {}.sessions (id, created_ms, method, uri, headers, body) \
                 VALUES ($1, -1, 'POST', '/mcp', '', '')",
                self.schema
            );
            self.admin.execute(&sql, &[&id.as_str()]).await.unwrap();
        }

        async fn publish_junk(&self, id: &SessionId) {
            let id = id.as_str();
            for junk in [
                String::new(),
                "x".to_owned(),
                id.to_owned(),
                format!("{id} "),
                format!("{id} x"),
                format!("{id} rx"),
                format!("{id} rc"),
                format!("{id} b!!!!"),
                format!("{id} bY/8="),
                format!("{id} t"),
                format!("{id} t999999999"),
                "not-an-id\u{7f} rmx".to_owned(),
            ] {
                self.admin
                    .execute("SELECT pg_notify($1, $2)", &[&self.schema, &junk])
                    .await
                    .unwrap();
            }
        }

        async fn await_no_bus_connection(&self, _id: &SessionId) {
            // Every connection of the buses of `bus()`: the listener and the publishing pool.
            let app = self.app("bus");
            let deadline = Instant::now() + WAIT;
            loop {
                let count = self.connections(&app, None).await;
                if count == 0 {
                    return;
                }
                assert!(Instant::now() < deadline, "{count} bus connections left");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        async fn await_node_listening(&self, name: &str, _id: &SessionId) {
            // One LISTEN per node: once it is through, every session of the node is listened
            // to. The node's listener is its bus connection that has run a statement (its
            // LISTEN, then health checks) other than a publish.
            let app = format!("{}_bus", self.app(name));
            let deadline = Instant::now() + WAIT;
            loop {
                let row = self
                    .admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                         AND state = 'idle' AND query <> '' AND query NOT LIKE '%pg_notify%'",
                        &[&app],
                    )
                    .await
                    .unwrap();
                if row.get::<_, i64>(0) >= 1 {
                    return;
                }
                assert!(Instant::now() < deadline, "node {name} never listened");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        fn node_store_bus(&self, name: &str) -> (PostgresStore, PostgresBus) {
            let store_url = url_named(&format!("{}_store", self.app(name)));
            let bus_url = url_named(&format!("{}_bus", self.app(name)));
            (
                PostgresStore::open(&store_url, self.schema.clone()).unwrap(),
                PostgresBus::open(&bus_url, self.schema.clone()).unwrap(),
            )
        }
    }
}

/// One test function per body, per backend.
macro_rules! backend_tests {
    ($module:ident, $backend:ty) => {
        mod $module {
            use super::*;

            macro_rules! run {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        super::$name::<$backend>().await;
                    }
                };
                (multi $name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::$name::<$backend>().await;
                    }
                };
            }

            run!(create_and_load_round_trip);
            run!(load_of_a_missing_id_is_none);
            run!(malformed_record_is_an_error);
            run!(ttl_is_set_and_touch_refreshes_it);
            run!(record_without_ttl_does_not_expire);
            run!(delete_if_unused_spares_a_record_refreshed_since);
            run!(delete_answers_whether_there_was_a_record);
            run!(data_insert_get_remove);
            run!(writes_to_a_missing_record_create_nothing);
            run!(multi increments_through_two_stores_lose_no_count);
            run!(increment_is_exact_over_i64_and_refuses_what_is_not_an_integer);
            run!(debug_hides_credentials);
            run!(store_against_a_closed_port_fails_in_bounded_time);
            run!(store_reconnects_after_its_connection_is_killed);
            run!(store_and_bus_against_a_silent_server_fail_in_bounded_time);
            run!(extreme_timeouts_neither_panic_nor_hang);
            run!(multi bus_delivers_to_the_listening_node_only);
            run!(multi bus_ignores_what_it_cannot_decode);
            run!(multi bus_listens_to_many_sessions);
            run!(multi dropping_the_connection_leaves_the_bus);
            run!(bus_listens_again_after_its_connection_is_killed);
            run!(bus_against_a_closed_port_fails_in_bounded_time);
            run!(a_long_outage_warns_once);
            run!(multi two_nodes_share_sessions_data_messages_and_closes);
            run!(an_unreachable_store_answers_503);

            #[test]
            fn outside_a_runtime_nothing_panics() {
                super::outside_a_runtime_nothing_panics::<$backend>();
            }
        }
    };
}

backend_tests!(on_redis, redis_backend::Redis);
backend_tests!(on_postgres, postgres_backend::Postgres);
