//! The series, with the `metrics` feature: handles registered once, when the layer (or the
//! client layer) is built, with the recorder installed then; recording is an increment on a
//! handle, with no key built, no lookup and no allocation.

use std::future::Future;
use std::sync::Arc;

use ::metrics::{Counter, Gauge, Histogram, Unit};
use tokio::time::Instant;

use super::labels::{BusOp, OpenOutcome, RejectKind, RestoreOutcome, StoreOp, VERSIONS};
use super::names::*;
use crate::close::CloseReason;
use crate::store::StoreError;

/// What the layer's series depend on, read once at build.
pub(crate) struct Setup {
    pub(crate) clustered: bool,
    pub(crate) bus: bool,
    pub(crate) max_sessions: usize,
    pub(crate) peek_budget: usize,
}

/// The layer's series (a no-op handle set when built without [`Metrics::register`]).
#[derive(Clone, Default)]
pub(crate) struct Metrics(Option<Arc<Series>>);

struct Series {
    live: Gauge,
    limit: Gauge,
    opened: Vec<Counter>,
    closed: Vec<Counter>,
    duration: Vec<Histogram>,
    rejections: Vec<Counter>,
    routed: Counter,
    sessionless: Counter,
    in_flight: Gauge,
    streams: Gauge,
    peek_held: Gauge,
    cluster: Option<ClusterSeries>,
}

struct ClusterSeries {
    restores: Vec<Counter>,
    restore_duration: Histogram,
    store_duration: Vec<Histogram>,
    /// Per operation: unavailable, other.
    store_errors: Vec<[Counter; 2]>,
    bus_duration: Vec<Histogram>,
    bus_errors: Vec<Counter>,
    /// Store, bus.
    outage: [Gauge; 2],
    refresh_rounds: Counter,
    refresh_sessions: Histogram,
    forget_queue: Gauge,
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        SESSION_DURATION,
        Unit::Seconds,
        "Duration of MCP sessions, from creation to their close on this node"
    );
    describe_gauge!(SESSIONS_LIVE, "Sessions live in this node's table");
    describe_gauge!(SESSIONS_LIMIT, "The configured session limit");
    describe_counter!(SESSIONS_OPENED, "Attempts to open a session, by outcome");
    describe_counter!(SESSIONS_CLOSED, "Sessions closed on this node, by reason");
    describe_counter!(
        REJECTIONS,
        "Requests the layer answered itself, by kind and status"
    );
    describe_counter!(REQUESTS_ROUTED, "Requests routed to a session's service");
    describe_counter!(
        REQUESTS_SESSIONLESS,
        "Requests passed to the inner service without a session"
    );
    describe_gauge!(
        REQUESTS_IN_FLIGHT,
        "Requests of sessions that waited and have not finished"
    );
    describe_gauge!(
        STREAMS_OPEN,
        "Response streams of sessions waiting for data"
    );
    describe_gauge!(
        PEEK_HELD,
        Unit::Bytes,
        "Bytes held by opening bodies that wait for more data"
    );
    describe_gauge!(PEEK_BUDGET, Unit::Bytes, "The peek budget");
}

fn describe_cluster() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(RESTORES, "Restores of sessions from the store, by outcome");
    describe_histogram!(RESTORE_DURATION, Unit::Seconds, "Duration of restores");
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "Duration of store operations"
    );
    describe_counter!(
        STORE_ERRORS,
        "Failed store operations, by operation and error type"
    );
    describe_histogram!(BUS_DURATION, Unit::Seconds, "Duration of bus operations");
    describe_counter!(BUS_ERRORS, "Failed bus operations, by operation");
    describe_gauge!(
        OUTAGE,
        "1 while the store's or bus's circuit breaker is open"
    );
    describe_counter!(
        REFRESH_ROUNDS,
        "Rounds of the records' time-to-live refresh"
    );
    describe_histogram!(
        REFRESH_SESSIONS,
        "Sessions whose records one refresh round touched"
    );
    describe_gauge!(
        FORGET_QUEUE,
        "Closes waiting to delete their record and tell the other nodes"
    );
}

