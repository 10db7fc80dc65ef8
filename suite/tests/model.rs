//! Model-based property test: random sequences of open / request / GET / DELETE / advance
//! clock / `Sessions::close` / `contains` / `sweep` / shutdown run against the layer and
//! against a reference model of the session table (a list of sessions with their last-use
//! time). After every step the layer's answer (status, which session served the request),
//! the close events its hook saw (id and reason), its table size (`Sessions::len`, which
//! counts expired sessions nobody has reclaimed yet), and the number of per-session
//! services alive all equal the model's.
//!
//! Time is tokio's paused clock in a current-thread runtime built per case; the idle timeout
//! is 10 s and advances hit its boundaries (1 ms before, exactly at, after). The sweeper is
//! configured never to fire so that the model knows exactly when an expired session leaves
//! the table (a request, DELETE, `contains` or `sweep` for it). The table holds at most 4
//! sessions so that 503s (or evictions, in cases with `evict_idlest`) happen.
//!
//! When the table is full the model predicts whether an open reclaims expired sessions, by
//! the documented rule: the table keeps a lower bound `next_end` of the earliest time any
//! session can end, recomputed after every full pass (an explicit `Sessions::sweep()` or a
//! reclaim scan) as `min(min over sessions of last_seen + idle, now + idle)`, initially 0; an
//! open at a full table scans the whole table iff `now >= next_end` and no such scan started
//! in the last 1000 ms. Without a reclaim (or with one that found nothing) and without
//! eviction the answer is 503 with `Retry-After: 5`. Eviction picks its victim from a random
//! sample, so there the model requires exactly one `Evicted` close of a session in the table.

#[path = "../../tests/reliability/mod.rs"]
mod reliability;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use proptest::prelude::*;
use reliability::*;
use tower_mcp_session::{CloseReason, Eviction, SessionInfo};

const IDLE_MS: u64 = 10_000;
const MAX_SESSIONS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Open,
    /// POST with the id of the i-th session issued (modulo the number issued).
    Request(usize),
    /// GET (a one-chunk stream) with the i-th id.
    Get(usize),
    Delete(usize),
    /// `Sessions::close`.
    Close(usize),
    /// `Sessions::contains`.
    Contains(usize),
    Sweep,
    AdvanceMs(u64),
    /// POST or DELETE with a well-formed id that was never issued.
    Unknown(bool),
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    let advance = prop_oneof![
        Just(1u64),
        Just(IDLE_MS - 1),
        Just(IDLE_MS),
        Just(IDLE_MS + 1),
        1..3 * IDLE_MS,
    ];
    // Weights out of about 300: a shutdown comes in roughly one case in five.
    prop_oneof![
        60 => Just(Op::Open),
        60 => (0..8usize).prop_map(Op::Request),
        20 => (0..8usize).prop_map(Op::Get),
        30 => (0..8usize).prop_map(Op::Delete),
        20 => (0..8usize).prop_map(Op::Close),
        20 => (0..8usize).prop_map(Op::Contains),
        10 => Just(Op::Sweep),
        50 => advance.prop_map(Op::AdvanceMs),
        10 => any::<bool>().prop_map(Op::Unknown),
        1 => Just(Op::Shutdown),
    ]
}

#[derive(Debug)]
struct ModelSession {
    id: String,
    last_seen: u64,
    /// In the layer's table: live, or expired and not yet reclaimed.
    in_table: bool,
}

#[derive(Debug, Default)]
struct Model {
    now: u64,
    sessions: Vec<ModelSession>,
    shut_down: bool,
    evict: bool,
    /// No session can end before this, as of the last full pass; 0 before any.
    next_end: u64,
    /// When the last reclaim scan of a full table started; `None`: never.
    last_full_scan: Option<u64>,
}

/// Least time between two reclaim scans of a full table.
const FULL_SCAN_INTERVAL_MS: u64 = 1_000;

impl Model {
    /// A full pass over the table at `now`: closes every expired session (pushing `Expired`
    /// events) and recomputes `next_end`. Returns how many it closed.
    fn full_pass(&mut self, events: &mut Vec<(String, CloseReason)>) -> usize {
        let now = self.now;
        let mut closed = 0;
        let mut next_end = now + IDLE_MS;
        for s in &mut self.sessions {
            if !s.in_table {
                continue;
            }
            if now - s.last_seen >= IDLE_MS {
                s.in_table = false;
                events.push((s.id.clone(), CloseReason::Expired));
                closed += 1;
            } else {
                next_end = next_end.min(s.last_seen + IDLE_MS);
            }
        }
        self.next_end = next_end;
        closed
    }

