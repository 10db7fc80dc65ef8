//! The names of the series (see the table in the [module docs](super)).

/// The prefix of the layer's own series.
pub const PREFIX: &str = "tower_mcp_session.";

/// Histogram (s): a session's duration at its close, labelled `mcp.protocol.version`
/// (OpenTelemetry semantic conventions for MCP).
pub const SESSION_DURATION: &str = "mcp.server.session.duration";
/// Gauge: sessions live in this node's table.
pub const SESSIONS_LIVE: &str = "tower_mcp_session.sessions.live";
/// Gauge: the configured session limit.
pub const SESSIONS_LIMIT: &str = "tower_mcp_session.sessions.limit";
/// Counter: open attempts, labelled `outcome`.
pub const SESSIONS_OPENED: &str = "tower_mcp_session.sessions.opened";
/// Counter: sessions closed on this node, labelled `reason`.
pub const SESSIONS_CLOSED: &str = "tower_mcp_session.sessions.closed";
/// Counter: requests the layer answered, labelled `kind` and `http.response.status_code`.
pub const REJECTIONS: &str = "tower_mcp_session.rejections";
/// Counter: requests routed to a session's service.
pub const REQUESTS_ROUTED: &str = "tower_mcp_session.requests.routed";
/// Counter: requests passed to the inner service without a session.
pub const REQUESTS_SESSIONLESS: &str = "tower_mcp_session.requests.sessionless";
/// Gauge: requests of sessions that waited and have not finished.
pub const REQUESTS_IN_FLIGHT: &str = "tower_mcp_session.requests.in_flight";
/// Gauge: response streams of sessions waiting for data.
pub const STREAMS_OPEN: &str = "tower_mcp_session.streams.open";
/// Gauge (bytes): held by opening bodies that wait for more data.
pub const PEEK_HELD: &str = "tower_mcp_session.peek.held";
/// Gauge (bytes): the peek budget.
pub const PEEK_BUDGET: &str = "tower_mcp_session.peek.budget";
/// Counter: restores, labelled `outcome`.
pub const RESTORES: &str = "tower_mcp_session.restores";
/// Histogram (s): restore durations.
pub const RESTORE_DURATION: &str = "tower_mcp_session.restore.duration";
/// Histogram (s): store operations, labelled `operation`.
pub const STORE_DURATION: &str = "tower_mcp_session.store.operation.duration";
/// Counter: failed store operations, labelled `operation` and `error.type`.
pub const STORE_ERRORS: &str = "tower_mcp_session.store.errors";
/// Histogram (s): bus operations, labelled `operation`.
pub const BUS_DURATION: &str = "tower_mcp_session.bus.operation.duration";
/// Counter: failed bus operations, labelled `operation`.
pub const BUS_ERRORS: &str = "tower_mcp_session.bus.errors";
/// Gauge (0/1): the store's or bus's breaker is open, labelled `part`.
pub const OUTAGE: &str = "tower_mcp_session.outage";
/// Counter: refresh rounds.
pub const REFRESH_ROUNDS: &str = "tower_mcp_session.refresh.rounds";
/// Histogram: sessions touched per refresh round.
pub const REFRESH_SESSIONS: &str = "tower_mcp_session.refresh.sessions";
/// Gauge: closes waiting in the forget queue.
pub const FORGET_QUEUE: &str = "tower_mcp_session.forget.queue";
/// Counter: client re-initializations after a 404.
pub const CLIENT_REINITIALIZATIONS: &str = "tower_mcp_session.client.reinitializations";
/// Counter: client requests sent again in a new session.
pub const CLIENT_RETRIES: &str = "tower_mcp_session.client.retries";
/// Counter: client requests that failed with `SessionLost`.
pub const CLIENT_SESSION_LOST: &str = "tower_mcp_session.client.session_lost";
