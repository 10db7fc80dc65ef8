//! The little JSON-RPC the client layer reads: is a request body an `initialize` request,
//! and which protocol version does an `InitializeResult` (JSON or SSE) name.

use serde_json::Value;

/// The body of the `notifications/initialized` the layer sends after a re-initialization.
pub(crate) const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// `Some(requested protocol version)` if `body` is one JSON-RPC `initialize` request (method
/// `initialize` with a string or number `id`), `None` otherwise. Bodies that do not contain
/// the string `"initialize"` are not parsed.
pub(crate) fn initialize_request(body: &[u8]) -> Option<Option<String>> {
    const NEEDLE: &[u8] = b"\"initialize\"";
    if !body.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let is_init = value.get("method").and_then(Value::as_str) == Some("initialize")
        && value
            .get("id")
            .is_some_and(|id| id.is_string() || id.is_number());
    is_init.then(|| {
        value
            .pointer("/params/protocolVersion")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

/// What a scan of an `initialize` response body found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The JSON-RPC response was found (or the body ended): its `result.protocolVersion`, if
    /// any.
    Done(Option<String>),
    /// Not yet: read more of the body.
    NeedMore,
}

/// Looks for the JSON-RPC response in `body`, a JSON body or an SSE stream (`sse`), of which
/// `complete` says whether it has ended.
pub(crate) fn scan_response(body: &[u8], sse: bool, complete: bool) -> Scan {
    if !sse {
        if !complete {
            return Scan::NeedMore;
        }
        return Scan::Done(serde_json::from_slice(body).ok().and_then(version_of));
    }
    let mut data: Vec<u8> = Vec::new();
    let mut lines = body.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        // The last piece has no newline after it: an incomplete line unless the body ended.
        let last = lines.peek().is_none();
        if last && !complete {
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || last {
            if last && let Some(payload) = data_field(line) {
                push_data(&mut data, payload);
            }
            // End of an event: dispatch its data.
            if !data.is_empty() {
                if let Ok(message) = serde_json::from_slice::<Value>(&data)
                    && (message.get("result").is_some() || message.get("error").is_some())
                {
                    return Scan::Done(version_of(message));
                }
                data.clear();
            }
        } else if let Some(payload) = data_field(line) {
            push_data(&mut data, payload);
        }
    }
    if complete {
        Scan::Done(None)
    } else {
        Scan::NeedMore
    }
}

/// The value of an SSE `data` field line (one leading space removed), if it is one.
fn data_field(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"data")?;
    if rest.is_empty() {
        return Some(rest);
    }
    let rest = rest.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

/// Appends one `data` line to an event's data (lines joined with `\n`).
fn push_data(data: &mut Vec<u8>, payload: &[u8]) {
    if !data.is_empty() {
        data.push(b'\n');
    }
    data.extend_from_slice(payload);
}

/// `result.protocolVersion` of a JSON-RPC response.
fn version_of(message: Value) -> Option<String> {
    message
        .pointer("/result/protocolVersion")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_initialize_requests() {
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
        assert_eq!(
            initialize_request(init),
            Some(Some("2025-06-18".to_owned()))
        );
        let no_version = br#"{"jsonrpc":"2.0","id":"a","method":"initialize"}"#;
        assert_eq!(initialize_request(no_version), Some(None));
        let notification = br#"{"jsonrpc":"2.0","method":"initialize"}"#;
        assert_eq!(initialize_request(notification), None);
        let other =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"initialize"}}"#;
        assert_eq!(initialize_request(other), None);
        assert_eq!(initialize_request(b"not json \"initialize\""), None);
    }

    #[test]
    fn reads_the_version_from_json() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25"}}"#;
        assert_eq!(scan_response(body, false, false), Scan::NeedMore);
        let found = Scan::Done(Some("2025-11-25".to_owned()));
        assert_eq!(scan_response(body, false, true), found);
        assert_eq!(scan_response(b"{}", false, true), Scan::Done(None));
    }

    #[test]
    fn reads_the_version_from_sse() {
        let found = Scan::Done(Some("2025-06-18".to_owned()));
        let notice =
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n";
        let response = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\r\ndata: \"result\":{\"protocolVersion\":\"2025-06-18\"}}\r\n\r\n";
        let body = format!(":keep-alive\n\n{notice}{response}");
        assert_eq!(scan_response(body.as_bytes(), true, false), found);
        // Cut before the end of the response event: more is needed.
        let cut = &body[..body.len() - 4];
        assert_eq!(scan_response(cut.as_bytes(), true, false), Scan::NeedMore);
        // The stream ended without a blank line after the last event.
        assert_eq!(scan_response(cut.as_bytes(), true, true), found);
        assert_eq!(
            scan_response(notice.as_bytes(), true, true),
            Scan::Done(None)
        );
    }
}
