//! Opening a session: the open policy, the body peek, a place under the limits, the factory,
//! the commit.
//!
//! Everything here runs for requests *without* a session id, so every step is bounded before
//! it is paid for:
//!
//! 1. The open policy's cheap part (method, predicate) decides whether the request may open a
//!    session at all; if not: 400.
//! 2. Shutdown and a full table (that can neither reclaim nor evict) are answered 503
//!    *before* any byte of the body is read.
//! 3. The MCP profile reads the body to see whether it is `initialize` (see [`peek`](crate::http::peek)
//!    for the bounds); with a cluster every opening request's body is read the same way, since
//!    the record keeps it for replay.
//! 4. Only then is a place reserved (global, per-principal and per-client limits; reclaim or
//!    eviction when full), an id minted, and the factory called.
//! 5. The session is stored only if the per-session service's answer says so (2xx by
//!    default): with a cluster its record is written first, then it is committed, `on_open`
//!    runs, and the answer carries the id.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::close::CloseReason;
use crate::error::BoxError;
use crate::handle::session::Session;
use crate::http::body::{Req, RequestBody};
use crate::http::endpoint::Endpoint;
use crate::http::factory::SessionFactory;
use crate::http::future::Opened;
use crate::http::peek::read_bounded;
use crate::http::policy::OpenKind;
use crate::http::rejection::Rejection;
use crate::http::route::{admit, new_entry};
use crate::id::SessionId;
use crate::info::{Principal, SessionInfo};
use crate::metrics::{OpenOutcome, StoreOp};
use crate::store::{OpeningRequest, SessionRecord};
use crate::table::Refusal;

/// Attempts at minting an id that is valid and not live before giving up with 500.
const MINT_ATTEMPTS: usize = 3;

/// Everything the opening of one session needs, moved into its future.
pub(crate) struct Opening<S, F> {
    pub(crate) inner: S,
    pub(crate) factory: F,
    pub(crate) endpoint: Arc<Endpoint>,
}

impl<S, F> Opening<S, F> {
    pub(crate) async fn run<B, SB>(
        self,
        parts: Parts,
        body: B,
        principal: Option<Principal>,
    ) -> Result<Opened<F::Service, B>, S::Error>
    where
        S: Service<Req<B>>,
        F: SessionFactory<S>,
        F::Service: Service<Req<B>, Response = Response<SB>> + Clone + Send + Sync + 'static,
        <F::Service as Service<Req<B>>>::Error: Into<S::Error>,
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let endpoint = &*self.endpoint;
        let config = &endpoint.config;
        let table = &endpoint.table;
        let answered = |rejection| Ok(Opened::Answered(config.reject(rejection)));
        let missing = || Rejection::MissingSessionId(config.header.clone());
        let peek = match &config.open.0 {
            OpenKind::AnyRequest => false,
            OpenKind::When(opens) => {
                if !opens(&parts) {
                    return answered(missing());
                }
                false
            }
            OpenKind::McpInitialize => {
                if parts.method != Method::POST {
                    return answered(missing());
                }
                true
            }
        };
        if let Err(why) = table.precheck() {
            config.open_refused(why);
            return answered(config.refused(why));
        }
        // With a cluster the opening request is kept whole for replay: its body is read within
        // the same limits as the MCP peek.
        let clustered = endpoint.clustered;
        let mut kept_body = None;
        let mut protocol = crate::metrics::UNKNOWN_VERSION;
        let body = if peek || clustered {
            let bytes = match read_bounded(config, &endpoint.peek, &parts, body).await {
                Ok(bytes) => bytes,
                Err(rejection) => return answered(rejection),
            };
            if peek {
                match crate::mcp::initialize::is_initialize(&bytes) {
                    Ok(true) => {}
                    Ok(false) => return answered(missing()),
                    Err(error) => return answered(error.into()),
                }
            }
            if clustered {
                kept_body = Some(bytes.clone());
            }
            if cfg!(feature = "metrics") {
                protocol = crate::metrics::version_of(&bytes);
            }
            RequestBody::peeked(bytes)
        } else {
            RequestBody::new(body)
        };
        let opening = kept_body.map(|body| OpeningRequest {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: replay_headers(endpoint.link.replay_headers(), &parts.headers),
            body,
        });

