//! [`PostgresStore`]: session records in one PostgreSQL table, one row per session.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Object, Pool};
use http::{Method, Uri};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

use crate::id::SessionId;
use crate::info::Principal;
use crate::pg_link::{self, RunError, check_identifier};
use crate::store::{OpeningRequest, SessionRecord, SessionStore, StoreError, StoreFuture};
use crate::sync::lock;

/// Session records in PostgreSQL: one row per session in the table `{schema}.sessions`, shared
/// by every node that uses the same database and schema.
///
/// # Table
///
/// The store creates what it needs on its first operation (or on [`migrate`](Self::migrate)),
/// with statements that are all `IF NOT EXISTS`, in one transaction under an advisory lock
/// (so nodes starting together do not race), in the schema given to [`new`](Self::new):
///
/// ```sql
/// CREATE SCHEMA IF NOT EXISTS {schema};
/// CREATE TABLE IF NOT EXISTS {schema}.sessions (
///     id text PRIMARY KEY,             -- the session id
///     principal text,                  -- NULL: no principal
///     created_ms bigint NOT NULL,      -- when it opened, ms since the Unix epoch
///     expires_at timestamptz,          -- NULL: no expiry
///     method text NOT NULL,            -- the opening request: method,
///     uri text NOT NULL,               -- target as received,
///     headers bytea NOT NULL,          -- replayed headers, one `name:value\n` line per value,
///     body bytea NOT NULL,             -- and body
///     data jsonb NOT NULL DEFAULT '{}' -- the data map: key -> JSON value
/// );
/// CREATE INDEX IF NOT EXISTS sessions_expires_at ON {schema}.sessions (expires_at)
///     WHERE expires_at IS NOT NULL;
/// CREATE TABLE IF NOT EXISTS {schema}.bus_payloads (...); -- PostgresBus's large payloads
/// ```
///
/// The role needs `CREATE` on the database (for the schema) the first time, then `SELECT`,
/// `INSERT`, `UPDATE` and `DELETE` on the tables: when both tables exist (one round trip
/// checks), the migration writes nothing. A deployment that runs migrations itself can
/// run [`migration_sql`](Self::migration_sql) beforehand; the store's own run then changes
/// nothing.
///
/// # Statements
///
/// Every operation is one statement (no read-modify-write between nodes), prepared once per
/// pooled connection. A row whose `expires_at` has passed counts as absent for every
/// operation, whether or not the cleanup has deleted it yet; times are the database's clock
/// (`now()`), one clock for every node.
///
/// * [`create`](SessionStore::create): `INSERT … ON CONFLICT (id) DO UPDATE … WHERE` the row
///   there has expired: a record appears whole or not at all, and a live record is never
///   written over (an expired one is replaced, data map emptied).
/// * [`load`](SessionStore::load): `SELECT` of the record's columns (not the data map).
/// * [`touch`](SessionStore::touch): `UPDATE … SET expires_at = now() + ttl WHERE id =
///   ANY($1) … RETURNING id`: one statement for up to 4096 ids (the layer's refresh rounds
///   send at most 1024), the ids not returned are those without a record. No ids: no round
///   trip.
/// * [`delete`](SessionStore::delete): `DELETE … RETURNING` whether the row was live.
/// * [`delete_if_unused`](SessionStore::delete_if_unused): one `DELETE` whose `WHERE` keeps a
///   row refreshed since the evicting node last used the session.
/// * [`data_get`](SessionStore::data_get): `data -> key`, as text.
/// * [`data_insert`](SessionStore::data_insert) / [`data_remove`](SessionStore::data_remove):
///   `UPDATE … SET data = data || jsonb_build_object(key, value)` / `data - key` of a live
///   row.
/// * [`data_increment`](SessionStore::data_increment): `UPDATE … SET data = data ||
///   jsonb_build_object(key, COALESCE((data -> key)::text, '0')::bigint + by)`: PostgreSQL
///   locks the row and re-reads it under the lock, so increments through several nodes lose
///   no count, and `bigint` arithmetic is exact over the whole `i64` range, an overflow being
///   an error (SQLSTATE 22003), not a wrap. A value that is not a JSON integer (a string, a
///   fraction such as `1.5`, an array) fails the cast (22P02): both are [`StoreError`]s with the
///   same words as [`MemoryStore`](crate::store::MemoryStore)'s and
///   [`RedisStore`](crate::store::RedisStore)'s.
///
/// The data map is `jsonb`: [`data_get`](SessionStore::data_get) answers the value as
/// PostgreSQL writes it (`{"a": 1}`, keys sorted, spaces after `:` and `,`), the same JSON
/// value as was stored, not always the same text. `jsonb` cannot hold the character U+0000
/// in a string: such a value fails with [`StoreError`].
///
/// # Expiry
///
/// A time to live is `expires_at = now() + ttl` (a `ttl` over 100 years is taken as 100
/// years). Expired rows are deleted by a background task the store starts on its first
/// operation: every [cleanup interval](Self::with_cleanup) (60 s by default) it runs `DELETE
/// … WHERE ctid IN (SELECT ctid … WHERE expires_at <= now() LIMIT n)` (1000 rows by default)
/// through the `expires_at` index, again while a statement deleted a full batch, at most 16
/// statements per round: never a full scan, and never on a request's path. Several nodes
/// running it at once delete disjoint rows or nothing.
///
/// # Driver
///
/// tokio-postgres (the rust-postgres project), pooled by deadpool-postgres, which also caches
/// each connection's prepared statements. tokio-postgres is the asynchronous driver most Rust
/// PostgreSQL code builds on, and it exposes what [`PostgresBus`](crate::bus::PostgresBus)
/// needs: a connection whose `NOTIFY` messages are read with `Connection::poll_message`. sqlx
/// was not chosen: its checked queries need a database (or a saved description of one) when
/// the crate compiles, which a library would impose on every user's build; its unchecked
/// queries give nothing tokio-postgres lacks; and it is a much larger dependency.
///
/// # Connections and timeouts
///
/// The store's connections run with `synchronous_commit = off` unless
/// [`with_synchronous_commit(true)`](Self::with_synchronous_commit) (what a crash of the
/// database may then lose is said there). Statements go through a deadpool-postgres pool of at most 16 connections by default
/// ([`with_pool_size`](Self::with_pool_size)), made lazily: a node starts while PostgreSQL is
/// down, and a store can be built outside a tokio runtime. Every operation, waiting for a
/// connection and connecting included, ends within the [timeout](Self::with_timeout)
/// ([`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)) with [`StoreError`] past it; a connection
/// whose statement timed out or failed as unavailable is closed rather than put back, so a
/// connection that went silent is replaced. Unreachable, refused, timed out, SQLSTATE classes
/// 08, 28, 53, 57P, 58 and 25006 (a standby) are [unavailable](StoreError::is_unavailable):
/// the layer answers 503 for opens and restores, as with Redis. Operations polled outside a
/// tokio runtime fail with [`StoreError`] instead of panicking. Connections are unencrypted
/// (`NoTls`): use a Unix socket or loopback, or a TLS-terminating proxy.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: tokio_postgres::Config,
    schema: String,
    timeout: Duration,
    pool_size: usize,
    synchronous_commit: bool,
    pool: Pool,
    sql: Sql,
    migrated: OnceCell<()>,
    cleanup_interval: Option<Duration>,
    cleanup_batch: usize,
    cleanup: Mutex<Option<JoinHandle<()>>>,
}

