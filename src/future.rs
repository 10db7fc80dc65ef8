//! [`ResponseFuture`] of [`SessionService`](crate::SessionService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::{ResponseBody, SessionGuard};

pub(crate) type BoxResponseFuture<ResBody, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<ResBody>>, E>> + Send>>;

pin_project! {
    /// Response future of [`SessionService`](crate::SessionService).
    ///
    /// `P` is the future of a sessionless request (the inner service), `R` the future of a
    /// request routed to a live session (its per-session service). Errors are the services'
    /// own; everything the layer decides is a response, never an `Err`.
    pub struct ResponseFuture<P, R, ResBody, E> {
        #[pin]
        kind: Kind<P, R, ResBody, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<P, R, ResBody, E> {
        Ready { response: Option<Response<ResponseBody<ResBody>>> },
        Sessionless { #[pin] future: P },
        Session { #[pin] future: R, guard: Option<SessionGuard> },
        Open { future: BoxResponseFuture<ResBody, E> },
    }
}

impl<P, R, ResBody, E> ResponseFuture<P, R, ResBody, E> {
    pub(crate) fn ready(response: Response<ResponseBody<ResBody>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn sessionless(future: P) -> Self {
        Self {
            kind: Kind::Sessionless { future },
        }
    }

    pub(crate) fn session(future: R, guard: SessionGuard) -> Self {
        Self {
            kind: Kind::Session {
                future,
                guard: Some(guard),
            },
        }
    }

    pub(crate) fn open(future: BoxResponseFuture<ResBody, E>) -> Self {
        Self {
            kind: Kind::Open { future },
        }
    }
}

impl<P, R, ResBody, E> Future for ResponseFuture<P, R, ResBody, E>
where
    P: Future<Output = Result<Response<ResBody>, E>>,
    R: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            KindProj::Sessionless { future } => {
                Poll::Ready(ready!(future.poll(cx)).map(|r| r.map(ResponseBody::inner)))
            }
            KindProj::Session { future, guard } => {
                let Poll::Ready(result) = future.poll(cx) else {
                    if let Some(guard) = guard.as_mut() {
                        guard.waited();
                    }
                    return Poll::Pending;
                };
                // The guard moves into the body: the session stays busy while it streams.
                let guard = guard.take();
                Poll::Ready(result.map(|r| r.map(|body| ResponseBody::guarded(body, guard))))
            }
            KindProj::Open { future } => future.as_mut().poll(cx),
        }
    }
}

impl<P, R, ResBody, E> fmt::Debug for ResponseFuture<P, R, ResBody, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Ready { .. } => "Ready",
            Kind::Sessionless { .. } => "Sessionless",
            Kind::Session { .. } => "Session",
            Kind::Open { .. } => "Open",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
