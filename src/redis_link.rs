//! What [`RedisStore`](crate::store::RedisStore) and [`RedisBus`](crate::bus::RedisBus) share:
//! the names of a session's key and channel, and a lazily made, replaceable connection manager.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};

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

/// A [`ConnectionManager`] made on first use and replaced after a timeout.
///
/// Made on first use because making one spawns a task (it needs a tokio runtime, which the
/// constructors do not); replaced after a timeout because the manager reconnects only after
/// an I/O error, and a connection that went silent (no reset, no answer) gives none: every
/// later command would wait for its timeout.
pub(crate) struct LazyManager {
    pub(crate) client: Client,
    timeout: Duration,
    /// The generation of the current manager (counts replacements) and the manager.
    current: Mutex<(u64, Option<ConnectionManager>)>,
}

impl LazyManager {
    pub(crate) fn new(client: Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            current: Mutex::new((0, None)),
        }
    }

    fn current(&self) -> MutexGuard<'_, (u64, Option<ConnectionManager>)> {
        lock(&self.current)
    }

    /// The current manager and its generation, made if there is none. Call on a tokio
    /// runtime.
    pub(crate) fn get(&self) -> Result<(u64, ConnectionManager), RedisError> {
        let mut current = self.current();
        if let Some(manager) = &current.1 {
            return Ok((current.0, manager.clone()));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        current.0 += 1;
        current.1 = Some(manager.clone());
        Ok((current.0, manager))
    }

    /// Drops the manager of `generation` if it is still the current one: the next operation
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