/// The settings the `with_*` methods change (see [`PostgresStore::rebuilt`]).
struct Tunables {
    timeout: Duration,
    pool_size: usize,
    synchronous_commit: bool,
    cleanup_interval: Option<Duration>,
    cleanup_batch: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.cleanup).take() {
            task.abort();
        }
    }
}

impl fmt::Debug for PostgresStore {
    /// Shows the hosts, ports and database, the schema and the timeout; never the user or
    /// password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.inner.config;
        f.debug_struct("PostgresStore")
            .field("hosts", &config.get_hosts())
            .field("ports", &config.get_ports())
            .field("dbname", &config.get_dbname())
            .field("schema", &self.inner.schema)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// The store's statements, for one schema.
struct Sql {
    create: String,
    load: String,
    touch: String,
    delete: String,
    delete_unused: String,
    data_get: String,
    data_insert: String,
    data_remove: String,
    data_increment: String,
    cleanup: String,
}

/// A row that has not expired.
const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

impl Sql {
    fn new(schema: &str) -> Self {
        let t = format!("{schema}.sessions");
        Self {
            create: format!(
                "INSERT INTO {t} AS s (id, principal, created_ms, expires_at, method, uri, headers, body)
                 VALUES ($1, $2, $3, now() + $4::bigint * interval '1 millisecond', $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET principal = EXCLUDED.principal,
                     created_ms = EXCLUDED.created_ms, expires_at = EXCLUDED.expires_at,
                     method = EXCLUDED.method, uri = EXCLUDED.uri, headers = EXCLUDED.headers,
                     body = EXCLUDED.body, data = '{{}}'::jsonb
                 WHERE s.expires_at IS NOT NULL AND s.expires_at <= now()
                 RETURNING 1"
            ),
            load: format!(
                "SELECT principal, created_ms, method, uri, headers, body FROM {t}
                 WHERE id = $1 AND {LIVE}"
            ),
            touch: format!(
                "UPDATE {t} SET expires_at = now() + $2::bigint * interval '1 millisecond'
                 WHERE id = ANY($1::text[]) AND {LIVE} RETURNING id"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1 RETURNING {LIVE}"),
            delete_unused: format!(
                "DELETE FROM {t} WHERE id = $1 AND (expires_at IS NULL OR (expires_at > now()
                 AND expires_at <= now() + $2::bigint * interval '1 millisecond')) RETURNING 1"
            ),
            data_get: format!("SELECT (data -> $2::text)::text FROM {t} WHERE id = $1 AND {LIVE}"),
            data_insert: format!(
                "UPDATE {t} SET data = data || jsonb_build_object($2::text, $3::text::jsonb)
                 WHERE id = $1 AND {LIVE}"
            ),
            data_remove: format!(
                "UPDATE {t} SET data = data - $2::text WHERE id = $1 AND {LIVE} AND data ? $2::text"
            ),
            data_increment: format!(
                "UPDATE {t} SET data = data || jsonb_build_object($2::text,
                     COALESCE((data -> $2::text)::text, '0')::bigint + $3::bigint)
                 WHERE id = $1 AND {LIVE} RETURNING (data ->> $2::text)::bigint"
            ),
            cleanup: format!(
                "DELETE FROM {t} WHERE ctid IN (SELECT ctid FROM {t} WHERE expires_at <= now()
                 LIMIT $1) AND expires_at <= now()"
            ),
        }
    }
}

