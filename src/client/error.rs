//! The errors of [`SessionClient`](crate::client::SessionClient).

use std::fmt;

use http::StatusCode;

/// Why a request could not be answered in the session, after the server answered 404 to
/// the session id it carried (the session ended: a restart, expiry, or a node that lost its
/// state).
///
/// MCP 2025-11-25, Basic, Transports, Streamable HTTP, Session Management: "When a client
/// receives HTTP 404 in response to a request containing an `Mcp-Session-Id`, it MUST start
/// a new session by sending a new `InitializeRequest` without a session ID attached."
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionLost {
    /// The request's body was a stream ([`ClientBody::streaming`](crate::client::ClientBody::streaming)),
    /// already consumed by the first attempt, so the request was not sent again. The layer
    /// did start the new session: send the request again and it goes to that one.
    NotReplayable,
    /// The server answered the new `initialize` (or the `notifications/initialized` after it)
    /// with this status: not 2xx, or 2xx without `Mcp-Session-Id`. There is no session now;
    /// the next request that gets 404 tries again.
    ReinitializeRejected(StatusCode),
    /// The HTTP client failed while another request was re-initializing the session for this
    /// one (the request that ran the re-initialization got the client's error itself as
    /// [`Error::Inner`]), or the `initialize` response body could not be read.
    ReinitializeFailed,
    /// [`SessionClient::close`](crate::client::SessionClient::close) ended the session while this
    /// request was in flight; the request was not sent again.
    Closed,
}

impl fmt::Display for SessionLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReplayable => f.write_str(
                "MCP session lost (404): a new session was started, but the request body was a \
                 stream and could not be sent again",
            ),
            Self::ReinitializeRejected(status) => write!(
                f,
                "MCP session lost (404), and the server answered the new initialize with {status}"
            ),
            Self::ReinitializeFailed => {
                f.write_str("MCP session lost (404), and starting a new session failed")
            }
            Self::Closed => f.write_str("MCP session closed while the request was in flight"),
        }
    }
}

impl std::error::Error for SessionLost {}

/// The error of [`SessionClient`](crate::client::SessionClient): the inner HTTP client's error `E`,
/// or a session that could not be recovered.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The inner service (the HTTP client) failed: connection refused, reset, timeout.
    Inner(E),
    /// The server answered 404 to the session id and the request could not be answered in a
    /// new session; see [`SessionLost`].
    SessionLost(SessionLost),
    /// [`SessionClient::close`](crate::client::SessionClient::close) got a status other than 200,
    /// 204, 404 or 405 to its DELETE. The client has forgotten the session anyway (the
    /// server expires it).
    CloseRejected(StatusCode),
}

impl<E> Error<E> {
    /// The [`SessionLost`] reason, if this is one.
    pub fn session_lost(&self) -> Option<&SessionLost> {
        match self {
            Self::SessionLost(lost) => Some(lost),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => write!(f, "HTTP client error: {e}"),
            Self::SessionLost(lost) => lost.fmt(f),
            Self::CloseRejected(status) => {
                write!(f, "the server answered the session's DELETE with {status}")
            }
        }
    }
}

impl<E> std::error::Error for Error<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Inner(e) => Some(e),
            Self::SessionLost(lost) => Some(lost),
            Self::CloseRejected(_) => None,
        }
    }
}

impl<E> From<SessionLost> for Error<E> {
    fn from(lost: SessionLost) -> Self {
        Self::SessionLost(lost)
    }
}
