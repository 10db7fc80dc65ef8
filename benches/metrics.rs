//! What the `metrics` feature costs on the hot path: a request routed to a live session (1k
//! sessions, 1 thread, the no-op per-session service, response dropped), through two layers
//! over the same ids in one run:
//!
//! - `no_recorder`: built with no recorder installed. With the feature off this is the crate
//!   without any metric code; with it on, every hook runs on no-op handles.
//! - `prometheus`: built inside `metrics-exporter-prometheus`'s recorder (installed for the
//!   build only, `metrics::with_local_recorder`): every request increments the routed counter
//!   of a real exporter.
//!
//! Run it twice, with and without the feature (`--features metrics`): within a run the two
//! variants are paired (interleaved rounds, the median of the per-round ratios and their
//! range); across the two runs compare `no_recorder`. `METRICS_ONLY=VARIANT METRICS_ITERS=N`
//! runs one variant N times and nothing else, for callgrind (exact instructions per request).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::*;
use criterion::Criterion;
use http::StatusCode;
use tower::Service;

const SESSIONS: usize = 1_000;
const VARIANTS: [&str; 2] = ["no_recorder", "prometheus"];

struct Fixture {
    services: [Svc; 2],
    ids: Vec<String>,
    /// Keeps the exporter alive for as long as the service records into it.
    _recorder: metrics_exporter_prometheus::PrometheusRecorder,
}

impl Fixture {
    fn new() -> Self {
        let layer = mcp_layer(usize::MAX).build();
        let mut plain = tower::Layer::layer(&layer, Noop);
        let (ids, _) = open_sessions(&mut plain, SESSIONS);
        // The same ids in the second table: an id generator replaying them.
        let replay = std::sync::Arc::new(std::sync::Mutex::new(ids.clone().into_iter()));
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let recorded = metrics::with_local_recorder(&recorder, || {
            mcp_layer(usize::MAX)
                .make_session_id(move || replay.lock().unwrap().next().expect("an id to replay"))
                .build()
        });
        let mut with_recorder = tower::Layer::layer(&recorded, Noop);
        let (replayed, _) = open_sessions(&mut with_recorder, SESSIONS);
        assert_eq!(replayed, ids);
        Self {
            services: [plain, with_recorder],
            ids,
            _recorder: recorder,
        }
    }

    /// `n` routed requests through variant `v`, walking the ids from `*at`.
    fn run(&self, v: usize, n: u64, at: &mut usize) -> Duration {
        let mut svc = self.services[v].clone();
        let start = Instant::now();
        for _ in 0..n {
            let id = &self.ids[*at % self.ids.len()];
            *at += 1;
            let response = block_on(svc.call(session_request(id))).expect("infallible");
            assert_eq!(response.status(), StatusCode::OK);
            black_box(response);
        }
        start.elapsed()
    }
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

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn main() {
    let fx = Fixture::new();
    let feature = if cfg!(feature = "metrics") {
        "on"
    } else {
        "off"
    };
    if let Ok(only) = std::env::var("METRICS_ONLY") {
        let v = VARIANTS.iter().position(|n| *n == only).expect("a variant");
        let mut at = 0;
        fx.run(v, env_u64("METRICS_ITERS", 1_000), &mut at);
        return;
    }

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group(format!("metrics_{feature}/routed_1k"));
    for (v, name) in VARIANTS.iter().enumerate() {
        let mut at = 0;
        group.bench_function(*name, |b| b.iter_custom(|iters| fx.run(v, iters, &mut at)));
    }
    group.finish();

    // Paired pass: rounds of COUNT requests per variant, the order alternating.
    let (rounds, count) = (
        env_u64("METRICS_ROUNDS", 15),
        env_u64("METRICS_COUNT", 200_000),
    );
    let mut at = [0, 0];
    for (v, at) in at.iter_mut().enumerate() {
        fx.run(v, count / 10, at);
    }
    let mut ns = [Vec::new(), Vec::new()];
    let mut ratios = Vec::new();
    for round in 0..rounds as usize {
        let mut row = [0.0; 2];
        for k in 0..2 {
            let v = (round + k) % 2;
            row[v] = fx.run(v, count, &mut at[v]).as_nanos() as f64 / count as f64;
        }
        ns[0].push(row[0]);
        ns[1].push(row[1]);
        ratios.push(row[1] / row[0]);
    }
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "paired, feature {feature}, {rounds} rounds x {count} requests: no_recorder {:.1} ns, \
         prometheus {:.1} ns, prometheus/no_recorder {:.3} (per-round {lo:.3}-{hi:.3})",
        median(ns[0].clone()),
        median(ns[1].clone()),
        median(ratios),
    );
}
