//! The two handshakes of a session's entry, in a file of their own so that loom can check
//! them: `suite/tests/loom.rs` compiles this very file with loom's atomics in place of the
//! standard ones (`crate::sync::atomic` there is loom's).
//!
//! - [`CloseFlag`]: a closing session and the response bodies waiting on it. The closer sets
//!   the flag, then wakes the waiters registered so far; a waiter registers, then checks the
//!   flag. A SeqCst fence on each side makes it a store-buffering handshake in which at least
//!   one side sees the other: without them the memory model lets both loads miss the other
//!   side's store (observable on weakly ordered CPUs such as AArch64), and a waiting body would
//!   never be woken. (loom test `close_wakes_a_waiting_body`.)
//! - [`HookState`]: `on_open` paired with exactly one `on_close`, in that order (see the hooks
//!   module). (loom test `hooks_pair_up`.)

use crate::close::CloseReason;
use crate::sync::atomic::{AtomicBool, AtomicU8, Ordering, fence};

/// Whether a session is closed, and the handshake that wakes its waiting bodies.
pub(crate) struct CloseFlag(AtomicBool);

impl Default for CloseFlag {
    fn default() -> Self {
        Self(AtomicBool::new(false))
    }
}

impl CloseFlag {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The closer's side: sets the flag, then runs `wake`, which must wake every waiter it
    /// finds registered.
    pub(crate) fn set_then(&self, wake: impl FnOnce()) {
        self.0.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        wake();
    }

    /// A waiter's side: runs `register` (which must make the waiter findable by `wake`), then
    /// answers whether the flag is set. If it is not, the closer will find the waiter.
    pub(crate) fn register_then_check(&self, register: impl FnOnce()) -> bool {
        register();
        fence(Ordering::SeqCst);
        self.is_set()
    }
}

/// Handshake states.
const COMMITTING: u8 = 0;
const OPEN: u8 = 1;
/// `CLOSED_EARLY + i`: closed before `on_open` finished, for `CloseReason::ALL[i]`.
pub(crate) const CLOSED_EARLY: u8 = 2;

/// The `on_open`/`on_close` handshake of one entry (see the hooks module).
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

pub(crate) fn closed_early(reason: CloseReason) -> u8 {
    let index = CloseReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or_default();
    CLOSED_EARLY + index as u8
}

pub(crate) fn reason_of(state: u8) -> CloseReason {
    let index = usize::from(state.saturating_sub(CLOSED_EARLY));
    CloseReason::ALL
        .get(index)
        .copied()
        .unwrap_or(CloseReason::Shutdown)
}
