//! Sessions across nodes: the [`Cluster`] settings, and each table's [`Link`] to its store and
//! bus.
//!
//! A session has two halves. What can be serialized is its store record (id, principal,
//! creation time, the opening request) and its data map; what cannot, the per-session service
//! and its open streams, lives on the node that built it. Any node rebuilds the second half
//! from the first (a *restore*: the factory, then a replay of the opening request). The link
//! is this node's side of that arrangement:
//!
//! - [`mailbox`]: the local subscribers of each session, fed by `publish` here or by the bus;
//! - [`flight`]: restores in flight (one per id, a bounded number in all);
//! - [`forget`]: closes for good, carried out in the background (record deleted, close
//!   published);
//! - [`refresh`]: the background refresh of the records' time to live;
//! - [`health`]: the circuit breakers of the store and the bus (fail at once during an
//!   outage, probe in the background, refresh everything when the store is back);
//! - [`data`]: the per-session data map users reach through a [`Session`](crate::Session).
//!
//! Nothing here runs on the path of a request routed to a session live on this node: such a
//! request touches only the table. Without a cluster the link keeps only the mailboxes, and
//! data maps live in their sessions' entries.

pub(crate) mod data;
pub(crate) mod flight;
mod forget;
mod health;
mod mailbox;
mod refresh;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderName;

use crate::bus::{BusConnection, BusError, BusEvent, SessionBus};
use crate::close::CloseReason;
use crate::id::SessionId;
use crate::info::SessionInfo;
use crate::metrics::{BusOp, Metrics};
use crate::store::{SessionStore, StoreError};
use crate::sync::Periodic;
use crate::table::{self, Backend, Scope, Table};
use flight::Restores;
use forget::{Forget, ForgetQueue};
use health::{Change, Health, Part};
use mailbox::Mailboxes;

/// The table of a layer, linked to its cluster (or to nothing beyond this process).
pub(crate) type SessionTable = Table<Link>;
/// An entry of such a table.
pub(crate) type Entry = table::DynEntry<Link>;

