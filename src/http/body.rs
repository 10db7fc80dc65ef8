//! Request and response bodies of [`SessionService`](crate::SessionService).
//!
//! - [`RequestBody`] is what the inner and per-session services receive: either the bytes the
//!   layer already read to decide whether a request opens a session (only requests without a
//!   session id are read, and only up to the peek limit), or the original body, untouched.
//! - [`ResponseBody`] is what the layer returns: the per-session service's body `B`, the inner
//!   service's body `I` (the two may differ: an axum `Router` inner beside an rmcp per-session
//!   service, say), or a small body built by the layer. A response of a session carries the
//!   session's in-flight guard: while the body is alive (an open SSE stream, say) the session
//!   is busy and does not expire, and when the session is closed the body ends at its next
//!   poll, woken at once if it is waiting. `Default` is an empty body, as tower-http's
//!   `Timeout` needs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;
use tokio::time::Instant;

use crate::cluster::Entry;
use crate::error::BoxError;

/// A request as the inner and per-session services receive it.
pub(crate) type Req<B> = http::Request<RequestBody<B>>;

pin_project! {
    /// The request body handed to the inner and per-session services.
    ///
    /// Produces the same bytes the client sent: for requests the layer had to read (a request
    /// without a session id under an open policy that looks at the body) it replays them from
    /// memory; otherwise it streams the original body `B` through.
    pub struct RequestBody<B> {
        #[pin]
        kind: RequestKind<B>,
    }
}

pin_project! {
    #[project = RequestKindProj]
    enum RequestKind<B> {
        Peeked { body: Full<Bytes> },
        Stream { #[pin] body: B },
    }
}

impl<B> RequestBody<B> {
    /// Wraps an unread body; it streams through unchanged.
    pub fn new(body: B) -> Self {
        Self {
            kind: RequestKind::Stream { body },
        }
    }

    /// A body replaying bytes already read from the client.
    pub(crate) fn peeked(data: Bytes) -> Self {
        Self {
            kind: RequestKind::Peeked {
                body: Full::new(data),
            },
        }
    }
}

/// Polls a body held in memory, whose error type is `Infallible`, as a body of error `E`.
fn poll_full<E>(
    body: &mut Full<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, E>>> {
    Pin::new(body)
        .poll_frame(cx)
        .map(|frame| frame.map(|result| result.map_err(|never| match never {})))
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            RequestKindProj::Peeked { body } => poll_full(body, cx),
            RequestKindProj::Stream { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RequestKind::Peeked { body } => body.is_end_stream(),
            RequestKind::Stream { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RequestKind::Peeked { body } => body.size_hint(),
            RequestKind::Stream { body } => body.size_hint(),
        }
    }
}

impl<B> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RequestKind::Peeked { body } => f
                .debug_struct("RequestBody::Peeked")
                .field("len", &body.size_hint().exact())
                .finish(),
            RequestKind::Stream { .. } => f.debug_struct("RequestBody::Stream").finish(),
        }
    }
}

/// Counts one request in flight on a session for as long as it lives, and tells a response
/// body when the session has been closed.
pub(crate) struct SessionGuard {
    entry: Arc<Entry>,
    epoch: Instant,
    /// Whether the response (future or body) ever had to wait: then the request may have
    /// lasted long, and its end is stamped with a fresh clock read.
    waited: bool,
    /// Whether the response is a stream that waited for data (counted in the metrics' open
    /// streams until the guard goes).
    streaming: bool,
    closed: Option<Pin<Box<OwnedNotified>>>,
}

impl SessionGuard {
    /// Takes over one in-flight count already added to `entry`.
    pub(crate) fn new(entry: Arc<Entry>, epoch: Instant) -> Self {
        Self {
            entry,
            epoch,
            waited: false,
            streaming: false,
            closed: None,
        }
    }

    pub(crate) fn entry(&self) -> &Arc<Entry> {
        &self.entry
    }

    /// Notes that the response returned `Pending`.
    pub(crate) fn waited(&mut self) {
        if !self.waited {
            self.entry.backend.metrics.in_flight(true);
        }
        self.waited = true;
    }

    /// Notes that the response is a stream that waits for data.
    fn streaming(&mut self) {
        if !self.streaming {
            self.entry.backend.metrics.stream(true);
        }
        self.streaming = true;
    }

