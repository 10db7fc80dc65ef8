//! Opening a session: the open policy, the body peek, the slot, the factory, the commit.
//!
//! Everything here runs for requests *without* a session id, so every step is bounded
//! before it is paid for (DESIGN.md, Floods):
//!
//! 1. The open policy's cheap part (method, predicate) decides whether the request may open a
//!    session at all; if not: 400.
//! 2. Shutdown and a full table (that can neither reclaim nor evict) are answered 503
//!    *before* any byte of the body is read.
//! 3. The MCP profile reads the body to see whether it is `initialize`: at most the peek limit
//!    (64 KiB by default; 413 past it), within the peek deadline (10 s; 408 past it), and
//!    within a budget of memory held by all bodies that wait for more data at once, counted
//!    as the memory their copies take (16 MiB; 503 with `Retry-After` past it). So 2,000
//!    connections trickling bodies cost at most the budget, not 2,000 limits; and a body that
//!    arrives whole in its first chunk (the usual `initialize`) never waits and never counts,
//!    so clients that trickle cannot lock out one that sends its body at once. The body is
//!    probed without building a JSON tree.
//! 4. Only then is a slot reserved (global, per-principal and per-client limits; reclaim or
//!    eviction when full), an id minted, and the factory called.
//! 5. The session is stored only if the per-session service's answer says so (2xx by
//!    default), and `on_open` runs.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
#[cfg(feature = "mcp")]
use http::Method;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use tower_service::Service;

use crate::body::{BoxError, RequestBody, SessionGuard};
use crate::config::Config;
use crate::factory::SessionFactory;
use crate::hooks::CloseReason;
use crate::id::SessionId;
use crate::info::{Principal, SessionInfo};
use crate::policy::OpenKind;
use crate::registry::{DynEntry, Entry, Refusal, Registry, Stored};
use crate::rejection::Rejection;
use crate::service::{Req, reject};
use crate::session::Session;
use crate::store::{OpeningRequest, SessionRecord};

/// Attempts at minting an id that is valid and not live before giving up with 500.
const MINT_ATTEMPTS: usize = 3;

/// What opening produced: the layer's own answer, or the per-session service's (with the
/// session's guard if the session was kept).
pub(crate) enum Opened<R> {
    Rejected(Response<Bytes>),
    Served {
        response: R,
        guard: Option<SessionGuard>,
    },
}

/// Everything the opening of one session needs, moved into its future.
pub(crate) struct Opening<S, F> {
    pub(crate) inner: S,
    pub(crate) factory: F,
    pub(crate) registry: Arc<Registry>,
}

pub(crate) fn refusal(config: &Config, refusal: Refusal) -> Rejection {
    match refusal {
        Refusal::ShutDown => Rejection::ShuttingDown,
        Refusal::Full => {
            tracing::warn!("session limit reached");
            Rejection::TooManySessions(config.retry_after)
        }
        Refusal::KeyLimit => Rejection::ClientSessionLimit(config.retry_after),
        Refusal::Collision => {
            tracing::error!("minted session id collided with a live one");
            Rejection::FactoryFailed
        }
    }
}

impl<S, F> Opening<S, F> {
    pub(crate) async fn run<B, SB>(
        self,
        parts: Parts,
        body: B,
        principal: Option<Principal>,
    ) -> Result<Opened<Response<SB>>, S::Error>
    where
        S: Service<Req<B>>,
        F: SessionFactory<S>,
        F::Service: Service<Req<B>, Response = Response<SB>> + Clone + Send + Sync + 'static,
        <F::Service as Service<Req<B>>>::Error: Into<S::Error>,
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let registry = &*self.registry;
        let config = &registry.config;
        let rejected = |rejection| Ok(Opened::Rejected(reject(config, rejection)));
        let missing = || Rejection::MissingSessionId(config.header.clone());
        let peek = match &config.open.0 {
            OpenKind::AnyRequest => false,
            OpenKind::When(opens) => {
                if !opens(&parts) {
                    return rejected(missing());
                }
                false
            }
            #[cfg(feature = "mcp")]
            OpenKind::McpInitialize => {
                if parts.method != Method::POST {
                    return rejected(missing());
                }
                true
            }
        };
        if let Err(why) = registry.precheck() {
            return rejected(refusal(config, why));
        }
        // With a shared store the opening request is kept whole for replay: its body is read
        // within the same limits as the MCP peek.
        let shared = registry.shared;
        let mut kept_body = None;
        let body = if peek || shared {
            let bytes = match read_bounded(registry, &parts, body).await {
                Ok(bytes) => bytes,
                Err(rejection) => return rejected(rejection),
            };
            if peek && let Err(rejection) = check_initialize(config, &bytes) {
                return rejected(rejection);
            }
            if shared {
                kept_body = Some(bytes.clone());
            }
            RequestBody::peeked(bytes)
        } else {
            RequestBody::new(body)
        };
        let opening = kept_body.map(|body| OpeningRequest {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: replay_headers(config, &parts.headers),
            body,
        });
        let client = config.client_key.as_ref().and_then(|key| key(&parts));