/// Sessions shared by the nodes of a deployment: a store for their records and data, and
/// (optionally) a bus for the messages and closes between nodes. Give it to
/// [`SessionLayerBuilder::cluster`](crate::SessionLayerBuilder::cluster).
///
/// ```
/// use tower_mcp_session::Cluster;
/// use tower_mcp_session::bus::MemoryBus;
/// use tower_mcp_session::store::MemoryStore;
///
/// // Two layers in one process sharing sessions (RedisStore and RedisBus across processes).
/// let (store, bus) = (MemoryStore::new(), MemoryBus::new());
/// let cluster = Cluster::new(store).bus(bus);
/// # let _ = cluster;
/// ```
///
/// What the layer does with it:
///
/// * **Open**: the session's record (id, principal, creation time, the opening request:
///   method, URI, the [replay headers](Self::replay_headers) and the body, read whole within
///   the [peek limit](crate::SessionLayerBuilder::peek_limit)) is written with a time to live
///   of the idle timeout, before the id is sent. The store unreachable: 503 with
///   `Retry-After` ([`Rejection::StoreUnavailable`](crate::Rejection::StoreUnavailable)).
/// * **A request for a session live on this node** makes no store round trip. One for a
///   session that is not is *restored*: the record loaded, the per-session service rebuilt
///   with the factory, the opening request replayed into it (MCP: followed by
///   `notifications/initialized`), then the request routed; one restore per id per node at a
///   time, at most 256 in flight per node. No record: 404. The store unreachable: 503, never
///   404 (the session may well exist).
/// * **Refresh**: the records of sessions used on this node get their time to live reset in
///   the background, once per [refresh interval](Self::refresh_interval), in batches.
/// * **Closes**: DELETE (the close policy) deletes the record and closes the session on every
///   node; so do [`Sessions::close`](crate::Sessions::close), [`Session::close`](crate::Session::close)
///   and the end of the [lifetime](crate::SessionLayerBuilder::max_lifetime) (in the
///   background), and eviction unless another node has used the session since this one did.
///   Idle expiry on one node and [`Sessions::shutdown`](crate::Sessions::shutdown) (a rolling
///   deploy) close only this node's copy: the record stays for the others until its time to
///   live ends. A copy whose record is gone (a data operation or a restore finds none, a
///   refresh round finds it expired, the store came back empty) closes at that moment, and
///   the node tells the others, so the session's next request gets 404 on every node.
/// * **Outages**: the first answer saying the store (or the bus) is unavailable opens a
///   circuit breaker, logged once: until a probe every [probe
///   interval](Self::probe_interval) sees it again, data operations, publishes, opens (503)
///   and restores (503) fail at once instead of waiting out the store's timeout. Sessions live
///   on a node keep serving requests that touch no data.
/// * **Data**: [`SessionData`](crate::SessionData) reads and writes the store, shared by every
///   node. Writes need the record, which is written once the per-session service has answered
///   the opening request: a handler of `initialize` cannot write yet (it gets
///   [`DataError::SessionGone`](crate::DataError::SessionGone)); treat an absent key as its
///   default instead of seeding it. A restore replays `initialize`: its handlers must not
///   reset data either.
/// * **Messages**: with a bus, [published](crate::Session::publish) messages reach the
///   session's [subscribers](crate::Session::subscribe) on every node. A node listens to a
///   session from its open or restore there; with a networked bus the subscription takes a
///   round trip to be in place, so a message published in the first milliseconds of a
///   session's life on a node may miss that node's subscribers (a close it misses is caught
///   by the next refresh round).
#[derive(Clone)]
pub struct Cluster {
    store: Arc<dyn SessionStore>,
    bus: Option<Arc<dyn SessionBus>>,
    replay_headers: Vec<HeaderName>,
    refresh_interval: Option<Duration>,
    probe_interval: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bus", &self.bus.is_some())
            .field("replay_headers", &self.replay_headers)
            .field("refresh_interval", &self.refresh_interval)
            .field("probe_interval", &self.probe_interval)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Sessions whose records and data live in `store`, with no bus (closes and messages stay
    /// on their node; a copy whose record is gone closes on the node that finds it gone, and
    /// the other nodes' copies at their next refresh round).
    pub fn new<S: SessionStore>(store: S) -> Self {
        Self {
            store: Arc::new(store),
            bus: None,
            replay_headers: default_replay_headers(),
            refresh_interval: None,
            probe_interval: health::DEFAULT_PROBE_INTERVAL,
        }
    }

    /// Joins `bus` as one node: closes for good reach every node that holds the session at
    /// once, and published messages reach the session's subscribers on every node. Default:
    /// no bus.
    pub fn bus<B: SessionBus>(mut self, bus: B) -> Self {
        self.bus = Some(Arc::new(bus));
        self
    }

    /// The headers of the opening request kept in its record and replayed on restore.
    /// Default: `host`, `content-type`, `accept` and `mcp-protocol-version`, what an MCP server
    /// reads of `initialize` (a service that checks `Host` against DNS rebinding, as rmcp's
    /// does, refuses a replay without it). `authorization`, `cookie` and
    /// `proxy-authorization` are never kept, even if named: the record is readable by anyone
    /// with access to the store.
    pub fn replay_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.replay_headers = names.into_iter().collect();
        self
    }

