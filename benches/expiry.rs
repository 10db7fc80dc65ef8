//! Expiry at scale: the time `Sessions::sweep` takes to expire 1M idle sessions, and the
//! worst latency a concurrent request to a live session sees while the sweep runs.
//!
//! Each repetition, with the real clock:
//!
//! 1. opens 1M sessions in a table with the default idle timeout (30 minutes, so none
//!    expires) and times one sweep that finds nothing to expire (the periodic cost of a full
//!    table), then drops that table;
//! 2. opens 1M "idle" sessions and 1,000 "active" ones through the full service path in a
//!    table whose idle timeout is 50 ms (settings are frozen when a table is created, so the
//!    timeout cannot be shortened afterwards);
//! 3. starts a thread sending requests round-robin to the active sessions through the service
//!    (each timed with `Instant::now`) and waits 100 ms: every idle session is now expired,
//!    the active ones are kept fresh. The latencies of this window are the "no sweep"
//!    baseline: the noise of the machine itself (preemption) shows here;
//! 4. times `sessions.sweep()` (it removes 1M entries shard by shard, runs the close
//!    bookkeeping and frees them) while the thread keeps going, and records the latencies of
//!    that window.
//!
//! No tokio runtime: the layer's own sweeper task does not start, so only the timed sweep runs.
//!
//! Then, once, the real sweeper: a table of 1M sessions that have expired, on a
//! `current_thread` tokio runtime with a 100 ms sweep interval. The sweeper sweeps one shard
//! at a time and yields between shards; a ticker task on the same runtime yields in a loop
//! and records the longest gap between two of its polls, which is the longest single
//! sweeper step (plus one ticker round). It is printed, not asserted.
//!
//! The request thread counts its context switches per window: voluntary ones are waits on a
//! shard lock held by the sweep (the thread never sleeps otherwise), involuntary ones are
//! preemptions by the OS or yields (a thread spinning on a shard lock yields its core after a
//! few rounds, and on a busy machine another process may then run for a whole time slice).
//! With `BENCH_PRIORITY=rt` (what `scripts/bench.sh` sets when `chrt` is allowed) both measured
//! threads run under the real-time FIFO policy during the two windows (about 0.7 s per
//! repetition), so other processes cannot take their cores and the worst latency shows the
//! layer rather than the scheduler; `BENCH_PRIORITY=nice` uses nice -20 instead.

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tower::{Layer, Service};

const IDLE: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Window {
    lat_ns: Vec<u64>,
    /// Context switches of the request thread in the window: voluntary ones are parks on a
    /// shard lock (it never sleeps otherwise), involuntary ones are yields while spinning on a
    /// lock or preemptions by the OS.
    voluntary: u64,
    involuntary: u64,
}

/// The calling thread's (voluntary, involuntary) context switch counts.
fn ctxt_switches() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

fn tid() -> Option<String> {
    common::thread_id()
}

/// Raises or restores a measured thread's priority (`BENCH_PRIORITY`, see `common`).
fn realtime(tid: &Option<String>, on: bool) -> bool {
    common::prioritize(tid.as_deref(), on)
}

impl Window {
    fn quantile(&self, q: f64) -> f64 {
        if self.lat_ns.is_empty() {
            return f64::NAN;
        }
        let mut v = self.lat_ns.clone();
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i] as f64
    }

    fn max(&self) -> f64 {
        self.lat_ns.iter().copied().max().unwrap_or(0) as f64
    }
}

struct Rep {
    open_secs: f64,
    scan_ms: f64,
    sweep_ms: f64,
    swept: usize,
    baseline: Window,
    during: Window,
    rt: bool,
}

/// Times a sweep of a table of `n` sessions of which none has expired.
fn scan_full_table(n: usize) -> f64 {
    let layer = mcp_layer(usize::MAX).build();
    let sessions = layer.sessions();
    let mut svc = layer.layer(Noop);
    open_sessions(&mut svc, n);
    let t = Instant::now();
    assert_eq!(sessions.sweep(), 0);
    t.elapsed().as_secs_f64() * 1e3
}

