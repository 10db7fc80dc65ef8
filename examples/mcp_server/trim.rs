//! Giving freed memory back to the OS after many sessions close.
//!
//! glibc's allocator keeps the memory of freed sessions in its arenas: after 100k sessions
//! expire the process stays at its peak size (see BENCHMARKS.md, "Memory given back after
//! expiry"). `malloc_trim(0)` returns the free pages of every arena to the OS. It walks the
//! arenas, so it is called only after a large drop in the number of live sessions, from a
//! task that looks once a second: never on the request path.

use std::time::Duration;

use tower_mcp_session::Sessions;

/// Trim once the live sessions have fallen by at least this many since their last high...
const MIN_DROP: usize = 1_000;
/// ...and to at most this fraction (1/N) of it.
const MIN_DROP_RATIO: usize = 2;

/// Starts the trimming task; it runs until the process exits.
pub fn spawn(sessions: Sessions) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut high = 0;
        loop {
            interval.tick().await;
            let live = sessions.len();
            high = high.max(live);
            if high - live >= MIN_DROP && live <= high / MIN_DROP_RATIO {
                let trimmed = tokio::task::spawn_blocking(|| {
                    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
                    unsafe { libc::malloc_trim(0) }
                })
                .await;
                tracing::debug!(
                    from = high,
                    to = live,
                    ?trimmed,
                    "sessions closed: heap trimmed"
                );
                high = live;
            }
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (sessions, Duration::ZERO);
}
