//! The layer composed the way users compose it: an axum `Router` inner beside a per-session
//! service with another body type, under tower-http's `TimeoutLayer`, served by `axum::serve`
//! over loopback; the axum placements the docs recommend (and why `Router::layer` is not one);
//! the axum extractors for the session, its info and its typed state.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{any, get, post};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_http::timeout::TimeoutLayer;
use tower_mcp_session::body::RequestBody;
use tower_mcp_session::{
    Session, SessionInfo, SessionLayer, SessionLayerBuilder, SessionState, with_state,
};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;

/// What the factory below resolves to.
type Made = std::future::Ready<Result<(PerSession, Arc<AtomicU64>), Infallible>>;

/// The per-session service of rmcp's shape: `Response<BoxBody<Bytes, Infallible>>`, counting
/// its own requests.
fn boxed_body_factory() -> impl Fn(SessionInfo, Router) -> Made + Clone {
    |info: SessionInfo, _inner: Router| {
        let count = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&count);
        let service = service_fn(move |_req: Request<RequestBody<Body>>| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let text = json!({"session": info.id().as_str(), "n": n}).to_string();
            let body: BoxBody<Bytes, Infallible> = Full::from(text).boxed();
            std::future::ready(Ok::<_, Infallible>(Response::new(body)))
        });
        std::future::ready(Ok((tower::util::BoxCloneSyncService::new(service), count)))
    }
}

type PerSession = tower::util::BoxCloneSyncService<
    Request<RequestBody<Body>>,
    Response<BoxBody<Bytes, Infallible>>,
    Infallible,
>;

#[tokio::test]
async fn axum_inner_and_boxed_session_bodies_under_timeout_layer_over_loopback() {
    // The inner (sessionless) service is an axum Router: its body is axum's `Body`.
    let sessionless = Router::new().route(
        "/mcp",
        any(|| async { (StatusCode::BAD_REQUEST, "sessionless") }),
    );
    let layer = SessionLayer::mcp(with_state(boxed_body_factory())).build();
    let sessions = layer.sessions();
    let mcp = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(layer)
        .service(sessionless);
    let app = Router::new()
        .route_service("/mcp", mcp)
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let send = |method: &str, path: &str, headers: &[(&str, &str)], body: &'static str| {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{url}{path}"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::from(body)).unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            let text = body.collect().await.unwrap().to_bytes();
            (parts, String::from_utf8(text.to_vec()).unwrap())
        }
    };

    let (health, text) = send("GET", "/health", &[], "").await;
    assert_eq!((health.status, text.as_str()), (StatusCode::OK, "ok"));

    let (init, text) = send("POST", "/mcp", &[], INIT).await;
    assert_eq!(init.status, StatusCode::OK);
    let id = init.headers["mcp-session-id"].to_str().unwrap().to_owned();
    assert_eq!(text, json!({"session": id, "n": 1}).to_string());
    let (_, text) = send("POST", "/mcp", &[("mcp-session-id", &id)], "{}").await;
    assert_eq!(text, json!({"session": id, "n": 2}).to_string());
    // The typed state is the session's own counter.
    let count = sessions.state::<Arc<AtomicU64>>(&id).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // The sessionless version reaches the axum inner.
    let version = [("mcp-protocol-version", "2026-07-28")];
    let (modern, text) = send("POST", "/mcp", &version, "{}").await;
    assert_eq!(
        (modern.status, text.as_str()),
        (StatusCode::BAD_REQUEST, "sessionless")
    );
    server.abort();
}

async fn status_and_text<S, B>(app: S, req: Request<Body>) -> (StatusCode, String)
where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn health() -> Request<Body> {
    Request::get("/health").body(Body::empty()).unwrap()
}

fn init_at(path: &str) -> Request<Body> {
    Request::post(path).body(Body::from(INIT)).unwrap()
}

/// A per-session axum Router whose handler reads the session through the extractors; it
/// serves `/mcp`, and `/` for when `nest_service` has stripped the prefix.
fn extractor_router() -> Router {
    let handler = post(
        |info: SessionInfo, SessionState(count): SessionState<Arc<AtomicU64>>, session: Session| async move {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            assert_eq!(session.info(), &info);
            format!("{} {n}", info.id())
        },
    );
    Router::new()
        .route("/mcp", handler.clone())
        .route("/", handler)
}

