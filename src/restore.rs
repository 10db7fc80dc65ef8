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
//!    discarded, within [`REPLAY_TIMEOUT`] in all (past it: 503). A replay the service fails
//!    in a way that may pass (5xx, 408, 429) answers 503; one it refuses (other 4xx: an
//!    incompatible version during a deploy, a credential the record does not keep) answers
//!    404, so that the client starts a new session. Either way nothing is stored here and the
//!    record stays, for the nodes whose copies work.
//! 4. The session is stored, `on_open` runs on this node, its record's time to live is reset,
//!    and the client's request is routed.
//! 5. Bounds: at most [`MAX_RESTORING`](crate::node) restores wait on the store or a factory
//!    at once on a node (past it: 503 with `Retry-After`), so made-up ids cost a bounded number
//!    of store reads in flight; a session's lifetime counts from its creation, not from the
//!    restore (one past its [`max_lifetime`](crate::SessionLayer::max_lifetime) is
//!    forgotten, 404); a failed restore (no record, store down) answers every request that
//!    waited for it at once, without another store read each.

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
use crate::node::{Flight, Node};
use crate::open::{Opened, refusal};
use crate::registry::{DynEntry, Entry, Registry, Stored};
use crate::rejection::Rejection;
use crate::service::{Req, reject, routed_service};
use crate::session::Session;
use crate::store::SessionRecord;

/// How long the replay of a session's opening (the requests and reading their answers to the
/// end) may take; past it the restore answers 503 with `Retry-After`.
pub(crate) const REPLAY_TIMEOUT: Duration = Duration::from_secs(5);

/// The `notifications/initialized` sent after a replayed MCP `initialize`.
const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// Everything a restore needs, moved into its future.
pub(crate) struct Restoring<S, F> {
    pub(crate) inner: S,
    pub(crate) factory: F,
    pub(crate) registry: Arc<Registry>,
}

/// Why a restore did not produce a session: the rejection, and whether it holds for every
/// request of the id right now (no record, store down) and so is shared with the requests that
/// waited for this restore, or only for this request (another principal's).
struct Failed {
    rejection: Rejection,
    shared: bool,
}

impl Failed {
    fn shared(rejection: Rejection) -> Self {
        Self {
            rejection,
            shared: true,
        }
    }

    fn own(rejection: Rejection) -> Self {
        Self {
            rejection,
            shared: false,
        }
    }
}

