//! axum extractors (feature `axum`): [`Session`], [`SessionInfo`] and [`SessionState`].
//!
//! They read the [`Session`] the layer puts into the extensions of every request it routes to
//! a session. A handler that is not behind a [`SessionLayer`](crate::SessionLayer) (or behind
//! one with [`session_extension(false)`](crate::SessionLayerBuilder::session_extension)) gets 500
//! Internal Server Error with a message saying so: a wiring mistake, not a client error.
//! `Option<Session>` and `Option<SessionInfo>` never fail.

use std::convert::Infallible;
use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::handle::session::Session;
use crate::info::SessionInfo;

/// Rejection of the session extractors: the request carries no [`Session`], or its state is
/// not of the asked type. Answered 500 Internal Server Error with a plain-text explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingSession {
    /// No [`Session`] in the request's extensions.
    NoSession,
    /// The session's state is not of the type the [`SessionState`] extractor asked for.
    WrongStateType(&'static str),
}

impl fmt::Display for MissingSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSession => f.write_str(
                "no session on this request: is the handler behind a SessionLayer (use \
                 route_service, nest_service or ServiceBuilder::new().layer(layer).service(router), \
                 not Router::layer), with session_extension on (the default)?",
            ),
            Self::WrongStateType(ty) => write!(
                f,
                "the session's state is not a {ty}: the factory returns another state type"
            ),
        }
    }
}

impl std::error::Error for MissingSession {}

impl IntoResponse for MissingSession {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSession;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSession::NoSession)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Session>().cloned())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionInfo {
    type Rejection = MissingSession;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .map(|session| session.info().clone())
            .ok_or(MissingSession::NoSession)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for SessionInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts
            .extensions
            .get::<Session>()
            .map(|session| session.info().clone()))
    }
}

/// Extracts a clone of the session's typed state (what the factory returned next to the
/// service, see [`with_state`](crate::with_state)). Keep shared parts in an `Arc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionState<T>(pub T);

impl<S: Send + Sync, T: Clone + Send + Sync + 'static> FromRequestParts<S> for SessionState<T> {
    type Rejection = MissingSession;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let session = parts
            .extensions
            .get::<Session>()
            .ok_or(MissingSession::NoSession)?;
        session
            .state::<T>()
            .cloned()
            .map(SessionState)
            .ok_or(MissingSession::WrongStateType(std::any::type_name::<T>()))
    }
}
