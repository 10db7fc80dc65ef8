//! [`RedisEventStore`]: rmcp's [`EventStore`] on Redis Streams (features `rmcp` and `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::{Client, RedisError};
use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::{
    EventId, EventStore, EventStoreError, EventStream, ServerSseMessage,
};

use crate::redis_config::RedisConfig;
use crate::redis_link::{LazyManager, Link, check_prefix, no_answer_within};
use crate::rmcp::EventFuture;

/// rmcp's [`EventStore`] on Redis Streams: the SSE events of rmcp sessions, shared by every
/// node that uses the same Redis and key prefix, so that a client can resume a stream
/// (`Last-Event-ID`) through any node. Give it to [`Stateful::event_store`](crate::rmcp::Stateful::event_store)
/// (or to rmcp's own `LocalSessionManager::with_event_store`).
///
/// ```no_run
/// use std::sync::Arc;
/// use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
/// use tower_mcp_session::rmcp::{RedisEventStore, stateful};
/// # #[derive(Clone, Default)] struct MyServer;
/// # impl rmcp::ServerHandler for MyServer {}
///
/// # fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let events = RedisEventStore::open("redis://127.0.0.1:6379", "mcp:")?;
/// let config = StreamableHttpServerConfig::default();
/// let factory = stateful(|| Ok(MyServer), config).event_store(Arc::new(events));
/// # let _ = factory;
/// # Ok(())
/// # }
/// ```
///
/// # Key layout and event ids
///
/// rmcp names each stream: a request's SSE answer by a UUID, a session's GET stream
/// `<session id>:common`; [`Stateful`](crate::rmcp::Stateful) stores them as `<session id>/<stream
/// id>`. The events of stream `s` are the entries of the Redis stream at key
/// `{prefix}ev:{<tag>}<rest>`, where `<tag>` is `s` up to its first `/` (the session id) and
/// `<rest>` the remainder, or, for a stream id without `/`, up to its last `:`. The braces are
/// a Redis Cluster hash tag: all of a session's streams live in the slot of its session id,
/// the slot of its record under [`RedisStore`](crate::store::RedisStore) with the same
/// prefix. Each entry
/// holds the JSON of the event's message in field `m` (absent for a priming event) and its
/// SSE `retry` in milliseconds in field `r` (absent if none).
///
/// The id of an event is `<entry id>@<stream id>`, for example `1732960000000-0@3f2a…`:
/// unique (Redis gives entry ids in increasing order within a stream, and stream ids are
/// unique), free of newlines, and enough to find the stream again. Through
/// [`Stateful`](crate::rmcp::Stateful) the stream id starts with the session id, and a session
/// replays only ids of its own streams.
///
/// # Commands and bounds
///
/// * [`store_event`](EventStore::store_event): `XADD` with `MAXLEN` (exact, not `~`) of the
///   [retention](Self::with_max_events), then `PEXPIRE` of the [time to live](Self::with_ttl),
///   in one `MULTI`/`EXEC` transaction: a stream holds at most that many events (the oldest
///   are dropped), and disappears that long after its last event. A stream id holding a
///   newline, a carriage return or a NUL, which cannot travel in an SSE `id`, is refused.
/// * [`replay_events_after`](EventStore::replay_events_after): `XRANGE` from the given entry,
///   inclusive, to the end of its stream. The first entry must be the given one: an event id
///   that is malformed, names no stream, or names an entry no longer kept (trimmed, expired)
///   is an [`EventStoreError`], since events after it may be lost. Otherwise the events after
///   it, in order, with their original ids; the stream ends there (rmcp then lets the client
///   reconnect for what comes later).
///
/// Redis 6.2 or later (the layer's bus needs 7). Commands go through one redis-rs
/// [`ConnectionManager`](redis::aio::ConnectionManager) per store (shared by clones), made on the first operation and
/// connecting lazily, as for [`RedisStore`](crate::store::RedisStore). Every operation ends
/// within the store's [timeout](Self::with_timeout) with an [`EventStoreError`] past it, and a
/// timeout retires the connection (the next operation makes a new one). Operations must run
/// on a tokio runtime with its time driver; elsewhere they fail instead of panicking.
///
/// [`connect`](Self::connect) takes a [`RedisConfig`]: TLS (`rediss://`, a CA file, a client
/// certificate), an ACL user, or the nodes of a Redis Cluster. On a cluster each command, and
/// each `MULTI`/`EXEC` block (one key: one slot), goes to the master of the stream key's slot
/// and follows `MOVED` and `ASK`.
#[derive(Clone)]
pub struct RedisEventStore {
    prefix: Arc<str>,
    timeout: Duration,
    max_events: usize,
    ttl: Duration,
    manager: Arc<LazyManager>,
}

impl fmt::Debug for RedisEventStore {
    /// Shows where the store connects, the database, the prefix and the bounds; never the
    /// username or password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisEventStore")
            .field("addr", &self.manager.endpoint)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_events", &self.max_events)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl RedisEventStore {
    /// The default [timeout](Self::with_timeout): 1 second.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default [retention](Self::with_max_events): 1,000 events per stream.
    pub const DEFAULT_MAX_EVENTS: usize = 1_000;
    /// The default [time to live](Self::with_ttl) of a stream: 30 minutes.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

