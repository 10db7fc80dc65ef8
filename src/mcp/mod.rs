//! The Model Context Protocol profile: the header names, routing by protocol version, and
//! which request opens a session.
//!
//! Rules, from MCP 2025-11-25, Basic, Transports, Streamable HTTP:
//!
//! - A session is opened by the `InitializeRequest`, a JSON-RPC request with method
//!   `initialize`, sent as a POST without `Mcp-Session-Id`; the server assigns the id in the
//!   header of the response that carries the `InitializeResult`.
//! - Every later request carries the id; without it the server answers 400, with an id it no
//!   longer knows 404.
//! - `MCP-Protocol-Version` is `YYYY-MM-DD`; a missing one on a later request means
//!   2025-03-26. An invalid one gets 400 from the layer when the request names a session (or
//!   repeats the header); without a session id it goes to the inner service, which knows the
//!   versions it speaks (MCP 2026-07-28 answers an unsupported version with JSON-RPC error
//!   -32022 and the request's id, which only the server can give).
//! - MCP 2026-07-28 (SEP-2567) removed sessions: requests declaring that version or a newer
//!   one pass through to the inner service, and any `Mcp-Session-Id` they carry is ignored.
//!
//! This module decides; it answers nothing. Its errors become the layer's
//! [`Rejection`](crate::Rejection)s one floor up.

use http::HeaderName;

pub(crate) mod initialize;
pub(crate) mod version;

/// `Mcp-Session-Id`, the session header of MCP Streamable HTTP (also the default header of
/// the generic profile).
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// `MCP-Protocol-Version`, the header that names the negotiated protocol version.
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// The first protocol version without sessions (SEP-2567). Requests declaring this version or
/// a later one are sessionless.
pub const SESSIONLESS_SINCE: &str = "2026-07-28";

/// The `notifications/initialized` a client sends after `initialize` (MCP 2025-11-25,
/// Lifecycle), replayed after a recorded `initialize` when a session is restored.
pub(crate) const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// What the MCP profile finds wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum McpError {
    /// `MCP-Protocol-Version` is repeated, or is not `YYYY-MM-DD` on a request that names a
    /// session.
    InvalidProtocolVersion,
    /// The body of a request that may open a session is not JSON.
    NotJson,
    /// `initialize` inside a JSON-RPC batch.
    BatchedInitialize,
}
