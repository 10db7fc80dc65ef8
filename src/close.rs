//! Why a session ended: [`CloseReason`].

use std::fmt;
use std::str::FromStr;

/// Why a session was closed; given to the [`on_close`](crate::SessionLayerBuilder::on_close)
/// hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent a request the [`ClosePolicy`](crate::ClosePolicy) claims: in MCP, DELETE
    /// with the session's id (MCP 2025-11-25, Streamable HTTP, Session Management: clients
    /// SHOULD terminate sessions they no longer need).
    Deleted,
    /// No request used the session for the idle timeout, and none was in flight.
    Expired,
    /// The session reached its [`max_lifetime`](crate::SessionLayerBuilder::max_lifetime).
    LifetimeEnded,
    /// The session table was full and this session was picked to make room (see
    /// [`Eviction`](crate::Eviction)).
    Evicted,
    /// Closed by [`Sessions::close`](crate::Sessions::close),
    /// [`Sessions::close_where`](crate::Sessions::close_where) or
    /// [`Session::close`](crate::Session::close); with a [cluster](crate::Cluster), also a
    /// copy on this node whose record is gone (closed through another node, or the store lost
    /// it).
    Closed,
    /// Closed by [`Sessions::shutdown`](crate::Sessions::shutdown).
    Shutdown,
}

impl CloseReason {
    /// Every reason, in a fixed order (for metrics that list each one).
    pub const ALL: [CloseReason; 6] = [
        Self::Deleted,
        Self::Expired,
        Self::LifetimeEnded,
        Self::Evicted,
        Self::Closed,
        Self::Shutdown,
    ];

    /// Whether a session closed for this reason is closed for good: on every node of a
    /// [cluster](crate::Cluster), with its store record deleted.
    ///
    /// `Deleted`, `Closed` and `LifetimeEnded` are. `Evicted` is unless another node has used
    /// the session since this node last did (eviction frees this node's memory; a session busy
    /// elsewhere lives on there; without an idle timeout records have no time to live to tell
    /// by, and eviction ends the session everywhere). `Expired` is not: the session was idle
    /// *on this node*, and its record expires by its own time to live, which every node using
    /// the session keeps fresh. Nor is `Shutdown`: a node going away during a rolling deploy,
    /// whose clients carry on through the other nodes.
    pub fn ends_everywhere(self) -> bool {
        matches!(
            self,
            Self::Deleted | Self::Closed | Self::Evicted | Self::LifetimeEnded
        )
    }

    /// A stable lower-case name: `deleted`, `expired`, `lifetime_ended`, `evicted`, `closed`,
    /// `shutdown` (for logs, metric labels and a bus's own wire format). [`FromStr`] reads it
    /// back.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Expired => "expired",
            Self::LifetimeEnded => "lifetime_ended",
            Self::Evicted => "evicted",
            Self::Closed => "closed",
            Self::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that [`CloseReason::as_str`] does not give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCloseReason;

impl fmt::Display for UnknownCloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a close reason")
    }
}

impl std::error::Error for UnknownCloseReason {}

impl FromStr for CloseReason {
    type Err = UnknownCloseReason;

    /// Reads what [`as_str`](Self::as_str) wrote.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == name)
            .ok_or(UnknownCloseReason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for reason in CloseReason::ALL {
            assert_eq!(reason.as_str().parse(), Ok(reason));
        }
        assert_eq!("Deleted".parse::<CloseReason>(), Err(UnknownCloseReason));
    }
}
