//! Restoring a session this node does not hold, from its [cluster](crate::Cluster)'s record.
//!
//! A request names a session that is not in this node's table. With a cluster the layer does
//! not answer 404 at once:
//!
//! 1. One restore per id per node at a time: concurrent requests for the id wait for the
//!    first, then find the session live and are routed as usual.
//! 2. The record is loaded. Not found: 404 (the session never existed, was deleted, or
//!    expired everywhere). The store unreachable: 503 with `Retry-After`, never 404, since
//!    the session may well exist. Bound to another principal: 404, as for a live session.
//! 3. A place is reserved (the table's limits apply as to an open), the factory builds the
//!    per-session service with the session's recorded id, principal and creation time, and the
//!    recorded opening request is replayed into it; with the MCP profile it is followed by
//!    `notifications/initialized` (MCP 2025-11-25, Lifecycle). Their answers are read and
//!    discarded, within [`REPLAY_TIMEOUT`] in all. A replay the service fails in a way that may
//!    pass (5xx, 408, 429, the timeout) answers 503; one it refuses (other 4xx: an
//!    incompatible version during a deploy, a credential the record does not keep) answers
//!    404, so that the client starts a new session. Either way nothing is stored here and the
//!    record stays, for the nodes whose copies work.
//! 4. The session is stored, `on_open` runs on this node, its record's time to live is reset,
//!    and the client's request is routed (by the response future, as on the hot path).
//! 5. Bounds: at most 256 restores wait on the store or a factory at once on a node (past it:
//!    503 with `Retry-After`), so made-up ids cost a bounded number of store reads in flight;
//!    a session's lifetime counts from its creation, not from the restore (one past its
//!    [`max_lifetime`](crate::SessionLayerBuilder::max_lifetime) is forgotten, 404); a failed
//!    restore (no record, store down) answers every request that waited for it at once,
//!    without another store read each.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use crate::close::CloseReason;
use crate::cluster::flight::Failure;
use crate::cluster::{Entry, Link};
use crate::handle::session::Session;
use crate::http::body::{Req, RequestBody, SessionGuard};
use crate::http::endpoint::Endpoint;
use crate::http::factory::SessionFactory;
use crate::http::future::Opened;
use crate::http::rejection::Rejection;
use crate::http::route::{Routed, admit, new_entry, route};
use crate::id::SessionId;
use crate::info::{Principal, SessionInfo};
use crate::metrics::{Metrics, RestoreOutcome, StoreOp};
use crate::store::SessionRecord;

/// How long the replay of a session's opening (the requests and reading their answers to the
/// end) may take; past it the restore answers 503 with `Retry-After`.
pub(crate) const REPLAY_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a restore needs, moved into its future.
pub(crate) struct Restoring<S, F> {
    pub(crate) inner: S,
    pub(crate) factory: F,
    pub(crate) endpoint: Arc<Endpoint>,
}

/// Why a restore did not produce a session: for every request of the id right now (no record,
/// store down), and so left in the flight for the requests that waited; or only for this
/// request (another principal's, no place for it).
enum Failed {
    ForAllWaiters(Failure),
    ThisRequest(Rejection),
}

impl<S, F> Restoring<S, F> {
    pub(crate) async fn run<B, SB>(
        self,
        parts: Parts,
        body: B,
        principal: Option<Principal>,
        id: SessionId,
    ) -> Result<Opened<F::Service, B>, S::Error>
    where
        S: Service<Req<B>>,
        F: SessionFactory<S>,
        F::Service: Service<Req<B>, Response = Response<SB>> + Clone + Send + Sync + 'static,
        <F::Service as Service<Req<B>>>::Error: Into<S::Error>,
        SB: Body,
    {
        let endpoint = Arc::clone(&self.endpoint);
        let config = &endpoint.config;
        let Some(restores) = endpoint.link.restores() else {
            return Ok(Opened::Answered(config.reject(Rejection::SessionNotFound)));
        };
        let flight = restores.join(&id);
        let mut outcome = flight.lock().await;
        // The restore this request waited for failed for every request of the id.
        if let Some(failed) = *outcome {
            return Ok(Opened::Answered(config.reject(config.failed(failed))));
        }
        let owns = |entry: &Entry| config.owns(principal.as_ref(), entry.info.principal());
        // Restored by the request this one waited for?
        let session = match endpoint.table.acquire(id.as_str(), owns) {
            Some(entry) => Ok(SessionGuard::new(entry, endpoint.table.epoch())),
            None => match self.timed_restore(&parts, principal.as_ref(), &id).await? {
                Ok(guard) => Ok(guard),
                Err(Failed::ForAllWaiters(failed)) => {
                    *outcome = Some(failed);
                    Err(config.failed(failed))
                }
                Err(Failed::ThisRequest(rejection)) => Err(rejection),
            },
        };
        drop(outcome);
        drop(flight);
        let mut parts = parts;
        let routed = session.and_then(|guard| {
            let service = route(config, guard.entry(), &mut parts)?;
            Ok(Routed::new(service, parts, body, guard))
        });
        Ok(match routed {
            Ok(routed) => Opened::Routed(routed),
            Err(rejection) => Opened::Answered(config.reject(rejection)),
        })
    }

