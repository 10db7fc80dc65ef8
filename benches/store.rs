//! Several servers: what `RedisStore` (with `RedisBus`) costs, against `MemoryStore` and no
//! store, on a real Redis (127.0.0.1:6379, or `REDIS_URL`: `rediss://` with the CA file in
//! `REDIS_CA`; or a Redis Cluster, the node URLs comma-separated in `REDIS_CLUSTER`; figures of a
//! cluster summed over its masters), in one run (`STORE_LABEL` names it: `7-store-<label>.md`):
//!
//! 1. `routed/{none,memory,redis}`: requests routed to sessions live on this node (1k sessions
//!    opened first, walked in a fixed random order), criterion throughput; then a paired pass
//!    (the three variants interleaved, `STORE_ROUNDS` rounds of `STORE_ROUTED` requests) whose
//!    median per-round ratio is the headline RedisStore / MemoryStore figure.
//! 2. Redis commands per routed request on steady traffic: `INFO commandstats` (sum of calls)
//!    before and after `STORE_STEADY` routed requests paced over `STORE_STEADY_SECS` seconds,
//!    with an idle timeout of 4 s so that the refresher (a quarter of it: 1 s) fires several
//!    times; the first `INFO` (counted by the second) is subtracted. An idle window of the same
//!    length is measured first: what Redis receives with no traffic at all (other clients, the
//!    bus's health checks).
//! 3. Restore latency: node A opens `STORE_RESTORE` sessions; node B (another layer on the same
//!    store and bus prefix, trivial factory) receives the first request of each, timed end to
//!    end (load, factory, replay of `initialize` and `notifications/initialized`, routing).
//!    Also `RedisStore::load` alone. Percentiles from the sorted durations.
//! 4. Opens/s: `STORE_OPENS` MCP `initialize` POSTs, 64 at a time, on a multi-thread runtime
//!    with 2 workers, with RedisStore + RedisBus, MemoryStore and no store.
//! 5. Redis memory per session record: `used_memory` before and after opening
//!    `STORE_RECORDS` sessions through a layer with RedisStore (no bus), divided by the count;
//!    and `MEMORY USAGE` of a sample of the keys.
//!
//! Every key lives under a prefix of its own (`tms-bench:<pid>-<nanos>:`); at the end only the
//! keys under it are deleted (`SCAN MATCH prefix*` + `DEL`). Nothing else in the Redis is
//! touched: no `FLUSHALL`/`FLUSHDB`. The command count of part 2 includes whatever other
//! clients send to the same Redis in that window: run it on a Redis nothing else uses.
//!
//! `cargo test --benches` (no `--bench`) runs a smoke pass with small counts, and skips with a
//! message if Redis cannot be reached.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use criterion::Throughput;
use http::StatusCode;
use tower::{Layer, Service, ServiceExt};
use tower_mcp_session::bus::RedisBus;
use tower_mcp_session::store::{MemoryStore, RedisStore, SessionStore};
use tower_mcp_session::{Cluster, SessionId, SessionLayer, SessionLayerBuilder};

/// `usize` from the environment, or `default`.
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
    steady_secs: u64,
    restore: usize,
    opens: usize,
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
                steady_secs: 1,
                restore: 50,
                opens: 500,
                records: 200,
            };
        }
        Self {
            sessions: env_usize("STORE_SESSIONS", 1_000),
            routed: env_usize("STORE_ROUTED", 300_000),
            rounds: env_usize("STORE_ROUNDS", 7),
            steady: env_usize("STORE_STEADY", 200_000),
            steady_secs: env_usize("STORE_STEADY_SECS", 4) as u64,
            restore: env_usize("STORE_RESTORE", 2_000),
            opens: env_usize("STORE_OPENS", 50_000),
            records: env_usize("STORE_RECORDS", 10_000),
        }
    }
}

/// Plain (non-pooled) connections for `INFO`, `MEMORY USAGE` and the final cleanup: to the
/// one Redis, or to every node of a Redis Cluster (figures summed over its masters).
struct Admin {
    cons: Vec<redis::Connection>,
}

impl Admin {
    /// Connections to `urls` (with the CA file `ca` for `rediss://`).
    fn connect(urls: &[String], ca: Option<&str>) -> redis::RedisResult<Self> {
        let mut cons = Vec::new();
        for url in urls {
            let client = match ca {
                Some(ca) => redis::Client::build_with_tls(
                    url.as_str(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(std::fs::read(ca)?),
                    },
                )?,
                None => redis::Client::open(url.as_str())?,
            };
            cons.push(client.get_connection()?);
        }
        Ok(Self { cons })
    }

