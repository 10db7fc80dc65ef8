//! [`SessionData`]: the per-session data map, typed through serde, and [`Subscription`].

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use crate::id::SessionId;
use crate::node::Node;
use crate::store::StoreError;

/// The data map of one session: small JSON values under string keys, kept in the
/// [store](crate::store) beside the session's record.
///
/// With a shared store ([`SessionLayer::store`](crate::SessionLayer::store)) the map is one
/// truth across nodes: every read goes to the store (no cache to invalidate), so a value
/// written through node B is what node A's next read returns, and
/// [`increment`](Self::increment) is one atomic step on the store's side, so increments
/// arriving through several nodes at once lose no count. Without a store the map lives in this
/// process and ends with the session.
///
/// Got from [`Session::data`](crate::Session::data) (in a handler) or
/// [`Sessions::data`](crate::Sessions::data). Each call is one store round trip (on loopback
/// Redis, tens of microseconds); a request that does not touch the map costs none.
#[derive(Clone)]
pub struct SessionData {
    pub(crate) id: SessionId,
    pub(crate) node: Arc<Node>,
}

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionData")
            .field("session", &self.id)
            .finish_non_exhaustive()
    }
}

/// A data-map operation that failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// The session has no record any more (closed, or expired everywhere): nothing was
    /// written.
    SessionGone,
    /// The store failed or did not answer in time.
    Store(StoreError),
    /// The value could not be turned into JSON, or the stored JSON into the asked type.
    Json(serde_json::Error),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SessionGone => f.write_str("the session has no record any more"),
            Self::Store(error) => fmt::Display::fmt(error, f),
            Self::Json(error) => write!(f, "session data is not the expected JSON: {error}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::SessionGone => None,
            Self::Store(error) => Some(error),
            Self::Json(error) => Some(error),
        }
    }
}

impl From<StoreError> for DataError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<serde_json::Error> for DataError {
    fn from(error: serde_json::Error) -> Self {
        Self::Json(error)
    }
}

impl SessionData {
    /// The session whose map this is.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The value under `key`, read as `T`; `Ok(None)` if there is none.
    ///
    /// # Errors
    ///
    /// [`DataError::Store`] if the store fails, [`DataError::Json`] if the value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DataError> {
        match self.node.store.data_get(&self.id, key).await? {
            None => Ok(None),
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
        }
    }

    /// Stores `value` under `key`, replacing what was there.
    ///
    /// # Errors
    ///
    /// [`DataError::SessionGone`] if the session has no record, [`DataError::Store`],
    /// [`DataError::Json`] if `value` does not serialize.
    pub async fn insert<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), DataError> {
        let json = serde_json::to_string(value)?;
        self.live()?;
        let written = self.node.store.data_insert(&self.id, key, json).await?;
        self.still_live()?;
        if written {
            Ok(())
        } else {
            Err(DataError::SessionGone)
        }
    }

    /// Removes `key`; `true` if it was there.
    ///
    /// # Errors
    ///
    /// [`DataError::Store`] if the store fails.
    pub async fn remove(&self, key: &str) -> Result<bool, DataError> {
        Ok(self.node.store.data_remove(&self.id, key).await?)
    }

    /// Adds `by` to the integer under `key` (absent counts as 0) in one atomic step of the
    /// store and returns the new value: concurrent increments through any nodes lose no count.
    ///
    /// # Errors
    ///
    /// [`DataError::SessionGone`] if the session has no record, [`DataError::Store`] if the
    /// store fails or the value is not an integer.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, DataError> {
        self.live()?;
        let value = self.node.store.data_increment(&self.id, key, by).await?;
        self.still_live()?;
        value.ok_or(DataError::SessionGone)
    }

    /// Without a shared store, a write is for a session live in this table only: the table's
    /// private store has no records to refuse writes for closed sessions.
    fn live(&self) -> Result<(), DataError> {
        if self.node.is_private() && !self.node.is_live(&self.id) {
            return Err(DataError::SessionGone);
        }
        Ok(())
    }

    /// After a write to the private store: if the session closed meanwhile, its close may have
    /// run before the write, so the write is undone here (nothing outlives the session).
    fn still_live(&self) -> Result<(), DataError> {
        if self.node.is_private() && !self.node.is_live(&self.id) {
            self.node.forget_private(&self.id);
            return Err(DataError::SessionGone);
        }
        Ok(())
    }
}

/// The messages [published](crate::Session::publish) to one session, as this node receives
/// them: from any node when the layer has a [bus](crate::SessionLayer::bus), else from this
/// one.
///
/// Holds at most 64 messages not yet received; a subscriber that falls further behind skips
/// the oldest (as an SSE stream without resumption would). Ends when the session closes on
/// this node.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) receiver: broadcast::Receiver<Bytes>,
}

impl Subscription {
    /// The next message, or `None` once the session has closed on this node.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            match self.receiver.recv().await {
                Ok(message) => return Some(message),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(
                        skipped,
                        "session subscriber fell behind; oldest messages skipped"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