fn rep(n: usize, active: usize) -> Rep {
    let scan_ms = scan_full_table(n);
    let layer = mcp_layer(usize::MAX).idle_timeout(IDLE).build();
    let sessions = layer.sessions();
    let mut svc = layer.layer(Noop);
    let (_, took) = open_sessions(&mut svc, n);
    let open_secs = took.as_secs_f64();

    // 0: baseline window, 1: sweeping, 2: stop.
    let phase = AtomicU8::new(0);
    let main_tid = tid();
    let (baseline, during, sweep_ms, swept, rt) = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let my_tid = tid();
            let rt = realtime(&my_tid, true);
            let mut svc = svc.clone();
            // The active sessions open here, after the priority change (which may fork `chrt`
            // from a large process and take longer than the idle timeout), and are then kept
            // fresh by the loop below.
            let (active_ids, _) = open_sessions(&mut svc, active);
            let mut windows = [Window::default(), Window::default()];
            for w in &mut windows {
                w.lat_ns.reserve(4_000_000);
            }
            let mut switches = ctxt_switches();
            let mut seen = 0;
            let mut i = 0;
            let mut last_sent = vec![Instant::now(); active_ids.len()];
            loop {
                let p = phase.load(Ordering::Relaxed);
                if p != seen {
                    // Window boundary: charge the switches so far to the window that ended.
                    let now = ctxt_switches();
                    let w = &mut windows[seen as usize];
                    w.voluntary += now.0 - switches.0;
                    w.involuntary += now.1 - switches.1;
                    switches = now;
                    seen = p;
                }
                if p == 2 {
                    break;
                }
                let id = &active_ids[i];
                let t0 = Instant::now();
                let since = t0.duration_since(last_sent[i]);
                last_sent[i] = t0;
                i = (i + 1) % active_ids.len();
                let response = block_on(svc.call(session_request(id))).expect("infallible");
                let lat = t0.elapsed().as_nanos() as u64;
                assert_eq!(
                    response.status(),
                    StatusCode::OK,
                    "an active session was lost ({since:?} after its previous request, phase {p})"
                );
                drop(response);
                // A request the sweep started during counts for the sweep window.
                let end = phase.load(Ordering::Relaxed);
                windows[p.max(end).min(1) as usize].lat_ns.push(lat);
            }
            if rt {
                realtime(&my_tid, false);
            }
            (windows, rt)
        });
        let rt_main = realtime(&main_tid, true);
        std::thread::sleep(IDLE * 2);
        phase.store(1, Ordering::Relaxed);
        let t = Instant::now();
        let swept = sessions.sweep();
        let sweep_ms = t.elapsed().as_secs_f64() * 1e3;
        phase.store(2, Ordering::Relaxed);
        if rt_main {
            realtime(&main_tid, false);
        }
        let ([baseline, during], rt) = worker.join().expect("lookup thread");
        (baseline, during, sweep_ms, swept, rt && rt_main)
    });
    assert_eq!(sessions.len(), active, "only the active sessions are left");
    Rep {
        open_secs,
        scan_ms,
        sweep_ms,
        swept,
        baseline,
        during,
        rt,
    }
}

/// The real sweeper over `n` expired sessions: returns (longest gap between two polls of a
/// ticker task on the sweeper's `current_thread` runtime, time until the table was empty).
fn sweeper_steps(n: usize) -> (Duration, Duration) {
    let rt = tokio_context();
    let layer = mcp_layer(usize::MAX)
        .idle_timeout(IDLE)
        .sweep_interval(Duration::from_millis(100))
        .build();
    let sessions = layer.sessions();
    let mut svc = layer.layer(Noop);
    {
        // Inside the runtime, so that the first request starts the sweeper; the runtime is
        // not driven yet, so it does not run while the sessions open.
        let _guard = rt.enter();
        open_sessions(&mut svc, n);
    }
    std::thread::sleep(IDLE * 2);
    assert_eq!(sessions.len(), n, "nothing swept before the runtime runs");
    rt.block_on(async {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = tokio::spawn({
            let stop = std::sync::Arc::clone(&stop);
            async move {
                let mut worst = Duration::ZERO;
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    tokio::task::yield_now().await;
                    let now = Instant::now();
                    worst = worst.max(now - last);
                    last = now;
                }
                worst
            }
        });
        let start = Instant::now();
        while !sessions.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        (ticker.await.expect("ticker"), took)
    })
}

