//! Session records that outlive a node: the [`SessionStore`] trait, [`MemoryStore`] and, with
//! the `redis` feature, [`RedisStore`], with the `postgres` feature, [`PostgresStore`].
//!
//! # The split
//!
//! A session has two halves. What can be serialized is a [`SessionRecord`]: the session's id,
//! the principal it is bound to, when it opened, the request that opened it (method, URI, the
//! headers named by [`Cluster::replay_headers`](crate::Cluster::replay_headers) and
//! the body) and a small data map of JSON values (see [`SessionData`](crate::SessionData)).
//! What cannot be serialized, the per-session service and its open streams, lives on the node
//! that built it. Any node can rebuild the second half from the first: it calls the factory
//! and replays the opening request into the new service (the layer's *restore*, see
//! [`Cluster`](crate::Cluster)).
//!
//! # Why this shape
//!
//! * **One record per session, data map included.** One key (a Redis hash) means one TTL to
//!   refresh, one `DEL` to forget a session and one cluster slot for everything of a session,
//!   without hash-tag bookkeeping between several keys.
//! * **Read through, not cached.** The data map is read from the store on each access:
//!   nodes never disagree, and there is no invalidation to lose. A routed request that does not
//!   touch the data map makes no store round trip at all, so the cost is paid only by handlers
//!   that use it (one command per access on loopback Redis; see BENCHMARKS.md).
//! * **Atomic updates on the store's side.** [`SessionStore::data_increment`] is one command
//!   (`HINCRBY` in a script that refuses a missing record), so increments arriving through
//!   two nodes at once lose no count, without a read-modify-write in the layer.
//! * **TTL off the request path.** The layer never refreshes a record on a request; a
//!   background task refreshes, once per refresh interval and in one batch, the records of the
//!   sessions used on this node since the last round (see
//!   [`Cluster::refresh_interval`](crate::Cluster::refresh_interval)).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

use crate::error::BoxError;
use crate::id::SessionId;
use crate::info::Principal;

#[cfg(any(feature = "redis", feature = "postgres"))]
mod headers;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;

/// `current` (the JSON text under `key`; `None`: absent, counts as 0) plus `by`, as strictly as
/// Redis's `HINCRBY` reads integers: no sign `+`, no spaces, no fraction, no overflow.
pub(crate) fn incremented(current: Option<&str>, key: &str, by: i64) -> Result<i64, StoreError> {
    let not_an_integer = || StoreError::new(format!("the value of `{key}` is not an integer"));
    let current = match current {
        None => 0,
        Some(text) if text.starts_with('+') => return Err(not_an_integer()),
        Some(text) => text.parse::<i64>().map_err(|_| not_an_integer())?,
    };
    current
        .checked_add(by)
        .ok_or_else(|| StoreError::new(format!("`{key}` would overflow")))
}

/// The future of a [`SessionStore`] operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The request that opened a session, as kept for replay on another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpeningRequest {
    /// The request method (`POST` for MCP's `initialize`).
    pub method: Method,
    /// The request target.
    pub uri: Uri,
    /// The headers named by [`Cluster::replay_headers`](crate::Cluster::replay_headers)
    /// (by default `host`, `content-type`, `accept` and `mcp-protocol-version`); credentials
    /// (`authorization`, `cookie`, `proxy-authorization`) are never kept.
    pub headers: HeaderMap,
    /// The whole body (for MCP: the `initialize` request, at most the peek limit).
    pub body: Bytes,
}

/// What a store keeps of one session (the data map is kept beside it, see
/// [`SessionStore::data_get`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's id.
    pub id: SessionId,
    /// The principal the session is bound to, if the layer binds sessions to principals.
    pub principal: Option<Principal>,
    /// When the session opened, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The request that opened the session.
    pub opening: OpeningRequest,
}

/// A store operation that failed, of one of two kinds:
///
/// * **unavailable** ([`is_unavailable`](Self::is_unavailable)): the store is unreachable, the
///   connection dropped, it did not answer within its timeout, or it said it cannot serve
///   now (Redis: `LOADING`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`). Retrying later may
///   succeed; the layer's circuit breaker opens on it (see
///   [`Cluster::probe_interval`](crate::Cluster::probe_interval)).
/// * **other**: the store answered, but with something the layer cannot use (a record it
///   cannot read, a value that is not an integer, a script error). Retrying will not help.
///
/// The layer never turns a store error into 404: opening answers 503 with `Retry-After`
/// ([`Rejection::StoreUnavailable`](crate::Rejection::StoreUnavailable)), and so does a
/// restore, since the session may well exist.
#[derive(Debug)]
pub struct StoreError {
    unavailable: bool,
    source: BoxError,
}