    /// How often the records of sessions used on this node have their time to live reset to
    /// the idle timeout, in one batch per round. Default: a quarter of the idle timeout,
    /// clamped to 100 ms..=30 s; never more than half the idle timeout, whatever is set (so a
    /// record outlives every node's copy of its session), and at least 10 ms. Each session
    /// costs at most one store command per interval, however many requests it gets.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = Some(interval.max(Duration::from_millis(10)));
        self
    }

    /// How often a node checks a store (or bus) it found unavailable, with
    /// [`SessionStore::ping`](crate::store::SessionStore::ping) (or
    /// [`BusConnection::ping`](crate::bus::BusConnection::ping)). Default: 500 ms; at least
    /// 10 ms, whatever is set.
    ///
    /// The first operation that finds the store unavailable (unreachable, timed out, or
    /// saying it cannot serve: [`StoreError::is_unavailable`]) opens a circuit breaker, logged
    /// once: until a probe succeeds, opens and restores answer 503 with `Retry-After` and
    /// [`SessionData`](crate::SessionData) operations fail with
    /// [`DataError::Unavailable`](crate::DataError::Unavailable), all at once instead of each
    /// waiting out the store's timeout; sessions live on the node keep serving requests that
    /// need no data. When a probe succeeds (logged once), the node refreshes the records of
    /// all its sessions at once, and closes every copy whose record is gone (a store that came
    /// back empty), so their next request gets 404 and the client re-initializes. The bus's
    /// breaker works the same way: publishing fails at once while it is open.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval.max(Duration::from_millis(10));
        self
    }
}

impl Cluster {
    /// Whether the cluster has a bus.
    pub(crate) fn has_bus(&self) -> bool {
        self.bus.is_some()
    }
}

/// The headers of an opening request kept for replay by default.
fn default_replay_headers() -> Vec<HeaderName> {
    vec![
        http::header::HOST,
        http::header::CONTENT_TYPE,
        http::header::ACCEPT,
        crate::mcp::MCP_PROTOCOL_VERSION,
    ]
}

/// A table's link to the rest of its deployment.
pub(crate) struct Link {
    /// This link, for the background tasks it starts.
    this: Weak<Link>,
    table: Weak<SessionTable>,
    mailboxes: Mailboxes,
    cluster: Option<ClusterState>,
    /// The layer's series (the table's).
    pub(crate) metrics: Metrics,
}

/// What a link with a store holds.
struct ClusterState {
    store: Arc<dyn SessionStore>,
    bus: Option<Arc<dyn BusConnection>>,
    replay_headers: Vec<HeaderName>,
    /// The records' time to live: the idle timeout (`None`: records never expire).
    ttl: Option<Duration>,
    refresh_interval: Duration,
    restores: Restores,
    forget: ForgetQueue,
    refresher: Periodic,
    /// Table time (ms) of the last refresh round's start.
    refreshed_at: AtomicU64,
    health: Health,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.refresher.stop();
        }
    }
}

impl Link {
    /// The link of `table`, to `cluster` if there is one.
    pub(crate) fn new(table: &Arc<SessionTable>, cluster: Option<Cluster>) -> Arc<Self> {
        let ttl = table.settings.idle_timeout();
        Arc::new_cyclic(|link: &Weak<Link>| Self {
            this: link.clone(),
            table: Arc::downgrade(table),
            mailboxes: Mailboxes::default(),
            cluster: cluster.map(|cluster| {
                let bus = cluster
                    .bus
                    .as_ref()
                    .map(|bus| connect(&**bus, link.clone()));
                ClusterState {
                    forget: ForgetQueue::new(
                        Arc::clone(&cluster.store),
                        bus.clone(),
                        ttl,
                        table.settings.metrics.clone(),
                    ),
                    store: cluster.store,
                    bus,
                    replay_headers: cluster.replay_headers,
                    ttl,
                    refresh_interval: refresh::interval(cluster.refresh_interval, ttl),
                    restores: Restores::default(),
                    refresher: Periodic::default(),
                    refreshed_at: AtomicU64::new(0),
                    health: Health::new(cluster.probe_interval),
                }
            }),
            metrics: table.settings.metrics.clone(),
        })
    }

    /// Whether the link has a store (sessions span nodes).
    pub(crate) fn is_clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// The store, if the link has one.
    pub(crate) fn store(&self) -> Option<&dyn SessionStore> {
        self.cluster.as_ref().map(|c| &*c.store)
    }