/// Ids per `touch` statement.
const TOUCH_BATCH: usize = 4096;
/// Cleanup statements per round at most.
const CLEANUP_STATEMENTS: usize = 16;
/// The longest time to live written: 100 years, in ms.
const MAX_TTL_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

impl PostgresStore {
    /// The default [timeout](Self::with_timeout): 1 second.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default [pool size](Self::with_pool_size): 16 connections.
    pub const DEFAULT_POOL_SIZE: usize = 16;
    /// The default [cleanup](Self::with_cleanup) interval: 60 seconds.
    pub const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
    /// The default [cleanup](Self::with_cleanup) batch: 1000 rows per statement.
    pub const DEFAULT_CLEANUP_BATCH: usize = 1000;

    /// A store on the database `config` points to, in the table `{schema}.sessions` (see the
    /// table above). `schema` is a plain identifier: 1 to 63 lowercase ASCII letters, digits
    /// and `_`, not starting with a digit (for example `mcp_sessions`; one schema per
    /// deployment, which [`PostgresBus`](crate::bus::PostgresBus) shares).
    ///
    /// Nothing is sent yet: the first operation connects and runs the migration, so this works
    /// while PostgreSQL is down and outside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError`] (of the other kind) if `schema` is not such an identifier.
    pub fn new(
        config: tokio_postgres::Config,
        schema: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let schema = schema.into();
        check_identifier("schema", &schema).map_err(StoreError::new)?;
        Self::build(
            config,
            schema,
            Self::DEFAULT_TIMEOUT,
            Self::DEFAULT_POOL_SIZE,
            false,
            Some(Self::DEFAULT_CLEANUP_INTERVAL),
            Self::DEFAULT_CLEANUP_BATCH,
        )
    }