fn extractor_layer<I: Send + 'static>()
-> SessionLayerBuilder<impl tower_mcp_session::SessionFactory<I, Service = Router>> {
    let template = extractor_router();
    SessionLayer::mcp(with_state(move |_info: SessionInfo, _inner: I| {
        let router = template.clone();
        async move { Ok::<_, Infallible>((router, Arc::new(AtomicU64::new(0)))) }
    }))
}

#[tokio::test]
async fn route_service_keeps_other_routes_out_of_the_session_rules() {
    let mcp = ServiceBuilder::new()
        .layer(extractor_layer().build())
        .service(Router::new());
    let app = Router::new()
        .route_service("/mcp", mcp)
        .route("/health", get(|| async { "ok" }));
    let (status, body) = status_and_text(app.clone(), init_at("/mcp")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with(" 1"), "{body}");
    assert_eq!(
        status_and_text(app, health()).await,
        (StatusCode::OK, "ok".into())
    );
}

#[tokio::test]
async fn nest_service_routes_the_whole_prefix_through_one_table() {
    let layer = extractor_layer().build();
    let sessions = layer.sessions();
    let mcp = ServiceBuilder::new().layer(layer).service(Router::new());
    let app = Router::new().nest_service("/mcp", mcp);
    // nest_service strips the prefix: the per-session router sees "/".
    let resp = app.clone().oneshot(init_at("/mcp")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let id = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let next = Request::post("/mcp")
        .header("mcp-session-id", &id)
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        status_and_text(app, next).await,
        (StatusCode::OK, format!("{id} 2"))
    );
    assert_eq!(sessions.len(), 1);
}

#[tokio::test]
async fn one_layer_around_a_whole_router_with_a_sessionless_health_route() {
    let layer = extractor_layer()
        .sessionless(|parts| parts.uri.path() == "/health")
        .build();
    let router = extractor_router().route("/health", get(|| async { "ok" }));
    let app = ServiceBuilder::new().layer(layer).service(router);
    let (status, _) = status_and_text(app.clone(), init_at("/mcp")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        status_and_text(app, health()).await,
        (StatusCode::OK, "ok".into())
    );
}

#[tokio::test]
async fn router_layer_applies_the_session_rules_to_every_route() {
    // What the docs warn against: axum wraps each route separately, so the health check
    // without a session id is refused by the MCP rules (and each route has its own table).
    let app = extractor_router()
        .route("/health", get(|| async { "ok" }))
        .layer(extractor_layer().build());
    let (status, _) = status_and_text(app, health()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn extractors_without_the_layer_answer_500_saying_why() {
    let (status, body) = status_and_text(extractor_router(), init_at("/mcp")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body.starts_with("no session on this request: is the handler behind a SessionLayer"),
        "{body}"
    );
    // With the extension switched off, the extractors say the same; the session still works
    // for services that do not need them.
    let app = ServiceBuilder::new()
        .layer(extractor_layer().session_extension(false).build())
        .service(Router::new());
    let resp = app.clone().oneshot(init_at("/mcp")).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the opening request always carries it"
    );
    let id = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let next = Request::post("/mcp")
        .header("mcp-session-id", &id)
        .body(Body::from("{}"))
        .unwrap();
    let (status, body) = status_and_text(app, next).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.starts_with("no session on this request"), "{body}");
}

#[tokio::test]
async fn a_state_of_another_type_is_a_500_naming_the_type() {
    let router = Router::new().route(
        "/mcp",
        post(|SessionState(_): SessionState<String>| async { "unreachable" }),
    );
    let layer = SessionLayer::mcp(with_state(move |_info: SessionInfo, _inner: Router| {
        let router = router.clone();
        async move { Ok::<_, Infallible>((router, 7_u32)) }
    }))
    .build();
    let app = ServiceBuilder::new().layer(layer).service(Router::new());
    let (status, body) = status_and_text(app, init_at("/mcp")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        "the session's state is not a alloc::string::String: the factory returns another state type"
    );
}
