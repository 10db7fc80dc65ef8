//! Sessions that span nodes: two or more layers built with one `MemoryStore` and one
//! `MemoryBus` are the nodes of one deployment. A session opened on one node is restored on
//! another (replaying its opening request), shares its data map and its messages across them,
//! and closes for good everywhere (DELETE, eviction) or only on one node (idle expiry,
//! shutdown); the store unreachable is 503, never 404; the request path of a session live on
//! a node makes no store call; and without a store the data map and publish/subscribe work
//! within one node.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::{Layer, Service};
use tower_mcp_session::bus::MemoryBus;
use tower_mcp_session::store::SessionStore;
use tower_mcp_session::{
    CloseReason, Cluster, DataError, Session, SessionFactory, SessionId, SessionInfo, SessionLayer,
    SessionLayerBuilder, SessionService, Sessions, Subscription,
};

use common::store::TestStore;
use common::*;

/// Request header telling [`NodeService`] what to do with the session (see its docs).
const OP: HeaderName = HeaderName::from_static("x-op");
/// `MCP-Protocol-Version`, one of the headers kept for replay by default.
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// The 503 body when the store does not answer.
/// The default `Cluster::probe_interval`.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

const STORE_DOWN_BODY: &str = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Service unavailable: session store unreachable"},"id":null}"#;

// ---------------------------------------------------------------------------------------------
// A per-session service that records what reaches it, per node.
// ---------------------------------------------------------------------------------------------

/// One request as a node's per-session service saw it.
#[derive(Debug, Clone)]
struct Seen {
    session: String,
    method: Method,
    headers: HeaderMap,
    body: String,
}

struct ProbeState {
    name: &'static str,
    /// The info of every factory call, in order.
    made: Mutex<Vec<SessionInfo>>,
    seen: Mutex<Vec<Seen>>,
    /// Subscriptions taken by `x-op: subscribe` requests, by session id.
    subscriptions: Mutex<HashMap<String, Subscription>>,
    /// How long the factory waits before it returns (paused-clock tests).
    factory_delay_ms: AtomicU64,
    /// When set, `initialize` is answered with this status (a replay the service refuses).
    refuse_initialize: Mutex<Option<StatusCode>>,
}

/// What one node's factory and per-session services did.
#[derive(Clone)]
struct Probe(Arc<ProbeState>);

impl Probe {
    fn new(name: &'static str) -> Self {
        Self(Arc::new(ProbeState {
            name,
            made: Mutex::default(),
            seen: Mutex::default(),
            subscriptions: Mutex::default(),
            factory_delay_ms: AtomicU64::new(0),
            refuse_initialize: Mutex::new(None),
        }))
    }

    fn made(&self) -> Vec<SessionInfo> {
        self.0.made.lock().unwrap().clone()
    }

    fn seen(&self) -> Vec<Seen> {
        self.0.seen.lock().unwrap().clone()
    }

    /// The subscription a `subscribe` request of session `id` took on this node.
    fn subscription(&self, id: &str) -> Subscription {
        self.0
            .subscriptions
            .lock()
            .unwrap()
            .remove(id)
            .expect("a subscribe request ran for this session on this node")
    }

    fn refuse_initialize(&self, status: Option<StatusCode>) {
        *self.0.refuse_initialize.lock().unwrap() = status;
    }

    fn set_factory_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.0.factory_delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// The per-session service of the nodes. Records every request in its [`Probe`], then acts on
/// its session (the [`Session`] request extension) as [`OP`] says:
///
/// * none: answers `{"node": .., "session": <its own id>, "body": <the request body>}`;
/// * `increment`: `data().increment("counter", 1)`, answers the new value;
/// * `insert`: `data().insert("note", <the body as a string>)`, answers `ok`;
/// * `get`: `data().get::<String>("note")`, answers it as JSON (`null` if absent);
/// * `subscribe`: `subscribe()`, kept in the probe for the test, answers `subscribed`;
/// * `publish`: `publish(<the body>)`, answers `published`.
///
/// A failed data or bus operation answers 500 with the error.
#[derive(Clone)]
struct NodeService {
    probe: Probe,
    info: SessionInfo,
}

impl Service<Request<Body>> for NodeService {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let probe = self.probe.clone();
        let info = self.info.clone();
        Box::pin(async move {
            let session = req.extensions().get::<Session>().cloned();
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            probe.0.seen.lock().unwrap().push(Seen {
                session: info.id().to_string(),
                method: parts.method.clone(),
                headers: parts.headers.clone(),
                body: text.clone(),
            });
            let refused = *probe.0.refuse_initialize.lock().unwrap();
            if let Some(status) = refused.filter(|_| text.contains(r#""method":"initialize""#)) {
                return Ok(reply(status, "refused"));
            }
            let Some(session) = session else {
                return Ok(reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no Session extension",
                ));
            };
            assert_eq!(
                session.info(),
                &info,
                "the extension names this service's session"
            );
            let op = parts
                .headers
                .get(OP)
                .map(|v| v.to_str().unwrap().to_owned());
            let answer = match op.as_deref() {
                None => Ok(json!({
                    "node": probe.0.name,
                    "session": info.id().as_str(),
                    "body": text,
                })
                .to_string()),
                Some("increment") => session
                    .data()
                    .increment("counter", 1)
                    .await
                    .map(|n| n.to_string())
                    .map_err(|e| e.to_string()),
                Some("insert") => session
                    .data()
                    .insert("note", &text)
                    .await
                    .map(|()| "ok".to_owned())
                    .map_err(|e| e.to_string()),
                Some("get") => session
                    .data()
                    .get::<String>("note")
                    .await
                    .map(|note| json!(note).to_string())
                    .map_err(|e| e.to_string()),
                Some("subscribe") => {
                    let subscription = session.subscribe();
                    probe
                        .0
                        .subscriptions
                        .lock()
                        .unwrap()
                        .insert(info.id().to_string(), subscription);
                    Ok("subscribed".to_owned())
                }
                Some("publish") => session
                    .publish(body)
                    .await
                    .map(|()| "published".to_owned())
                    .map_err(|e| e.to_string()),
                Some(other) => Err(format!("unknown op {other}")),
            };
            Ok(match answer {
                Ok(text) => reply(StatusCode::OK, text),
                Err(error) => reply(StatusCode::INTERNAL_SERVER_ERROR, error),
            })
        })
    }
}

