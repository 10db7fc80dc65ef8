//! [`RedisBus`]: session events over Redis sharded pub/sub, one channel per session.

use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::cluster::ClusterConfig;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, RedisError, Value,
};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::bus::{BusConnection, BusError, BusEvent, BusFuture, Deliver, SessionBus};
use crate::id::SessionId;
use crate::redis_config::RedisConfig;
use crate::redis_link::{
    LazyManager, Source, check_prefix, join_all, no_answer_within, session_name,
};
use crate::sync::lock;

/// The events of sessions between nodes, over Redis sharded pub/sub (Redis 7 or later).
///
/// # Channel layout
///
/// Session `id` has one channel, `{prefix}{{id}}`: the prefix, then the id inside braces, the
/// same name as its record in [`RedisStore`](crate::store::RedisStore) with the same prefix
/// (channels and keys are separate namespaces in Redis). The braces are a Redis Cluster hash
/// tag, so the channel is in the slot of the session's record. A node `SSUBSCRIBE`s to the
/// channel of each session it [listens](BusConnection::listen) to and `SUNSUBSCRIBE`s when it
/// stops; [`publish`](BusConnection::publish) is `SPUBLISH` of the event (a tag byte, then the
/// message's bytes or the close reason's code). Sharded
/// pub/sub also works on a standalone Redis; unlike plain `PUBLISH`, in a cluster a message
/// goes only to the shard that owns the slot, not to every node of the cluster.
///
/// # Connections
///
/// Each [`connect`](SessionBus::connect) (one per node) opens two connections:
///
/// * a subscription connection (RESP3, so that messages arrive as push messages on a
///   multiplexed connection), owned by a background tokio task. [`listen`](BusConnection::listen)
///   and [`unlisten`](BusConnection::unlisten) never wait: they record the change in the set
///   of wanted sessions and wake the task, which sends the `SSUBSCRIBE`s and `SUNSUBSCRIBE`s
///   that bring Redis in line, up to 1024 per pipeline. Pending changes coalesce (listening
///   then unlistening before the task runs costs nothing), so what is queued is bounded by
///   the number of sessions. Incoming messages wait in a queue of 4096; when the node cannot
///   keep up, further messages are dropped with a warning (Redis pub/sub is at most once
///   anyway: Redis disconnects a subscriber whose output buffer grows too large).
/// * a redis-rs [`ConnectionManager`](redis::aio::ConnectionManager) for `SPUBLISH`, made on the first publish.
///
/// When the subscription connection is lost (an I/O error, or no answer to the `PING` sent
/// after 5 s without traffic, or to a subscription command, within the timeout), the task
/// reconnects with a backoff from 100 ms doubling up to 5 s, and subscribes again to every
/// session wanted at that moment. It logs one warning when the link goes down and one info
/// line when it is back, not one per attempt or per message. Messages published while the
/// link is down are lost (Redis does not keep them).
///
/// The task starts on `connect` if it is called on a tokio runtime; otherwise on the first
/// `listen`, `unlisten` or `publish` called on one (until then, listens are only recorded). A
/// `publish` polled outside a tokio runtime fails with [`BusError`]. Dropping the last handle
/// of a connection aborts its task and closes both connections; the task holds the `deliver`
/// callback only weakly, so a callback that refers back to its session table forms no cycle
/// through the task.
///
/// # TLS, ACL users, Redis Cluster
///
/// [`connect_with`](Self::connect_with) takes a [`RedisConfig`] (`rediss://`, a CA file, a
/// client certificate, an ACL user, or the nodes of a Redis Cluster). On a cluster the
/// subscription connection is a redis-rs
/// [`ClusterConnection`](redis::cluster_async::ClusterConnection) with a push sender:
/// `SSUBSCRIBE` of a channel goes to the master that owns the channel's slot, and redis-rs
/// itself subscribes again when a node's connection is lost and comes back, or when its slot
/// map changes (a failover promoted a replica, a slot moved). So on a cluster a node's
/// disconnection does not make the task start over; only a failed `PING` or subscription
/// command does. `SPUBLISH` goes to the slot's master too. Messages published while a
/// subscription is being moved are lost, as above.
#[derive(Clone)]
pub struct RedisBus {
    source: Source,
    endpoint: Arc<str>,
    prefix: Arc<str>,
    timeout: Duration,
}

