//! The Redis backends on Redis as production runs it (issue 18): TLS (`rediss://`, a custom
//! CA, mutual TLS), ACL users, and Redis Cluster (3 masters with one replica each).
//!
//! The servers are private ones started by `scripts/redis/servers.sh`, which sets the
//! `TMS_REDIS_*` variables these tests read:
//!
//! ```text
//! scripts/redis/servers.sh -- cargo test --features redis --test redis_prod
//! ```
//!
//! A test whose variable is unset prints why and returns (plain `cargo test` has no such
//! servers); `.ci/run` runs them through the script. Keys live under a unique prefix.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::mpsc;
use tower::ServiceExt;
use tower_mcp_session::body::RequestBody;
use tower_mcp_session::bus::{BusEvent, Deliver, RedisBus, SessionBus};
use tower_mcp_session::store::{OpeningRequest, RedisStore, SessionRecord, SessionStore};
use tower_mcp_session::{Cluster, RedisConfig, Session, SessionId, SessionInfo, SessionLayer};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

const WAIT: Duration = Duration::from_secs(10);
const SAMPLING: &str =
    r#"{"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage","params":{}}"#;
const ANSWER: &str = r#"{"jsonrpc":"2.0","id":"srv-1","result":{"role":"assistant","content":{"type":"text","text":"hi"}}}"#;
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}"#;
const PING: &str = r#"{"jsonrpc":"2.0","method":"notifications/ping"}"#;

/// The variable `name`, or `None` after printing that the test is skipped.
fn var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            eprintln!(
                "skipped: {name} is unset; run `scripts/redis/servers.sh -- cargo test \
                 --features redis --test redis_prod`"
            );
            None
        }
    }
}

fn prefix() -> String {
    format!("tms-prod:{}:", uuid::Uuid::new_v4().simple())
}

fn cert(name: &str) -> std::path::PathBuf {
    std::path::Path::new(&std::env::var("TMS_REDIS_CERTS").unwrap()).join(name)
}

/// The TLS server's URL (`rediss://`, host `localhost` as in its certificate), with the ACL
/// user `app`.
fn tls_config(port_var: &str) -> Option<RedisConfig> {
    let port = var(port_var)?;
    let password = var("TMS_REDIS_ACL_PASSWORD")?;
    Some(
        RedisConfig::new(format!("rediss://app:{password}@localhost:{port}"))
            .ca_file(cert("ca.pem")),
    )
}

fn cluster_urls() -> Option<Vec<String>> {
    Some(
        var("TMS_REDIS_CLUSTER")?
            .split(',')
            .map(str::to_owned)
            .collect(),
    )
}

/// Plain connections to each node (of the cluster, or the one TLS server), for checks.
async fn admins(urls: &[String], tls: bool) -> Vec<redis::aio::MultiplexedConnection> {
    let mut out = Vec::new();
    for url in urls {
        let client = if tls {
            redis::Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(cert("ca.pem")).unwrap()),
                },
            )
            .unwrap()
        } else {
            redis::Client::open(url.as_str()).unwrap()
        };
        let con = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .expect("admin connection in time")
            .expect("admin connection");
        out.push(con);
    }
    out
}

/// Waits until some node reports a subscriber on `channel` (sharded pub/sub).
async fn wait_subscribed(admins: &mut [redis::aio::MultiplexedConnection], channel: &str) {
    let subscribed = async {
        loop {
            for con in admins.iter_mut() {
                let counts: Result<Vec<redis::Value>, _> = redis::cmd("PUBSUB")
                    .arg("SHARDNUMSUB")
                    .arg(channel)
                    .query_async(con)
                    .await;
                if let Ok(counts) = counts
                    && matches!(counts.get(1), Some(redis::Value::Int(n)) if *n >= 1)
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, subscribed)
        .await
        .expect("the channel gets its subscriber");
}

/// One session's service: answers `initialize`; a GET stream sends a sampling request, then
/// whatever is published to the session; a POSTed JSON-RPC response is published.
async fn session_service(
    request: Request<RequestBody<Full<Bytes>>>,
) -> Result<Response<Body>, Infallible> {
    let session = request.extensions().get::<Session>().cloned().unwrap();
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
    let status = if text.contains(r#""method":"initialize""#) {
        StatusCode::OK
    } else {
        if text.contains(r#""result""#) {
            session.publish(body.clone()).await.expect("published");
        }
        StatusCode::ACCEPTED
    };
    let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::from_static(b"{}"))));
    *response.status_mut() = status;
    Ok(response)
}

