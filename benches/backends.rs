//! Several servers on Redis and on PostgreSQL, in one run, with the same layer and the same
//! counts (issue 20, item 5). Redis at 127.0.0.1:6379 or `REDIS_URL`; PostgreSQL at
//! `postgresql://postgres@127.0.0.1:5432/test` or `POSTGRES_URL`.
//!
//! 1. Routed requests to sessions live on this node (1k sessions, a fixed random order): no
//!    store / MemoryStore / RedisStore+RedisBus / PostgresStore+PostgresBus interleaved,
//!    `BACKENDS_ROUNDS` rounds of `BACKENDS_ROUTED` requests; the median per-round ratio to
//!    MemoryStore.
//! 2. Statements (PostgreSQL) or commands (Redis) per routed request on steady traffic: the
//!    store and bus are wrapped in counters (every `PostgresStore` operation is one statement,
//!    `touch` one per 4096 ids; every `RedisStore` operation one command, `touch` one `PEXPIRE`
//!    per id; every publish one statement or command); `BACKENDS_STEADY` routed requests paced over 4 s with an idle timeout of 4 s
//!    (the refresher fires every second). The counters cover what the layer sends; the bus
//!    listeners' own health checks (one `SELECT 1` or `PING` per node after 5 s of quiet)
//!    come on top.
//! 3. Restore latency: node A opens `BACKENDS_RESTORE` sessions; node B (same store and bus)
//!    gets the first request of each, timed end to end (a load, the replay, and the
//!    restore's refresh of the record: one write). Also the store's `load` alone.
//! 4. Opens/s: `BACKENDS_OPENS` MCP `initialize`, 64 at a time, 2 tokio workers.
//!
//! Parts 3 and 4 also run on PostgreSQL with `synchronous_commit` on (every write waits for
//! a WAL flush); the store's default is off (see `PostgresStore::with_synchronous_commit`).
//! 5. Cross-node notification latency: `BACKENDS_NOTIFY` messages published one at a time
//!    through one node's bus connection and received by another's.
//! 6. Size per session: PostgreSQL `pg_total_relation_size` of the sessions table (heap,
//!    indexes, TOAST) and its row count, Redis `used_memory`, before and after opening
//!    `BACKENDS_RECORDS` sessions through a layer with the store alone.
//!
//! Redis keys live under `tms-bench-be:<pid>-<nanos>:`, PostgreSQL rows in the schema
//! `tms_bench_<pid>_<nanos>`; only those are deleted at the end. `cargo test --benches` runs
//! a smoke pass with small counts (skipped with a message if either backend is unreachable).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use http::StatusCode;
use tower::{Layer, Service, ServiceExt};
use tower_mcp_session::bus::{
    BusConnection, BusEvent, BusFuture, Deliver, PostgresBus, RedisBus, SessionBus,
};
use tower_mcp_session::store::{
    MemoryStore, PostgresStore, RedisStore, SessionRecord, SessionStore, StoreFuture,
};
use tower_mcp_session::{Cluster, SessionId, SessionLayer};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Counts {
    sessions: usize,
    routed: usize,
    rounds: usize,
    steady: usize,
    restore: usize,
    opens: usize,
    notify: usize,
    records: usize,
}

