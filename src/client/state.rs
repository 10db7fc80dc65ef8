//! The session state shared by a layer, its services, their response bodies and the
//! [`SessionHandle`]s.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Uri, Version, header};
use tokio::sync::watch;

use crate::client::error::SessionLost;
use crate::mcp::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::metrics::ClientMetrics;

/// State shared by everything one [`SessionClientLayer`](crate::client::SessionClientLayer) built.
pub(crate) struct Shared {
    /// Short critical sections only; never held across an `.await`.
    state: Mutex<State>,
    /// Held while a session is being opened, re-initialized or closed: the single flight.
    pub(crate) flight: tokio::sync::Mutex<()>,
    /// Counts re-initializations (not the application's own `initialize`).
    pub(crate) restarted: watch::Sender<u64>,
    /// The client series (registered when the layer or service is made).
    pub(crate) metrics: ClientMetrics,
}

/// The session as the client knows it.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) session_id: Option<HeaderValue>,
    pub(crate) protocol_version: Option<HeaderValue>,
    /// Changes whenever the session does (opened, re-initialized, closed). A request that got
    /// 404 re-initializes only if the epoch it was sent in is still the current one.
    pub(crate) epoch: u64,
    /// The application's `initialize`, replayed to start a new session.
    pub(crate) recorded: Option<Arc<Recorded>>,
    /// A re-initialization is running: new requests wait for it.
    pub(crate) reinitializing: bool,
    /// Re-initialization attempts so far, and how the last failed one failed: requests that
    /// waited for a failed attempt of their epoch share its failure instead of each trying
    /// again.
    pub(crate) attempts: u64,
    pub(crate) last_failure: Option<SessionLost>,
}

/// The application's `initialize` request, as sent (without `Mcp-Session-Id` and
/// `Content-Length`).
pub(crate) struct Recorded {
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// `params.protocolVersion` of the request: the version assumed until the answer says.
    pub(crate) requested_version: Option<HeaderValue>,
}

impl Recorded {
    /// The recorded headers with the session's id and protocol version (for the requests the
    /// layer makes itself).
    pub(crate) fn headers_for(
        &self,
        session_id: &HeaderValue,
        version: Option<&HeaderValue>,
    ) -> HeaderMap {
        let mut headers = self.headers.clone();
        headers.insert(MCP_SESSION_ID, session_id.clone());
        if let Some(version) = version.or(self.requested_version.as_ref()) {
            headers.insert(MCP_PROTOCOL_VERSION, version.clone());
        }
        headers
    }
}

/// The session headers a request is sent with, and the epoch they belong to.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) session_id: Option<HeaderValue>,
    pub(crate) protocol_version: Option<HeaderValue>,
    pub(crate) epoch: u64,
}

impl Snapshot {
    /// Adds the session headers to `headers`: the id always (replacing a stale one), the
    /// protocol version if `version` (the application did not set its own).
    pub(crate) fn apply(&self, headers: &mut HeaderMap, version: bool) {
        match &self.session_id {
            Some(id) => headers.insert(MCP_SESSION_ID, id.clone()),
            None => headers.remove(MCP_SESSION_ID),
        };
        if version && let Some(v) = &self.protocol_version {
            headers.insert(MCP_PROTOCOL_VERSION, v.clone());
        }
    }
}

impl State {
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            session_id: self.session_id.clone(),
            protocol_version: self.protocol_version.clone(),
            epoch: self.epoch,
        }
    }
}

impl Shared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            flight: tokio::sync::Mutex::new(()),
            restarted: watch::channel(0).0,
            metrics: ClientMetrics::register(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under panics (plain field writes), so a poisoned lock
        // is still usable.
        crate::sync::lock(&self.state)
    }

    /// The session headers to send a request with; waits while a re-initialization runs.
    pub(crate) async fn current(&self) -> Snapshot {
        loop {
            {
                let state = self.lock();
                if !state.reinitializing {
                    return state.snapshot();
                }
            }
            drop(self.flight.lock().await);
        }
    }

    /// Records the protocol version an `initialize` answer named, if the session is still
    /// the one it opened.
    pub(crate) fn negotiated(&self, epoch: u64, version: Option<String>) {
        let Some(version) = version.and_then(|v| HeaderValue::from_str(&v).ok()) else {
            return;
        };
        let mut state = self.lock();
        if state.epoch == epoch {
            state.protocol_version = Some(version);
        }
    }
}

/// Clears [`State::reinitializing`] when dropped, so a cancelled re-initialization does not
/// leave later requests waiting for nothing.
pub(crate) struct Reinitializing<'a>(pub(crate) &'a Shared);

impl Drop for Reinitializing<'_> {
    fn drop(&mut self) {
        self.0.lock().reinitializing = false;
    }
}

/// Headers of the application's `initialize` kept for replay: all but the session id and
/// the length (the layer's requests get their own).
pub(crate) fn recordable(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    headers.remove(MCP_SESSION_ID);
    headers.remove(header::CONTENT_LENGTH);
    headers
}

/// A view of the client's session: the current id, the negotiated protocol version, and a
/// signal for "the session was restarted".
///
/// Get one from [`SessionClientLayer::handle`](crate::client::SessionClientLayer::handle) or
/// [`SessionClient::handle`](crate::client::SessionClient::handle); clones see the same session.
/// Its `Debug` output does not show the session id (ids are bearer values on many servers).
#[derive(Clone)]
pub struct SessionHandle {
    pub(crate) shared: Arc<Shared>,
}

impl SessionHandle {
    /// The current `Mcp-Session-Id`: `None` before the first `initialize` answer that
    /// carried one, after [`close`](crate::client::SessionClient::close), and while a lost session
    /// could not be replaced. Ids are visible ASCII (MCP 2025-11-25); one that is not is
    /// returned lossily.
    pub fn session_id(&self) -> Option<String> {
        let state = self.shared.lock();
        state
            .session_id
            .as_ref()
            .map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned())
    }

    /// The protocol version sent in `MCP-Protocol-Version`: the `protocolVersion` of the
    /// server's `InitializeResult` once the layer has read it (from a JSON or SSE answer),
    /// until then the version the `initialize` request asked for; `None` without a session.
    pub fn protocol_version(&self) -> Option<String> {
        let state = self.shared.lock();
        state
            .protocol_version
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// How many times the layer has started a new session after a 404 (the application's
    /// own `initialize` requests do not count).
    pub fn restarts(&self) -> u64 {
        *self.shared.restarted.borrow()
    }

    /// A receiver of the restart count: it changes (`changed().await` returns) each time the
    /// layer has started a new session after a 404, after `notifications/initialized` was
    /// accepted and before the failed request is sent again. A new session has none of the
    /// old one's state: re-subscribe to resources, re-set the log level.
    pub fn restarted(&self) -> watch::Receiver<u64> {
        self.shared.restarted.subscribe()
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("SessionHandle")
            .field("has_session", &state.session_id.is_some())
            .field("protocol_version", &state.protocol_version)
            .field("restarts", &*self.shared.restarted.borrow())
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Shared")
            .field("has_session", &state.session_id.is_some())
            .field("protocol_version", &state.protocol_version)
            .field("epoch", &state.epoch)
            .finish_non_exhaustive()
    }
}