    /// A store on the database at `url` (`postgresql://[user[:password]@]host[:port]/dbname`
    /// with the parameters tokio-postgres accepts, or `host=… dbname=…`); see
    /// [`new`](Self::new).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if `url` is not a connection string tokio-postgres accepts, or the
    /// schema is not a plain identifier.
    pub fn open(url: &str, schema: impl Into<String>) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(StoreError::new)?;
        Self::new(config, schema)
    }

    /// Sets how long an operation may take, waiting for a connection and connecting included
    /// (default [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)); past it the operation fails with
    /// an unavailable [`StoreError`]. A zero timeout fails every operation at once.
    ///
    /// The returned store has its own pool and cleanup task (clones made before this call
    /// keep theirs).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.rebuilt(|t| t.timeout = timeout)
    }

    /// Sets the most connections the store's pool opens (default
    /// [`DEFAULT_POOL_SIZE`](Self::DEFAULT_POOL_SIZE); at least 1). The returned store has its
    /// own pool.
    pub fn with_pool_size(self, size: usize) -> Self {
        self.rebuilt(|t| t.pool_size = size.max(1))
    }

    /// Sets how often expired rows are deleted (`None`: never by this store; default
    /// [`DEFAULT_CLEANUP_INTERVAL`](Self::DEFAULT_CLEANUP_INTERVAL), at least 10 ms) and how
    /// many rows one statement deletes at most (default
    /// [`DEFAULT_CLEANUP_BATCH`](Self::DEFAULT_CLEANUP_BATCH), at least 1). Expired rows
    /// count as absent either way. The returned store has its own pool and task.
    pub fn with_cleanup(self, interval: Option<Duration>, batch: usize) -> Self {
        self.rebuilt(|t| {
            t.cleanup_interval = interval.map(|d| d.max(Duration::from_millis(10)));
            t.cleanup_batch = batch.max(1);
        })
    }

    /// Sets whether a write waits for PostgreSQL to flush its WAL to disk before it answers
    /// (`synchronous_commit`; default **off**: the store's connections run with
    /// `synchronous_commit = off`). Off, a crash of the PostgreSQL server (not a clean
    /// shutdown, and not a crash of a node) can lose the writes of its last few hundred
    /// milliseconds (three times `wal_writer_delay`, 200 ms by default), never more and
    /// without corruption: sessions opened in that window answer 404 and their clients
    /// initialize again, a refresh in it is made again by the next round, and data written in
    /// it is lost — about what Redis with `appendfsync everysec` loses, where Redis without
    /// persistence loses everything. On, each open, restore (its refresh), refresh round and
    /// data write waits for a disk flush: on these machines 5 ms at p50 instead of 0.2–0.5 ms,
    /// and opens fall below 5k/s (BENCHMARKS.md). The returned store has its own pool.
    pub fn with_synchronous_commit(self, on: bool) -> Self {
        self.rebuilt(|t| t.synchronous_commit = on)
    }

    /// The schema given to [`new`](Self::new).
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The operation [timeout](Self::with_timeout).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The statements the store runs once before its first operation (see the table above),
    /// for `schema`, to run ahead of time with a migration tool; `None` if `schema` is not a
    /// plain identifier.
    pub fn migration_sql(schema: &str) -> Option<String> {
        check_identifier("schema", schema).ok()?;
        Some(pg_link::migration(schema))
    }

    /// Runs the migration now (the first operation does it otherwise): creates the schema,
    /// the tables and the indexes that do not exist yet; changes nothing that exists.
    ///
    /// # Errors
    ///
    /// [`StoreError`]: unavailable if the database cannot be reached within the timeout,
    /// of the other kind if a statement is refused (for example for lack of privileges).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let schema = self.inner.schema.as_str();
        let ran = pg_link::run(&self.inner.pool, self.migration_timeout(), || {
            async |client| pg_link::migrate(client, schema).await
        })
        .await;
        ran.map_err(|error| self.error(&error))
    }

    /// Deletes at most `limit` expired rows in one statement (what one step of the cleanup
    /// task does); returns how many it deleted.
    ///
    /// # Errors
    ///
    /// [`StoreError`] as for every operation.
    pub async fn delete_expired(&self, limit: usize) -> Result<u64, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = self.inner.sql.cleanup.as_str();
        self.run(|| {
            async |client| {
                let statement = client.prepare_cached(sql).await?;
                client.execute(&statement, &[&limit]).await
            }
        })
        .await
    }

    fn build(
        config: tokio_postgres::Config,
        schema: String,
        timeout: Duration,
        pool_size: usize,
        synchronous_commit: bool,
        cleanup_interval: Option<Duration>,
        cleanup_batch: usize,
    ) -> Result<Self, StoreError> {
        let pool = pg_link::pool(&config, pool_size, timeout, synchronous_commit)
            .map_err(StoreError::new)?;
        Ok(Self {
            inner: Arc::new(Inner {
                sql: Sql::new(&schema),
                config,
                schema,
                timeout,
                pool_size,
                synchronous_commit,
                pool,
                migrated: OnceCell::new(),
                cleanup_interval,
                cleanup_batch,
                cleanup: Mutex::new(None),
            }),
        })
    }

    /// This store rebuilt with its own pool and cleanup task, one of its settings changed by
    /// `change`; this very store if the pool cannot be made.
    fn rebuilt(self, change: impl FnOnce(&mut Tunables)) -> Self {
        let i = &self.inner;
        let mut t = Tunables {
            timeout: i.timeout,
            pool_size: i.pool_size,
            synchronous_commit: i.synchronous_commit,
            cleanup_interval: i.cleanup_interval,
            cleanup_batch: i.cleanup_batch,
        };
        change(&mut t);
        Self::build(
            i.config.clone(),
            i.schema.clone(),
            t.timeout,
            t.pool_size,
            t.synchronous_commit,
            t.cleanup_interval,
            t.cleanup_batch,
        )
        .unwrap_or(self)
    }

    /// The migration gets more time than a statement: it takes a lock another node may hold.
    fn migration_timeout(&self) -> Duration {
        self.inner.timeout.saturating_mul(5)
    }

    fn error(&self, error: &RunError) -> StoreError {
        let text = error.describe(self.inner.timeout, "PostgresStore");
        if error.is_unavailable() {
            StoreError::unavailable(text)
        } else {
            StoreError::new(text)
        }
    }

    /// Runs `op` on a pooled connection within the timeout, after the migration (once).
    async fn run<T, F>(&self, op: impl Fn() -> F) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut Object) -> Result<T, tokio_postgres::Error>,
    {
        self.run_mapped(op, |store, error| store.error(&error))
            .await
    }

    async fn run_mapped<T, F>(
        &self,
        op: impl Fn() -> F,
        map: impl FnOnce(&Self, RunError) -> StoreError,
    ) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut Object) -> Result<T, tokio_postgres::Error>,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::new(
                "PostgresStore needs a tokio runtime (with its time driver)",
            ));
        }
        if self.inner.timeout.is_zero() {
            return Err(StoreError::timed_out(self.inner.timeout));
        }
        self.inner
            .migrated
            .get_or_try_init(|| self.migrate())
            .await?;
        self.ensure_cleanup();
        pg_link::run(&self.inner.pool, self.inner.timeout, op)
            .await
            .map_err(|error| map(self, error))
    }

    /// Starts the cleanup task once, on the current runtime.
    fn ensure_cleanup(&self) {
        let Some(interval) = self.inner.cleanup_interval else {
            return;
        };
        let mut task = lock(&self.inner.cleanup);
        if task.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        *task = Some(runtime.spawn(cleanup(weak, interval)));
    }
}

