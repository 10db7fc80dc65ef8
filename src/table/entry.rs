//! One session's entry: its clocks, its in-flight count, its close handshake with the response
//! bodies that stream for it, and its service and state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use crate::close::CloseReason;
use crate::info::ClientKey;
use crate::info::SessionInfo;
use crate::table::handshake::{CloseFlag, HookState};
use crate::table::payload::Payload;

/// What an entry allocates on first need only: the signal a waiting response body is woken
/// by when the session closes, and the session's data map when there is no store.
#[derive(Default)]
pub(crate) struct Extras {
    close: Arc<Notify>,
    /// The session's data map (JSON texts by key) when the layer has no cluster: it lives and
    /// dies with the entry.
    pub(crate) data: Mutex<HashMap<String, String>>,
}

/// When a session ends by time, as the table counts it: idle timeout and lifetime (ms; 0:
/// none), and the wall clock (ms since the Unix epoch) at the table's epoch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Times {
    pub(crate) idle_ms: u64,
    pub(crate) lifetime_ms: u64,
    pub(crate) epoch_wall_ms: u64,
}

/// Bookkeeping for one live session, followed by its service and state.
///
/// `repr(C)` keeps the fields every lookup and every sweep reads (`last_seen`, `in_flight`,
/// `closed`) first, on the cache line of the `Arc`'s reference counts, so that checking a
/// session costs one cache miss, not two.
#[repr(C)]
pub(crate) struct Entry<B, S: ?Sized = dyn Payload> {
    /// When the session was last used: a request starting or a response ending.
    last_seen: AtomicU64,
    /// Requests routed to the session whose response (body included) has not finished.
    in_flight: AtomicU32,
    closed: CloseFlag,
    /// The `on_open`/`on_close` handshake (see the hooks module).
    pub(super) hooks: HookState,
    /// The protocol version the session's opening request asked for, as an index of the
    /// metrics' version labels (in the padding after the two one-byte fields above).
    pub(crate) protocol: u8,
    /// When the session's last request started (eviction's ranking).
    last_request: AtomicU64,
    extras: OnceLock<Box<Extras>>,
    pub(crate) info: SessionInfo,
    /// The table's backend, for the session's handles (its data and messages).
    pub(crate) backend: Arc<B>,
    /// The client key the session counts against, when a per-client limit is set (boxed: most
    /// tables have none, and it would double the size of this field).
    pub(super) client: Option<Box<ClientKey>>,
    pub(crate) payload: S,
}

impl<B, S> Entry<B, S> {
    /// A new entry, counted as one request in flight (the opening request).
    pub(crate) fn new(
        info: SessionInfo,
        backend: Arc<B>,
        client: Option<ClientKey>,
        payload: S,
        now: u64,
    ) -> Self {
        Self {
            last_seen: AtomicU64::new(now),
            in_flight: AtomicU32::new(1),
            closed: CloseFlag::default(),
            hooks: HookState::default(),
            protocol: crate::metrics::UNKNOWN_VERSION,
            last_request: AtomicU64::new(now),
            extras: OnceLock::new(),
            info,
            backend,
            client: client.map(Box::new),
            payload,
        }
    }
}

impl<B, S> Entry<B, S> {
    /// Sets the protocol version label (an index of the metrics' version labels).
    pub(crate) fn with_protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }
}