fn main() {
    let mode = common::mode("expiry");
    if mode == common::Mode::Skip {
        return;
    }
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let smoke = mode == common::Mode::Smoke;
    let n = env("EXPIRY_SESSIONS", if smoke { 10_000 } else { 1_000_000 });
    let reps = env("EXPIRY_REPS", if smoke { 1 } else { 3 });
    let active = 1_000;

    let mut out = format!(
        "### 4. Expiry at scale ({n} idle sessions + {active} active, {reps} repetitions)\n\n\
         | rep | priority | open {n} (s) | sweep, nothing expired (ms) | sweep expiring {n} (ms) | requests during sweep | max latency during sweep (µs) | p99.9 (µs) | parks / yields+preemptions during sweep | max latency, no-sweep window (µs) | p99.9 (µs) | parks / yields+preemptions, no-sweep |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut all = Vec::new();
    for r in 0..reps {
        let x = rep(n, active);
        assert_eq!(x.swept, n, "every idle session expired");
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.1} | {:.1} | {} | {:.0} | {:.1} | {} / {} | {:.0} | {:.1} | {} / {} |\n",
            r + 1,
            if x.rt { common::priority_label() } else { "normal" },
            x.open_secs,
            x.scan_ms,
            x.sweep_ms,
            x.during.lat_ns.len(),
            x.during.max() / 1e3,
            x.during.quantile(0.999) / 1e3,
            x.during.voluntary,
            x.during.involuntary,
            x.baseline.max() / 1e3,
            x.baseline.quantile(0.999) / 1e3,
            x.baseline.voluntary,
            x.baseline.involuntary,
        ));
        eprintln!(
            "rep {}: sweep {:.1} ms, max latency during {:.0} µs (no-sweep window {:.0} µs), parks {} yields+preemptions {}",
            r + 1,
            x.sweep_ms,
            x.during.max() / 1e3,
            x.baseline.max() / 1e3,
            x.during.voluntary,
            x.during.involuntary,
        );
        all.push(x);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let sweep = median(all.iter().map(|x| x.sweep_ms).collect());
    let scan = median(all.iter().map(|x| x.scan_ms).collect());
    let worst = median(all.iter().map(|x| x.during.max()).collect()) / 1e3;
    let noise = median(all.iter().map(|x| x.baseline.max()).collect()) / 1e3;
    let p999 = median(all.iter().map(|x| x.during.quantile(0.999)).collect()) / 1e3;
    let opens = median(all.iter().map(|x| n as f64 / x.open_secs).collect());
    out.push_str(&format!(
        "\n- sweep of {n} expired sessions: median {sweep:.0} ms = {} the 500 ms target; a sweep of the same full table that expires nothing: {scan:.0} ms\n\
         - worst request latency during the sweep: median over reps {worst:.0} µs = {} the 1 ms target (p99.9 {p999:.1} µs); the same thread's worst latency in the no-sweep window: {noise:.0} µs\n\
         - opening {n} sessions through the service: median {:.0} k opens/s\n",
        ratio(Some(sweep / 500.0)),
        ratio(Some(worst / 1000.0)),
        opens / 1e3,
    ));
    let (worst_step, emptied) = sweeper_steps(n);
    eprintln!(
        "real sweeper over {n} expired sessions: longest single step {:.0} µs, table empty after {:.0} ms",
        worst_step.as_secs_f64() * 1e6,
        emptied.as_secs_f64() * 1e3,
    );
    out.push_str(&format!(
        "- the real sweeper (one shard per step, yielding between shards) over {n} expired sessions on a current-thread runtime: longest gap a ticker task on that runtime saw between two polls {:.0} µs; table empty {:.0} ms after the runtime started\n",
        worst_step.as_secs_f64() * 1e6,
        emptied.as_secs_f64() * 1e3,
    ));
    write_summary("4-expiry", &out);
}
