//! The label values of the layer's series: closed sets, each a fixed array of `&'static str`,
//! so that no label can carry a session id or any other unbounded value, and no recording
//! allocates.

// Without the feature only the enums are used (the hooks take them and do nothing).
#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

/// How an attempt to open a session ended (label `outcome` of
/// [`SESSIONS_OPENED`](super::SESSIONS_OPENED)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenOutcome {
    /// Stored, under the limit.
    Opened,
    /// Stored, after evicting another session to make room.
    Evicted,
    /// The session limit was reached (503).
    TableFull,
    /// Refused: the principal's or client's limit (429), or shut down (503).
    Refused,
    /// The factory failed, or no usable id could be minted (500).
    FactoryFailed,
    /// The cluster's store did not answer (503).
    StoreUnavailable,
    /// The per-session service answered the opening request, but not with a success
    /// (nothing stored).
    Declined,
}

impl OpenOutcome {
    pub(crate) const ALL: [Self; 7] = [
        Self::Opened,
        Self::Evicted,
        Self::TableFull,
        Self::Refused,
        Self::FactoryFailed,
        Self::StoreUnavailable,
        Self::Declined,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Evicted => "evicted",
            Self::TableFull => "table_full",
            Self::Refused => "refused",
            Self::FactoryFailed => "factory_failed",
            Self::StoreUnavailable => "store_unavailable",
            Self::Declined => "declined",
        }
    }
}

/// How a restore of a session from the store ended (label `outcome` of
/// [`RESTORES`](super::RESTORES)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestoreOutcome {
    /// Rebuilt and stored on this node.
    Restored,
    /// No record (or it outlived its lifetime, or this node's service refused the replay).
    NotFound,
    /// The store did not answer.
    StoreUnavailable,
    /// The replay failed in a way that may pass (5xx, 408, 429, the replay timeout).
    ReplayFailed,
    /// The factory failed.
    FactoryFailed,
    /// Refused for this request: another principal's session, or no place under the limits.
    Refused,
    /// All 256 restore permits of the node were taken.
    TooMany,
    /// The layer has shut down.
    ShuttingDown,
}

impl RestoreOutcome {
    pub(crate) const ALL: [Self; 8] = [
        Self::Restored,
        Self::NotFound,
        Self::StoreUnavailable,
        Self::ReplayFailed,
        Self::FactoryFailed,
        Self::Refused,
        Self::TooMany,
        Self::ShuttingDown,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Restored => "restored",
            Self::NotFound => "not_found",
            Self::StoreUnavailable => "store_unavailable",
            Self::ReplayFailed => "replay_failed",
            Self::FactoryFailed => "factory_failed",
            Self::Refused => "refused",
            Self::TooMany => "too_many",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

/// A rejection the layer answered (labels `kind` and `http.response.status_code` of
/// [`REJECTIONS`](super::REJECTIONS)); one per [`Rejection`](crate::Rejection) variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RejectKind {
    MissingSessionId,
    InvalidSessionId,
    InvalidProtocolVersion,
    ParseError,
    BatchedInitialize,
    SessionNotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    ClientSessionLimit,
    FactoryFailed,
    TooManySessions,
    PeekBudgetSpent,
    TooManyRestores,
    ReplayFailed,
    StoreUnavailable,
    ShuttingDown,
}

impl RejectKind {
    pub(crate) const ALL: [Self; 17] = [
        Self::MissingSessionId,
        Self::InvalidSessionId,
        Self::InvalidProtocolVersion,
        Self::ParseError,
        Self::BatchedInitialize,
        Self::SessionNotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::ClientSessionLimit,
        Self::FactoryFailed,
        Self::TooManySessions,
        Self::PeekBudgetSpent,
        Self::TooManyRestores,
        Self::ReplayFailed,
        Self::StoreUnavailable,
        Self::ShuttingDown,
    ];