impl fmt::Debug for RedisBus {
    /// Shows where the bus connects (host and port, or socket path), the database, the channel
    /// prefix and the timeout; never the username or password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("addr", &self.endpoint)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Most subscription commands sent in one pipeline.
const SUBSCRIBE_BATCH: usize = 1024;
/// Messages received and not yet delivered, per connection.
const INBOX: usize = 4096;
/// First pause before reconnecting the subscription connection.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Quiet time after which the subscription connection is checked with `PING`.
const HEALTH_CHECK: Duration = Duration::from_secs(5);
/// On a Redis Cluster: how often the slot map is read (`CLUSTER SLOTS`) to find out that a
/// failover moved a slot, whose subscriptions must then be made again on its new master.
const TOPOLOGY_CHECK: Duration = Duration::from_secs(1);

impl RedisBus {
    /// The default [timeout](Self::with_timeout): 1 second.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A bus on the Redis that `client` points to, with channels `{prefix}{{id}}` (see the
    /// channel layout above; an empty prefix is allowed). The connections use RESP3 whatever
    /// protocol `client` asks for.
    ///
    /// Nothing is sent yet: connections are made by [`connect`](SessionBus::connect)'s task
    /// and the first publish, so this works while Redis is down and outside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`BusError`] if `prefix` contains `{` or `}`, which would move the Redis Cluster hash
    /// tag out of the session id.
    pub fn new(client: Client, prefix: impl Into<String>) -> Result<Self, BusError> {
        let prefix = prefix.into();
        check_prefix(&prefix).map_err(BusError::new)?;
        let info = client.get_connection_info().clone();
        let redis = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let endpoint = info.addr().to_string();
        let client = Client::open(info.set_redis_settings(redis)).map_err(BusError::new)?;
        Ok(Self {
            source: Source::Single(client),
            endpoint: endpoint.into(),
            prefix: prefix.into(),
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// A bus on the Redis or Redis Cluster that `config` names (TLS, ACL user, cluster
    /// nodes), with channels `{prefix}{{id}}`; see [`new`](Self::new). Reads the TLS files of
    /// `config` now; sends nothing yet. (Not `connect`: that is [`SessionBus::connect`], which
    /// opens one node's connections to the bus.)
    ///
    /// # Errors
    ///
    /// [`BusError`] if a URL is not one redis-rs accepts, a TLS file cannot be read or parsed,
    /// a CA file or client certificate goes with a `redis://` URL, the cluster's URLs disagree,
    /// or the prefix contains `{` or `}`. The message names the cause, never a password.
    pub fn connect_with(config: &RedisConfig, prefix: impl Into<String>) -> Result<Self, BusError> {
        let prefix = prefix.into();
        check_prefix(&prefix).map_err(BusError::new)?;
        let source = config.source(true).map_err(BusError::new)?;
        Ok(Self {
            source,
            endpoint: config.describe().into(),
            prefix: prefix.into(),
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// A bus on the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`, `rediss://`
    /// for TLS with the system's roots); see [`new`](Self::new). For a CA file, a client
    /// certificate or a Redis Cluster use [`connect_with`](Self::connect_with).
    ///
    /// # Errors
    ///
    /// [`BusError`] if `url` is not a Redis URL redis-rs accepts, or the prefix contains `{`
    /// or `}`.
    pub fn open(url: &str, prefix: impl Into<String>) -> Result<Self, BusError> {
        let client = Client::open(url).map_err(BusError::new)?;
        Self::new(client, prefix)
    }

    /// Sets the timeout (default [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)): a publish,
    /// connecting included, fails with [`BusError`] past it, and the subscription connection
    /// is declared lost when a connection attempt, a batch of subscription commands or a
    /// health-check `PING` takes longer. Applies to connections made by later
    /// [`connect`](SessionBus::connect) calls.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The channel prefix given to [`new`](Self::new).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The [timeout](Self::with_timeout).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl SessionBus for RedisBus {
    fn connect(&self, deliver: Deliver) -> Arc<dyn BusConnection> {
        let node = RedisConnection {
            wanted: Arc::new(Wants {
                prefix: self.prefix.clone(),
                state: Mutex::default(),
                wake: Notify::new(),
            }),
            deliver,
            task: Mutex::new(None),
            publisher: LazyManager::new(
                self.source.clone(),
                self.endpoint.to_string(),
                self.timeout,
            ),
            bus: self.clone(),
        };
        node.ensure_started();
        Arc::new(node)
    }
}

/// What a node's connection and its background task both hold: the sessions it listens to.
struct Wants {
    prefix: Arc<str>,
    state: Mutex<Wanted>,
    /// Wakes the task: a listen or unlisten, a message, a lost connection.
    wake: Notify,
}

#[derive(Default)]
struct Wanted {
    /// The sessions this node listens to.
    ids: HashSet<SessionId>,
    /// Sessions added to or removed from `ids` since the task last looked.
    dirty: HashSet<SessionId>,
    /// Wanted sessions whose channel the server unsubscribed this node from without being
    /// asked: a Redis Cluster sends `sunsubscribe` when the slot leaves the node (a failover
    /// made it a replica, a slot migrated). The task subscribes to them again, which reaches
    /// the slot's new master.
    dropped: HashSet<SessionId>,
}

impl Wants {
    fn state(&self) -> MutexGuard<'_, Wanted> {
        // Every update is one set operation: the sets are good after a panic elsewhere.
        lock(&self.state)
    }
}

/// One node's connection: the [`BusConnection`] that [`RedisBus::connect`] returns.
struct RedisConnection {
    wanted: Arc<Wants>,
    /// Held here; the task holds it weakly.
    deliver: Deliver,
    /// The subscription task, once started.
    task: Mutex<Option<JoinHandle<()>>>,
    publisher: LazyManager,
    bus: RedisBus,
}

impl RedisConnection {
    /// Starts the subscription task if it is not running and this thread is on a tokio
    /// runtime (also restarts a task whose runtime went away).
    fn ensure_started(&self) {
        let mut task = lock(&self.task);
        if task.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let subscriber = Subscriber {
            wanted: self.wanted.clone(),
            deliver: Arc::downgrade(&self.deliver),
            source: self.bus.source.clone(),
            timeout: self.bus.timeout,
        };
        *task = Some(runtime.spawn(subscriber.run()));
    }
}

impl Drop for RedisConnection {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

impl BusConnection for RedisConnection {
    fn listen(&self, id: &SessionId) {
        let changed = {
            let mut state = self.wanted.state();
            if state.ids.insert(id.clone()) {
                state.dirty.insert(id.clone());
                true
            } else {
                false
            }
        };
        if changed {
            self.ensure_started();
            self.wanted.wake.notify_one();
        }
    }

    fn unlisten(&self, id: &SessionId) {
        let changed = {
            let mut state = self.wanted.state();
            if state.ids.remove(id) {
                state.dirty.insert(id.clone());
                true
            } else {
                false
            }
        };
        if changed {
            self.ensure_started();
            self.wanted.wake.notify_one();
        }
    }

    fn publish<'a>(&'a self, id: &'a SessionId, event: BusEvent) -> BusFuture<'a, ()> {
        Box::pin(async move {
            let channel = session_name(&self.wanted.prefix, id);
            let payload = crate::bus::wire::encode(&event);
            let mut cmd = redis::cmd("SPUBLISH");
            cmd.arg(channel).arg(payload.as_ref());
            self.command::<i64>(cmd).await.map(drop)
        })
    }

    fn ping(&self) -> BusFuture<'_, ()> {
        Box::pin(async move { self.command::<()>(redis::cmd("PING")).await })
    }
}

impl RedisConnection {
    /// Sends `cmd` on the publishing connection within the timeout.
    async fn command<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, BusError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(BusError::new(
                "RedisBus needs a tokio runtime (with its time driver)",
            ));
        }
        if self.bus.timeout.is_zero() {
            return Err(BusError::new(no_answer_within(self.bus.timeout)));
        }
        self.ensure_started();
        let (generation, mut manager) = self.publisher.get().map_err(BusError::new)?;
        match tokio::time::timeout(self.bus.timeout, cmd.query_async::<T>(&mut manager)).await {
            Ok(result) => result.map_err(|error| {
                self.publisher
                    .failed(generation, crate::redis_link::is_unavailable(&error));
                BusError::new(error)
            }),
            Err(_) => {
                self.publisher.retire(generation);
                Err(BusError::new(no_answer_within(self.bus.timeout)))
            }
        }
    }
}

/// Which master serves each slot range, as `CLUSTER SLOTS` says (asked of any node, within
/// `timeout`): `(first slot, last slot, master host:port)`, sorted. `None` if it could not be
/// read (the check is then skipped, not failed).
async fn slot_masters(
    con: &mut ClusterConnection,
    timeout: Duration,
) -> Option<Vec<(i64, i64, String)>> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    let slots = cmd.query_async::<Value>(con);
    let Ok(Ok(Value::Array(ranges))) = tokio::time::timeout(timeout, slots).await else {
        return None;
    };
    let mut map = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        let host = match master.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            _ => return None,
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return None;
        };
        map.push((*first, *last, format!("{host}:{port}")));
    }
    map.sort();
    Some(map)
}

/// The session id in a channel name [`session_name`] made; `None` for anything else.
fn id_of_channel(prefix: &str, channel: &[u8]) -> Option<SessionId> {
    let inner = channel
        .strip_prefix(prefix.as_bytes())?
        .strip_prefix(b"{")?
        .strip_suffix(b"}")?;
    SessionId::parse(std::str::from_utf8(inner).ok()?).ok()
}

/// Where the subscription connection hands its push messages (on the connection's own task:
/// it must not wait).
struct Inbox {
    messages: mpsc::Sender<(Vec<u8>, Vec<u8>)>,
    /// Set when the connection is lost.
    lost: Arc<AtomicBool>,
    /// On a cluster a node's disconnection is redis-rs's to repair (it reconnects the node
    /// and subscribes again): it does not count as lost.
    cluster: bool,
    /// Set while messages are being dropped, so that a burst warns once.
    overflowing: AtomicBool,
    wanted: Arc<Wants>,
}

impl AsyncPushSender for Inbox {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::SMessage => {
                let mut data = info.data.into_iter();
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                else {
                    return Ok(());
                };
                match self.messages.try_send((channel, payload)) {
                    Ok(()) => self.overflowing.store(false, Ordering::Relaxed),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        if !self.overflowing.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                capacity = INBOX,
                                "session bus: messages arrive faster than they are delivered; \
                                 dropping messages"
                            );
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Err(SendError),
                }
                self.wanted.wake.notify_one();
            }
            PushKind::SUnsubscribe => {
                let Some(Value::BulkString(channel)) = info.data.first() else {
                    return Ok(());
                };
                let Some(id) = id_of_channel(&self.wanted.prefix, channel) else {
                    return Ok(());
                };
                let dropped = {
                    let mut state = self.wanted.state();
                    state.ids.contains(&id) && state.dropped.insert(id)
                };
                if dropped {
                    self.wanted.wake.notify_one();
                }
            }
            PushKind::Disconnection if !self.cluster => {
                self.lost.store(true, Ordering::Release);
                self.wanted.wake.notify_one();
            }
            _ => {}
        }
        Ok(())
    }
}

