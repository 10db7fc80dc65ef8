//! The seam between the table and what lies beyond this process: [`Backend`].
//!
//! The table knows nothing of stores, buses or other nodes. Each entry holds a handle to its
//! table's backend (for the session's handles: its data and its messages), and the table
//! tells the backend every time a session leaves it, with the reason and the [`Scope`] of the
//! close. The cluster implements it; a table without a cluster has a backend that keeps
//! everything in this process.

use std::time::Duration;

use crate::close::CloseReason;
use crate::info::SessionInfo;

/// How far a close reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The session closed here first: its reason says whether it ends everywhere
    /// ([`CloseReason::ends_everywhere`]), and the backend carries that out.
    Reason,
    /// Only this node's copy closes: the close came from another node, or whoever closed it
    /// ends it elsewhere itself (DELETE deletes the record before closing the copy).
    ThisCopy,
}

/// What the table tells its backend.
pub(crate) trait Backend: Send + Sync + 'static {
    /// A session left the table for `reason`; `unused_for` is how long it had gone without a
    /// request here (eviction ends a session everywhere only if no other node used it since).
    /// Called outside every table lock, once per session, after its close hook.
    fn closed(&self, info: &SessionInfo, reason: CloseReason, scope: Scope, unused_for: Duration);
}
