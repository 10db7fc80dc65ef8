//! [`SessionClient`], the service the layer builds.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use crate::client::body::{ClientBody, INITIALIZE_RESPONSE_LIMIT, ResponseBody};
use crate::client::error::{Error, SessionLost};
use crate::client::future::ResponseFuture;
use crate::client::message::{INITIALIZED, Scan, initialize_request, scan_response};
use crate::client::state::{Recorded, Reinitializing, SessionHandle, Shared, Snapshot, recordable};
use crate::mcp::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};

/// Keeps the MCP session of an HTTP client service `S` and recovers from 404 by itself.
/// Built by [`SessionClientLayer`](crate::client::SessionClientLayer) or [`SessionClient::new`].
///
/// Takes `http::Request<`[`ClientBody`]`>` and returns `http::Response<`[`ResponseBody`]`<B>>`
/// (the inner body, unchanged) or an [`Error`]:
///
/// - A POST whose body is a JSON-RPC `initialize` request opens a session: it is sent
///   without `Mcp-Session-Id`, recorded, and a 2xx answer's `Mcp-Session-Id` becomes the
///   session id (with no such header the server is sessionless and no id is sent). Its
///   answer passes through; the layer reads `result.protocolVersion` from it on the way.
/// - Every other request gets the session's `Mcp-Session-Id` and `MCP-Protocol-Version`
///   (an `MCP-Protocol-Version` the application set is kept). A request that already carries
///   `Mcp-Session-Id` is the application's own business and passes through untouched.
/// - A 404 to a request that carried the session id means the session is gone (MCP
///   2025-11-25, Basic, Transports, Streamable HTTP, Session Management: the client MUST
///   start a new session). The layer re-sends the recorded `initialize`, then
///   `notifications/initialized` (202 or any 2xx expected), takes the new id, and sends the
///   request again once, if its body is bytes; a streaming body gets
///   [`SessionLost::NotReplayable`]. A second 404 is returned as it is. Concurrent requests
///   share one re-initialization (see the module docs).
/// - Any other answer, including a 404 to a request without the id, passes through.
///
/// `poll_ready` is always ready: each call drives a clone of `S` (`ready().await`, then
/// `call`) inside its future, as axum does, because recovering needs several calls of the
/// inner service per request. Backpressure of `S` therefore shows up as a pending future.
pub struct SessionClient<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for SessionClient<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionClient")
            .field("inner", &self.inner)
            .field("session", &self.shared)
            .finish()
    }
}

impl<S> SessionClient<S> {
    /// Wraps `inner` with a session of its own (no session yet).
    pub fn new(inner: S) -> Self {
        Self::with_shared(inner, Shared::new())
    }

    pub(crate) fn with_shared(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// A handle on this client's session: id, protocol version, restart signal.
    pub fn handle(&self) -> SessionHandle {
        SessionHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service; the session is forgotten (not closed) unless other clones of this
    /// client or the layer still use it.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Ends the session: sends DELETE with `Mcp-Session-Id` and `MCP-Protocol-Version` to
    /// the URI of the `initialize` request (with its other headers, such as
    /// `Authorization`), and forgets the id and the recorded `initialize`, so later requests
    /// go out without a session until the application initializes again.
    ///
    /// Returns `Ok(None)` if there was no session (nothing sent), `Ok(Some(status))` for
    /// 200, 204, 404 (already gone) and 405 (the server does not let clients end sessions;
    /// MCP 2025-11-25, Streamable HTTP, Session Management), [`Error::CloseRejected`] for
    /// any other status and [`Error::Inner`] if the client failed; in every case the session
    /// is forgotten. Waits for a re-initialization in progress; requests in flight that then
    /// get 404 end with [`SessionLost::Closed`].
    pub async fn close<B>(&self) -> Result<Option<StatusCode>, Error<S::Error>>
    where
        S: Service<Request<ClientBody>, Response = Response<B>> + Clone,
    {
        let _flight = self.shared.flight.lock().await;
        let (id, version, recorded) = {
            let mut state = self.shared.lock();
            state.epoch += 1;
            let id = state.session_id.take();
            let version = state.protocol_version.take();
            (id, version, state.recorded.take())
        };
        let (Some(id), Some(recorded)) = (id, recorded) else {
            return Ok(None);
        };
        let mut request = Request::new(ClientBody::empty());
        *request.method_mut() = Method::DELETE;
        *request.uri_mut() = recorded.uri.clone();
        *request.version_mut() = recorded.version;
        let mut headers = recorded.headers_for(&id, version.as_ref());
        headers.remove(header::CONTENT_TYPE);
        *request.headers_mut() = headers;
        let response = send(&mut self.inner.clone(), request).await?;
        let status = response.status();
        tracing::debug!(%status, "MCP session closed with DELETE");
        match status {
            StatusCode::OK
            | StatusCode::NO_CONTENT
            | StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED => Ok(Some(status)),
            status => Err(Error::CloseRejected(status)),
        }
    }
}

impl<S, B> Service<Request<ClientBody>> for SessionClient<S>
where
    S: Service<Request<ClientBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<B>>;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<B, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ClientBody>) -> Self::Future {
        let inner = self.inner.clone();
        let shared = Arc::clone(&self.shared);
        ResponseFuture::new(Box::pin(run(shared, inner, request)))
    }
}