        let reservation = match table.reserve(principal.clone(), config.client_of(&parts)) {
            Ok(reservation) => reservation,
            Err(why) => {
                config.open_refused(why);
                return answered(config.refused(why));
            }
        };
        let Some(id) = mint(endpoint) else {
            config.metrics.open(OpenOutcome::FactoryFailed);
            return answered(Rejection::FactoryFailed);
        };
        crate::http::trace::record_session(&id);
        let info = SessionInfo::created(id, principal, table.wall_now_ms());
        let (service, state) = match self.factory.make_session(info.clone(), self.inner).await {
            Ok(made) => made,
            Err(error) => {
                tracing::error!(%error, session = %info.id().redacted(), "session factory failed");
                config.metrics.open(OpenOutcome::FactoryFailed);
                return answered(Rejection::FactoryFailed);
            }
        };
        let (entry, guard) = new_entry(
            endpoint,
            info.clone(),
            &reservation,
            service.clone(),
            state,
            protocol,
        );
        let mut req = Request::from_parts(parts, body);
        req.extensions_mut().insert(Session::new(&entry));
        let mut service = service;
        poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        let mut response = service.call(req).await.map_err(Into::into)?;
        let keep = match &config.keep_session {
            Some(keep) => keep(response.status(), response.headers()),
            // MCP: the id is assigned only with a successful InitializeResult.
            None => response.status().is_success(),
        };
        if !keep {
            config.metrics.open(OpenOutcome::Declined);
            return Ok(Opened::Served {
                response,
                guard: None,
            });
        }
        if let Some(opening) = opening
            && let Err(rejection) = create_record(endpoint, &info, opening).await
        {
            config.metrics.open(match rejection {
                Rejection::StoreUnavailable(_) => OpenOutcome::StoreUnavailable,
                _ => OpenOutcome::FactoryFailed,
            });
            return answered(rejection);
        }
        let outcome = if reservation.evicted() {
            OpenOutcome::Evicted
        } else {
            OpenOutcome::Opened
        };
        if let Err(why) = admit(endpoint, &entry, reservation) {
            config.open_refused(why);
            if clustered {
                // Written above, never to be used: no client got the id.
                endpoint.link.forget_later(info.id(), CloseReason::Closed);
            }
            return answered(config.refused(why));
        }
        config.metrics.open(outcome);
        response
            .headers_mut()
            .insert(config.header.clone(), info.id().header_value());
        Ok(Opened::Served {
            response,
            guard: Some(guard),
        })
    }
}

/// Writes the record of a session about to open; the rejection if that cannot be done.
async fn create_record(
    endpoint: &Endpoint,
    info: &SessionInfo,
    opening: OpeningRequest,
) -> Result<(), Rejection> {
    let store = match endpoint.link.usable_store() {
        Ok(Some(store)) => store,
        Ok(None) => return Ok(()),
        Err(_) => return Err(Rejection::StoreUnavailable(endpoint.config.retry_after)),
    };
    let record = SessionRecord {
        id: info.id().clone(),
        principal: info.principal().cloned(),
        created_ms: info.created_ms(),
        opening,
    };
    let creating = store.create(&record, endpoint.link.record_ttl());
    let created = endpoint.link.metrics.store(StoreOp::Create, creating).await;
    endpoint.link.store_health(&created);
    match created {
        Ok(true) => Ok(()),
        // Another node holds a session with this id (an id generator that repeats itself):
        // its record is left alone.
        Ok(false) => Err(endpoint.config.refused(Refusal::Collision)),
        Err(_) => Err(Rejection::StoreUnavailable(endpoint.config.retry_after)),
    }
}

/// A fresh id: valid, and not naming a live session.
fn mint(endpoint: &Endpoint) -> Option<SessionId> {
    for _ in 0..MINT_ATTEMPTS {
        let raw = endpoint.config.make_id.make_session_id();
        match SessionId::parse(&raw) {
            Ok(id) if !endpoint.table.contains_key(id.as_str()) => return Some(id),
            Ok(_) => tracing::warn!("session id generator returned a live id"),
            Err(error) => {
                tracing::error!(%error, "session id generator returned an invalid id")
            }
        }
    }
    None
}

/// The headers of `headers` that the cluster's replay headers name; never credentials.
fn replay_headers(names: &[http::HeaderName], headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in names {
        // Credentials never go into a record, whatever the configuration names.
        if is_credential(name) {
            continue;
        }
        for value in headers.get_all(name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Headers that carry credentials: never kept in a store record.
fn is_credential(name: &http::HeaderName) -> bool {
    use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
    *name == AUTHORIZATION || *name == COOKIE || *name == PROXY_AUTHORIZATION
}
