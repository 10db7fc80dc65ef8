//! `RedisStore` and `RedisBus` against a real Redis (7 or later): 127.0.0.1:6379, or the URL in
//! `REDIS_URL`. A Redis that cannot be reached fails these tests; they never skip.
//!
//! Each test works under its own key prefix (`tms-test:<uuid>:`) and deletes only the keys
//! under it when it ends (`SCAN MATCH prefix*` + `DEL`, also when it panics); nothing else in
//! the Redis is touched.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use redis::aio::MultiplexedConnection;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_mcp_session::bus::{BusConnection, BusEvent, Deliver, RedisBus, SessionBus};
use tower_mcp_session::store::{OpeningRequest, RedisStore, SessionRecord, SessionStore};
use tower_mcp_session::{CloseReason, Principal, SessionId};

/// How long a test waits for something that should happen.
const WAIT: Duration = Duration::from_secs(5);

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
    // tracing's global level hint is recomputed from the live subscribers whenever one of
    // them goes away: with the tests' scoped subscribers coming and going on other threads it
    // can drop to OFF for a moment and skip this thread's events. A global subscriber at INFO
    // (writing nowhere) keeps it at INFO.
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

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A connection for the test's own checks; fails the test if Redis cannot be reached.
async fn admin() -> MultiplexedConnection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("REDIS_URL {url:?} is not a Redis URL: {e}"));
    let connecting = client.get_multiplexed_async_connection();
    let mut con = match tokio::time::timeout(Duration::from_secs(3), connecting).await {
        Ok(Ok(con)) => con,
        Ok(Err(e)) => panic!(
            "these tests need a Redis 7 at {url} (set REDIS_URL to use another): cannot \
             connect: {e}"
        ),
        Err(_) => panic!(
            "these tests need a Redis 7 at {url} (set REDIS_URL to use another): no \
             connection within 3 s"
        ),
    };
    let pong: String = redis::cmd("PING")
        .query_async(&mut con)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} does not answer PING: {e}"));
    assert_eq!(pong, "PONG");
    con
}

/// A Redis user of one test (`ACL SETUSER`), allowed only the test's keys and channels, so
/// that the test can kill exactly its own connections (`CLIENT KILL USER`); deleted when
/// dropped.
struct TestUser {
    name: String,
    password: String,
}

impl TestUser {
    async fn new(con: &mut MultiplexedConnection, prefix: &str) -> Self {
        let user = Self {
            name: format!("tms-test-{}", uuid::Uuid::new_v4().simple()),
            password: uuid::Uuid::new_v4().simple().to_string(),
        };
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user.name)
            .arg("on")
            .arg(format!(">{}", user.password))
            .arg(format!("~{prefix}*"))
            .arg(format!("&{prefix}*"))
            .arg("+@all")
            .query_async(con)
            .await
            .expect("ACL SETUSER (the tests need a Redis where they may create a user)");
        user
    }

    /// A client that logs in as this user.
    fn client(&self) -> redis::Client {
        let info: redis::ConnectionInfo = redis_url().parse().expect("REDIS_URL");
        let redis = info
            .redis_settings()
            .clone()
            .set_username(&self.name)
            .set_password(&self.password);
        redis::Client::open(info.set_redis_settings(redis)).expect("client")
    }

    /// Kills every connection of this user; returns how many.
    async fn kill_connections(&self, con: &mut MultiplexedConnection) -> i64 {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(&self.name)
            .query_async(con)
            .await
            .unwrap()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(redis_url().as_str())
            && let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2))
        {
            let _: redis::RedisResult<i64> = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.name)
                .query(&mut con);
        }
    }
}

/// This test's key prefix; deletes the test's keys when dropped.
struct Scope {
    prefix: String,
}

impl Scope {
    async fn new() -> (Self, MultiplexedConnection) {
        let con = admin().await;
        let prefix = format!("tms-test:{}:", uuid::Uuid::new_v4());
        (Self { prefix }, con)
    }

    fn key(&self, id: &SessionId) -> String {
        format!("{}{{{}}}", self.prefix, id)
    }

    fn store(&self) -> RedisStore {
        RedisStore::open(&redis_url(), self.prefix.clone()).expect("store")
    }