    /// The connections to masters (all of them on a single Redis).
    fn masters(&mut self) -> impl Iterator<Item = &mut redis::Connection> {
        self.cons.iter_mut().filter_map(|con| {
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(con).ok()?;
            matches!(&role[0], redis::Value::BulkString(r) if r == b"master").then_some(con)
        })
    }

    fn info_of(con: &mut redis::Connection, section: &str) -> String {
        redis::cmd("INFO").arg(section).query(con).expect("INFO")
    }

    /// `cmdstat_<name>` → calls, from `INFO commandstats`, summed over the masters.
    fn command_calls(&mut self) -> HashMap<String, u64> {
        let mut calls = HashMap::new();
        for con in self.masters() {
            let text = Self::info_of(con, "commandstats");
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("cmdstat_") else {
                    continue;
                };
                let Some((name, stats)) = rest.split_once(':') else {
                    continue;
                };
                let n = stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                *calls.entry(name.to_owned()).or_insert(0) += n;
            }
        }
        calls
    }

    /// `key` of INFO `section` on the first node.
    fn field(&mut self, section: &str, key: &str) -> String {
        let text = Self::info_of(&mut self.cons[0], section);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap_or("?")
            .trim()
            .to_owned()
    }

    /// `used_memory`, summed over the masters.
    fn used_memory(&mut self) -> i64 {
        self.masters()
            .map(|con| {
                Self::info_of(con, "memory")
                    .lines()
                    .find_map(|l| l.strip_prefix("used_memory:"))
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// `used_memory` once two readings 300 ms apart differ by less than 16 KiB (at most 5 s).
    fn settled_memory(&mut self) -> i64 {
        let mut last = self.used_memory();
        for _ in 0..16 {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.used_memory();
            if (now - last).abs() < 16 * 1024 {
                return now;
            }
            last = now;
        }
        last
    }

    /// `MEMORY USAGE` of `key` on whichever master holds it.
    fn memory_usage(&mut self, key: &str) -> Option<u64> {
        self.masters().find_map(|con| {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query::<Option<u64>>(con)
                .ok()
                .flatten()
        })
    }

    fn keys_of(con: &mut redis::Connection, prefix: &str) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query(con)
                .expect("SCAN");
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                return keys;
            }
        }
    }

    fn keys(&mut self, prefix: &str) -> Vec<Vec<u8>> {
        self.masters()
            .flat_map(|con| Self::keys_of(con, prefix))
            .collect()
    }

    /// Deletes the keys under `prefix` (only those); returns how many. One `DEL` per key, in
    /// pipelines: on a cluster the keys of one node are in many slots.
    fn cleanup(&mut self, prefix: &str) -> usize {
        let mut deleted = 0;
        for con in self.masters() {
            let keys = Self::keys_of(con, prefix);
            for chunk in keys.chunks(1000) {
                let mut pipe = redis::pipe();
                for key in chunk {
                    pipe.cmd("DEL").arg(key).ignore();
                }
                pipe.exec(con).expect("DEL");
            }
            deleted += keys.len();
        }
        deleted
    }
}

/// The delta of two command-call maps, by command, largest first.
fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = after
        .iter()
        .map(|(k, &v)| (k.clone(), v.saturating_sub(*before.get(k).unwrap_or(&0))))
        .filter(|(_, d)| *d > 0)
        .collect();
    out.sort_by_key(|b| std::cmp::Reverse(b.1));
    out
}

fn breakdown(d: &[(String, u64)]) -> String {
    if d.is_empty() {
        return "none".into();
    }
    d.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

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

/// One routed request, response dropped; the future is ready at its first poll.
fn routed(svc: &mut Svc, id: &str) {
    let response = block_on(svc.call(session_request(id))).expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "not routed");
    black_box(response);
}

/// Opens `n` sessions on the runtime (a store's create needs its I/O driven).
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

