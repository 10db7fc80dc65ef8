//! The hyper example (`examples/hyper.rs`) over loopback, driven by a real hyper client:
//! sessions open, stay isolated, close on DELETE, and the layer's answers reach a plain
//! hyper server unchanged.

#[allow(dead_code)]
#[path = "../examples/hyper.rs"]
mod example;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const SESSION: &str = "mcp-session-id";
/// Upper bound for any single request; a hang fails the test instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(example::serve(listener, async {
            let _ = stopped.await;
        }));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            addr,
            stop: Some(stop),
            task,
            client,
        }
    }

    async fn send(&self, method: Method, path: &str, id: Option<&str>) -> (Response<()>, String) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(id) = id {
            request = request.header(SESSION, id);
        }
        let request = request.body(Full::default()).unwrap();
        let exchange = async {
            let response = self.client.request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (
                Response::from_parts(parts, ()),
                String::from_utf8(body.to_vec()).unwrap(),
            )
        };
        tokio::time::timeout(LIMIT, exchange)
            .await
            .expect("request timed out")
    }

    /// Opens a session with `POST /` and returns its id.
    async fn open(&self) -> String {
        let (response, body) = self.send(Method::POST, "/", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let id = response.headers()[SESSION].to_str().unwrap().to_owned();
        assert_eq!(body, format!("session {id}: request 1\n"));
        id
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn sessions_are_isolated_and_delete_ends_them() {
    let server = Server::start().await;

    let a = server.open().await;
    let b = server.open().await;
    assert_ne!(a, b);

    // Each session counts its own requests.
    for n in 2..=3 {
        let (response, body) = server.send(Method::POST, "/", Some(&a)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body, format!("session {a}: request {n}\n"));
        // A routed request does not get the id echoed; only the opening answer carries it.
        assert!(response.headers().get(SESSION).is_none());
    }
    let (_, body) = server.send(Method::GET, "/anything", Some(&b)).await;
    assert_eq!(body, format!("session {b}: request 2\n"));

    // DELETE closes `a`: 204, then its id is unknown.
    let (response, body) = server.send(Method::DELETE, "/", Some(&a)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    let (response, body) = server.send(Method::POST, "/", Some(&a)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#
    );
    let (response, _) = server.send(Method::DELETE, "/", Some(&a)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // `b` is untouched.
    let (response, body) = server.send(Method::POST, "/", Some(&b)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body, format!("session {b}: request 3\n"));

    server.stop().await;
}

#[tokio::test]
async fn health_is_sessionless_and_other_requests_need_an_id() {
    let server = Server::start().await;

    // The sessionless predicate sends `GET /health` to the inner service: no session opens.
    let (response, body) = server.send(Method::GET, "/health", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body, "ok\n");
    assert!(response.headers().get(SESSION).is_none());

    // Only POST opens a session: a GET without an id is a client error.
    let (response, body) = server.send(Method::GET, "/", None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(body.contains("-32000"), "{body}");
    assert!(response.headers().get(SESSION).is_none());

    // An id that was never issued: 404, not a new session.
    let (response, _) = server.send(Method::POST, "/", Some("never-issued")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    server.stop().await;
}