fn reply(status: StatusCode, text: impl Into<String>) -> Response<ResBody> {
    let mut resp = Response::new(full(text.into()));
    *resp.status_mut() = status;
    resp
}

/// Builds a [`NodeService`] per session, recording each call in the node's [`Probe`].
#[derive(Clone)]
struct NodeFactory {
    probe: Probe,
}

type FactoryFuture = Pin<Box<dyn Future<Output = Result<(NodeService, ()), Infallible>> + Send>>;

impl<S> SessionFactory<S> for NodeFactory {
    type Service = NodeService;
    type State = ();
    type Error = Infallible;
    type Future = FactoryFuture;

    fn make_session(&self, info: SessionInfo, _inner: S) -> FactoryFuture {
        let probe = self.probe.clone();
        Box::pin(async move {
            probe.0.made.lock().unwrap().push(info.clone());
            let delay = probe.0.factory_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            Ok((NodeService { probe, info }, ()))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes.
// ---------------------------------------------------------------------------------------------

type App = SessionService<Inner, NodeFactory>;

/// One node: what its factory and services saw, its close hook's record, its table and its
/// service.
struct Node {
    probe: Probe,
    closed: Closed,
    sessions: Sessions,
    app: App,
}

impl Node {
    /// `make(SessionLayer::mcp(factory))`, then `on_close` recorded in `closed`, built.
    fn build(
        name: &'static str,
        make: impl FnOnce(SessionLayerBuilder<NodeFactory>) -> SessionLayerBuilder<NodeFactory>,
    ) -> Self {
        let probe = Probe::new(name);
        let closed = Closed::default();
        let layer = make(SessionLayer::mcp(NodeFactory {
            probe: probe.clone(),
        }))
        .on_close(closed.hook())
        .build();
        let sessions = layer.sessions();
        let app = layer.layer(Inner);
        Self {
            probe,
            closed,
            sessions,
            app,
        }
    }
}

/// The store and bus the nodes of one deployment share.
#[derive(Clone, Default)]
struct Deployment {
    store: TestStore,
    bus: MemoryBus,
}

impl Deployment {
    /// A node on this deployment's store and bus, further configured by `configure`.
    fn node(
        &self,
        name: &'static str,
        configure: impl FnOnce(SessionLayerBuilder<NodeFactory>) -> SessionLayerBuilder<NodeFactory>,
    ) -> Node {
        let (store, bus) = (self.store.clone(), self.bus.clone());
        Node::build(name, |layer| {
            configure(layer.cluster(Cluster::new(store).bus(bus)))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Requests.
// ---------------------------------------------------------------------------------------------

/// POST to session `id` asking the service for `op` (see [`NodeService`]), with `body`.
fn op(id: &str, op: &str, body: &str) -> Request<ReqBody> {
    let mut req = post_with(id, body.to_owned());
    req.headers_mut()
        .insert(OP, HeaderValue::from_str(op).unwrap());
    req
}

/// Sends `req` and returns the status and the whole body.
async fn answer(app: &App, req: Request<ReqBody>) -> (StatusCode, String) {
    let resp = send(app, req).await;
    let status = resp.status();
    (status, body_string(resp).await)
}

/// Sends `req`, expects 200 and returns the body.
async fn ok(app: &App, req: Request<ReqBody>) -> String {
    let (status, body) = answer(app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Lets spawned tasks (refresher, sweeper, the forgetting task) run: a bounded number of
/// yields, no time passes.
async fn run_tasks() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// The next message of a subscription (bounded, so that a bug fails instead of hanging).
async fn next_message(subscription: &mut Subscription) -> Option<Bytes> {
    tokio::time::timeout(WAIT, subscription.recv())
        .await
        .expect("a message or the end of the subscription in time")
}

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_session_opened_on_one_node_is_restored_on_another_by_replaying_its_opening() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l.principal(user_of));
    let b = deployment.node("B", |l| l.principal(user_of));

    let mut opening = as_user("alice", initialize());
    opening
        .headers_mut()
        .insert(PROTOCOL_VERSION, HeaderValue::from_static("2025-11-25"));
    let resp = send(&a.app, opening).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let id = session_id_of(&resp).expect("the opening answer carries the id");
    body_string(resp).await;
    let on_a = a.probe.made();
    assert_eq!(on_a.len(), 1);
    assert!(b.probe.made().is_empty());

    let client_body = rpc_body(2, "tools/list");
    let resp = send(
        &b.app,
        as_user("alice", post_with(&id, client_body.clone())),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get(SESSION_HEADER).is_none());
    // The client gets the answer to its own request, not to the replayed ones.
    assert_eq!(
        serde_json::from_str::<Value>(&body_string(resp).await).unwrap(),
        json!({"node": "B", "session": id, "body": client_body})
    );

    // The factory ran once on B, with A's id, principal and creation time.
    let on_b = b.probe.made();
    assert_eq!(on_b.len(), 1);
    assert_eq!(on_b[0], on_a[0]);
    assert_eq!(on_b[0].id().as_str(), id);
    assert_eq!(on_b[0].principal().map(|p| p.as_str()), Some("alice"));
    assert_eq!(on_b[0].created_at(), on_a[0].created_at());

    // B's service saw the replayed initialize, then notifications/initialized with the id,
    // then the client's request.
    let seen = b.probe.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert!(
        seen.iter()
            .all(|s| s.session == id && s.method == Method::POST)
    );
    assert_eq!(seen[0].body, initialize_body(1));
    assert!(seen[0].headers.get(SESSION_HEADER).is_none());
    assert_eq!(
        seen[0].headers[http::header::CONTENT_TYPE],
        "application/json"
    );
    assert_eq!(
        seen[0].headers[http::header::ACCEPT],
        "application/json, text/event-stream"
    );
    assert_eq!(seen[0].headers[PROTOCOL_VERSION], "2025-11-25");
    assert!(
        seen[0].headers.get(USER).is_none(),
        "headers not named by replay_headers are not kept"
    );
    let initialized: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(initialized["jsonrpc"], "2.0");
    assert_eq!(initialized["method"], "notifications/initialized");
    assert!(initialized.get("id").is_none(), "a notification has no id");
    assert_eq!(seen[1].headers[SESSION_HEADER], id.as_str());
    assert_eq!(seen[2].body, client_body);
    assert_eq!(seen[2].headers[SESSION_HEADER], id.as_str());

    // Now live on B: the next request is routed without another restore.
    ok(&b.app, as_user("alice", post(&id))).await;
    assert_eq!(b.probe.made().len(), 1);
    assert_eq!(b.probe.seen().len(), 4);
    assert!(b.sessions.contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_data_map_is_shared_by_the_nodes_and_increments_lose_no_count() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l);
    let b = deployment.node("B", |l| l);

    let id = open(&a.app).await;
    let mut values = Vec::new();
    for app in [&a.app, &b.app, &a.app, &b.app] {
        values.push(ok(app, op(&id, "increment", "")).await);
    }
    assert_eq!(values, ["1", "2", "3", "4"]);
    // A value inserted through one node is what the other reads.
    assert_eq!(ok(&a.app, op(&id, "insert", "from A")).await, "ok");
    assert_eq!(ok(&b.app, op(&id, "get", "")).await, r#""from A""#);

    // 50 tasks on each node increment one counter at once.
    let id = open(&a.app).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let app = if i % 2 == 0 {
            a.app.clone()
        } else {
            b.app.clone()
        };
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            ok(&app, op(&id, "increment", "")).await
        }));
    }
    let mut values = Vec::new();
    for task in tasks {
        values.push(task.await.unwrap().parse::<i64>().unwrap());
    }
    values.sort_unstable();
    assert_eq!(
        values,
        (1..=100).collect::<Vec<_>>(),
        "each increment saw its own count"
    );
    let sid = SessionId::parse(&id).unwrap();
    assert_eq!(
        a.sessions.data(&sid).get::<i64>("counter").await.unwrap(),
        Some(100)
    );
    assert_eq!(
        b.sessions.data(&sid).get::<i64>("counter").await.unwrap(),
        Some(100)
    );
    assert_eq!(b.probe.made().len(), 2, "B restored each session once");
}

#[tokio::test]
async fn an_unknown_id_is_404_on_a_node_that_does_not_hold_it_and_creates_nothing() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l);
    let b = deployment.node("B", |l| l);
    open(&a.app).await;
    let (records, calls) = (deployment.store.inner.len(), deployment.store.calls());

    for unknown in ["3f1c2b4a-0000-4000-8000-000000000000", "never-issued"] {
        assert_not_found(send(&b.app, post(unknown)).await).await;
        assert_not_found(send(&b.app, get(unknown)).await).await;
    }

    assert_eq!(deployment.store.inner.len(), records);
    let after = deployment.store.calls();
    assert_eq!(after.create, calls.create, "nothing was created");
    assert_eq!(after.data, calls.data);
    assert!(
        b.probe.made().is_empty(),
        "no factory call for an unknown id"
    );
    assert!(b.sessions.is_empty());
}

#[tokio::test]
async fn a_session_bound_to_a_principal_is_restored_only_for_that_principal() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l.principal(user_of));
    let b = deployment.node("B", |l| l.principal(user_of));

    let resp = send(&a.app, as_user("alice", initialize())).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let id = session_id_of(&resp).unwrap();
    body_string(resp).await;

    // Another principal, or none: 404 as for an unknown id, and nothing is built on B.
    assert_not_found(send(&b.app, as_user("bob", post(&id))).await).await;
    assert_not_found(send(&b.app, post(&id)).await).await;
    assert!(b.probe.made().is_empty());
    assert!(b.sessions.is_empty());

    ok(&b.app, as_user("alice", post(&id))).await;
    assert_eq!(b.probe.made().len(), 1);
    // Live on B now: still only alice's.
    assert_not_found(send(&b.app, as_user("bob", post(&id))).await).await;
    assert_not_found(send(&a.app, as_user("bob", post(&id))).await).await;
    ok(&b.app, as_user("alice", post(&id))).await;
    // bob's DELETE does not close alice's session either.
    assert_not_found(send(&b.app, as_user("bob", delete(&id))).await).await;
    assert!(deployment.store.record(&id).await.is_some());
    assert!(a.closed.all().is_empty() && b.closed.all().is_empty());
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_for_a_session_restore_it_once_per_node() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l);
    let b = deployment.node("B", |l| l);
    let id = open(&a.app).await;
    // The factory takes a while on B, so that all 20 requests arrive during the restore.
    b.probe.set_factory_delay(Duration::from_millis(100));