    fn bus(&self) -> RedisBus {
        RedisBus::open(&redis_url(), self.prefix.clone()).expect("bus")
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // Synchronous, so that it also runs when the test panics.
        let Ok(client) = redis::Client::open(redis_url().as_str()) else {
            return;
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
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

async fn pttl(con: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(con).await.unwrap()
}

async fn exists(con: &mut MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(con)
        .await
        .unwrap()
        == 1
}

#[tokio::test]
async fn create_and_load_round_trip() {
    let (scope, mut con) = Scope::new().await;
    let store = scope.store();

    let alice = record(&new_id(), Some("alice@example.com"));
    store
        .create(&alice, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(store.load(&alice.id).await.unwrap().as_ref(), Some(&alice));
    let accept: Vec<&HeaderValue> = alice.opening.headers.get_all("accept").iter().collect();
    assert_eq!(accept.len(), 2, "repeated header names are kept, in order");

    let mut anonymous = record(&new_id(), None);
    anonymous.opening.headers.clear();
    anonymous.opening.body = Bytes::new();
    anonymous.opening.method = Method::GET;
    anonymous.opening.uri = Uri::from_static("/mcp");
    store.create(&anonymous, None).await.unwrap();
    assert_eq!(
        store.load(&anonymous.id).await.unwrap(),
        Some(anonymous.clone())
    );
    let has_principal: bool = redis::cmd("HEXISTS")
        .arg(scope.key(&anonymous.id))
        .arg("principal")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(!has_principal, "no principal: no `principal` field");
}

#[tokio::test]
async fn load_of_a_missing_id_is_none() {
    let (scope, mut con) = Scope::new().await;
    let store = scope.store();
    let id = new_id();
    assert_eq!(store.load(&id).await.unwrap(), None);
    assert!(!exists(&mut con, &scope.key(&id)).await);
}

#[tokio::test]
async fn malformed_record_is_an_error() {
    let (scope, mut con) = Scope::new().await;
    let store = scope.store();
    let id = new_id();
    let _: () = redis::cmd("HSET")
        .arg(scope.key(&id))
        .arg("created")
        .arg("yesterday")
        .query_async(&mut con)
        .await
        .unwrap();
    let error = store.load(&id).await.unwrap_err();
    assert!(error.to_string().contains("created"), "{error}");

    // Another type under the key: Redis's WRONGTYPE, an error too.
    let other = new_id();
    let _: () = redis::cmd("SET")
        .arg(scope.key(&other))
        .arg("x")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(store.load(&other).await.is_err());
}

#[tokio::test]
async fn ttl_is_set_and_touch_refreshes_it() {
    let (scope, mut con) = Scope::new().await;
    let store = scope.store();
    let session = record(&new_id(), None);
    let key = scope.key(&session.id);

    store
        .create(&session, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    let ms = pttl(&mut con, &key).await;
    assert!((9_000..=10_000).contains(&ms), "PTTL {ms}");

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
    let ms = pttl(&mut con, &key).await;
    assert!((59_000..=60_000).contains(&ms), "PTTL after touch {ms}");
    assert!(
        !exists(&mut con, &scope.key(&missing)).await,
        "touch creates nothing"
    );

    assert!(
        store
            .touch(&[], Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );

    // More ids than one pipeline holds.
    let many: Vec<SessionId> = std::iter::repeat_with(new_id)
        .take(2_500)
        .chain([session.id.clone()])
        .collect();
    let gone = store.touch(&many, Duration::from_secs(120)).await.unwrap();
    assert_eq!(
        gone.len(),
        2_500,
        "every id but the live one is reported missing"
    );
    let ms = pttl(&mut con, &key).await;
    assert!(
        (119_000..=120_000).contains(&ms),
        "PTTL after a large touch {ms}"
    );
}

#[tokio::test]
async fn record_without_ttl_does_not_expire() {
    let (scope, mut con) = Scope::new().await;
    let store = scope.store();
    let session = record(&new_id(), None);
    let key = scope.key(&session.id);

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
    assert!(!store.create(&session, None).await.unwrap());
    assert!(pttl(&mut con, &key).await > 0);
    assert_eq!(
        store.data_get(&session.id, "k").await.unwrap().as_deref(),
        Some("1")
    );
    // Created again (after a delete) without a TTL: a fresh record, no expiry, no data left
    // over.
    assert!(store.delete(&session.id).await.unwrap());
    assert!(store.create(&session, None).await.unwrap());
    assert_eq!(pttl(&mut con, &key).await, -1);
    assert_eq!(store.data_get(&session.id, "k").await.unwrap(), None);
}

#[tokio::test]
async fn delete_if_unused_spares_a_record_refreshed_since() {
    let (scope, mut con) = Scope::new().await;
    let store = scope.store();
    let ttl = Duration::from_secs(60);
    let session = record(&new_id(), None);
    let key = scope.key(&session.id);
    assert!(store.create(&session, Some(ttl)).await.unwrap());
    // Refreshed just now (remaining ~60 s): unused for 10 s on the evicting node means
    // another node refreshed it since.
    assert!(
        !store
            .delete_if_unused(&session.id, ttl, Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(pttl(&mut con, &key).await > 0, "kept");
    // Last refreshed 20 s ago (remaining 40 s) while unused for 30 s on the evicting node:
    // someone else refreshed it since — kept.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(40_000)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        !store
            .delete_if_unused(&session.id, ttl, Duration::from_secs(30))
            .await
            .unwrap()
    );
    // Last refreshed 40 s ago (remaining 20 s), unused for 30 s: nobody refreshed it since
    // this node last used it — deleted.
    let _: () = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(20_000)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        store
            .delete_if_unused(&session.id, ttl, Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert_eq!(pttl(&mut con, &key).await, -2, "deleted");
    // No record: nothing to delete.
    assert!(
        !store
            .delete_if_unused(&session.id, ttl, Duration::ZERO)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn delete_answers_whether_there_was_a_record() {
    let (scope, mut con) = Scope::new().await;
    let store = scope.store();
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
    assert!(!exists(&mut con, &scope.key(&session.id)).await);
    assert_eq!(store.load(&session.id).await.unwrap(), None);
    assert_eq!(store.data_get(&session.id, "k").await.unwrap(), None);
}

#[tokio::test]
async fn data_insert_get_remove() {
    let (scope, mut con) = Scope::new().await;
    let store = scope.store();
    let session = record(&new_id(), None);
    store
        .create(&session, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let id = &session.id;

    assert_eq!(store.data_get(id, "user").await.unwrap(), None);
    let json = r#"{"name":"Zoë","tags":["a","b"]}"#.to_owned();
    assert!(store.data_insert(id, "user", json.clone()).await.unwrap());
    assert_eq!(store.data_get(id, "user").await.unwrap(), Some(json));
    assert!(store.data_insert(id, "user", "null".into()).await.unwrap());
    assert_eq!(
        store.data_get(id, "user").await.unwrap().as_deref(),
        Some("null")
    );
    // Data keys cannot collide with the record's fields.
    assert!(store.data_insert(id, "created", "7".into()).await.unwrap());
    assert_eq!(store.load(id).await.unwrap(), Some(session.clone()));

    assert!(store.data_remove(id, "user").await.unwrap());
    assert!(!store.data_remove(id, "user").await.unwrap());
    assert_eq!(store.data_get(id, "user").await.unwrap(), None);

    // Writing data leaves the TTL alone.
    let ms = pttl(&mut con, &scope.key(id)).await;
    assert!((50_000..=60_000).contains(&ms), "PTTL {ms}");
}

#[tokio::test]
async fn writes_to_a_missing_record_create_nothing() {
    let (scope, mut con) = Scope::new().await;
    let store = scope.store();
    let id = new_id();

    assert!(!store.data_insert(&id, "k", "1".into()).await.unwrap());
    assert_eq!(store.data_increment(&id, "n", 5).await.unwrap(), None);
    assert!(!store.data_remove(&id, "k").await.unwrap());
    assert_eq!(store.data_get(&id, "k").await.unwrap(), None);
    assert!(!exists(&mut con, &scope.key(&id)).await);

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
    assert!(!exists(&mut con, &scope.key(&session.id)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_through_two_stores_lose_no_count() {
    let (scope, _con) = Scope::new().await;
    let first = scope.store();
    let second = scope.store();
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

#[tokio::test]
async fn increment_of_a_non_integer_fails() {
    let (scope, _con) = Scope::new().await;
    let store = scope.store();
    let session = record(&new_id(), None);
    store.create(&session, None).await.unwrap();
    let id = &session.id;

    for json in [r#""text""#, "1.5", "[1]"] {
        assert!(store.data_insert(id, "n", json.into()).await.unwrap());
        let error = store.data_increment(id, "n", 1).await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the value of `n` is not an integer"),
            "{json}: {error}"
        );
        assert_eq!(
            store.data_get(id, "n").await.unwrap().as_deref(),
            Some(json)
        );
    }

    assert!(
        store
            .data_insert(id, "n", i64::MAX.to_string())
            .await
            .unwrap()
    );
    let error = store.data_increment(id, "n", 1).await.unwrap_err();
    assert!(error.to_string().contains("overflow"), "{error}");
}

#[tokio::test]
async fn increment_is_exact_over_the_whole_i64_range() {
    let (scope, _con) = Scope::new().await;
    let store = scope.store();
    let session = record(&new_id(), None);
    store.create(&session, None).await.unwrap();
    let id = &session.id;

    // Beyond 2^53 a double (Lua's number) can no longer hold every integer.
    assert!(
        store
            .data_insert(id, "n", i64::MAX.to_string())
            .await
            .unwrap()
    );
    assert_eq!(
        store.data_increment(id, "n", -1).await.unwrap(),
        Some(i64::MAX - 1)
    );
    assert_eq!(
        store.data_get(id, "n").await.unwrap().as_deref(),
        Some("9223372036854775806")
    );
    let big = (1_i64 << 53) + 1;
    assert!(store.data_insert(id, "m", "0".into()).await.unwrap());
    assert_eq!(store.data_increment(id, "m", big).await.unwrap(), Some(big));
    assert_eq!(
        store.data_increment(id, "m", i64::MIN).await.unwrap(),
        Some(big + i64::MIN)
    );
}

/// CRC16/XMODEM, the hash of Redis Cluster key slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The Redis Cluster slot of `key`, hash tags included (the cluster specification's
/// `HASH_SLOT`).
fn key_slot(key: &[u8]) -> u16 {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return crc16(&key[open + 1..open + 1 + len]) % 16384;
    }
    crc16(key) % 16384
}

#[tokio::test]
async fn key_layout_is_one_hash_per_session_under_a_hash_tag() {
    assert_eq!(
        crc16(b"123456789"),
        0x31c3,
        "the cluster specification's check value"
    );

    let (scope, mut con) = Scope::new().await;
    let store = scope.store();
    let session = record(&new_id(), Some("carol"));
    store.create(&session, None).await.unwrap();
    assert!(
        store
            .data_insert(&session.id, "count", "1".into())
            .await
            .unwrap()
    );

    let key = format!("{}{{{}}}", scope.prefix, session.id);
    let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{}*", scope.prefix))
        .arg("COUNT")
        .arg(10_000)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(keys, vec![key.clone()], "exactly one key, `prefix{{id}}`");
    let kind: String = redis::cmd("TYPE")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(kind, "hash");
    let mut fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    fields.sort();
    assert_eq!(
        fields,
        [
            "body",
            "created",
            "d:count",
            "headers",
            "method",
            "principal",
            "uri"
        ]
    );

    // The slot is the id's, whatever the prefix; the bus channel has the same name.
    assert_eq!(
        key_slot(key.as_bytes()),
        crc16(session.id.as_str().as_bytes()) % 16384
    );
    let other_prefix = format!("other:{{{}}}", session.id);
    assert_eq!(key_slot(other_prefix.as_bytes()), key_slot(key.as_bytes()));
}

#[test]
fn prefixes_with_braces_are_refused() {
    let client = redis::Client::open(redis_url().as_str()).unwrap();
    assert!(RedisStore::new(client.clone(), "a{b}:").is_err());
    assert!(RedisStore::new(client.clone(), "a}").is_err());
    assert!(RedisBus::new(client.clone(), "{").is_err());
    assert!(RedisStore::new(client.clone(), "").is_ok());
    assert!(RedisStore::open("not a url", "p:").is_err());
    assert!(RedisBus::open("not a url", "p:").is_err());
}

#[test]
fn debug_hides_credentials() {
    let store = RedisStore::open("redis://user:s3cret@127.0.0.1:1/2", "p:").unwrap();
    let text = format!("{store:?}");
    assert!(!text.contains("s3cret") && !text.contains("user"), "{text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    let bus = RedisBus::open("redis://user:s3cret@127.0.0.1:1/2", "p:").unwrap();
    let text = format!("{bus:?}");
    assert!(!text.contains("s3cret") && !text.contains("user"), "{text}");
}

/// Polls `future` once with a waker that does nothing, outside any runtime.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = pin!(future);
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn outside_a_runtime_nothing_panics() {
    let store = RedisStore::open(&redis_url(), "tms-test:no-runtime:").unwrap();
    let id = new_id();
    match poll_once(store.load(&id)) {
        Poll::Ready(Err(error)) => assert!(error.to_string().contains("tokio"), "{error}"),
        other => panic!("expected an error at once, got {other:?}"),
    }

    let bus = RedisBus::open(&redis_url(), "tms-test:no-runtime:").unwrap();
    let connection = bus.connect(Arc::new(|_: &SessionId, _: BusEvent| {}));
    connection.listen(&id);
    connection.unlisten(&id);
    let published = poll_once(connection.publish(&id, BusEvent::Message(Bytes::new())));
    assert!(matches!(published, Poll::Ready(Err(_))));
}

/// `future`'s output; fails the test if it takes over 3 s.
async fn bounded<F: Future>(future: F) -> Result<F::Output, tokio::time::error::Elapsed> {
    let output = tokio::time::timeout(Duration::from_secs(3), future).await;
    assert!(output.is_ok(), "no answer within 3 s");
    output
}

#[tokio::test]
async fn store_against_a_closed_port_fails_in_bounded_time() {
    let store = RedisStore::open("redis://127.0.0.1:1", "tms-test:closed:")
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let session = record(&new_id(), None);
    let id = &session.id;
    let start = Instant::now();
    assert!(
        bounded(store.create(&session, None))
            .await
            .unwrap()
            .is_err()
    );
    assert!(bounded(store.load(id)).await.unwrap().is_err());
    assert!(
        bounded(store.touch(std::slice::from_ref(id), WAIT))
            .await
            .unwrap()
            .is_err()
    );
    assert!(bounded(store.delete(id)).await.unwrap().is_err());
    assert!(bounded(store.data_get(id, "k")).await.unwrap().is_err());
    assert!(
        bounded(store.data_insert(id, "k", "1".into()))
            .await
            .unwrap()
            .is_err()
    );
    assert!(bounded(store.data_remove(id, "k")).await.unwrap().is_err());
    assert!(
        bounded(store.data_increment(id, "k", 1))
            .await
            .unwrap()
            .is_err()
    );
    // Eight operations of at most 300 ms each, with slack for a loaded machine.
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn store_reconnects_after_its_connection_is_killed() {
    let (scope, mut con) = Scope::new().await;
    let user = TestUser::new(&mut con, &scope.prefix).await;
    let store = RedisStore::new(user.client(), scope.prefix.clone()).unwrap();
    let session = record(&new_id(), None);
    store.create(&session, None).await.unwrap();

    assert!(user.kill_connections(&mut con).await >= 1);
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

/// Events delivered to one node.
type Inbox = mpsc::UnboundedReceiver<(SessionId, BusEvent)>;

fn node(bus: &RedisBus) -> (Arc<dyn BusConnection>, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let deliver: Deliver = Arc::new(move |id: &SessionId, event: BusEvent| {
        let _ = tx.send((id.clone(), event));
    });
    (bus.connect(deliver), rx)
}

/// `PUBSUB SHARDNUMSUB` of one channel.
async fn subscribers(con: &mut MultiplexedConnection, channel: &str) -> i64 {
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query_async(con)
        .await
        .unwrap();
    count
}

/// Waits until `channel` has `count` subscribers.
async fn await_subscribers(con: &mut MultiplexedConnection, channel: &str, count: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = subscribers(con, channel).await;
        if now == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{channel}: {now} subscribers, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_delivers_to_the_listening_node_only() {
    let (scope, mut con) = Scope::new().await;
    // Two nodes, each with its own bus (as two processes would have).
    let (a, mut inbox_a) = node(&scope.bus());
    let (b, mut inbox_b) = node(&scope.bus());
    let id = new_id();
    let channel = scope.key(&id);

    a.listen(&id);
    a.listen(&id); // idempotent
    await_subscribers(&mut con, &channel, 1).await;

    b.publish(&id, BusEvent::Message(Bytes::from_static(b"hello")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox_a).await,
        (id.clone(), BusEvent::Message(Bytes::from_static(b"hello")))
    );

    for reason in [
        CloseReason::Deleted,
        CloseReason::Expired,
        CloseReason::Shutdown,
    ] {
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

    // Binary payloads and an empty one.
    let binary = Bytes::from((0..=255u8).collect::<Vec<u8>>());
    b.publish(&id, BusEvent::Message(binary.clone()))
        .await
        .unwrap();
    b.publish(&id, BusEvent::Message(Bytes::new()))
        .await
        .unwrap();
    assert_eq!(next(&mut inbox_a).await.1, BusEvent::Message(binary));
    assert_eq!(next(&mut inbox_a).await.1, BusEvent::Message(Bytes::new()));

    assert_quiet(&mut inbox_b).await;

    // After unlisten nothing more is delivered, even before the SUNSUBSCRIBE is through.
    a.unlisten(&id);
    b.publish(&id, BusEvent::Message(Bytes::from_static(b"late")))
        .await
        .unwrap();
    await_subscribers(&mut con, &channel, 0).await;
    b.publish(&id, BusEvent::Message(Bytes::from_static(b"later")))
        .await
        .unwrap();
    assert_quiet(&mut inbox_a).await;
    assert_quiet(&mut inbox_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_ignores_what_it_cannot_decode() {
    let (scope, mut con) = Scope::new().await;
    let (a, mut inbox) = node(&scope.bus());
    let id = new_id();
    let channel = scope.key(&id);
    a.listen(&id);
    await_subscribers(&mut con, &channel, 1).await;

    for junk in [&b""[..], b"x", b"c", b"c\xff", b"c\x00\x00"] {
        let _: i64 = redis::cmd("SPUBLISH")
            .arg(&channel)
            .arg(junk)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    a.publish(&id, BusEvent::Message(Bytes::from_static(b"ok")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox).await,
        (id, BusEvent::Message(Bytes::from_static(b"ok")))
    );
    assert_quiet(&mut inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_subscribes_in_batches() {
    let (scope, mut con) = Scope::new().await;
    let (a, mut inbox) = node(&scope.bus());
    let ids: Vec<SessionId> = std::iter::repeat_with(new_id).take(2_500).collect();
    for id in &ids {
        a.listen(id);
    }
    let pattern = format!("{}*", scope.prefix);
    let count = async |con: &mut MultiplexedConnection| {
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg(&pattern)
            .query_async(con)
            .await
            .unwrap();
        channels.len()
    };
    let deadline = Instant::now() + WAIT;
    while count(&mut con).await != ids.len() {
        assert!(Instant::now() < deadline, "not all channels subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in [&ids[0], &ids[1_500], &ids[2_499]] {
        a.publish(id, BusEvent::Message(Bytes::from_static(b"m")))
            .await
            .unwrap();
        assert_eq!(&next(&mut inbox).await.0, id);
    }
    for id in &ids {
        a.unlisten(id);
    }
    let deadline = Instant::now() + WAIT;
    while count(&mut con).await != 0 {
        assert!(Instant::now() < deadline, "not all channels unsubscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_connection_leaves_the_bus() {
    let (scope, mut con) = Scope::new().await;
    let (a, _inbox) = node(&scope.bus());
    let id = new_id();
    let channel = scope.key(&id);
    a.listen(&id);
    await_subscribers(&mut con, &channel, 1).await;
    drop(a);
    await_subscribers(&mut con, &channel, 0).await;
}

#[tokio::test]
async fn bus_resubscribes_after_its_connection_is_killed() {
    let (logs, _guard) = capture_logs();
    let (scope, mut con) = Scope::new().await;
    let user = TestUser::new(&mut con, &scope.prefix).await;
    let bus = RedisBus::new(user.client(), scope.prefix.clone()).unwrap();
    let (a, mut inbox) = node(&bus);
    let id = new_id();
    let channel = scope.key(&id);
    a.listen(&id);
    await_subscribers(&mut con, &channel, 1).await;

    assert!(user.kill_connections(&mut con).await >= 1);
    // Listened to while the link is down: subscribed with the rest on reconnection.
    let second = new_id();
    a.listen(&second);
    await_subscribers(&mut con, &channel, 1).await;
    await_subscribers(&mut con, &scope.key(&second), 1).await;

    let publisher = scope.bus();
    let (b, _inbox_b) = node(&publisher);
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
    assert_eq!(count_lines(&logs, "subscription connection is down"), 1);
    assert_eq!(count_lines(&logs, "subscription connection is back"), 1);
}

#[tokio::test]
async fn bus_against_a_closed_port_fails_in_bounded_time() {
    let bus = RedisBus::open("redis://127.0.0.1:1", "tms-test:closed:")
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let (a, mut inbox) = node(&bus);
    let id = new_id();
    a.listen(&id);
    a.unlisten(&id);
    a.listen(&id);
    let start = Instant::now();
    let published = tokio::time::timeout(
        Duration::from_secs(3),
        a.publish(&id, BusEvent::Message(Bytes::from_static(b"x"))),
    )
    .await
    .expect("publish did not end within 3 s");
    assert!(published.is_err());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(inbox.try_recv().is_err());
    drop(a);
}

#[tokio::test]
async fn a_long_outage_warns_once() {
    let (logs, _guard) = capture_logs();
    let bus = RedisBus::open("redis://127.0.0.1:1", "tms-test:closed:")
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let (a, _inbox) = node(&bus);
    a.listen(&new_id());
    // Attempts at about 0, 0.1, 0.3, 0.7 and 1.5 s.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(count_lines(&logs, "subscription connection is down"), 1);
    assert_eq!(count_lines(&logs, "WARN"), 1);
    drop(a);
}

/// A TCP server that accepts connections and never answers (a Redis that hangs, or a
/// half-open connection); returns its URL.
async fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn store_and_bus_against_a_silent_server_fail_in_bounded_time() {
    let url = silent_server().await;
    let store = RedisStore::open(&url, "tms-test:silent:")
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let session = record(&new_id(), None);
    for _ in 0..3 {
        let start = Instant::now();
        assert!(
            bounded(store.create(&session, None))
                .await
                .unwrap()
                .is_err()
        );
        assert!(bounded(store.load(&session.id)).await.unwrap().is_err());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    let bus = RedisBus::open(&url, "tms-test:silent:")
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let (a, _inbox) = node(&bus);
    a.listen(&session.id);
    for _ in 0..3 {
        let published = bounded(a.publish(&session.id, BusEvent::Message(Bytes::new()))).await;
        assert!(published.unwrap().is_err());
    }
}

/// No timeout the builders take panics or hangs: `Duration::MAX` is no timeout at all (every
/// operation works), zero fails every operation at once.
#[tokio::test]
async fn extreme_timeouts_neither_panic_nor_hang() {
    let (scope, mut con) = Scope::new().await;
    let session = record(&new_id(), None);
    let id = &session.id;

    let store = scope.store().with_timeout(Duration::MAX);
    assert!(store.create(&session, Some(Duration::MAX)).await.unwrap());
    assert!(store.load(id).await.unwrap().is_some());
    assert_eq!(
        store
            .touch(std::slice::from_ref(id), Duration::MAX)
            .await
            .unwrap(),
        []
    );
    let zero = scope.store().with_timeout(Duration::ZERO);
    let loaded = bounded(zero.load(id))
        .await
        .expect("a zero timeout ends at once");
    assert!(loaded.is_err());

    let bus = scope.bus().with_timeout(Duration::MAX);
    let (a, mut inbox) = node(&bus);
    a.listen(id);
    await_subscribers(&mut con, &scope.key(id), 1).await;
    let message = BusEvent::Message(Bytes::from_static(b"max"));
    a.publish(id, message.clone()).await.unwrap();
    assert_eq!(next(&mut inbox).await, (id.clone(), message));
    let zero = scope.bus().with_timeout(Duration::ZERO);
    let (b, _inbox) = node(&zero);
    let published = bounded(b.publish(id, BusEvent::Closed(CloseReason::Closed)))
        .await
        .expect("a zero timeout ends at once");
    assert!(published.is_err());
}
