//! [`PostgresBus`]: session events over PostgreSQL `LISTEN`/`NOTIFY`, one channel per
//! deployment.

use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::bus::{BusConnection, BusError, BusEvent, BusFuture, Deliver, SessionBus};
use crate::id::SessionId;
use crate::pg_link::{self, check_identifier, no_answer_within};
use crate::sync::lock;

/// The events of sessions between nodes, over PostgreSQL `LISTEN`/`NOTIFY`.
///
/// # Channel and payloads
///
/// PostgreSQL channels are global to a database, and `LISTEN` costs a round trip, so the bus
/// uses **one channel per deployment** ([`with_channel`](Self::with_channel), by default the
/// schema's name) instead of one per session: every node `LISTEN`s to it once, and
/// [`listen`](BusConnection::listen) and [`unlisten`](BusConnection::unlisten) only change the
/// set of sessions this node delivers (no round trip, nothing sent). Each notification names
/// its session; a node drops those of sessions it does not hold, so each node reads every
/// event of the deployment (the price of one channel: about 100 bytes of parsing per event
/// per node).
///
/// A notification's payload is the session id, a space, then the event as
/// [the wire format](crate::bus::RedisBus) of the Redis bus (a tag byte, the message's bytes
/// or the close reason's code), written as one of:
///
/// * `r<bytes>`: the event's bytes as they are, when they are all ASCII without NUL (a JSON
///   message, the common case);
/// * `b<base64>`: the event's bytes in standard base64 otherwise (binary, non-ASCII, closes);
/// * `t<key>`: the event's bytes are in the row `key` of `{schema}.bus_payloads`, when the
///   payload above would reach `NOTIFY`'s limit of 8000 bytes. The row is written and the
///   notification sent in one statement (so the row is there when the notification arrives);
///   a listening node reads it once, on its listener connection, and only for a session it
///   holds. Rows are deleted after 60 s by a bounded statement (`DELETE … WHERE ctid IN
///   (SELECT … LIMIT 1000)`) that each node's listener runs every 10 s; a node that reads one
///   later than that misses the message.
///
/// A notification that cannot be read (another version's, noise) is ignored.
///
/// # Connections
///
/// Each [`connect`](SessionBus::connect) (one per node) keeps:
///
/// * a **listener**: a dedicated tokio-postgres connection, owned by a background task that
///   drives its `Connection::poll_message` (where notifications arrive), sends `LISTEN` once,
///   and checks the link with `SELECT 1` after 5 s without traffic. When the connection is
///   lost (an I/O error, the backend terminated, no answer within the timeout), the task
///   reconnects with a backoff from 100 ms doubling up to 5 s, logging one warning when the
///   link goes down and one info line when it is back. Notifications sent while it is down
///   are lost, as with Redis pub/sub: a close a node missed is found by the layer's next
///   refresh round (its record is gone), and data lives in the store. Received notifications
///   wait in a queue of 4096; past that they are dropped with one warning per burst.
/// * a deadpool-postgres **pool** of at most 4 connections for
///   [`publish`](BusConnection::publish) (`SELECT pg_notify($1, $2)`, one statement) and
///   [`ping`](BusConnection::ping) (`SELECT 1`), made lazily. They run with
///   `synchronous_commit = off`: a `NOTIFY` commits a transaction, which would otherwise
///   wait for a WAL flush to disk, and messages are at most once anyway.
///
/// The task starts on `connect` if it is called on a tokio runtime; otherwise on the first
/// `listen`, `unlisten` or `publish` called on one. A `publish` polled outside a tokio runtime
/// fails with [`BusError`]. Dropping the last handle of a connection aborts its task and
/// closes its connections; the task holds the `deliver` callback only weakly. Every publish
/// ends within the [timeout](Self::with_timeout).
///
/// The tables the bus uses are created by the same migration as
/// [`PostgresStore`](crate::store::PostgresStore)'s (run by whichever comes first).
#[derive(Clone)]
pub struct PostgresBus {
    config: tokio_postgres::Config,
    schema: Arc<str>,
    channel: Arc<str>,
    timeout: Duration,
}

