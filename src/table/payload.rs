//! Type erasure: what the table keeps of a session's service and state.
//!
//! The table stores each session as one allocation, `Arc<Entry<B, dyn Payload>>`, holding the
//! bookkeeping, the per-session service and its typed state behind one vtable. So the table,
//! and the [`Sessions`](crate::Sessions) handle, exist before anyone knows the service type,
//! and the HTTP layer gets its service back with a checked downcast.

use std::any::Any;

/// A session's service and typed state, behind one vtable.
pub(crate) trait Payload: Send + Sync + 'static {
    fn service(&self) -> &dyn Any;
    fn state(&self) -> &dyn Any;
}

/// The concrete [`Payload`] of one layer's sessions.
pub(crate) struct Stored<S, T> {
    pub(crate) service: S,
    pub(crate) state: T,
}

impl<S: Send + Sync + 'static, T: Send + Sync + 'static> Payload for Stored<S, T> {
    fn service(&self) -> &dyn Any {
        &self.service
    }

    fn state(&self) -> &dyn Any {
        &self.state
    }
}
