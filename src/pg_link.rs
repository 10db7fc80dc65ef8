//! What [`PostgresStore`](crate::store::PostgresStore) and
//! [`PostgresBus`](crate::bus::PostgresBus) share: identifiers (schema and channel names),
//! the migration, the connection pool, running a statement within a timeout, and which
//! errors mean "unavailable".
//!
//! # Why tokio-postgres and deadpool-postgres
//!
//! tokio-postgres (the `rust-postgres` project) is the asynchronous PostgreSQL driver most
//! Rust drivers build on, and the one that exposes what the bus needs: a connection whose
//! asynchronous messages (`NOTIFY`) are read with `Connection::poll_message`. deadpool-postgres
//! pools its clients and caches prepared statements per connection. sqlx was not chosen: its
//! checked queries need a database (or a saved copy of one) at compile time, which a library
//! would impose on every user's build, its unchecked queries bring nothing tokio-postgres
//! lacks, and it is a much larger dependency (its own runtime layer, drivers for three
//! databases). Both crates have frequent releases and many dependents.

use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// Why a name given as a schema or channel was refused.
pub(crate) fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "the {what} {name:?} is not a plain PostgreSQL identifier: 1 to 63 characters, \
             lowercase ASCII letters, digits and `_`, not starting with a digit"
        ));
    }
    Ok(())
}

/// The statements of the migration, for the schema `schema` (an identifier
/// [`check_identifier`] accepted). Each is idempotent; they run in one transaction under a
/// transaction-scoped advisory lock, so nodes starting together do not race on the catalog.
pub(crate) fn migration(schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.sessions (
    id text PRIMARY KEY,
    principal text,
    created_ms bigint NOT NULL,
    expires_at timestamptz,
    method text NOT NULL,
    uri text NOT NULL,
    headers bytea NOT NULL,
    body bytea NOT NULL,
    data jsonb NOT NULL DEFAULT '{{}}'::jsonb
);
CREATE INDEX IF NOT EXISTS sessions_expires_at ON {schema}.sessions (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {schema}.bus_payloads (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created timestamptz NOT NULL DEFAULT now(),
    payload bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_payloads_created ON {schema}.bus_payloads (created);"
    )
}

/// The key of the advisory lock the migration takes (an arbitrary constant: "tms-mig").
const MIGRATION_LOCK: i64 = 0x0074_6d73_2d6d_6967;

/// Runs [`migration`] on `client`, in one transaction under the advisory lock, unless both
/// tables exist already (then nothing is written, and the role needs no `CREATE` privilege:
/// PostgreSQL checks it before it looks whether the schema exists).
pub(crate) async fn migrate(
    client: &mut Object,
    schema: &str,
) -> Result<(), tokio_postgres::Error> {
    let present: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
            &[
                &format!("{schema}.sessions"),
                &format!("{schema}.bus_payloads"),
            ],
        )
        .await?
        .get(0);
    if present {
        return Ok(());
    }
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction.batch_execute(&migration(schema)).await?;
    transaction.commit().await
}

/// A pool of at most `size` connections to `config`, connecting lazily (nothing is sent
/// before the first checkout). Checkouts check only that the connection is not closed (no
/// round trip). `timeout` (if under an hour) also bounds connecting and waiting for a free
/// connection. Without `synchronous_commit`, the connections run with
/// `synchronous_commit = off` (added to the connection's `options`): a commit answers before
/// its WAL is flushed to disk.
pub(crate) fn pool(
    config: &tokio_postgres::Config,
    size: usize,
    timeout: Duration,
    synchronous_commit: bool,
) -> Result<Pool, String> {
    let mut config = config.clone();
    if !synchronous_commit {
        let options = match config.get_options() {
            Some(options) if !options.trim().is_empty() => {
                format!("{options} -c synchronous_commit=off")
            }
            _ => "-c synchronous_commit=off".to_owned(),
        };
        config.options(options);
    }
    let bounded = (!timeout.is_zero() && timeout < Duration::from_secs(3600)).then_some(timeout);
    if let Some(timeout) = bounded {
        config.connect_timeout(timeout);
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(bounded)
        .create_timeout(bounded)
        .build()
        .map_err(|error| format!("cannot build the connection pool: {error}"))
}

/// Whether `error` means PostgreSQL could not be reached or cannot serve now (retrying later
/// may succeed): no SQLSTATE at all (I/O errors, a closed or refused connection, a timeout),
/// class 08 (connection exception), 53 (insufficient resources: too many connections, disk
/// full), 57P01–57P05 (the server shutting down, starting, or an idle session killed), 58
/// (system error), 28 (authentication failed: a rotated password is an outage, not a bug) and
/// 25006 (a read-only transaction: a standby answering during a failover).
pub(crate) fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    let Some(code) = error.code() else {
        return error.as_db_error().is_none();
    };
    let code = code.code();
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code.starts_with("58")
        || code.starts_with("28")
        || code == SqlState::READ_ONLY_SQL_TRANSACTION.code()
}

