//! Restoring a session this node does not hold, from its [store](crate::store) record, and
//! closing one for good wherever it lives.
//!
//! A request names a session that is not in this node's table. With a shared store
//! ([`SessionLayer::store`](crate::SessionLayer::store)) the layer does not answer 404 at once:
//!
//! 1. One restore per id per node at a time: concurrent requests for the id wait for the
//!    first, then find the session live and are routed as usual.
//! 2. The record is loaded. Not found: 404 (the session never existed, was deleted, or
//!    expired everywhere). The store unreachable: 503 with `Retry-After`, never 404, since
//!    the session may well exist. Bound to another principal: 404, as for a live session.
//! 3. A slot is reserved (the table's limits apply as to an open), the factory builds the
//!    per-session service with the session's recorded id, principal and creation time, and the
//!    recorded opening request is replayed into it; with the MCP profile it is followed by
//!    `notifications/initialized` (MCP 2025-11-25, Lifecycle). Their answers are read and
//!    discarded, within [`REPLAY_TIMEOUT`] each. A replay the service refuses (not 2xx)
//!    leaves nothing stored and answers 404: the client starts a new session.
//! 4. The session is stored, `on_open` runs on this node, and the client's request is routed.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use crate::body::{BoxError, RequestBody, SessionGuard};
use crate::factory::SessionFactory;
use crate::hooks::CloseReason;
use crate::id::SessionId;
use crate::info::{Principal, SessionInfo};
use crate::open::{Opened, refusal};
use crate::registry::{DynEntry, Entry, Registry, Stored};
use crate::rejection::Rejection;
use crate::service::{Req, reject, routed_service};
use crate::session::Session;
use crate::store::SessionRecord;

/// How long the answer to each replayed request may take to be read to its end.
pub(crate) const REPLAY_TIMEOUT: Duration = Duration::from_secs(5);

/// The `notifications/initialized` sent after a replayed MCP `initialize`.
const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// Everything a restore needs, moved into its future.
pub(crate) struct Restoring<S, F> {
    pub(crate) inner: S,
    pub(crate) factory: F,
    pub(crate) registry: Arc<Registry>,
}

impl<S, F> Restoring<S, F> {
    pub(crate) async fn run<B, SB>(
        self,
        parts: Parts,
        body: B,
        principal: Option<Principal>,
        id: SessionId,
    ) -> Result<Opened<Response<SB>>, S::Error>
    where
        S: Service<Req<B>>,
        F: SessionFactory<S>,
        F::Service: Service<Req<B>, Response = Response<SB>> + Clone + Send + Sync + 'static,
        <F::Service as Service<Req<B>>>::Error: Into<S::Error>,
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
        SB: Body,
    {
        let node = Arc::clone(self.registry.node());
        let flight = node.restore_lock(&id);
        let result = {
            let _one_at_a_time = flight.lock().await;
            self.restore(parts, body, principal, &id).await
        };
        node.restore_done(&id, &flight);
        result
    }

    async fn restore<B, SB>(
        self,
        parts: Parts,
        body: B,
        principal: Option<Principal>,
        id: &SessionId,
    ) -> Result<Opened<Response<SB>>, S::Error>
    where
        S: Service<Req<B>>,
        F: SessionFactory<S>,
        F::Service: Service<Req<B>, Response = Response<SB>> + Clone + Send + Sync + 'static,
        <F::Service as Service<Req<B>>>::Error: Into<S::Error>,
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
        SB: Body,
    {
        let registry = &*self.registry;
        let config = &registry.config;
        let rejected = |rejection| Ok(Opened::Rejected(reject(config, rejection)));
        let owns = |entry: &DynEntry| {
            config.principal.is_none() || entry.info.principal() == principal.as_ref()
        };
        // Restored by the request this one waited for?
        if let Some(entry) = registry.acquire(id.as_str(), owns) {
            let guard = SessionGuard::new(entry, registry.epoch());
            return route::<F::Service, B, SB, S::Error>(config, guard, parts, body).await;
        }
        if registry.is_shut_down() {
            return rejected(Rejection::ShuttingDown);
        }
        let node = registry.node();
        let loaded = node.store.load(id).await;
        node.store_health(&loaded);
        let record = match loaded {
            Err(_) => return rejected(Rejection::StoreUnavailable(config.retry_after)),
            Ok(None) => return rejected(Rejection::SessionNotFound),
            Ok(Some(record)) => record,
        };
        if config.principal.is_some() && record.principal != principal {
            return rejected(Rejection::SessionNotFound);
        }
        let client = config.client_key.as_ref().and_then(|key| key(&parts));
        let reservation = match self
            .registry
            .reserve(record.principal.clone(), client.clone())
        {
            Ok(reservation) => reservation,
            Err(why) => return rejected(refusal(config, why)),
        };
        let info = SessionInfo::restored(id.clone(), record.principal.clone(), record.created_ms);
        let (service, state) = match self.factory.make_session(info.clone(), self.inner).await {
            Ok(made) => made,
            Err(error) => {
                tracing::error!(%error, session = %id.redacted(), "session factory failed while restoring");
                return rejected(Rejection::FactoryFailed);
            }
        };
        let entry: Arc<DynEntry> = Arc::new(Entry::new(
            info,
            Arc::clone(node),
            reservation.client().cloned(),
            Stored {
                service: service.clone(),
                state,
            },
            registry.now(),
        ));
        let mut guard = SessionGuard::new(Arc::clone(&entry), registry.epoch());
        guard.waited();
        let mut service = service;
        match replay(config.mcp, &config.header, &mut service, &entry, &record).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(session = %id.redacted(), "the per-session service refused the replayed opening request; answering 404");
                return rejected(Rejection::SessionNotFound);
            }
            Err(error) => return Err(error.into()),
        }
        if let Err(why) = registry.commit(&entry, reservation) {
            return rejected(refusal(config, why));
        }
        registry.announce(&entry);
        node.opened(id);
        tracing::debug!(session = %id.redacted(), "session restored from the store");
        route::<F::Service, B, SB, S::Error>(config, guard, parts, body).await
    }
}