type Node = tower::util::BoxCloneService<
    Request<Full<Bytes>>,
    Response<tower_mcp_session::body::ResponseBody<Body, Body>>,
    Infallible,
>;

fn node(config: &RedisConfig, prefix: &str, built: Arc<AtomicUsize>) -> Node {
    let inner = tower::service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(BodyExt::boxed(Full::new(Bytes::new()))))
    });
    let layer = SessionLayer::mcp(move |_info: SessionInfo, _inner| {
        built.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(tower::service_fn(session_service)) }
    })
    .cluster(
        Cluster::new(RedisStore::connect(config, prefix).expect("store"))
            .bus(RedisBus::connect_with(config, prefix).expect("bus")),
    )
    .build();
    tower::util::BoxCloneService::new(tower::ServiceBuilder::new().layer(layer).service(inner))
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

fn with_id(method: Method, id: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri("/mcp")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn next(body: &mut tower_mcp_session::body::ResponseBody<Body, Body>) -> Option<Bytes> {
    let frame = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("a frame in time");
    frame.map(|f| f.unwrap().into_data().unwrap())
}

/// Two layers on the Redis that `config` names: a session opened on A is restored on B, a
/// message published on B reaches A's GET stream through the bus, DELETE on B closes it on A.
async fn two_layers(config: &RedisConfig, admins: &mut [redis::aio::MultiplexedConnection]) {
    let prefix = prefix();
    let (built_a, built_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = node(config, &prefix, built_a.clone());
    let b = node(config, &prefix, built_b.clone());

    let opened = a.clone().oneshot(post(None, INITIALIZE)).await.unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    let id = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    wait_subscribed(admins, &format!("{prefix}{{{id}}}")).await;

    let stream = a.clone().oneshot(with_id(Method::GET, &id)).await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut stream = stream.into_body();
    assert_eq!(next(&mut stream).await.unwrap(), SAMPLING.as_bytes());

    let answered = b.clone().oneshot(post(Some(&id), ANSWER)).await.unwrap();
    assert_eq!(answered.status(), StatusCode::ACCEPTED);
    assert_eq!(built_b.load(Ordering::SeqCst), 1, "B restored the session");
    assert_eq!(next(&mut stream).await.unwrap(), ANSWER.as_bytes());

    let deleted = b
        .clone()
        .oneshot(with_id(Method::DELETE, &id))
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(next(&mut stream).await.is_none(), "A's stream ends");
    let gone = a.clone().oneshot(post(Some(&id), PING)).await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(built_a.load(Ordering::SeqCst), 1);
}

fn record(id: &SessionId) -> SessionRecord {
    SessionRecord {
        id: id.clone(),
        principal: None,
        created_ms: 1,
        opening: OpeningRequest {
            method: Method::POST,
            uri: "/mcp".parse().unwrap(),
            headers: http::HeaderMap::new(),
            body: Bytes::from_static(INITIALIZE.as_bytes()),
        },
    }
}

fn new_id() -> SessionId {
    SessionId::parse(&uuid::Uuid::new_v4().to_string()).unwrap()
}

/// Log lines written while the returned guard lives, on this thread.
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
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        let quiet = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(std::io::sink)
            .finish();
        let _ = tracing::subscriber::set_global_default(quiet);
    });
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || Writer(sink.clone()))
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

// ---------------------------------------------------------------- TLS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_session_opened_on_one_layer_is_restored_and_closed_on_another() {
    let Some(config) = tls_config("TMS_REDIS_TLS_PORT") else {
        return;
    };
    let port = var("TMS_REDIS_TLS_PORT").unwrap();
    let mut admins = admins(&[format!("rediss://localhost:{port}")], true).await;
    two_layers(&config, &mut admins).await;
}

