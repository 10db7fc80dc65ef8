//! The Model Context Protocol profile: which request opens a session, and routing by
//! protocol version.
//!
//! Rules, from MCP 2025-11-25, Basic, Transports, Streamable HTTP:
//!
//! - A session is opened by the `InitializeRequest`, a JSON-RPC request with method
//!   `initialize`, sent as a POST without `Mcp-Session-Id`; the server assigns the id in the
//!   header of the response that carries the `InitializeResult`.
//! - Every later request carries the id; without it the server answers 400, with an id it no
//!   longer knows 404.
//! - `MCP-Protocol-Version` is `YYYY-MM-DD`; a missing one on a later request means
//!   2025-03-26. An invalid one gets 400.
//! - MCP 2026-07-28 (SEP-2567) removed sessions: requests declaring that version or a newer
//!   one pass through to the inner service, and any `Mcp-Session-Id` they carry is ignored.

use http::{HeaderMap, HeaderName};

use crate::rejection::Rejection;

/// `Mcp-Session-Id`, the session header of MCP Streamable HTTP.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// `MCP-Protocol-Version`, the header that names the negotiated protocol version.
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// The first protocol version without sessions (SEP-2567). Requests declaring this version or
/// a later one are sessionless.
pub const SESSIONLESS_SINCE: &str = "2026-07-28";

/// Whether the request declares a sessionless protocol version (≥ [`SESSIONLESS_SINCE`]).
///
/// # Errors
///
/// [`Rejection::InvalidProtocolVersion`] if the header is repeated or is not `YYYY-MM-DD`.
pub(crate) fn is_sessionless(headers: &HeaderMap) -> Result<bool, Rejection> {
    let mut values = headers.get_all(MCP_PROTOCOL_VERSION).iter();
    let Some(value) = values.next() else {
        return Ok(false);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidProtocolVersion);
    }
    let version = value.as_bytes();
    let well_formed = version.len() == 10
        && version.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !well_formed {
        return Err(Rejection::InvalidProtocolVersion);
    }
    // Same-length ISO dates compare correctly as bytes.
    Ok(version >= SESSIONLESS_SINCE.as_bytes())
}

/// Reads a peeked body: `Ok(true)` if it is a JSON-RPC `initialize` request (with a string or
/// number `id`; an `initialize` notification opens nothing), `Ok(false)` for any other JSON.
///
/// # Errors
///
/// [`Rejection::ParseError`] if the body is not JSON (nesting deeper than serde_json's limit
/// of 128 counts as not JSON), [`Rejection::BatchedInitialize`] if it is a batch holding an
/// `initialize` request.
pub(crate) fn is_initialize(body: &[u8]) -> Result<bool, Rejection> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| Rejection::ParseError)?;
    // A request, not a notification: it must carry a string or number id to be answered
    // with the InitializeResult that assigns the session.
    let is_init = |v: &serde_json::Value| {
        v.get("method").and_then(|m| m.as_str()) == Some("initialize")
            && v.get("id")
                .is_some_and(|id| id.is_string() || id.is_number())
    };
    match &value {
        serde_json::Value::Array(batch) if batch.iter().any(is_init) => {
            Err(Rejection::BatchedInitialize)
        }
        value => Ok(is_init(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(version: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            MCP_PROTOCOL_VERSION,
            HeaderValue::from_str(version).unwrap(),
        );
        h
    }

    #[test]
    fn routes_by_protocol_version() {
        assert_eq!(is_sessionless(&HeaderMap::new()), Ok(false));
        assert_eq!(is_sessionless(&headers("2025-11-25")), Ok(false));
        assert_eq!(is_sessionless(&headers("2026-07-28")), Ok(true));
        assert_eq!(is_sessionless(&headers("2027-01-01")), Ok(true));
        for bad in ["", "2025-11", "2025/11/25", "latest", "2025-11-250"] {
            assert_eq!(
                is_sessionless(&headers(bad)),
                Err(Rejection::InvalidProtocolVersion),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn detects_initialize() {
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        assert_eq!(is_initialize(init), Ok(true));
        assert_eq!(
            is_initialize(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(false)
        );
        assert_eq!(is_initialize(b"{nope"), Err(Rejection::ParseError));
        let notification = br#"{"jsonrpc":"2.0","method":"initialize","params":{}}"#;
        assert_eq!(is_initialize(notification), Ok(false));
        let null_id = br#"{"jsonrpc":"2.0","id":null,"method":"initialize"}"#;
        assert_eq!(is_initialize(null_id), Ok(false));
        assert_eq!(
            is_initialize(br#"[{"jsonrpc":"2.0","id":1,"method":"initialize"}]"#),
            Err(Rejection::BatchedInitialize)
        );
        let deep = "[".repeat(10_000);
        assert_eq!(is_initialize(deep.as_bytes()), Err(Rejection::ParseError));
    }
}
