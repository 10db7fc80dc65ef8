//! The [`Sessions`] handle: count, inspect, close and shut down the sessions of one table.

use std::fmt;
use std::sync::{Arc, Weak};

use bytes::Bytes;

use crate::bus::BusError;
use crate::close::CloseReason;
use crate::cluster::data::SessionData;
use crate::cluster::{Link, SessionTable};
use crate::handle::snapshot::SessionSnapshot;
use crate::id::SessionId;
use crate::info::SessionInfo;

/// A handle to the live sessions of one session table: count them, look them up, reach their
/// state, close one, some or all.
///
/// Get it from [`SessionLayer::sessions`](crate::SessionLayer::sessions) or
/// [`SessionService::sessions`](crate::SessionService::sessions). Cheap to clone; all clones
/// share the table. A handle keeps the table alive; hold a [`WeakSessions`] (from
/// [`downgrade`](Self::downgrade)) where that would form a cycle, e.g. inside a per-session
/// service or its state.
#[derive(Clone)]
pub struct Sessions {
    pub(crate) table: Arc<SessionTable>,
    pub(crate) link: Arc<Link>,
}

impl Sessions {
    /// Number of sessions in the table. Sessions that have ended by time count until a request
    /// for them, the sweeper or a full table reclaims them. O(shards).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` names a live (open, not expired) session. A session found to have ended by
    /// time is closed on the way ([`CloseReason::Expired`] or
    /// [`CloseReason::LifetimeEnded`]), as a request for it would.
    pub fn contains(&self, id: &str) -> bool {
        self.table.get(id).is_some()
    }

    /// The [`SessionInfo`] of a live session, or `None` if `id` is unknown or has ended.
    pub fn get(&self, id: &str) -> Option<SessionInfo> {
        self.table.get(id).map(|entry| entry.info.clone())
    }

    /// A clone of the typed state the [`SessionFactory`](crate::SessionFactory) returned for
    /// session `id`; `None` if the session is not live or its state is not a `T`. Keep shared
    /// parts of the state in an `Arc` (or a channel sender) so that the clone reaches them.
    pub fn state<T: Clone + 'static>(&self, id: &str) -> Option<T> {
        let entry = self.table.get(id)?;
        entry.payload.state().downcast_ref::<T>().cloned()
    }

    /// The data map of session `id` (see [`SessionData`]): in the store with a
    /// [cluster](crate::Cluster) (whichever node holds the session), else in the session's
    /// entry if it is live in this table. Writes to a session with no record (or, without a
    /// cluster, not live here) answer [`DataError::SessionGone`](crate::DataError::SessionGone);
    /// reads find nothing (`Ok(None)`, `Ok(false)`).
    pub fn data(&self, id: &SessionId) -> SessionData {
        SessionData::of_id(&self.link, id)
    }

    /// Sends `message` to every [subscription](crate::Session::subscribe) of session `id`:
    /// on every node that holds it when the layer's [cluster](crate::Cluster) has a bus, else
    /// on this one (where nothing happens if the session has no subscriber).
    ///
    /// # Errors
    ///
    /// [`BusError`] if the bus did not take the message.
    pub async fn publish(&self, id: &SessionId, message: impl Into<Bytes>) -> Result<(), BusError> {
        self.link.publish(id, message.into()).await
    }

    /// The ids of all sessions in the table, in no particular order.
    pub fn ids(&self) -> Vec<SessionId> {
        let mut ids = Vec::new();
        self.table
            .for_each(|entry, _| ids.push(entry.info.id().clone()));
        ids
    }

    /// Every session in the table with its idle time and requests in flight, in no particular
    /// order. Takes one shard's read lock at a time.
    pub fn snapshot(&self) -> Vec<SessionSnapshot> {
        let mut all = Vec::new();
        self.table
            .for_each(|entry, now| all.push(SessionSnapshot::of(entry, now)));
        all
    }

    /// Closes session `id` with [`CloseReason::Closed`]: removes it, ends its open response
    /// streams, drops its service once in-flight requests finish and runs the close hook.
    /// Returns `false` if no such session was live. With the default id generator a closed id
    /// is never issued again; a custom generator that repeats ids may reissue it.
    ///
    /// With a [cluster](crate::Cluster), a session live here is closed for good: its record
    /// is deleted and (with a bus) every node closes its copy, in the background. A session
    /// not live on this node is not touched: DELETE it through the layer instead, which
    /// reaches the record wherever the session lives.
    pub fn close(&self, id: &str) -> bool {
        self.table.close(id, CloseReason::Closed)
    }

    /// Closes every session whose info `pick` selects, with [`CloseReason::Closed`] (e.g. all
    /// sessions of a principal whose token was revoked), and returns how many. `pick` runs
    /// without any table lock held.
    pub fn close_where(&self, pick: impl FnMut(&SessionInfo) -> bool) -> usize {
        self.table.close_where(pick, CloseReason::Closed)
    }

    /// Closes every session with [`CloseReason::Shutdown`], stops the sweeper and refuses new
    /// sessions from now on (503 Service Unavailable). Requests that carry an id get 404, or,
    /// with a [cluster](crate::Cluster), 503: the session lives on in the store and another
    /// node can serve it (a load balancer retries there; records are kept).
    /// Returns how many sessions were closed. Call it on graceful shutdown: it ends the open
    /// response streams, so that connections can finish.
    pub fn shutdown(&self) -> usize {
        self.table.shutdown()
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shut_down(&self) -> bool {
        self.table.is_shut_down()
    }

    /// Closes every session that has ended by time now and returns how many; the sweeper does
    /// this on its own every sweep interval.
    pub fn sweep(&self) -> usize {
        self.table.sweep()
    }

    /// The session limit in force.
    pub fn max_sessions(&self) -> usize {
        self.table.max_sessions()
    }

    /// Changes the session limit at run time (the one setting that can change after the table
    /// exists). Lowering it closes nothing: opens are refused until enough sessions end.
    pub fn set_max_sessions(&self, max: usize) {
        self.table.set_max_sessions(max);
    }

    /// A handle that does not keep the table alive.
    pub fn downgrade(&self) -> WeakSessions {
        WeakSessions {
            table: Arc::downgrade(&self.table),
            link: Arc::downgrade(&self.link),
        }
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("len", &self.len())
            .field("max_sessions", &self.max_sessions())
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}

/// A [`Sessions`] handle that does not keep the session table alive; see
/// [`Sessions::downgrade`].
#[derive(Clone, Default)]
pub struct WeakSessions {
    table: Weak<SessionTable>,
    link: Weak<Link>,
}

impl WeakSessions {
    /// The handle, if the table still exists (some layer, service or `Sessions` holds it).
    pub fn upgrade(&self) -> Option<Sessions> {
        Some(Sessions {
            table: self.table.upgrade()?,
            link: self.link.upgrade()?,
        })
    }
}

impl fmt::Debug for WeakSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSessions")
            .field("alive", &(self.table.strong_count() > 0))
            .finish()
    }
}