/// One request, start to end.
async fn run<S, B>(
    shared: Arc<Shared>,
    mut inner: S,
    request: Request<ClientBody>,
) -> Result<Response<ResponseBody<B>>, Error<S::Error>>
where
    S: Service<Request<ClientBody>, Response = Response<B>>,
    B: Body<Data = Bytes>,
{
    let (mut parts, body) = request.into_parts();
    if parts.method == Method::POST
        && let Some(requested) = body.bytes().and_then(|b| initialize_request(b))
    {
        return open(shared, inner, parts, body, requested).await;
    }
    if parts.headers.contains_key(MCP_SESSION_ID) {
        let response = send(&mut inner, Request::from_parts(parts, body)).await?;
        return Ok(response.map(ResponseBody::plain));
    }

    let snapshot = shared.current().await;
    let own_version = !parts.headers.contains_key(MCP_PROTOCOL_VERSION);
    snapshot.apply(&mut parts.headers, own_version);
    // What a retry needs; only taken when there is a session to lose.
    let replay = match (&snapshot.session_id, body.bytes()) {
        (Some(_), Some(bytes)) => Some((clone_parts(&parts), bytes.clone())),
        _ => None,
    };
    let response = send(&mut inner, Request::from_parts(parts, body)).await?;
    if response.status() != StatusCode::NOT_FOUND || snapshot.session_id.is_none() {
        return Ok(response.map(ResponseBody::plain));
    }
    discard(response).await;

    // MCP 2025-11-25, Basic, Transports, Streamable HTTP, Session Management: 404 to a
    // request with the id means the session is gone; start a new one.
    tracing::debug!("MCP session not found (404): starting a new session");
    let fresh = match recover(&shared, &mut inner, &snapshot).await {
        Ok(fresh) => fresh,
        Err(error) => {
            if matches!(error, Error::SessionLost(_)) {
                shared.metrics.lost();
            }
            return Err(error);
        }
    };
    let Some((mut parts, bytes)) = replay else {
        shared.metrics.lost();
        return Err(SessionLost::NotReplayable.into());
    };
    if fresh.session_id.is_none() {
        shared.metrics.lost();
        return Err(SessionLost::Closed.into());
    }
    fresh.apply(&mut parts.headers, own_version);
    shared.metrics.retried();
    let response = send(
        &mut inner,
        Request::from_parts(parts, ClientBody::from(bytes)),
    )
    .await?;
    Ok(response.map(ResponseBody::plain))
}

/// The application's `initialize`: send it without a session, record it, and take the id
/// of a 2xx answer.
async fn open<S, B>(
    shared: Arc<Shared>,
    mut inner: S,
    mut parts: http::request::Parts,
    body: ClientBody,
    requested: Option<String>,
) -> Result<Response<ResponseBody<B>>, Error<S::Error>>
where
    S: Service<Request<ClientBody>, Response = Response<B>>,
    B: Body<Data = Bytes>,
{
    // Not at the same time as a re-initialization or a close: the last one would win.
    let _flight = shared.flight.lock().await;
    parts.headers.remove(MCP_SESSION_ID);
    let recorded = Recorded {
        uri: parts.uri.clone(),
        version: parts.version,
        headers: recordable(&parts.headers),
        body: body.bytes().cloned().unwrap_or_default(),
        requested_version: requested.and_then(|v| HeaderValue::from_str(&v).ok()),
    };
    let response = send(&mut inner, Request::from_parts(parts, body)).await?;
    if !response.status().is_success() {
        return Ok(response.map(ResponseBody::plain));
    }
    let sse = is_event_stream(&response);
    let epoch = {
        let mut state = shared.lock();
        state.epoch += 1;
        state.session_id = response.headers().get(MCP_SESSION_ID).cloned();
        state.protocol_version = recorded.requested_version.clone();
        state.recorded = Some(Arc::new(recorded));
        state.last_failure = None;
        state.epoch
    };
    tracing::debug!(
        sessionful = response.headers().contains_key(MCP_SESSION_ID),
        "MCP session opened"
    );
    let shared = Arc::clone(&shared);
    Ok(response.map(|body| ResponseBody::initialize(body, shared, epoch, sse)))
}

