//! Requests the layer answers itself: [`Rejection`] and its default HTTP responses.
//!
//! Every rejection has a status code and, by default, a JSON-RPC 2.0 error body with
//! `"id": null`, as the official MCP SDKs send:
//!
//! | rejection | status | JSON-RPC code |
//! |---|---|---|
//! | [`MissingSessionId`](Rejection::MissingSessionId) | 400 Bad Request | -32000 |
//! | [`InvalidSessionId`](Rejection::InvalidSessionId) | 400 Bad Request | -32000 |
//! | [`InvalidProtocolVersion`](Rejection::InvalidProtocolVersion) | 400 Bad Request | -32000 |
//! | [`ParseError`](Rejection::ParseError) | 400 Bad Request | -32700 |
//! | [`BatchedInitialize`](Rejection::BatchedInitialize) | 400 Bad Request | -32600 |
//! | [`SessionNotFound`](Rejection::SessionNotFound) | 404 Not Found | -32001 |
//! | [`MethodNotAllowed`](Rejection::MethodNotAllowed) | 405 Method Not Allowed, `Allow` | -32000 |
//! | [`RequestTimeout`](Rejection::RequestTimeout) | 408 Request Timeout | -32000 |
//! | [`PayloadTooLarge`](Rejection::PayloadTooLarge) | 413 Payload Too Large | -32000 |
//! | [`ClientSessionLimit`](Rejection::ClientSessionLimit) | 429 Too Many Requests, `Retry-After` | -32000 |
//! | [`FactoryFailed`](Rejection::FactoryFailed) | 500 Internal Server Error | -32603 |
//! | [`TooManySessions`](Rejection::TooManySessions) | 503 Service Unavailable, `Retry-After` | -32000 |
//! | [`PeekBudgetSpent`](Rejection::PeekBudgetSpent) | 503 Service Unavailable, `Retry-After` | -32000 |
//! | [`TooManyRestores`](Rejection::TooManyRestores) | 503 Service Unavailable, `Retry-After` | -32000 |
//! | [`ReplayFailed`](Rejection::ReplayFailed) | 503 Service Unavailable, `Retry-After` | -32000 |
//! | [`StoreUnavailable`](Rejection::StoreUnavailable) | 503 Service Unavailable, `Retry-After` | -32000 |
//! | [`ShuttingDown`](Rejection::ShuttingDown) | 503 Service Unavailable | -32000 |
//!
//! Replace the responses with
//! [`SessionLayerBuilder::rejection`](crate::SessionLayerBuilder::rejection), e.g. to answer
//! gRPC clients with a `grpc-status`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};

use crate::id::InvalidSessionId;
use crate::mcp::{MCP_SESSION_ID, McpError};
use crate::metrics::RejectKind;

/// A request the layer answered itself instead of passing it on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The request carries no session id and does not open a session (MCP 2025-11-25,
    /// Streamable HTTP, Session Management: "Servers that require a session ID SHOULD respond
    /// to requests without an `Mcp-Session-Id` header (other than initialization) with HTTP
    /// 400 Bad Request"). Holds the name of the session header.
    MissingSessionId(HeaderName),
    /// The session header is empty, too long, repeated or holds bytes outside visible ASCII.
    InvalidSessionId(InvalidSessionHeader),
    /// The `MCP-Protocol-Version` header is not a `YYYY-MM-DD` version (MCP 2025-11-25,
    /// Streamable HTTP, Protocol Version Header: an invalid version gets 400 Bad Request).
    InvalidProtocolVersion,
    /// The body of a request that may open a session is not JSON.
    ParseError,
    /// `initialize` sent inside a JSON-RPC batch (MCP 2025-03-26 forbids it; later
    /// versions removed batches).
    BatchedInitialize,
    /// The id names no live session: never issued, expired, closed, or bound to another
    /// principal (MCP 2025-11-25: "the server MUST respond to requests containing that
    /// session ID with HTTP 404 Not Found").
    SessionNotFound,
    /// The HTTP method is not served here; holds the methods for the `Allow` header.
    MethodNotAllowed(&'static str),
    /// The body of a request that may open a session did not arrive within the
    /// [peek timeout](crate::SessionLayerBuilder::peek_timeout).
    RequestTimeout,
    /// The body of a request that may open a session exceeds the peek limit (bytes).
    PayloadTooLarge(usize),
    /// The principal or client of an opening request already holds its most sessions
    /// ([`max_sessions_per_principal`](crate::SessionLayerBuilder::max_sessions_per_principal),
    /// [`max_sessions_per_client`](crate::SessionLayerBuilder::max_sessions_per_client));
    /// clients should retry after the given delay.
    ClientSessionLimit(Duration),
    /// The session factory returned an error; nothing was stored.
    FactoryFailed,
    /// The session limit is reached; clients should retry after the given delay.
    TooManySessions(Duration),
    /// The bodies being read from clients without a session already hold the
    /// [peek budget](crate::SessionLayerBuilder::peek_budget); clients should retry after the
    /// given delay.
    PeekBudgetSpent(Duration),
    /// With a [cluster](crate::Cluster): this node is restoring (or deleting) as many sessions
    /// it does not hold as it allows at once (256); clients should retry after the given
    /// delay, which a load balancer may send elsewhere.
    TooManyRestores(Duration),
    /// With a [cluster](crate::Cluster): restoring the session on this node failed in a way
    /// that may pass (the per-session service answered the replayed opening request with 5xx,
    /// 408 or 429, or not within 5 s); the session's record stays, and clients should retry
    /// after the given delay.
    ReplayFailed(Duration),
    /// The [cluster](crate::Cluster)'s store did not answer while opening a session or
    /// restoring or deleting one (never 404: the session may well exist); carries the
    /// `Retry-After` delay.
    StoreUnavailable(Duration),
    /// [`Sessions::shutdown`](crate::Sessions::shutdown) was called; no session opens.
    ShuttingDown,
}

