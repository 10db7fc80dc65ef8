//! The path to a session, written once: a request routed to a live session (from the hot path
//! or after a restore), and the entry of a session being opened or restored.

use std::sync::Arc;

use http::Request;
use http::request::Parts;

use crate::cluster::{Entry, Link};
use crate::handle::session::Session;
use crate::http::body::{Req, RequestBody, SessionGuard};
use crate::http::config::Config;
use crate::http::endpoint::Endpoint;
use crate::http::rejection::Rejection;
use crate::info::SessionInfo;
use crate::table::payload::Stored;
use crate::table::{self, Refusal, Reservation};

/// A request ready for its session's service: the service, the request, and the guard that
/// counts it in flight (it moves into the response body).
pub(crate) struct Routed<T, B> {
    pub(crate) service: T,
    pub(crate) request: Req<B>,
    pub(crate) guard: SessionGuard,
}

impl<T, B> Routed<T, B> {
    /// The request, put back together, for the service.
    pub(crate) fn new(service: T, parts: Parts, body: B, guard: SessionGuard) -> Self {
        Self {
            service,
            request: Request::from_parts(parts, RequestBody::new(body)),
            guard,
        }
    }
}

/// Prepares a request for the session of `entry`: returns its per-session service (cloned out
/// of the entry) and puts the [`Session`] extension into `parts`. The hot path and a restored
/// request both go through it; the caller then builds the request (in place on the hot path,
/// where every move of the request is a copy of a few hundred bytes).
#[inline]
pub(crate) fn route<T: Clone + 'static>(
    config: &Config,
    entry: &Arc<Entry>,
    parts: &mut Parts,
) -> Result<T, Rejection> {
    let service = service_of::<T>(entry)?;
    config.metrics.routed();
    if config.session_extension {
        parts.extensions.insert(Session::new(entry));
    }
    Ok(service)
}

/// The per-session service of a live entry, or the rejection for a closed one (or one stored
/// by a layer clone with another service type).
#[inline]
fn service_of<T: Clone + 'static>(entry: &Entry) -> Result<T, Rejection> {
    match entry.payload.service().downcast_ref::<T>() {
        Some(service) if !entry.is_closed() => Ok(service.clone()),
        Some(_) => Err(Rejection::SessionNotFound),
        None => {
            tracing::error!(
                session = %entry.info.id().redacted(),
                "session stored with another per-session service type; build every service of \
                 one layer from the same factory"
            );
            Err(Rejection::SessionNotFound)
        }
    }
}

/// The entry of a session being opened or restored, counted as one request in flight (the
/// opening request, or the client's request after a restore), and the guard that owns that
/// count.
pub(crate) fn new_entry<S, St>(
    endpoint: &Endpoint,
    info: SessionInfo,
    reservation: &Reservation<Link>,
    service: S,
    state: St,
    protocol: u8,
) -> (Arc<Entry>, SessionGuard)
where
    S: Send + Sync + 'static,
    St: Send + Sync + 'static,
{
    let entry: Arc<Entry> = Arc::new(
        table::Entry::new(
            info,
            Arc::clone(&endpoint.link),
            reservation.client().cloned(),
            Stored { service, state },
            endpoint.table.now(),
        )
        .with_protocol(protocol),
    );
    let mut guard = SessionGuard::new(Arc::clone(&entry), endpoint.table.epoch());
    // The request went through a factory and may wait on its service: its end is stamped
    // with a fresh clock read.
    guard.waited();
    (entry, guard)
}

/// Stores a session made by [`new_entry`], runs `on_open` and listens to it on the bus.
pub(crate) fn admit(
    endpoint: &Endpoint,
    entry: &Arc<Entry>,
    reservation: Reservation<Link>,
) -> Result<(), Refusal> {
    endpoint.table.commit(entry, reservation)?;
    endpoint.table.announce(entry);
    // Again for a restore (it listened before reading the record): a copy of the same id
    // that closed here meanwhile may have stopped that listening.
    endpoint.link.listen(entry.info.id());
    Ok(())
}
