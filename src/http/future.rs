//! [`ResponseFuture`] of [`SessionService`](crate::SessionService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::http::body::{Req, ResponseBody, SessionGuard};
use crate::http::route::Routed;
use crate::http::trace::{Decision, Trace};

/// What the slow paths (open, restore, a DELETE that reaches the store) produced: the
/// layer's own answer, the per-session service's (with the session's guard if the session
/// was kept), or a request routed to a session, for the future to drive as the hot path does.
pub(crate) enum Opened<T: Service<Req<B>>, B> {
    Answered(Response<Bytes>),
    Served {
        response: T::Response,
        guard: Option<SessionGuard>,
    },
    Routed(Routed<T, B>),
}

/// A slow path, boxed: it reads a body, awaits the factory or the store, off the hot path.
pub(crate) type OpenFuture<T, B, E> = Pin<Box<dyn Future<Output = Result<Opened<T, B>, E>> + Send>>;

pin_project! {
    /// Response future of [`SessionService`](crate::SessionService).
    ///
    /// `S` is the inner service (sessionless requests), `T` the per-session service, `B` the
    /// request body. The future drives the chosen service to readiness and calls it; errors
    /// are the services' own (the per-session service's converted into `S::Error`), and
    /// everything the layer decides is a response, never an `Err`.
    pub struct ResponseFuture<S, T, B>
    where
        S: Service<Req<B>>,
        T: Service<Req<B>>,
    {
        #[pin]
        kind: Kind<S, T, B>,
        // The request's span (zero-sized without the `spans` feature).
        trace: Trace,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, T, B>
    where
        S: Service<Req<B>>,
        T: Service<Req<B>>,
    {
        Layer { response: Option<Response<Bytes>> },
        InnerReady { service: S, request: Option<Req<B>> },
        Inner { #[pin] future: S::Future },
        SessionReady { service: T, request: Option<Req<B>>, guard: Option<SessionGuard> },
        Session { #[pin] future: T::Future, guard: Option<SessionGuard> },
        Open { future: OpenFuture<T, B, S::Error> },
    }
}

impl<S, T, B> ResponseFuture<S, T, B>
where
    S: Service<Req<B>>,
    T: Service<Req<B>>,
{
    pub(crate) fn ready(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Layer {
                response: Some(response),
            },
            trace: Trace::none(),
        }
    }

    pub(crate) fn inner(service: S, request: Req<B>) -> Self {
        Self {
            kind: Kind::InnerReady {
                service,
                request: Some(request),
            },
            trace: Trace::none(),
        }
    }

    /// The hot path: a request for a live session, ready for its service.
    pub(crate) fn session(service: T, request: Req<B>, guard: SessionGuard) -> Self {
        Self {
            kind: Kind::SessionReady {
                service,
                request: Some(request),
                guard: Some(guard),
            },
            trace: Trace::none(),
        }
    }

    /// The same future, in the request's span.
    #[inline(always)]
    pub(crate) fn traced(mut self, trace: Trace) -> Self {
        self.trace = trace;
        self
    }

    pub(crate) fn open(future: OpenFuture<T, B, S::Error>) -> Self {
        Self {
            kind: Kind::Open { future },
            trace: Trace::none(),
        }
    }
}

fn session_ready<S, T, B>(routed: Routed<T, B>) -> Kind<S, T, B>
where
    S: Service<Req<B>>,
    T: Service<Req<B>>,
{
    Kind::SessionReady {
        service: routed.service,
        request: Some(routed.request),
        guard: Some(routed.guard),
    }
}

impl<S, T, B, IB, SB> Future for ResponseFuture<S, T, B>
where
    S: Service<Req<B>, Response = Response<IB>>,
    T: Service<Req<B>, Response = Response<SB>>,
    T::Error: Into<S::Error>,
{
    type Output = Result<Response<ResponseBody<SB, IB>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let trace = &*this.trace;
        let _entered = trace.enter();
        let mut kind = this.kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Layer { response } => {
                    let response = response.take().expect("polled after completion");
                    trace.decided(layer_decision(response.status()), response.status());
                    return Poll::Ready(Ok(response.map(ResponseBody::layer)));
                }
                KindProj::InnerReady { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    let request = request.take().expect("polled after completion");
                    let future = service.call(request);
                    kind.set(Kind::Inner { future });
                }
                KindProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    trace.decided(Decision::Sessionless, response.status());
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                KindProj::SessionReady {
                    service,
                    request,
                    guard,
                } => {
                    let Poll::Ready(readiness) = service.poll_ready(cx) else {
                        if let Some(guard) = guard.as_mut() {
                            guard.waited();
                        }
                        return Poll::Pending;
                    };
                    if let Err(error) = readiness {
                        return Poll::Ready(Err(error.into()));
                    }
                    let request = request.take().expect("polled after completion");
                    let guard = guard.take();
                    let future = service.call(request);
                    kind.set(Kind::Session { future, guard });
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
                    if let Ok(response) = &result {
                        trace.decided(Decision::Routed, response.status());
                    }
                    return Poll::Ready(
                        result
                            .map(|r| r.map(|body| ResponseBody::session(body, guard)))
                            .map_err(Into::into),
                    );
                }
                KindProj::Open { future } => match ready!(future.as_mut().poll(cx))? {
                    Opened::Answered(response) => {
                        trace.decided(layer_decision(response.status()), response.status());
                        return Poll::Ready(Ok(response.map(ResponseBody::layer)));
                    }
                    Opened::Served { response, guard } => {
                        let decision = if guard.is_some() {
                            Decision::Opened
                        } else {
                            Decision::Declined
                        };
                        trace.decided(decision, response.status());
                        return Poll::Ready(Ok(
                            response.map(|body| ResponseBody::session(body, guard))
                        ));
                    }
                    Opened::Routed(routed) => {
                        trace.restored();
                        kind.set(session_ready(routed));
                    }
                },
            }
        }
    }
}

/// What an answer of the layer's own making says it decided: a close (204) or a rejection.
#[inline(always)]
fn layer_decision(status: http::StatusCode) -> Decision {
    if status == http::StatusCode::NO_CONTENT {
        Decision::Closed
    } else {
        Decision::Rejected
    }
}

impl<S, T, B> fmt::Debug for ResponseFuture<S, T, B>
where
    S: Service<Req<B>>,
    T: Service<Req<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Layer { .. } => "Layer",
            Kind::InnerReady { .. } | Kind::Inner { .. } => "Inner",
            Kind::SessionReady { .. } | Kind::Session { .. } => "Session",
            Kind::Open { .. } => "Open",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