impl Metrics {
    /// Registers every series of a layer with the recorder installed now (the global one, or
    /// the thread's local one), each label combination once.
    pub(crate) fn register(setup: &Setup) -> Self {
        use ::metrics::{counter, gauge, histogram};
        describe();
        let series = Series {
            live: gauge!(SESSIONS_LIVE),
            limit: gauge!(SESSIONS_LIMIT),
            opened: OpenOutcome::ALL
                .iter()
                .map(|o| counter!(SESSIONS_OPENED, "outcome" => o.as_str()))
                .collect(),
            closed: CloseReason::ALL
                .iter()
                .map(|r| counter!(SESSIONS_CLOSED, "reason" => r.as_str()))
                .collect(),
            duration: VERSIONS
                .iter()
                .map(|v| histogram!(SESSION_DURATION, "mcp.protocol.version" => *v))
                .collect(),
            rejections: RejectKind::ALL
                .iter()
                .map(|k| {
                    let (kind, status) = k.labels();
                    counter!(REJECTIONS, "kind" => kind, "http.response.status_code" => status)
                })
                .collect(),
            routed: counter!(REQUESTS_ROUTED),
            sessionless: counter!(REQUESTS_SESSIONLESS),
            in_flight: gauge!(REQUESTS_IN_FLIGHT),
            streams: gauge!(STREAMS_OPEN),
            peek_held: gauge!(PEEK_HELD),
            cluster: setup.clustered.then(|| {
                describe_cluster();
                let bus = setup.bus;
                ClusterSeries {
                    restores: RestoreOutcome::ALL
                        .iter()
                        .map(|o| counter!(RESTORES, "outcome" => o.as_str()))
                        .collect(),
                    restore_duration: histogram!(RESTORE_DURATION),
                    store_duration: StoreOp::ALL
                        .iter()
                        .map(|op| histogram!(STORE_DURATION, "operation" => op.as_str()))
                        .collect(),
                    store_errors: StoreOp::ALL
                        .iter()
                        .map(|op| {
                            let op = op.as_str();
                            [
                                counter!(STORE_ERRORS, "operation" => op, "error.type" => "unavailable"),
                                counter!(STORE_ERRORS, "operation" => op, "error.type" => "other"),
                            ]
                        })
                        .collect(),
                    bus_duration: if bus {
                        BusOp::ALL
                            .iter()
                            .map(|op| histogram!(BUS_DURATION, "operation" => op.as_str()))
                            .collect()
                    } else {
                        BusOp::ALL.iter().map(|_| Histogram::noop()).collect()
                    },
                    bus_errors: if bus {
                        BusOp::ALL
                            .iter()
                            .map(|op| counter!(BUS_ERRORS, "operation" => op.as_str()))
                            .collect()
                    } else {
                        BusOp::ALL.iter().map(|_| Counter::noop()).collect()
                    },
                    outage: [
                        gauge!(OUTAGE, "part" => "store"),
                        if bus {
                            gauge!(OUTAGE, "part" => "bus")
                        } else {
                            Gauge::noop()
                        },
                    ],
                    refresh_rounds: counter!(REFRESH_ROUNDS),
                    refresh_sessions: histogram!(REFRESH_SESSIONS),
                    forget_queue: gauge!(FORGET_QUEUE),
                }
            }),
        };
        series.limit.set(setup.max_sessions as f64);
        series.live.set(0.0);
        series.in_flight.set(0.0);
        series.streams.set(0.0);
        series.peek_held.set(0.0);
        gauge!(PEEK_BUDGET).set(setup.peek_budget as f64);
        if let Some(cluster) = &series.cluster {
            cluster.outage.iter().for_each(|g| g.set(0.0));
            cluster.forget_queue.set(0.0);
        }
        Self(Some(Arc::new(series)))
    }

    fn cluster(&self) -> Option<&ClusterSeries> {
        self.0.as_ref()?.cluster.as_ref()
    }

    /// The session limit changed.
    pub(crate) fn limit(&self, max: usize) {
        if let Some(s) = &self.0 {
            s.limit.set(max as f64);
        }
    }

    /// An attempt to open a session ended with `outcome`.
    pub(crate) fn open(&self, outcome: OpenOutcome) {
        if let Some(s) = &self.0 {
            s.opened[outcome as usize].increment(1);
        }
    }

    /// A session was stored in the table (opened or restored).
    pub(crate) fn stored(&self) {
        if let Some(s) = &self.0 {
            s.live.increment(1.0);
        }
    }

    /// A session left the table for `reason`, `age_ms` after its creation; `version` indexes
    /// [`VERSIONS`].
    pub(crate) fn closed(&self, reason: CloseReason, age_ms: u64, version: u8) {
        if let Some(s) = &self.0 {
            s.live.decrement(1.0);
            let i = CloseReason::ALL
                .iter()
                .position(|r| *r == reason)
                .unwrap_or(0);
            s.closed[i].increment(1);
            let v = (version as usize).min(VERSIONS.len() - 1);
            s.duration[v].record(age_ms as f64 / 1000.0);
        }
    }

    /// The layer answered a request itself.
    pub(crate) fn rejected(&self, kind: RejectKind) {
        if let Some(s) = &self.0 {
            s.rejections[kind as usize].increment(1);
        }
    }

    /// A request was routed to a session's service.
    #[inline]
    pub(crate) fn routed(&self) {
        if let Some(s) = &self.0 {
            s.routed.increment(1);
        }
    }

    /// A request went to the inner service without a session.
    #[inline]
    pub(crate) fn sessionless(&self) {
        if let Some(s) = &self.0 {
            s.sessionless.increment(1);
        }
    }

