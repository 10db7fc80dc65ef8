//! The table's settings, frozen when the table is built, and [`Eviction`].

use std::time::Duration;

use crate::metrics::Metrics;
use crate::table::hooks::Hooks;

/// What a full table does with an opening request (see
/// [`SessionLayerBuilder::eviction`](crate::SessionLayerBuilder::eviction)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Eviction {
    /// Refuse it: 503 Service Unavailable with `Retry-After`. The default.
    #[default]
    Off,
    /// Close the session whose last request started longest ago, among a sample (a few
    /// entries of four shards, as Redis samples keys): O(1) however large the table. A
    /// session whose only activity is an open response stream (an MCP GET stream) ranks by
    /// the request that opened the stream, so it can be evicted; its streams end, and MCP
    /// clients then re-initialize on 404 (MCP 2025-11-25, Streamable HTTP, Session
    /// Management).
    LastRequest,
    /// Close the session idle longest (since a request started or a response ended), among
    /// the same sample; a session with a request or response body in flight is never evicted.
    LastActivity,
}

/// Everything the table reads; see the builder methods of
/// [`SessionLayerBuilder`](crate::SessionLayerBuilder) for meanings and defaults.
#[derive(Clone)]
pub(crate) struct TableSettings {
    /// Idle timeout in ms; 0: sessions never expire for idleness.
    pub(crate) idle_ms: u64,
    /// Most lifetime in ms; 0: unlimited.
    pub(crate) lifetime_ms: u64,
    pub(crate) sweep_interval: Option<Duration>,
    pub(crate) max_sessions: usize,
    pub(crate) max_per_principal: Option<usize>,
    pub(crate) max_per_client: Option<usize>,
    pub(crate) eviction: Eviction,
    pub(crate) hooks: Hooks,
    /// The layer's series (registered at build; a no-op set before).
    pub(crate) metrics: Metrics,
}

impl Default for TableSettings {
    fn default() -> Self {
        Self {
            idle_ms: 30 * 60 * 1000,
            lifetime_ms: 0,
            sweep_interval: None,
            max_sessions: 10_000,
            max_per_principal: None,
            max_per_client: None,
            eviction: Eviction::Off,
            hooks: Hooks::default(),
            metrics: Metrics::default(),
        }
    }
}

impl TableSettings {
    /// The configured interval, or a quarter of the idle timeout (or of the lifetime, if that
    /// is shorter) clamped to 1 s..=60 s.
    pub(crate) fn sweep_interval(&self) -> Duration {
        self.sweep_interval.unwrap_or_else(|| {
            Duration::from_millis(self.shortest_timeout_ms() / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(60))
        })
    }

    /// The shorter of the idle timeout and the lifetime, in ms (0 when neither is set): no
    /// session opened at `t` can end by time before `t` plus this.
    pub(crate) fn shortest_timeout_ms(&self) -> u64 {
        match (self.idle_ms, self.lifetime_ms) {
            (0, l) => l,
            (i, 0) => i,
            (i, l) => i.min(l),
        }
    }

    /// Whether sessions can end by time at all (then a sweeper is worth running).
    pub(crate) fn expires(&self) -> bool {
        self.idle_ms != 0 || self.lifetime_ms != 0
    }

    /// The idle timeout, if there is one.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_ms != 0).then(|| Duration::from_millis(self.idle_ms))
    }
}
