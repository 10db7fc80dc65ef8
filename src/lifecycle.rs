//! How sessions end: [`CloseReason`], the shared lifecycle settings, the idle-expiry sweeper
//! and the [`Sessions`] handle.
//!
//! Expiry never depends on the sweeper: a request for an expired session is answered 404 and
//! the session is closed on the spot. The sweeper only reclaims sessions nobody asks for
//! again (clients often vanish without sending DELETE), so that memory stays bounded. It runs
//! as a tokio task started by the first request the service sees, holds only a weak reference
//! to the table (it ends when the last layer, service and handle are dropped), and survives a
//! panicking close hook.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::id::SessionId;
use crate::info::SessionInfo;
use crate::registry::Registry;

/// Why a session was closed; given to the [`on_close`](crate::SessionLayer::on_close) hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent DELETE with the session's id (MCP 2025-11-25, Streamable HTTP,
    /// Session Management: clients SHOULD terminate sessions they no longer need).
    Deleted,
    /// No request used the session for the idle timeout, and none was in flight.
    Expired,
    /// The session table was full and this was the session idle the longest.
    Evicted,
    /// Closed by [`Sessions::close`] or [`Sessions::shutdown`].
    Shutdown,
}

pub(crate) type OnClose = Arc<dyn Fn(&SessionId, CloseReason) + Send + Sync>;

/// Lifecycle settings; atomics so the hot path reads them without a lock.
pub(crate) struct Settings {
    idle_timeout_ms: AtomicU64,
    sweep_interval_ms: AtomicU64,
    max_sessions: AtomicUsize,
    evict_idlest: AtomicBool,
    on_close: RwLock<Option<OnClose>>,
}

/// Default idle timeout: 30 minutes.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default session limit.
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 10_000;

impl Default for Settings {
    fn default() -> Self {
        Self {
            idle_timeout_ms: AtomicU64::new(DEFAULT_IDLE_TIMEOUT.as_millis() as u64),
            sweep_interval_ms: AtomicU64::new(0),
            max_sessions: AtomicUsize::new(DEFAULT_MAX_SESSIONS),
            evict_idlest: AtomicBool::new(false),
            on_close: RwLock::new(None),
        }
    }
}