    let requests = (0..20).map(|i| {
        let (app, id) = (b.app.clone(), id.clone());
        async move { answer(&app, post_with(&id, rpc_body(i, "tools/list"))).await }
    });
    let answers = futures_util::future::join_all(requests).await;

    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(serde_json::from_str::<Value>(body).unwrap()["node"], "B");
    }
    assert_eq!(b.probe.made().len(), 1, "one factory call for 20 requests");
    // The two replayed requests, then each client request once.
    assert_eq!(b.probe.seen().len(), 2 + 20);
    assert_eq!(b.sessions.len(), 1);
    assert_eq!(deployment.store.calls().create, 1);
}

#[tokio::test]
async fn delete_through_either_node_closes_the_session_everywhere_and_deletes_its_record() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    let a = deployment.node("A", |l| l);
    let b = deployment.node("B", |l| l);

    // Held by both nodes, deleted through A.
    let id = open(&a.app).await;
    ok(&b.app, post(&id)).await;
    let records = store.inner.len();
    let resp = send(&a.app, delete(&id)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.headers().get(SESSION_HEADER).is_none());
    assert_eq!(body_string(resp).await, "");

    assert_eq!(a.closed.all(), [(id.clone(), CloseReason::Deleted)]);
    assert_eq!(b.closed.all(), [(id.clone(), CloseReason::Deleted)]);
    assert_eq!(store.inner.len(), records - 1);
    assert!(store.record(&id).await.is_none());
    assert_not_found(send(&a.app, post(&id)).await).await;
    assert_not_found(send(&b.app, post(&id)).await).await;
    assert_eq!(b.probe.made().len(), 1, "no restore after the delete");
    assert!(a.sessions.is_empty() && b.sessions.is_empty());

    // Held by A only, with a subscription open there; deleted through B.
    let id = open(&a.app).await;
    assert_eq!(ok(&a.app, op(&id, "subscribe", "")).await, "subscribed");
    let mut subscription = a.probe.subscription(&id);
    assert_eq!(status_of(&b.app, delete(&id)).await, StatusCode::NO_CONTENT);

    assert_eq!(
        a.closed.reasons_of(&id),
        [CloseReason::Deleted],
        "A's copy is closed through the bus"
    );
    assert!(
        next_message(&mut subscription).await.is_none(),
        "the subscription ended"
    );
    assert!(b.closed.reasons_of(&id).is_empty(), "B never held it");
    assert_eq!(b.probe.made().len(), 1, "DELETE restores nothing");
    assert!(store.record(&id).await.is_none());
    assert_not_found(send(&a.app, post(&id)).await).await;
    assert_not_found(send(&b.app, post(&id)).await).await;
    // A second DELETE finds nothing.
    assert_not_found(send(&b.app, delete(&id)).await).await;
}

