//! [`RedisStore`]: session records in Redis hashes, one hash per session.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Uri};
use redis::cluster_routing::Slot;
use redis::{Client, RedisError, Script};

use crate::id::SessionId;
use crate::info::Principal;
use crate::redis_config::RedisConfig;
use crate::redis_link::{LazyManager, Link, check_prefix, join_all, session_name};
use crate::store::{OpeningRequest, SessionRecord, SessionStore, StoreError, StoreFuture};

/// Session records in Redis: one hash per session, shared by every node that uses the same
/// Redis and key prefix.
///
/// # Key layout
///
/// The record of session `id` is the hash at key `{prefix}{{id}}`: the prefix, then the id
/// inside braces, for example `mcp:{3f2a…}` for the prefix `mcp:`. The braces are a Redis
/// Cluster *hash tag*: the slot is computed from the id alone, so a session's record and its
/// sharded pub/sub channel (see [`RedisBus`](crate::bus::RedisBus), which uses the same name)
/// live in the same slot. The prefix therefore must not contain `{` or `}`. (An id that itself
/// holds a `}`, which [`UuidV4`](crate::UuidV4) never makes, is hashed on its part before the
/// `}`; its record and channel still share a slot, having the same name.) Fields:
///
/// | field | value |
/// |---|---|
/// | `principal` | the principal's identifier (UTF-8); absent if the session has none |
/// | `created` | when the session opened, milliseconds since the Unix epoch, in decimal |
/// | `method` | the opening request's method (`POST`) |
/// | `uri` | the opening request's target, as it was received |
/// | `headers` | the replayed headers, one `name:value` line per value, each ending in `\n` |
/// | `body` | the opening request's body, raw bytes |
/// | `d:<key>` | the data map: the JSON text stored under `<key>` |
///
/// Header names are lowercase tokens (no `:`), and a header value cannot hold `\n`, so the
/// `headers` encoding is unambiguous; a name given several values has one line per value, in
/// order. Values are kept byte for byte, bytes that are not UTF-8 (obs-text, 0x80–0xFF)
/// included, since hash values are binary-safe; only the
/// [`is_sensitive`](http::HeaderValue::is_sensitive) flag is not kept.
///
/// # Commands
///
/// * [`create`](SessionStore::create): one script (`EVALSHA`): `EXISTS`, then `HSET` of every
///   field and `PEXPIRE`, so a record appears whole, with its TTL, or not at all (no TTL: no
///   `PEXPIRE`, the key never expires); an id that has a record already is refused, never
///   written over.
/// * [`load`](SessionStore::load): `HMGET` of the six record fields (the data map, which may be
///   large, is not read); no key (none of the fields) is `None`, a field missing or
///   unreadable, or a key of another type, is [`StoreError`].
/// * [`touch`](SessionStore::touch): pipelines of one `PEXPIRE` per id, at most 1024 per
///   pipeline, each pipeline within the timeout; `PEXPIRE` on a key that is gone does
///   nothing. No ids: no round trip. On a Redis Cluster the ids are grouped by slot first
///   (a pipeline goes to one node), one pipeline per slot, all sent at once.
/// * [`delete`](SessionStore::delete): `DEL`.
/// * [`delete_if_unused`](SessionStore::delete_if_unused): one script: `PTTL`, then `DEL` only
///   if the remaining TTL shows no refresh since the evicting node last used the session.
/// * [`data_get`](SessionStore::data_get) / [`data_remove`](SessionStore::data_remove):
///   `HGET` / `HDEL` of `d:<key>` (neither creates a key).
/// * [`data_insert`](SessionStore::data_insert) / [`data_increment`](SessionStore::data_increment):
///   a Lua script (`EVALSHA`, loaded on `NOSCRIPT`) that runs `HSET` / `HINCRBY` only if the
///   key `EXISTS`, so a write never brings back a record that expired or was deleted. A JSON
///   integer is the same text as a Redis integer, so `HINCRBY` adds to what `SessionData`
///   stored; a value that is not an integer in Redis's sense (a float, a string, an integer
///   with surrounding spaces or leading zeros, which JSON serializers never write) fails with
///   [`StoreError`], and so does a result outside `i64`.
///
/// # Connection and timeouts
///
/// Commands go through one redis-rs [`ConnectionManager`](redis::aio::ConnectionManager) per store (shared by clones): a
/// multiplexed connection that pipelines the commands of concurrent requests on one socket,
/// reconnects by itself after an I/O error, and is part of the `redis` crate, maintained by
/// the redis-rs organisation. It was chosen over `fred`, which offers as much and more (pools,
/// cluster and sentinel routing, its own reconnection policies), because the layer needs a
/// handful of commands and two scripts: redis-rs is the smaller dependency and the most widely
/// used Rust Redis client, and its manager covers what the layer needs.
///
/// The manager is created on the first operation, not by [`new`](Self::new), and connects
/// lazily: a node starts while Redis is down, and a store can be built outside a tokio
/// runtime. Every operation (every pipeline of a `touch`) ends within the store's
/// [timeout](Self::with_timeout) (default
/// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT), also the manager's connection and response
/// timeouts) with [`StoreError`] past it; an operation that times out also retires the
/// manager, so a connection that went silent (a half-open TCP connection after a failover)
/// is replaced by a new one instead of timing out every later command. Operations must run
/// on a tokio runtime with its time driver (any runtime built by `#[tokio::main]`); polled
/// elsewhere they fail with [`StoreError`] instead of panicking.
///
/// # TLS, ACL users, Redis Cluster
///
/// [`connect`](Self::connect) takes a [`RedisConfig`]: `rediss://` with the system's roots or
/// a CA file, a client certificate, an ACL user in the URL, or the nodes of a Redis Cluster.
/// On a cluster the store uses a redis-rs
/// [`ClusterConnection`](redis::cluster_async::ClusterConnection) instead of the manager: each
/// command and script goes to the master of its key's slot and follows `MOVED` and `ASK`
/// (the slot map is refreshed on a `MOVED`); every command of the store names one key, and a
/// session has one key, so nothing is ever cross-slot. A failed authentication (a password
/// changed or a user disabled with `ACL SETUSER` while the store runs) is an
/// [unavailable](StoreError::is_unavailable) store, like Redis down. Errors and `Debug`
/// never show the password.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: String,
    timeout: Duration,
    manager: LazyManager,
}

