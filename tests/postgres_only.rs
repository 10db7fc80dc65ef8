//! What is PostgreSQL's own in `PostgresStore` and `PostgresBus` (the behaviour they share with
//! Redis is asserted by tests/backends.rs): the migration, the table's rows, the bounded
//! cleanup of expired rows, payloads over NOTIFY's limit, the listener's reconnection, and
//! the names they accept. PostgreSQL at `postgresql://postgres@127.0.0.1:5432/test` or
//! `POSTGRES_URL`; each test works in its own schema (`tms_test_<uuid>`), dropped when it
//! ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use tokio::sync::mpsc;
use tower_mcp_session::bus::{BusConnection, BusEvent, Deliver, PostgresBus, SessionBus};
use tower_mcp_session::store::{OpeningRequest, PostgresStore, SessionRecord, SessionStore};
use tower_mcp_session::{Principal, SessionId};

const WAIT: Duration = Duration::from_secs(5);

fn url() -> String {
    std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".to_owned())
}

async fn admin() -> tokio_postgres::Client {
    let url = url();
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await
    .unwrap_or_else(|_| panic!("no PostgreSQL at {url} within 3 s"))
    .unwrap_or_else(|e| panic!("these tests need a PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A test's schema; dropped (with everything in it) when dropped, on a thread of its own so
/// that it also runs when the test panics.
struct Schema {
    name: String,
    admin: tokio_postgres::Client,
}

impl Schema {
    async fn new() -> Self {
        Self {
            name: format!("tms_test_{}", uuid::Uuid::new_v4().simple()),
            admin: admin().await,
        }
    }

    fn store(&self) -> PostgresStore {
        PostgresStore::open(&url(), self.name.clone()).unwrap()
    }

    /// A bus whose connections carry the application name `<schema>_bus`.
    fn bus(&self) -> PostgresBus {
        let url = format!("{}?application_name={}_bus", url(), self.name);
        PostgresBus::open(&url, self.name.clone()).unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {}.{table}", self.name);
        self.admin.query_one(&sql, &[]).await.unwrap().get(0)
    }

    /// Makes every row of `ids` expired.
    async fn expire(&self, ids: &[SessionId]) {
        let sql = format!(
            "UPDATE {}.sessions SET expires_at = now() - interval '1 second' WHERE id = ANY($1)",
            self.name
        );
        let ids: Vec<&str> = ids.iter().map(SessionId::as_str).collect();
        self.admin.execute(&sql, &[&ids]).await.unwrap();
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let url = url();
                let Ok(Ok((client, connection))) = tokio::time::timeout(
                    Duration::from_secs(3),
                    tokio_postgres::connect(&url, tokio_postgres::NoTls),
                )
                .await
                else {
                    return;
                };
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await;
            });
        })
        .join();
    }
}

fn new_id() -> SessionId {
    SessionId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
}

fn record(id: &SessionId) -> SessionRecord {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    SessionRecord {
        id: id.clone(),
        principal: Some(Principal::from("alice")),
        created_ms: 1_764_000_000_123,
        opening: OpeningRequest {
            method: Method::POST,
            uri: Uri::from_static("/mcp"),
            headers,
            body: Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#),
        },
    }
}

type Inbox = mpsc::UnboundedReceiver<(SessionId, BusEvent)>;

fn node(bus: &PostgresBus) -> (Arc<dyn BusConnection>, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let deliver: Deliver = Arc::new(move |id: &SessionId, event: BusEvent| {
        let _ = tx.send((id.clone(), event));
    });
    (bus.connect(deliver), rx)
}

async fn next(inbox: &mut Inbox) -> (SessionId, BusEvent) {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("no event within 5 s")
        .expect("deliver dropped")
}

/// Publishes probes until one comes back, then drains up to a fence (see tests/backends.rs).
async fn await_listening(node: &dyn BusConnection, inbox: &mut Inbox, id: &SessionId) {
    let deadline = Instant::now() + WAIT;
    loop {
        node.publish(id, BusEvent::Message(Bytes::from_static(b"probe")))
            .await
            .unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), inbox.recv()).await {
            break;
        }
        assert!(Instant::now() < deadline, "never listening");
    }
    let fence = Bytes::from(format!("fence-{}", uuid::Uuid::new_v4()));
    node.publish(id, BusEvent::Message(fence.clone()))
        .await
        .unwrap();
    while next(inbox).await.1 != BusEvent::Message(fence.clone()) {}
}