impl StoreError {
    /// Wraps an answer of the store's backend the layer cannot use: an error of the **other**
    /// kind, which a retry will not fix.
    pub fn new(source: impl Into<BoxError>) -> Self {
        Self {
            unavailable: false,
            source: source.into(),
        }
    }

    /// Wraps a failure to reach the store (connection refused or dropped, I/O error, the
    /// store saying it cannot serve now): the **unavailable** kind, worth retrying later.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self {
            unavailable: true,
            source: source.into(),
        }
    }

    /// The operation did not finish within the store's timeout: the **unavailable** kind.
    pub fn timed_out(after: Duration) -> Self {
        Self::unavailable(format!(
            "no answer within {} ms",
            crate::time::millis(after)
        ))
    }

    /// Whether the store could not be reached or could not serve (see the type's docs):
    /// `true` for [`unavailable`](Self::unavailable) and [`timed_out`](Self::timed_out).
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unavailable {
            write!(f, "session store unavailable: {}", self.source)
        } else {
            write!(f, "session store failed: {}", self.source)
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Where session records and their data maps live, shared by every node of a deployment.
///
/// The layer calls [`create`](Self::create) when a session opens, [`load`](Self::load) when a
/// request names a session this node does not hold, [`touch`](Self::touch) from a background
/// task, and [`delete`](Self::delete) when a session closes for good (DELETE, an explicit
/// close, eviction, the end of its lifetime). Handlers reach the data map through
/// [`SessionData`](crate::SessionData).
///
/// Every method must finish in bounded time (a backend applies its own timeout and answers
/// [`StoreError`] past it) and must not panic.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new record with a time to live of `ttl` (`None`: no expiry), in one atomic
    /// step; `false` (nothing written) if a record with this id exists already, so that an
    /// id generator that repeats itself across nodes can never replace another session.
    fn create(&self, record: &SessionRecord, ttl: Option<Duration>) -> StoreFuture<'_, bool>;

    /// The record of `id`, or `None` if there is none (never created, deleted, or expired).
    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>>;

    /// Resets the time to live of each of `ids` that still has a record to `ttl`, and returns
    /// those that have none any more (deleted through another node, or expired): the layer
    /// then closes its own copies of them, so a close whose bus message this node missed (an
    /// outage, or a restore racing a DELETE) ends here within one refresh interval.
    fn touch<'a>(&'a self, ids: &'a [SessionId], ttl: Duration) -> StoreFuture<'a, Vec<SessionId>>;

    /// Checks that the store answers, without changing anything. While the store is known to
    /// be unavailable, the layer calls this every
    /// [`Cluster::probe_interval`](crate::Cluster::probe_interval) and serves store operations
    /// again once it succeeds. The default loads a record no session has (the id `ping`); a
    /// backend with a cheaper check (Redis: `PING`) overrides it.
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let probe = SessionId::parse("ping").map_err(StoreError::new)?;
            self.load(&probe).await.map(drop)
        })
    }

    /// Removes the record of `id` and its data map; `true` if there was one.
    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool>;

    /// Deletes the record of `id` unless its time to live was reset less than `unused_for`
    /// ago (its remaining time to live, out of `ttl`, is then more than `ttl - unused_for`):
    /// true if it deleted it. Eviction on one node ends a session everywhere only through
    /// this, so a session another node keeps using lives on. The default deletes
    /// unconditionally.
    fn delete_if_unused<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
        unused_for: Duration,
    ) -> StoreFuture<'a, bool> {
        let _ = (ttl, unused_for);
        self.delete(id)
    }

    /// The JSON text stored under `key` in the data map of `id`.
    ///
    /// `Ok(None)`: no such key, or no such session.
    fn data_get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, Option<String>>;

    /// Stores the JSON text `json` under `key`; `false` (nothing written) if the session has
    /// no record.
    fn data_insert<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        json: String,
    ) -> StoreFuture<'a, bool>;

    /// Removes `key` from the data map; `true` if it was there.
    fn data_remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, bool>;

    /// Adds `by` to the integer under `key` (absent counts as 0) in one atomic step and returns
    /// the new value; `None` (nothing written) if the session has no record. Fails if the
    /// value is not an integer.
    fn data_increment<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        by: i64,
    ) -> StoreFuture<'a, Option<i64>>;
}