impl Counts {
    fn new(smoke: bool) -> Self {
        if smoke {
            return Self {
                sessions: 50,
                routed: 2_000,
                rounds: 1,
                steady: 2_000,
                restore: 50,
                opens: 300,
                notify: 50,
                records: 200,
            };
        }
        Self {
            sessions: env_usize("BACKENDS_SESSIONS", 1_000),
            routed: env_usize("BACKENDS_ROUTED", 300_000),
            rounds: env_usize("BACKENDS_ROUNDS", 7),
            steady: env_usize("BACKENDS_STEADY", 200_000),
            restore: env_usize("BACKENDS_RESTORE", 2_000),
            opens: env_usize("BACKENDS_OPENS", 20_000),
            notify: env_usize("BACKENDS_NOTIFY", 2_000),
            records: env_usize("BACKENDS_RECORDS", 10_000),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counting wrappers: every operation the layer asks of the store or the bus.
// ---------------------------------------------------------------------------------------------

struct CountingStore<S> {
    inner: S,
    calls: Arc<AtomicU64>,
    /// Ids one `touch` statement or command covers: 4096 for `PostgresStore` (one `UPDATE …
    /// WHERE id = ANY($1)`), 1 for `RedisStore` (one `PEXPIRE` per id, pipelined).
    ids_per_touch: usize,
}

impl<S: SessionStore> CountingStore<S> {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

impl<S: SessionStore> SessionStore for CountingStore<S> {
    fn create(&self, record: &SessionRecord, ttl: Option<Duration>) -> StoreFuture<'_, bool> {
        self.count();
        self.inner.create(record, ttl)
    }
    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        self.count();
        self.inner.load(id)
    }
    fn touch<'a>(&'a self, ids: &'a [SessionId], ttl: Duration) -> StoreFuture<'a, Vec<SessionId>> {
        if !ids.is_empty() {
            self.calls.fetch_add(
                ids.len().div_ceil(self.ids_per_touch) as u64,
                Ordering::Relaxed,
            );
        }
        self.inner.touch(ids, ttl)
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.count();
        self.inner.ping()
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        self.count();
        self.inner.delete(id)
    }
    fn delete_if_unused<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
        unused_for: Duration,
    ) -> StoreFuture<'a, bool> {
        self.count();
        self.inner.delete_if_unused(id, ttl, unused_for)
    }
    fn data_get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, Option<String>> {
        self.count();
        self.inner.data_get(id, key)
    }
    fn data_insert<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        json: String,
    ) -> StoreFuture<'a, bool> {
        self.count();
        self.inner.data_insert(id, key, json)
    }
    fn data_remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, bool> {
        self.count();
        self.inner.data_remove(id, key)
    }
    fn data_increment<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        by: i64,
    ) -> StoreFuture<'a, Option<i64>> {
        self.count();
        self.inner.data_increment(id, key, by)
    }
}

struct CountingBus<B> {
    inner: B,
    calls: Arc<AtomicU64>,
}

struct CountingConnection {
    inner: Arc<dyn BusConnection>,
    calls: Arc<AtomicU64>,
}

impl<B: SessionBus> SessionBus for CountingBus<B> {
    fn connect(&self, deliver: Deliver) -> Arc<dyn BusConnection> {
        Arc::new(CountingConnection {
            inner: self.inner.connect(deliver),
            calls: Arc::clone(&self.calls),
        })
    }
}

impl BusConnection for CountingConnection {
    fn listen(&self, id: &SessionId) {
        self.inner.listen(id);
    }
    fn unlisten(&self, id: &SessionId) {
        self.inner.unlisten(id);
    }
    fn publish<'a>(&'a self, id: &'a SessionId, event: BusEvent) -> BusFuture<'a, ()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.publish(id, event)
    }
    fn ping(&self) -> BusFuture<'_, ()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.ping()
    }
}

// ---------------------------------------------------------------------------------------------

/// p-th percentile (0..=100) of sorted durations, in µs.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn routed(svc: &mut Svc, id: &str) {
    let response = block_on(svc.call(session_request(id))).expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "not routed");
    std::hint::black_box(response);
}

fn open_on(rt: &tokio::runtime::Runtime, svc: &Svc, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let response = rt
                .block_on(svc.clone().oneshot(init_request()))
                .expect("infallible");
            assert_eq!(response.status(), StatusCode::OK, "initialize not served");
            response.headers()[tower_mcp_session::mcp::MCP_SESSION_ID]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn open_concurrently(rt: &tokio::runtime::Runtime, svc: &Svc, count: usize) -> Duration {
    let next = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let svc = svc.clone();
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < count {
                        let response = svc
                            .clone()
                            .oneshot(init_request())
                            .await
                            .expect("infallible");
                        assert_eq!(response.status(), StatusCode::OK, "open refused");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("open task");
        }
        start.elapsed()
    })
}

