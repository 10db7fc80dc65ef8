//! [`SessionData`]: the per-session data map, typed through serde, and [`Subscription`].

use std::fmt;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use crate::cluster::{Entry, Link};
use crate::id::SessionId;
use crate::metrics::StoreOp;
use crate::store::{self, StoreError};
use crate::sync::lock;

/// The data map of one session: small JSON values under string keys.
///
/// With a [cluster](crate::Cluster) the map lives in the store beside the session's record
/// and is one truth across nodes: every read goes to the store (no cache to invalidate), so a
/// value written through node B is what node A's next read returns, and
/// [`increment`](Self::increment) is one atomic step on the store's side, so increments
/// arriving through several nodes at once lose no count. Each call is one store round trip (on
/// loopback Redis, tens of microseconds); a request that does not touch the map costs none.
///
/// Without a cluster the map lives in the session's entry in this process, and ends with the
/// session.
///
/// Got from [`Session::data`](crate::Session::data) (in a handler) or
/// [`Sessions::data`](crate::Sessions::data).
#[derive(Clone)]
pub struct SessionData {
    id: SessionId,
    place: Place,
}

#[derive(Clone)]
enum Place {
    /// In the store of the link.
    Store(Arc<Link>),
    /// In the entry (`None`: no live session of that id).
    Entry(Option<Weak<Entry>>),
}

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionData")
            .field("session", &self.id)
            .field("in_store", &matches!(self.place, Place::Store(_)))
            .finish()
    }
}

/// A data-map operation that failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// The session has no record any more (closed, expired everywhere, or lost by the store):
    /// nothing was written. The layer has closed the session on every node, so its next
    /// request gets 404 and the client re-initializes (MCP 2025-11-25, Streamable HTTP,
    /// Session Management); a server can answer 404 to this request too, since nothing of
    /// it was applied.
    SessionGone,
    /// The store could not be reached, did not answer in time, or is known to be down (its
    /// circuit breaker is open, see [`Cluster::probe_interval`](crate::Cluster::probe_interval)):
    /// nothing was read or written, and the same operation may succeed later. Answered at once
    /// while the breaker is open.
    Unavailable(StoreError),
    /// The store answered with something unusable (a value that is not an integer, one that
    /// would overflow, a record it cannot read): retrying will not help.
    Store(StoreError),
    /// The value could not be turned into JSON, or the stored JSON into the asked type.
    Json(serde_json::Error),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SessionGone => f.write_str("the session has no record any more"),
            Self::Unavailable(error) | Self::Store(error) => fmt::Display::fmt(error, f),
            Self::Json(error) => write!(f, "session data is not the expected JSON: {error}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::SessionGone => None,
            Self::Unavailable(error) | Self::Store(error) => Some(error),
            Self::Json(error) => Some(error),
        }
    }
}

impl DataError {
    /// Whether the same operation may succeed if tried again later:
    /// [`Unavailable`](Self::Unavailable) only.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// [`DataError::Unavailable`] or [`DataError::Store`], by the error's
/// [kind](StoreError::is_unavailable).
impl From<StoreError> for DataError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            Self::Unavailable(error)
        } else {
            Self::Store(error)
        }
    }
}

impl From<serde_json::Error> for DataError {
    fn from(error: serde_json::Error) -> Self {
        Self::Json(error)
    }
}

impl SessionData {
    /// The data map of the session `entry` holds.
    pub(crate) fn of(entry: &Arc<Entry>) -> Self {
        let place = if entry.backend.is_clustered() {
            Place::Store(Arc::clone(&entry.backend))
        } else {
            Place::Entry(Some(Arc::downgrade(entry)))
        };
        Self {
            id: entry.info.id().clone(),
            place,
        }
    }

    /// The data map of session `id` of the table `link` belongs to: in the store, or in the
    /// session's entry if it is live in the table (else a map that refuses writes).
    pub(crate) fn of_id(link: &Arc<Link>, id: &SessionId) -> Self {
        let place = if link.is_clustered() {
            Place::Store(Arc::clone(link))
        } else {
            let entry = link.table().and_then(|t| t.get(id.as_str()));
            Place::Entry(entry.as_ref().map(Arc::downgrade))
        };
        Self {
            id: id.clone(),
            place,
        }
    }

    /// The session whose map this is.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The entry of a session without a store, if it is still live.
    fn live_entry(weak: &Option<Weak<Entry>>) -> Option<Arc<Entry>> {
        weak.as_ref()?.upgrade().filter(|entry| !entry.is_closed())
    }

