//! [`SessionFactory`]: builds the service that serves one session.

use std::fmt;
use std::future::Future;

use crate::info::SessionInfo;

/// Builds the per-session service when a session opens.
///
/// Called once per opening request with the new session's [`SessionInfo`] and a clone of the
/// inner service the layer wraps (use it as a template, or ignore it). The returned service
/// serves every request of that session; it is cloned for each request, so it must be
/// `Clone`, and clones must share the session's state (hold it in an `Arc`). A service that
/// cannot be cloned can be wrapped in `tower::buffer::Buffer`.
///
/// If the factory fails, the opening request is answered 500 Internal Server Error
/// (JSON-RPC -32603), the error is logged with `tracing`, and no session is stored.
///
/// Implemented for every `Fn(SessionInfo, S) -> Future<Output = Result<Service, Error>>`
/// closure, including `async` closures.
pub trait SessionFactory<S>: Clone + Send + Sync + 'static {
    /// The per-session service.
    type Service;
    /// Why a session could not be built; logged, never sent to the client.
    type Error: fmt::Display;
    /// Resolves to the per-session service.
    type Future: Future<Output = Result<Self::Service, Self::Error>> + Send + 'static;

    /// Builds the service for the session described by `info`; `inner` is a clone of the
    /// service the layer wraps.
    fn make_session(&self, info: SessionInfo, inner: S) -> Self::Future;
}

impl<S, F, Fut, T, E> SessionFactory<S> for F
where
    F: Fn(SessionInfo, S) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: fmt::Display,
{
    type Service = T;
    type Error = E;
    type Future = Fut;

    fn make_session(&self, info: SessionInfo, inner: S) -> Self::Future {
        self(info, inner)
    }
}