/// Replays the recorded opening request (and, for MCP, `notifications/initialized`) into a
/// fresh per-session service; `Ok(false)` if the service refused it.
async fn replay<T, B, SB>(
    mcp: bool,
    header: &http::HeaderName,
    service: &mut T,
    entry: &Arc<DynEntry>,
    record: &SessionRecord,
) -> Result<bool, T::Error>
where
    T: Service<Req<B>, Response = Response<SB>>,
    SB: Body,
{
    let opening = &record.opening;
    let mut request = Request::new(RequestBody::peeked(opening.body.clone()));
    *request.method_mut() = opening.method.clone();
    *request.uri_mut() = opening.uri.clone();
    *request.headers_mut() = opening.headers.clone();
    request.extensions_mut().insert(Session {
        entry: Arc::clone(entry),
    });
    let response = call(service, request).await?;
    let accepted = response.status().is_success();
    drain(response).await;
    if !accepted {
        return Ok(false);
    }
    if mcp {
        let mut request = Request::new(RequestBody::peeked(Bytes::from_static(INITIALIZED)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = opening.uri.clone();
        *request.headers_mut() = opening.headers.clone();
        if let Ok(value) = HeaderValue::from_str(record.id.as_str()) {
            request.headers_mut().insert(header.clone(), value);
        }
        request.extensions_mut().insert(Session {
            entry: Arc::clone(entry),
        });
        let response = call(service, request).await?;
        if !response.status().is_success() {
            tracing::debug!(status = %response.status(), "replayed notifications/initialized was not accepted");
        }
        drain(response).await;
    }
    Ok(true)
}

async fn call<T, R>(service: &mut T, request: R) -> Result<T::Response, T::Error>
where
    T: Service<R>,
{
    poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(request).await
}

/// Reads an answer to its end (or for [`REPLAY_TIMEOUT`]) and drops it.
async fn drain<SB: Body>(response: Response<SB>) {
    let mut body = std::pin::pin!(response.into_body());
    let read = async {
        // Each frame is dropped as it comes: nothing of the answer is kept.
        while body.frame().await.is_some_and(|frame| frame.is_ok()) {}
    };
    let _ = tokio::time::timeout(REPLAY_TIMEOUT, read).await;
}

/// Routes a request to the session `guard` holds, as the hot path does.
async fn route<T, B, SB, E>(
    config: &crate::config::Config,
    guard: SessionGuard,
    mut parts: Parts,
    body: B,
) -> Result<Opened<Response<SB>>, E>
where
    T: Service<Req<B>, Response = Response<SB>> + Clone + Send + Sync + 'static,
    T::Error: Into<E>,
{
    let entry = guard.entry();
    let mut service: T = match routed_service::<T>(entry) {
        Ok(service) => service,
        Err(rejection) => return Ok(Opened::Rejected(reject(config, rejection))),
    };
    if config.session_extension {
        parts.extensions.insert(Session {
            entry: Arc::clone(entry),
        });
    }
    let request = Request::from_parts(parts, RequestBody::new(body));
    let response = call(&mut service, request).await.map_err(Into::into)?;
    Ok(Opened::Served {
        response,
        guard: Some(guard),
    })
}

/// Answers a close-policy request (DELETE) with a shared store: closes the session here if it
/// is live, deletes its record and tells every node to close it; 204, 404 if there is no
/// such session (or it is another principal's), 503 if the store did not answer.
pub(crate) async fn close_everywhere(
    registry: Arc<Registry>,
    id: SessionId,
    principal: Option<Principal>,
) -> Response<Bytes> {
    let config = &registry.config;
    let node = Arc::clone(registry.node());
    let owned =
        |owner: Option<&Principal>| config.principal.is_none() || owner == principal.as_ref();
    match registry.get(id.as_str()) {
        Some(entry) => {
            if !owned(entry.info.principal()) {
                return reject(config, Rejection::SessionNotFound);
            }
            registry.close_here(&entry, CloseReason::Deleted);
        }
        None => {
            let loaded = node.store.load(&id).await;
            node.store_health(&loaded);
            match loaded {
                Err(_) => return reject(config, Rejection::StoreUnavailable(config.retry_after)),
                Ok(None) => return reject(config, Rejection::SessionNotFound),
                Ok(Some(record)) if !owned(record.principal.as_ref()) => {
                    return reject(config, Rejection::SessionNotFound);
                }
                Ok(Some(_)) => {}
            }
        }
    }
    match node.forget_now(&id, CloseReason::Deleted).await {
        Ok(_) => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(_) => reject(config, Rejection::StoreUnavailable(config.retry_after)),
    }
}
