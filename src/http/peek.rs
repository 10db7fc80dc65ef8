//! Reading the body of a request without a session id, within bounds: the peek limit, the
//! peek deadline, and a budget of memory held by all bodies that wait for more data.
//!
//! So 2,000 connections trickling bodies cost at most the budget, not 2,000 limits; and a body
//! that arrives whole in its first chunk (the usual `initialize`) never waits and never
//! counts, so clients that trickle cannot lock out one that sends its body at once.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http_body::Body;
use http_body_util::BodyExt;

use crate::error::BoxError;
use crate::http::config::Config;
use crate::http::rejection::Rejection;
use crate::metrics::Metrics;

/// Bytes held by body peeks right now, against the configured budget.
pub(crate) struct PeekBudget {
    budget: usize,
    held: AtomicUsize,
    metrics: Metrics,
}

impl PeekBudget {
    pub(crate) fn new(budget: usize, metrics: Metrics) -> Self {
        Self {
            budget,
            held: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Holds `n` more bytes; `false` (holding nothing) if that would go over the budget.
    fn hold(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.budget)
            })
            .inspect(|_| self.metrics.peek(n, true))
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
        if n != 0 {
            self.metrics.peek(n, false);
        }
    }
}

/// Bytes of the peek budget held by one request; given back on drop.
struct Held<'a> {
    budget: &'a PeekBudget,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Reads the body of a request without an id, within the peek limit (413), deadline (408) and
/// budget (503).
pub(crate) async fn read_bounded<B>(
    config: &Config,
    budget: &PeekBudget,
    parts: &Parts,
    body: B,
) -> Result<Bytes, Rejection>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = config.peek_limit;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Rejection::PayloadTooLarge(limit));
    }
    // The deadline is a tokio timer: only inside a runtime; a timeout past what an `Instant`
    // holds is no deadline.
    let deadline = config
        .peek_timeout
        .filter(|_| tokio::runtime::Handle::try_current().is_ok())
        .and_then(crate::time::deadline);
    let mut held = Held { budget, bytes: 0 };
    let mut whole: Option<Bytes> = None;
    let mut parked = BytesMut::new();
    let mut body = std::pin::pin!(body);
    loop {
        let next = body.frame();
        let frame = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, next)
                .await
                .map_err(|_| Rejection::RequestTimeout)?,
            None => next.await,
        };
        let data = match frame {
            None => break,
            // The client broke off the body: nothing readable to parse.
            Some(Err(_)) => return Err(Rejection::ParseError),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        let whole_len = whole.as_ref().map_or(0, Bytes::len);
        let received = whole_len + parked.len() + data.len();
        if received > limit {
            return Err(Rejection::PayloadTooLarge(limit));
        }
        let complete = body.is_end_stream() || declared.is_some_and(|len| received as u64 >= len);
        if complete && received == data.len() {
            // The whole body came at once (the usual case): nothing waits, so nothing counts
            // against the budget, and it is parsed as it came, without a copy. (The loop still
            // reads to the end: a body longer than it declared is caught by the limit.)
            whole = Some(data);
            continue;
        }
        // The body is waiting for more: it is copied (so that no buffer of the connection's is
        // pinned) and the memory that copy holds, its capacity, counts against the budget.
        let before = parked.capacity();
        parked.reserve(whole_len + data.len());
        let grown = parked.capacity() - before;
        if !budget.hold(grown) {
            return Err(Rejection::PeekBudgetSpent(config.retry_after));
        }
        held.bytes += grown;
        if let Some(first) = whole.take() {
            parked.extend_from_slice(&first);
        }
        parked.extend_from_slice(&data);
    }
    Ok(whole.unwrap_or_else(|| parked.freeze()))
}