/// `count` opens, `concurrency` at a time, on `rt`; returns the wall time.
fn open_concurrently(
    rt: &tokio::runtime::Runtime,
    svc: &Svc,
    count: usize,
    concurrency: usize,
) -> Duration {
    let next = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
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

fn main() {
    let smoke = match mode("store") {
        Mode::Skip => return,
        Mode::Smoke => true,
        Mode::Bench => false,
    };
    let n = Counts::new(smoke);
    let since = SystemTime::now();
    // The Redis: REDIS_URL (one; `rediss://` with the CA file REDIS_CA), or REDIS_CLUSTER
    // (comma-separated node URLs of a Redis Cluster).
    let cluster: Option<Vec<String>> = std::env::var("REDIS_CLUSTER")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::to_owned).collect());
    let ca = std::env::var("REDIS_CA").ok().filter(|v| !v.is_empty());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let urls = cluster.clone().unwrap_or_else(|| vec![url.clone()]);
    let mut config = match &cluster {
        Some(nodes) => tower_mcp_session::RedisConfig::cluster(nodes.clone()),
        None => tower_mcp_session::RedisConfig::new(url.clone()),
    };
    if let Some(ca) = &ca {
        config = config.ca_file(ca);
    }
    let shown = match &cluster {
        Some(nodes) => format!("a Redis Cluster of {} nodes ({})", nodes.len(), nodes[0]),
        None => url.clone(),
    };
    let admin = Admin::connect(&urls, ca.as_deref());
    let mut admin = match admin {
        Ok(admin) => admin,
        Err(error) if smoke => {
            println!("store bench: Redis at {shown} unreachable ({error}); smoke run skipped");
            return;
        }
        Err(error) => panic!("Redis at {shown} unreachable: {error}"),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("tms-bench:{}-{nanos}:", std::process::id());
    let redis_version = admin.field("server", "redis_version");

    // Two workers, as on a 2-core server: they drive Redis I/O, the refresher and the opens.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();

    let redis_store = || RedisStore::connect(&config, prefix.as_str()).expect("store");
    let redis_bus = || RedisBus::connect_with(&config, prefix.as_str()).expect("bus");
    // The default idle timeout (30 min): criterion's long windows leave sessions unused for
    // seconds. Part 2 builds its own layer with a 4 s idle timeout.
    let base = || mcp_layer(usize::MAX);

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&rt, &mut admin, &n, &base, &redis_store, &redis_bus, since)
    }));
    drop(_enter);
    drop(rt);
    let deleted = admin.cleanup(&prefix);
    let left = admin.keys(&prefix).len();
    println!("cleanup: deleted {deleted} keys under {prefix}, {left} left");
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
        "### Several servers: RedisStore\n\nRedis {redis_version} at {shown} (loopback), {cores} cores ({cpu}), tokio multi-thread runtime with 2 workers.\n\n{body}"
    );
    // STORE_LABEL names the run (`cluster`, `tls`): its summary goes beside the plain one.
    let label = std::env::var("STORE_LABEL")
        .map(|l| format!("-{l}"))
        .unwrap_or_default();
    write_summary(&format!("7-store{label}"), &out);
}