/// One restore of an id in flight on this node; gives its place back when dropped, also when
/// the request is dropped mid-way (client gone, a timeout layer).
struct FlightGuard<'a> {
    node: &'a Node,
    id: &'a SessionId,
    flight: Flight,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.node.restore_done(self.id, &self.flight);
    }
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
        let registry = Arc::clone(&self.registry);
        let config = &registry.config;
        let node = Arc::clone(registry.node());
        let guard = FlightGuard {
            node: &node,
            id: &id,
            flight: node.restore_lock(&id),
        };
        let mut outcome = guard.flight.lock().await;
        // The restore this request waited for failed for every request of the id.
        if let Some(rejection) = outcome.clone() {
            return Ok(Opened::Rejected(reject(config, rejection)));
        }
        let owns = |entry: &DynEntry| {
            config.principal.is_none() || entry.info.principal() == principal.as_ref()
        };
        // Restored by the request this one waited for?
        let session = match registry.acquire(id.as_str(), owns) {
            Some(entry) => Ok(SessionGuard::new(entry, registry.epoch())),
            None => match self.restore(&parts, principal.as_ref(), &id).await? {
                Ok(guard) => Ok(guard),
                Err(failed) => {
                    if failed.shared {
                        *outcome = Some(failed.rejection.clone());
                    }
                    Err(failed.rejection)
                }
            },
        };
        drop(outcome);
        drop(guard);
        match session {
            Ok(session) => route::<F::Service, B, SB, S::Error>(config, session, parts, body).await,
            Err(rejection) => Ok(Opened::Rejected(reject(config, rejection))),
        }
    }

    /// Loads the record of `id`, rebuilds the session and stores it; the session's guard
    /// counts the client's request in flight.
    async fn restore<B, SB>(
        self,
        parts: &Parts,
        principal: Option<&Principal>,
        id: &SessionId,
    ) -> Result<Result<SessionGuard, Failed>, S::Error>
    where
        S: Service<Req<B>>,
        F: SessionFactory<S>,
        F::Service: Service<Req<B>, Response = Response<SB>> + Clone + Send + Sync + 'static,
        <F::Service as Service<Req<B>>>::Error: Into<S::Error>,
        SB: Body,
    {
        let registry = Arc::clone(&self.registry);
        let config = &registry.config;
        if registry.is_shut_down() {
            return Ok(Err(Failed::shared(Rejection::ShuttingDown)));
        }
        let node = registry.node();
        // Restores waiting on the store or a factory at once, over all ids: an unauthenticated
        // client sending made-up ids costs at most this many store reads in flight.
        let Ok(_permit) = node.restore_permits.try_acquire() else {
            return Ok(Err(Failed::own(Rejection::Busy(config.retry_after))));
        };
        // Listen before reading the record: a close published from now on reaches this node
        // (once the bus has the subscription in place; the refresher catches any it misses).
        // Stopped again unless the session is stored, also if this request is dropped.
        let mut listening = Listening {
            node,
            id,
            keep: false,
        };
        node.opened(id);
        let loaded = node.store.load(id).await;
        node.store_health(&loaded);
        let record = match loaded {
            Err(_) => {
                return Ok(Err(Failed::shared(Rejection::StoreUnavailable(
                    config.retry_after,
                ))));
            }
            Ok(None) => return Ok(Err(Failed::shared(Rejection::SessionNotFound))),
            Ok(Some(record)) => record,
        };
        if config.principal.is_some() && record.principal.as_ref() != principal {
            return Ok(Err(Failed::own(Rejection::SessionNotFound)));
        }
        // The lifetime counts from the session's creation, wherever it was restored since.
        let age_ms = registry.wall_now_ms().saturating_sub(record.created_ms);
        if config.lifetime_ms != 0 && age_ms >= config.lifetime_ms {
            node.forget_later(id, CloseReason::LifetimeEnded);
            return Ok(Err(Failed::shared(Rejection::SessionNotFound)));
        }
        let client = config.client_key.as_ref().and_then(|key| key(parts));
        let reservation = match self.registry.reserve(record.principal.clone(), client) {
            Ok(reservation) => reservation,
            Err(why) => return Ok(Err(Failed::own(refusal(config, why)))),
        };
        let info = SessionInfo::created(id.clone(), record.principal.clone(), record.created_ms);
        let (service, state) = match self.factory.make_session(info.clone(), self.inner).await {
            Ok(made) => made,
            Err(error) => {
                tracing::error!(%error, session = %id.redacted(), "session factory failed while restoring");
                return Ok(Err(Failed::shared(Rejection::FactoryFailed)));
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
        match tokio::time::timeout(
            REPLAY_TIMEOUT,
            replay(config.mcp, &config.header, &mut service, &entry, &record),
        )
        .await
        {
            Ok(Ok(status)) if status.is_success() => {}
            Ok(Ok(status)) if is_passing(status) => {
                // May pass (a server error, a timeout, a rate limit): the record stays, the
                // client retries.
                tracing::warn!(session = %id.redacted(), %status, "the per-session service failed the replayed opening request; answering 503");
                return Ok(Err(Failed::shared(Rejection::Busy(config.retry_after))));
            }
            Ok(Ok(status)) => {
                // This node's service refuses the session (an incompatible version during a
                // deploy, a credential the record does not keep): 404 here, so that the client
                // starts a new session. The record stays: copies on other nodes may work.
                tracing::warn!(session = %id.redacted(), %status, "the per-session service refused the replayed opening request; answering 404");
                return Ok(Err(Failed::shared(Rejection::SessionNotFound)));
            }
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => {
                tracing::warn!(session = %id.redacted(), "the per-session service did not answer the replayed opening request in time");
                return Ok(Err(Failed::shared(Rejection::Busy(config.retry_after))));
            }
        }
        if let Err(why) = registry.commit(&entry, reservation) {
            return Ok(Err(Failed::own(refusal(config, why))));
        }
        registry.announce(&entry);
        // Again: a copy of the same id that closed here meanwhile (its close runs after it
        // left the table) may have stopped the listening started above.
        node.opened(id);
        // The record may have little time left (the session was idle elsewhere): reset it
        // now rather than at this node's next refresh round, which might come too late.
        if let Some(ttl) = crate::open::record_ttl(config) {
            let _ = node.store.touch(std::slice::from_ref(id), ttl).await;
        }
        tracing::debug!(session = %id.redacted(), "session restored from the store");
        listening.keep = true;
        Ok(Ok(guard))
    }
}

/// Whether a refused replay may succeed later: a server error, 408 or 429.
fn is_passing(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// Stops listening to a session on the bus when dropped, unless the restore stored it.
struct Listening<'a> {
    node: &'a Node,
    id: &'a SessionId,
    keep: bool,
}

impl Drop for Listening<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.node.unlisten(self.id);
        }
    }
}

/// Replays the recorded opening request (and, for MCP, `notifications/initialized`) into a
/// fresh per-session service; returns the status of the opening request's answer.
async fn replay<T, B, SB>(
    mcp: bool,
    header: &http::HeaderName,
    service: &mut T,
    entry: &Arc<DynEntry>,
    record: &SessionRecord,
) -> Result<StatusCode, T::Error>
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
    let status = response.status();
    drain(response).await;
    if !status.is_success() {
        return Ok(status);
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
    Ok(status)
}

async fn call<T, R>(service: &mut T, request: R) -> Result<T::Response, T::Error>
where
    T: Service<R>,
{
    poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(request).await
}

/// Reads an answer to its end and drops it (the whole replay is bounded by
/// [`REPLAY_TIMEOUT`]).
async fn drain<SB: Body>(response: Response<SB>) {
    let mut body = std::pin::pin!(response.into_body());
    // Each frame is dropped as it comes: nothing of the answer is kept.
    while body.frame().await.is_some_and(|frame| frame.is_ok()) {}
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
    // No restore of this id runs on this node meanwhile: none can bring back what this
    // deletes.
    let guard = FlightGuard {
        node: &node,
        id: &id,
        flight: node.restore_lock(&id),
    };
    let mut outcome = guard.flight.lock().await;
    // Bounded like restores: made-up ids cost at most this many store reads in flight.
    let Ok(_permit) = node.restore_permits.try_acquire() else {
        return reject(config, Rejection::Busy(config.retry_after));
    };
    let local = registry.get(id.as_str());
    match &local {
        Some(entry) if !owned(entry.info.principal()) => {
            return reject(config, Rejection::SessionNotFound);
        }
        Some(_) => {}
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
    // The record first: once it is gone no node can restore the session, then the copies.
    let deleted = node.store.delete(&id).await;
    node.store_health(&deleted);
    if deleted.is_err() {
        return reject(config, Rejection::StoreUnavailable(config.retry_after));
    }
    if let Some(entry) = &local {
        registry.close_here(entry, CloseReason::Deleted);
    }
    node.publish_closed(&id, CloseReason::Deleted).await;
    *outcome = Some(Rejection::SessionNotFound);
    drop(outcome);
    drop(guard);
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
