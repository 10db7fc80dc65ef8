//! Routing by `MCP-Protocol-Version` (MCP 2025-11-25, Streamable HTTP, Protocol Version
//! Header; MCP 2026-07-28, SEP-2567).

use http::HeaderMap;

use crate::mcp::{MCP_PROTOCOL_VERSION, McpError, SESSIONLESS_SINCE};

/// Whether a request skips sessions by its protocol version: `Ok(true)` for a version at or
/// after [`SESSIONLESS_SINCE`], and for one `MCP-Protocol-Version` that is not a date on a
/// request that names no session (`names_session()` false, asked only then): the server
/// behind the layer knows which versions it speaks and answers with its own error (MCP
/// 2026-07-28: -32022 with the request's id and the supported versions), which the layer
/// cannot.
///
/// # Errors
///
/// [`McpError::InvalidProtocolVersion`] if the header is repeated, or is not `YYYY-MM-DD` on a
/// request that names a session.
pub(crate) fn is_sessionless(
    headers: &HeaderMap,
    names_session: impl FnOnce() -> bool,
) -> Result<bool, McpError> {
    let mut values = headers.get_all(MCP_PROTOCOL_VERSION).iter();
    let Some(value) = values.next() else {
        return Ok(false);
    };
    if values.next().is_some() {
        return Err(McpError::InvalidProtocolVersion);
    }
    let version = value.as_bytes();
    let well_formed = version.len() == 10
        && version.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !well_formed {
        return if names_session() {
            Err(McpError::InvalidProtocolVersion)
        } else {
            Ok(true)
        };
    }
    // Same-length ISO dates compare correctly as bytes.
    Ok(version >= SESSIONLESS_SINCE.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(versions: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in versions {
            h.append(MCP_PROTOCOL_VERSION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn routes_by_protocol_version() {
        for names_session in [false, true] {
            let names = || names_session;
            assert_eq!(is_sessionless(&HeaderMap::new(), names), Ok(false));
            assert_eq!(is_sessionless(&headers(&["2025-11-25"]), names), Ok(false));
            assert_eq!(is_sessionless(&headers(&["2026-07-28"]), names), Ok(true));
            assert_eq!(is_sessionless(&headers(&["2027-01-01"]), names), Ok(true));
            assert_eq!(
                is_sessionless(&headers(&["2025-11-25", "2025-11-25"]), names),
                Err(McpError::InvalidProtocolVersion)
            );
        }
        for bad in ["", "2025-11", "2025/11/25", "latest", "2025-11-250"] {
            assert_eq!(
                is_sessionless(&headers(&[bad]), || true),
                Err(McpError::InvalidProtocolVersion),
                "{bad:?}"
            );
            assert_eq!(
                is_sessionless(&headers(&[bad]), || false),
                Ok(true),
                "{bad:?}"
            );
        }
    }
}
