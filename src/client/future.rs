//! [`ResponseFuture`], the future of [`SessionClient`](crate::client::SessionClient).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use crate::client::body::ResponseBody;
use crate::client::error::Error;

type Boxed<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, Error<E>>> + Send>>;

/// The response future of [`SessionClient`](crate::client::SessionClient): resolves to the inner
/// client's response (body wrapped in [`ResponseBody`]) or an [`Error`].
///
/// One request may take several calls of the inner service (the request, a re-initialization
/// and a retry), with waits in between, so the future is boxed once per request rather than
/// a hand-written state machine; next to an HTTP round trip the allocation does not show.
/// It is `Send`, so it can be spawned on a multi-threaded runtime.
pub struct ResponseFuture<B, E> {
    inner: Boxed<B, E>,
}

impl<B, E> ResponseFuture<B, E> {
    pub(crate) fn new(inner: Boxed<B, E>) -> Self {
        Self { inner }
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<ResponseBody<B>>, Error<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
