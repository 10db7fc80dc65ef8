//! [`SessionService`]: classifies each request (see [`classify`](crate::http::classify)) and sends
//! it on its way: the inner service, the layer's own answer, the slow paths (open, restore,
//! a DELETE that reaches the store; boxed), or the hot path, a session live on this node.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::cluster::Entry;
use crate::error::BoxError;
use crate::handle::sessions::Sessions;
use crate::http::body::{Req, RequestBody, ResponseBody, SessionGuard};
use crate::http::classify::{Route, classify};
use crate::http::delete::{close_everywhere, close_here};
use crate::http::endpoint::Endpoint;
use crate::http::factory::SessionFactory;
use crate::http::future::{Opened, ResponseFuture};
use crate::http::open::Opening;
use crate::http::rejection::Rejection;
use crate::http::restore::Restoring;
use crate::http::route::route;
use crate::http::trace::Trace;
use crate::id::SessionId;

/// Middleware that gives the inner service sessions; built by
/// [`SessionLayer`](crate::SessionLayer).
///
/// `poll_ready` is always ready: the inner or per-session service is cloned and driven to
/// readiness inside the [`ResponseFuture`]. Every decision of the layer is a response; the
/// only errors are the services' own (the per-session service's converted with `Into`).
pub struct SessionService<S, F> {
    inner: S,
    factory: F,
    endpoint: Arc<Endpoint>,
}

impl<S, F> SessionService<S, F> {
    pub(crate) fn new(inner: S, factory: F, endpoint: Arc<Endpoint>) -> Self {
        Self {
            inner,
            factory,
            endpoint,
        }
    }

    /// A handle to the session table this service routes to.
    pub fn sessions(&self) -> Sessions {
        self.endpoint.sessions()
    }

    /// The wrapped inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped inner service; the session table lives on in other handles.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, F: Clone> Clone for SessionService<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            factory: self.factory.clone(),
            endpoint: Arc::clone(&self.endpoint),
        }
    }
}

impl<S: fmt::Debug, F> fmt::Debug for SessionService<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("sessions", &self.sessions())
            .finish_non_exhaustive()
    }
}

impl<S, F, B, IB, SB> Service<Request<B>> for SessionService<S, F>
where
    S: Service<Req<B>, Response = Response<IB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    F: SessionFactory<S>,
    F::Service: Service<Req<B>, Response = Response<SB>> + Clone + Send + Sync + 'static,
    <F::Service as Service<Req<B>>>::Error: Into<S::Error>,
    <F::Service as Service<Req<B>>>::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    IB: Send + 'static,
    SB: Body + Send + 'static,
{
    type Response = Response<ResponseBody<SB, IB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, F::Service, B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let trace = Trace::request(req.headers());
        // The routing below returns early from this closure; the span goes into whatever
        // future it returns (without the `spans` feature the span is zero-sized: nothing).
        // Entered while routing too: a close decided right here (DELETE) logs inside it.
        let future = {
            let _entered = trace.enter();
            (|| {
                let endpoint = &self.endpoint;
                endpoint.ensure_started();
                let config = &endpoint.config;
                // Taken apart once: every check reads the parts, and the request is put back together
                // only for the service that gets it.
                let (parts, body) = req.into_parts();
                let id = match classify(config, &parts) {
                    Route::Sessionless => {
                        config.metrics.sessionless();
                        let req = Request::from_parts(parts, RequestBody::new(body));
                        return ResponseFuture::inner(self.inner.clone(), req);
                    }
                    Route::Reject(rejection) => {
                        return ResponseFuture::ready(config.reject(rejection));
                    }
                    Route::Open => {
                        let principal = config.principal_of(&parts);
                        // Opening a session may read the body and awaits the factory: boxed, off the
                        // hot path.
                        let opening = Opening {
                            inner: self.inner.clone(),
                            factory: self.factory.clone(),
                            endpoint: Arc::clone(endpoint),
                        };
                        return ResponseFuture::open(Box::pin(opening.run(parts, body, principal)));
                    }
                    Route::Close(id) => {
                        trace.session(id);
                        let principal = config.principal_of(&parts);
                        if !endpoint.clustered {
                            return ResponseFuture::ready(close_here(
                                endpoint,
                                id,
                                principal.as_ref(),
                            ));
                        }
                        let Ok(id) = SessionId::parse(id) else {
                            return ResponseFuture::ready(
                                config.reject(Rejection::SessionNotFound),
                            );
                        };
                        let closing = close_everywhere(Arc::clone(endpoint), id, principal);
                        return ResponseFuture::open(Box::pin(async move {
                            Ok(Opened::Answered(closing.await))
                        }));
                    }
                    Route::Session(id) => id,
                };
                trace.session(id);
                let principal = config.principal_of(&parts);
                // Does the request belong to the session? (Only asked when principals are bound.)
                let owns = |entry: &Entry| config.owns(principal.as_ref(), entry.info.principal());
                let Some(entry) = endpoint.table.acquire(id, owns) else {
                    // No cluster, or live here but another principal's: 404 without asking the store.
                    if !endpoint.clustered || endpoint.table.contains_key(id) {
                        return ResponseFuture::ready(config.reject(Rejection::SessionNotFound));
                    }
                    // Not live here: restore it from the store (boxed, off the hot path).
                    let Ok(id) = SessionId::parse(id) else {
                        return ResponseFuture::ready(config.reject(Rejection::SessionNotFound));
                    };
                    let restoring = Restoring {
                        inner: self.inner.clone(),
                        factory: self.factory.clone(),
                        endpoint: Arc::clone(endpoint),
                    };
                    return ResponseFuture::open(Box::pin(
                        restoring.run(parts, body, principal, id),
                    ));
                };
                // From here on the request counts as in flight; dropping the guard undoes that.
                let guard = SessionGuard::new(entry, endpoint.table.epoch());
                let mut parts = parts;
                match route(config, guard.entry(), &mut parts) {
                    Ok(service) => {
                        let request = Request::from_parts(parts, RequestBody::new(body));
                        ResponseFuture::session(service, request, guard)
                    }
                    Err(rejection) => ResponseFuture::ready(config.reject(rejection)),
                }
            })()
        };
        future.traced(trace)
    }
}