/// Single flight: the first request to get 404 in the session of `lost.epoch` starts a new
/// session; requests that got 404 meanwhile wait for it and use its outcome.
async fn recover<S, B>(
    shared: &Shared,
    inner: &mut S,
    lost: &Snapshot,
) -> Result<Snapshot, Error<S::Error>>
where
    S: Service<Request<ClientBody>, Response = Response<B>>,
    B: Body<Data = Bytes>,
{
    let attempts = shared.lock().attempts;
    let _flight = shared.flight.lock().await;
    let recorded = {
        let mut state = shared.lock();
        if state.epoch != lost.epoch {
            // Another request already replaced the session (or it was closed).
            return Ok(state.snapshot());
        }
        if state.attempts != attempts
            && let Some(failure) = &state.last_failure
        {
            // The attempt this request waited for failed; do not hammer the server.
            return Err(failure.clone().into());
        }
        let Some(recorded) = state.recorded.clone() else {
            return Err(SessionLost::Closed.into());
        };
        state.reinitializing = true;
        recorded
    };
    let _reinitializing = Reinitializing(shared);
    let outcome = reinitialize(inner, &recorded).await;
    let mut state = shared.lock();
    state.attempts += 1;
    match outcome {
        Ok((id, version)) => {
            state.epoch += 1;
            state.session_id = Some(id);
            state.protocol_version = version.or_else(|| recorded.requested_version.clone());
            state.last_failure = None;
            let snapshot = state.snapshot();
            drop(state);
            shared.restarted.send_modify(|n| *n += 1);
            shared.metrics.reinitialized();
            tracing::info!("MCP session restarted after 404");
            Ok(snapshot)
        }
        Err(error) => {
            let lost = match &error {
                Error::SessionLost(lost) => lost.clone(),
                _ => SessionLost::ReinitializeFailed,
            };
            tracing::warn!(reason = %lost, "MCP session could not be restarted");
            state.last_failure = Some(lost);
            Err(error)
        }
    }
}

/// Sends the recorded `initialize` and then `notifications/initialized`; the new session id
/// and the negotiated protocol version.
async fn reinitialize<S, B>(
    inner: &mut S,
    recorded: &Recorded,
) -> Result<(HeaderValue, Option<HeaderValue>), Error<S::Error>>
where
    S: Service<Request<ClientBody>, Response = Response<B>>,
    B: Body<Data = Bytes>,
{
    let post = |body: ClientBody| {
        let mut request = Request::new(body);
        *request.method_mut() = Method::POST;
        *request.uri_mut() = recorded.uri.clone();
        *request.version_mut() = recorded.version;
        request
    };
    let mut request = post(ClientBody::from(recorded.body.clone()));
    *request.headers_mut() = recorded.headers.clone();
    let response = send(inner, request).await?;
    let status = response.status();
    let id = response.headers().get(MCP_SESSION_ID).cloned();
    let (true, Some(id)) = (status.is_success(), id) else {
        return Err(SessionLost::ReinitializeRejected(status).into());
    };
    let sse = is_event_stream(&response);
    let version = read_version(response.into_body(), sse)
        .await
        .map_err(|()| SessionLost::ReinitializeFailed)?
        .and_then(|v| HeaderValue::from_str(&v).ok());

    let mut request = post(ClientBody::from(INITIALIZED));
    *request.headers_mut() = recorded.headers_for(&id, version.as_ref());
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let status = send(inner, request).await?.status();
    if !status.is_success() {
        return Err(SessionLost::ReinitializeRejected(status).into());
    }
    Ok((id, version))
}

/// Reads an `initialize` answer up to its JSON-RPC response (at most
/// [`INITIALIZE_RESPONSE_LIMIT`] bytes): `result.protocolVersion`, if any.
async fn read_version<B>(body: B, sse: bool) -> Result<Option<String>, ()>
where
    B: Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut seen = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(drop)?.into_data() else {
            continue;
        };
        if seen.len() + data.len() > INITIALIZE_RESPONSE_LIMIT {
            return Ok(None);
        }
        seen.extend_from_slice(&data);
        if sse && let Scan::Done(version) = scan_response(&seen, true, false) {
            return Ok(version);
        }
    }
    match scan_response(&seen, sse, true) {
        Scan::Done(version) => Ok(version),
        Scan::NeedMore => Ok(None),
    }
}

/// `inner.ready().await?.call(request).await`, errors wrapped.
async fn send<S, B>(
    inner: &mut S,
    request: Request<ClientBody>,
) -> Result<Response<B>, Error<S::Error>>
where
    S: Service<Request<ClientBody>, Response = Response<B>>,
{
    std::future::poll_fn(|cx| inner.poll_ready(cx))
        .await
        .map_err(Error::Inner)?;
    inner.call(request).await.map_err(Error::Inner)
}

/// Most bytes of a 404 body read (and thrown away) so its connection can be reused; a longer
/// or unsized body is dropped unread, which closes the connection.
const DISCARD_LIMIT: u64 = 16 * 1024;

/// Throws away an answer the caller will not see. A short body of known length (the usual
/// JSON-RPC "Session not found") is read to its end, so HTTP/1 can put the connection back
/// in the pool instead of closing it.
async fn discard<B>(response: Response<B>)
where
    B: Body<Data = Bytes>,
{
    let body = response.into_body();
    if body.size_hint().exact().is_some_and(|n| n <= DISCARD_LIMIT) {
        let _ = body.collect().await;
    }
}

/// Whether an answer is an SSE stream.
fn is_event_stream<B>(response: &Response<B>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// A copy of the request head for a retry (extensions are not copied: they are not `Clone`).
fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut request = Request::new(());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request.into_parts().0
}