impl fmt::Debug for RedisStore {
    /// Shows where the store connects (host and port, or socket path), the database, the key
    /// prefix and the timeout; never the username or password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.inner.manager.endpoint)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// `HSET` of `d:<key>` only if the record exists. `KEYS[1]` the record, `ARGV[1]` the field,
/// `ARGV[2]` the JSON text. Returns 1 if written, 0 if there is no record.
const INSERT_SCRIPT: &str = "\
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1";

/// `HINCRBY` of `d:<key>` only if the record exists. `KEYS[1]` the record, `ARGV[1]` the
/// field, `ARGV[2]` the increment. Returns the new value as Redis's text of it (`HGET`), or
/// nil if there is no record: `HINCRBY`'s integer reply becomes a Lua number, a double,
/// which is not exact beyond 2^53.
const INCREMENT_SCRIPT: &str = "\
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])";

/// A new record, only if none exists under its id. `KEYS[1]` the record, `ARGV[1]` the time to
/// live in ms (`0`: none), then field/value pairs. Returns 1 if written, 0 if the id is taken.
const CREATE_SCRIPT: &str = "\
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1";

/// `DEL` of a record whose time to live was not reset recently. `KEYS[1]` the record,
/// `ARGV[1]` the most remaining time to live (ms) it may have to be deleted. Returns 1 if
/// deleted, 0 if it was refreshed more recently or does not exist.
const DELETE_UNUSED_SCRIPT: &str = "\
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
if ttl == -1 or ttl <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0";

/// Most `PEXPIRE`s sent in one pipeline by `touch`.
const TOUCH_BATCH: usize = 1024;

/// The record's fields, in the order `load` asks for them.
const FIELDS: [&str; 6] = ["principal", "created", "method", "uri", "headers", "body"];

/// Prefix of the fields that hold the data map.
const DATA_FIELD: &str = "d:";

impl RedisStore {
    /// The default [timeout](Self::with_timeout): 1 second.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A store on the Redis that `client` points to, with keys `{prefix}{{id}}` (see the key
    /// layout above; an empty prefix is allowed).
    ///
    /// Nothing is sent yet: the connection is made by the first operation, so this works
    /// while Redis is down and outside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if `prefix` contains `{` or `}`, which would move the Redis Cluster hash
    /// tag out of the session id.
    pub fn new(client: Client, prefix: impl Into<String>) -> Result<Self, StoreError> {
        let prefix = prefix.into();
        check_prefix(&prefix).map_err(StoreError::new)?;
        Ok(Self::build(
            LazyManager::single(client, Self::DEFAULT_TIMEOUT),
            prefix,
            Self::DEFAULT_TIMEOUT,
        ))
    }