    /// The restores in flight (`None` without a store).
    pub(crate) fn restores(&self) -> Option<&Restores> {
        self.cluster.as_ref().map(|c| &c.restores)
    }

    /// The headers of an opening request that its record keeps.
    pub(crate) fn replay_headers(&self) -> &[HeaderName] {
        self.cluster
            .as_ref()
            .map_or(&[][..], |c| &c.replay_headers[..])
    }

    /// The records' time to live.
    pub(crate) fn record_ttl(&self) -> Option<Duration> {
        self.cluster.as_ref().and_then(|c| c.ttl)
    }

    /// Whether the store is known to be unavailable (its breaker is open): store operations
    /// are to fail at once.
    pub(crate) fn store_is_down(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.health.is_down(Part::Store))
    }

    /// The store, if the link has one and it is not known to be unavailable; the error to
    /// answer with if it is.
    pub(crate) fn usable_store(&self) -> Result<Option<&dyn SessionStore>, StoreError> {
        match &self.cluster {
            None => Ok(None),
            Some(cluster) if cluster.health.is_down(Part::Store) => {
                Err(StoreError::unavailable(format!(
                    "unavailable since an earlier operation; probing every {} ms",
                    crate::time::millis(cluster.health.probe_interval)
                )))
            }
            Some(cluster) => Ok(Some(&*cluster.store)),
        }
    }

    /// Feeds the result of a store operation to the store's breaker: opening it starts the
    /// probe, closing it refreshes every session of this node.
    pub(crate) fn store_health<T>(&self, result: &Result<T, StoreError>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        match cluster.health.store(result) {
            Change::None => {}
            Change::Opened => {
                self.metrics.outage(false, true);
                crate::sync::spawn(health::probe(self.this.clone(), Part::Store));
            }
            Change::Closed => {
                self.metrics.outage(false, false);
                crate::sync::spawn(refresh::refresh_everything(self.this.clone()));
            }
        }
    }

    /// Feeds the result of a bus operation to the bus's breaker.
    pub(crate) fn bus_health<T>(&self, result: &Result<T, BusError>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        match cluster.health.bus(result) {
            Change::None => {}
            Change::Opened => {
                self.metrics.outage(true, true);
                crate::sync::spawn(health::probe(self.this.clone(), Part::Bus));
            }
            Change::Closed => self.metrics.outage(true, false),
        }
    }

    /// The record of `id` turned out to be gone (a data operation, a refresh or a restore found
    /// none): closes this node's copy at once and tells the other nodes, so the session's next
    /// request gets 404 wherever it lands.
    pub(crate) fn record_gone(&self, id: &SessionId) {
        if let Some(table) = self.table() {
            table.close_copy(id, CloseReason::Closed);
        }
        let (Some(link), true) = (self.this.upgrade(), self.has_bus()) else {
            return;
        };
        let id = id.clone();
        crate::sync::spawn(async move { link.publish_closed(&id, CloseReason::Closed).await });
    }

    /// Whether the link has a bus: messages published here reach the other nodes.
    pub(crate) fn has_bus(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.bus.is_some())
    }

    /// The table this link belongs to, if it still exists.
    pub(crate) fn table(&self) -> Option<Arc<SessionTable>> {
        self.table.upgrade()
    }

    /// A receiver of the messages published to `id` from now on (on any node, with a bus).
    pub(crate) fn subscribe(&self, id: &SessionId) -> tokio::sync::broadcast::Receiver<Bytes> {
        self.mailboxes.subscribe(id)
    }

    /// Ends every subscription of `id` on this node.
    pub(crate) fn drop_mailbox(&self, id: &SessionId) {
        self.mailboxes.remove(id);
    }

    /// Publishes `message` to every subscriber of `id`: through the bus if there is one, else
    /// to this node's.
    pub(crate) async fn publish(&self, id: &SessionId, message: Bytes) -> Result<(), BusError> {
        match self
            .cluster
            .as_ref()
            .and_then(|c| Some((c, c.bus.as_ref()?)))
        {
            Some((cluster, bus)) => {
                if cluster.health.is_down(Part::Bus) {
                    return Err(BusError::new(format!(
                        "unavailable since an earlier operation; probing every {} ms",
                        crate::time::millis(cluster.health.probe_interval)
                    )));
                }
                let result = self
                    .metrics
                    .bus(BusOp::Publish, bus.publish(id, BusEvent::Message(message)))
                    .await;
                self.bus_health(&result);
                result
            }
            None => {
                self.mailboxes.deliver(id, message);
                Ok(())
            }
        }
    }

    /// A session opened or is being restored here: listen to its events.
    pub(crate) fn listen(&self, id: &SessionId) {
        if let Some(bus) = self.cluster.as_ref().and_then(|c| c.bus.as_ref()) {
            bus.listen(id);
        }
    }

    /// A restore that listened to `id` failed: stop listening.
    pub(crate) fn unlisten(&self, id: &SessionId) {
        if let Some(bus) = self.cluster.as_ref().and_then(|c| c.bus.as_ref()) {
            bus.unlisten(id);
        }
    }

    /// Tells every node that holds `id` to close it (DELETE's path, after the record is gone).
    pub(crate) async fn publish_closed(&self, id: &SessionId, reason: CloseReason) {
        if let Some(cluster) = &self.cluster
            && let Some(bus) = &cluster.bus
            && !cluster.health.is_down(Part::Bus)
        {
            let result = self
                .metrics
                .bus(BusOp::Publish, bus.publish(id, BusEvent::Closed(reason)))
                .await;
            self.bus_health(&result);
        }
    }

    /// Deletes the record of `id` and closes it on the other nodes, off the caller's path.
    pub(crate) fn forget_later(&self, id: &SessionId, reason: CloseReason) {
        if let Some(cluster) = &self.cluster {
            cluster.forget.push(Forget {
                id: id.clone(),
                reason,
                unused_for: None,
            });
        }
    }

    /// Whether `id` is live in this node's table.
    fn is_live(&self, id: &SessionId) -> bool {
        self.table
            .upgrade()
            .is_some_and(|table| table.get(id.as_str()).is_some())
    }
}