        let reservation = match self.registry.reserve(principal.clone(), client) {
            Ok(reservation) => reservation,
            Err(why) => return rejected(refusal(config, why)),
        };
        let Some(id) = mint(registry) else {
            return rejected(Rejection::FactoryFailed);
        };
        let info = SessionInfo::created(id, principal, registry.wall_now_ms());
        let (service, state) = match self.factory.make_session(info.clone(), self.inner).await {
            Ok(made) => made,
            Err(error) => {
                tracing::error!(%error, session = %info.id().redacted(), "session factory failed");
                return rejected(Rejection::FactoryFailed);
            }
        };
        let entry: Arc<DynEntry> = Arc::new(Entry::new(
            info.clone(),
            Arc::clone(registry.node()),
            reservation.client().cloned(),
            Stored {
                service: service.clone(),
                state,
            },
            registry.now(),
        ));
        // `Entry::new` counted the opening request in flight; the guard owns that count. The
        // opening request went through a factory and may wait on its service: stamp its end.
        let mut guard = SessionGuard::new(Arc::clone(&entry), registry.epoch());
        guard.waited();
        let mut req = Request::from_parts(parts, body);
        req.extensions_mut().insert(Session {
            entry: Arc::clone(&entry),
        });
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
            return Ok(Opened::Served {
                response,
                guard: None,
            });
        }
        if let Some(opening) = opening {
            let record = SessionRecord {
                id: info.id().clone(),
                principal: info.principal().cloned(),
                created_ms: info.created_ms(),
                opening,
            };
            let node = registry.node();
            let created = node.store.create(&record, record_ttl(config)).await;
            node.store_health(&created);
            match created {
                Ok(true) => {}
                // Another node holds a session with this id (an id generator that repeats
                // itself): its record is left alone.
                Ok(false) => return rejected(refusal(config, Refusal::Collision)),
                Err(_) => return rejected(Rejection::StoreUnavailable(config.retry_after)),
            }
        }
        if let Err(why) = registry.commit(&entry, reservation) {
            if registry.shared {
                // Written above, never to be used: no client got the id.
                registry.node().forget_later(info.id(), CloseReason::Closed);
            }
            return rejected(refusal(config, why));
        }
        registry.announce(&entry);
        registry.node().opened(info.id());
        let value =
            HeaderValue::from_str(info.id().as_str()).expect("session ids are visible ASCII");
        response.headers_mut().insert(config.header.clone(), value);
        Ok(Opened::Served {
            response,
            guard: Some(guard),
        })
    }
}

/// A fresh id: valid, and not naming a live session.
fn mint(registry: &Registry) -> Option<SessionId> {
    for _ in 0..MINT_ATTEMPTS {
        let raw = registry.config.make_id.make_session_id();
        match SessionId::parse(&raw) {
            Ok(id) if !registry.contains_key(id.as_str()) => return Some(id),
            Ok(_) => tracing::warn!("session id generator returned a live id"),
            Err(error) => {
                tracing::error!(%error, "session id generator returned an invalid id")
            }
        }
    }
    None
}

/// Bytes of the peek budget held by one request; given back on drop.
struct Held<'a> {
    registry: &'a Registry,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.registry.release_peek(self.bytes);
    }
}

/// The time to live of a session's store record: the idle timeout (`None` without one).
pub(crate) fn record_ttl(config: &Config) -> Option<std::time::Duration> {
    (config.idle_ms != 0).then(|| std::time::Duration::from_millis(config.idle_ms))
}

/// The headers of `headers` that [`SessionLayer::replay_headers`](crate::SessionLayer::replay_headers)
/// names.
fn replay_headers(config: &Config, headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in &config.replay_headers {
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

/// An opening request's body must be an `initialize` request (MCP profile).
#[cfg_attr(not(feature = "mcp"), allow(unused_variables))]
fn check_initialize(config: &Config, bytes: &[u8]) -> Result<(), Rejection> {
    #[cfg(feature = "mcp")]
    if crate::mcp::is_initialize(bytes)? {
        return Ok(());
    }
    Err(Rejection::MissingSessionId(config.header.clone()))
}

/// Reads the body of a request without an id, within the peek limit, deadline and budget.
async fn read_bounded<B>(registry: &Registry, parts: &Parts, body: B) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let config = &registry.config;
    let limit = config.peek_limit;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Rejection::PayloadTooLarge(limit));
    }
    // The deadline is a tokio timer: only inside a runtime.
    let deadline = config
        .peek_timeout
        .filter(|_| tokio::runtime::Handle::try_current().is_ok())
        .map(|timeout| tokio::time::Instant::now() + timeout);
    let mut held = Held { registry, bytes: 0 };
    let mut whole: Option<Bytes> = None;
    let mut parked = BytesMut::new();
    let mut body = std::pin::pin!(body);
    loop {
        let next = body.frame();
        let frame = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, next)
                .await
                .map_err(|_| Rejection::RequestTimeout)?,
            None => next.await,
        };
        let data = match frame {
            None => break,
            // The client broke off the body: nothing readable to parse.
            Some(Err(_)) => return Err(Rejection::ParseError),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        let whole_len = whole.as_ref().map_or(0, Bytes::len);
        let received = whole_len + parked.len() + data.len();
        if received > limit {
            return Err(Rejection::PayloadTooLarge(limit));
        }
        let complete = body.is_end_stream() || declared.is_some_and(|len| received as u64 >= len);
        if complete && received == data.len() {
            // The whole body came at once (the usual case): nothing waits, so nothing counts
            // against the budget, and it is parsed as it came, without a copy. (The loop still
            // reads to the end: a body longer than it declared is caught by the limit.)
            whole = Some(data);
            continue;
        }
        // The body is waiting for more: it is copied (so that no buffer of the connection's is
        // pinned) and the memory that copy holds, its capacity, counts against the budget.
        let before = parked.capacity();
        parked.reserve(whole_len + data.len());
        let grown = parked.capacity() - before;
        if !registry.hold_peek(grown) {
            return Err(Rejection::Busy(config.retry_after));
        }
        held.bytes += grown;
        if let Some(first) = whole.take() {
            parked.extend_from_slice(&first);
        }
        parked.extend_from_slice(&data);
    }
    Ok(whole.unwrap_or_else(|| parked.freeze()))
}