#[tokio::test]
async fn a_message_published_on_one_node_reaches_the_subscriptions_on_another() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l);
    let b = deployment.node("B", |l| l);

    let first = open(&a.app).await;
    let second = open(&a.app).await;
    ok(&a.app, op(&first, "subscribe", "")).await;
    ok(&a.app, op(&second, "subscribe", "")).await;
    let mut first_sub = a.probe.subscription(&first);
    let mut second_sub = a.probe.subscription(&second);

    // Published by requests on B (which restores the sessions to serve them).
    assert_eq!(
        ok(&b.app, op(&first, "publish", "hello")).await,
        "published"
    );
    assert_eq!(
        ok(&b.app, op(&second, "publish", "for second")).await,
        "published"
    );
    assert_eq!(next_message(&mut first_sub).await.unwrap(), "hello");
    // The other session's subscription got its own message first, not "hello".
    assert_eq!(next_message(&mut second_sub).await.unwrap(), "for second");

    // And the other way round: a subscription on B, a message published on A.
    ok(&b.app, op(&first, "subscribe", "")).await;
    let mut first_on_b = b.probe.subscription(&first);
    ok(&a.app, op(&first, "publish", "again")).await;
    assert_eq!(next_message(&mut first_on_b).await.unwrap(), "again");
    assert_eq!(next_message(&mut first_sub).await.unwrap(), "again");
    ok(&a.app, op(&second, "publish", "second again")).await;
    assert_eq!(next_message(&mut second_sub).await.unwrap(), "second again");
}

