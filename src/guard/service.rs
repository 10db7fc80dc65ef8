//! [`OriginGuard`], the middleware, and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::guard::body::ResponseBody;
use crate::guard::layer::OriginGuardLayer;

/// Middleware that refuses requests for foreign hosts and origins; built by
/// [`OriginGuardLayer`]. Readiness is the inner service's.
#[derive(Clone)]
pub struct OriginGuard<S> {
    inner: S,
    layer: OriginGuardLayer,
}

impl<S> OriginGuard<S> {
    pub(crate) fn new(inner: S, layer: OriginGuardLayer) -> Self {
        Self { inner, layer }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

// Here rather than beside the layer, so that the layer's file does not import the service's
// (which holds the layer): no import circle.
impl<S> Layer<S> for OriginGuardLayer {
    type Service = OriginGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginGuard::new(inner, self.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for OriginGuard<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginGuard")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, B, RB> Service<Request<B>> for OriginGuard<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.layer.policy.check(req.headers(), req.uri()) {
            Ok(()) => ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                },
            },
            Err(refused) => {
                tracing::warn!(
                    %refused,
                    detail = ?refused,
                    method = %req.method(),
                    "refused a request for a foreign host or origin (DNS rebinding protection)"
                );
                let response = match &self.layer.rejection {
                    Some(responder) => responder(&refused),
                    None => refused.to_response(),
                };
                ResponseFuture {
                    kind: Kind::Refused {
                        response: Some(response),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`OriginGuard`]: the inner service's, or the refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<Bytes>> },
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<ResponseBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Refused { response } => {
                let response = response.take().expect("polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::refused)))
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Refused { .. } => "Refused",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}
