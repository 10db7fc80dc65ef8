//! The `on_open` and `on_close` hooks, and the handshake that pairs them.
//!
//! Hooks receive the session's [`SessionInfo`] and nothing that could keep the table alive,
//! so a hook can never form a reference cycle with the table it observes. Every `on_open` is
//! followed by exactly one `on_close` for the same session, in that order, and `on_close`
//! never runs for a session whose id was not sent to a client.
//!
//! The pairing is a compare-and-swap on one byte of the entry
//! ([`HookState`](crate::table::handshake::HookState)). A committed
//! session's opener runs `on_open`, then swaps the state from *committing* to *open*; a closer
//! swaps it from *committing* to *closed early with this reason*. Whoever loses the swap knows
//! the other came first: a closer that finds the session open runs `on_close` itself; an
//! opener that finds it closed early runs `on_close` after its `on_open`, with the reason the
//! closer left. The loom test `hooks_pair_up` checks it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

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

/// Runs `hook`, catching and logging a panic: a faulty hook must not take down the request,
/// the sweeper or the caller of [`Sessions`](crate::Sessions).
pub(crate) fn run_guarded(what: &str, id: &SessionId, hook: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(hook)).is_err() {
        tracing::error!(session = %id.redacted(), "{what} hook panicked");
    }
}

// The handshake's own tests live here: its file is also compiled by the loom test, where
// plain unit tests cannot run (loom's atomics exist only inside a loom model).
#[cfg(test)]
mod tests {
    use crate::close::CloseReason;
    use crate::table::handshake::{CLOSED_EARLY, HookState, closed_early, reason_of};

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
