//! Lookup hot path: a request carrying a live session id, through `SessionService`, to a
//! no-op per-session service; against bare-structure baselines, in the same run, with the same
//! keys and the same access pattern.
//!
//! Variants, each at 1k, 100k and 1M live sessions, on 1 and on 2 threads:
//!
//! - `request`: building the request (session id copied into a fresh header value, protocol
//!   version header) and dropping it. Part of every real request; subtract it from `full`.
//! - `full`: `request` + `SessionService::call` (header checks, table lookup, in-flight
//!   count, per-session service clone, `Session` into the extensions) + the no-op
//!   service + dropping the response (which ends the in-flight count).
//! - `full_no_ext`: `full` through a layer with a table of its own holding the same ids,
//!   built with `.session_extension(false)`: what the opt-out of the `Session`
//!   extension saves per request.
//! - `minimal_router`: `request` + the least a session middleware over a DashMap (the floor's,
//!   below) can do: read the header, `get` + clone the handle, call the no-op service with the
//!   request, drop the response. No MCP rules, id validation, in-flight count, expiry or
//!   `SessionInfo`.
//! - `tokio_router`: `request` + the same minimal middleware over the tokio-RwLock map below:
//!   the per-request work of the official SDK's design, at the same request level as `full`.
//! - `floor_dashmap`: a bare `DashMap<Arc<str>, Arc<Handle>>` (foldhash, 256 shards, as the
//!   layer's table) `get` + clone of the stored handle.
//! - `floor_serial`: the floor with each lookup waiting for the previous one (the next index
//!   depends on the loaded slot). The plain floor overlaps the cache misses of consecutive
//!   lookups, which no real server does (a request's work separates two lookups): at 1M
//!   sessions this is the fair floor for the full path.
//! - `std_rwlock`: `std::sync::RwLock<HashMap<Arc<str>, Arc<Handle>>>` read, `get`, clone.
//! - `tokio_rwlock`: `tokio::sync::RwLock<HashMap<Arc<str>, Arc<Handle>>>` read, `get`,
//!   clone: the structure of rmcp's `LocalSessionManager` (its `session_handle`).
//! - `tokio_rwlock_rmcp`: what rmcp's streamable HTTP server does per request with it:
//!   `has_session` (read lock, `contains_key`) then `session_handle` (read lock, `get`, clone).
//!
//! The ids are real ones, opened through the service with `initialize`; the baselines hold the
//! same ids. Each thread walks one fixed pseudo-random permutation of the ids (thread 2 starts
//! half-way), continuing where the previous sample stopped, so at 1M sessions most lookups miss
//! the caches, as they would on a real server. The 2-thread variants split the iterations over
//! two OS threads and time the wall clock; criterion's throughput is then requests/s.
//!
//! After criterion, a paired pass runs every variant for a fixed count, interleaved, for several
//! rounds, and reports the median of the per-round ratios: on a shared machine whose load drifts
//! during the run, those ratios are steadier than ratios of separate criterion runs.
//!
//! With `BENCH_PRIORITY=rt` (or `nice`) the paired pass runs at raised priority, so that other
//! work on a shared machine cannot take the cores in the middle of a 2-thread measurement.
//! `LOOKUP_PAIRED_ONLY=1` skips criterion and runs only the paired pass (a quick ratio check).
//! `LOOKUP_ONLY=VARIANT` (with `LOOKUP_SIZES=N`, `LOOKUP_ITERS=COUNT`) skips criterion and runs
//! one variant COUNT times on one thread, for profilers: `valgrind --tool=callgrind
//! --toggle-collect='lookup::run_variant*'` then gives exact instructions per request.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use criterion::{Criterion, Throughput};
use dashmap::DashMap;
use http::StatusCode;
use tower::{Service, ServiceExt};
use tower_mcp_session::guard::{OriginGuard, OriginGuardLayer};

type Floor = DashMap<Arc<str>, Arc<Handle>, foldhash::fast::RandomState>;
type StdMap = std::sync::RwLock<HashMap<Arc<str>, Arc<Handle>>>;
type TokioMap = tokio::sync::RwLock<HashMap<Arc<str>, Arc<Handle>>>;