impl fmt::Debug for PostgresBus {
    /// Shows the hosts, ports and database, the schema, the channel and the timeout; never the
    /// user or password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBus")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("schema", &self.schema)
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Notifications received and not yet delivered, per connection.
const INBOX: usize = 4096;
/// First pause before reconnecting the listener.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Quiet time after which the listener connection is checked with `SELECT 1`.
const HEALTH_CHECK: Duration = Duration::from_secs(5);
/// How often a listener deletes old payload rows.
const PAYLOAD_CLEANUP: Duration = Duration::from_secs(10);
/// Payload rows older than this (seconds) are deleted.
const PAYLOAD_AGE_SECS: i64 = 60;
/// The largest notification payload `NOTIFY` takes is 7999 bytes.
const NOTIFY_LIMIT: usize = 7999;
/// Publishing connections per node.
const PUBLISH_POOL: usize = 4;

impl PostgresBus {
    /// The default [timeout](Self::with_timeout): 1 second.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A bus on the database `config` points to, with its large-payload table in `schema` (a
    /// plain identifier, as for [`PostgresStore::new`](crate::store::PostgresStore::new); give
    /// both the same) and the channel named like the schema.
    ///
    /// Nothing is sent yet: connections are made by [`connect`](SessionBus::connect)'s task
    /// and the first publish, so this works while PostgreSQL is down and outside a tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`BusError`] if `schema` is not a plain identifier (1 to 63 lowercase ASCII letters,
    /// digits and `_`, not starting with a digit).
    pub fn new(
        config: tokio_postgres::Config,
        schema: impl Into<String>,
    ) -> Result<Self, BusError> {
        let schema = schema.into();
        check_identifier("schema", &schema).map_err(BusError::new)?;
        Ok(Self {
            config,
            channel: schema.as_str().into(),
            schema: schema.into(),
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }

    /// A bus on the database at `url` (a connection string tokio-postgres accepts); see
    /// [`new`](Self::new).
    ///
    /// # Errors
    ///
    /// [`BusError`] if `url` is not such a connection string, or the schema is not a plain
    /// identifier.
    pub fn open(url: &str, schema: impl Into<String>) -> Result<Self, BusError> {
        let config: tokio_postgres::Config = url.parse().map_err(BusError::new)?;
        Self::new(config, schema)
    }

    /// Sets the channel of this deployment (default: the schema's name). Every node of one
    /// deployment must use the same; two deployments sharing a database must not.
    ///
    /// # Errors
    ///
    /// [`BusError`] if `channel` is not a plain identifier (as for the schema).
    pub fn with_channel(mut self, channel: impl Into<String>) -> Result<Self, BusError> {
        let channel = channel.into();
        check_identifier("channel", &channel).map_err(BusError::new)?;
        self.channel = channel.into();
        Ok(self)
    }

    /// Sets the timeout (default [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)): a publish,
    /// connecting included, fails with [`BusError`] past it, and the listener connection is
    /// declared lost when connecting, `LISTEN`, a health check or a payload read takes longer.
    /// Applies to connections made by later [`connect`](SessionBus::connect) calls. Zero
    /// fails every publish at once.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The schema given to [`new`](Self::new).
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The channel (see [`with_channel`](Self::with_channel)).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The [timeout](Self::with_timeout).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl SessionBus for PostgresBus {
    fn connect(&self, deliver: Deliver) -> Arc<dyn BusConnection> {
        // Messages are at most once: a publish need not wait for a WAL flush (NOTIFY assigns a
        // transaction id, so its commit would wait for one).
        let publisher = pg_link::pool(&self.config, PUBLISH_POOL, self.timeout, false).ok();
        let node = PostgresConnection {
            wanted: Arc::new(Wants {
                ids: Mutex::default(),
            }),
            deliver,
            task: Mutex::new(None),
            publisher,
            migrated: tokio::sync::OnceCell::new(),
            bus: self.clone(),
        };
        node.ensure_started();
        Arc::new(node)
    }
}

/// The sessions a node listens to, shared with its listener task.
struct Wants {
    ids: Mutex<HashSet<SessionId>>,
}

impl Wants {
    fn ids(&self) -> MutexGuard<'_, HashSet<SessionId>> {
        lock(&self.ids)
    }
}

/// One node's connection: the [`BusConnection`] that [`PostgresBus::connect`] returns.
struct PostgresConnection {
    wanted: Arc<Wants>,
    /// Held here; the task holds it weakly.
    deliver: Deliver,
    task: Mutex<Option<JoinHandle<()>>>,
    /// `None` only if the pool could not be built (it always can with a runtime set).
    publisher: Option<Pool>,
    /// The migration, run once before the first large payload.
    migrated: tokio::sync::OnceCell<()>,
    bus: PostgresBus,
}

impl PostgresConnection {
    /// Starts the listener task if it is not running and this thread is on a tokio runtime.
    fn ensure_started(&self) {
        let mut task = lock(&self.task);
        if task.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let listener = Listener {
            wanted: self.wanted.clone(),
            deliver: Arc::downgrade(&self.deliver),
            bus: self.bus.clone(),
        };
        *task = Some(runtime.spawn(listener.run()));
    }

    /// Runs `op` on a publishing connection within the timeout.
    async fn run<T, F>(&self, op: impl Fn() -> F) -> Result<T, BusError>
    where
        F: AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, tokio_postgres::Error>,
    {
        let Some(pool) = &self.publisher else {
            return Err(BusError::new("PostgresBus has no connection pool"));
        };
        pg_link::run(pool, self.bus.timeout, op)
            .await
            .map_err(|error| BusError::new(error.describe(self.bus.timeout, "PostgresBus")))
    }
}

impl Drop for PostgresConnection {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

impl BusConnection for PostgresConnection {
    fn listen(&self, id: &SessionId) {
        self.wanted.ids().insert(id.clone());
        self.ensure_started();
    }

    fn unlisten(&self, id: &SessionId) {
        self.wanted.ids().remove(id);
    }

    fn publish<'a>(&'a self, id: &'a SessionId, event: BusEvent) -> BusFuture<'a, ()> {
        Box::pin(async move {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(BusError::new(
                    "PostgresBus needs a tokio runtime (with its time driver)",
                ));
            }
            if self.bus.timeout.is_zero() {
                return Err(BusError::new(no_answer_within(self.bus.timeout)));
            }
            self.ensure_started();
            let channel: &str = &self.bus.channel;
            let bytes = crate::bus::wire::encode(&event);
            if let Some(payload) = inline_payload(id, &bytes) {
                return self
                    .run(|| {
                        async |client| {
                            let statement =
                                client.prepare_cached("SELECT pg_notify($1, $2)").await?;
                            client.execute(&statement, &[&channel, &payload]).await
                        }
                    })
                    .await
                    .map(drop);
            }
            // Too large for NOTIFY: the row and the notification of its key in one statement.
            let schema: &str = &self.bus.schema;
            self.migrated
                .get_or_try_init(|| async {
                    let timeout = self.bus.timeout.saturating_mul(5);
                    let Some(pool) = &self.publisher else {
                        return Err(BusError::new("PostgresBus has no connection pool"));
                    };
                    pg_link::run(pool, timeout, || {
                        async |client| pg_link::migrate(client, schema).await
                    })
                    .await
                    .map_err(|error| BusError::new(error.describe(timeout, "PostgresBus")))
                })
                .await?;
            let sql = format!(
                "WITH row AS (INSERT INTO {schema}.bus_payloads (payload) VALUES ($1) RETURNING key)
                 SELECT pg_notify($2, $3 || row.key::text) FROM row"
            );
            let prefix = format!("{} t", id.as_str());
            let bytes: &[u8] = &bytes;
            self.run(|| {
                async |client| {
                    let statement = client.prepare_cached(&sql).await?;
                    client
                        .execute(&statement, &[&bytes, &channel, &prefix])
                        .await
                }
            })
            .await
            .map(drop)
        })
    }

    fn ping(&self) -> BusFuture<'_, ()> {
        Box::pin(async move {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(BusError::new(
                    "PostgresBus needs a tokio runtime (with its time driver)",
                ));
            }
            self.run(|| async |client| client.simple_query("SELECT 1").await.map(drop))
                .await
        })
    }
}

/// The notification payload of `bytes` for session `id`, if it fits `NOTIFY`: `id r<bytes>`
/// or `id b<base64>`.
fn inline_payload(id: &SessionId, bytes: &[u8]) -> Option<String> {
    let id = id.as_str();
    let raw = bytes.iter().all(|&b| (1..0x80).contains(&b));
    let length = if raw {
        bytes.len()
    } else {
        bytes.len().div_ceil(3) * 4
    };
    if id.len() + 2 + length > NOTIFY_LIMIT {
        return None;
    }
    let mut out = String::with_capacity(id.len() + 2 + length);
    out.push_str(id);
    out.push(' ');
    if raw {
        out.push('r');
        // All ASCII: valid UTF-8.
        out.push_str(std::str::from_utf8(bytes).ok()?);
    } else {
        out.push('b');
        base64::encode_into(bytes, &mut out);
    }
    Some(out)
}

/// What a notification's payload says.
#[derive(Debug, PartialEq, Eq)]
enum Payload {
    /// The event's bytes.
    Inline(Vec<u8>),
    /// The key of the row holding them.
    Row(i64),
}

/// Reads `id <kind><data>`; `None` for anything else.
fn parse_payload(text: &str) -> Option<(SessionId, Payload)> {
    let (id, rest) = text.split_once(' ')?;
    let id = SessionId::parse(id).ok()?;
    let (kind, data) = rest.split_at_checked(1)?;
    let payload = match kind {
        "r" => Payload::Inline(data.as_bytes().to_vec()),
        "b" => Payload::Inline(base64::decode(data)?),
        "t" => Payload::Row(data.parse().ok()?),
        _ => return None,
    };
    Some((id, payload))
}

/// A [`Deliver`] held weakly.
type WeakDeliver = Weak<dyn Fn(&SessionId, BusEvent) + Send + Sync>;

/// The background task of one node: keeps the listener connection and delivers.
struct Listener {
    wanted: Arc<Wants>,
    deliver: WeakDeliver,
    bus: PostgresBus,
}

impl Listener {
    async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        let mut down = false;
        loop {
            let error = self.serve(&mut down, &mut backoff).await;
            if !down {
                tracing::warn!(
                    error = %error,
                    "session bus: the PostgreSQL listener connection is down; reconnecting"
                );
                down = true;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// `future` within the timeout (none for a timeout of an hour or more).
    async fn within<T>(&self, future: impl Future<Output = T>) -> Option<T> {
        let timeout = self.bus.timeout;
        if timeout >= Duration::from_secs(3600) {
            return Some(future.await);
        }
        tokio::time::timeout(timeout, future).await.ok()
    }

    /// Connects, `LISTEN`s and serves until the connection fails; returns why.
    async fn serve(&self, down: &mut bool, backoff: &mut Duration) -> String {
        let timeout = self.bus.timeout;
        if timeout.is_zero() {
            return no_answer_within(timeout);
        }
        let mut config = self.bus.config.clone();
        if timeout < Duration::from_secs(3600) {
            config.connect_timeout(timeout);
        }
        let (client, mut connection) = match self.within(config.connect(NoTls)).await {
            Some(Ok(pair)) => pair,
            Some(Err(error)) => return error.to_string(),
            None => return format!("no connection within {} ms", timeout.as_millis()),
        };
        // The connection's messages go to `inbox`; its end (or error) ends the driver.
        let (messages, mut inbox) = mpsc::channel::<String>(INBOX);
        let overflowing = AtomicBool::new(false);
        let driver = async move {
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match message {
                    Some(Ok(AsyncMessage::Notification(notification))) => {
                        match messages.try_send(notification.payload().to_owned()) {
                            Ok(()) => overflowing.store(false, Ordering::Relaxed),
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                if !overflowing.swap(true, Ordering::Relaxed) {
                                    tracing::warn!(
                                        capacity = INBOX,
                                        "session bus: notifications arrive faster than they \
                                         are delivered; dropping notifications"
                                    );
                                }
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                return "the bus was dropped".to_owned();
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return error.to_string(),
                    None => return "the connection was closed".to_owned(),
                }
            }
        };
        let driver = tokio::spawn(driver);
        // Aborts the driver (and closes the connection) however `serve` ends.
        struct AbortOnDrop(JoinHandle<String>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let mut driver = AbortOnDrop(driver);

        let listen = format!("LISTEN {}", self.bus.channel);
        match self.within(client.batch_execute(&listen)).await {
            Some(Ok(())) => {}
            Some(Err(error)) => return format!("LISTEN failed: {error}"),
            None => return format!("no answer to LISTEN within {} ms", timeout.as_millis()),
        }
        if *down {
            tracing::info!(
                sessions = self.wanted.ids().len(),
                "session bus: the PostgreSQL listener connection is back"
            );
            *down = false;
        }
        *backoff = MIN_BACKOFF;
        let read_row = format!(
            "SELECT payload FROM {}.bus_payloads WHERE key = $1",
            self.bus.schema
        );
        let cleanup = format!(
            "DELETE FROM {schema}.bus_payloads WHERE ctid IN (SELECT ctid FROM \
             {schema}.bus_payloads WHERE created < now() - $1::bigint * interval '1 second' \
             LIMIT 1000)",
            schema = self.bus.schema
        );
        let mut next_cleanup = tokio::time::Instant::now() + PAYLOAD_CLEANUP;

        loop {
            tokio::select! {
                ended = &mut driver.0 => {
                    return ended.unwrap_or_else(|error| error.to_string());
                }
                received = inbox.recv() => {
                    let Some(text) = received else {
                        return "the connection was closed".to_owned();
                    };
                    if let Err(error) = self.dispatch(&client, &read_row, &text).await {
                        return error;
                    }
                }
                () = tokio::time::sleep(HEALTH_CHECK) => {
                    match self.within(client.simple_query("SELECT 1")).await {
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return error.to_string(),
                        None => return format!("no answer to SELECT 1 within {} ms", timeout.as_millis()),
                    }
                }
                () = tokio::time::sleep_until(next_cleanup) => {
                    next_cleanup = tokio::time::Instant::now() + PAYLOAD_CLEANUP;
                    // The table may not exist yet (no large payload ever): not an error of
                    // the link.
                    match self.within(client.execute(&cleanup, &[&PAYLOAD_AGE_SECS])).await {
                        Some(Ok(_)) => {}
                        Some(Err(error)) if pg_link::is_unavailable(&error) => {
                            return error.to_string();
                        }
                        Some(Err(_)) => {}
                        None => return format!("no answer within {} ms", timeout.as_millis()),
                    }
                }
            }
        }
    }

    /// Delivers one notification, if it is an event of a session this node listens to;
    /// `Err` if the link failed reading a payload row.
    async fn dispatch(
        &self,
        client: &tokio_postgres::Client,
        read_row: &str,
        text: &str,
    ) -> Result<(), String> {
        let Some((id, payload)) = parse_payload(text) else {
            return Ok(());
        };
        if !self.wanted.ids().contains(&id) {
            return Ok(());
        }
        let bytes = match payload {
            Payload::Inline(bytes) => bytes,
            Payload::Row(key) => match self.within(client.query_opt(read_row, &[&key])).await {
                Some(Ok(Some(row))) => match row.try_get::<_, Vec<u8>>(0) {
                    Ok(bytes) => bytes,
                    Err(_) => return Ok(()),
                },
                Some(Ok(None)) => {
                    tracing::warn!(
                        session = %id.redacted(),
                        "session bus: a large message's row is gone (read more than 60 s \
                         after it was sent); message lost"
                    );
                    return Ok(());
                }
                Some(Err(error)) if pg_link::is_unavailable(&error) => {
                    return Err(error.to_string());
                }
                Some(Err(_)) => return Ok(()),
                None => {
                    return Err(format!(
                        "no payload row within {} ms",
                        self.bus.timeout.as_millis()
                    ));
                }
            },
        };
        let Some(event) = crate::bus::wire::decode(&bytes) else {
            return Ok(());
        };
        // Checked again: the session may have been unlistened while its row was read.
        if !self.wanted.ids().contains(&id) {
            return Ok(());
        }
        let Some(deliver) = self.deliver.upgrade() else {
            return Ok(());
        };
        if catch_unwind(AssertUnwindSafe(|| deliver(&id, event))).is_err() {
            tracing::error!(
                session = %id.redacted(),
                "session bus: the deliver callback panicked"
            );
        }
        Ok(())
    }
}

/// Standard base64 (RFC 4648, with padding), for binary notification payloads.
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode_into(bytes: &[u8], out: &mut String) {
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
    }

    fn value(c: u8) -> Option<u32> {
        ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        for (index, chunk) in bytes.chunks(4).enumerate() {
            let last = index + 1 == bytes.len() / 4;
            let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && !last) {
                return None;
            }
            let mut n = 0u32;
            for &c in &chunk[..4 - pad] {
                n = (n << 6) | value(c)?;
            }
            n <<= 6 * pad as u32;
            let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&decoded[..3 - pad]);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn base64_round_trips() {
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut text = String::new();
            base64::encode_into(&bytes, &mut text);
            assert_eq!(base64::decode(&text), Some(bytes));
        }
        let mut text = String::new();
        base64::encode_into(b"foobar", &mut text);
        assert_eq!(text, "Zm9vYmFy");
        text.clear();
        base64::encode_into(b"fo", &mut text);
        assert_eq!(text, "Zm8=");
        assert_eq!(base64::decode("Zm8"), None);
        assert_eq!(base64::decode("Z==="), None);
        assert_eq!(base64::decode("Zm=8"), None);
        assert_eq!(base64::decode("Zm8=Zm8="), None);
        assert_eq!(base64::decode("Zm!="), None);
    }

    #[test]
    fn payloads_round_trip_and_junk_is_refused() {
        let id = SessionId::parse("abc-1").unwrap();
        let json = crate::bus::wire::encode(&BusEvent::Message(Bytes::from_static(b"{\"a\":1}")));
        let text = inline_payload(&id, &json).unwrap();
        assert_eq!(text, "abc-1 rm{\"a\":1}");
        assert_eq!(
            parse_payload(&text),
            Some((id.clone(), Payload::Inline(json.to_vec())))
        );
        let close = crate::bus::wire::encode(&BusEvent::Closed(crate::CloseReason::Deleted));
        let text = inline_payload(&id, &close).unwrap();
        assert!(text.starts_with("abc-1 b"), "{text}");
        assert_eq!(
            parse_payload(&text),
            Some((id.clone(), Payload::Inline(close.to_vec())))
        );
        // The limit: raw up to 7999 bytes in all, base64 counted after encoding.
        let fits = vec![b'x'; NOTIFY_LIMIT - "abc-1 r".len()];
        assert!(inline_payload(&id, &fits).is_some());
        let over = vec![b'x'; NOTIFY_LIMIT - "abc-1 r".len() + 1];
        assert!(inline_payload(&id, &over).is_none());
        assert!(inline_payload(&id, &[0xff; 6000]).is_none());
        assert_eq!(
            parse_payload("abc-1 t42"),
            Some((id.clone(), Payload::Row(42)))
        );
        for junk in [
            "",
            "abc-1",
            "abc-1 ",
            "abc-1 x",
            "abc-1 tx",
            "abc-1 b!!!!",
            "\u{7f} r",
        ] {
            assert_eq!(parse_payload(junk), None, "{junk:?}");
        }
    }
}