    /// A store on the Redis or Redis Cluster that `config` names (TLS, ACL user, cluster
    /// nodes), with keys `{prefix}{{id}}`; see [`new`](Self::new). Reads the TLS files of
    /// `config` now; sends nothing yet.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if a URL is not one redis-rs accepts, a TLS file cannot be read or
    /// parsed, a CA file or client certificate goes with a `redis://` URL, the cluster's URLs
    /// disagree (scheme, user, password), or the prefix contains `{` or `}`. The message names
    /// the cause, never a password.
    pub fn connect(config: &RedisConfig, prefix: impl Into<String>) -> Result<Self, StoreError> {
        let prefix = prefix.into();
        check_prefix(&prefix).map_err(StoreError::new)?;
        let source = config.source(false).map_err(StoreError::new)?;
        let manager = LazyManager::new(source, config.describe(), Self::DEFAULT_TIMEOUT);
        Ok(Self::build(manager, prefix, Self::DEFAULT_TIMEOUT))
    }

    /// A store on the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`,
    /// `rediss://` for TLS with the system's roots, `unix:///path`); see [`new`](Self::new).
    /// For a CA file, a client certificate or a Redis Cluster use [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if `url` is not a Redis URL redis-rs accepts, or the prefix contains `{`
    /// or `}`.
    pub fn open(url: &str, prefix: impl Into<String>) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(StoreError::new)?;
        Self::new(client, prefix)
    }

    /// Sets how long an operation may take, connecting included (default
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)); past it the operation fails with
    /// [`StoreError`]. Also the connection timeout and the response timeout of the underlying
    /// connection. A zero timeout fails every operation.
    ///
    /// The returned store has its own connection (clones made before this call keep theirs).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self::build(
            self.inner.manager.with_timeout(timeout),
            self.inner.prefix.clone(),
            timeout,
        )
    }

    /// The key prefix given to [`new`](Self::new).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The operation [timeout](Self::with_timeout).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    fn build(manager: LazyManager, prefix: String, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                prefix,
                timeout,
                manager,
            }),
        }
    }

    /// The key of the record of `id`: `{prefix}{{id}}`.
    fn key(&self, id: &SessionId) -> String {
        session_name(&self.inner.prefix, id)
    }

    /// Runs `op` on the store's connection within the timeout.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Link) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::new(
                "RedisStore needs a tokio runtime (with its time driver)",
            ));
        }
        if self.inner.timeout.is_zero() {
            return Err(StoreError::timed_out(self.inner.timeout));
        }
        let (generation, manager) = self.inner.manager.get().map_err(redis_error)?;
        match tokio::time::timeout(self.inner.timeout, op(manager)).await {
            Ok(result) => {
                if let Err(error) = &result {
                    self.inner
                        .manager
                        .failed(generation, error.is_unavailable());
                }
                result
            }
            Err(_) => {
                self.inner.manager.retire(generation);
                Err(StoreError::timed_out(self.inner.timeout))
            }
        }
    }
}

/// A duration in whole milliseconds for `PEXPIRE`, rounded up (a positive TTL stays
/// positive) and capped far below the point where Redis refuses it.
fn ttl_ms(ttl: Duration) -> i64 {
    const MAX_MS: u128 = (i64::MAX / 4) as u128;
    let ms = ttl.as_nanos().div_ceil(1_000_000).min(MAX_MS);
    i64::try_from(ms).unwrap_or(i64::MAX / 4)
}

fn redis_error(error: RedisError) -> StoreError {
    if crate::redis_link::is_unavailable(&error) {
        StoreError::unavailable(error)
    } else {
        StoreError::new(error)
    }
}

fn malformed(field: &str) -> StoreError {
    StoreError::new(format!(
        "malformed session record in Redis: field `{field}` is missing or unreadable"
    ))
}