/// The cleanup task: every `interval`, bounded deletes of expired rows, until the store is
/// gone.
async fn cleanup(inner: std::sync::Weak<Inner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let store = PostgresStore { inner: strong };
        let batch = store.inner.cleanup_batch as u64;
        for _ in 0..CLEANUP_STATEMENTS {
            match store.delete_expired(store.inner.cleanup_batch).await {
                Ok(deleted) if deleted >= batch => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::debug!(%error, "could not delete expired session records");
                    break;
                }
            }
        }
        // Not held across the sleep: the store can go away meanwhile.
        drop(store);
    }
}

/// A duration in whole milliseconds, rounded up (a positive TTL stays positive), at most 100
/// years.
fn ttl_ms(ttl: Duration) -> i64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    i64::try_from(ms).unwrap_or(i64::MAX).min(MAX_TTL_MS)
}

fn malformed(column: &str) -> StoreError {
    StoreError::new(format!(
        "malformed session record in PostgreSQL: column `{column}` is unreadable"
    ))
}

/// The error of `data_increment`, in the words of [`MemoryStore`](crate::store::MemoryStore).
fn increment_error(store: &PostgresStore, key: &str, error: RunError) -> StoreError {
    match error.code() {
        Some(code) if *code == SqlState::INVALID_TEXT_REPRESENTATION => {
            StoreError::new(format!("the value of `{key}` is not an integer"))
        }
        Some(code) if *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE => {
            StoreError::new(format!("`{key}` would overflow"))
        }
        _ => store.error(&error),
    }
}

