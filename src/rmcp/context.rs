//! The layer's session from inside an rmcp handler.

use rmcp::service::{RequestContext, RoleServer};

use crate::handle::session::Session;

/// The layer's [`Session`] of the request an rmcp handler is answering: `None` outside the
/// layer (rmcp's own session manager, a transport other than streamable HTTP) and for
/// sessionless requests (MCP-Protocol-Version >= 2026-07-28, served by [`stateless`](super::stateless)).
///
/// rmcp's streamable HTTP transport puts the HTTP request's [`http::request::Parts`] into
/// every request context's extensions; the layer puts the [`Session`] into the request's
/// extensions before rmcp sees it. Through it a handler reaches what crosses nodes:
/// [`Session::data`] (typed get, insert, atomic increment, kept in the layer's
/// [store](crate::Cluster) and shared by every server) and [`Session::publish`] (a message to the
/// session's subscribers on every node). State kept in the rmcp handler itself lives on one
/// node only: a session [restored](crate::Cluster) on another node gets a fresh handler.
///
/// ```
/// use rmcp::ErrorData;
/// use rmcp::model::{CallToolResult, ContentBlock};
/// use rmcp::service::{RequestContext, RoleServer};
/// use tower_mcp_session::rmcp::session;
///
/// async fn increment(context: &RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
///     let session = session(context)
///         .ok_or_else(|| ErrorData::internal_error("not behind the session layer", None))?;
///     let count = session
///         .data()
///         .increment("counter", 1)
///         .await
///         .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
///     Ok(CallToolResult::success(vec![ContentBlock::text(count.to_string())]))
/// }
/// ```
pub fn session(context: &RequestContext<RoleServer>) -> Option<&Session> {
    context
        .extensions
        .get::<http::request::Parts>()?
        .extensions
        .get::<Session>()
}
