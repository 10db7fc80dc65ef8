//! What [`RedisStore`](crate::store::RedisStore) and [`RedisBus`](crate::bus::RedisBus) share:
//! the names of a session's key and channel, and a lazily made, replaceable connection manager.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};

use crate::id::SessionId;

/// Checks that a prefix leaves the hash tag to the session id.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.contains(['{', '}']) {
        return Err(format!(
            "the key prefix {prefix:?} contains `{{` or `}}`, which would change the Redis \
             Cluster hash tag"
        ));
    }
    Ok(())
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
    slot: Mutex<(u64, Option<ConnectionManager>)>,
}

impl LazyManager {
    pub(crate) fn new(client: Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            slot: Mutex::new((0, None)),
        }
    }

    fn slot(&self) -> MutexGuard<'_, (u64, Option<ConnectionManager>)> {
        // Every update is one assignment: the data is good after a panic elsewhere.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current manager and its generation, made if there is none. Call on a tokio
    /// runtime.
    pub(crate) fn get(&self) -> Result<(u64, ConnectionManager), RedisError> {
        let mut slot = self.slot();
        if let Some(manager) = &slot.1 {
            return Ok((slot.0, manager.clone()));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_max_delay(Duration::from_secs(2));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
        slot.0 += 1;
        slot.1 = Some(manager.clone());
        Ok((slot.0, manager))
    }

    /// Drops the manager of `generation` if it is still the current one: the next operation
    /// makes a new one.
    pub(crate) fn retire(&self, generation: u64) {
        let retired = {
            let mut slot = self.slot();
            if slot.0 == generation {
                slot.1.take()
            } else {
                None
            }
        };
        drop(retired);
    }
}