#[tokio::test]
async fn shutdown_closes_only_this_nodes_copies_and_keeps_the_records() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l);
    let b = deployment.node("B", |l| l);
    let id = open(&a.app).await;
    ok(&a.app, op(&id, "increment", "")).await;

    assert_eq!(a.sessions.shutdown(), 1);
    assert_eq!(a.closed.all(), [(id.clone(), CloseReason::Shutdown)]);
    run_tasks().await;
    assert!(
        deployment.store.record(&id).await.is_some(),
        "the record stays"
    );
    assert_eq!(deployment.store.calls().delete, 0);

    // The client carries on through B, data map included.
    assert_eq!(ok(&b.app, op(&id, "increment", "")).await, "2");
    assert_eq!(b.probe.made().len(), 1);
    assert!(b.closed.all().is_empty());
}

#[tokio::test(start_paused = true)]
async fn idle_expiry_closes_one_nodes_copy_and_the_record_lives_while_used_elsewhere() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    let idle = Duration::from_secs(4);
    // A sweeps only when the test says so.
    let a = deployment.node("A", |l| {
        l.idle_timeout(idle)
            .sweep_interval(Duration::from_secs(3600))
    });
    let b = deployment.node("B", |l| l.idle_timeout(idle));

    let id = open(&a.app).await;
    run_tasks().await;
    // The client goes on through B only (which restores the session), once a second, for
    // longer than the idle timeout.
    for n in 1..=6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(ok(&b.app, op(&id, "increment", "")).await, n.to_string());
    }
    // A's copy has been idle for 6 s: expired there, and only there.
    assert_eq!(a.sessions.sweep(), 1);
    assert_eq!(a.closed.all(), [(id.clone(), CloseReason::Expired)]);
    run_tasks().await;
    assert!(store.record(&id).await.is_some(), "B kept the record fresh");
    assert_eq!(store.calls().delete, 0, "idle expiry deletes no record");
    assert!(b.closed.all().is_empty());
    assert_eq!(ok(&b.app, op(&id, "increment", "")).await, "7");
    // A restores it from the record.
    assert_eq!(ok(&a.app, op(&id, "increment", "")).await, "8");
    assert_eq!(a.probe.made().len(), 2);

    // A session nobody uses: its record ends with its time to live.
    let unused = open(&a.app).await;
    run_tasks().await;
    assert!(store.record(&unused).await.is_some());
    tokio::time::sleep(idle + Duration::from_secs(2)).await;
    assert!(store.inner.purge_expired() >= 1);
    assert!(store.record(&unused).await.is_none());
    let made = b.probe.made().len();
    assert_not_found(send(&b.app, post(&unused)).await).await;
    assert_eq!(b.probe.made().len(), made);
}

#[tokio::test(start_paused = true)]
async fn eviction_closes_the_session_everywhere_and_deletes_its_record() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    let a = deployment.node("A", |l| {
        l.max_sessions(1)
            .eviction(tower_mcp_session::Eviction::LastRequest)
    });
    let b = deployment.node("B", |l| l);

    let first = open(&a.app).await;
    ok(&b.app, post(&first)).await;
    let second = open(&a.app).await;
    assert_eq!(a.closed.all(), [(first.clone(), CloseReason::Evicted)]);
    assert!(a.sessions.contains(&second));

    // The record is deleted and the other nodes told in the background.
    for _ in 0..100 {
        if store.record(&first).await.is_none() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        store.record(&first).await.is_none(),
        "the record is deleted"
    );
    assert!(store.record(&second).await.is_some());
    assert_eq!(b.closed.all(), [(first.clone(), CloseReason::Evicted)]);
    assert_not_found(send(&b.app, post(&first)).await).await;
    assert_not_found(send(&a.app, post(&first)).await).await;
    assert_eq!(b.probe.made().len(), 1, "no restore of an evicted session");
}

#[tokio::test(start_paused = true)]
async fn the_store_unreachable_is_503_never_404_and_live_sessions_keep_working() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    let a = deployment.node("A", |l| l);
    let b = deployment.node("B", |l| l);

    // Down from the start: every store call fails.
    store.set_down(true);
    let resp = send(&a.app, initialize()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[http::header::RETRY_AFTER], "5");
    assert_eq!(
        resp.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    assert!(
        resp.headers().get(SESSION_HEADER).is_none(),
        "no id is issued"
    );
    assert_eq!(body_string(resp).await, STORE_DOWN_BODY);
    assert!(a.sessions.is_empty());
    assert!(a.closed.all().is_empty());

    // An id this node does not hold may well exist: 503, not 404.
    let resp = send(&b.app, post("3f1c2b4a-0000-4000-8000-000000000000")).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[http::header::RETRY_AFTER], "5");
    assert_eq!(body_string(resp).await, STORE_DOWN_BODY);

    // Opened while the store was up (once a probe has seen it back); then it goes down.
    store.set_down(false);
    tokio::time::sleep(PROBE_INTERVAL).await;
    run_tasks().await;
    let id = open(&a.app).await;
    store.set_down(true);
    for _ in 0..5 {
        ok(&a.app, post(&id)).await;
    }
    let resp = send(&b.app, post(&id)).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_string(resp).await, STORE_DOWN_BODY);
    // DELETE cannot delete the record: 503 too.
    let resp = send(&b.app, delete(&id)).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_string(resp).await, STORE_DOWN_BODY);
    assert!(b.probe.made().is_empty());

    // Back up: B restores it once its probe has seen the store.
    store.set_down(false);
    tokio::time::sleep(PROBE_INTERVAL).await;
    run_tasks().await;
    ok(&b.app, post(&id)).await;
    assert_eq!(b.probe.made().len(), 1);
    ok(&a.app, post(&id)).await;
}

