//! [`OpenPolicy`]: which requests without a session id open a new session; [`ClosePolicy`]:
//! which requests with one close it.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;

type Predicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Decides which requests without a session id open a session. Any other request without an
/// id is answered 400 Bad Request ([`Rejection::MissingSessionId`](crate::Rejection)).
#[derive(Clone)]
pub struct OpenPolicy(pub(crate) OpenKind);

#[derive(Clone)]
pub(crate) enum OpenKind {
    AnyRequest,
    When(Predicate),
    McpInitialize,
}

impl OpenPolicy {
    /// Every request without a session id opens a session. The default of
    /// [`SessionLayer::generic`](crate::SessionLayer::generic); suits protocols where the first
    /// request of a client is its handshake (a gRPC client's first call, say).
    pub fn any_request() -> Self {
        Self(OpenKind::AnyRequest)
    }

    /// Requests for which `predicate` returns `true` open a session; it sees the method,
    /// URI, headers and extensions, not the body.
    pub fn when<P>(predicate: P) -> Self
    where
        P: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        Self(OpenKind::When(Arc::new(predicate)))
    }

    /// The MCP rule, the default of [`SessionLayer::mcp`](crate::SessionLayer::mcp): a POST
    /// whose body is a JSON-RPC `initialize` request opens a session (MCP 2025-11-25,
    /// Streamable HTTP, Session Management). The body is read up to the
    /// [peek limit](crate::SessionLayerBuilder::peek_limit) and handed on unchanged. A body over the
    /// limit gets 413 Payload Too Large, one that is not JSON 400 (JSON-RPC -32700), a batch
    /// holding `initialize` 400 (JSON-RPC -32600).
    pub fn mcp_initialize() -> Self {
        Self(OpenKind::McpInitialize)
    }
}

impl fmt::Debug for OpenPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            OpenKind::AnyRequest => "OpenPolicy::AnyRequest",
            OpenKind::When(_) => "OpenPolicy::When(..)",
            OpenKind::McpInitialize => "OpenPolicy::McpInitialize",
        })
    }
}

/// Decides which requests carrying a session id close their session. A request the policy
/// does not claim goes to the session's service like any other request.
///
/// A claimed request is answered by the layer: 204 No Content after closing a live session
/// (the close hook runs with [`CloseReason::Deleted`](crate::CloseReason::Deleted)), 404 Not
/// Found for an unknown id.
#[derive(Clone)]
pub struct ClosePolicy(pub(crate) CloseKind);

#[derive(Clone)]
pub(crate) enum CloseKind {
    Never,
    When(Predicate),
    Delete,
    RefuseDelete,
}

impl ClosePolicy {
    /// No request closes a session; DELETE passes through to the session's service. The
    /// default of [`SessionLayer::generic`](crate::SessionLayer::generic): sessions end by expiry,
    /// eviction or [`Sessions::close`](crate::Sessions::close).
    pub fn never() -> Self {
        Self(CloseKind::Never)
    }

    /// Requests for which `predicate` returns `true` close their session (a `POST /logout`,
    /// say); it sees the method, URI, headers and extensions, not the body.
    pub fn when<P>(predicate: P) -> Self
    where
        P: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        Self(CloseKind::When(Arc::new(predicate)))
    }

    /// The MCP rule, the default of [`SessionLayer::mcp`](crate::SessionLayer::mcp): every
    /// DELETE closes its session (MCP 2025-11-25, Streamable HTTP, Session Management: "the
    /// client SHOULD send an HTTP DELETE to the MCP endpoint with the `Mcp-Session-Id`
    /// header, to explicitly terminate the session").
    pub fn delete() -> Self {
        Self(CloseKind::Delete)
    }

    /// DELETE is answered 405 Method Not Allowed with `Allow: GET, POST` and closes nothing
    /// (MCP 2025-11-25: "The server MAY respond to this request with HTTP 405 Method Not
    /// Allowed, indicating that the server does not allow clients to terminate sessions").
    pub fn refuse_delete() -> Self {
        Self(CloseKind::RefuseDelete)
    }

    /// Whether the policy lets a client close sessions at all (for the MCP `Allow` header).
    pub(crate) fn allows_delete(&self) -> bool {
        !matches!(self.0, CloseKind::RefuseDelete)
    }
}

impl fmt::Debug for ClosePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            CloseKind::Never => "ClosePolicy::Never",
            CloseKind::When(_) => "ClosePolicy::When(..)",
            CloseKind::Delete => "ClosePolicy::Delete",
            CloseKind::RefuseDelete => "ClosePolicy::RefuseDelete",
        })
    }
}