#[allow(clippy::too_many_arguments)]
fn run(
    rt: &tokio::runtime::Runtime,
    admin: &mut Admin,
    n: &Counts,
    base: &dyn Fn() -> SessionLayerBuilder<Factory>,
    redis_store: &dyn Fn() -> RedisStore,
    redis_bus: &dyn Fn() -> RedisBus,
    since: SystemTime,
) -> String {
    let mut rows: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // ---- 1. Routed requests, sessions live on this node.
    let layers: [(&str, SessionLayer<Factory>); 3] = [
        ("none", base().build()),
        (
            "memory",
            base().cluster(Cluster::new(MemoryStore::new())).build(),
        ),
        (
            "redis",
            base()
                .cluster(Cluster::new(redis_store()).bus(redis_bus()))
                .build(),
        ),
    ];
    let mut fixtures: Vec<(&str, Svc, Vec<String>)> = Vec::new();
    for (name, layer) in &layers {
        let svc = layer.layer(Noop);
        let mut ids = open_on(rt, &svc, n.sessions);
        Rng::new(0x5e55_1015).shuffle(&mut ids);
        assert_eq!(layer.sessions().len(), n.sessions);
        fixtures.push((name, svc, ids));
    }
    let cursor = |ids: &[String], start: &mut usize| {
        let i = *start;
        *start = if i + 1 == ids.len() { 0 } else { i + 1 };
        i
    };
    let mut c = criterion();
    {
        let mut group = c.benchmark_group("store_routed");
        group.throughput(Throughput::Elements(1));
        for (name, svc, ids) in &fixtures {
            let mut at = 0usize;
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    let mut svc = svc.clone();
                    let start = Instant::now();
                    for _ in 0..iters {
                        let i = cursor(ids, &mut at);
                        routed(&mut svc, &ids[i]);
                    }
                    start.elapsed()
                })
            });
        }
        group.finish();
    }
    c.final_summary();
    let est = |f: &str| estimate_ns(since, "store_routed", f);
    let [c_none, c_mem, c_redis] = ["none", "memory", "redis"].map(est);

    // Paired pass: the three interleaved, per-round ratios.
    let mut per: [Vec<f64>; 3] = Default::default();
    for round in 0..n.rounds {
        for k in 0..3 {
            // Rotate the order each round so no variant always runs first.
            let v = (k + round) % 3;
            let (_, svc, ids) = &fixtures[v];
            let mut svc = svc.clone();
            let mut at = 0usize;
            let start = Instant::now();
            for _ in 0..n.routed {
                let i = cursor(ids, &mut at);
                routed(&mut svc, &ids[i]);
            }
            per[v].push(start.elapsed().as_nanos() as f64 / n.routed as f64);
        }
    }
    let ratios_rm: Vec<f64> = per[1].iter().zip(&per[2]).map(|(m, r)| m / r).collect();
    let ratios_rn: Vec<f64> = per[0].iter().zip(&per[2]).map(|(b, r)| b / r).collect();
    let (lo, hi) = ratios_rm
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    let rm = median(ratios_rm.clone());
    let [p_none, p_mem, p_redis] = [0, 1, 2].map(|v| median(per[v].clone()));
    rows.push(format!(
        "| routed request, 1k live sessions, 1 thread: no store / MemoryStore / RedisStore+RedisBus (paired median) | {p_none:.0} / {p_mem:.0} / {p_redis:.0} ns ({} / {} / {}) | — | — |",
        per_sec(Some(p_none)),
        per_sec(Some(p_mem)),
        per_sec(Some(p_redis)),
    ));
    rows.push(format!(
        "| the same, criterion | {} / {} / {} | — | — |",
        ns(c_none),
        ns(c_mem),
        ns(c_redis)
    ));
    rows.push(format!(
        "| throughput RedisStore / MemoryStore (median of {} paired rounds; range {lo:.3}–{hi:.3}) | {rm:.3}× (criterion {}) | ≥ 0.95× | {} |",
        n.rounds,
        ratio(c_mem.zip(c_redis).map(|(m, r)| m / r)),
        met(rm >= 0.95),
    ));
    rows.push(format!(
        "| throughput RedisStore / no store (paired median) | {:.3}× | — | — |",
        median(ratios_rn)
    ));

    // ---- 2. Redis commands per routed request, steady traffic.
    drop(fixtures);
    drop(layers);
    let window = Duration::from_secs(n.steady_secs);
    // Idle window: no layer on Redis at all: what other clients send.
    let i0 = admin.command_calls();
    std::thread::sleep(window);
    let i1 = admin.command_calls();
    let idle = delta(&i0, &i1);
    let idle_calls = idle.iter().map(|(_, v)| v).sum::<u64>().saturating_sub(1);
    // Idle timeout 4 s: the refresher runs every second (a quarter of it).
    let steady_layer = base()
        .idle_timeout(Duration::from_secs(4))
        .cluster(Cluster::new(redis_store()).bus(redis_bus()))
        .build();
    let redis_svc = &steady_layer.layer(Noop);
    let mut redis_ids = open_on(rt, redis_svc, n.sessions);
    Rng::new(0x5e55_1015).shuffle(&mut redis_ids);
    let redis_ids = &redis_ids;
    // Let the refresher's first round (the opens) and the bus's subscriptions pass.
    std::thread::sleep(Duration::from_millis(1500));
    // Traffic: `steady` requests in batches, paced over the window.
    let batches = 100usize;
    let per_batch = n.steady.div_ceil(batches);
    let mut svc = redis_svc.clone();
    let mut at = 0usize;
    let c0 = admin.command_calls();
    let start = Instant::now();
    let mut sent = 0usize;
    for b in 0..batches {
        for _ in 0..per_batch.min(n.steady - sent) {
            let i = cursor(redis_ids, &mut at);
            routed(&mut svc, &redis_ids[i]);
            sent += 1;
        }
        let due = window.mul_f64((b + 1) as f64 / batches as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let took = start.elapsed();
    let c1 = admin.command_calls();
    let d = delta(&c0, &c1);
    // The first INFO is counted by the second one.
    let calls = d.iter().map(|(_, v)| v).sum::<u64>().saturating_sub(1);
    let per_req = calls as f64 / sent as f64;
    rows.push(format!(
        "| Redis commands per routed request ({sent} requests over {:.1} s, 1k sessions, refresher every 1 s) | {per_req:.4} ({calls} commands) | ≤ 0.05 | {} |",
        took.as_secs_f64(),
        met(per_req <= 0.05),
    ));
    notes.push(format!(
        "- part 2, commands in the traffic window (first INFO subtracted): {}",
        breakdown(&d)
    ));
    notes.push(format!(
        "- part 2, idle window of {} s before it (no layer on this Redis): {idle_calls} commands from other clients ({})",
        window.as_secs(),
        breakdown(&idle)
    ));
    drop(svc);
    drop(steady_layer);

    // ---- 3. Restore latency.
    let node_a = base()
        .cluster(Cluster::new(redis_store()).bus(redis_bus()))
        .build();
    let svc_a = node_a.layer(Noop);
    let ids = open_on(rt, &svc_a, n.restore);
    let store = redis_store();
    let mut loads = Vec::with_capacity(ids.len());
    for id in &ids {
        let id = SessionId::parse(id).unwrap();
        let start = Instant::now();
        let record = rt.block_on(store.load(&id)).expect("load");
        loads.push(start.elapsed());
        assert!(record.is_some(), "record missing");
    }
    let node_b = base()
        .cluster(Cluster::new(redis_store()).bus(redis_bus()))
        .build();
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
    assert_eq!(node_b.sessions().len(), ids.len());
    // A second request on B is a plain routed one.
    loads.sort();
    restores.sort();
    let (r50, r99, r999, rmax) = (
        pct(&restores, 50.0),
        pct(&restores, 99.0),
        pct(&restores, 99.9),
        pct(&restores, 100.0),
    );
    rows.push(format!(
        "| restore on another node, first request end to end ({} sessions): p50 / p99 (p99.9, max) | {r50:.0} / {r99:.0} µs ({r999:.0}, {rmax:.0} µs) | p99 < 2 ms | {} |",
        ids.len(),
        met(r99 < 2000.0),
    ));
    rows.push(format!(
        "| `RedisStore::load` alone: p50 / p99 (max) | {:.0} / {:.0} µs ({:.0} µs) | — | — |",
        pct(&loads, 50.0),
        pct(&loads, 99.0),
        pct(&loads, 100.0),
    ));
    drop((svc_a, svc_b, node_a, node_b, store));

    // ---- 4. Opens/s, 64 concurrent, 2 workers.
    let variants: [(&str, SessionLayer<Factory>); 3] = [
        ("no store", base().build()),
        (
            "MemoryStore",
            base().cluster(Cluster::new(MemoryStore::new())).build(),
        ),
        (
            "RedisStore+RedisBus",
            base()
                .cluster(Cluster::new(redis_store()).bus(redis_bus()))
                .build(),
        ),
    ];
    let mut rates = Vec::new();
    for (name, layer) in &variants {
        let svc = layer.layer(Noop);
        // A short warm-up (connections made, first allocations).
        open_concurrently(rt, &svc, 200.min(n.opens), 64);
        let took = open_concurrently(rt, &svc, n.opens, 64);
        let rate = n.opens as f64 / took.as_secs_f64();
        rates.push((name, rate, took));
    }
    let line = rates
        .iter()
        .map(|(name, rate, took)| {
            format!("{name} {:.1} k/s ({:.2} s)", rate / 1e3, took.as_secs_f64())
        })
        .collect::<Vec<_>>()
        .join(" / ");
    let redis_rate = rates[2].1;
    rows.push(format!(
        "| opens/s, {} MCP initialize, 64 concurrent, 2 workers: {line} | {:.1} k/s with Redis ({:.2}× MemoryStore) | ≥ 20 k/s | {} |",
        n.opens,
        redis_rate / 1e3,
        redis_rate / rates[1].1,
        met(redis_rate >= 20_000.0),
    ));
    drop(variants);

    // ---- 5. Redis memory per record (store only, no bus).
    let layer = base().cluster(Cluster::new(redis_store())).build();
    let svc = layer.layer(Noop);
    // The bus connections of part 4 close in the background (Redis then frees their
    // subscriptions): wait until `used_memory` settles before and after.
    let before = admin.settled_memory();
    let ids = open_on(rt, &svc, n.records);
    let after = admin.settled_memory();
    let per_record = (after - before) as f64 / n.records as f64;
    let sample: Vec<u64> = ids
        .iter()
        .step_by((ids.len() / 100).max(1))
        .map(|id| {
            let key = format!("{}{{{id}}}", redis_store().prefix());
            admin.memory_usage(&key).unwrap_or(0)
        })
        .collect();
    let mean_usage = sample.iter().sum::<u64>() as f64 / sample.len().max(1) as f64;
    rows.push(format!(
        "| Redis memory per session record ({} records; `used_memory` delta / count) | {per_record:.0} B (`MEMORY USAGE` mean of {} keys: {mean_usage:.0} B) | — | — |",
        n.records,
        sample.len(),
    ));
    drop((svc, layer));

    let mut out = String::from("| figure | measured | target | reading |\n|---|---|---|---|\n");
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    out.push('\n');
    for note in notes {
        out.push_str(&note);
        out.push('\n');
    }
    out
}