    /// Whether an open that finds the table full scans it for expired sessions.
    fn may_reclaim(&self) -> bool {
        self.now >= self.next_end
            && self
                .last_full_scan
                .is_none_or(|last| self.now - last >= FULL_SCAN_INTERVAL_MS)
    }

    fn count(&self) -> usize {
        self.sessions.iter().filter(|s| s.in_table).count()
    }

    fn expired(&self, s: &ModelSession) -> bool {
        self.now - s.last_seen >= IDLE_MS
    }

    fn pick(&self, i: usize) -> Option<usize> {
        (!self.sessions.is_empty()).then(|| i % self.sessions.len())
    }

    fn index_of(&self, id: &str) -> usize {
        self.sessions
            .iter()
            .position(|s| s.id == id)
            .unwrap_or_else(|| panic!("event for an id never issued: {id}"))
    }

    /// What a lookup of session `i` finds: `true` if live; an expired session found in the
    /// table is reclaimed with `Expired` (pushed on `events`).
    fn lookup(&mut self, i: usize, events: &mut Vec<(String, CloseReason)>) -> bool {
        let expired = self.expired(&self.sessions[i]);
        let s = &mut self.sessions[i];
        if !s.in_table {
            return false;
        }
        if expired {
            s.in_table = false;
            events.push((s.id.clone(), CloseReason::Expired));
            return false;
        }
        true
    }
}

type Events = Arc<Mutex<Vec<(String, CloseReason)>>>;

fn drain(events: &Events) -> Vec<(String, CloseReason)> {
    let mut drained = std::mem::take(&mut *events.lock().unwrap());
    drained.sort_by(|a, b| a.0.cmp(&b.0));
    drained
}

fn sorted(mut events: Vec<(String, CloseReason)>) -> Vec<(String, CloseReason)> {
    events.sort_by(|a, b| a.0.cmp(&b.0));
    events
}

fn status_only(answer: &Answer, status: StatusCode, what: &str) {
    assert_eq!(answer.status, status, "{what}: {answer:?}");
}