    /// The kind's name and the status of its default response.
    pub(crate) fn labels(self) -> (&'static str, &'static str) {
        match self {
            Self::MissingSessionId => ("missing_session_id", "400"),
            Self::InvalidSessionId => ("invalid_session_id", "400"),
            Self::InvalidProtocolVersion => ("invalid_protocol_version", "400"),
            Self::ParseError => ("parse_error", "400"),
            Self::BatchedInitialize => ("batched_initialize", "400"),
            Self::SessionNotFound => ("session_not_found", "404"),
            Self::MethodNotAllowed => ("method_not_allowed", "405"),
            Self::RequestTimeout => ("request_timeout", "408"),
            Self::PayloadTooLarge => ("payload_too_large", "413"),
            Self::ClientSessionLimit => ("client_session_limit", "429"),
            Self::FactoryFailed => ("factory_failed", "500"),
            Self::TooManySessions => ("too_many_sessions", "503"),
            Self::PeekBudgetSpent => ("peek_budget_spent", "503"),
            Self::TooManyRestores => ("too_many_restores", "503"),
            Self::ReplayFailed => ("replay_failed", "503"),
            Self::StoreUnavailable => ("store_unavailable", "503"),
            Self::ShuttingDown => ("shutting_down", "503"),
        }
    }
}

/// A store operation (label `operation` of the store series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Create,
    Load,
    Touch,
    Delete,
    DeleteIfUnused,
    DataGet,
    DataInsert,
    DataRemove,
    DataIncrement,
    Ping,
}

impl StoreOp {
    pub(crate) const ALL: [Self; 10] = [
        Self::Create,
        Self::Load,
        Self::Touch,
        Self::Delete,
        Self::DeleteIfUnused,
        Self::DataGet,
        Self::DataInsert,
        Self::DataRemove,
        Self::DataIncrement,
        Self::Ping,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Load => "load",
            Self::Touch => "touch",
            Self::Delete => "delete",
            Self::DeleteIfUnused => "delete_if_unused",
            Self::DataGet => "data_get",
            Self::DataInsert => "data_insert",
            Self::DataRemove => "data_remove",
            Self::DataIncrement => "data_increment",
            Self::Ping => "ping",
        }
    }
}

/// A bus operation (label `operation` of the bus series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BusOp {
    Publish,
    Ping,
}

impl BusOp {
    pub(crate) const ALL: [Self; 2] = [Self::Publish, Self::Ping];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Ping => "ping",
        }
    }
}

/// The MCP protocol versions a session's duration is labelled with
/// (`mcp.protocol.version`); anything else is `other`, no version found `unknown`.
pub(crate) const VERSIONS: [&str; 6] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "other",
    "unknown",
];

/// Index of `other` in [`VERSIONS`].
const OTHER: u8 = 4;
/// Index of `unknown` in [`VERSIONS`].
pub(crate) const UNKNOWN: u8 = 5;

/// The index in [`VERSIONS`] of the protocol version an opening request asks for: the
/// `protocolVersion` string of its body (MCP `initialize` params), found by a byte search
/// (no JSON tree, no allocation; the body is bounded by the peek limit), else [`UNKNOWN`].
/// A label, not a decision: a key of that name elsewhere in the body could be found first,
/// and the negotiated version may differ from the one asked for.
pub(crate) fn version_of(body: &[u8]) -> u8 {
    const KEY: &[u8] = b"\"protocolVersion\"";
    let Some(at) = body.windows(KEY.len()).position(|w| w == KEY) else {
        return UNKNOWN;
    };
    let rest = &body[at + KEY.len()..];
    let rest = trim_start(rest);
    let Some(rest) = rest.strip_prefix(b":") else {
        return UNKNOWN;
    };
    let Some(rest) = trim_start(rest).strip_prefix(b"\"") else {
        return UNKNOWN;
    };
    let Some(end) = rest.iter().position(|&b| b == b'"') else {
        return UNKNOWN;
    };
    let value = &rest[..end];
    VERSIONS[..OTHER as usize]
        .iter()
        .position(|v| v.as_bytes() == value)
        .map_or(OTHER, |i| i as u8)
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &bytes[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_found_in_initialize_bodies() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion" : "2025-06-18","capabilities":{}}}"#;
        assert_eq!(VERSIONS[version_of(body) as usize], "2025-06-18");
        let body = br#"{"params":{"protocolVersion":"1999-01-01"}}"#;
        assert_eq!(VERSIONS[version_of(body) as usize], "other");
        assert_eq!(VERSIONS[version_of(b"{}") as usize], "unknown");
        assert_eq!(
            VERSIONS[version_of(br#"{"protocolVersion":1}"#) as usize],
            "unknown"
        );
        assert_eq!(
            VERSIONS[version_of(br#"{"protocolVersion":"2025"#) as usize],
            "unknown"
        );
    }
}