    /// A request of a session waited (`+1`) or, having waited, finished (`-1`).
    pub(crate) fn in_flight(&self, up: bool) {
        if let Some(s) = &self.0 {
            gauge_step(&s.in_flight, up);
        }
    }

    /// A response stream started waiting for data (`+1`) or, having waited, ended (`-1`).
    pub(crate) fn stream(&self, up: bool) {
        if let Some(s) = &self.0 {
            gauge_step(&s.streams, up);
        }
    }

    /// The bytes held by waiting opening bodies grew or shrank by `bytes`.
    pub(crate) fn peek(&self, bytes: usize, up: bool) {
        if let Some(s) = &self.0 {
            if up {
                s.peek_held.increment(bytes as f64);
            } else {
                s.peek_held.decrement(bytes as f64);
            }
        }
    }

    /// A restore ended with `outcome` after `started`.
    pub(crate) fn restore(&self, outcome: RestoreOutcome, started: Option<Instant>) {
        if let Some(c) = self.cluster() {
            c.restores[outcome as usize].increment(1);
            if let Some(started) = started {
                c.restore_duration.record(started.elapsed().as_secs_f64());
            }
        }
    }

    /// When a timed span starts (`None` without metrics: no clock read).
    pub(crate) fn start(&self) -> Option<Instant> {
        self.cluster().map(|_| Instant::now())
    }

    /// Runs the store operation `op`, recording its duration and its error, if any.
    pub(crate) async fn store<T>(
        &self,
        op: StoreOp,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let Some(c) = self.cluster() else {
            return operation.await;
        };
        let started = Instant::now();
        let result = operation.await;
        c.store_duration[op as usize].record(started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            let kind = usize::from(!error.is_unavailable());
            c.store_errors[op as usize][kind].increment(1);
        }
        result
    }

    /// Runs the bus operation `op`, recording its duration and whether it failed.
    pub(crate) async fn bus<T, E>(
        &self,
        op: BusOp,
        operation: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let Some(c) = self.cluster() else {
            return operation.await;
        };
        let started = Instant::now();
        let result = operation.await;
        c.bus_duration[op as usize].record(started.elapsed().as_secs_f64());
        if result.is_err() {
            c.bus_errors[op as usize].increment(1);
        }
        result
    }

    /// The store's (`bus: false`) or bus's breaker opened (`down`) or closed.
    pub(crate) fn outage(&self, bus: bool, down: bool) {
        if let Some(c) = self.cluster() {
            c.outage[usize::from(bus)].set(if down { 1.0 } else { 0.0 });
        }
    }

    /// A refresh round touched the records of `sessions` sessions.
    pub(crate) fn refresh_round(&self, sessions: usize) {
        if let Some(c) = self.cluster() {
            c.refresh_rounds.increment(1);
            c.refresh_sessions.record(sessions as f64);
        }
    }

    /// A close joined (`true`) or left the forget queue.
    pub(crate) fn forget_queue(&self, up: bool) {
        if let Some(c) = self.cluster() {
            gauge_step(&c.forget_queue, up);
        }
    }
}

fn gauge_step(gauge: &Gauge, up: bool) {
    if up {
        gauge.increment(1.0);
    } else {
        gauge.decrement(1.0);
    }
}

/// The client layer's series.
#[cfg(feature = "client")]
#[derive(Clone, Default)]
pub(crate) struct ClientMetrics(Option<Arc<ClientSeries>>);

#[cfg(feature = "client")]
struct ClientSeries {
    reinitializations: Counter,
    retries: Counter,
    lost: Counter,
}

#[cfg(feature = "client")]
impl ClientMetrics {
    /// Registers the client layer's series with the recorder installed now.
    pub(crate) fn register() -> Self {
        use ::metrics::{counter, describe_counter};
        describe_counter!(
            CLIENT_REINITIALIZATIONS,
            "Sessions the client started again after a 404"
        );
        describe_counter!(
            CLIENT_RETRIES,
            "Requests the client sent again in a new session"
        );
        describe_counter!(CLIENT_SESSION_LOST, "Requests that failed with SessionLost");
        Self(Some(Arc::new(ClientSeries {
            reinitializations: counter!(CLIENT_REINITIALIZATIONS),
            retries: counter!(CLIENT_RETRIES),
            lost: counter!(CLIENT_SESSION_LOST),
        })))
    }

    /// The client re-sent the recorded `initialize` after a 404.
    pub(crate) fn reinitialized(&self) {
        if let Some(s) = &self.0 {
            s.reinitializations.increment(1);
        }
    }

    /// The client sent a request again, in the new session.
    pub(crate) fn retried(&self) {
        if let Some(s) = &self.0 {
            s.retries.increment(1);
        }
    }

    /// A request failed with `SessionLost`.
    pub(crate) fn lost(&self) {
        if let Some(s) = &self.0 {
            s.lost.increment(1);
        }
    }
}