/// What is wrong with a session header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidSessionHeader {
    /// The header appears more than once.
    Repeated,
    /// The value breaks the id rules.
    Invalid(InvalidSessionId),
}

impl fmt::Display for InvalidSessionHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Repeated => f.write_str("session header is repeated"),
            Self::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InvalidSessionHeader {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Repeated => None,
            Self::Invalid(e) => Some(e),
        }
    }
}

impl Rejection {
    /// The HTTP status of the default response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingSessionId(_)
            | Self::InvalidSessionId(_)
            | Self::InvalidProtocolVersion
            | Self::ParseError
            | Self::BatchedInitialize => StatusCode::BAD_REQUEST,
            Self::SessionNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ClientSessionLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::FactoryFailed => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TooManySessions(_)
            | Self::PeekBudgetSpent(_)
            | Self::TooManyRestores(_)
            | Self::ReplayFailed(_)
            | Self::StoreUnavailable(_)
            | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The label of this rejection in the layer's metrics.
    pub(crate) fn metric_kind(&self) -> RejectKind {
        match self {
            Self::MissingSessionId(_) => RejectKind::MissingSessionId,
            Self::InvalidSessionId(_) => RejectKind::InvalidSessionId,
            Self::InvalidProtocolVersion => RejectKind::InvalidProtocolVersion,
            Self::ParseError => RejectKind::ParseError,
            Self::BatchedInitialize => RejectKind::BatchedInitialize,
            Self::SessionNotFound => RejectKind::SessionNotFound,
            Self::MethodNotAllowed(_) => RejectKind::MethodNotAllowed,
            Self::RequestTimeout => RejectKind::RequestTimeout,
            Self::PayloadTooLarge(_) => RejectKind::PayloadTooLarge,
            Self::ClientSessionLimit(_) => RejectKind::ClientSessionLimit,
            Self::FactoryFailed => RejectKind::FactoryFailed,
            Self::TooManySessions(_) => RejectKind::TooManySessions,
            Self::PeekBudgetSpent(_) => RejectKind::PeekBudgetSpent,
            Self::TooManyRestores(_) => RejectKind::TooManyRestores,
            Self::ReplayFailed(_) => RejectKind::ReplayFailed,
            Self::StoreUnavailable(_) => RejectKind::StoreUnavailable,
            Self::ShuttingDown => RejectKind::ShuttingDown,
        }
    }

    /// The JSON-RPC error code of the default body.
    pub fn json_rpc_code(&self) -> i32 {
        match self {
            Self::SessionNotFound => -32001,
            Self::ParseError => -32700,
            Self::BatchedInitialize => -32600,
            Self::FactoryFailed => -32603,
            _ => -32000,
        }
    }