    /// A store on the Redis that `client` points to, with keys under `prefix` (see the key
    /// layout above; an empty prefix is allowed).
    ///
    /// Nothing is sent yet: the connection is made by the first operation, so this works
    /// while Redis is down and outside a tokio runtime.
    ///
    /// # Errors
    ///
    /// If `prefix` contains `{` or `}`, which would move the Redis Cluster hash tag.
    pub fn new(client: Client, prefix: impl Into<String>) -> Result<Self, EventStoreError> {
        let prefix = prefix.into();
        check_prefix(&prefix)?;
        Ok(Self {
            prefix: prefix.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_events: Self::DEFAULT_MAX_EVENTS,
            ttl: Self::DEFAULT_TTL,
            manager: Arc::new(LazyManager::single(client, Self::DEFAULT_TIMEOUT)),
        })
    }

    /// A store on the Redis or Redis Cluster that `config` names (TLS, ACL user, cluster
    /// nodes), with keys under `prefix`; see [`new`](Self::new). Reads the TLS files of
    /// `config` now; sends nothing yet.
    ///
    /// # Errors
    ///
    /// If a URL is not one redis-rs accepts, a TLS file cannot be read or parsed, a CA file or
    /// client certificate goes with a `redis://` URL, the cluster's URLs disagree, or the
    /// prefix contains `{` or `}`. The message names the cause, never a password.
    pub fn connect(
        config: &RedisConfig,
        prefix: impl Into<String>,
    ) -> Result<Self, EventStoreError> {
        let prefix = prefix.into();
        check_prefix(&prefix)?;
        let source = config.source(false)?;
        Ok(Self {
            prefix: prefix.into(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_events: Self::DEFAULT_MAX_EVENTS,
            ttl: Self::DEFAULT_TTL,
            manager: Arc::new(LazyManager::new(
                source,
                config.describe(),
                Self::DEFAULT_TIMEOUT,
            )),
        })
    }

    /// A store on the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`,
    /// `rediss://` for TLS with the system's roots, `unix:///path`); see [`new`](Self::new).
    /// For a CA file, a client certificate or a Redis Cluster use [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// If `url` is not a Redis URL redis-rs accepts, or the prefix contains `{` or `}`.
    pub fn open(url: &str, prefix: impl Into<String>) -> Result<Self, EventStoreError> {
        Self::new(Client::open(url)?, prefix)
    }

    /// Sets how long an operation may take, connecting included (default
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)); also the connection and response timeouts
    /// of the connection. A zero timeout fails every operation. The returned store has its
    /// own connection (clones made before this call keep theirs).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.manager = Arc::new(self.manager.with_timeout(timeout));
        self.timeout = timeout;
        self
    }

    /// Sets how many events a stream keeps, the latest (default
    /// [`DEFAULT_MAX_EVENTS`](Self::DEFAULT_MAX_EVENTS); at least 1). A client that resumes
    /// from an event no longer kept gets nothing replayed.
    pub fn with_max_events(mut self, max: usize) -> Self {
        self.max_events = max.max(1);
        self
    }

    /// Sets how long a stream is kept after its last event (default
    /// [`DEFAULT_TTL`](Self::DEFAULT_TTL); at least 1 ms): the longest a client may take to
    /// resume.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// The key prefix given to [`new`](Self::new).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The operation [timeout](Self::with_timeout).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The [retention](Self::with_max_events), in events per stream.
    pub fn max_events(&self) -> usize {
        self.max_events
    }

    /// The [time to live](Self::with_ttl) of a stream after its last event.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The key of stream `stream_id`: `{prefix}ev:{<tag>}<rest>`.
    fn key(&self, stream_id: &str) -> String {
        let (tag, rest) = match stream_id.find('/').or_else(|| stream_id.rfind(':')) {
            Some(at) => stream_id.split_at(at),
            None => (stream_id, ""),
        };
        let mut key = String::with_capacity(self.prefix.len() + stream_id.len() + 5);
        key.push_str(&self.prefix);
        key.push_str("ev:{");
        key.push_str(tag);
        key.push('}');
        key.push_str(rest);
        key
    }

    /// Runs `op` on the store's connection within the timeout.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, EventStoreError>
    where
        F: FnOnce(Link) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("RedisEventStore needs a tokio runtime (with its time driver)".into());
        }
        if self.timeout.is_zero() {
            return Err(format!("the event store had {}", no_answer_within(self.timeout)).into());
        }
        let (generation, manager) = self.manager.get()?;
        match tokio::time::timeout(self.timeout, op(manager)).await {
            Ok(result) => {
                if let Err(error) = &result {
                    self.manager
                        .failed(generation, crate::redis_link::is_unavailable(error));
                }
                Ok(result?)
            }
            Err(_) => {
                self.manager.retire(generation);
                Err(format!("the event store had {}", no_answer_within(self.timeout)).into())
            }
        }
    }
}

