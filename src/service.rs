//! [`SessionService`]: classifies each request and routes it.
//!
//! The order of the checks, for each request:
//!
//! 1. MCP profile only: a malformed `MCP-Protocol-Version` gets 400; a version at or after
//!    2026-07-28 is sessionless and goes to the inner service.
//! 2. The [`sessionless`](crate::SessionLayer::sessionless) predicate, if any.
//! 3. MCP profile only: methods other than GET, POST and DELETE get 405.
//! 4. The session header: repeated or malformed gets 400; absent means the request may open a
//!    session ([`OpenPolicy`](crate::OpenPolicy)), else 400.
//! 5. DELETE closes the session (204) or gets 405 if termination is off.
//! 6. Anything else is routed to the session's service, or gets 404.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::ServiceExt;
use tower::util::Oneshot;
use tower_service::Service;

use crate::body::{RequestBody, ResponseBody, SessionGuard};
use crate::factory::SessionFactory;
use crate::future::ResponseFuture;
use crate::id::{self, SessionId};
use crate::info::{Principal, SessionInfo};
use crate::layer::Config;
use crate::lifecycle::{self, CloseReason};
use crate::mcp;
use crate::policy::OpenKind;
use crate::registry::{DynEntry, Entry, Registry, Reserve};
use crate::rejection::{InvalidSessionHeader, Rejection};

/// Attempts at minting an id that is valid and not live before giving up with 500.
const MINT_ATTEMPTS: usize = 3;

/// `Allow` of the MCP endpoint.
const ALLOW_ALL: &str = "GET, POST, DELETE";
/// `Allow` of the MCP endpoint when DELETE does not terminate sessions.
const ALLOW_NO_DELETE: &str = "GET, POST";

/// Middleware that gives the inner service sessions; built by
/// [`SessionLayer`](crate::SessionLayer).
///
/// `poll_ready` is always ready: the inner or per-session service is cloned and driven to
/// readiness inside the [`ResponseFuture`]. Every decision of the layer is a response; the
/// only errors are the services' own.
pub struct SessionService<S, F> {
    inner: S,
    factory: F,
    config: Arc<Config>,
    registry: Arc<Registry>,
}

impl<S, F> SessionService<S, F> {
    pub(crate) fn new(inner: S, factory: F, config: Arc<Config>, registry: Arc<Registry>) -> Self {
        Self {
            inner,
            factory,
            config,
            registry,
        }
    }

    /// A handle to the session table this service routes to.
    pub fn sessions(&self) -> crate::Sessions {
        crate::Sessions {
            registry: Arc::clone(&self.registry),
        }
    }

    /// The wrapped inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, F: Clone> Clone for SessionService<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            factory: self.factory.clone(),
            config: Arc::clone(&self.config),
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

type Req<B> = Request<RequestBody<B>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response of the layer's own making.
fn reject<ResBody>(config: &Config, rejection: Rejection) -> Response<ResponseBody<ResBody>> {
    tracing::debug!(%rejection, "request rejected");
    let response = match &config.rejection {
        Some(responder) => responder(&rejection),
        None => rejection.to_response(),
    };
    response.map(ResponseBody::rejection)
}

fn missing(config: &Config) -> Rejection {
    Rejection::MissingSessionId(config.header.clone())
}

/// The single value of the session header: `Ok(None)` if absent.
fn session_header<'a, B>(
    config: &Config,
    req: &'a Request<B>,
) -> Result<Option<&'a str>, Rejection> {
    let mut values = req.headers().get_all(&config.header).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidSessionId(InvalidSessionHeader::Repeated));
    }
    let bytes = value.as_bytes();
    id::validate(bytes)
        .map_err(|e| Rejection::InvalidSessionId(InvalidSessionHeader::Invalid(e)))?;
    // Visible ASCII is valid UTF-8.
    Ok(std::str::from_utf8(bytes).ok())
}

/// Runs `f` on the request's parts; predicates and extractors see `Parts`, not the body.
fn with_parts<B, T>(req: Request<B>, f: impl FnOnce(&Parts) -> T) -> (Request<B>, T) {
    let (parts, body) = req.into_parts();
    let out = f(&parts);
    (Request::from_parts(parts, body), out)
}

/// The principal of a request, when an extractor is configured.
fn principal_of<B>(config: &Config, req: Request<B>) -> (Request<B>, Option<Principal>) {
    match &config.principal {
        None => (req, None),
        Some(extract) => with_parts(req, |parts| extract(parts)),
    }
}

