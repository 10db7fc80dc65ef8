//! Session events: why a session ended ([`CloseReason`]) and the hooks that observe opens and
//! closes ([`SessionLayer::on_open`](crate::SessionLayer::on_open),
//! [`SessionLayer::on_close`](crate::SessionLayer::on_close)).
//!
//! Hooks receive the session's [`SessionInfo`] and nothing that could keep the session table
//! alive, so a hook can never form a reference cycle with the table it observes. Every
//! `on_open` is followed by exactly one `on_close` for the same session, and `on_close` never
//! runs for a session whose id was not sent to a client (the registry's commit and its
//! open/close handshake guarantee both).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::id::SessionId;
use crate::info::SessionInfo;

/// Why a session was closed; given to the [`on_close`](crate::SessionLayer::on_close) hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent a request the [`ClosePolicy`](crate::ClosePolicy) claims: in MCP, DELETE
    /// with the session's id (MCP 2025-11-25, Streamable HTTP, Session Management: clients
    /// SHOULD terminate sessions they no longer need).
    Deleted,
    /// No request used the session for the idle timeout, and none was in flight.
    Expired,
    /// The session reached its [`max_lifetime`](crate::SessionLayer::max_lifetime).
    LifetimeEnded,
    /// The session table was full and this session was picked to make room
    /// ([`evict_idlest`](crate::SessionLayer::evict_idlest)).
    Evicted,
    /// Closed by [`Sessions::close`](crate::Sessions::close) or
    /// [`Sessions::close_where`](crate::Sessions::close_where); with a
    /// [store](crate::SessionLayer::store), also a copy on this node whose record the refresher
    /// found gone (closed through another node whose bus message this node missed).
    Closed,
    /// Closed by [`Sessions::shutdown`](crate::Sessions::shutdown).
    Shutdown,
}

impl CloseReason {
    /// Whether a session closed for this reason is closed for good: on every node of a
    /// deployment, with its [store](crate::store) record deleted. `Deleted`, `Closed` and
    /// `LifetimeEnded` are; `Evicted` is unless another node has used the session since this
    /// node last did (eviction frees this node's memory; a session busy elsewhere lives on
    /// there; without an idle timeout records have no time to live to tell by, and eviction
    /// ends the session everywhere); `Expired` is not (the session was idle *on this node*; its record expires by
    /// its own time to live, which every node using the session keeps fresh), nor is
    /// `Shutdown` (a node going away during a rolling deploy: clients carry on through the
    /// other nodes).
    pub fn ends_everywhere(self) -> bool {
        matches!(
            self,
            Self::Deleted | Self::Closed | Self::Evicted | Self::LifetimeEnded
        )
    }
}

/// A one-byte code for `reason` (the open/close handshake and the bus's wire format).
pub(crate) fn reason_code(reason: CloseReason) -> u8 {
    match reason {
        CloseReason::Deleted => 0,
        CloseReason::Expired => 1,
        CloseReason::LifetimeEnded => 2,
        CloseReason::Evicted => 3,
        CloseReason::Closed => 4,
        CloseReason::Shutdown => 5,
    }
}

/// The reason [`reason_code`] gave `code`.
pub(crate) fn reason_of(code: u8) -> Option<CloseReason> {
    Some(match code {
        0 => CloseReason::Deleted,
        1 => CloseReason::Expired,
        2 => CloseReason::LifetimeEnded,
        3 => CloseReason::Evicted,
        4 => CloseReason::Closed,
        5 => CloseReason::Shutdown,
        _ => return None,
    })
}

pub(crate) type OnOpen = Arc<dyn Fn(&SessionInfo) + Send + Sync>;
pub(crate) type OnClose = Arc<dyn Fn(&SessionInfo, CloseReason) + Send + Sync>;

/// Runs `hook`, catching and logging a panic: a faulty hook must not take down the request,
/// the sweeper or the caller of [`Sessions`](crate::Sessions).
pub(crate) fn run_guarded(what: &str, id: &SessionId, hook: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(hook)).is_err() {
        tracing::error!(session = %id.redacted(), "{what} hook panicked");
    }
}