/// What the run needs of one backend.
struct Backend {
    name: &'static str,
    store: Box<dyn Fn() -> Arc<dyn SessionStore>>,
    bus: Box<dyn Fn() -> Arc<dyn SessionBus>>,
}

/// A store or bus behind an `Arc`, as the layer takes it by value.
struct Shared<T: ?Sized>(Arc<T>);

impl SessionStore for Shared<dyn SessionStore> {
    fn create(&self, record: &SessionRecord, ttl: Option<Duration>) -> StoreFuture<'_, bool> {
        self.0.create(record, ttl)
    }
    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<SessionRecord>> {
        self.0.load(id)
    }
    fn touch<'a>(&'a self, ids: &'a [SessionId], ttl: Duration) -> StoreFuture<'a, Vec<SessionId>> {
        self.0.touch(ids, ttl)
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.0.ping()
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        self.0.delete(id)
    }
    fn delete_if_unused<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
        unused_for: Duration,
    ) -> StoreFuture<'a, bool> {
        self.0.delete_if_unused(id, ttl, unused_for)
    }
    fn data_get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, Option<String>> {
        self.0.data_get(id, key)
    }
    fn data_insert<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        json: String,
    ) -> StoreFuture<'a, bool> {
        self.0.data_insert(id, key, json)
    }
    fn data_remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> StoreFuture<'a, bool> {
        self.0.data_remove(id, key)
    }
    fn data_increment<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        by: i64,
    ) -> StoreFuture<'a, Option<i64>> {
        self.0.data_increment(id, key, by)
    }
}

impl SessionBus for Shared<dyn SessionBus> {
    fn connect(&self, deliver: Deliver) -> Arc<dyn BusConnection> {
        self.0.connect(deliver)
    }
}

impl Backend {
    fn cluster(&self) -> Cluster {
        Cluster::new(Shared((self.store)())).bus(Shared((self.bus)()))
    }
}