    /// Ready once the session is closed; registers `cx` to be woken when it is.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.entry.is_closed() {
            return Poll::Ready(());
        }
        let entry = &self.entry;
        let waiting = &mut self.closed;
        // `notify_waiters` reaches every `Notified` created before it, polled or not: the
        // handshake makes sure the close either finds this future or is seen here.
        let closed = entry.register_then_check(|| {
            waiting.get_or_insert_with(|| Box::pin(entry.close_notify().notified_owned()));
        });
        match waiting.as_mut() {
            Some(notified) if !closed => notified.as_mut().poll(cx),
            _ => Poll::Ready(()),
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let now = self.waited.then(|| crate::time::elapsed_ms(self.epoch));
        self.entry.end(now);
        let metrics = &self.entry.backend.metrics;
        if self.waited {
            metrics.in_flight(false);
        }
        if self.streaming {
            metrics.stream(false);
        }
    }
}

pin_project! {
    /// The response body of [`SessionService`](crate::SessionService).
    ///
    /// One of: the per-session service's body `B` (ended early, with no error, if its session
    /// is closed while it streams a body of unknown length), the inner service's body `I`, or
    /// a body built by the layer (a small JSON-RPC error, the body of the
    /// [rejection hook](crate::SessionLayerBuilder::rejection), or empty). Errors of either service
    /// body are boxed. `Default` is an empty body.
    pub struct ResponseBody<B, I = B> {
        #[pin]
        kind: ResponseKind<B, I>,
    }
}

pin_project! {
    #[project = ResponseKindProj]
    enum ResponseKind<B, I> {
        Session { #[pin] body: B, guard: Option<SessionGuard>, ended: bool },
        Inner { #[pin] body: I },
        Layer { body: Full<Bytes> },
    }
}

impl<B, I> ResponseBody<B, I> {
    /// A per-session service's body, guarded by its session if `guard` is given.
    pub(crate) fn session(body: B, guard: Option<SessionGuard>) -> Self {
        Self {
            kind: ResponseKind::Session {
                body,
                guard,
                ended: false,
            },
        }
    }

    /// The inner service's body, passed through unchanged.
    pub(crate) fn inner(body: I) -> Self {
        Self {
            kind: ResponseKind::Inner { body },
        }
    }

    /// A body built by the layer.
    pub(crate) fn layer(data: Bytes) -> Self {
        Self {
            kind: ResponseKind::Layer {
                body: Full::new(data),
            },
        }
    }
}

impl<B, I> Default for ResponseBody<B, I> {
    /// An empty body.
    fn default() -> Self {
        Self::layer(Bytes::new())
    }
}

fn boxed<T, E: Into<BoxError>>(
    poll: Poll<Option<Result<Frame<T>, E>>>,
) -> Poll<Option<Result<Frame<T>, BoxError>>> {
    poll.map(|frame| frame.map(|result| result.map_err(Into::into)))
}

impl<B, I> Body for ResponseBody<B, I>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    I: Body<Data = Bytes>,
    I::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            ResponseKindProj::Layer { body } => poll_full(body, cx),
            ResponseKindProj::Inner { body } => boxed(body.poll_frame(cx)),
            ResponseKindProj::Session { body, guard, ended } => {
                if *ended {
                    return Poll::Ready(None);
                }
                // A closed session ends a stream at once, even one that always has data ready;
                // but a body of known length (a complete answer) is delivered whole, since
                // cutting it short would break its Content-Length.
                let cuttable = body.size_hint().exact().is_none();
                if cuttable && guard.as_ref().is_some_and(|g| g.entry().is_closed()) {
                    *ended = true;
                    *guard = None;
                    return Poll::Ready(None);
                }
                match body.poll_frame(cx) {
                    Poll::Ready(frame) => boxed(Poll::Ready(frame)),
                    Poll::Pending => {
                        if let Some(g) = guard.as_mut() {
                            g.waited();
                        }
                        if let Some(g) = guard.as_mut().filter(|_| cuttable) {
                            g.streaming();
                            ready!(g.poll_closed(cx));
                            *ended = true;
                            *guard = None;
                            return Poll::Ready(None);
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ResponseKind::Session { body, ended, .. } => *ended || body.is_end_stream(),
            ResponseKind::Inner { body } => body.is_end_stream(),
            ResponseKind::Layer { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ResponseKind::Session { body, ended, .. } if !*ended => body.size_hint(),
            ResponseKind::Session { .. } => SizeHint::with_exact(0),
            ResponseKind::Inner { body } => body.size_hint(),
            ResponseKind::Layer { body } => body.size_hint(),
        }
    }
}

impl<B, I> fmt::Debug for ResponseBody<B, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ResponseKind::Session { guard, ended, .. } => f
                .debug_struct("ResponseBody::Session")
                .field("session", &guard.as_ref().map(|g| g.entry().info.id()))
                .field("ended", ended)
                .finish(),
            ResponseKind::Inner { .. } => f.debug_struct("ResponseBody::Inner").finish(),
            ResponseKind::Layer { body } => f
                .debug_struct("ResponseBody::Layer")
                .field("len", &body.size_hint().exact())
                .finish(),
        }
    }
}