struct Fixture {
    svc: Svc,
    /// `svc` behind the crate's Origin guard (loopback).
    guarded: OriginGuard<Svc>,
    /// A layer with `.session_extension(false)` and a table holding the same ids.
    svc_no_ext: Svc,
    /// The ids in access order (a fixed random permutation), each its own allocation laid out
    /// in that order: the header bytes a server just parsed are hot in cache, the table is not.
    order: Vec<Box<str>>,
    floor: Floor,
    std_map: StdMap,
    tokio_map: TokioMap,
    /// Where each thread continues its walk.
    cursors: [AtomicUsize; 2],
}

impl Fixture {
    fn new(n: usize) -> (Self, Duration) {
        let layer = mcp_layer(usize::MAX).build();
        let mut svc = tower::Layer::layer(&layer, Noop);
        let (ids, took) = open_sessions(&mut svc, n);
        assert_eq!(layer.sessions().len(), n);
        // Settings are frozen per table: the opt-out needs a table of its own. It is filled
        // with the very same ids (an id generator replaying them), so both services are walked
        // in the same order over equal tables.
        let replay = std::sync::Arc::new(std::sync::Mutex::new(ids.clone().into_iter()));
        let no_ext = mcp_layer(usize::MAX)
            .session_extension(false)
            .make_session_id(move || replay.lock().unwrap().next().expect("an id to replay"))
            .build();
        let mut svc_no_ext = tower::Layer::layer(&no_ext, Noop);
        let (replayed, _) = open_sessions(&mut svc_no_ext, n);
        assert_eq!(replayed, ids);
        assert_eq!(no_ext.sessions().len(), n);

        let handle = |id: &str| Handle::new(id).1;
        let floor = Floor::with_hasher_and_shard_amount(Default::default(), 256);
        let mut std_map = HashMap::new();
        let mut tokio_map = HashMap::new();
        for id in &ids {
            floor.insert(Arc::from(id.as_str()), handle(id));
            std_map.insert(Arc::from(id.as_str()), handle(id));
            tokio_map.insert(Arc::from(id.as_str()), handle(id));
        }

        let mut order: Vec<&str> = ids.iter().map(String::as_str).collect();
        Rng::new(0x5e55_1015).shuffle(&mut order);
        let order = order.into_iter().map(Box::from).collect();
        let fixture = Self {
            guarded: tower::Layer::layer(&OriginGuardLayer::loopback(), svc.clone()),
            svc,
            svc_no_ext,
            order,
            floor,
            std_map: StdMap::new(std_map),
            tokio_map: TokioMap::new(tokio_map),
            cursors: [AtomicUsize::new(0), AtomicUsize::new(n / 2)],
        };
        (fixture, took)
    }

    /// Runs `op` `iters` times split over `threads` threads, each with its own clone of
    /// `base`; returns the wall time.
    fn drive<T, F>(&self, base: &T, threads: usize, iters: u64, op: &F) -> Duration
    where
        T: Clone + Send,
        F: Fn(&mut T, &str) -> usize + Sync,
    {
        let n = self.order.len();
        let walk = |t: usize, count: u64, svc: &mut T| {
            let mut i = self.cursors[t].load(Ordering::Relaxed);
            for _ in 0..count {
                // `op` returns 0; only `floor_serial` makes the next index depend on its result.
                i += 1 + op(svc, &self.order[i]);
                if i >= n {
                    i -= n;
                }
            }
            self.cursors[t].store(i, Ordering::Relaxed);
        };
        if threads == 1 {
            let mut svc = base.clone();
            let start = Instant::now();
            walk(0, iters, &mut svc);
            return start.elapsed();
        }
        let barrier = Barrier::new(threads + 1);
        let per_thread = iters / threads as u64;
        let start = std::thread::scope(|s| {
            for t in 0..threads {
                let count = per_thread + if t == 0 { iters % threads as u64 } else { 0 };
                let barrier = &barrier;
                let walk = &walk;
                let mut svc = base.clone();
                s.spawn(move || {
                    barrier.wait();
                    walk(t, count, &mut svc);
                });
            }
            barrier.wait();
            Instant::now()
        });
        start.elapsed()
    }
}