impl Backend for Link {
    fn closed(&self, info: &SessionInfo, reason: CloseReason, scope: Scope, unused_for: Duration) {
        let id = info.id();
        // A newer copy of the same id may be live here already (restored while this one's
        // close was on its way): its listening and its subscribers stay.
        let shared_by_copies =
            self.cluster.as_ref().is_some_and(|c| c.bus.is_some()) || !self.mailboxes.is_empty();
        if !(shared_by_copies && self.is_live(id)) {
            self.unlisten(id);
            self.mailboxes.remove(id);
        }
        let Some(cluster) = &self.cluster else {
            return;
        };
        if scope == Scope::Reason && reason.ends_everywhere() {
            // Eviction frees memory here; it ends the session everywhere only if no other node
            // has used it since this one did (an attacker's sessions, used nowhere else, go; a
            // session busy through another node stays). This node's own refresh may have reset
            // the time to live up to one refresh interval after its last request.
            let unused_for = (reason == CloseReason::Evicted)
                .then(|| unused_for.saturating_sub(cluster.refresh_interval));
            cluster.forget.push(Forget {
                id: id.clone(),
                reason,
                unused_for,
            });
        }
    }
}

/// Joins `bus` with a delivery that reaches the link through a weak reference (the bus must
/// not keep the table alive).
fn connect(bus: &dyn SessionBus, link: Weak<Link>) -> Arc<dyn BusConnection> {
    bus.connect(Arc::new(move |id: &SessionId, event: BusEvent| {
        let Some(link) = link.upgrade() else {
            return;
        };
        match event {
            BusEvent::Message(message) => link.mailboxes.deliver(id, message),
            BusEvent::Closed(reason) => {
                if let Some(table) = link.table() {
                    table.close_copy(id, reason);
                }
            }
        }
    }))
}
