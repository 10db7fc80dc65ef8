//! [`SessionSnapshot`]: one session as [`Sessions::snapshot`](crate::Sessions::snapshot) saw it.

use std::time::Duration;

use crate::cluster::Entry;
use crate::info::SessionInfo;

/// What [`Sessions::snapshot`](crate::Sessions::snapshot) reports of one session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionSnapshot {
    info: SessionInfo,
    idle_for: Duration,
    in_flight: u32,
}

impl SessionSnapshot {
    pub(crate) fn of(entry: &Entry, now: u64) -> Self {
        let (idle_ms, in_flight) = entry.activity(now);
        Self {
            info: entry.info.clone(),
            idle_for: Duration::from_millis(idle_ms),
            in_flight,
        }
    }

    /// The session's id, principal and creation time.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Time since the session was last used (a request starting or a response ending), in
    /// milliseconds of resolution; zero while a request or response body is in flight.
    pub fn idle_for(&self) -> Duration {
        self.idle_for
    }

    /// Requests whose response (body included) has not finished: open SSE streams count.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }
}