/// Runs `ops` against a fresh layer and the model, comparing after every step.
async fn check(ops: Vec<Op>, evict: bool) {
    let events: Events = Arc::default();
    let hook_events = Arc::clone(&events);
    let h = harness_with(1, |layer| {
        layer
            .idle_timeout(Duration::from_millis(IDLE_MS))
            .sweep_interval(Duration::from_secs(365 * 24 * 3600))
            .max_sessions(MAX_SESSIONS)
            .eviction(if evict {
                Eviction::LastRequest
            } else {
                Eviction::Off
            })
            .on_close(move |info: &SessionInfo, reason| {
                hook_events
                    .lock()
                    .unwrap()
                    .push((info.id().as_str().to_owned(), reason))
            })
    });
    let mut m = Model {
        evict,
        ..Model::default()
    };
    let mut unknown = 0u32;
    let mut closes: Vec<(String, CloseReason)> = Vec::new();

    for (step, op) in ops.into_iter().enumerate() {
        let what = format!("step {step} {op:?} at {} ms", m.now);
        let mut expected: Vec<(String, CloseReason)> = Vec::new();
        match op {
            Op::Open => {
                let answer = send(&h.svc, initialize()).await;
                if m.shut_down {
                    status_only(&answer, StatusCode::SERVICE_UNAVAILABLE, &what);
                    assert!(answer.headers.get("retry-after").is_none(), "{what}");
                    assert_eq!(answer.json_rpc_code(), -32000, "{what}");
                } else {
                    // Room: free, reclaimed by a scan the rule allows, or (maybe) evicted.
                    let mut room = m.count() < MAX_SESSIONS;
                    if !room && m.may_reclaim() {
                        m.last_full_scan = Some(m.now);
                        room = m.full_pass(&mut expected) > 0;
                    }
                    if !room && m.evict {
                        // The victim is the oldest of a random sample: any one session in
                        // the table (the sample finds one; see
                        // `evict_idlest_makes_room_in_a_small_table`).
                        let actual = sorted(events.lock().unwrap().clone());
                        let evicted: Vec<_> = actual
                            .iter()
                            .filter(|e| !expected.contains(e))
                            .cloned()
                            .collect();
                        match evicted.as_slice() {
                            [(id, CloseReason::Evicted)] => {
                                let i = m.index_of(id);
                                assert!(m.sessions[i].in_table, "{what}: evicted {id} twice");
                                m.sessions[i].in_table = false;
                                expected.push((id.clone(), CloseReason::Evicted));
                                room = true;
                            }
                            other => panic!("{what}: unexpected closes {other:?}"),
                        }
                    }
                    if room {
                        status_only(&answer, StatusCode::OK, &what);
                        let id = answer
                            .session_id()
                            .expect("a 200 carries the id")
                            .to_owned();
                        assert_eq!(answer.served_by(), Some(id.as_str()), "{what}");
                        assert!(
                            m.sessions.iter().all(|s| s.id != id),
                            "{what}: minted {id} twice"
                        );
                        m.sessions.push(ModelSession {
                            id,
                            last_seen: m.now,
                            in_table: true,
                        });
                    } else {
                        status_only(&answer, StatusCode::SERVICE_UNAVAILABLE, &what);
                        assert_eq!(answer.headers["retry-after"], "5", "{what}");
                        assert_eq!(answer.json_rpc_code(), -32000, "{what}");
                        assert!(answer.session_id().is_none(), "{what}");
                    }
                }
            }
            Op::Request(i) | Op::Get(i) => {
                let Some(i) = m.pick(i) else { continue };
                let id = m.sessions[i].id.clone();
                let request = match op {
                    Op::Get(_) => get(&id),
                    _ => post(&id, PING),
                };
                let answer = send(&h.svc, request).await;
                if m.lookup(i, &mut expected) {
                    status_only(&answer, StatusCode::OK, &what);
                    assert_eq!(answer.served_by(), Some(id.as_str()), "{what}");
                    m.sessions[i].last_seen = m.now;
                } else {
                    status_only(&answer, StatusCode::NOT_FOUND, &what);
                    assert_eq!(answer.json_rpc_code(), -32001, "{what}");
                }
            }
            Op::Delete(i) => {
                let Some(i) = m.pick(i) else { continue };
                let id = m.sessions[i].id.clone();
                let answer = send(&h.svc, delete(&id)).await;
                if m.lookup(i, &mut expected) {
                    status_only(&answer, StatusCode::NO_CONTENT, &what);
                    assert!(answer.body.is_empty(), "{what}");
                    m.sessions[i].in_table = false;
                    expected.push((id, CloseReason::Deleted));
                } else {
                    status_only(&answer, StatusCode::NOT_FOUND, &what);
                    assert_eq!(answer.json_rpc_code(), -32001, "{what}");
                }
            }
            Op::Close(i) => {
                let Some(i) = m.pick(i) else { continue };
                let id = m.sessions[i].id.clone();
                let closed = h.sessions.close(&id);
                // An expired session is not open: `close` finds it ended (closing it as
                // `Expired`) and returns false; a live one is closed as `Closed`.
                if m.lookup(i, &mut expected) {
                    assert!(closed, "{what}: close of a live session returned false");
                    m.sessions[i].in_table = false;
                    expected.push((id, CloseReason::Closed));
                } else {
                    assert!(!closed, "{what}: close of a session not open returned true");
                }
            }
            Op::Contains(i) => {
                let Some(i) = m.pick(i) else { continue };
                let id = m.sessions[i].id.clone();
                let live = h.sessions.contains(&id);
                assert_eq!(live, m.lookup(i, &mut expected), "{what}");
                assert_eq!(h.sessions.get(&id).is_some(), live, "{what}");
            }
            Op::Sweep => {
                let swept = h.sessions.sweep();
                assert_eq!(swept, m.full_pass(&mut expected), "{what}");
            }
            Op::AdvanceMs(ms) => {
                tokio::time::advance(Duration::from_millis(ms)).await;
                m.now += ms;
            }
            Op::Unknown(as_delete) => {
                unknown += 1;
                let id = format!("never-issued-{unknown}");
                let request = if as_delete {
                    delete(&id)
                } else {
                    post(&id, PING)
                };
                let answer = send(&h.svc, request).await;
                status_only(&answer, StatusCode::NOT_FOUND, &what);
                assert_eq!(answer.json_rpc_code(), -32001, "{what}");
            }
            Op::Shutdown => {
                let closed = h.sessions.shutdown();
                for s in &mut m.sessions {
                    if s.in_table {
                        s.in_table = false;
                        expected.push((s.id.clone(), CloseReason::Shutdown));
                    }
                }
                m.shut_down = true;
                assert_eq!(closed, expected.len(), "{what}");
            }
        }
        let expected = sorted(expected);
        assert_eq!(drain(&events), expected, "{what}: close events");
        closes.extend(expected);
        assert_eq!(h.sessions.len(), m.count(), "{what}: table size; {m:?}");
        assert_eq!(h.tracker.live(), m.count(), "{what}: services alive");
        assert_eq!(h.sessions.is_shut_down(), m.shut_down, "{what}");
        assert_eq!(h.tracker.misrouted(), 0, "{what}");
        let mut ids: Vec<String> = h.sessions.ids().iter().map(|id| id.to_string()).collect();
        ids.sort();
        let mut model_ids: Vec<String> = m
            .sessions
            .iter()
            .filter(|s| s.in_table)
            .map(|s| s.id.clone())
            .collect();
        model_ids.sort();
        assert_eq!(ids, model_ids, "{what}: ids in the table");
    }

    // The end of traffic: everything expires and the sweep reclaims it all.
    tokio::time::advance(Duration::from_millis(IDLE_MS)).await;
    assert_eq!(h.sessions.sweep(), m.count());
    assert!(h.sessions.is_empty());
    assert_eq!(
        h.tracker.live(),
        0,
        "a per-session service outlived its session"
    );
    closes.extend(drain(&events));
    // Every session issued was closed exactly once.
    let mut closed: Vec<&str> = closes.iter().map(|(id, _)| id.as_str()).collect();
    closed.sort_unstable();
    let mut issued: Vec<&str> = m.sessions.iter().map(|s| s.id.as_str()).collect();
    issued.sort_unstable();
    assert_eq!(closed, issued);
}

