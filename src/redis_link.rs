//! What [`RedisStore`](crate::store::RedisStore) and [`RedisBus`](crate::bus::RedisBus) share:
//! the names of a session's key and channel, and a lazily made, replaceable connection (to one
//! Redis or to a Redis Cluster).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterConfig;
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

pub(crate) use crate::redis_config::Source;

use crate::id::SessionId;
use crate::sync::lock;

/// Checks that a key or channel prefix leaves the Redis Cluster hash tag to the session id.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.contains(['{', '}']) {
        return Err(format!(
            "the prefix {prefix:?} contains `{{` or `}}`, which would change the Redis Cluster \
             hash tag"
        ));
    }
    Ok(())
}

/// Whether `error` means Redis could not be reached or cannot serve now (retrying later may
/// succeed), as opposed to an answer the layer cannot use: I/O errors, dropped or refused
/// connections, timeouts, a failed authentication (a rotated password is an outage, not a bug),
/// and the server's `LOADING`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN` and `READONLY` (a
/// replica answering during a failover).
pub(crate) fn is_unavailable(error: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
}

/// "no answer within N ms" for an operation that timed out after `timeout`.
pub(crate) fn no_answer_within(timeout: std::time::Duration) -> String {
    format!("no answer within {} ms", crate::time::millis(timeout))
}

/// `{prefix}{{id}}`: the name of a session's key (and of its channel).
pub(crate) fn session_name(prefix: &str, id: &SessionId) -> String {
    let id = id.as_str();
    let mut name = String::with_capacity(prefix.len() + id.len() + 2);
    name.push_str(prefix);
    name.push('{');
    name.push_str(id);
    name.push('}');
    name
}

/// One connection to what a [`Source`] names: a [`ConnectionManager`] for one Redis, a
/// [`ClusterConnection`] (which follows `MOVED`/`ASK` and refreshes its slot map by itself) for
/// a Redis Cluster. Cheap to clone: both multiplex one set of sockets.
#[derive(Clone)]
pub(crate) enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(con) => con.req_packed_command(cmd),
            Self::Cluster(con) => con.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(con) => con.req_packed_commands(cmd, offset, count),
            Self::Cluster(con) => con.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(con) => con.get_db(),
            Self::Cluster(con) => con.get_db(),
        }
    }
}

/// A [`Link`] made on first use and replaced after a timeout.
///
/// Made on first use because making one spawns a task (it needs a tokio runtime, which the
/// constructors do not); replaced after a timeout because the manager reconnects only after
/// an I/O error, and a connection that went silent (no reset, no answer) gives none: every
/// later command would wait for its timeout.
pub(crate) struct LazyManager {
    source: Source,
    /// Where the source connects, without credentials (for `Debug`).
    pub(crate) endpoint: String,
    timeout: Duration,
    /// The generation of the current link (counts replacements) and the link.
    current: Mutex<(u64, Option<Link>)>,
}

impl LazyManager {
    pub(crate) fn new(source: Source, endpoint: String, timeout: Duration) -> Self {
        Self {
            source,
            endpoint,
            timeout,
            current: Mutex::new((0, None)),
        }
    }

    /// A manager for one Redis `client` (the backends' `new(client, …)` constructors).
    pub(crate) fn single(client: Client, timeout: Duration) -> Self {
        let endpoint = client.get_connection_info().addr().to_string();
        Self::new(Source::Single(client), endpoint, timeout)
    }

    /// The same source with another timeout, and no link yet.
    pub(crate) fn with_timeout(&self, timeout: Duration) -> Self {
        Self::new(self.source.clone(), self.endpoint.clone(), timeout)
    }

    /// The source this manager connects to.
    pub(crate) fn source(&self) -> &Source {
        &self.source
    }

    fn current(&self) -> MutexGuard<'_, (u64, Option<Link>)> {
        lock(&self.current)
    }

    /// The current link and its generation, made if there is none. Call on a tokio
    /// runtime.
    pub(crate) fn get(&self) -> Result<(u64, Link), RedisError> {
        let mut current = self.current();
        if let Some(link) = &current.1 {
            return Ok((current.0, link.clone()));
        }
        let link = match &self.source {
            Source::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_max_delay(Duration::from_secs(2))
                    // No retries inside the connection attempt: the operation that waits for
                    // it gets the real cause (a refused certificate, WRONGPASS) instead of
                    // timing out behind the backoff; the next operation tries again.
                    .set_number_of_retries(0);
                Link::Single(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?)
            }
            Source::Cluster(client) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout);
                Link::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
        current.0 += 1;
        current.1 = Some(link.clone());
        Ok((current.0, link))
    }

    /// Retires the link of `generation` after an operation on it failed with `unavailable`
    /// (Redis could not be reached or refused the connection): the manager reconnects by
    /// itself only after an I/O error, and would keep a connection attempt that failed
    /// authentication (a rotated password, a disabled user) for good.
    pub(crate) fn failed(&self, generation: u64, unavailable: bool) {
        if unavailable {
            self.retire(generation);
        }
    }

    /// Drops the link of `generation` if it is still the current one: the next operation
    /// makes a new one.
    pub(crate) fn retire(&self, generation: u64) {
        let retired = {
            let mut current = self.current();
            if current.0 == generation {
                current.1.take()
            } else {
                None
            }
        };
        drop(retired);
    }
}

/// Runs `futures` concurrently and returns their outputs in order (the cluster's per-slot
/// pipelines of one operation, which do not wait for each other).
pub(crate) async fn join_all<T>(
    futures: Vec<std::pin::Pin<Box<dyn Future<Output = T> + Send + '_>>>,
) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
