//! Open rate: sessions opened per second through the full service path (a POST `initialize`
//! without a session id: body peek and JSON detection, id minting, trivial factory, the
//! per-session service's answer, the table insert, the id header on the response), on one
//! thread; and its parts, measured alone in the same run:
//!
//! - `request_build`: building the `initialize` request (its body is a static buffer);
//! - `initialize_json_parse`: `serde_json::from_slice::<Value>` of that body, what the
//!   `initialize` detection does;
//! - `id_generator`: the default id generator, `UuidV4` (122 bits from the OS CSPRNG);
//! - `id_generator_parse`: the same plus `SessionId::parse`, as the layer checks each id.
//!
//! `full_path` starts every criterion sample with an empty table (a fresh layer, made and
//! dropped outside the timed region), so the table grows from 0 to the sample's size inside
//! the measurement, as on a server filling up; the sessions are never closed.

mod common;

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use common::*;
use criterion::Throughput;
use http::StatusCode;
use tower::{Layer, Service};
use tower_mcp_session::{MakeSessionId, SessionId, UuidV4};

fn main() {
    let since = SystemTime::now();
    // Inside tokio, as on a server: the layer starts its (never driven) sweeper once per table.
    let runtime = tokio_context();
    let _enter = runtime.enter();

    let mut c = criterion();
    let mut group = c.benchmark_group("open");
    group.throughput(Throughput::Elements(1));
    group.bench_function("full_path", |b| {
        b.iter_custom(|iters| {
            let layer = mcp_layer(usize::MAX).build();
            let mut svc = layer.layer(Noop);
            let start = Instant::now();
            for _ in 0..iters {
                let response = block_on(svc.call(init_request())).expect("infallible");
                debug_assert_eq!(response.status(), StatusCode::OK);
                black_box(response);
            }
            let took = start.elapsed();
            assert_eq!(
                layer.sessions().len() as u64,
                iters,
                "every request opened a session"
            );
            took
        })
    });
    group.bench_function("request_build", |b| b.iter(|| black_box(init_request())));
    group.bench_function("initialize_json_parse", |b| {
        b.iter(|| {
            let value: serde_json::Value =
                serde_json::from_slice(black_box(INIT_BODY.as_bytes())).unwrap();
            black_box(value)
        })
    });
    group.bench_function("id_generator", |b| {
        b.iter(|| black_box(UuidV4.make_session_id()))
    });
    group.bench_function("id_generator_parse", |b| {
        b.iter(|| black_box(SessionId::parse(&UuidV4.make_session_id()).unwrap()))
    });
    group.finish();
    c.final_summary();

    let get = |f: &str| estimate_ns(since, "open", f);
    let [full, build, json, id, id_parse] = [
        "full_path",
        "request_build",
        "initialize_json_parse",
        "id_generator",
        "id_generator_parse",
    ]
    .map(get);
    let mut out = String::from(
        "### 2. Open rate (one thread)\n\n| variant | per open | rate |\n|---|---|---|\n",
    );
    for (name, v) in [
        (
            "full path (initialize → session stored, response dropped)",
            full,
        ),
        ("  of which: building the initialize request", build),
        (
            "  of which: JSON parse of the initialize body (detection)",
            json,
        ),
        ("  of which: id generator `UuidV4`", id),
        ("id generator + `SessionId::parse`", id_parse),
    ] {
        out.push_str(&format!("| {name} | {} | {} |\n", ns(v), per_sec(v)));
    }
    let rate = full.map(|v| 1e9 / v);
    out.push_str(&format!(
        "\n- full path: {} opens/s on one thread = {} the 200 k/s target; the id generator alone is {} of the full path's time\n",
        rate.map_or("n/a".into(), |r| format!("{:.0} k", r / 1e3)),
        ratio(rate.map(|r| r / 200_000.0)),
        id.zip(full)
            .map_or("n/a".into(), |(i, f)| format!("{:.0}%", 100.0 * i / f)),
    ));
    write_summary("2-open", &out);
}