    /// The value under `key`, read as `T`; `Ok(None)` if there is none (or no such session).
    ///
    /// # Errors
    ///
    /// [`DataError::Unavailable`] if the store cannot be reached, [`DataError::Store`] if it
    /// fails otherwise, [`DataError::Json`] if the value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, DataError> {
        let json = match &self.place {
            Place::Store(link) => {
                let read = link
                    .metrics
                    .store(StoreOp::DataGet, store_of(link)?.data_get(&self.id, key))
                    .await;
                link.store_health(&read);
                read?
            }
            Place::Entry(weak) => Self::live_entry(weak)
                .and_then(|entry| lock(&entry.extras().data).get(key).cloned()),
        };
        match json {
            None => Ok(None),
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
        }
    }

    /// Stores `value` under `key`, replacing what was there.
    ///
    /// # Errors
    ///
    /// [`DataError::SessionGone`] if the session has no record (or, without a store, is no
    /// longer live), [`DataError::Unavailable`] if the store cannot be reached,
    /// [`DataError::Store`] if it fails otherwise, [`DataError::Json`] if `value` does not
    /// serialize.
    pub async fn insert<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), DataError> {
        let json = serde_json::to_string(value)?;
        let written = match &self.place {
            Place::Store(link) => {
                let written = link
                    .metrics
                    .store(
                        StoreOp::DataInsert,
                        store_of(link)?.data_insert(&self.id, key, json),
                    )
                    .await;
                link.store_health(&written);
                gone_unless(link, &self.id, written?)?
            }
            Place::Entry(weak) => Self::live_entry(weak).is_some_and(|entry| {
                lock(&entry.extras().data).insert(key.to_owned(), json);
                true
            }),
        };
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
    /// [`DataError::Unavailable`] if the store cannot be reached, [`DataError::Store`] if it
    /// fails otherwise.
    pub async fn remove(&self, key: &str) -> Result<bool, DataError> {
        Ok(match &self.place {
            Place::Store(link) => {
                let removed = link
                    .metrics
                    .store(
                        StoreOp::DataRemove,
                        store_of(link)?.data_remove(&self.id, key),
                    )
                    .await;
                link.store_health(&removed);
                removed?
            }
            Place::Entry(weak) => Self::live_entry(weak)
                .is_some_and(|entry| lock(&entry.extras().data).remove(key).is_some()),
        })
    }

    /// Adds `by` to the integer under `key` (absent counts as 0) in one atomic step and
    /// returns the new value: concurrent increments through any nodes lose no count.
    ///
    /// # Errors
    ///
    /// [`DataError::SessionGone`] if the session has no record (or, without a store, is no
    /// longer live), [`DataError::Unavailable`] if the store cannot be reached,
    /// [`DataError::Store`] if it fails otherwise or the value is not an integer
    /// (as strict as Redis's `HINCRBY`: no sign `+`, no spaces, no fraction) or would overflow
    /// an `i64`.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, DataError> {
        let value = match &self.place {
            Place::Store(link) => {
                let value = link
                    .metrics
                    .store(
                        StoreOp::DataIncrement,
                        store_of(link)?.data_increment(&self.id, key, by),
                    )
                    .await;
                link.store_health(&value);
                let value = value?;
                gone_unless(link, &self.id, value.is_some())?;
                value
            }
            Place::Entry(weak) => match Self::live_entry(weak) {
                None => None,
                Some(entry) => {
                    let mut data = lock(&entry.extras().data);
                    let next = store::incremented(data.get(key).map(String::as_str), key, by)?;
                    data.insert(key.to_owned(), next.to_string());
                    Some(next)
                }
            },
        };
        value.ok_or(DataError::SessionGone)
    }
}

/// The store of a clustered link (every `Place::Store` link has one), unless it is known to be
/// unavailable.
fn store_of(link: &Link) -> Result<&dyn crate::store::SessionStore, DataError> {
    link.usable_store()?.ok_or(DataError::SessionGone)
}

/// `true` if a write found the session's record; else the session ends everywhere now (see
/// [`Link::record_gone`]) and the write answers [`DataError::SessionGone`].
fn gone_unless(link: &Link, id: &SessionId, found: bool) -> Result<bool, DataError> {
    if !found {
        link.record_gone(id);
        return Err(DataError::SessionGone);
    }
    Ok(true)
}

/// The messages [published](crate::Session::publish) to one session, as this node receives
/// them: from any node when the layer's [cluster](crate::Cluster) has a bus, else from this
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