/// The record read back from the values of [`FIELDS`]; `None` if none of them is there.
fn decode_record(
    id: &SessionId,
    values: Vec<Option<Vec<u8>>>,
) -> Result<Option<SessionRecord>, StoreError> {
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let Ok([principal, created, method, uri, headers, body]) =
        <[Option<Vec<u8>>; 6]>::try_from(values)
    else {
        return Err(StoreError::new(
            "HMGET answered with the wrong number of values",
        ));
    };
    let principal = match principal {
        None => None,
        Some(bytes) => Some(Principal::from(
            String::from_utf8(bytes).map_err(|_| malformed("principal"))?,
        )),
    };
    let created_ms = created
        .as_deref()
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| malformed("created"))?;
    let method = method
        .as_deref()
        .and_then(|bytes| Method::from_bytes(bytes).ok())
        .ok_or_else(|| malformed("method"))?;
    let uri = uri
        .and_then(|bytes| Uri::try_from(bytes).ok())
        .ok_or_else(|| malformed("uri"))?;
    let headers = super::headers::decode(headers.as_deref().ok_or_else(|| malformed("headers"))?)
        .ok_or_else(|| malformed("headers"))?;
    let body = Bytes::from(body.ok_or_else(|| malformed("body"))?);
    Ok(Some(SessionRecord {
        id: id.clone(),
        principal,
        created_ms,
        opening: OpeningRequest {
            method,
            uri,
            headers,
            body,
        },
    }))
}

/// The error of `HINCRBY`, in the words of [`MemoryStore`](crate::store::MemoryStore).
fn increment_error(key: &str, error: RedisError) -> StoreError {
    let text = error.to_string();
    if text.contains("not an integer") {
        StoreError::new(format!("the value of `{key}` is not an integer"))
    } else if text.contains("overflow") {
        StoreError::new(format!("`{key}` would overflow"))
    } else {
        redis_error(error)
    }
}

/// The store's Lua scripts, each loaded once per Redis (`EVALSHA`, `SCRIPT LOAD` on a miss).
struct Scripts {
    insert: Script,
    increment: Script,
    create: Script,
    delete_unused: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        insert: Script::new(INSERT_SCRIPT),
        increment: Script::new(INCREMENT_SCRIPT),
        create: Script::new(CREATE_SCRIPT),
        delete_unused: Script::new(DELETE_UNUSED_SCRIPT),
    })
}

