//! [`SessionService`]: classifies each request and routes it.
//!
//! The order of the checks, for each request:
//!
//! 1. MCP profile only: a version at or after 2026-07-28 is sessionless and goes to the inner
//!    service, and so does a single `MCP-Protocol-Version` that is not a date on a request
//!    without a session id (the server knows its versions and answers them); a repeated
//!    header, or a malformed one with a session id, gets 400.
//! 2. The [`sessionless`](crate::SessionLayer::sessionless) predicate, if any.
//! 3. MCP profile only: methods other than GET, POST and DELETE get 405.
//! 4. The session header: repeated or malformed gets 400; absent means the request may open a
//!    session (see [`open`](crate::open)), else 400.
//! 5. A request the [`ClosePolicy`](crate::ClosePolicy) claims closes the session (204), or
//!    gets 405 if the policy refuses DELETE.
//! 6. Anything else is routed to the session's service, or gets 404.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use crate::body::{BoxError, RequestBody, ResponseBody, SessionGuard};
use crate::config::Config;
use crate::factory::SessionFactory;
use crate::future::ResponseFuture;
use crate::hooks::CloseReason;
use crate::id;
use crate::mcp;
use crate::open::Opening;
use crate::policy::CloseKind;
use crate::registry::{DynEntry, Registry};
use crate::rejection::{InvalidSessionHeader, Rejection};
use crate::restore::Restoring;
use crate::session::Session;
use crate::sessions::Sessions;

/// `Allow` of the MCP endpoint.
const ALLOW_ALL: &str = "GET, POST, DELETE";
/// `Allow` of the MCP endpoint when DELETE does not close sessions.
const ALLOW_NO_DELETE: &str = "GET, POST";

/// Middleware that gives the inner service sessions; built by
/// [`SessionLayer`](crate::SessionLayer).
///
/// `poll_ready` is always ready: the inner or per-session service is cloned and driven to
/// readiness inside the [`ResponseFuture`]. Every decision of the layer is a response; the
/// only errors are the services' own (the per-session service's converted with `Into`).
pub struct SessionService<S, F> {
    inner: S,
    factory: F,
    registry: Arc<Registry>,
}

impl<S, F> SessionService<S, F> {
    pub(crate) fn new(inner: S, factory: F, registry: Arc<Registry>) -> Self {
        Self {
            inner,
            factory,
            registry,
        }
    }

    /// A handle to the session table this service routes to.
    pub fn sessions(&self) -> Sessions {
        Sessions {
            registry: Arc::clone(&self.registry),
        }
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
            registry: Arc::clone(&self.registry),
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

pub(crate) type Req<B> = Request<RequestBody<B>>;

/// The response of the layer's own making, before it is typed as a [`ResponseBody`].
pub(crate) fn reject(config: &Config, rejection: Rejection) -> Response<Bytes> {
    tracing::debug!(%rejection, "request rejected");
    match &config.rejection {
        Some(responder) => responder(&rejection),
        None => rejection.to_response(),
    }
}

/// The single value of the session header: `Ok(None)` if absent.
fn session_header<'a>(
    config: &Config,
    headers: &'a HeaderMap,
) -> Result<Option<&'a str>, Rejection> {
    let mut values = headers.get_all(&config.header).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidSessionId(InvalidSessionHeader::Repeated));
    }
    let bytes = value.as_bytes();
    id::validate(bytes)
        .map_err(|e| Rejection::InvalidSessionId(InvalidSessionHeader::Invalid(e)))?;
    // `validate` allows visible ASCII only, which is valid UTF-8: this never fails, and if it
    // did, the byte it names is the one at fault.
    std::str::from_utf8(bytes).map(Some).map_err(|e| {
        let byte = bytes[e.valid_up_to()];
        Rejection::InvalidSessionId(InvalidSessionHeader::Invalid(
            id::InvalidSessionId::InvalidByte(byte),
        ))
    })
}

/// Whether the request skips sessions: the MCP protocol-version rule, then the
/// [`sessionless`](crate::SessionLayer::sessionless) predicate.
fn sessionless(config: &Config, parts: &Parts) -> Result<bool, Rejection> {
    if config.mcp {
        match mcp::is_sessionless(&parts.headers) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            // A version that is not a date, on a request that names no session: not a
            // session's business. The server behind the layer knows which versions it
            // speaks and answers with its own error (MCP 2026-07-28: -32022 with the
            // request's id and the supported versions), which the layer cannot.
            Err(Rejection::InvalidProtocolVersion)
                if mcp::version_is_single(&parts.headers)
                    && !parts.headers.contains_key(&config.header) =>
            {
                return Ok(true);
            }
            Err(rejection) => return Err(rejection),
        }
    }
    Ok(config
        .sessionless
        .as_ref()
        .is_some_and(|predicate| predicate(parts)))
}

