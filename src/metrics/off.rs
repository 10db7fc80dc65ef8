//! Without the `metrics` feature: the same hooks, each an empty inline function on a
//! zero-sized value, so that the call sites compile to nothing.

use std::future::Future;

use super::labels::{BusOp, OpenOutcome, RejectKind, RestoreOutcome, StoreOp};
use crate::close::CloseReason;
use crate::store::StoreError;

/// What the layer's series depend on (unused without the feature).
pub(crate) struct Setup {
    pub(crate) clustered: bool,
    pub(crate) bus: bool,
    pub(crate) max_sessions: usize,
    pub(crate) peek_budget: usize,
}

/// No series (a tuple struct, not `Copy`, so that the call sites read the same with and
/// without the feature).
#[derive(Clone, Default)]
pub(crate) struct Metrics(());

/// A start time that is never read.
#[derive(Clone, Copy)]
pub(crate) struct NoClock;

#[allow(clippy::unused_self)]
impl Metrics {
    #[inline(always)]
    pub(crate) fn register(setup: &Setup) -> Self {
        let _ = (
            setup.clustered,
            setup.bus,
            setup.max_sessions,
            setup.peek_budget,
        );
        Self(())
    }
    #[inline(always)]
    pub(crate) fn limit(&self, _: usize) {}
    #[inline(always)]
    pub(crate) fn open(&self, _: OpenOutcome) {}
    #[inline(always)]
    pub(crate) fn stored(&self) {}
    #[inline(always)]
    pub(crate) fn closed(&self, _: CloseReason, _: u64, _: u8) {}
    #[inline(always)]
    pub(crate) fn rejected(&self, _: RejectKind) {}
    #[inline(always)]
    pub(crate) fn routed(&self) {}
    #[inline(always)]
    pub(crate) fn sessionless(&self) {}
    #[inline(always)]
    pub(crate) fn in_flight(&self, _: bool) {}
    #[inline(always)]
    pub(crate) fn stream(&self, _: bool) {}
    #[inline(always)]
    pub(crate) fn peek(&self, _: usize, _: bool) {}
    #[inline(always)]
    pub(crate) fn restore(&self, _: RestoreOutcome, _: Option<NoClock>) {}
    #[inline(always)]
    pub(crate) fn start(&self) -> Option<NoClock> {
        None
    }
    #[inline(always)]
    pub(crate) async fn store<T>(
        &self,
        _: StoreOp,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        operation.await
    }
    #[inline(always)]
    pub(crate) async fn bus<T, E>(
        &self,
        _: BusOp,
        operation: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        operation.await
    }
    #[inline(always)]
    pub(crate) fn outage(&self, _: bool, _: bool) {}
    #[inline(always)]
    pub(crate) fn refresh_round(&self, _: usize) {}
    #[inline(always)]
    pub(crate) fn forget_queue(&self, _: bool) {}
}

/// No client series.
#[cfg(feature = "client")]
#[derive(Clone, Default)]
pub(crate) struct ClientMetrics(());

#[cfg(feature = "client")]
#[allow(clippy::unused_self)]
impl ClientMetrics {
    #[inline(always)]
    pub(crate) fn register() -> Self {
        Self(())
    }
    #[inline(always)]
    pub(crate) fn reinitialized(&self) {}
    #[inline(always)]
    pub(crate) fn retried(&self) {}
    #[inline(always)]
    pub(crate) fn lost(&self) {}
}
