//! The tonic example (`examples/tonic.rs`) over loopback with a real tonic client: the layer
//! goes into `Server::builder().layer(..)` unchanged, a first call opens a session whose id
//! comes back in the `x-session-id` metadata, sessions keep separate state, and the rejection
//! hook turns an unknown session into gRPC `NOT_FOUND`.

#[allow(dead_code)]
#[path = "../examples/tonic.rs"]
mod example;

use std::time::Duration;

use example::SESSION_HEADER;
use example::counter::{AddReply, AddRequest, CounterClient, CounterServer};
use http::Request;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Routes;
use tower::{Layer, ServiceExt};

/// Upper bound for any single call; a hang fails the test instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(10);

struct Server {
    client: CounterClient,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(example::serve(listener, async {
            let _ = stopped.await;
        }));
        let client = tokio::time::timeout(LIMIT, CounterClient::connect(format!("http://{addr}")))
            .await
            .expect("connect timed out")
            .unwrap();
        Self {
            client,
            stop: Some(stop),
            task,
        }
    }

    /// Calls `Add(amount)`, with `session` in the metadata if given. Returns the reply and the
    /// session id of the response metadata, if any.
    async fn add(
        &self,
        amount: u64,
        session: Option<&MetadataValue<Ascii>>,
    ) -> Result<(AddReply, Option<MetadataValue<Ascii>>), tonic::Status> {
        let mut request = tonic::Request::new(AddRequest { amount });
        if let Some(id) = session {
            request.metadata_mut().insert(SESSION_HEADER, id.clone());
        }
        let mut client = self.client.clone();
        let response = tokio::time::timeout(LIMIT, client.add(request))
            .await
            .expect("call timed out")?;
        let id = response.metadata().get(SESSION_HEADER).cloned();
        Ok((response.into_inner(), id))
    }

    /// A first call without a session id: opens a session and returns its id.
    async fn open(&self, amount: u64) -> MetadataValue<Ascii> {
        let (reply, id) = self.add(amount, None).await.unwrap();
        let id = id.expect("the opening response carries x-session-id");
        assert_eq!(reply.session_id, id.to_str().unwrap());
        assert_eq!(reply.value, amount);
        id
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        drop(self.client);
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn each_session_has_its_own_counter() {
    let server = Server::start().await;

    let a = server.open(1).await;
    let b = server.open(100).await;
    assert_ne!(a, b);

    // Later calls with the id reach the same session's counter, and only that one.
    let (reply, echoed) = server.add(10, Some(&a)).await.unwrap();
    assert_eq!(reply.value, 11);
    assert_eq!(reply.session_id, a.to_str().unwrap());
    assert!(echoed.is_none(), "only the opening response carries the id");

    let (reply, _) = server.add(1, Some(&b)).await.unwrap();
    assert_eq!(reply.value, 101);
    assert_eq!(reply.session_id, b.to_str().unwrap());

    let (reply, _) = server.add(0, Some(&a)).await.unwrap();
    assert_eq!(reply.value, 11);

    server.stop().await;
}

#[tokio::test]
async fn unknown_session_is_grpc_not_found() {
    let server = Server::start().await;
    let live = server.open(1).await;

    let unknown: MetadataValue<Ascii> = "no-such-session".parse().unwrap();
    let status = server.add(1, Some(&unknown)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "Session not found");

    // A malformed id (a space is outside visible ASCII) is the caller's mistake.
    let malformed: MetadataValue<Ascii> = "not an id".parse().unwrap();
    let status = server.add(1, Some(&malformed)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // The rejected calls did not disturb the live session.
    let (reply, _) = server.add(1, Some(&live)).await.unwrap();
    assert_eq!(reply.value, 2);

    server.stop().await;
}

#[tokio::test]
async fn a_closed_session_is_not_found() {
    // The layer and the sessions handle, without a network: close a session, then call it.
    let layer = example::session_layer();
    let sessions = layer.sessions();
    let service = layer.layer(Routes::new(CounterServer::new()));

    let call = |id: Option<&str>| {
        let mut request = Request::post("/counter.Counter/Add")
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(id) = id {
            request = request.header(SESSION_HEADER, id);
        }
        // One gRPC frame: uncompressed, 2 bytes, field 1 (amount) = 1.
        let frame = vec![0, 0, 0, 0, 2, 0x08, 0x01];
        let request = request.body(tonic::body::Body::new(http_body_util::Full::from(frame)));
        service.clone().oneshot(request.unwrap())
    };

    let opened = call(None).await.unwrap();
    let id = opened.headers()[SESSION_HEADER]
        .to_str()
        .unwrap()
        .to_owned();
    drop(opened);
    assert!(sessions.close(&id));

    // The layer's own answer, as a gRPC client sees it on the wire: HTTP 200, a gRPC
    // content type, status 5 and a message, all in the headers (a "trailers-only" response).
    let response = call(Some(&id)).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(headers["grpc-status"], "5");
    assert_eq!(headers["grpc-message"], "Session%20not%20found");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

#[tokio::test]
async fn a_failed_first_call_opens_no_session() {
    // gRPC failures are HTTP 200 with a `grpc-status`: `keep_session_if` keeps them out.
    let layer = example::session_layer();
    let sessions = layer.sessions();
    let service = layer.layer(Routes::new(CounterServer::new()));
    let request = Request::post("/counter.Counter/NoSuchMethod")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::from(vec![
            0, 0, 0, 0, 0,
        ])))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "12"); // UNIMPLEMENTED
    assert!(response.headers().get(SESSION_HEADER).is_none());
    assert_eq!(sessions.len(), 0);
}
