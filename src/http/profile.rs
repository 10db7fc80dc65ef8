//! The protocol profile's part of classifying a request: the MCP rules (protocol-version
//! routing, the methods MCP serves, the notification replayed after `initialize`) or none.

use http::request::Parts;
use http::{HeaderName, Method};

use crate::http::policy::ClosePolicy;
use crate::http::rejection::Rejection;
use crate::mcp;

/// `Allow` of the MCP endpoint.
const ALLOW_ALL: &str = "GET, POST, DELETE";
/// `Allow` of the MCP endpoint when DELETE does not close sessions.
pub(crate) const ALLOW_NO_DELETE: &str = "GET, POST";

/// Which protocol's rules the layer applies on top of the session rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// None: any method, no version routing.
    Generic,
    /// MCP Streamable HTTP (see the [`mcp`](crate::mcp) module).
    Mcp,
}

impl Profile {
    /// Whether the request skips sessions by its protocol version (MCP only).
    pub(crate) fn is_sessionless(
        self,
        parts: &Parts,
        header: &HeaderName,
    ) -> Result<bool, Rejection> {
        match self {
            Self::Generic => Ok(false),
            Self::Mcp => Ok(mcp::version::is_sessionless(&parts.headers, || {
                parts.headers.contains_key(header)
            })?),
        }
    }

    /// 405 for a method the profile does not serve (MCP: all but GET, POST, DELETE).
    pub(crate) fn check_method(
        self,
        method: &Method,
        close: &ClosePolicy,
    ) -> Result<(), Rejection> {
        if self == Self::Generic
            || method == Method::GET
            || method == Method::POST
            || method == Method::DELETE
        {
            return Ok(());
        }
        let allow = if close.allows_delete() {
            ALLOW_ALL
        } else {
            ALLOW_NO_DELETE
        };
        Err(Rejection::MethodNotAllowed(allow))
    }

    /// The request replayed into a restored session after its recorded opening request (MCP:
    /// `notifications/initialized`, MCP 2025-11-25, Lifecycle).
    pub(crate) fn after_opening(self) -> Option<&'static [u8]> {
        match self {
            Self::Generic => None,
            Self::Mcp => Some(mcp::INITIALIZED),
        }
    }
}
