//! The HTTP layer's settings, frozen when the layer is built.
//!
//! [`SessionLayerBuilder`](crate::SessionLayerBuilder)'s methods change a plain [`Config`]
//! value (and the table's [`TableSettings`](crate::table::TableSettings)); `build` freezes
//! them. Only the session limit can change afterwards, through
//! [`Sessions::set_max_sessions`](crate::Sessions::set_max_sessions).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Response, StatusCode};

use crate::cluster::flight::Failure;
use crate::http::policy::{ClosePolicy, OpenPolicy};
use crate::http::profile::Profile;
use crate::http::rejection::Rejection;
use crate::id::MakeSessionId;
use crate::info::{ClientKey, Principal};
use crate::metrics::{Metrics, OpenOutcome};
use crate::table::Refusal;

pub(crate) type PrincipalFn = Arc<dyn Fn(&Parts) -> Option<Principal> + Send + Sync>;
pub(crate) type ClientKeyFn = Arc<dyn Fn(&Parts) -> Option<ClientKey> + Send + Sync>;
pub(crate) type PartsPredicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;
pub(crate) type RejectionFn = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync>;
pub(crate) type KeepFn = Arc<dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync>;

/// Everything the layer's services read; see the builder methods of
/// [`SessionLayerBuilder`](crate::SessionLayerBuilder) for each field's meaning and default.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) header: HeaderName,
    pub(crate) open: OpenPolicy,
    pub(crate) close: ClosePolicy,
    pub(crate) profile: Profile,
    pub(crate) peek_limit: usize,
    pub(crate) peek_timeout: Option<Duration>,
    pub(crate) peek_budget: usize,
    pub(crate) retry_after: Duration,
    pub(crate) sessionless: Option<PartsPredicate>,
    pub(crate) make_id: Arc<dyn MakeSessionId>,
    pub(crate) principal: Option<PrincipalFn>,
    pub(crate) client_key: Option<ClientKeyFn>,
    pub(crate) rejection: Option<RejectionFn>,
    pub(crate) keep_session: Option<KeepFn>,
    pub(crate) session_extension: bool,
    /// The layer's series (registered at build; a no-op set before).
    pub(crate) metrics: Metrics,
}

impl Config {
    pub(crate) fn new(profile: Profile, open: OpenPolicy, close: ClosePolicy) -> Self {
        Self {
            header: crate::mcp::MCP_SESSION_ID,
            open,
            close,
            profile,
            peek_limit: 64 * 1024,
            peek_timeout: Some(Duration::from_secs(10)),
            peek_budget: 16 * 1024 * 1024,
            retry_after: Duration::from_secs(5),
            sessionless: None,
            make_id: Arc::new(crate::id::UuidV4),
            principal: None,
            client_key: None,
            rejection: None,
            keep_session: None,
            session_extension: true,
            metrics: Metrics::default(),
        }
    }

    /// Whether a request of `principal` may use a session bound to `owner`: always when the
    /// layer binds no principals, else only the same one (a request without a principal uses
    /// only sessions opened without one).
    pub(crate) fn owns(&self, principal: Option<&Principal>, owner: Option<&Principal>) -> bool {
        self.principal.is_none() || owner == principal
    }

    /// The principal of a request, if the layer binds sessions to principals.
    pub(crate) fn principal_of(&self, parts: &Parts) -> Option<Principal> {
        self.principal.as_ref().and_then(|extract| extract(parts))
    }

    /// The client key of an opening request, if the layer limits clients.
    pub(crate) fn client_of(&self, parts: &Parts) -> Option<ClientKey> {
        self.client_key.as_ref().and_then(|key| key(parts))
    }

    /// The response of the layer's own making for `rejection`: the configured responder's,
    /// or [`Rejection::to_response`].
    pub(crate) fn reject(&self, rejection: Rejection) -> Response<Bytes> {
        tracing::debug!(%rejection, "request rejected");
        self.metrics.rejected(rejection.metric_kind());
        match &self.rejection {
            Some(responder) => responder(&rejection),
            None => rejection.to_response(),
        }
    }

    /// The answer to a table that gave no place for a session.
    pub(crate) fn refused(&self, refusal: Refusal) -> Rejection {
        match refusal {
            Refusal::ShutDown => Rejection::ShuttingDown,
            Refusal::Full => {
                tracing::warn!("session limit reached");
                Rejection::TooManySessions(self.retry_after)
            }
            Refusal::KeyLimit => Rejection::ClientSessionLimit(self.retry_after),
            Refusal::Collision => {
                tracing::error!("minted session id collided with a live one");
                Rejection::FactoryFailed
            }
        }
    }

    /// Counts an open attempt that the table refused.
    pub(crate) fn open_refused(&self, refusal: Refusal) {
        self.metrics.open(match refusal {
            Refusal::Full => OpenOutcome::TableFull,
            Refusal::ShutDown | Refusal::KeyLimit => OpenOutcome::Refused,
            Refusal::Collision => OpenOutcome::FactoryFailed,
        });
    }

    /// The answer to a restore that failed for every request of the id.
    pub(crate) fn failed(&self, failure: Failure) -> Rejection {
        match failure {
            Failure::NotFound => Rejection::SessionNotFound,
            Failure::StoreUnavailable => Rejection::StoreUnavailable(self.retry_after),
            Failure::ReplayFailed => Rejection::ReplayFailed(self.retry_after),
            Failure::FactoryFailed => Rejection::FactoryFailed,
            Failure::ShuttingDown => Rejection::ShuttingDown,
        }
    }
}