/// Whether the request skips sessions: the MCP protocol-version rule, then the
/// [`sessionless`](crate::SessionLayer::sessionless) predicate. The request is taken apart only
/// when a predicate needs its parts.
fn sessionless<B>(config: &Config, req: Request<B>) -> (Request<B>, Result<bool, Rejection>) {
    let by_version = if config.mcp {
        mcp::is_sessionless(req.headers())
    } else {
        Ok(false)
    };
    match (by_version, &config.sessionless) {
        (Ok(false), Some(predicate)) => {
            let (req, yes) = with_parts(req, |parts| predicate(parts));
            (req, Ok(yes))
        }
        (decided, _) => (req, decided),
    }
}

impl<S, F, B, ResBody> Service<Request<B>> for SessionService<S, F>
where
    S: Service<Req<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    F: SessionFactory<S>,
    F::Service: Service<Req<B>, Response = Response<ResBody>, Error = S::Error>
        + Clone
        + Send
        + Sync
        + 'static,
    <F::Service as Service<Req<B>>>::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future =
        ResponseFuture<Oneshot<S, Req<B>>, Oneshot<F::Service, Req<B>>, ResBody, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        lifecycle::ensure_sweeper(&self.registry);
        let config = &*self.config;

        let (req, skip) = sessionless(config, req);
        match skip {
            Ok(true) => {
                let inner = self.inner.clone();
                return ResponseFuture::sessionless(inner.oneshot(req.map(RequestBody::new)));
            }
            Ok(false) => {}
            Err(rejection) => return ResponseFuture::ready(reject(config, rejection)),
        }

        let method = req.method();
        if config.mcp && method != Method::GET && method != Method::POST && method != Method::DELETE
        {
            let allow = if config.terminate_on_delete {
                ALLOW_ALL
            } else {
                ALLOW_NO_DELETE
            };
            return ResponseFuture::ready(reject(config, Rejection::MethodNotAllowed(allow)));
        }

        let (mut req, principal) = principal_of(config, req);
        // Does the request belong to the session? (Only asked when principals are bound.)
        let owns = |entry: &DynEntry| {
            config.principal.is_none() || entry.info.principal() == principal.as_ref()
        };
        let entry = match session_header(config, &req) {
            Err(rejection) => return ResponseFuture::ready(reject(config, rejection)),
            Ok(None) => {
                // Opening a session reads the body and awaits the factory: boxed, off the hot path.
                let opening = Opening {
                    inner: self.inner.clone(),
                    factory: self.factory.clone(),
                    config: Arc::clone(&self.config),
                    registry: Arc::clone(&self.registry),
                };
                return ResponseFuture::open(Box::pin(opening.run(req, principal)));
            }
            Ok(Some(id)) if req.method() == Method::DELETE => {
                return ResponseFuture::ready(self.delete(id, owns));
            }
            Ok(Some(id)) => self.registry.acquire(id, owns),
        };
        let Some(entry) = entry else {
            return ResponseFuture::ready(reject(config, Rejection::SessionNotFound));
        };
        // From here on the request counts as in flight; dropping the guard undoes that.
        let guard = SessionGuard::new(entry, self.registry.epoch());
        let entry = guard.entry();
        let service = (&entry.service as &dyn Any).downcast_ref::<F::Service>();
        let service = match service {
            Some(service) if !entry.is_closed() => service.clone(),
            // Closed since the lookup, or stored by a layer clone wrapping another service.
            _ => return ResponseFuture::ready(reject(config, Rejection::SessionNotFound)),
        };
        if config.session_info_extension {
            req.extensions_mut().insert(entry.info.clone());
        }
        ResponseFuture::session(service.oneshot(req.map(RequestBody::new)), guard)
    }
}

