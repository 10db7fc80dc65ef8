//! The `on_open` and `on_close` hooks, and the handshake that pairs them.
//!
//! Hooks receive the session's [`SessionInfo`] and nothing that could keep the table alive,
//! so a hook can never form a reference cycle with the table it observes. Every `on_open` is
//! followed by exactly one `on_close` for the same session, in that order, and `on_close`
//! never runs for a session whose id was not sent to a client.
//!
//! The pairing is a compare-and-swap on one byte of the entry ([`HookState`]). A committed
//! session's opener runs `on_open`, then swaps the state from *committing* to *open*; a closer
//! swaps it from *committing* to *closed early with this reason*. Whoever loses the swap knows
//! the other came first: a closer that finds the session open runs `on_close` itself; an
//! opener that finds it closed early runs `on_close` after its `on_open`, with the reason the
//! closer left. The loom test `hooks_pair_up` checks it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::close::CloseReason;
use crate::id::SessionId;
use crate::info::SessionInfo;

pub(crate) type OnOpen = Arc<dyn Fn(&SessionInfo) + Send + Sync>;
pub(crate) type OnClose = Arc<dyn Fn(&SessionInfo, CloseReason) + Send + Sync>;

/// The hooks of one table.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_open: Option<OnOpen>,
    pub(crate) on_close: Option<OnClose>,
}

/// Handshake states.
const COMMITTING: u8 = 0;
const OPEN: u8 = 1;
/// `CLOSED_EARLY + i`: closed before `on_open` finished, for `CloseReason::ALL[i]`.
const CLOSED_EARLY: u8 = 2;

/// The `on_open`/`on_close` handshake of one entry (see the module docs).
pub(crate) struct HookState(AtomicU8);

impl Default for HookState {
    fn default() -> Self {
        Self(AtomicU8::new(COMMITTING))
    }
}

impl HookState {
    /// The opener's side, after `on_open` ran: `Err(reason)` if the session was closed
    /// meanwhile and its `on_close` is the opener's to run, with that reason.
    pub(crate) fn opened(&self) -> Result<(), CloseReason> {
        self.0
            .compare_exchange(COMMITTING, OPEN, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
            .map_err(reason_of)
    }

    /// The closer's side: `true` if it must run `on_close` now, `false` if `on_open` has not
    /// finished and its opener will (with `reason`).
    pub(crate) fn closed(&self, reason: CloseReason) -> bool {
        self.0
            .compare_exchange(
                COMMITTING,
                closed_early(reason),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
    }
}

fn closed_early(reason: CloseReason) -> u8 {
    let index = CloseReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or_default();
    CLOSED_EARLY + index as u8
}

fn reason_of(state: u8) -> CloseReason {
    let index = usize::from(state.saturating_sub(CLOSED_EARLY));
    CloseReason::ALL
        .get(index)
        .copied()
        .unwrap_or(CloseReason::Shutdown)
}

/// Runs `hook`, catching and logging a panic: a faulty hook must not take down the request,
/// the sweeper or the caller of [`Sessions`](crate::Sessions).
pub(crate) fn run_guarded(what: &str, id: &SessionId, hook: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(hook)).is_err() {
        tracing::error!(session = %id.redacted(), "{what} hook panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_state() {
        for reason in CloseReason::ALL {
            let state = closed_early(reason);
            assert!(state >= CLOSED_EARLY);
            assert_eq!(reason_of(state), reason);
        }
    }

    #[test]
    fn pairs_either_way() {
        let open_first = HookState::default();
        assert_eq!(open_first.opened(), Ok(()));
        assert!(open_first.closed(CloseReason::Deleted));
        let close_first = HookState::default();
        assert!(!close_first.closed(CloseReason::Evicted));
        assert_eq!(close_first.opened(), Err(CloseReason::Evicted));
    }
}
