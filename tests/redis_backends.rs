//! What is Redis's own in `RedisStore` and `RedisBus`, against a real Redis (7 or later):
//! 127.0.0.1:6379, or the URL in `REDIS_URL`: the key layout under one hash tag per session,
//! prefixes that would move it, subscriptions sent in batches. The behaviour every backend
//! shares is tested once for Redis and PostgreSQL in tests/backends.rs. A Redis that cannot be
//! reached fails these tests; they never skip.
//!
//! Each test works under its own key prefix (`tms-test:<uuid>:`) and deletes only the keys
//! under it when it ends (`SCAN MATCH prefix*` + `DEL`, also when it panics); nothing else in
//! the Redis is touched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tower_mcp_session::bus::{BusConnection, BusEvent, Deliver, RedisBus, SessionBus};
use tower_mcp_session::store::{OpeningRequest, RedisStore, SessionRecord, SessionStore};
use tower_mcp_session::{Principal, SessionId};

/// How long a test waits for something that should happen.
const WAIT: Duration = Duration::from_secs(5);

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

/// Events delivered to one node.
type Inbox = mpsc::UnboundedReceiver<(SessionId, BusEvent)>;

fn node(bus: &RedisBus) -> (Arc<dyn BusConnection>, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let deliver: Deliver = Arc::new(move |id: &SessionId, event: BusEvent| {
        let _ = tx.send((id.clone(), event));
    });
    (bus.connect(deliver), rx)
}

/// The next event delivered to a node, within [`WAIT`].
async fn next(inbox: &mut Inbox) -> (SessionId, BusEvent) {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("no event delivered within 5 s")
        .expect("deliver dropped")
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