impl<S, F> SessionService<S, F> {
    /// Answers DELETE with a session id: 204 after closing it, 404, or 405.
    fn delete<ResBody>(
        &self,
        id: &str,
        owns: impl FnOnce(&DynEntry) -> bool,
    ) -> Response<ResponseBody<ResBody>> {
        let config = &*self.config;
        if !config.terminate_on_delete {
            return reject(config, Rejection::MethodNotAllowed(ALLOW_NO_DELETE));
        }
        let closed = match self.registry.get(id) {
            Some(entry) if owns(&entry) => self.registry.close(id, CloseReason::Deleted),
            _ => false,
        };
        if !closed {
            return reject(config, Rejection::SessionNotFound);
        }
        let mut response = Response::new(ResponseBody::rejection(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
    }
}

/// Everything the opening of one session needs, moved into its future.
struct Opening<S, F> {
    inner: S,
    factory: F,
    config: Arc<Config>,
    registry: Arc<Registry>,
}

impl<S, F> Opening<S, F> {
    async fn run<B, ResBody>(
        self,
        req: Request<B>,
        principal: Option<Principal>,
    ) -> Result<Response<ResponseBody<ResBody>>, S::Error>
    where
        S: Service<Req<B>, Response = Response<ResBody>>,
        F: SessionFactory<S>,
        F::Service: Service<Req<B>, Response = Response<ResBody>, Error = S::Error>
            + Clone
            + Send
            + Sync
            + 'static,
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let config = &*self.config;
        let (parts, body) = req.into_parts();
        let body = match &config.open.0 {
            OpenKind::AnyRequest => RequestBody::new(body),
            OpenKind::When(opens) if opens(&parts) => RequestBody::new(body),
            OpenKind::When(_) => return Ok(reject(config, missing(config))),
            OpenKind::McpInitialize => {
                if parts.method != Method::POST {
                    return Ok(reject(config, missing(config)));
                }
                match peek_initialize(config, &parts, body).await {
                    Ok(bytes) => RequestBody::peeked(bytes),
                    Err(rejection) => return Ok(reject(config, rejection)),
                }
            }
        };

        let reservation = match self.registry.reserve() {
            Reserve::Reserved(reservation) => reservation,
            Reserve::Full => {
                tracing::warn!(
                    max = self.registry.settings.max_sessions(),
                    "session limit reached"
                );
                return Ok(reject(
                    config,
                    Rejection::TooManySessions(config.retry_after),
                ));
            }
            Reserve::ShutDown => return Ok(reject(config, Rejection::ShuttingDown)),
        };
        let Some(id) = self.mint() else {
            return Ok(reject(config, Rejection::FactoryFailed));
        };
        let info = SessionInfo::new(id, principal);
        let service = match self.factory.make_session(info.clone(), self.inner).await {
            Ok(service) => service,
            Err(error) => {
                tracing::error!(%error, session_id = %info.id(), "session factory failed");
                return Ok(reject(config, Rejection::FactoryFailed));
            }
        };

        let entry = Arc::new(Entry::new(
            info.clone(),
            service.clone(),
            self.registry.now(),
        ));
        // `Entry::new` counted the opening request in flight; the guard owns that count. The
        // opening request went through a factory and may wait on its service: stamp its end.
        let mut guard = SessionGuard::new(entry.clone(), self.registry.epoch());
        guard.waited();
        let mut req = Request::from_parts(parts, body);
        req.extensions_mut().insert(info.clone());
        let mut response = service.oneshot(req).await?;
        let keep = match &config.keep_session {
            Some(keep) => keep(response.status(), response.headers()),
            // MCP: the id is assigned only with a successful InitializeResult.
            None => response.status().is_success(),
        };
        if !keep {
            return Ok(response.map(ResponseBody::inner));
        }
        if !self.registry.commit(entry, reservation) {
            let rejection = if self.registry.is_shut_down() {
                Rejection::ShuttingDown
            } else {
                tracing::error!(session_id = %info.id(), "minted session id collided");
                Rejection::FactoryFailed
            };
            return Ok(reject(config, rejection));
        }
        let value =
            HeaderValue::from_str(info.id().as_str()).expect("session ids are visible ASCII");
        response.headers_mut().insert(config.header.clone(), value);
        tracing::debug!(session_id = %info.id(), "session opened");
        Ok(response.map(|body| ResponseBody::guarded(body, Some(guard))))
    }

    /// A fresh id: valid, and not naming a live session.
    fn mint(&self) -> Option<SessionId> {
        for _ in 0..MINT_ATTEMPTS {
            let raw = self.config.make_id.make_session_id();
            match SessionId::parse(&raw) {
                Ok(id) if !self.registry.contains_key(id.as_str()) => return Some(id),
                Ok(_) => tracing::warn!("session id generator returned a live id"),
                Err(error) => {
                    tracing::error!(%error, "session id generator returned an invalid id")
                }
            }
        }
        None
    }
}

/// Reads the body of a request without an id and checks it is an `initialize` request.
async fn peek_initialize<B>(config: &Config, parts: &Parts, body: B) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = config.peek_limit;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Rejection::PayloadTooLarge(limit));
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<LengthLimitError>() => {
            return Err(Rejection::PayloadTooLarge(limit));
        }
        // The client broke off the body: nothing readable to parse.
        Err(_) => return Err(Rejection::ParseError),
    };
    if mcp::is_initialize(&bytes)? {
        Ok(bytes)
    } else {
        Err(missing(config))
    }
}