/// Whether the close policy claims a request with a session id: `Some(Ok(()))` closes,
/// `Some(Err(_))` refuses with 405, `None` routes it.
fn claimed(config: &Config, parts: &Parts) -> Option<Result<(), Rejection>> {
    let delete = parts.method == Method::DELETE;
    match &config.close.0 {
        CloseKind::Never => None,
        CloseKind::Delete => delete.then_some(Ok(())),
        CloseKind::RefuseDelete => {
            delete.then_some(Err(Rejection::MethodNotAllowed(ALLOW_NO_DELETE)))
        }
        CloseKind::When(predicate) => predicate(parts).then_some(Ok(())),
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
        crate::sweeper::ensure_started(&self.registry);
        let config = &self.registry.config;
        // Taken apart once: every check below reads the parts, and the request is put back
        // together only for the service that gets it.
        let (mut parts, body) = req.into_parts();

        match sessionless(config, &parts) {
            Ok(true) => {
                let req = Request::from_parts(parts, RequestBody::new(body));
                return ResponseFuture::inner(self.inner.clone(), req);
            }
            Ok(false) => {}
            Err(rejection) => return ResponseFuture::ready(reject(config, rejection)),
        }

        let method = &parts.method;
        if config.mcp && method != Method::GET && method != Method::POST && method != Method::DELETE
        {
            let allow = if config.close.allows_delete() {
                ALLOW_ALL
            } else {
                ALLOW_NO_DELETE
            };
            return ResponseFuture::ready(reject(config, Rejection::MethodNotAllowed(allow)));
        }

        let principal = config
            .principal
            .as_ref()
            .and_then(|extract| extract(&parts));
        // Does the request belong to the session? (Only asked when principals are bound.)
        let owns = |entry: &DynEntry| {
            config.principal.is_none() || entry.info.principal() == principal.as_ref()
        };
        let claim = claimed(config, &parts);
        let id = match session_header(config, &parts.headers) {
            Err(rejection) => return ResponseFuture::ready(reject(config, rejection)),
            Ok(None) => {
                // Opening a session may read the body and awaits the factory: boxed, off the
                // hot path.
                let opening = Opening {
                    inner: self.inner.clone(),
                    factory: self.factory.clone(),
                    registry: Arc::clone(&self.registry),
                };
                return ResponseFuture::open(Box::pin(opening.run(parts, body, principal)));
            }
            Ok(Some(id)) => id,
        };
        match claim {
            Some(Ok(())) if self.registry.shared => {
                let Ok(id) = id::SessionId::parse(id) else {
                    return ResponseFuture::ready(reject(config, Rejection::SessionNotFound));
                };
                let closing =
                    crate::restore::close_everywhere(Arc::clone(&self.registry), id, principal);
                return ResponseFuture::open(Box::pin(async move {
                    Ok(crate::open::Opened::Rejected(closing.await))
                }));
            }
            Some(Ok(())) => return ResponseFuture::ready(self.close(id, owns)),
            Some(Err(rejection)) => return ResponseFuture::ready(reject(config, rejection)),
            None => {}
        }
        let Some(entry) = self.registry.acquire(id, owns) else {
            // Not shared, or live here but another principal's: 404 without asking the store.
            if !self.registry.shared || self.registry.contains_key(id) {
                return ResponseFuture::ready(reject(config, Rejection::SessionNotFound));
            }
            // Not live here: restore it from the store (boxed, off the hot path).
            let Ok(id) = id::SessionId::parse(id) else {
                return ResponseFuture::ready(reject(config, Rejection::SessionNotFound));
            };
            let restoring = Restoring {
                inner: self.inner.clone(),
                factory: self.factory.clone(),
                registry: Arc::clone(&self.registry),
            };
            return ResponseFuture::open(Box::pin(restoring.run(parts, body, principal, id)));
        };
        // From here on the request counts as in flight; dropping the guard undoes that.
        let guard = SessionGuard::new(entry, self.registry.epoch());
        let entry = guard.entry();
        let service = match routed_service::<F::Service>(entry) {
            Ok(service) => service,
            Err(rejection) => return ResponseFuture::ready(reject(config, rejection)),
        };
        if config.session_extension {
            parts.extensions.insert(Session {
                entry: Arc::clone(entry),
            });
        }
        let req = Request::from_parts(parts, RequestBody::new(body));
        ResponseFuture::session(service, req, guard)
    }
}

/// The per-session service of a live entry, or the rejection for a closed one (or one stored
/// by a layer clone with another service type).
pub(crate) fn routed_service<T: Clone + 'static>(entry: &DynEntry) -> Result<T, Rejection> {
    match entry.slot.service().downcast_ref::<T>() {
        Some(service) if !entry.is_closed() => Ok(service.clone()),
        Some(_) => Err(Rejection::SessionNotFound),
        None => {
            // A table shared by layer clones wrapping services of different types.
            tracing::error!(
                session = %entry.info.id().redacted(),
                "session stored by a layer clone with another per-session service type; \
                 build every service of one table from the same factory"
            );
            Err(Rejection::SessionNotFound)
        }
    }
}

impl<S, F> SessionService<S, F> {
    /// Answers a request the close policy claims: 204 after closing its session, or 404.
    fn close(&self, id: &str, owns: impl FnOnce(&DynEntry) -> bool) -> Response<Bytes> {
        let config = &self.registry.config;
        let closed = match self.registry.get(id) {
            Some(entry) if owns(&entry) => self.registry.close(id, CloseReason::Deleted),
            _ => false,
        };
        if !closed {
            return reject(config, Rejection::SessionNotFound);
        }
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
    }
}