    /// The JSON-RPC error message of the default body.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Self::MissingSessionId(header) if *header == MCP_SESSION_ID => {
                "Bad Request: Mcp-Session-Id header is required".into()
            }
            Self::MissingSessionId(header) => {
                format!("Bad Request: {header} header is required").into()
            }
            Self::InvalidSessionId(why) => format!("Bad Request: invalid session id: {why}").into(),
            Self::InvalidProtocolVersion => "Bad Request: Unsupported protocol version".into(),
            Self::ParseError => "Parse error".into(),
            Self::BatchedInitialize => {
                "Invalid Request: initialize must not be part of a batch".into()
            }
            Self::SessionNotFound => "Session not found".into(),
            Self::MethodNotAllowed(_) => "Method not allowed".into(),
            Self::RequestTimeout => {
                "Request timeout: the request body was not received in time".into()
            }
            Self::PayloadTooLarge(limit) => {
                format!("Payload too large: the limit is {limit} bytes").into()
            }
            Self::ClientSessionLimit(_) => {
                "Too many requests: too many sessions for this client".into()
            }
            Self::FactoryFailed => "Internal error: the session could not be created".into(),
            Self::TooManySessions(_) => "Service unavailable: too many sessions".into(),
            Self::PeekBudgetSpent(_) => {
                "Service unavailable: too many request bodies are being read at once".into()
            }
            Self::TooManyRestores(_) => {
                "Service unavailable: too many sessions are being restored at once".into()
            }
            Self::ReplayFailed(_) => {
                "Service unavailable: the session could not be restored on this server".into()
            }
            Self::StoreUnavailable(_) => "Service unavailable: session store unreachable".into(),
            Self::ShuttingDown => "Service unavailable: shutting down".into(),
        }
    }

    /// The default response: the status, a JSON-RPC error body
    /// `{"jsonrpc":"2.0","error":{"code":..,"message":..},"id":null}` with
    /// `Content-Type: application/json`, plus `Allow` on 405 and `Retry-After` (whole
    /// seconds, at least 1) on 429 and on every 503 but
    /// [`ShuttingDown`](Self::ShuttingDown)'s.
    pub fn to_response(&self) -> Response<Bytes> {
        let mut body = format!(
            r#"{{"jsonrpc":"2.0","error":{{"code":{},"message":""#,
            self.json_rpc_code()
        );
        escape_json_into(&self.message(), &mut body);
        body.push_str(r#""},"id":null}"#);
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            Self::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::TooManySessions(after)
            | Self::PeekBudgetSpent(after)
            | Self::TooManyRestores(after)
            | Self::ReplayFailed(after)
            | Self::StoreUnavailable(after)
            | Self::ClientSessionLimit(after) => {
                headers.insert(header::RETRY_AFTER, after.as_secs().max(1).into());
            }
            _ => {}
        }
        response
    }
}

/// With the `axum` feature a rejection is an axum response too, its default one (axum's
/// rejection idiom): a handler may return `Err(Rejection::SessionNotFound)`.
#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Rejection {
    fn into_response(self) -> axum_core::response::Response {
        self.to_response().map(axum_core::body::Body::from)
    }
}

impl From<McpError> for Rejection {
    fn from(error: McpError) -> Self {
        match error {
            McpError::InvalidProtocolVersion => Self::InvalidProtocolVersion,
            McpError::NotJson => Self::ParseError,
            McpError::BatchedInitialize => Self::BatchedInitialize,
        }
    }
}

/// 204 No Content: a session closed by the close policy (DELETE).
pub(crate) fn no_content() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// Appends `text` to `out` as the inside of a JSON string.
fn escape_json_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidSessionId(why) => Some(why),
            _ => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_body_matches_the_sdks() {
        let response = Rejection::SessionNotFound.to_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.body().as_ref(),
            br#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#
        );
    }

    #[test]
    fn messages_are_escaped() {
        let mut out = String::new();
        escape_json_into("a\"b\\c\n", &mut out);
        assert_eq!(out, r#"a\"b\\c\u000a"#);
    }

    #[test]
    fn retry_after_is_whole_seconds() {
        let response = Rejection::TooManySessions(Duration::from_millis(10)).to_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = Rejection::StoreUnavailable(Duration::MAX).to_response();
        assert_eq!(
            response.headers()[header::RETRY_AFTER],
            Duration::MAX.as_secs().to_string().as_str()
        );
    }
}
