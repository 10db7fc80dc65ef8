//! One `tracing` span per request the layer handles (cargo feature `spans`).
//!
//! The span is `mcp_session.request` at DEBUG level, with the fields
//!
//! - `session`: the session id, redacted as the logs redact it (its first 8 bytes), once
//!   known: from the header, or when an opening request's id is minted;
//! - `mcp.protocol.version`: the request's `MCP-Protocol-Version` header, if any;
//! - `decision`: what the layer did: `routed` (to a session live here), `restored` (from the
//!   store, then routed), `opened`, `declined` (the service answered the opening request
//!   without success; nothing stored), `closed` (the close policy: DELETE), `sessionless` (to
//!   the inner service), `rejected` (the layer answered);
//! - `http.response.status_code`: the status of the answer.
//!
//! The layer's events (`session opened`, `session closed`, `request rejected`, the store's
//! warnings) happen inside it. The future is entered on each poll; a response body streaming
//! after the future finished is outside the span.
//!
//! Why a feature: without it nothing here is compiled in (the type is zero-sized), so the
//! hot path pays nothing. With it and no subscriber interested in DEBUG spans of this crate,
//! each request pays one callsite check and carries an empty span (a few words) in its
//! future. Attach an OpenTelemetry exporter with `tracing-opentelemetry`'s layer on the
//! subscriber: each span becomes an OpenTelemetry span with these attributes.

use http::{HeaderMap, StatusCode};

/// The span of one request (zero-sized without the `spans` feature).
pub(crate) struct Trace {
    #[cfg(feature = "spans")]
    span: tracing::Span,
    /// Whether the request was restored before it was routed.
    #[cfg(feature = "spans")]
    restored: std::cell::Cell<bool>,
}

/// What the layer decided for a request, as the span's `decision` field says it.
#[cfg_attr(not(feature = "spans"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) enum Decision {
    Routed,
    Restored,
    Opened,
    Declined,
    Closed,
    Sessionless,
    Rejected,
}

impl Decision {
    #[cfg(feature = "spans")]
    fn as_str(self) -> &'static str {
        match self {
            Self::Routed => "routed",
            Self::Restored => "restored",
            Self::Opened => "opened",
            Self::Declined => "declined",
            Self::Closed => "closed",
            Self::Sessionless => "sessionless",
            Self::Rejected => "rejected",
        }
    }
}

impl Trace {
    /// No span (the futures the layer makes for itself).
    #[inline(always)]
    pub(crate) fn none() -> Self {
        Self {
            #[cfg(feature = "spans")]
            span: tracing::Span::none(),
            #[cfg(feature = "spans")]
            restored: std::cell::Cell::new(false),
        }
    }

    /// The span of a request with `headers`.
    #[inline(always)]
    pub(crate) fn request(headers: &HeaderMap) -> Self {
        #[cfg(feature = "spans")]
        {
            let version = headers
                .get(crate::mcp::MCP_PROTOCOL_VERSION)
                .and_then(|v| v.to_str().ok());
            let span = tracing::debug_span!(
                "mcp_session.request",
                session = tracing::field::Empty,
                mcp.protocol.version = version,
                decision = tracing::field::Empty,
                http.response.status_code = tracing::field::Empty,
            );
            Self {
                span,
                restored: std::cell::Cell::new(false),
            }
        }
        #[cfg(not(feature = "spans"))]
        {
            let _ = headers;
            Self {}
        }
    }

    /// Names the request's session (redacted).
    #[inline(always)]
    pub(crate) fn session(&self, id: &str) {
        #[cfg(feature = "spans")]
        self.span
            .record("session", tracing::field::display(crate::id::redact(id)));
        #[cfg(not(feature = "spans"))]
        let _ = id;
    }

    /// Enters the span for one poll (nothing without the feature).
    #[inline(always)]
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered {
            #[cfg(feature = "spans")]
            _entered: self.span.enter(),
            _span: std::marker::PhantomData,
        }
    }

    /// Notes that the request's session was restored before the request was routed.
    #[inline(always)]
    pub(crate) fn restored(&self) {
        #[cfg(feature = "spans")]
        self.restored.set(true);
    }

    /// Records the decision and the answer's status.
    #[inline(always)]
    pub(crate) fn decided(&self, decision: Decision, status: StatusCode) {
        #[cfg(feature = "spans")]
        {
            let decision = match decision {
                Decision::Routed if self.restored.get() => Decision::Restored,
                other => other,
            };
            self.span.record("decision", decision.as_str());
            self.span
                .record("http.response.status_code", status.as_u16());
        }
        #[cfg(not(feature = "spans"))]
        let _ = (decision, status);
    }
}

/// The span entered for one poll.
pub(crate) struct Entered<'a> {
    #[cfg(feature = "spans")]
    _entered: tracing::span::Entered<'a>,
    _span: std::marker::PhantomData<&'a ()>,
}

/// Names the session of the request being handled now, in the current span (an opening
/// request's id, once minted; nothing without the feature).
#[inline(always)]
pub(crate) fn record_session(id: &crate::id::SessionId) {
    #[cfg(feature = "spans")]
    tracing::Span::current().record("session", tracing::field::display(id.redacted()));
    #[cfg(not(feature = "spans"))]
    let _ = id;
}