/// The record read back from a row of `load`.
fn decode_record(id: &SessionId, row: &tokio_postgres::Row) -> Result<SessionRecord, StoreError> {
    let principal: Option<String> = row.try_get(0).map_err(|_| malformed("principal"))?;
    let created: i64 = row.try_get(1).map_err(|_| malformed("created_ms"))?;
    let created_ms = u64::try_from(created).map_err(|_| malformed("created_ms"))?;
    let method: &str = row.try_get(2).map_err(|_| malformed("method"))?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| malformed("method"))?;
    let uri: &str = row.try_get(3).map_err(|_| malformed("uri"))?;
    let uri = Uri::try_from(uri).map_err(|_| malformed("uri"))?;
    let headers: &[u8] = row.try_get(4).map_err(|_| malformed("headers"))?;
    let headers = crate::store::headers::decode(headers).ok_or_else(|| malformed("headers"))?;
    let body: Vec<u8> = row.try_get(5).map_err(|_| malformed("body"))?;
    Ok(SessionRecord {
        id: id.clone(),
        principal: principal.map(Principal::from),
        created_ms,
        opening: OpeningRequest {
            method,
            uri,
            headers,
            body: Bytes::from(body),
        },
    })
}

impl SessionStore for PostgresStore {
    fn create(&self, record: &SessionRecord, ttl: Option<Duration>) -> StoreFuture<'_, bool> {
        let id = record.id.as_str().to_owned();
        let principal = record.principal.as_ref().map(|p| p.as_str().to_owned());
        let created = i64::try_from(record.created_ms);
        let ttl = ttl.map(ttl_ms);
        let method = record.opening.method.as_str().to_owned();
        let uri = record.opening.uri.to_string();
        let headers = crate::store::headers::encode(&record.opening.headers);
        let body = record.opening.body.clone();
        Box::pin(async move {
            let created = created.map_err(|_| {
                StoreError::new("the creation time does not fit PostgreSQL's bigint")
            })?;
            let sql = self.inner.sql.create.as_str();
            let body: &[u8] = &body;
            let rows = self
                .run(|| {
                    async |client| {
                        let statement = client.prepare_cached(sql).await?;
                        client
                            .execute(
                                &statement,
                                &[
                                    &id, &principal, &created, &ttl, &method, &uri, &headers, &body,
                                ],
                            )
                            .await
                    }
                })
                .await?;
            Ok(rows == 1)
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(async move {
            let sql = self.inner.sql.load.as_str();
            let row = self
                .run(|| {
                    async |client| {
                        let statement = client.prepare_cached(sql).await?;
                        client.query_opt(&statement, &[&id.as_str()]).await
                    }
                })
                .await?;
            row.map(|row| decode_record(id, &row)).transpose()
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.run(|| async |client| client.simple_query("SELECT 1").await.map(drop))
                .await
        })
    }

    fn touch<'a>(&'a self, ids: &'a [SessionId], ttl: Duration) -> StoreFuture<'a, Vec<SessionId>> {
        Box::pin(async move {
            let ms = ttl_ms(ttl);
            let sql = self.inner.sql.touch.as_str();
            let mut missing = Vec::new();
            for chunk in ids.chunks(TOUCH_BATCH) {
                let texts: Vec<&str> = chunk.iter().map(SessionId::as_str).collect();
                let rows = self
                    .run(|| {
                        async |client| {
                            let statement = client.prepare_cached(sql).await?;
                            client.query(&statement, &[&texts, &ms]).await
                        }
                    })
                    .await?;
                let mut refreshed = std::collections::HashSet::with_capacity(rows.len());
                for row in &rows {
                    let id: &str = row.try_get(0).map_err(StoreError::new)?;
                    refreshed.insert(id.to_owned());
                }
                missing.extend(
                    chunk
                        .iter()
                        .filter(|id| !refreshed.contains(id.as_str()))
                        .cloned(),
                );
            }
            Ok(missing)
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let sql = self.inner.sql.delete.as_str();
            let row = self
                .run(|| {
                    async |client| {
                        let statement = client.prepare_cached(sql).await?;
                        client.query_opt(&statement, &[&id.as_str()]).await
                    }
                })
                .await?;
            match row {
                None => Ok(false),
                Some(row) => row.try_get::<_, bool>(0).map_err(StoreError::new),
            }
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
            let sql = self.inner.sql.delete_unused.as_str();
            let rows = self
                .run(|| {
                    async |client| {
                        let statement = client.prepare_cached(sql).await?;
                        client
                            .execute(&statement, &[&id.as_str(), &most_remaining])
                            .await
                    }
                })
                .await?;
            Ok(rows == 1)
        })
    }

    fn data_get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let sql = self.inner.sql.data_get.as_str();
            let row = self
                .run(|| {
                    async |client| {
                        let statement = client.prepare_cached(sql).await?;
                        client.query_opt(&statement, &[&id.as_str(), &key]).await
                    }
                })
                .await?;
            match row {
                None => Ok(None),
                Some(row) => row.try_get::<_, Option<String>>(0).map_err(StoreError::new),
            }
        })
    }

    fn data_insert<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        json: String,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let sql = self.inner.sql.data_insert.as_str();
            let rows = self
                .run(|| {
                    async |client| {
                        let statement = client.prepare_cached(sql).await?;
                        client
                            .execute(&statement, &[&id.as_str(), &key, &json])
                            .await
                    }
                })
                .await?;
            Ok(rows == 1)
        })
    }

    fn data_remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let sql = self.inner.sql.data_remove.as_str();
            let rows = self
                .run(|| {
                    async |client| {
                        let statement = client.prepare_cached(sql).await?;
                        client.execute(&statement, &[&id.as_str(), &key]).await
                    }
                })
                .await?;
            Ok(rows == 1)
        })
    }

    fn data_increment<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        by: i64,
    ) -> StoreFuture<'a, Option<i64>> {
        Box::pin(async move {
            let sql = self.inner.sql.data_increment.as_str();
            let row = self
                .run_mapped(
                    || {
                        async |client| {
                            let statement = client.prepare_cached(sql).await?;
                            client
                                .query_opt(&statement, &[&id.as_str(), &key, &by])
                                .await
                        }
                    },
                    |store, error| increment_error(store, key, error),
                )
                .await?;
            match row {
                None => Ok(None),
                Some(row) => row.try_get::<_, i64>(0).map(Some).map_err(StoreError::new),
            }
        })
    }
}