fn main() {
    let smoke = match mode("backends") {
        Mode::Skip => return,
        Mode::Smoke => true,
        Mode::Bench => false,
    };
    let n = Counts::new(smoke);
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let pg_url = std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".to_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("tms-bench-be:{}-{nanos}:", std::process::id());
    let schema = format!("tms_bench_{}_{nanos}", std::process::id());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();

    let mut redis_admin =
        match redis::Client::open(redis_url.as_str()).and_then(|c| c.get_connection()) {
            Ok(con) => con,
            Err(error) if smoke => {
                println!(
                    "backends bench: Redis at {redis_url} unreachable ({error}); smoke run skipped"
                );
                return;
            }
            Err(error) => panic!("Redis at {redis_url} unreachable: {error}"),
        };
    let pg_admin = match rt.block_on(tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)) {
        Ok((client, connection)) => {
            rt.spawn(connection);
            client
        }
        Err(error) if smoke => {
            println!(
                "backends bench: PostgreSQL at {pg_url} unreachable ({error}); smoke run skipped"
            );
            return;
        }
        Err(error) => panic!("PostgreSQL at {pg_url} unreachable: {error}"),
    };
    let redis_version: String = redis::cmd("INFO")
        .arg("server")
        .query::<String>(&mut redis_admin)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let pg_version: String = rt
        .block_on(pg_admin.query_one("SHOW server_version", &[]))
        .map(|row| row.get(0))
        .unwrap_or_else(|_| "?".into());

    let durable = {
        let (pg, sc) = (pg_url.clone(), schema.clone());
        let (pg2, sc2) = (pg_url.clone(), schema.clone());
        Backend {
            name: "PostgreSQL, synchronous_commit on",
            store: Box::new(move || {
                Arc::new(
                    PostgresStore::open(&pg, sc.as_str())
                        .unwrap()
                        .with_synchronous_commit(true),
                )
            }),
            bus: Box::new(move || Arc::new(PostgresBus::open(&pg2, sc2.as_str()).unwrap())),
        }
    };
    let backends = {
        let (url, prefix) = (redis_url.clone(), prefix.clone());
        let (url2, prefix2) = (redis_url.clone(), prefix.clone());
        let (pg, sc) = (pg_url.clone(), schema.clone());
        let (pg2, sc2) = (pg_url.clone(), schema.clone());
        [
            Backend {
                name: "Redis",
                store: Box::new(move || Arc::new(RedisStore::open(&url, prefix.as_str()).unwrap())),
                bus: Box::new(move || Arc::new(RedisBus::open(&url2, prefix2.as_str()).unwrap())),
            },
            Backend {
                name: "PostgreSQL",
                store: Box::new(move || Arc::new(PostgresStore::open(&pg, sc.as_str()).unwrap())),
                bus: Box::new(move || Arc::new(PostgresBus::open(&pg2, sc2.as_str()).unwrap())),
            },
        ]
    };

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(
            &rt,
            &n,
            &backends,
            &durable,
            &mut redis_admin,
            &pg_admin,
            &schema,
        )
    }));

    // Cleanup: this run's keys and schema only.
    let mut cursor = 0u64;
    let mut deleted = 0usize;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut redis_admin)
            .expect("SCAN");
        if !keys.is_empty() {
            deleted += keys.len();
            let _: u64 = redis::cmd("DEL")
                .arg(&keys)
                .query(&mut redis_admin)
                .expect("DEL");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let dropped =
        rt.block_on(pg_admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")));
    println!(
        "cleanup: deleted {deleted} Redis keys under {prefix}; dropped schema {schema}: {:?}",
        dropped.map_err(|e| e.to_string())
    );
    drop(_enter);
    drop(rt);
    let body = match result {
        Ok(body) => body,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let out = format!(
        "### Several servers: Redis and PostgreSQL side by side\n\nRedis {redis_version} and PostgreSQL {pg_version} on loopback, {cores} cores ({cpu}), tokio multi-thread runtime with 2 workers.\n\n{body}"
    );
    write_summary("8-backends", &out);
}

fn run(
    rt: &tokio::runtime::Runtime,
    n: &Counts,
    backends: &[Backend; 2],
    durable: &Backend,
    redis_admin: &mut redis::Connection,
    pg_admin: &tokio_postgres::Client,
    schema: &str,
) -> String {
    let base = || mcp_layer(usize::MAX);
    let mut rows: Vec<String> = Vec::new();

    // ---- 1. Routed requests.
    let mut layers: Vec<(&str, SessionLayer<Factory>)> = vec![(
        "MemoryStore",
        base().cluster(Cluster::new(MemoryStore::new())).build(),
    )];
    for backend in backends {
        layers.push((backend.name, base().cluster(backend.cluster()).build()));
    }
    let mut fixtures: Vec<(Svc, Vec<String>)> = Vec::new();
    for (_, layer) in &layers {
        let svc = layer.layer(Noop);
        let mut ids = open_on(rt, &svc, n.sessions);
        Rng::new(0x5e55_1015).shuffle(&mut ids);
        fixtures.push((svc, ids));
    }
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); fixtures.len()];
    for round in 0..n.rounds {
        for k in 0..fixtures.len() {
            let v = (k + round) % fixtures.len();
            let (svc, ids) = &fixtures[v];
            let mut svc = svc.clone();
            let start = Instant::now();
            for i in 0..n.routed {
                routed(&mut svc, &ids[i % ids.len()]);
            }
            per[v].push(start.elapsed().as_nanos() as f64 / n.routed as f64);
        }
    }
    for (b, backend) in backends.iter().enumerate() {
        let ratios: Vec<f64> = per[0].iter().zip(&per[b + 1]).map(|(m, x)| m / x).collect();
        let r = median(ratios);
        rows.push(format!(
            "| {}: routed request, {} live sessions, 1 thread (paired median of {} rounds; MemoryStore {:.0} ns) | {:.0} ns, {r:.3}× MemoryStore | ≥ 0.95× | {} |",
            backend.name,
            n.sessions,
            n.rounds,
            median(per[0].clone()),
            median(per[b + 1].clone()),
            met(r >= 0.95),
        ));
    }
    drop(fixtures);
    drop(layers);

    // ---- 2. Store operations per routed request, steady traffic.
    for backend in backends {
        let calls = Arc::new(AtomicU64::new(0));
        let store = CountingStore {
            inner: Shared((backend.store)()),
            calls: Arc::clone(&calls),
            ids_per_touch: if backend.name == "Redis" { 1 } else { 4096 },
        };
        let bus = CountingBus {
            inner: Shared((backend.bus)()),
            calls: Arc::clone(&calls),
        };
        let layer = base()
            .idle_timeout(Duration::from_secs(4))
            .cluster(Cluster::new(store).bus(bus))
            .build();
        let svc = layer.layer(Noop);
        let ids = open_on(rt, &svc, n.sessions);
        std::thread::sleep(Duration::from_millis(1500));
        let window = Duration::from_secs(4);
        let batches = 100usize;
        let per_batch = n.steady.div_ceil(batches);
        let mut s = svc.clone();
        let before = calls.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut sent = 0usize;
        for b in 0..batches {
            for _ in 0..per_batch.min(n.steady - sent) {
                routed(&mut s, &ids[sent % ids.len()]);
                sent += 1;
            }
            let due = window.mul_f64((b + 1) as f64 / batches as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let took = start.elapsed();
        let made = calls.load(Ordering::Relaxed) - before;
        let per_req = made as f64 / sent as f64;
        rows.push(format!(
            "| {}: statements (PostgreSQL) or commands (Redis) per routed request ({sent} requests over {:.1} s, {} sessions, refresher every 1 s) | {per_req:.5} ({made}) | ≤ 0.05 | {} |",
            backend.name,
            took.as_secs_f64(),
            n.sessions,
            met(per_req <= 0.05),
        ));
    }

    // ---- 3. Restore latency (and the store's load alone).
    for backend in backends.iter().chain([durable]) {
        let node_a = base().cluster(backend.cluster()).build();
        let svc_a = node_a.layer(Noop);
        let ids = open_on(rt, &svc_a, n.restore);
        let node_b = base().cluster(backend.cluster()).build();
        let svc_b = node_b.layer(Noop);
        let mut restores = Vec::with_capacity(ids.len());
        for id in &ids {
            let start = Instant::now();
            let response = rt
                .block_on(svc_b.clone().oneshot(session_request(id)))
                .expect("infallible");
            restores.push(start.elapsed());
            assert_eq!(response.status(), StatusCode::OK, "not restored");
        }
        restores.sort();
        let store = (backend.store)();
        let mut loads = Vec::with_capacity(ids.len());
        for id in &ids {
            let id = SessionId::parse(id).unwrap();
            let start = Instant::now();
            let record = rt.block_on(store.load(&id)).expect("load");
            loads.push(start.elapsed());
            assert!(record.is_some());
        }
        loads.sort();
        rows.push(format!(
            "| {}: the store's `load` alone (the restore's read): p50 / p99 | {:.0} / {:.0} µs | — | — |",
            backend.name,
            pct(&loads, 50.0),
            pct(&loads, 99.0),
        ));
        let (r50, r99, rmax) = (
            pct(&restores, 50.0),
            pct(&restores, 99.0),
            pct(&restores, 100.0),
        );
        rows.push(format!(
            "| {}: restore on another node, first request end to end ({} sessions): p50 / p99 (max) | {r50:.0} / {r99:.0} µs ({rmax:.0} µs) | p99 < 5 ms | {} |",
            backend.name,
            ids.len(),
            met(r99 < 5000.0),
        ));
    }

    // ---- 4. Opens/s.
    for backend in backends.iter().chain([durable]) {
        let layer = base().cluster(backend.cluster()).build();
        let svc = layer.layer(Noop);
        open_concurrently(rt, &svc, 200.min(n.opens));
        let took = open_concurrently(rt, &svc, n.opens);
        let rate = n.opens as f64 / took.as_secs_f64();
        rows.push(format!(
            "| {}: opens/s, {} MCP initialize, 64 concurrent, 2 workers (store and bus) | {:.1} k/s ({:.2} s) | ≥ 5 k/s | {} |",
            backend.name,
            n.opens,
            rate / 1e3,
            took.as_secs_f64(),
            met(rate >= 5_000.0),
        ));
    }

    // ---- 5. Cross-node notification latency.
    for backend in backends {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let deliver: Deliver = Arc::new(move |_: &SessionId, _: BusEvent| {
            let _ = tx.send(Instant::now());
        });
        let listener_bus = (backend.bus)();
        let publisher_bus = (backend.bus)();
        let listener = listener_bus.connect(deliver);
        let publisher = publisher_bus.connect(Arc::new(|_: &SessionId, _: BusEvent| {}));
        let id = SessionId::parse(&format!("bench-notify-{}", std::process::id())).unwrap();
        listener.listen(&id);
        let message = BusEvent::Message(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#,
        ));
        let latencies = rt.block_on(async {
            // Until the listener receives (its subscription or LISTEN is through).
            loop {
                publisher
                    .publish(&id, message.clone())
                    .await
                    .expect("publish");
                if tokio::time::timeout(Duration::from_millis(200), rx.recv())
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            let mut latencies = Vec::with_capacity(n.notify);
            for _ in 0..n.notify {
                let start = Instant::now();
                publisher
                    .publish(&id, message.clone())
                    .await
                    .expect("publish");
                let at = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .expect("delivered within 5 s")
                    .expect("open");
                latencies.push(at - start);
            }
            latencies
        });
        let mut latencies = latencies;
        latencies.sort();
        rows.push(format!(
            "| {}: cross-node notification, publish on one bus connection to delivery on another ({} messages, one at a time): p50 / p99 (max) | {:.0} / {:.0} µs ({:.0} µs) | — | — |",
            backend.name,
            latencies.len(),
            pct(&latencies, 50.0),
            pct(&latencies, 99.0),
            pct(&latencies, 100.0),
        ));
    }

    // ---- 6. Size per session.
    {
        let used = |con: &mut redis::Connection| -> i64 {
            let text: String = redis::cmd("INFO")
                .arg("memory")
                .query(con)
                .unwrap_or_default();
            text.lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let layer = base()
            .cluster(Cluster::new(Shared((backends[0].store)())))
            .build();
        let svc = layer.layer(Noop);
        std::thread::sleep(Duration::from_millis(500));
        let before = used(redis_admin);
        open_on(rt, &svc, n.records);
        std::thread::sleep(Duration::from_millis(500));
        let after = used(redis_admin);
        rows.push(format!(
            "| Redis: memory per session record ({} records; `used_memory` delta / count) | {:.0} B, 1 key per session | — | — |",
            n.records,
            (after - before) as f64 / n.records as f64,
        ));
        drop((svc, layer));

        let size = || -> (i64, i64) {
            rt.block_on(async {
                let table = format!("{schema}.sessions");
                let bytes: i64 = pg_admin
                    .query_one(
                        "SELECT pg_total_relation_size($1::text::regclass)",
                        &[&table],
                    )
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                let rows: i64 = pg_admin
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                (bytes, rows)
            })
        };
        let layer = base()
            .cluster(Cluster::new(Shared((backends[1].store)())))
            .build();
        let svc = layer.layer(Noop);
        let (bytes0, rows0) = size();
        open_on(rt, &svc, n.records);
        let (bytes1, rows1) = size();
        rows.push(format!(
            "| PostgreSQL: size per session record ({} records; `pg_total_relation_size` of the sessions table, indexes and TOAST, delta / count; the whole table / its rows after) | {:.0} B ({:.0} B: {} B / {} rows), {:.2} rows per session | — | — |",
            n.records,
            (bytes1 - bytes0) as f64 / n.records as f64,
            bytes1 as f64 / rows1.max(1) as f64,
            bytes1,
            rows1,
            (rows1 - rows0) as f64 / n.records as f64,
        ));
        drop((svc, layer));
    }

    let mut out = String::from("| figure | measured | target | reading |\n|---|---|---|---|\n");
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    out
}
