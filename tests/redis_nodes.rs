//! Two nodes (two layers in one process) sharing a real Redis through `RedisStore` and
//! `RedisBus`: a session restored on the other node, and a server-initiated request whose
//! answer the client sends to the other node (issue 11, item 7). Redis at 127.0.0.1:6379 or
//! `REDIS_URL`; a Redis that cannot be reached fails the test. Keys live under a unique prefix
//! and only those are deleted.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::ServiceExt;
use tower_mcp_session::Cluster;
use tower_mcp_session::body::RequestBody;
use tower_mcp_session::bus::RedisBus;
use tower_mcp_session::store::RedisStore;
use tower_mcp_session::{Session, SessionInfo, SessionLayer};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

const WAIT: Duration = Duration::from_secs(10);
const SAMPLING: &str =
    r#"{"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage","params":{}}"#;
const ANSWER: &str = r#"{"jsonrpc":"2.0","id":"srv-1","result":{"role":"assistant","content":{"type":"text","text":"hi"}}}"#;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn admin() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a Redis URL");
    match tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(con)) => con,
        _ => panic!("this test needs a Redis 7 at {url} (set REDIS_URL to use another)"),
    }
}

/// Deletes the keys under `prefix` (and nothing else).
async fn delete_keys(prefix: &str) {
    let mut con = admin().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut con).await;
    }
}

/// One session's service: answers `initialize`; a GET stream sends a sampling request, then
/// whatever is published to the session; a POSTed JSON-RPC response is published to the
/// session (so it reaches the stream on whichever node holds it).
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
        // The subscription is taken before the request goes out: the answer cannot be missed.
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
    } else if text.contains(r#""result""#) {
        session.publish(body.clone()).await.expect("published");
        StatusCode::ACCEPTED
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::from_static(b"{}"))));
    *response.status_mut() = status;
    Ok(response)
}

fn node(
    prefix: &str,
    built: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<tower_mcp_session::body::ResponseBody<Body, Body>>,
    Error = Infallible,
    Future: Send,
> + Clone {
    let inner = tower::service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
        Ok::<_, Infallible>(Response::new(BodyExt::boxed(Full::new(Bytes::new()))))
    });
    let layer = SessionLayer::mcp(move |_info: SessionInfo, _inner| {
        built.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(tower::service_fn(session_service)) }
    })
    .cluster(
        Cluster::new(RedisStore::open(&redis_url(), prefix).expect("store"))
            .bus(RedisBus::open(&redis_url(), prefix).expect("bus")),
    )
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

/// The next data frame of a response body (`None` at its end), within [`WAIT`].
async fn next(body: &mut tower_mcp_session::body::ResponseBody<Body, Body>) -> Option<Bytes> {
    let frame = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("a frame in time");
    frame.map(|f| f.unwrap().into_data().unwrap())
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_request_answered_through_the_other_node_reaches_the_asking_stream() {
    let prefix = format!("tms-test:{}:", uuid::Uuid::new_v4().simple());
    let (built_a, built_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = node(&prefix, Arc::clone(&built_a));
    let b = node(&prefix, Arc::clone(&built_b));

    let opened = a.clone().oneshot(post(None, INITIALIZE)).await.unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    let id = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // Node A listens to the session's channel once its SSUBSCRIBE is through.
    let mut con = admin().await;
    let channel = format!("{prefix}{{{id}}}");
    let subscribed = async {
        loop {
            let counts: Vec<redis::Value> = redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(&channel)
                .query_async(&mut con)
                .await
                .unwrap();
            if matches!(counts.get(1), Some(redis::Value::Int(n)) if *n >= 1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, subscribed)
        .await
        .expect("node A subscribes");

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
    assert_eq!(next(&mut stream).await.unwrap(), SAMPLING.as_bytes());

    // The client answers through node B, which does not hold the session: B restores it from
    // Redis, its service publishes the answer, and the bus carries it to A's stream.
    let answered = b.clone().oneshot(post(Some(&id), ANSWER)).await.unwrap();
    assert_eq!(answered.status(), StatusCode::ACCEPTED);
    assert_eq!(
        built_b.load(Ordering::SeqCst),
        1,
        "B restored the session once"
    );
    assert_eq!(next(&mut stream).await.unwrap(), ANSWER.as_bytes());

    // DELETE through B closes the session on A too: A's stream ends.
    let delete = Request::delete("/mcp")
        .header("mcp-session-id", &id)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let deleted = b.clone().oneshot(delete).await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(next(&mut stream).await.is_none(), "A's stream ends");
    let gone = a.clone().oneshot(post(Some(&id), ANSWER)).await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(built_a.load(Ordering::SeqCst), 1);

    delete_keys(&prefix).await;
}
