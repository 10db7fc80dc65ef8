//! The error type the crate's traits and bodies share.

/// A boxed error that can cross threads.
///
/// What [`ResponseBody`](crate::body::ResponseBody) yields when the per-session or inner
/// service's body fails, what [`StoreError`](crate::store::StoreError) and
/// [`BusError`](crate::bus::BusError) wrap, and what the [client](crate) side's errors carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