/// Whether a pool error means PostgreSQL is unavailable (see [`is_unavailable`]).
pub(crate) fn pool_unavailable(error: &PoolError) -> bool {
    match error {
        PoolError::Backend(error) => is_unavailable(error),
        PoolError::NoRuntimeSpecified => false,
        PoolError::Timeout(_) | PoolError::Closed | PoolError::PostCreateHook(_) => true,
    }
}

/// "no answer within N ms" for an operation that timed out after `timeout`.
pub(crate) fn no_answer_within(timeout: Duration) -> String {
    format!("no answer within {} ms", crate::time::millis(timeout))
}

/// A failure of [`run`]: the pool, the statement, or the timeout.
pub(crate) enum RunError {
    /// No connection.
    Pool(PoolError),
    /// The statement failed.
    Query(tokio_postgres::Error),
    /// No answer within the timeout.
    TimedOut,
    /// Not on a tokio runtime.
    NoRuntime,
}

impl RunError {
    /// Whether the database is unavailable (see [`is_unavailable`]).
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            RunError::Pool(error) => pool_unavailable(error),
            RunError::Query(error) => is_unavailable(error),
            RunError::TimedOut => true,
            RunError::NoRuntime => false,
        }
    }

    /// The SQLSTATE of a failed statement.
    pub(crate) fn code(&self) -> Option<&SqlState> {
        match self {
            RunError::Query(error) => error.code(),
            _ => None,
        }
    }

    /// The error as text, with `timeout` for a timeout.
    pub(crate) fn describe(&self, timeout: Duration, what: &str) -> String {
        match self {
            RunError::Pool(error) => format!("no {what} connection: {error}"),
            RunError::Query(error) => match error.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => error.to_string(),
            },
            RunError::TimedOut => no_answer_within(timeout),
            RunError::NoRuntime => format!("{what} needs a tokio runtime (with its time driver)"),
        }
    }
}

/// Whether `error` says the server ended the connection's backend before the statement ran
/// (`pg_terminate_backend`, a restart, a crash: SQLSTATE 57P01, 57P02 or 57P03): an idle
/// pooled connection that died meanwhile. The statement did not run, so running it again on
/// another connection is safe, even for one that is not idempotent.
fn backend_was_gone(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
    })
}

/// Takes a connection from `pool` and runs `op` on it, all within `timeout`. A connection
/// whose statement timed out is taken out of the pool and closed (a connection that went
/// silent would time out every later statement); a connection whose statement failed with an
/// unavailable error is dropped the same way. If the server had ended the connection's
/// backend before the statement ran (see [`backend_was_gone`]), `op` runs once more, on
/// another connection, within the same deadline.
pub(crate) async fn run<T, F>(
    pool: &Pool,
    timeout: Duration,
    op: impl Fn() -> F,
) -> Result<T, RunError>
where
    F: AsyncFnOnce(&mut Object) -> Result<T, tokio_postgres::Error>,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RunError::NoRuntime);
    }
    if timeout.is_zero() {
        return Err(RunError::TimedOut);
    }
    let deadline = tokio::time::Instant::now().checked_add(timeout);
    let mut retried = false;
    loop {
        match attempt(pool, deadline, op()).await {
            Err(RunError::Query(error)) if !retried && backend_was_gone(&error) => retried = true,
            result => return result,
        }
    }
}

/// One checkout and one run of `op`, until `deadline` (`None`: no deadline).
async fn attempt<T, F>(
    pool: &Pool,
    deadline: Option<tokio::time::Instant>,
    op: F,
) -> Result<T, RunError>
where
    F: AsyncFnOnce(&mut Object) -> Result<T, tokio_postgres::Error>,
{
    let checkout = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, pool.get()).await.ok(),
        None => Some(pool.get().await),
    };
    let mut client = match checkout {
        Some(Ok(client)) => client,
        Some(Err(error)) => return Err(RunError::Pool(error)),
        None => return Err(RunError::TimedOut),
    };
    let result = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, op(&mut client))
            .await
            .ok(),
        None => Some(op(&mut client).await),
    };
    match result {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => {
            if is_unavailable(&error) {
                drop(Object::take(client));
            }
            Err(RunError::Query(error))
        }
        None => {
            drop(Object::take(client));
            Err(RunError::TimedOut)
        }
    }
}