/// `<entry id>@<stream id>` split, the entry id checked (`<ms>-<seq>`).
fn parse_event_id(id: &str) -> Option<(&str, &str)> {
    let (entry, stream) = id.split_once('@')?;
    let (ms, seq) = entry.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(ms) && digits(seq)).then_some((entry, stream))
}

/// A duration in whole milliseconds for `PEXPIRE`, rounded up and capped.
fn ttl_ms(ttl: Duration) -> i64 {
    const MAX_MS: u128 = (i64::MAX / 4) as u128;
    let ms = ttl.as_nanos().div_ceil(1_000_000).min(MAX_MS);
    i64::try_from(ms).unwrap_or(i64::MAX / 4)
}

/// The event read back from the fields of its entry.
fn decode_event(id: String, fields: Vec<Vec<u8>>) -> Result<ServerSseMessage, EventStoreError> {
    let mut event = ServerSseMessage::default();
    let mut pairs = fields.chunks_exact(2);
    for pair in &mut pairs {
        match pair[0].as_slice() {
            b"m" => {
                let message: ServerJsonRpcMessage = serde_json::from_slice(&pair[1])
                    .map_err(|e| format!("unreadable event {id} in Redis: {e}"))?;
                event.message = Some(Arc::new(message));
            }
            b"r" => {
                let ms = std::str::from_utf8(&pair[1])
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok())
                    .ok_or_else(|| format!("unreadable retry of event {id} in Redis"))?;
                event.retry = Some(Duration::from_millis(ms));
            }
            _ => {}
        }
    }
    if !pairs.remainder().is_empty() {
        return Err(format!("unreadable event {id} in Redis").into());
    }
    event.event_id = Some(id);
    Ok(event)
}

impl EventStore for RedisEventStore {
    fn store_event<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        stream_id: &'life1 str,
        event: &'life2 ServerSseMessage,
    ) -> EventFuture<'async_trait, EventId>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            if stream_id.contains(['\n', '\r', '\0']) {
                return Err(format!(
                    "the stream id {stream_id:?} cannot be part of an SSE event id"
                )
                .into());
            }
            let key = self.key(stream_id);
            let mut pipe = redis::pipe();
            pipe.atomic();
            let xadd = pipe
                .cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg(self.max_events)
                .arg("*");
            if let Some(message) = &event.message {
                xadd.arg("m").arg(serde_json::to_vec(message.as_ref())?);
            }
            if let Some(retry) = event.retry {
                xadd.arg("r")
                    .arg(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
            }
            if event.message.is_none() && event.retry.is_none() {
                // XADD needs a field: an event with neither is stored as an empty one.
                xadd.arg("e").arg("");
            }
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms(self.ttl)).ignore();
            let (entry,): (String,) = self
                .run(|mut con| async move { pipe.query_async(&mut con).await })
                .await?;
            Ok(format!("{entry}@{stream_id}"))
        })
    }

    fn replay_events_after<'life0, 'life1, 'async_trait>(
        &'life0 self,
        last_event_id: &'life1 str,
    ) -> EventFuture<'async_trait, EventStream>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let Some((entry, stream_id)) = parse_event_id(last_event_id) else {
                return Err(format!("malformed event id {last_event_id:?}").into());
            };
            let key = self.key(stream_id);
            let entries: Vec<(String, Vec<Vec<u8>>)> = self
                .run(|mut con| async move {
                    redis::cmd("XRANGE")
                        .arg(&key)
                        .arg(entry)
                        .arg("+")
                        .query_async(&mut con)
                        .await
                })
                .await?;
            let mut entries = entries.into_iter();
            if entries.next().is_none_or(|(first, _)| first != entry) {
                return Err(format!(
                    "unknown event id {last_event_id:?} (never stored, or no longer kept)"
                )
                .into());
            }
            let events = entries
                .map(|(entry, fields)| decode_event(format!("{entry}@{stream_id}"), fields))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Box::pin(tokio_stream::iter(events)) as EventStream)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_strictly() {
        assert_eq!(parse_event_id("1-0@s"), Some(("1-0", "s")));
        assert_eq!(
            parse_event_id("17-3@a@b:common"),
            Some(("17-3", "a@b:common"))
        );
        for bad in [
            "", "1-0", "@s", "1@s", "-1@s", "1-@s", "a-0@s", "1-0-0@s", " 1-0@s",
        ] {
            assert_eq!(parse_event_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_put_the_session_id_in_the_hash_tag() {
        let store = RedisEventStore::open("redis://127.0.0.1:1", "p:").unwrap();
        assert_eq!(store.key("abc:common"), "p:ev:{abc}:common");
        assert_eq!(store.key("a:b:common"), "p:ev:{a:b}:common");
        assert_eq!(store.key("uuid"), "p:ev:{uuid}");
        assert!(RedisEventStore::open("redis://127.0.0.1:1", "p{").is_err());
    }
}