#[tokio::test(start_paused = true)]
async fn a_request_routed_to_a_session_live_on_the_node_makes_no_store_call() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l);
    let id = open(&a.app).await;
    run_tasks().await;
    let before = deployment.store.calls();
    assert_eq!(before.create, 1);
    let clock = tokio::time::Instant::now();

    for i in 0..100 {
        ok(&a.app, post_with(&id, rpc_body(i, "tools/list"))).await;
    }

    // The clock did not move, so the refresher (the only caller of `touch`) could not run.
    assert_eq!(tokio::time::Instant::now(), clock);
    assert_eq!(
        deployment.store.calls(),
        before,
        "no store call on the hot path"
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_session_keeps_its_record_with_at_most_one_touch_per_interval() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    let idle = Duration::from_secs(4);
    // The default refresh interval is a quarter of the idle timeout: 1 s.
    let interval = Duration::from_secs(1);
    let a = deployment.node("A", |l| l.idle_timeout(idle));
    let b = deployment.node("B", |l| l.idle_timeout(idle));

    let id = open(&a.app).await;
    let start = tokio::time::Instant::now();
    run_tasks().await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            store.record(&id).await.is_some(),
            "the record never expires"
        );
        // Several requests per step: a touch per request would exceed one per interval.
        for _ in 0..5 {
            ok(&a.app, post(&id)).await;
        }
    }
    let elapsed = tokio::time::Instant::now() - start;
    assert_eq!(elapsed, Duration::from_secs(20));

    let calls = store.calls();
    let rounds = elapsed.as_millis() / interval.as_millis();
    assert!(calls.touch >= 1, "the record was refreshed");
    assert!(
        calls.touch as u128 <= rounds,
        "{} touch calls in {} intervals",
        calls.touch,
        rounds
    );
    assert!(store.touch_batches().iter().all(|&ids| ids == 1));
    assert_eq!(calls.load, 0, "A never loaded the record it holds");

    // At the end another node still restores it.
    ok(&b.app, post(&id)).await;
    assert_eq!(b.probe.made().len(), 1);
}

