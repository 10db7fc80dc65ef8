//! [`SessionClientLayer`], the layer that builds [`SessionClient`]s.

use std::sync::Arc;

use tower_layer::Layer;

use crate::client::service::SessionClient;
use crate::client::state::{SessionHandle, Shared};

/// A [`Layer`] that wraps an HTTP client service in a [`SessionClient`]: it keeps the MCP
/// session (`Mcp-Session-Id`, `MCP-Protocol-Version`) and starts a new one by itself when
/// the server answers 404 (MCP 2025-11-25, Basic, Transports, Streamable HTTP, Session
/// Management).
///
/// One layer is one session: every service it builds, and every clone of those, shares the
/// same session, and [`handle`](Self::handle) can be taken before any service exists. For two
/// independent sessions use two layers.
#[derive(Clone, Debug)]
pub struct SessionClientLayer {
    shared: Arc<Shared>,
}

impl SessionClientLayer {
    /// A layer with no session yet: the first `initialize` the application sends through it
    /// opens one.
    pub fn new() -> Self {
        Self {
            shared: Shared::new(),
        }
    }

    /// A handle on the layer's session: id, protocol version, restart signal.
    pub fn handle(&self) -> SessionHandle {
        SessionHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Default for SessionClientLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for SessionClientLayer {
    type Service = SessionClient<S>;

    fn layer(&self, inner: S) -> SessionClient<S> {
        SessionClient::with_shared(inner, Arc::clone(&self.shared))
    }
}
