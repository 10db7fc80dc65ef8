//! Request and response bodies of [`SessionClient`](crate::client::SessionClient).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;

use crate::client::message::{Scan, scan_response};
use crate::client::state::Shared;

/// The error type of a streaming [`ClientBody`].
use crate::error::BoxError;

/// How many bytes of an `initialize` answer the layer reads to find the negotiated protocol
/// version. An `InitializeResult` is a few hundred bytes; past this the layer stops looking
/// and keeps the version the request asked for.
pub(crate) const INITIALIZE_RESPONSE_LIMIT: usize = 1 << 20;

/// The request body [`SessionClient`](crate::client::SessionClient) takes: buffered bytes, which the
/// layer can send again in a new session, or a stream, which it cannot.
///
/// Every JSON-RPC message an MCP client POSTs is small and complete before it is sent, so
/// build bodies from bytes (`From<Bytes>`, `From<String>`, `From<Vec<u8>>`,
/// `From<&'static str>`, [`ClientBody::empty`] for GET and DELETE). Use
/// [`ClientBody::streaming`] only for a body that cannot be buffered; if its session is lost
/// (404) the layer answers [`SessionLost::NotReplayable`](crate::client::SessionLost::NotReplayable)
/// instead of sending it again.
pub struct ClientBody {
    kind: Kind,
}

enum Kind {
    /// `None` once polled to the end (the bytes stay in the layer's copy for a retry).
    Full(Option<Bytes>),
    Streaming(UnsyncBoxBody<Bytes, BoxError>),
}

impl ClientBody {
    /// An empty body (GET, DELETE); replayable.
    pub fn empty() -> Self {
        Self::from(Bytes::new())
    }

    /// A streaming body: sent as it comes, never buffered by the layer, so not replayable.
    pub fn streaming<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            kind: Kind::Streaming(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// Whether the layer can send this body again: true for bytes, false for a stream.
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Full(_))
    }

    /// The bytes of a buffered body (`None` for a stream).
    pub(crate) fn bytes(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref(),
            Kind::Streaming(_) => None,
        }
    }
}

impl Default for ClientBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Bytes> for ClientBody {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes)),
        }
    }
}

impl From<String> for ClientBody {
    fn from(text: String) -> Self {
        Self::from(Bytes::from(text))
    }
}

impl From<Vec<u8>> for ClientBody {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from(Bytes::from(bytes))
    }
}

impl From<&'static str> for ClientBody {
    fn from(text: &'static str) -> Self {
        Self::from(Bytes::from_static(text.as_bytes()))
    }
}

impl fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => f
                .debug_struct("ClientBody::Full")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Streaming(_) => f.write_str("ClientBody::Streaming"),
        }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Streaming(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Kind::Streaming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Streaming(body) => body.size_hint(),
        }
    }
}

pin_project! {
    /// The response body of [`SessionClient`](crate::client::SessionClient): the inner client's body,
    /// unchanged. For the answer to an `initialize` it also watches the bytes go by (up to
    /// 1 MiB) for the `InitializeResult`'s `protocolVersion`, JSON or SSE, and records it for
    /// the session's later requests; nothing is buffered or delayed.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        sniffer: Option<Sniffer>,
    }
}

/// Reads the protocol version out of an `initialize` answer as it streams by.
struct Sniffer {
    shared: Arc<Shared>,
    epoch: u64,
    sse: bool,
    seen: Vec<u8>,
}

impl Sniffer {
    /// Scans what was seen; `true` when done (found, or not to be found).
    fn scan(&mut self, complete: bool) -> bool {
        match scan_response(&self.seen, self.sse, complete) {
            Scan::Done(version) => {
                self.shared.negotiated(self.epoch, version);
                true
            }
            Scan::NeedMore => false,
        }
    }
}

impl<B> ResponseBody<B> {
    /// The inner body, passed through.
    pub(crate) fn plain(inner: B) -> Self {
        Self {
            inner,
            sniffer: None,
        }
    }

    /// The answer to the `initialize` that opened the session of `epoch`.
    pub(crate) fn initialize(inner: B, shared: Arc<Shared>, epoch: u64, sse: bool) -> Self {
        Self {
            inner,
            sniffer: Some(Sniffer {
                shared,
                epoch,
                sse,
                seen: Vec::new(),
            }),
        }
    }

    /// The inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("reading_initialize", &self.sniffer.is_some())
            .finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(sniffer) = this.sniffer {
            let done = match &frame {
                Some(Ok(frame)) => match frame.data_ref() {
                    Some(data) if sniffer.seen.len() + data.len() > INITIALIZE_RESPONSE_LIMIT => {
                        true
                    }
                    Some(data) => {
                        sniffer.seen.extend_from_slice(data);
                        // A consumer may stop at `is_end_stream` without polling to `None`.
                        let ended = this.inner.is_end_stream();
                        (sniffer.sse || ended) && sniffer.scan(ended)
                    }
                    None => false,
                },
                None => sniffer.scan(true),
                Some(Err(_)) => true,
            };
            if done {
                *this.sniffer = None;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