#[tokio::test]
async fn without_a_store_the_data_map_and_publish_work_within_the_node() {
    let node = Node::build("solo", |l| l);
    let id = open(&node.app).await;
    let sid = SessionId::parse(&id).unwrap();

    assert_eq!(ok(&node.app, op(&id, "get", "")).await, "null");
    assert_eq!(ok(&node.app, op(&id, "insert", "kept")).await, "ok");
    assert_eq!(ok(&node.app, op(&id, "get", "")).await, r#""kept""#);
    assert_eq!(ok(&node.app, op(&id, "increment", "")).await, "1");
    assert_eq!(ok(&node.app, op(&id, "increment", "")).await, "2");
    assert_eq!(
        node.sessions
            .data(&sid)
            .get::<i64>("counter")
            .await
            .unwrap(),
        Some(2)
    );

    ok(&node.app, op(&id, "subscribe", "")).await;
    let mut subscription = node.probe.subscription(&id);
    assert_eq!(ok(&node.app, op(&id, "publish", "ping")).await, "published");
    assert_eq!(next_message(&mut subscription).await.unwrap(), "ping");
    node.sessions
        .publish(&sid, "from the handle")
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut subscription).await.unwrap(),
        "from the handle"
    );

    assert_eq!(
        status_of(&node.app, delete(&id)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(node.closed.all(), [(id.clone(), CloseReason::Deleted)]);
    assert!(
        next_message(&mut subscription).await.is_none(),
        "the subscription ended"
    );
    // The data went with the session.
    assert_eq!(
        node.sessions
            .data(&sid)
            .get::<i64>("counter")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        node.sessions
            .data(&sid)
            .get::<String>("note")
            .await
            .unwrap(),
        None
    );
    // Writes for a closed session are refused and leave nothing behind.
    let gone = node.sessions.data(&sid);
    assert!(matches!(
        gone.insert("note", &"late").await,
        Err(DataError::SessionGone)
    ));
    assert!(matches!(
        gone.increment("counter", 1).await,
        Err(DataError::SessionGone)
    ));
    assert_eq!(gone.get::<String>("note").await.unwrap(), None);
    let other = open(&node.app).await;
    assert_eq!(ok(&node.app, op(&other, "get", "")).await, "null");
    assert_eq!(ok(&node.app, op(&other, "increment", "")).await, "1");
}

#[tokio::test(start_paused = true)]
async fn a_copy_whose_record_is_gone_closes_at_the_next_refresh_even_without_the_bus_message() {
    // Two nodes on one store but no bus: B never hears of A's DELETE, as when a bus message
    // is lost (an outage, or a restore racing a DELETE).
    let store = TestStore::default();
    let idle = Duration::from_secs(4);
    let (sa, sb) = (store.clone(), store.clone());
    let a = Node::build("A", |l| l.cluster(Cluster::new(sa)).idle_timeout(idle));
    let b = Node::build("B", |l| l.cluster(Cluster::new(sb)).idle_timeout(idle));

    let id = open(&a.app).await;
    ok(&b.app, post(&id)).await;
    assert_eq!(status_of(&a.app, delete(&id)).await, StatusCode::NO_CONTENT);
    assert!(store.record(&id).await.is_none());
    // B's copy was used since the last refresh round: the next round (1 s, a quarter of the
    // idle timeout) finds its record gone and closes it.
    assert!(
        b.sessions.contains(&id),
        "B has not heard of the DELETE yet"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    run_tasks().await;
    assert!(!b.sessions.contains(&id), "B closed its copy");
    assert_eq!(b.closed.all(), [(id.clone(), CloseReason::Closed)]);
    let (status, _) = answer(&b.app, post(&id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn eviction_keeps_a_session_that_another_node_has_used_since() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    let idle = Duration::from_secs(4);
    let a = deployment.node("A", |l| {
        l.idle_timeout(idle)
            .max_sessions(1)
            .eviction(tower_mcp_session::Eviction::LastRequest)
    });
    let b = deployment.node("B", |l| l.idle_timeout(idle));

    let first = open(&a.app).await;
    // The client carries on through B for 3.5 s; B's refresher (every second) keeps the
    // record's time to live fresh, A's copy sits idle.
    for _ in 0..7 {
        ok(&b.app, post(&first)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        run_tasks().await;
    }
    let second = open(&a.app).await;
    assert_eq!(a.closed.all(), [(first.clone(), CloseReason::Evicted)]);
    run_tasks().await;
    // A freed its memory; the session lives on through B, record and all.
    assert!(store.record(&first).await.is_some(), "the record stays");
    assert!(b.closed.all().is_empty(), "B's copy stays open");
    ok(&b.app, post(&first)).await;
    assert!(store.record(&second).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_failed_restore_answers_everyone_who_waited_for_it_with_one_store_read() {
    let deployment = Deployment::default();
    let b = deployment.node("B", |l| l);
    deployment.store.set_load_delay(Duration::from_millis(100));
    let unknown = "0b5e3f2a-1111-4222-8333-944445555666";
    let requests = (0..20).map(|_| {
        let app = b.app.clone();
        async move { answer(&app, post(unknown)).await.0 }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::NOT_FOUND));
    assert_eq!(deployment.store.calls().load, 1, "one read for 20 requests");
}

// On the real clock: a session's age across nodes is wall-clock time (its record's creation
// time), which tokio's paused clock does not move.
#[tokio::test]
async fn a_restored_session_keeps_the_lifetime_it_had_from_its_creation() {
    let deployment = Deployment::default();
    let lifetime = Duration::from_secs(2);
    let a = deployment.node("A", |l| l.max_lifetime(lifetime));
    let b = deployment.node("B", |l| l.max_lifetime(lifetime));
    let id = open(&a.app).await;
    // Created on A; restored on B 1 s later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    ok(&b.app, post(&id)).await;
    // 2.3 s after its creation (1.3 s after the restore) it has ended on B too, instead of
    // living a fresh lifetime there.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_not_found(send(&b.app, post(&id)).await).await;
    assert_eq!(b.closed.all(), [(id.clone(), CloseReason::LifetimeEnded)]);
}

#[tokio::test]
async fn a_session_live_here_under_another_principal_is_404_without_a_store_read() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l.principal(user_of));
    let resp = send(&a.app, as_user("alice", initialize())).await;
    let id = session_id_of(&resp).unwrap();
    body_string(resp).await;
    let loads = deployment.store.calls().load;
    assert_not_found(send(&a.app, as_user("bob", post(&id))).await).await;
    assert_eq!(deployment.store.calls().load, loads);
}

#[tokio::test]
async fn a_replay_the_service_refuses_is_404_here_and_keeps_the_record_for_the_others() {
    let deployment = Deployment::default();
    let a = deployment.node("A", |l| l);
    let b = deployment.node("B", |l| l);
    let id = open(&a.app).await;

    // B's service refuses the session for good (say, a version it no longer speaks): 404 on
    // B, so that the client starts over; A's copy and the record are untouched.
    b.probe.refuse_initialize(Some(StatusCode::BAD_REQUEST));
    assert_not_found(send(&b.app, post(&id)).await).await;
    assert!(b.sessions.is_empty());
    assert!(deployment.store.record(&id).await.is_some());
    ok(&a.app, post(&id)).await;
    assert!(a.closed.all().is_empty());

    // One that may pass (a server error, 429): 503 with Retry-After, record kept, and the
    // next try restores the session.
    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        b.probe.refuse_initialize(Some(status));
        let resp = send(&b.app, post(&id)).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{status}");
        assert!(resp.headers().contains_key(http::header::RETRY_AFTER));
    }
    b.probe.refuse_initialize(None);
    ok(&b.app, post(&id)).await;
    assert_eq!(b.sessions.len(), 1);
}

#[tokio::test]
async fn a_restore_that_fails_stops_listening_on_the_bus() {
    let deployment = Deployment::default();
    let b = deployment.node("B", |l| l);
    let listening = |bus: &MemoryBus| format!("{bus:?}");
    let before = listening(&deployment.bus);
    assert_not_found(send(&b.app, post("0b5e3f2a-1111-4222-8333-944445555666")).await).await;
    assert_eq!(listening(&deployment.bus), before, "no id left listened to");
}

#[tokio::test(start_paused = true)]
async fn once_the_store_is_found_down_data_operations_fail_at_once_until_a_probe_sees_it_back() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    let a = deployment.node("A", |l| l);
    let id = open(&a.app).await;
    assert_eq!(ok(&a.app, op(&id, "increment", "")).await, "1");

    // The first operation after the store went away finds it unavailable; the ones after it
    // do not reach the store at all.
    store.set_down(true);
    let before = store.calls();
    let (status, body) = answer(&a.app, op(&id, "increment", "")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, "session store unavailable: down");
    assert_eq!(store.calls().data, before.data + 1);
    let clock = tokio::time::Instant::now();
    for _ in 0..10 {
        let (status, body) = answer(&a.app, op(&id, "increment", "")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            "session store unavailable: unavailable since an earlier operation; probing every \
             500 ms"
        );
        let (status, _) = answer(&a.app, op(&id, "get", "")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(
        tokio::time::Instant::now(),
        clock,
        "answered without waiting"
    );
    assert_eq!(
        store.calls().data,
        before.data + 1,
        "no store call while it is down"
    );
    // Opens and restores answer 503 without asking the store either.
    assert_eq!(
        status_of(&a.app, initialize()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status_of(&a.app, post("3f1c2b4a-0000-4000-8000-000000000000")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(store.calls().create, before.create);
    assert_eq!(store.calls().load, before.load);
    // Requests that need no data keep being served.
    ok(&a.app, post(&id)).await;

    // The probe runs once per interval while the store stays down, and the breaker closes at
    // the first probe that reaches it.
    tokio::time::sleep(PROBE_INTERVAL * 2 + Duration::from_millis(10)).await;
    run_tasks().await;
    assert_eq!(store.calls().ping, 2);
    store.set_down(false);
    tokio::time::sleep(PROBE_INTERVAL).await;
    run_tasks().await;
    assert_eq!(store.calls().ping, 3);
    assert_eq!(ok(&a.app, op(&id, "increment", "")).await, "2");
    tokio::time::sleep(PROBE_INTERVAL * 4).await;
    run_tasks().await;
    assert_eq!(store.calls().ping, 3, "no probe once the store is back");
}

#[tokio::test(start_paused = true)]
async fn a_store_that_comes_back_empty_ends_every_session_on_every_node_before_its_next_request() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    // Refresh rounds far apart: what ends the sessions is the store coming back, not a round.
    let layer = |l: SessionLayerBuilder<NodeFactory>| l.idle_timeout(Duration::from_secs(600));
    let a = deployment.node("A", layer);
    let b = deployment.node("B", layer);
    let ids = [open(&a.app).await, open(&b.app).await, open(&a.app).await];
    for id in &ids {
        ok(&a.app, post(id)).await;
        ok(&b.app, post(id)).await;
    }
    assert_eq!((a.sessions.len(), b.sessions.len()), (3, 3));

    // The store goes away (A finds out through a data call) and comes back without its data.
    store.set_down(true);
    let (status, _) = answer(&a.app, op(&ids[0], "increment", "")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    for id in &ids {
        store
            .inner
            .delete(&SessionId::parse(id).unwrap())
            .await
            .unwrap();
    }
    store.set_down(false);
    tokio::time::sleep(PROBE_INTERVAL).await;
    run_tasks().await;

    // A's probe saw it back, refreshed all its sessions, closed them and told B.
    assert!(a.sessions.is_empty());
    assert!(b.sessions.is_empty());
    for id in &ids {
        assert_not_found(send(&a.app, post(id)).await).await;
        assert_not_found(send(&b.app, post(id)).await).await;
    }
    let closed = |node: &Node| {
        let mut all = node.closed.all();
        all.sort_by(|x, y| x.0.cmp(&y.0));
        all
    };
    let mut expected: Vec<_> = ids
        .iter()
        .map(|id| (id.clone(), CloseReason::Closed))
        .collect();
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(closed(&a), expected);
    assert_eq!(closed(&b), expected);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_finds_no_record_ends_the_session_on_every_node_at_once() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    let layer = |l: SessionLayerBuilder<NodeFactory>| l.idle_timeout(Duration::from_secs(600));
    let a = deployment.node("A", layer);
    let b = deployment.node("B", layer);
    let id = open(&a.app).await;
    ok(&b.app, post(&id)).await;
    // The record vanishes under both copies (flushed, or lost by a failover).
    store
        .inner
        .delete(&SessionId::parse(&id).unwrap())
        .await
        .unwrap();

    let (status, body) = answer(&a.app, op(&id, "increment", "")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, "the session has no record any more");
    run_tasks().await;
    // No refresh round has run: the write itself ended the session, here and on B.
    assert_not_found(send(&a.app, post(&id)).await).await;
    assert_not_found(send(&b.app, post(&id)).await).await;
    assert_eq!(a.closed.all(), [(id.clone(), CloseReason::Closed)]);
    assert_eq!(b.closed.all(), [(id.clone(), CloseReason::Closed)]);
}

#[tokio::test(start_paused = true)]
async fn a_restore_that_finds_no_record_ends_the_copies_other_nodes_still_hold() {
    let deployment = Deployment::default();
    let store = &deployment.store;
    let layer = |l: SessionLayerBuilder<NodeFactory>| l.idle_timeout(Duration::from_secs(600));
    let a = deployment.node("A", layer);
    let b = deployment.node("B", layer);
    let id = open(&a.app).await;
    store
        .inner
        .delete(&SessionId::parse(&id).unwrap())
        .await
        .unwrap();

    // B does not hold the session: its restore finds no record, and A's copy ends too.
    assert_not_found(send(&b.app, post(&id)).await).await;
    run_tasks().await;
    assert!(!a.sessions.contains(&id));
    assert_not_found(send(&a.app, post(&id)).await).await;
    assert_eq!(a.closed.all(), [(id.clone(), CloseReason::Closed)]);
}
