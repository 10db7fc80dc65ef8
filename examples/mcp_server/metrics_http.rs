//! `--metrics-bind ADDR`: the layer's metrics (crate feature `metrics`) as Prometheus text at
//! `http://ADDR/metrics`, through `metrics-exporter-prometheus`.
//!
//! The recorder is made and installed *before* the session layer is built: the layer
//! registers its series with the recorder installed at build time (see the crate's `metrics`
//! module). Durations get histogram buckets (seconds) instead of the exporter's default
//! summaries, so that quantiles can be aggregated across nodes in PromQL.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Bucket bounds (seconds) of every `*duration` histogram: store operations in the
/// milliseconds, restores up to the replay timeout, sessions up to a day.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 60.0, 600.0, 86_400.0,
];

/// A Prometheus recorder with the example's buckets, not installed.
pub fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration".into()), &DURATION_BUCKETS)
        .expect("the bucket list is not empty")
        .build_recorder()
}

/// Installs [`recorder`] as the process's global recorder; its handle renders the text.
pub fn install() -> PrometheusHandle {
    let recorder = recorder();
    let handle = recorder.handle();
    if ::metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("a metrics recorder was installed already; /metrics shows this one's");
    }
    handle
}

/// The router serving `GET /metrics` from `handle`.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}

/// Serves [`router`] on `addr` in the background, and runs the exporter's upkeep (it trims
/// histogram samples) every 5 s.
pub async fn serve(addr: SocketAddr, handle: PrometheusHandle) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = router(handle);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the metrics listener failed");
        }
    });
    tracing::info!("Prometheus metrics on http://{bound}/metrics");
    Ok(bound)
}