impl<B, S: ?Sized> Entry<B, S> {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_set()
    }

    /// Marks the session closed and wakes every response body waiting on it (the closer's side
    /// of the [`CloseFlag`] handshake: a body that registered finds itself woken).
    pub(super) fn mark_closed(&self) {
        self.closed.set_then(|| {
            if let Some(extras) = self.extras.get() {
                extras.close.notify_waiters();
            }
        });
    }

    /// The waiter's side of the [`CloseFlag`] handshake: runs `register`, which must create a
    /// `Notified` future of [`close_notify`](Self::close_notify), then answers whether the
    /// session is closed (if not, the close will wake that future).
    pub(crate) fn register_then_check(&self, register: impl FnOnce()) -> bool {
        self.closed.register_then_check(register)
    }

    /// The extras, allocated now if this is their first use.
    pub(crate) fn extras(&self) -> &Extras {
        self.extras.get_or_init(Default::default)
    }

    /// The signal a response body waits on to learn that the session closed.
    pub(crate) fn close_notify(&self) -> Arc<Notify> {
        Arc::clone(&self.extras().close)
    }

    /// Why the session has ended by time at table time `now`, if it has.
    pub(super) fn ended(&self, now: u64, times: &Times) -> Option<CloseReason> {
        if times.lifetime_ms != 0 && self.age(now, times) >= times.lifetime_ms {
            return Some(CloseReason::LifetimeEnded);
        }
        let idle = times.idle_ms != 0
            && self.in_flight.load(Ordering::Acquire) == 0
            && now.saturating_sub(self.last_seen.load(Ordering::Acquire)) >= times.idle_ms;
        idle.then_some(CloseReason::Expired)
    }

    /// The earliest table time this session can end by time (a lower bound, given `now`).
    pub(super) fn ends_no_sooner_than(&self, now: u64, times: &Times) -> u64 {
        let mut at = u64::MAX;
        if times.lifetime_ms != 0 {
            // The table time of the session's creation plus its lifetime; creation is a wall
            // clock time (a restored session may predate this table), so this may be past.
            at = (self.info.created_ms().saturating_add(times.lifetime_ms))
                .saturating_sub(times.epoch_wall_ms);
        }
        if times.idle_ms != 0 {
            // A busy session ends its requests at `now` at the earliest.
            let base = if self.in_flight.load(Ordering::Acquire) == 0 {
                self.last_seen.load(Ordering::Acquire)
            } else {
                now
            };
            at = at.min(base.saturating_add(times.idle_ms));
        }
        at
    }

    /// How old the session is at table time `now`, in ms: from its creation (on whichever node
    /// opened it; its record keeps that time), not from when this table got it.
    pub(super) fn age(&self, now: u64, times: &Times) -> u64 {
        now.saturating_add(times.epoch_wall_ms)
            .saturating_sub(self.info.created_ms())
    }

    /// Whether a request or stream is open, or the session was used at or after `since`.
    pub(super) fn used_since(&self, since: u64) -> bool {
        self.in_flight.load(Ordering::Acquire) != 0
            || self.last_seen.load(Ordering::Acquire) >= since
    }

    /// When the session went idle, if nothing is in flight.
    pub(super) fn idle_since(&self) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.last_seen.load(Ordering::Acquire))
    }

    /// How long the session has been idle at `now` (0 while something is in flight), and how
    /// many requests are in flight.
    pub(crate) fn activity(&self, now: u64) -> (u64, u32) {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        let idle = match in_flight {
            0 => now.saturating_sub(self.last_seen.load(Ordering::Acquire)),
            _ => 0,
        };
        (idle, in_flight)
    }

    /// When the session's last request started.
    pub(super) fn last_request(&self) -> u64 {
        self.last_request.load(Ordering::Relaxed)
    }

    /// Counts a request in flight and stamps its start as the session's last use.
    pub(crate) fn begin(&self, now: u64) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_seen.fetch_max(now, Ordering::AcqRel);
        // Only eviction reads it, as a ranking: a plain store is enough.
        self.last_request.store(now, Ordering::Relaxed);
    }

    /// Ends a request. `now` is the time it finished, or `None` when its response was complete
    /// in the poll that started it: then the stamp of [`begin`](Self::begin) stands, which
    /// saves a clock read on every quick request.
    pub(crate) fn end(&self, now: Option<u64>) {
        if let Some(now) = now {
            self.last_seen.fetch_max(now, Ordering::AcqRel);
        }
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
