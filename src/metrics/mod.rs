//! The layer's metrics: the series it records through the [`metrics`](https://docs.rs/metrics)
//! facade (0.24) with the cargo feature `metrics`, and their names.
//!
//! Install a recorder (Prometheus: `metrics-exporter-prometheus`; OpenTelemetry:
//! `metrics-exporter-opentelemetry`; StatsD: `metrics-exporter-statsd`) **before** building the
//! layer: [`SessionLayerBuilder::build`](crate::SessionLayerBuilder::build) (and the client
//! layer's constructor) registers every series once, with the recorder installed at that
//! moment, and records through those handles from then on (no key is built, looked up or
//! allocated per request). A layer built before any recorder was installed records nothing.
//! Every label combination is registered at build, so a scrape lists each series from the
//! start, at 0.
//!
//! Names follow OpenTelemetry's conventions: dot-separated (a Prometheus exporter turns the
//! dots into underscores: `tower_mcp_session_sessions_live`), durations in seconds, the one
//! series the MCP semantic conventions define under its own name
//! (`mcp.server.session.duration`), the layer's own under the prefix `tower_mcp_session.`.
//! Labels are closed sets of static strings: none carries a session id, a principal, a client
//! key or any other unbounded value (after 10,000 sessions a scrape lists exactly the series it
//! listed before the first: `tests/metrics.rs`).
//!
//! Without the feature none of this is compiled in: the hooks are empty inline functions.
//!
//! | name | kind | unit | labels | when it changes |
//! |---|---|---|---|---|
//! | `mcp.server.session.duration` | histogram | s | `mcp.protocol.version`: `2024-11-05`, `2025-03-26`, `2025-06-18`, `2025-11-25`, `other`, `unknown` | a session leaves this node's table (any [`CloseReason`](crate::CloseReason)): its age, from its creation (on whichever node opened it) to now; the version is the `protocolVersion` its `initialize` asked for |
//! | `tower_mcp_session.sessions.live` | gauge | {session} | | +1 when a session is stored (opened or restored), −1 when it leaves the table |
//! | `tower_mcp_session.sessions.limit` | gauge | {session} | | at build, and at [`Sessions::set_max_sessions`](crate::Sessions::set_max_sessions) |
//! | `tower_mcp_session.sessions.opened` | counter | {attempt} | `outcome`: `opened`, `evicted` (opened, after evicting another session), `table_full` (503), `refused` (per-principal/per-client limit 429, or shut down), `factory_failed` (500), `store_unavailable` (503), `declined` (the service answered without success; nothing stored) | an open attempt that passed the open policy and the body checks ends; sessions opened = `opened` + `evicted` |
//! | `tower_mcp_session.sessions.closed` | counter | {session} | `reason`: [`CloseReason::as_str`](crate::CloseReason::as_str) (`deleted`, `expired`, `lifetime_ended`, `evicted`, `closed`, `shutdown`) | a session leaves this node's table |
//! | `tower_mcp_session.rejections` | counter | {request} | `kind` (one per [`Rejection`](crate::Rejection) variant, snake case: `missing_session_id`, `session_not_found`, `too_many_sessions`, …) and `http.response.status_code` (its default status: `400`, `404`, `405`, `408`, `413`, `429`, `500`, `503`) | the layer answers a request itself (a [rejection hook](crate::SessionLayerBuilder::rejection) may change the status sent; the label keeps the default's) |
//! | `tower_mcp_session.requests.routed` | counter | {request} | | a request is routed to a session's service (live here, or just restored) |
//! | `tower_mcp_session.requests.sessionless` | counter | {request} | | a request goes to the inner service without a session |
//! | `tower_mcp_session.requests.in_flight` | gauge | {request} | | +1 when a session's request first has to wait (its service or body returned `Pending`, or it opened or restored the session), −1 when it finishes; a request answered in the poll that started it is never counted (the hot path stays one counter increment) |
//! | `tower_mcp_session.streams.open` | gauge | {stream} | | +1 when a session's response body of unknown length (an SSE stream) first waits for data, −1 when it ends (closing the session ends it) |
//! | `tower_mcp_session.peek.held` | gauge | By | | bytes the bodies of opening requests that wait for more data hold, against the budget |
//! | `tower_mcp_session.peek.budget` | gauge | By | | at build: [`peek_budget`](crate::SessionLayerBuilder::peek_budget) |
//! | `tower_mcp_session.restores` | counter | {restore} | `outcome`: `restored`, `not_found`, `store_unavailable`, `replay_failed`, `factory_failed`, `refused` (another principal's, or no place), `too_many` (256 in flight), `shutting_down` | with a [cluster](crate::Cluster): a restore ends (requests that waited for another's restore of the same id are not counted again) |
//! | `tower_mcp_session.restore.duration` | histogram | s | | a restore counted in `tower_mcp_session.restores` ends: from its start (after waiting its turn behind another request's restore of the same id) to the session stored, or the failure |
//! | `tower_mcp_session.store.operation.duration` | histogram | s | `operation`: `create`, `load`, `touch`, `delete`, `delete_if_unused`, `data_get`, `data_insert`, `data_remove`, `data_increment`, `ping` | a store operation of the layer ends (opens, restores, DELETE, refresh, forget, session data, the outage probe) |
//! | `tower_mcp_session.store.errors` | counter | {error} | `operation` as above; `error.type`: `unavailable` ([`StoreError::is_unavailable`](crate::store::StoreError::is_unavailable)), `other` | a store operation fails |
//! | `tower_mcp_session.bus.operation.duration` | histogram | s | `operation`: `publish`, `ping` | with a bus: a publish (message or close) or probe ends |
//! | `tower_mcp_session.bus.errors` | counter | {error} | `operation` as above | with a bus: a publish or probe fails |
//! | `tower_mcp_session.outage` | gauge | 1 | `part`: `store`, `bus` (with a bus) | 1 when the part's circuit breaker opens (an operation found it unavailable), 0 when a probe reaches it again |
//! | `tower_mcp_session.refresh.rounds` | counter | {round} | | a refresh round of the records' time to live runs (the breaker closed) |
//! | `tower_mcp_session.refresh.sessions` | histogram | {session} | | per round: the sessions whose records it touches |
//! | `tower_mcp_session.forget.queue` | gauge | {close} | | a close for good joins (+1) or leaves (−1) the queue that deletes records and tells the other nodes |
//! | `tower_mcp_session.client.reinitializations` | counter | {session} | | the [client layer](crate::client) sends the recorded `initialize` again after a 404 |
//! | `tower_mcp_session.client.retries` | counter | {request} | | the client layer sends a request again in the new session |
//! | `tower_mcp_session.client.session_lost` | counter | {request} | | a request of the client layer fails with `SessionLost` |
//!
//! The store, bus, restore, refresh and forget series exist only for a layer with a
//! [cluster](crate::Cluster) (the bus ones only with a bus); the client series only once a
//! client layer is built. Two layers in one process share their series (same names and
//! labels): their counters and live gauges add up, the limit gauge is the last one set.
//!
//! With `metrics-exporter-prometheus`, histograms are rendered as summaries unless buckets are
//! set, e.g. `PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("duration".into()),
//! &[0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 60.0, 600.0, 3600.0])`.

mod labels;
mod names;

pub use names::*;

pub(crate) use labels::{BusOp, OpenOutcome, RejectKind, RestoreOutcome, StoreOp};
pub(crate) use labels::{UNKNOWN as UNKNOWN_VERSION, version_of};

#[cfg(not(feature = "metrics"))]
mod off;
#[cfg(feature = "metrics")]
mod on;

#[cfg(feature = "client")]
pub(crate) use imp::ClientMetrics;
pub(crate) use imp::{Metrics, Setup};

#[cfg(not(feature = "metrics"))]
use off as imp;
#[cfg(feature = "metrics")]
use on as imp;