impl Settings {
    /// 0 means sessions never expire.
    pub(crate) fn idle_timeout_ms(&self) -> u64 {
        self.idle_timeout_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn set_idle_timeout(&self, timeout: Option<Duration>) {
        let ms = timeout.map_or(0, |d| (d.as_millis() as u64).max(1));
        self.idle_timeout_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn set_sweep_interval(&self, interval: Duration) {
        let ms = (interval.as_millis() as u64).max(1);
        self.sweep_interval_ms.store(ms, Ordering::Relaxed);
    }

    /// The configured interval, or a quarter of the idle timeout clamped to 1 s..=60 s.
    fn sweep_interval(&self) -> Duration {
        match self.sweep_interval_ms.load(Ordering::Relaxed) {
            0 => Duration::from_millis(self.idle_timeout_ms() / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            ms => Duration::from_millis(ms),
        }
    }

    pub(crate) fn max_sessions(&self) -> usize {
        self.max_sessions.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_sessions(&self, max: usize) {
        self.max_sessions.store(max, Ordering::Relaxed);
    }

    pub(crate) fn evict_idlest(&self) -> bool {
        self.evict_idlest.load(Ordering::Relaxed)
    }

    pub(crate) fn set_evict_idlest(&self, evict: bool) {
        self.evict_idlest.store(evict, Ordering::Relaxed);
    }

    pub(crate) fn set_on_close(&self, hook: OnClose) {
        *self.on_close.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Runs the close hook; a panic in it is caught and logged, never propagated.
    pub(crate) fn run_on_close(&self, id: &SessionId, reason: CloseReason) {
        self.run_on_close_all(std::iter::once(id), reason);
    }

    /// Runs the close hook for each id, reading it once.
    pub(crate) fn run_on_close_all<'a>(
        &self,
        ids: impl Iterator<Item = &'a SessionId>,
        reason: CloseReason,
    ) {
        let hook = self
            .on_close
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        if hook.is_none() && !debug {
            return;
        }
        for id in ids {
            tracing::debug!(session_id = %id, ?reason, "session closed");
            if let Some(hook) = &hook
                && catch_unwind(AssertUnwindSafe(|| hook(id, reason))).is_err()
            {
                tracing::error!(session_id = %id, ?reason, "on_close hook panicked");
            }
        }
    }
}

/// Whether the sweeper task runs, and how to stop it.
#[derive(Default)]
pub(crate) struct SweeperState {
    started: AtomicBool,
    stop: Arc<Notify>,
    stopped: Arc<AtomicBool>,
}

impl SweeperState {
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
    }
}

/// Starts the sweeper on the current tokio runtime, once per table. Without a runtime it does
/// nothing: expiry still happens on lookup.
pub(crate) fn ensure_sweeper(registry: &Arc<Registry>) {
    let state = &registry.sweeper;
    if state.started.load(Ordering::Relaxed) || registry.settings.idle_timeout_ms() == 0 {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if state.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(registry);
    let stop = Arc::clone(&state.stop);
    let stopped = Arc::clone(&state.stopped);
    handle.spawn(async move {
        while let Some(interval) = weak.upgrade().map(|r| r.settings.sweep_interval()) {
            let notified = stop.notified();
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            if tokio::time::timeout(interval, notified).await.is_ok() {
                break;
            }
            let Some(registry) = weak.upgrade() else {
                break;
            };
            let swept = registry.sweep();
            if swept > 0 {
                tracing::debug!(swept, "idle sessions expired");
            }
        }
    });
}

/// A handle to a layer's live sessions: count them, look them up, close one or all.
///
/// Get it from [`SessionLayer::sessions`](crate::SessionLayer::sessions). Cheap to clone; all
/// clones, and all clones of the layer and its services, share one session table.
#[derive(Clone)]
pub struct Sessions {
    pub(crate) registry: Arc<Registry>,
}

impl Sessions {
    /// Number of sessions in the table. Expired sessions count until a request for them or
    /// the sweeper reclaims them.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether the table holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` names a live (open, not expired) session. An expired session found here
    /// is closed with [`CloseReason::Expired`].
    pub fn contains(&self, id: &str) -> bool {
        self.registry.get(id).is_some()
    }

    /// The [`SessionInfo`] of a live session, or `None` if `id` is unknown or expired.
    pub fn get(&self, id: &str) -> Option<SessionInfo> {
        self.registry.get(id).map(|entry| entry.info.clone())
    }

    /// The ids of all sessions in the table, in no particular order.
    pub fn ids(&self) -> Vec<SessionId> {
        self.registry.ids()
    }

    /// Closes session `id` with [`CloseReason::Shutdown`]: removes it, ends its open response
    /// streams, drops its service once in-flight requests finish and runs the close hook.
    /// Returns `false` if no such session was open. A closed id is never valid again.
    pub fn close(&self, id: &str) -> bool {
        self.registry.close(id, CloseReason::Shutdown)
    }

    /// Closes every session with [`CloseReason::Shutdown`], stops the sweeper and refuses new
    /// sessions from now on (503 Service Unavailable). Requests that carry an id get 404.
    /// Returns how many sessions were closed. Call it on graceful shutdown.
    pub fn shutdown(&self) -> usize {
        self.registry.shutdown()
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shut_down(&self) -> bool {
        self.registry.is_shut_down()
    }

    /// Closes every expired session now and returns how many; the sweeper does this on its
    /// own every sweep interval.
    pub fn sweep(&self) -> usize {
        self.registry.sweep()
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("len", &self.len())
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}