    /// [`restore`](Self::restore), counted in the metrics by outcome, and timed.
    async fn timed_restore<B, SB>(
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
        let metrics: Metrics = self.endpoint.config.metrics.clone();
        let started = metrics.start();
        let restored = self.restore(parts, principal, id).await;
        let outcome = match &restored {
            Ok(Ok(_)) => RestoreOutcome::Restored,
            Ok(Err(Failed::ForAllWaiters(failure))) => match failure {
                Failure::NotFound => RestoreOutcome::NotFound,
                Failure::StoreUnavailable => RestoreOutcome::StoreUnavailable,
                Failure::ReplayFailed => RestoreOutcome::ReplayFailed,
                Failure::FactoryFailed => RestoreOutcome::FactoryFailed,
                Failure::ShuttingDown => RestoreOutcome::ShuttingDown,
            },
            Ok(Err(Failed::ThisRequest(Rejection::TooManyRestores(_)))) => RestoreOutcome::TooMany,
            Ok(Err(Failed::ThisRequest(_))) => RestoreOutcome::Refused,
            // The per-session service failed the replay with an error of its own.
            Err(_) => RestoreOutcome::ReplayFailed,
        };
        metrics.restore(outcome, started);
        restored
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
        let endpoint = &*self.endpoint;
        let (config, table, link) = (&endpoint.config, &endpoint.table, &endpoint.link);
        if table.is_shut_down() {
            return Ok(Err(Failed::ForAllWaiters(Failure::ShuttingDown)));
        }
        let (Some(restores), Some(store)) = (link.restores(), link.store()) else {
            return Ok(Err(Failed::ForAllWaiters(Failure::NotFound)));
        };
        // The store is known to be down: 503 at once, not after its timeout.
        if link.store_is_down() {
            return Ok(Err(Failed::ForAllWaiters(Failure::StoreUnavailable)));
        }
        // Restores waiting on the store or a factory at once, over all ids: an unauthenticated
        // client sending made-up ids costs at most this many store reads in flight.
        let Some(_permit) = restores.permit() else {
            return Ok(Err(Failed::ThisRequest(Rejection::TooManyRestores(
                config.retry_after,
            ))));
        };
        // Listen before reading the record: a close published from now on reaches this node
        // (once the bus has the subscription in place; the refresher catches any it misses).
        // Stopped again unless the session is stored, also if this request is dropped.
        let mut listening = Listening {
            link,
            id,
            keep: false,
        };
        link.listen(id);
        let loaded = link.metrics.store(StoreOp::Load, store.load(id)).await;
        link.store_health(&loaded);
        let record = match loaded {
            Err(_) => return Ok(Err(Failed::ForAllWaiters(Failure::StoreUnavailable))),
            Ok(None) => {
                // Another node may still hold a copy (the store lost the record): it ends
                // there too, so the session answers 404 wherever its next request lands.
                link.record_gone(id);
                return Ok(Err(Failed::ForAllWaiters(Failure::NotFound)));
            }
            Ok(Some(record)) => record,
        };
        if !config.owns(principal, record.principal.as_ref()) {
            return Ok(Err(Failed::ThisRequest(Rejection::SessionNotFound)));
        }
        // The lifetime counts from the session's creation, wherever it was restored since.
        let age_ms = table.wall_now_ms().saturating_sub(record.created_ms);
        let lifetime_ms = table.settings.lifetime_ms;
        if lifetime_ms != 0 && age_ms >= lifetime_ms {
            link.forget_later(id, CloseReason::LifetimeEnded);
            return Ok(Err(Failed::ForAllWaiters(Failure::NotFound)));
        }
        let reservation = match table.reserve(record.principal.clone(), config.client_of(parts)) {
            Ok(reservation) => reservation,
            Err(why) => return Ok(Err(Failed::ThisRequest(config.refused(why)))),
        };
        let info = SessionInfo::created(id.clone(), record.principal.clone(), record.created_ms);
        let (service, state) = match self.factory.make_session(info.clone(), self.inner).await {
            Ok(made) => made,
            Err(error) => {
                tracing::error!(%error, session = %id.redacted(), "session factory failed while restoring");
                return Ok(Err(Failed::ForAllWaiters(Failure::FactoryFailed)));
            }
        };
        let protocol = if cfg!(feature = "metrics") {
            crate::metrics::version_of(&record.opening.body)
        } else {
            crate::metrics::UNKNOWN_VERSION
        };
        let (entry, guard) = new_entry(
            endpoint,
            info,
            &reservation,
            service.clone(),
            state,
            protocol,
        );
        let mut service = service;
        // Matched where it is awaited: the service's error must not live across a later await.
        match tokio::time::timeout(
            REPLAY_TIMEOUT,
            replay(endpoint, &mut service, &entry, &record),
        )
        .await
        {
            Ok(Ok(status)) if status.is_success() => {}
            Ok(Ok(status)) if may_pass(status) => {
                // A server error, a timeout, a rate limit: the record stays, the client
                // retries.
                tracing::warn!(session = %id.redacted(), %status, "the per-session service failed the replayed opening request; answering 503");
                return Ok(Err(Failed::ForAllWaiters(Failure::ReplayFailed)));
            }
            Ok(Ok(status)) => {
                // This node's service refuses the session (an incompatible version during a
                // deploy, a credential the record does not keep): 404 here, so that the client
                // starts a new session. The record stays: copies on other nodes may work.
                tracing::warn!(session = %id.redacted(), %status, "the per-session service refused the replayed opening request; answering 404");
                return Ok(Err(Failed::ForAllWaiters(Failure::NotFound)));
            }
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => {
                tracing::warn!(session = %id.redacted(), "the per-session service did not answer the replayed opening request in time");
                return Ok(Err(Failed::ForAllWaiters(Failure::ReplayFailed)));
            }
        }
        if let Err(why) = admit(endpoint, &entry, reservation) {
            return Ok(Err(Failed::ThisRequest(config.refused(why))));
        }
        // The record may have little time left (the session was idle elsewhere): reset it
        // now rather than at this node's next refresh round, which might come too late.
        if let Some(ttl) = link.record_ttl() {
            let touching = store.touch(std::slice::from_ref(id), ttl);
            let _ = link.metrics.store(StoreOp::Touch, touching).await;
        }
        tracing::debug!(session = %id.redacted(), "session restored from the store");
        listening.keep = true;
        Ok(Ok(guard))
    }
}