#[tokio::test]
async fn tls_a_wrong_ca_is_refused_naming_the_certificate() {
    let (Some(port), Some(password)) = (var("TMS_REDIS_TLS_PORT"), var("TMS_REDIS_ACL_PASSWORD"))
    else {
        return;
    };
    let config = RedisConfig::new(format!("rediss://app:{password}@localhost:{port}"))
        .ca_file(cert("other-ca.pem"));
    let store = RedisStore::connect(&config, prefix()).unwrap();
    let error = store
        .ping()
        .await
        .expect_err("a server signed by another CA");
    let text = error.to_string();
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
    assert!(!text.contains(&password), "{text}");
    // The system's roots (no CA file) do not know the test CA either.
    let store = RedisStore::connect(
        &RedisConfig::new(format!("rediss://localhost:{port}")),
        prefix(),
    )
    .unwrap();
    let text = store.ping().await.unwrap_err().to_string();
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
    // The bus says the same when it publishes.
    let bus = RedisBus::connect_with(&config, prefix()).unwrap();
    let connection = bus.connect(Arc::new(|_: &SessionId, _: BusEvent| {}));
    let text = connection.ping().await.unwrap_err().to_string();
    assert!(text.contains("UnknownIssuer"), "{text}");
}

#[tokio::test]
async fn tls_a_host_name_outside_the_certificate_is_refused() {
    let Some(port) = var("TMS_REDIS_TLS_PORT") else {
        return;
    };
    // The certificate names localhost only; 127.0.0.1 reaches the same server.
    let config = RedisConfig::new(format!("rediss://127.0.0.1:{port}")).ca_file(cert("ca.pem"));
    let store = RedisStore::connect(&config, prefix()).unwrap();
    let text = store.ping().await.unwrap_err().to_string();
    assert!(text.contains("invalid peer certificate"), "{text}");
    assert!(text.contains(r#"not valid for name "127.0.0.1""#), "{text}");
}

#[tokio::test]
async fn tls_a_plain_url_to_a_tls_only_port_fails_within_the_timeout() {
    let Some(port) = var("TMS_REDIS_TLS_PORT") else {
        return;
    };
    let store = RedisStore::connect(
        &RedisConfig::new(format!("redis://127.0.0.1:{port}")),
        prefix(),
    )
    .unwrap()
    .with_timeout(Duration::from_millis(500));
    // Bounded by the store's own timeout; the outer one only keeps a hang from stalling CI.
    let result = tokio::time::timeout(WAIT, store.ping())
        .await
        .expect("the ping ends (it never hangs)");
    let error = result.expect_err("a TLS port does not speak plain RESP");
    assert!(error.is_unavailable(), "{error}");
    // With TLS on the same port the same store works.
    let store = RedisStore::connect(&tls_config("TMS_REDIS_TLS_PORT").unwrap(), prefix()).unwrap();
    store.ping().await.expect("rediss:// with the CA");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let (Some(port), Some(password)) = (var("TMS_REDIS_MTLS_PORT"), var("TMS_REDIS_ACL_PASSWORD"))
    else {
        return;
    };
    let url = format!("rediss://app:{password}@localhost:{port}");
    let with = RedisConfig::new(&url)
        .ca_file(cert("ca.pem"))
        .client_cert(cert("client.pem"), cert("client.key"));
    let store = RedisStore::connect(&with, prefix()).unwrap();
    store
        .ping()
        .await
        .expect("the client certificate is accepted");
    let id = new_id();
    assert!(store.create(&record(&id), Some(WAIT)).await.unwrap());
    assert_eq!(store.load(&id).await.unwrap().unwrap().id, id);
    assert!(store.delete(&id).await.unwrap());

    let without = RedisConfig::new(&url).ca_file(cert("ca.pem"));
    let store = RedisStore::connect(&without, prefix()).unwrap();
    let error = store.ping().await.expect_err("no client certificate");
    assert!(error.is_unavailable(), "{error}");
    assert!(!error.to_string().contains(&password));

    let error = RedisStore::connect(
        &RedisConfig::new(&url)
            .ca_file(cert("ca.pem"))
            .client_cert(cert("client.pem"), cert("nonexistent.key")),
        prefix(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("nonexistent.key"), "{error}");
}

// ---------------------------------------------------------------- ACL users

#[tokio::test]
async fn acl_user_works_and_a_wrong_password_is_refused_without_showing_it() {
    let (Some(port), Some(password)) = (var("TMS_REDIS_ACL_PORT"), var("TMS_REDIS_ACL_PASSWORD"))
    else {
        return;
    };
    let good = RedisConfig::new(format!("redis://app:{password}@127.0.0.1:{port}"));
    let store = RedisStore::connect(&good, prefix()).unwrap();
    store.ping().await.expect("the ACL user app");
    for shown in [format!("{good:?}"), format!("{store:?}")] {
        assert!(!shown.contains(&password), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }

    let wrong = "not-the-password-7f3a";
    let config = RedisConfig::new(format!("redis://app:{wrong}@127.0.0.1:{port}"));
    let store = RedisStore::connect(&config, prefix()).unwrap();
    let error = store.ping().await.expect_err("a wrong password");
    let text = error.to_string();
    assert!(text.contains("Password authentication failed"), "{text}");
    assert!(error.is_unavailable(), "{text}");
    assert!(!text.contains(wrong), "{text}");
    assert!(!format!("{error:?}").contains(wrong));
    let bus = RedisBus::connect_with(&config, prefix()).unwrap();
    assert!(!format!("{bus:?}").contains(wrong));
    let connection = bus.connect(Arc::new(|_: &SessionId, _: BusEvent| {}));
    let text = connection.ping().await.unwrap_err().to_string();
    assert!(text.contains("WRONGPASS"), "{text}");
    assert!(!text.contains(wrong), "{text}");
}

/// A password rotated while the nodes run (the connections are dropped, the old password no
/// longer works): the outage path of Redis down, and no log line shows either password.
#[tokio::test(flavor = "current_thread")]
async fn acl_a_password_changed_at_run_time_is_an_outage_not_a_404() {
    let Some(port) = var("TMS_REDIS_ACL_PORT") else {
        return;
    };
    let (logs, _guard) = capture_logs();
    let mut admin = admins(&[format!("redis://127.0.0.1:{port}")], false).await;
    let admin = &mut admin[0];
    let user = format!("rot-{}", uuid::Uuid::new_v4().simple());
    let (old, new) = ("old-pw-91c2e", "new-pw-5d7b0");
    redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                &user,
                "on",
                &format!(">{old}"),
                "~*",
                "&*",
                "+@all",
            ][..],
        )
        .exec_async(admin)
        .await
        .unwrap();
    let config = RedisConfig::new(format!("redis://{user}:{old}@127.0.0.1:{port}"));
    let prefix = prefix();
    let a = node(&config, &prefix, Arc::default());
    let b = node(&config, &prefix, Arc::default());
    let opened = a.clone().oneshot(post(None, INITIALIZE)).await.unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    let id = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();

    redis::cmd("ACL")
        .arg(&["SETUSER", &user, "resetpass", &format!(">{new}")][..])
        .exec_async(admin)
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg(&["KILL", "USER", &user][..])
        .exec_async(admin)
        .await
        .unwrap();

    for _ in 0..3 {
        // The session live on A keeps answering: no store round trip on a local hit.
        let live = a.clone().oneshot(post(Some(&id), PING)).await.unwrap();
        assert_eq!(live.status(), StatusCode::ACCEPTED);
        // B must restore it: 503 with Retry-After, never 404 (the session exists).
        let restore = b.clone().oneshot(post(Some(&id), PING)).await.unwrap();
        assert_eq!(restore.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(restore.headers().contains_key("retry-after"));
        // Opening needs the store: 503 too.
        let open = a.clone().oneshot(post(None, INITIALIZE)).await.unwrap();
        assert_eq!(open.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(open.headers().contains_key("retry-after"));
    }

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert_eq!(
        text.matches("session store unavailable: opening").count(),
        2,
        "each node logs the outage once:\n{text}"
    );

    // The old password back: the nodes reconnect by themselves (the link that failed
    // authentication was replaced), and opening works again once a probe gets through.
    redis::cmd("ACL")
        .arg(&["SETUSER", &user, "resetpass", &format!(">{old}")][..])
        .exec_async(admin)
        .await
        .unwrap();
    let reopened = async {
        loop {
            let open = a.clone().oneshot(post(None, INITIALIZE)).await.unwrap();
            if open.status() == StatusCode::OK {
                return;
            }
            assert_eq!(open.status(), StatusCode::SERVICE_UNAVAILABLE);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, reopened)
        .await
        .expect("initialize answers 200 again");
    redis::cmd("ACL")
        .arg(&["DELUSER", &user][..])
        .exec_async(admin)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("Password authentication failed"), "{text}");
    assert!(!text.contains(old) && !text.contains(new), "{text}");
}

// ---------------------------------------------------------------- Redis Cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_a_session_opened_on_one_layer_is_restored_and_closed_on_another() {
    let Some(urls) = cluster_urls() else {
        return;
    };
    let mut admins = admins(&urls, false).await;
    two_layers(&RedisConfig::cluster(urls), &mut admins).await;
}

#[tokio::test]
async fn cluster_store_operations_on_sessions_in_every_slot_range() {
    let Some(urls) = cluster_urls() else {
        return;
    };
    let store = RedisStore::connect(&RedisConfig::cluster(urls.clone()), prefix()).unwrap();
    let ids: Vec<SessionId> = (0..300).map(|_| new_id()).collect();
    for id in &ids {
        assert!(store.create(&record(id), Some(WAIT)).await.unwrap());
    }
    // The records are spread over the three masters.
    let mut admins = admins(&urls, false).await;
    let mut holding = 0;
    for con in &mut admins {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", store.prefix()))
            .query_async(con)
            .await
            .unwrap();
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(con).await.unwrap();
        if matches!(&role[0], redis::Value::BulkString(r) if r == b"master") && !keys.is_empty() {
            holding += 1;
        }
    }
    assert_eq!(holding, 3, "every master holds some of the 300 records");

    assert!(
        !store.create(&record(&ids[0]), None).await.unwrap(),
        "taken"
    );
    for id in &ids {
        assert_eq!(store.load(id).await.unwrap().unwrap().id, *id);
    }
    // TTL refresh: one call for every id, unknown ones reported missing (per-slot pipelines).
    let unknown: Vec<SessionId> = (0..5).map(|_| new_id()).collect();
    let mut all = ids.clone();
    all.extend(unknown.iter().cloned());
    let mut missing = store.touch(&all, WAIT * 6).await.unwrap();
    missing.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut expected = unknown.clone();
    expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(missing, expected);

    // Data map scripts and commands route by the session's slot.
    let id = &ids[1];
    assert!(store.data_insert(id, "k", "\"v\"".into()).await.unwrap());
    assert_eq!(
        store.data_get(id, "k").await.unwrap().as_deref(),
        Some("\"v\"")
    );
    assert_eq!(store.data_increment(id, "n", 5).await.unwrap(), Some(5));
    assert!(store.data_remove(id, "k").await.unwrap());
    assert_eq!(
        store.data_increment(&unknown[0], "n", 1).await.unwrap(),
        None
    );

    // Eviction's conditional delete (the TTL was refreshed to 60 s just now): with a TTL of
    // 60 s, unused for 30 s means at most 30 s left, so it was used since: kept...
    assert!(
        !store
            .delete_if_unused(id, WAIT * 6, WAIT * 3)
            .await
            .unwrap()
    );
    // ...with a TTL of 120 s, unused for 30 s allows up to 90 s left: deleted.
    assert!(
        store
            .delete_if_unused(id, WAIT * 12, WAIT * 3)
            .await
            .unwrap()
    );
    assert!(store.load(id).await.unwrap().is_none());
    for id in &ids[2..] {
        assert!(store.delete(id).await.unwrap());
    }
    assert!(!store.delete(&ids[2]).await.unwrap());
}

#[tokio::test]
async fn cluster_one_session_keys_and_channel_share_a_slot() {
    let Some(urls) = cluster_urls() else {
        return;
    };
    let mut admins = admins(&urls[..1], false).await;
    let id = new_id();
    let prefix = "mcp:";
    let mut slots = Vec::new();
    for name in [
        format!("{prefix}{{{id}}}"),
        format!("{prefix}ev:{{{id}}}/0"),
        format!("{prefix}ev:{{{id}}}:common"),
    ] {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&name)
            .query_async(&mut admins[0])
            .await
            .unwrap();
        slots.push(slot);
    }
    assert_eq!(
        slots,
        vec![slots[0]; 3],
        "record, channel and event streams"
    );
}

/// The node (index in `urls`) that is master of `slot`, and its replica.
async fn owner_of(admins: &mut [redis::aio::MultiplexedConnection], slot: i64) -> (usize, usize) {
    let mut master = None;
    let mut master_id = String::new();
    for (i, con) in admins.iter_mut().enumerate() {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(con)
            .await
            .unwrap();
        let myself = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .unwrap()
            .to_owned();
        let fields: Vec<&str> = myself.split(' ').collect();
        if !fields[2].contains("master") {
            continue;
        }
        let owns = fields[8..].iter().any(|range| match range.split_once('-') {
            Some((lo, hi)) => (lo.parse::<i64>().unwrap()..=hi.parse().unwrap()).contains(&slot),
            None => range.parse::<i64>().ok() == Some(slot),
        });
        if owns {
            master = Some(i);
            master_id = fields[0].to_owned();
        }
    }
    let master = master.expect("a master owns the slot");
    for (i, con) in admins.iter_mut().enumerate() {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(con)
            .await
            .unwrap();
        let myself = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .unwrap()
            .to_owned();
        let fields: Vec<&str> = myself.split(' ').collect();
        if fields[2].contains("slave") && fields[3] == master_id {
            return (master, i);
        }
    }
    panic!("the master of slot {slot} has no replica");
}

/// A failover of the master that owns a session's slot (its replica takes over with
/// `CLUSTER FAILOVER`): the bus keeps delivering that session's events to the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_bus_resubscribes_after_a_failover() {
    let Some(urls) = cluster_urls() else {
        return;
    };
    let config = RedisConfig::cluster(urls.clone());
    let prefix = prefix();
    let bus = RedisBus::connect_with(&config, &prefix).unwrap();
    let (sent, mut received) = mpsc::unbounded_channel();
    let deliver: Deliver = Arc::new(move |id: &SessionId, event: BusEvent| {
        let _ = sent.send((id.clone(), event));
    });
    let listener = bus.connect(deliver);
    let publisher = bus.connect(Arc::new(|_: &SessionId, _: BusEvent| {}));
    let id = new_id();
    listener.listen(&id);
    let channel = format!("{prefix}{{{id}}}");
    let mut admins = admins(&urls, false).await;
    wait_subscribed(&mut admins, &channel).await;
    publisher
        .publish(&id, BusEvent::Message(Bytes::from_static(b"before")))
        .await
        .unwrap();
    let (got, event) = tokio::time::timeout(WAIT, received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, id);
    assert!(matches!(event, BusEvent::Message(m) if m == "before"));

    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(&channel)
        .query_async(&mut admins[0])
        .await
        .unwrap();
    let (master, replica) = owner_of(&mut admins, slot).await;
    redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .exec_async(&mut admins[replica])
        .await
        .unwrap();
    let promoted = async {
        loop {
            let role: Vec<redis::Value> = redis::cmd("ROLE")
                .query_async(&mut admins[replica])
                .await
                .unwrap();
            if matches!(&role[0], redis::Value::BulkString(r) if r == b"master") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, promoted)
        .await
        .expect("the replica is promoted");
    let _ = master;

    // Publish until an event sent after the failover arrives (a message published while the
    // subscription moves is lost: pub/sub is at most once).
    let arrived = async {
        for n in 0u32.. {
            let text = format!("after-{n}");
            let _ = publisher
                .publish(&id, BusEvent::Message(Bytes::from(text)))
                .await;
            if let Ok(Some((_, BusEvent::Message(m)))) =
                tokio::time::timeout(Duration::from_millis(200), received.recv()).await
                && m.starts_with(b"after-")
            {
                return n;
            }
        }
        unreachable!()
    };
    tokio::time::timeout(WAIT * 3, arrived)
        .await
        .expect("an event published after the failover is delivered");
}