fn run_case(ops: Vec<Op>, evict: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(check(ops, evict));
}

proptest! {
    #![proptest_config(ProptestConfig {
        // More with PROPTEST_CASES=N.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn layer_matches_the_model(ops in proptest::collection::vec(op(), 1..60), evict in any::<bool>()) {
        run_case(ops, evict);
    }
}

/// `Sessions::close` is documented to return `false` "if no such session was open"; an
/// expired session is not open (`contains` says so, and a request for it gets 404).
#[test]
fn close_of_an_expired_session_returns_false() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let events: Events = Arc::default();
        let hook_events = Arc::clone(&events);
        let h = harness_with(1, |layer| {
            layer
                .idle_timeout(Duration::from_millis(IDLE_MS))
                .sweep_interval(Duration::from_secs(365 * 24 * 3600))
                .on_close(move |info: &SessionInfo, reason| {
                    hook_events
                        .lock()
                        .unwrap()
                        .push((info.id().as_str().to_owned(), reason))
                })
        });
        let id = open(&h.svc).await;
        tokio::time::advance(Duration::from_millis(IDLE_MS)).await;
        assert!(!h.sessions.close(&id), "closed a session that had expired");
        assert_eq!(drain(&events), vec![(id, CloseReason::Expired)]);
    });
}

/// `max_sessions` bounds the sessions "open at once"; sessions that have expired are not
/// open (a request for them gets 404), so they must not keep a new session out with 503
/// until the sweeper happens to run.
#[test]
fn expired_sessions_do_not_count_against_the_limit() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let h = harness_with(1, |layer| {
            layer
                .idle_timeout(Duration::from_millis(IDLE_MS))
                .sweep_interval(Duration::from_secs(365 * 24 * 3600))
                .max_sessions(2)
        });
        let a = open(&h.svc).await;
        let b = open(&h.svc).await;
        tokio::time::advance(Duration::from_millis(IDLE_MS)).await;
        let answer = send(&h.svc, initialize()).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "a table of expired sessions refused a new one: {answer:?}"
        );
        assert!(!h.sessions.contains(&a) && !h.sessions.contains(&b));
        assert_eq!(h.sessions.len(), 1);
    });
}

/// `evict_idlest`: "When the table is full, close a session to make room for the new one
/// instead of answering 503". With a table of 4 sessions the victim is looked for in a
/// sample of 4 of the 256 shards; the sample must not miss every session and answer 503.
#[test]
fn evict_idlest_makes_room_in_a_small_table() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut refused = 0;
        for _ in 0..50 {
            let h = harness_with(1, |layer| {
                layer
                    .max_sessions(MAX_SESSIONS)
                    .eviction(Eviction::LastRequest)
            });
            for _ in 0..MAX_SESSIONS {
                open(&h.svc).await;
                tokio::time::advance(Duration::from_millis(1)).await;
            }
            let answer = send(&h.svc, initialize()).await;
            if answer.status != StatusCode::OK {
                refused += 1;
            }
            assert_eq!(h.sessions.len(), MAX_SESSIONS);
        }
        assert_eq!(
            refused, 0,
            "opens refused with 503 out of 50 despite evict_idlest"
        );
    });
}