impl SessionStore for RedisStore {
    fn create(&self, record: &SessionRecord, ttl: Option<Duration>) -> StoreFuture<'_, bool> {
        let key = self.key(&record.id);
        let mut invocation = scripts().create.key(key);
        invocation.arg(ttl.map_or(0, ttl_ms));
        if let Some(principal) = &record.principal {
            invocation.arg("principal").arg(principal.as_str());
        }
        invocation
            .arg("created")
            .arg(record.created_ms)
            .arg("method")
            .arg(record.opening.method.as_str())
            .arg("uri")
            .arg(record.opening.uri.to_string())
            .arg("headers")
            .arg(super::headers::encode(&record.opening.headers))
            .arg("body")
            .arg(record.opening.body.as_ref());
        Box::pin(async move {
            let written: i64 = self
                .run(|mut con| async move {
                    invocation.invoke_async(&mut con).await.map_err(redis_error)
                })
                .await?;
            Ok(written == 1)
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(async move {
            let values: Vec<Option<Vec<u8>>> = self
                .run(|mut con| async move {
                    redis::cmd("HMGET")
                        .arg(self.key(id))
                        .arg(&FIELDS[..])
                        .query_async(&mut con)
                        .await
                        .map_err(redis_error)
                })
                .await?;
            decode_record(id, values)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.run(|mut con| async move {
                redis::cmd("PING")
                    .query_async::<()>(&mut con)
                    .await
                    .map_err(redis_error)
            })
            .await
        })
    }

    fn touch<'a>(&'a self, ids: &'a [SessionId], ttl: Duration) -> StoreFuture<'a, Vec<SessionId>> {
        Box::pin(async move {
            let ms = ttl_ms(ttl);
            let cluster = matches!(
                self.inner.manager.source(),
                crate::redis_link::Source::Cluster(_)
            );
            let batches: Vec<Vec<&SessionId>> = if cluster {
                // A pipeline goes to one node: one per slot (a session's key is in its id's slot).
                let mut by_slot: std::collections::HashMap<Slot, Vec<&SessionId>> =
                    std::collections::HashMap::new();
                for id in ids {
                    by_slot
                        .entry(Slot::for_key(self.key(id)))
                        .or_default()
                        .push(id);
                }
                by_slot
                    .into_values()
                    .flat_map(|ids| {
                        ids.chunks(TOUCH_BATCH)
                            .map(<[&SessionId]>::to_vec)
                            .collect::<Vec<_>>()
                    })
                    .collect()
            } else {
                ids.chunks(TOUCH_BATCH)
                    .map(|chunk| chunk.iter().collect())
                    .collect()
            };
            let mut missing = Vec::new();
            // Standalone: one pipeline after another; cluster: every slot's at once.
            let parallel = if cluster { batches.len() } else { 1 };
            for group in batches.chunks(parallel.max(1)) {
                let runs = group
                    .iter()
                    .map(|batch| {
                        let mut pipe = redis::pipe();
                        for id in batch {
                            pipe.cmd("PEXPIRE").arg(self.key(id)).arg(ms);
                        }
                        Box::pin(self.run(|mut con| async move {
                            pipe.query_async::<Vec<i64>>(&mut con)
                                .await
                                .map_err(redis_error)
                        }))
                            as std::pin::Pin<
                                Box<dyn Future<Output = Result<Vec<i64>, StoreError>> + Send + '_>,
                            >
                    })
                    .collect();
                for (batch, set) in group.iter().zip(join_all(runs).await) {
                    // PEXPIRE answers 0 for a key that does not exist.
                    missing.extend(
                        batch
                            .iter()
                            .zip(set?)
                            .filter(|(_, set)| *set == 0)
                            .map(|(id, _)| (*id).clone()),
                    );
                }
            }
            Ok(missing)
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let removed: i64 = self
                .run(|mut con| async move {
                    redis::cmd("DEL")
                        .arg(self.key(id))
                        .query_async(&mut con)
                        .await
                        .map_err(redis_error)
                })
                .await?;
            Ok(removed > 0)
        })
    }

    fn delete_if_unused<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
        unused_for: Duration,
    ) -> StoreFuture<'a, bool> {
        let most_remaining = ttl_ms(ttl.saturating_sub(unused_for));
        Box::pin(async move {
            let deleted: i64 = self
                .run(|mut con| async move {
                    scripts()
                        .delete_unused
                        .key(self.key(id))
                        .arg(most_remaining)
                        .invoke_async(&mut con)
                        .await
                        .map_err(redis_error)
                })
                .await?;
            Ok(deleted == 1)
        })
    }

    fn data_get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            self.run(|mut con| async move {
                redis::cmd("HGET")
                    .arg(self.key(id))
                    .arg(format!("{DATA_FIELD}{key}"))
                    .query_async(&mut con)
                    .await
                    .map_err(redis_error)
            })
            .await
        })
    }

    fn data_insert<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        json: String,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let written: i64 = self
                .run(|mut con| async move {
                    scripts()
                        .insert
                        .key(self.key(id))
                        .arg(format!("{DATA_FIELD}{key}"))
                        .arg(json)
                        .invoke_async(&mut con)
                        .await
                        .map_err(redis_error)
                })
                .await?;
            Ok(written == 1)
        })
    }

    fn data_remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let removed: i64 = self
                .run(|mut con| async move {
                    redis::cmd("HDEL")
                        .arg(self.key(id))
                        .arg(format!("{DATA_FIELD}{key}"))
                        .query_async(&mut con)
                        .await
                        .map_err(redis_error)
                })
                .await?;
            Ok(removed > 0)
        })
    }

    fn data_increment<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        by: i64,
    ) -> StoreFuture<'a, Option<i64>> {
        Box::pin(async move {
            let value: Option<String> = self
                .run(|mut con| async move {
                    scripts()
                        .increment
                        .key(self.key(id))
                        .arg(format!("{DATA_FIELD}{key}"))
                        .arg(by)
                        .invoke_async(&mut con)
                        .await
                        .map_err(|error| increment_error(key, error))
                })
                .await?;
            value
                .map(|text| {
                    text.parse::<i64>().map_err(|_| {
                        StoreError::new(format!("the value of `{key}` is not an integer"))
                    })
                })
                .transpose()
        })
    }
}
