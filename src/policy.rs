//! [`OpenPolicy`]: which requests without a session id open a new session.

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
    /// [`SessionLayer::new`](crate::SessionLayer::new); suits protocols where the first
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
    /// [peek limit](crate::SessionLayer::peek_limit) and handed on unchanged. A body over the
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