#[tokio::test]
async fn the_migration_is_idempotent_and_creates_what_the_docs_say() {
    let schema = Schema::new().await;
    let store = schema.store();
    // Twice on one store, then two stores at once (two nodes starting together).
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let (a, b) = (schema.store(), schema.store());
    let (first, second) = tokio::join!(a.migrate(), b.migrate());
    first.unwrap();
    second.unwrap();

    let columns: Vec<(String, String, String)> = schema
        .admin
        .query(
            "SELECT column_name::text, data_type::text, is_nullable::text
             FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'sessions' ORDER BY ordinal_position",
            &[&schema.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let expected = [
        ("id", "text", "NO"),
        ("principal", "text", "YES"),
        ("created_ms", "bigint", "NO"),
        ("expires_at", "timestamp with time zone", "YES"),
        ("method", "text", "NO"),
        ("uri", "text", "NO"),
        ("headers", "bytea", "NO"),
        ("body", "bytea", "NO"),
        ("data", "jsonb", "NO"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(columns, expected);
    let indexes: Vec<String> = schema
        .admin
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname",
            &[&schema.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        indexes,
        [
            "bus_payloads_created",
            "bus_payloads_pkey",
            "sessions_expires_at",
            "sessions_pkey"
        ]
    );

    // What `migration_sql` gives is what the store ran: running it again changes nothing.
    let sql = PostgresStore::migration_sql(&schema.name).unwrap();
    schema.admin.batch_execute(&sql).await.unwrap();
    assert_eq!(PostgresStore::migration_sql("Not-A-Name"), None);
    assert!(store.load(&new_id()).await.unwrap().is_none());
}

#[tokio::test]
async fn one_row_per_session_with_the_data_map_in_jsonb() {
    let schema = Schema::new().await;
    let store = schema.store();
    let session = record(&new_id());
    assert!(
        store
            .create(&session, Some(Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert_eq!(
        store.data_increment(&session.id, "count", 2).await.unwrap(),
        Some(2)
    );
    assert!(
        store
            .data_insert(&session.id, "note", r#""hi""#.into())
            .await
            .unwrap()
    );
    assert_eq!(schema.count("sessions").await, 1);
    let sql = format!(
        "SELECT id, principal, created_ms, method, uri, headers, body, data::text,
                expires_at > now() + interval '50 seconds'
         FROM {}.sessions",
        schema.name
    );
    let row = schema.admin.query_one(&sql, &[]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), session.id.as_str());
    assert_eq!(row.get::<_, Option<&str>>(1), Some("alice"));
    assert_eq!(row.get::<_, i64>(2), 1_764_000_000_123);
    assert_eq!(row.get::<_, &str>(3), "POST");
    assert_eq!(row.get::<_, &str>(4), "/mcp");
    assert_eq!(row.get::<_, &[u8]>(5), b"content-type:application/json\n");
    assert_eq!(row.get::<_, &[u8]>(6), session.opening.body.as_ref());
    assert_eq!(row.get::<_, &str>(7), r#"{"note": "hi", "count": 2}"#);
    assert!(row.get::<_, bool>(8));
}

#[tokio::test]
async fn expired_rows_are_deleted_in_bounded_batches() {
    let schema = Schema::new().await;
    let store = schema.store().with_cleanup(None, 1);
    let expired: Vec<SessionId> = std::iter::repeat_with(new_id).take(25).collect();
    let live: Vec<SessionId> = std::iter::repeat_with(new_id).take(5).collect();
    for id in expired.iter().chain(&live) {
        store
            .create(&record(id), Some(Duration::from_secs(60)))
            .await
            .unwrap();
    }
    let forever = new_id();
    store.create(&record(&forever), None).await.unwrap();
    schema.expire(&expired).await;

    assert_eq!(store.delete_expired(10).await.unwrap(), 10);
    assert_eq!(schema.count("sessions").await, 21);
    assert_eq!(store.delete_expired(10).await.unwrap(), 10);
    assert_eq!(store.delete_expired(10).await.unwrap(), 5);
    assert_eq!(store.delete_expired(10).await.unwrap(), 0);
    assert_eq!(
        schema.count("sessions").await,
        6,
        "live rows and no-expiry rows stay"
    );
    for id in live.iter().chain([&forever]) {
        assert!(store.load(id).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn the_cleanup_task_deletes_expired_rows_by_itself() {
    let schema = Schema::new().await;
    // Two rows per statement, at most 16 statements per round, a round every 50 ms.
    let store = schema
        .store()
        .with_cleanup(Some(Duration::from_millis(50)), 2);
    let expired: Vec<SessionId> = std::iter::repeat_with(new_id).take(40).collect();
    let live = new_id();
    for id in expired.iter().chain([&live]) {
        store
            .create(&record(id), Some(Duration::from_secs(60)))
            .await
            .unwrap();
    }
    schema.expire(&expired).await;
    let deadline = Instant::now() + WAIT;
    while schema.count("sessions").await != 1 {
        assert!(Instant::now() < deadline, "the cleanup task did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.load(&live).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_over_the_notify_limit_go_through_the_table() {
    let schema = Schema::new().await;
    schema.store().migrate().await.unwrap();
    let (a, mut inbox) = node(&schema.bus());
    let (b, _inbox_b) = node(&schema.bus());
    let id = new_id();
    a.listen(&id);
    await_listening(&*a, &mut inbox, &id).await;
    assert_eq!(
        schema.count("bus_payloads").await,
        0,
        "small payloads: no row"
    );

    // 7,900 ASCII bytes fit NOTIFY; 20,000 binary bytes do not.
    let fits = Bytes::from(vec![b'a'; 7_900]);
    b.publish(&id, BusEvent::Message(fits.clone()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox).await,
        (id.clone(), BusEvent::Message(fits))
    );
    assert_eq!(schema.count("bus_payloads").await, 0);
    let large = Bytes::from((0..20_000u32).map(|i| (i % 256) as u8).collect::<Vec<u8>>());
    b.publish(&id, BusEvent::Message(large.clone()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox).await,
        (id.clone(), BusEvent::Message(large.clone()))
    );
    assert_eq!(
        schema.count("bus_payloads").await,
        1,
        "one row for the large payload"
    );
    let sql = format!("SELECT payload FROM {}.bus_payloads", schema.name);
    let stored: Vec<u8> = schema.admin.query_one(&sql, &[]).await.unwrap().get(0);
    assert_eq!(
        stored.len(),
        1 + large.len(),
        "the tag byte, then the message"
    );

    // A session the node does not listen to: its large payloads are not read.
    let other = new_id();
    b.publish(&other, BusEvent::Message(large)).await.unwrap();
    a.publish(&id, BusEvent::Message(Bytes::from_static(b"after")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox).await,
        (id, BusEvent::Message(Bytes::from_static(b"after")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_its_backend_is_terminated() {
    let schema = Schema::new().await;
    let (a, mut inbox) = node(&schema.bus());
    let (b, _inbox_b) = node(&schema.bus());
    let id = new_id();
    a.listen(&id);
    await_listening(&*a, &mut inbox, &id).await;

    // Only the listener connections of this test's buses (a's and b's): the publishing
    // connections are the ones whose last statement was a pg_notify.
    let app = format!("{}_bus", schema.name);
    let terminated = schema
        .admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 \
             AND query <> '' AND query NOT LIKE '%pg_notify%'",
            &[&app],
        )
        .await
        .unwrap();
    assert_eq!(terminated.len(), 2, "two listeners");
    await_listening(&*a, &mut inbox, &id).await;
    b.publish(&id, BusEvent::Message(Bytes::from_static(b"again")))
        .await
        .unwrap();
    assert_eq!(
        next(&mut inbox).await,
        (id, BusEvent::Message(Bytes::from_static(b"again")))
    );
}

#[test]
fn names_must_be_plain_identifiers() {
    let too_long = "a".repeat(64);
    for bad in [
        "",
        "Mcp",
        "1mcp",
        "mcp-sessions",
        "mcp.sessions",
        "a b",
        "\"x\"",
        &too_long,
    ] {
        assert!(PostgresStore::open(&url(), bad).is_err(), "{bad:?}");
        assert!(PostgresBus::open(&url(), bad).is_err(), "{bad:?}");
        let bus = PostgresBus::open(&url(), "mcp").unwrap();
        assert!(bus.with_channel(bad).is_err(), "{bad:?}");
    }
    for good in ["mcp", "_x", "mcp_sessions_2", &"a".repeat(63)] {
        assert!(PostgresStore::open(&url(), good).is_ok(), "{good:?}");
    }
    let bus = PostgresBus::open(&url(), "mcp").unwrap();
    assert_eq!(bus.channel(), "mcp");
    assert_eq!(bus.with_channel("mcp_prod").unwrap().channel(), "mcp_prod");
    assert!(PostgresStore::open("postgresql://[::1", "mcp").is_err());
    assert!(PostgresBus::open("host=x port=notaport", "mcp").is_err());
}

/// Listening to a session is local (one LISTEN per node, filtered by session id): once the
/// node's listener is up, a session listened to just now gets a message published right after,
/// with no wait in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_to_a_session_costs_no_round_trip() {
    let schema = Schema::new().await;
    let (a, mut inbox) = node(&schema.bus());
    let (b, _inbox_b) = node(&schema.bus());
    let first = new_id();
    a.listen(&first);
    await_listening(&*a, &mut inbox, &first).await;
    for _ in 0..20 {
        let id = new_id();
        a.listen(&id);
        b.publish(&id, BusEvent::Message(Bytes::from_static(b"at once")))
            .await
            .unwrap();
        assert_eq!(
            next(&mut inbox).await,
            (
                id.clone(),
                BusEvent::Message(Bytes::from_static(b"at once"))
            )
        );
        a.unlisten(&id);
    }
}
