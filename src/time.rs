//! Time in milliseconds, the way the table and the cluster count it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Whole milliseconds in `d`, saturating at `u64::MAX` instead of truncating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since `since`, by tokio's clock (which tests can pause and advance).
pub(crate) fn elapsed_ms(since: Instant) -> u64 {
    millis(since.elapsed())
}

/// Milliseconds since the Unix epoch, now (0 before 1970).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// `timeout` from now by tokio's clock, or `None` if that is past what an `Instant` holds (a
/// setting of `Duration::MAX` means "no deadline", never a panic).
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
