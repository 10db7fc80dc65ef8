//! Messages between the nodes that hold a session: the [`SessionBus`] trait, [`MemoryBus`]
//! and, with the `redis` feature, [`RedisBus`], with the `postgres` feature, [`PostgresBus`].
//!
//! A session can be live on several nodes at once: a client without a sticky load balancer
//! sends its `tools/call` to node B while its GET stream is held by node A. The bus carries
//! two kinds of [`BusEvent`] per session:
//!
//! * [`Message`](BusEvent::Message): bytes [`published`](crate::Session::publish) to the
//!   session on any node reach every [`subscription`](crate::Session::subscribe) of that
//!   session on every node (a notification caused by a request on node B reaches the stream on
//!   node A; the answer to a server-initiated request reaches the node that asked).
//! * [`Closed`](BusEvent::Closed): a session closed for good on one node (DELETE, an explicit
//!   close, eviction, the end of its lifetime) closes on every node that holds it: their open
//!   streams end and their `on_close` hooks run.
//!
//! A node [`listen`](BusConnection::listen)s to a session while the session is live in its
//! table and stops when it closes there, so events go only to nodes that hold the session (with
//! Redis: one sharded channel per session, `SSUBSCRIBE`d by those nodes only).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::close::CloseReason;
use crate::error::BoxError;
use crate::id::SessionId;

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod wire;

pub use memory::MemoryBus;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresBus;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisBus;

/// The future of [`BusConnection::publish`].
pub type BusFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BusError>> + Send + 'a>>;

/// Where a bus hands the events of the sessions a node listens to: the session's id and the
/// event. Called on the bus's own task; it must not block.
pub type Deliver = Arc<dyn Fn(&SessionId, BusEvent) + Send + Sync>;

/// One event of a session, sent to every node that holds it.
///
/// A bus carries it as it likes: [`MemoryBus`] hands the value over, [`RedisBus`] sends a
/// tag byte and the payload (or the reason's one-byte code). A bus of your own can write a
/// [`CloseReason`] with [`CloseReason::as_str`] and read it back with `str::parse`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusEvent {
    /// Bytes published to the session, for its subscribers.
    Message(Bytes),
    /// The session closed for good on another node, for this reason.
    Closed(CloseReason),
}

/// Publishing on the bus failed: the backend is unreachable or timed out.
#[derive(Debug)]
pub struct BusError {
    source: BoxError,
}

impl BusError {
    /// Wraps the error of a bus's backend.
    pub fn new(source: impl Into<BoxError>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session bus failed: {}", self.source)
    }
}

impl std::error::Error for BusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A bus shared by the nodes of a deployment. Each session table
/// [`connect`](Self::connect)s once, when it comes into being.
pub trait SessionBus: Send + Sync + 'static {
    /// Joins the bus as one node: events of the sessions this node listens to go to `deliver`.
    fn connect(&self, deliver: Deliver) -> Arc<dyn BusConnection>;
}

/// One node's link to the bus. Dropping the last handle leaves the bus.
pub trait BusConnection: Send + Sync + 'static {
    /// Starts delivering the events of `id` to this node (idempotent). Must not block: a
    /// backend that needs a round trip queues it.
    fn listen(&self, id: &SessionId);

    /// Stops delivering the events of `id` to this node.
    fn unlisten(&self, id: &SessionId);

    /// Sends `event` to every node listening to `id`, this one included.
    fn publish<'a>(&'a self, id: &'a SessionId, event: BusEvent) -> BusFuture<'a, ()>;

    /// Checks that the bus answers, without sending anything to a session. While the bus is
    /// known to be unavailable, the layer calls this every
    /// [`Cluster::probe_interval`](crate::Cluster::probe_interval) and publishes again once
    /// it succeeds. The default answers `Ok` at once (a bus that cannot fail, or one whose
    /// `publish` is cheap enough to probe with); [`RedisBus`] sends `PING`.
    fn ping(&self) -> BusFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}