/// A [`Deliver`] held weakly.
type WeakDeliver = Weak<dyn Fn(&SessionId, BusEvent) + Send + Sync>;

/// The background task of one node: keeps the subscription connection and delivers.
struct Subscriber {
    wanted: Arc<Wants>,
    deliver: WeakDeliver,
    source: Source,
    timeout: Duration,
}

/// The subscription connection: to one Redis, or to a cluster (which routes each
/// `SSUBSCRIBE` to its slot's master).
enum SubConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Subscriber {
    async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        // Whether the link is known to be down (a warning was logged).
        let mut down = false;
        loop {
            let error = self.serve(&mut down, &mut backoff).await;
            if !down {
                tracing::warn!(
                    error = %error,
                    "session bus: the Redis subscription connection is down; reconnecting"
                );
                down = true;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects, subscribes to every wanted session and serves until the connection fails;
    /// returns why.
    async fn serve(&self, down: &mut bool, backoff: &mut Duration) -> String {
        let (messages, mut inbox) = mpsc::channel(INBOX);
        let lost = Arc::new(AtomicBool::new(false));
        let inbox_sender = Inbox {
            messages,
            lost: lost.clone(),
            cluster: matches!(self.source, Source::Cluster(_)),
            overflowing: AtomicBool::new(false),
            wanted: self.wanted.clone(),
        };
        let connecting = async {
            match &self.source {
                Source::Single(client) => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(Some(self.timeout))
                        .set_push_sender(inbox_sender);
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(SubConnection::Single)
                }
                Source::Cluster(client) => {
                    let config = ClusterConfig::new()
                        .set_connection_timeout(self.timeout)
                        .set_response_timeout(self.timeout)
                        .set_push_sender(inbox_sender);
                    client
                        .get_async_connection_with_config(config)
                        .await
                        .map(SubConnection::Cluster)
                }
            }
        };
        let mut con = match tokio::time::timeout(self.timeout.saturating_mul(2), connecting).await {
            Ok(Ok(con)) => con,
            Ok(Err(error)) => return error.to_string(),
            Err(_) => return format!("no connection within {} ms", self.timeout.as_millis()),
        };

        // A new connection has no subscriptions: subscribe to everything wanted now.
        let wanted: Vec<SessionId> = {
            let mut state = self.wanted.state();
            state.dirty.clear();
            state.dropped.clear();
            state.ids.iter().cloned().collect()
        };
        if let Err(error) = self.command(&mut con, "SSUBSCRIBE", &wanted).await {
            return error;
        }
        let mut subscribed: HashSet<SessionId> = wanted.into_iter().collect();
        if *down {
            tracing::info!(
                sessions = subscribed.len(),
                "session bus: the Redis subscription connection is back"
            );
            *down = false;
        }
        *backoff = MIN_BACKOFF;

        // On a cluster: the slot map the subscriptions were made for, and when it was read.
        let mut topology = match &mut con {
            SubConnection::Single(_) => None,
            SubConnection::Cluster(con) => {
                Some((slot_masters(con, self.timeout).await, Instant::now()))
            }
        };
        let quiet = if topology.is_some() {
            TOPOLOGY_CHECK
        } else {
            HEALTH_CHECK
        };
        loop {
            let woken = tokio::time::timeout(quiet, self.wanted.wake.notified()).await;
            while let Ok((channel, payload)) = inbox.try_recv() {
                self.dispatch(&channel, &payload);
            }
            if lost.load(Ordering::Acquire) {
                return "the connection was closed".to_owned();
            }
            if let (Some((seen, at)), SubConnection::Cluster(con)) = (&mut topology, &mut con)
                && at.elapsed() >= TOPOLOGY_CHECK
            {
                // A master that died takes its subscriptions with it, and redis-rs keeps
                // trying that node instead of moving them to the promoted replica: when the
                // slot map changes, start over on a new connection, which subscribes every
                // wanted channel on its slot's current master.
                let now = slot_masters(con, self.timeout).await;
                *at = Instant::now();
                if let (Some(before), Some(after)) = (seen.as_ref(), now.as_ref())
                    && before != after
                {
                    return "the Redis Cluster's slot map changed (a failover or a slot move)"
                        .to_owned();
                }
                if seen.is_none() {
                    *seen = now;
                }
            }
            if woken.is_err() {
                let cmd = redis::cmd("PING");
                let ping = async {
                    match &mut con {
                        SubConnection::Single(con) => cmd.query_async::<Value>(con).await,
                        SubConnection::Cluster(con) => cmd.query_async::<Value>(con).await,
                    }
                };
                match tokio::time::timeout(self.timeout, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return error.to_string(),
                    Err(_) => return format!("no PONG within {} ms", self.timeout.as_millis()),
                }
                continue;
            }
            let (add, remove) = {
                let mut state = self.wanted.state();
                let mut dirty = std::mem::take(&mut state.dirty);
                let dropped = std::mem::take(&mut state.dropped);
                if !dropped.is_empty() {
                    tracing::info!(
                        sessions = dropped.len(),
                        "session bus: Redis moved some subscriptions (a failover or a slot \
                         move); subscribing again"
                    );
                }
                for id in dropped {
                    subscribed.remove(&id);
                    dirty.insert(id);
                }
                let mut add = Vec::new();
                let mut remove = Vec::new();
                for id in dirty {
                    match (state.ids.contains(&id), subscribed.contains(&id)) {
                        (true, false) => add.push(id),
                        (false, true) => remove.push(id),
                        _ => {}
                    }
                }
                (add, remove)
            };
            if let Err(error) = self.command(&mut con, "SSUBSCRIBE", &add).await {
                return error;
            }
            subscribed.extend(add);
            if let Err(error) = self.command(&mut con, "SUNSUBSCRIBE", &remove).await {
                return error;
            }
            for id in &remove {
                subscribed.remove(id);
            }
        }
    }

    /// Sends `command` (`SSUBSCRIBE` or `SUNSUBSCRIBE`) for the channel of each of `ids`, one
    /// channel per command so that each command has exactly one confirmation, in pipelines of
    /// at most [`SUBSCRIBE_BATCH`].
    async fn command(
        &self,
        con: &mut SubConnection,
        command: &str,
        ids: &[SessionId],
    ) -> Result<(), String> {
        for chunk in ids.chunks(SUBSCRIBE_BATCH) {
            let sent = match con {
                SubConnection::Single(con) => {
                    let mut pipe = redis::pipe();
                    for id in chunk {
                        pipe.cmd(command)
                            .arg(session_name(&self.wanted.prefix, id))
                            .ignore();
                    }
                    tokio::time::timeout(self.timeout, pipe.exec_async(con)).await
                }
                SubConnection::Cluster(con) => {
                    // One command per channel (each to its slot's master), all at once, and
                    // through redis-rs's own methods so that its tracker subscribes again
                    // after a reconnection or a slot move.
                    let subscribe = command == "SSUBSCRIBE";
                    let runs = chunk
                        .iter()
                        .map(|id| {
                            let mut con = con.clone();
                            let channel = session_name(&self.wanted.prefix, id);
                            Box::pin(async move {
                                if subscribe {
                                    con.ssubscribe(channel).await
                                } else {
                                    con.sunsubscribe(channel).await
                                }
                            })
                                as std::pin::Pin<
                                    Box<dyn Future<Output = Result<(), RedisError>> + Send>,
                                >
                        })
                        .collect();
                    tokio::time::timeout(self.timeout, async {
                        join_all(runs).await.into_iter().collect::<Result<(), _>>()
                    })
                    .await
                }
            };
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(describe(command, &error)),
                Err(_) => {
                    return Err(format!(
                        "no answer to {command} within {} ms",
                        self.timeout.as_millis()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Delivers one received message, if it is an event of a session still listened to.
    fn dispatch(&self, channel: &[u8], payload: &[u8]) {
        let Some(id) = id_of_channel(&self.wanted.prefix, channel) else {
            return;
        };
        let Some(event) = crate::bus::wire::decode(payload) else {
            return;
        };
        // A message may still arrive between an unlisten and its SUNSUBSCRIBE.
        if !self.wanted.state().ids.contains(&id) {
            return;
        }
        let Some(deliver) = self.deliver.upgrade() else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| deliver(&id, event))).is_err() {
            tracing::error!(
                session = %id.redacted(),
                "session bus: the deliver callback panicked"
            );
        }
    }
}

fn describe(command: &str, error: &RedisError) -> String {
    format!("{command} failed: {error}")
}