/// Whether a refused replay may succeed later: a server error, 408 or 429.
fn may_pass(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// Stops listening to a session on the bus when dropped, unless the restore stored it.
struct Listening<'a> {
    link: &'a Link,
    id: &'a SessionId,
    keep: bool,
}

impl Drop for Listening<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.link.unlisten(self.id);
        }
    }
}

/// Replays the recorded opening request (and what the profile sends after it) into a fresh
/// per-session service; returns the status of the opening request's answer.
async fn replay<T, B, SB>(
    endpoint: &Endpoint,
    service: &mut T,
    entry: &Arc<Entry>,
    record: &SessionRecord,
) -> Result<StatusCode, T::Error>
where
    T: Service<Req<B>, Response = Response<SB>>,
    SB: Body,
{
    let opening = &record.opening;
    let request = |method: Method, body: Bytes| {
        let mut request = Request::new(RequestBody::peeked(body));
        *request.method_mut() = method;
        *request.uri_mut() = opening.uri.clone();
        *request.headers_mut() = opening.headers.clone();
        request.extensions_mut().insert(Session::new(entry));
        request
    };
    let response = call(
        service,
        request(opening.method.clone(), opening.body.clone()),
    )
    .await?;
    let status = response.status();
    drain(response).await;
    if !status.is_success() {
        return Ok(status);
    }
    if let Some(after) = endpoint.config.profile.after_opening() {
        let mut after = request(Method::POST, Bytes::from_static(after));
        after
            .headers_mut()
            .insert(endpoint.config.header.clone(), record.id.header_value());
        let response = call(service, after).await?;
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