/// The variants, in the order they run and are reported.
const VARIANTS: [&str; 12] = [
    "request",
    "full",
    "full_host",
    "full_guarded",
    "full_no_ext",
    "minimal_router",
    "tokio_router",
    "floor_dashmap",
    "floor_serial",
    "std_rwlock",
    "tokio_rwlock",
    "tokio_rwlock_rmcp",
];

/// One request of a live session, with a `Host` header (what the guard reads), through the
/// service or the guarded service (`full_host`, `full_guarded`), response dropped.
fn hosted_request<S, B>(svc: &mut S, id: &str) -> usize
where
    S: Service<http::Request<http_body_util::Empty<bytes::Bytes>>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut req = session_request(id);
    req.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("127.0.0.1:3000"),
    );
    let response = block_on(svc.call(req)).expect("infallible");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "not routed to the session"
    );
    black_box(response);
    0
}

/// One request of a live session through the service, response dropped (`full`, `full_no_ext`).
fn full_request(svc: &mut Svc, id: &str) -> usize {
    let response = block_on(svc.call(session_request(id))).expect("infallible");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "not routed to the session"
    );
    black_box(response);
    0
}

fn run_variant(fx: &Fixture, name: &str, threads: usize, iters: u64) -> Duration {
    match name {
        "request" => fx.drive(&fx.svc, threads, iters, &|_svc: &mut Svc,
                                                         id: &str|
         -> usize {
            black_box(session_request(id));
            0
        }),
        "full" => fx.drive(&fx.svc, threads, iters, &full_request),
        "full_no_ext" => fx.drive(&fx.svc_no_ext, threads, iters, &full_request),
        "full_host" => fx.drive(&fx.svc, threads, iters, &hosted_request::<Svc, _>),
        "full_guarded" => fx.drive(
            &fx.guarded,
            threads,
            iters,
            &hosted_request::<OriginGuard<Svc>, _>,
        ),
        "minimal_router" => fx.drive(&fx.svc, threads, iters, &|_svc: &mut Svc,
                                                                id: &str|
         -> usize {
            let req = session_request(id);
            let handle = fx.floor.get(header_id(&req)).map(|e| Arc::clone(e.value()));
            serve(handle, req)
        }),
        "tokio_router" => fx.drive(&fx.svc, threads, iters, &|_svc: &mut Svc,
                                                              id: &str|
         -> usize {
            let req = session_request(id);
            let handle = block_on(fx.tokio_map.read()).get(header_id(&req)).cloned();
            serve(handle, req)
        }),
        "floor_dashmap" => fx.drive(&fx.svc, threads, iters, &|_svc: &mut Svc,
                                                               id: &str|
         -> usize {
            let handle = fx.floor.get(id).map(|e| Arc::clone(e.value()));
            black_box(handle.expect("live id"));
            0
        }),
        "floor_serial" => fx.drive(&fx.svc, threads, iters, &|_svc: &mut Svc,
                                                              id: &str|
         -> usize {
            let handle = fx
                .floor
                .get(id)
                .map(|e| Arc::clone(e.value()))
                .expect("live id");
            // Always 0 (user-space pointers are below 2^47), but the CPU cannot know it before
            // the slot is loaded: the next lookup waits for this one, as in a real server where
            // a lot of other work separates two lookups.
            (Arc::as_ptr(&handle) as usize) >> 63
        }),
        "std_rwlock" => fx.drive(&fx.svc, threads, iters, &|_svc: &mut Svc,
                                                            id: &str|
         -> usize {
            let handle = fx.std_map.read().unwrap().get(id).cloned();
            black_box(handle.expect("live id"));
            0
        }),
        "tokio_rwlock" => fx.drive(&fx.svc, threads, iters, &|_svc: &mut Svc,
                                                              id: &str|
         -> usize {
            let handle = block_on(fx.tokio_map.read()).get(id).cloned();
            black_box(handle.expect("live id"));
            0
        }),
        "tokio_rwlock_rmcp" => fx.drive(&fx.svc, threads, iters, &|_svc: &mut Svc,
                                                                   id: &str|
         -> usize {
            assert!(block_on(fx.tokio_map.read()).contains_key(id));
            let handle = block_on(fx.tokio_map.read()).get(id).cloned();
            black_box(handle.expect("live id"));
            0
        }),
        _ => unreachable!(),
    }
}

fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds per request of each variant, from the paired pass: `rounds` rounds, each
/// running every variant `count` times, the order rotating from round to round.
fn paired(fx: &Fixture, threads: usize, rounds: usize, count: u64) -> Vec<[f64; VARIANTS.len()]> {
    // One untimed round to warm caches and the branch predictors of every variant.
    for name in VARIANTS {
        run_variant(fx, name, threads, count / 10);
    }
    (0..rounds)
        .map(|round| {
            let mut row = [0.0; VARIANTS.len()];
            for k in 0..VARIANTS.len() {
                let v = (round + k) % VARIANTS.len();
                let took = run_variant(fx, VARIANTS[v], threads, count);
                row[v] = took.as_nanos() as f64 / count as f64;
            }
            row
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What the minimal routers do once they found the handle: call its service, check the answer.
fn serve(
    handle: Option<Arc<Handle>>,
    req: http::Request<http_body_util::Empty<bytes::Bytes>>,
) -> usize {
    let service = handle.expect("live id").service;
    let response = block_on(service.oneshot(req)).expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    black_box(response);
    0
}

fn main() {
    let since = SystemTime::now();
    // A real server runs inside tokio: the layer starts its sweeper once and then only checks
    // a flag. The runtime is never driven, so the sweeper never runs during the bench.
    let runtime = tokio_context();
    let _enter = runtime.enter();

    let sizes: Vec<usize> = std::env::var("LOOKUP_SIZES")
        .ok()
        .map(|s| s.split(',').map(|v| v.trim().parse().unwrap()).collect())
        .unwrap_or_else(|| {
            if measuring() {
                vec![1_000, 100_000, 1_000_000]
            } else {
                vec![1_000]
            }
        });

    if let Ok(only) = std::env::var("LOOKUP_ONLY") {
        let iters = env_usize("LOOKUP_ITERS", 100_000) as u64;
        for &n in &sizes {
            let (fx, _) = Fixture::new(n);
            // Warm up outside the profiled function's first call, then the profiled run.
            run_variant(&fx, &only, 1, iters / 10);
            let took = run_variant(&fx, &only, 1, iters);
            println!(
                "{only} at {}: {:.1} ns/request over {iters} requests",
                label(n),
                took.as_nanos() as f64 / iters as f64
            );
        }
        return;
    }

    let rounds = env_usize("LOOKUP_ROUNDS", 9);
    let count = env_usize("LOOKUP_PAIRED_COUNT", 100_000) as u64;
    let paired_only = std::env::var("LOOKUP_PAIRED_ONLY").as_deref() == Ok("1");
    let mut c: Criterion = criterion();
    let mut populate = Vec::new();
    let mut pairs = Vec::new();
    for &n in &sizes {
        let (fx, took) = Fixture::new(n);
        populate.push((n, took));
        for threads in [1, 2] {
            if paired_only {
                break;
            }
            let mut group = c.benchmark_group(format!("lookup_{threads}t_{}", label(n)));
            group.throughput(Throughput::Elements(1));
            for name in VARIANTS {
                group.bench_function(name, |b| {
                    b.iter_custom(|iters| run_variant(&fx, name, threads, iters))
                });
            }
            group.finish();
        }
        if measuring() && rounds > 0 {
            // Raised priority (`BENCH_PRIORITY`) only for the short paired pass; the threads it
            // spawns inherit it.
            let tid = thread_id();
            let raised = prioritize(tid.as_deref(), true);
            for threads in [1, 2] {
                pairs.push((n, threads, paired(&fx, threads, rounds, count)));
            }
            if raised {
                prioritize(tid.as_deref(), false);
            }
        }
    }
    c.final_summary();
    summarize(since, &sizes, &populate, &pairs, rounds, count);
}

fn idx(name: &str) -> usize {
    VARIANTS.iter().position(|v| *v == name).expect("variant")
}

type Pairs = [(usize, usize, Vec<[f64; VARIANTS.len()]>)];

fn summarize(
    since: SystemTime,
    sizes: &[usize],
    populate: &[(usize, Duration)],
    pairs: &Pairs,
    rounds: usize,
    count: u64,
) {
    let mut out = String::new();
    out.push_str("### 1. Lookup hot path\n\n");
    out.push_str(
        "Criterion's estimate per request (on 2 threads: wall time per request, both threads \
         together, so requests/s = 1e9 / ns), and requests/s in parentheses.\n\n",
    );
    out.push_str(
        "| sessions | threads | request build | full path | full − build | full path, no SessionInfo extension | minimal router (DashMap) | tokio-RwLock router | floor: DashMap get+clone | floor, serialized | std RwLock | tokio RwLock | tokio RwLock ×2 (rmcp) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for &n in sizes {
        for threads in [1, 2] {
            let group = format!("lookup_{threads}t_{}", label(n));
            let v = VARIANTS.map(|name| estimate_ns(since, &group, name));
            let net = v[idx("full")].zip(v[idx("request")]).map(|(f, r)| f - r);
            let cell = |x: Option<f64>| format!("{} ({})", ns(x), per_sec(x));
            out.push_str(&format!(
                "| {} | {threads} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                label(n),
                cell(v[idx("request")]),
                cell(v[idx("full")]),
                ns(net),
                cell(v[idx("full_no_ext")]),
                cell(v[idx("minimal_router")]),
                cell(v[idx("tokio_router")]),
                cell(v[idx("floor_dashmap")]),
                cell(v[idx("floor_serial")]),
                cell(v[idx("std_rwlock")]),
                cell(v[idx("tokio_rwlock")]),
                cell(v[idx("tokio_rwlock_rmcp")]),
            ));
        }
    }

    if !pairs.is_empty() {
        out.push_str(&format!(
            "\nRatios, paired pass: every variant run {count} times per round, interleaved, \
             {rounds} rounds, threads at {} priority; each figure is the median of the per-round \
             ratios. \"vs X\" is the full path's throughput over X's (higher is better for the \
             layer).\n\n\
             | sessions | threads | (full − build) / floor | (full − build) / serialized floor | full / floor | full / minimal router | vs tokio-RwLock router | vs tokio RwLock | (full − build) vs tokio RwLock | vs rmcp pattern | vs std RwLock | no extension: full / full | no extension: (full − build) / (full − build) | no extension: full / minimal router | no extension: vs tokio-RwLock router | full path (median ns) | no extension (median ns) | request build (median ns) | floor (median ns) | serialized floor (median ns) | tokio RwLock (median ns) |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
            priority_label(),
        ));
        let mut readings = String::new();
        let mut guard = String::from(
            "\nThe Origin guard (`guard::OriginGuardLayer::loopback()`) in front of the full path, \
             the same requests with a `Host: 127.0.0.1:3000` header; paired medians.\n\n\
             | sessions | threads | full path with Host (ns) | guarded (ns) | the guard's cost |\n\
             |---|---|---|---|---|\n",
        );
        for (n, threads, rows) in pairs {
            let r =
                |f: &dyn Fn(&[f64; VARIANTS.len()]) -> f64| median(rows.iter().map(f).collect());
            let (full, req, floor, router) = (
                idx("full"),
                idx("request"),
                idx("floor_dashmap"),
                idx("minimal_router"),
            );
            let (tokio, rmcp, std_rw) = (
                idx("tokio_rwlock"),
                idx("tokio_rwlock_rmcp"),
                idx("std_rwlock"),
            );
            let net_floor = r(&|x| (x[full] - x[req]) / x[floor]);
            let serial = idx("floor_serial");
            let net_serial = r(&|x| (x[full] - x[req]) / x[serial]);
            let full_floor = r(&|x| x[full] / x[floor]);
            let full_router = r(&|x| x[full] / x[router]);
            let vs_tokio_router = r(&|x| x[idx("tokio_router")] / x[full]);
            let vs_tokio = r(&|x| x[tokio] / x[full]);
            let net_vs_tokio = r(&|x| x[tokio] / (x[full] - x[req]));
            let vs_rmcp = r(&|x| x[rmcp] / x[full]);
            let vs_std = r(&|x| x[std_rw] / x[full]);
            let no_ext = idx("full_no_ext");
            let ne_full = r(&|x| x[no_ext] / x[full]);
            let ne_net = r(&|x| (x[no_ext] - x[req]) / (x[full] - x[req]));
            let ne_router = r(&|x| x[no_ext] / x[router]);
            let ne_vs_tokio_router = r(&|x| x[idx("tokio_router")] / x[no_ext]);
            out.push_str(&format!(
                "| {} | {threads} | {net_floor:.2}× | {net_serial:.2}× | {full_floor:.2}× | {full_router:.2}× | {vs_tokio_router:.2}× | {vs_tokio:.2}× | {net_vs_tokio:.2}× | {vs_rmcp:.2}× | {vs_std:.2}× | {ne_full:.3}× | {ne_net:.3}× | {ne_router:.2}× | {ne_vs_tokio_router:.2}× | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
                label(*n),
                r(&|x| x[full]),
                r(&|x| x[no_ext]),
                r(&|x| x[req]),
                r(&|x| x[floor]),
                r(&|x| x[serial]),
                r(&|x| x[tokio]),
            ));
            let guard_cost = r(&|x| x[idx("full_guarded")] / x[idx("full_host")]);
            guard.push_str(&format!(
                "| {} | {threads} | {:.0} | {:.0} | {:+.1}% |\n",
                label(*n),
                r(&|x| x[idx("full_host")]),
                r(&|x| x[idx("full_guarded")]),
                100.0 * (guard_cost - 1.0),
            ));
            readings.push_str(&format!(
                "- {} sessions, {threads} thread{}: the layer's own cost (full − build) is {net_floor:.1}× the floor, \
                 {net_serial:.1}× the serialized floor (target ≤ 1.5×: {}); the full path takes {full_router:.2}× the time of a minimal DashMap router; \
                 its throughput is {vs_tokio_router:.2}× a tokio-RwLock router's (same request work), \
                 {vs_tokio:.2}× the bare tokio-RwLock lookup's ({net_vs_tokio:.2}× without the request build; \
                 {vs_rmcp:.2}× rmcp's two-lock pattern){}; without the `SessionInfo` extension the full path takes \
                 {ne_full:.3}× the time ({:+.1}%), the layer's own cost {ne_net:.3}× ({:+.1}%), {ne_router:.2}× a minimal DashMap router\n",
                label(*n),
                if *threads == 1 { "" } else { "s" },
                if net_floor <= 1.5 {
                    "met".to_string()
                } else {
                    format!("missed by {:.1}× against the floor, {:.1}× against the serialized one", net_floor / 1.5, net_serial / 1.5)
                },
                if *n >= 1_000_000 && *threads == 2 {
                    format!(
                        " (target ≥ 2× the tokio-RwLock design: {} against the router, {} against the bare lookup)",
                        if vs_tokio_router >= 2.0 { "met".to_string() } else { format!("missed, {:.0}% of it", 100.0 * vs_tokio_router / 2.0) },
                        if vs_tokio >= 2.0 { "met".to_string() } else { format!("missed, {:.0}% of it", 100.0 * vs_tokio / 2.0) }
                    )
                } else {
                    String::new()
                },
                100.0 * (ne_full - 1.0),
                100.0 * (ne_net - 1.0),
            ));
        }
        out.push('\n');
        out.push_str(&readings);
        out.push_str(&guard);
    }
    out.push('\n');
    for (n, took) in populate {
        out.push_str(&format!(
            "- populating: {} sessions opened through the service (initialize) in {:.2} s = {:.0} k opens/s\n",
            label(*n),
            took.as_secs_f64(),
            *n as f64 / took.as_secs_f64() / 1e3
        ));
    }
    write_summary("1-lookup", &out);
}
