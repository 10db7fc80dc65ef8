//! The Model Context Protocol profile: which request opens a session, and routing by
//! protocol version.
//!
//! Rules, from MCP 2025-11-25, Basic, Transports, Streamable HTTP:
//!
//! - A session is opened by the `InitializeRequest`, a JSON-RPC request with method
//!   `initialize`, sent as a POST without `Mcp-Session-Id`; the server assigns the id in the
//!   header of the response that carries the `InitializeResult`.
//! - Every later request carries the id; without it the server answers 400, with an id it no
//!   longer knows 404.
//! - `MCP-Protocol-Version` is `YYYY-MM-DD`; a missing one on a later request means
//!   2025-03-26. An invalid one gets 400 from the layer when the request names a session (or
//!   repeats the header); without a session id it goes to the inner service, which knows the
//!   versions it speaks (MCP 2026-07-28 answers an unsupported version with JSON-RPC error
//!   -32022 and the request's id, which only the server can give).
//! - MCP 2026-07-28 (SEP-2567) removed sessions: requests declaring that version or a newer
//!   one pass through to the inner service, and any `Mcp-Session-Id` they carry is ignored.

use http::{HeaderMap, HeaderName};

use crate::rejection::Rejection;

/// `Mcp-Session-Id`, the session header of MCP Streamable HTTP.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// `MCP-Protocol-Version`, the header that names the negotiated protocol version.
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// The first protocol version without sessions (SEP-2567). Requests declaring this version or
/// a later one are sessionless.
pub const SESSIONLESS_SINCE: &str = "2026-07-28";

/// Whether the request declares a sessionless protocol version (≥ [`SESSIONLESS_SINCE`]).
///
/// # Errors
///
/// [`Rejection::InvalidProtocolVersion`] if the header is repeated or is not `YYYY-MM-DD`.
pub(crate) fn is_sessionless(headers: &HeaderMap) -> Result<bool, Rejection> {
    let mut values = headers.get_all(MCP_PROTOCOL_VERSION).iter();
    let Some(value) = values.next() else {
        return Ok(false);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidProtocolVersion);
    }
    let version = value.as_bytes();
    let well_formed = version.len() == 10
        && version.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !well_formed {
        return Err(Rejection::InvalidProtocolVersion);
    }
    // Same-length ISO dates compare correctly as bytes.
    Ok(version >= SESSIONLESS_SINCE.as_bytes())
}

/// Whether `MCP-Protocol-Version` appears at most once.
pub(crate) fn version_is_single(headers: &HeaderMap) -> bool {
    headers
        .get_all(MCP_PROTOCOL_VERSION)
        .iter()
        .nth(1)
        .is_none()
}

/// Reads a peeked body: `Ok(true)` if it is a JSON-RPC `initialize` request (with a string or
/// number `id`; an `initialize` notification opens nothing), `Ok(false)` for any other JSON.
///
/// The body is probed, not parsed into a tree: only `method` and `id` of the top-level object
/// (or of each element of a top-level batch) are looked at, everything else is skipped with
/// `IgnoredAny`, so memory stays at the size of the `method` string whatever the body holds.
///
/// # Errors
///
/// [`Rejection::ParseError`] if the body is not JSON (nesting deeper than serde_json's limit
/// of 128 counts as not JSON), [`Rejection::BatchedInitialize`] if it is a batch holding an
/// `initialize` request.
#[cfg(feature = "mcp")]
pub(crate) fn is_initialize(body: &[u8]) -> Result<bool, Rejection> {
    match serde_json::from_slice::<probe::Message>(body) {
        Ok(probe::Message::Single(is_init)) => Ok(is_init),
        Ok(probe::Message::Batch(false)) => Ok(false),
        Ok(probe::Message::Batch(true)) => Err(Rejection::BatchedInitialize),
        Err(_) => Err(Rejection::ParseError),
    }
}

/// Serde visitors that look at a JSON-RPC message without keeping it.
#[cfg(feature = "mcp")]
mod probe {
    use std::fmt;

    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    /// A message: one value (is it an `initialize` request?) or a batch (does it hold one?).
    pub(super) enum Message {
        Single(bool),
        Batch(bool),
    }

    impl<'de> de::Deserialize<'de> for Message {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(MessageVisitor)
        }
    }

    struct MessageVisitor;

    impl<'de> Visitor<'de> for MessageVisitor {
        type Value = Message;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Message, A::Error> {
            Ok(Message::Single(request(map)?))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
            let mut any = false;
            while let Some(Element(is_init)) = seq.next_element()? {
                any |= is_init;
            }
            Ok(Message::Batch(any))
        }

        fn visit_bool<E>(self, _: bool) -> Result<Message, E> {
            Ok(Message::Single(false))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Message, E> {
            Ok(Message::Single(false))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Message, E> {
            Ok(Message::Single(false))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Message, E> {
            Ok(Message::Single(false))
        }
        fn visit_str<E>(self, _: &str) -> Result<Message, E> {
            Ok(Message::Single(false))
        }
        fn visit_unit<E>(self) -> Result<Message, E> {
            Ok(Message::Single(false))
        }
    }

    /// One element of a batch: is it an `initialize` request? Any JSON value is accepted.
    struct Element(bool);

    impl<'de> de::Deserialize<'de> for Element {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match d.deserialize_any(MessageVisitor)? {
                Message::Single(is_init) => Ok(Element(is_init)),
                // A batch inside a batch is no request.
                Message::Batch(_) => Ok(Element(false)),
            }
        }
    }

    /// Reads an object's `method` and `id` (the last of repeated keys wins, as with
    /// `serde_json::Value`), skipping everything else.
    fn request<'de, A: MapAccess<'de>>(mut map: A) -> Result<bool, A::Error> {
        let mut method_is_initialize = false;
        let mut id_ok = false;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Method => method_is_initialize = map.next_value::<Method>()?.0,
                Key::Id => id_ok = map.next_value::<Id>()?.0,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(method_is_initialize && id_ok)
    }

    enum Key {
        Method,
        Id,
        Other,
    }

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                    Ok(match key {
                        "method" => Key::Method,
                        "id" => Key::Id,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_str(V)
        }
    }

    /// Whether a value is the string `"initialize"`; any other value counts as not.
    struct Method(bool);

    impl<'de> de::Deserialize<'de> for Method {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Accepts(Field::Method)).map(Method)
        }
    }

    /// Whether a value is a valid JSON-RPC request id: a string or a number.
    struct Id(bool);

    impl<'de> de::Deserialize<'de> for Id {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Accepts(Field::Id)).map(Id)
        }
    }

    /// The field whose value [`Accepts`] judges.
    #[derive(Clone, Copy, PartialEq)]
    enum Field {
        Method,
        Id,
    }

    /// A visitor accepting any value, skipping nested ones: `true` if it is what `Field`
    /// wants (`"initialize"` for the method, a string or number for the id).
    struct Accepts(Field);

    impl<'de> Visitor<'de> for Accepts {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a value")
        }
        fn visit_str<E>(self, s: &str) -> Result<bool, E> {
            Ok(self.0 == Field::Id || s == "initialize")
        }
        fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
            Ok(self.0 == Field::Id)
        }
        fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
            Ok(self.0 == Field::Id)
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(self.0 == Field::Id)
        }
        fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(false)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(version: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            MCP_PROTOCOL_VERSION,
            HeaderValue::from_str(version).unwrap(),
        );
        h
    }

    #[test]
    fn routes_by_protocol_version() {
        assert_eq!(is_sessionless(&HeaderMap::new()), Ok(false));
        assert_eq!(is_sessionless(&headers("2025-11-25")), Ok(false));
        assert_eq!(is_sessionless(&headers("2026-07-28")), Ok(true));
        assert_eq!(is_sessionless(&headers("2027-01-01")), Ok(true));
        for bad in ["", "2025-11", "2025/11/25", "latest", "2025-11-250"] {
            assert_eq!(
                is_sessionless(&headers(bad)),
                Err(Rejection::InvalidProtocolVersion),
                "{bad:?}"
            );
        }
    }

    #[test]
    #[cfg(feature = "mcp")]
    fn detects_initialize() {
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        assert_eq!(is_initialize(init), Ok(true));
        assert_eq!(
            is_initialize(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(false)
        );
        assert_eq!(is_initialize(b"{nope"), Err(Rejection::ParseError));
        let notification = br#"{"jsonrpc":"2.0","method":"initialize","params":{}}"#;
        assert_eq!(is_initialize(notification), Ok(false));
        let null_id = br#"{"jsonrpc":"2.0","id":null,"method":"initialize"}"#;
        assert_eq!(is_initialize(null_id), Ok(false));
        assert_eq!(
            is_initialize(br#"[{"jsonrpc":"2.0","id":1,"method":"initialize"}]"#),
            Err(Rejection::BatchedInitialize)
        );
        let deep = "[".repeat(10_000);
        assert_eq!(is_initialize(deep.as_bytes()), Err(Rejection::ParseError));
        // Escapes in the method name, the last of repeated keys, ids of every kind.
        let escaped = br#"{"id":"a","method":"initi\u0061lize"}"#;
        assert_eq!(is_initialize(escaped), Ok(true));
        let repeated = br#"{"id":1,"method":"initialize","method":"ping"}"#;
        assert_eq!(is_initialize(repeated), Ok(false));
        for id in ["1.5", "-3", r#""x""#] {
            let body = format!(r#"{{"id":{id},"method":"initialize","params":{{"a":[1,{{}}]}}}}"#);
            assert_eq!(is_initialize(body.as_bytes()), Ok(true), "{id}");
        }
        for id in ["true", "{}", "[1]"] {
            let body = format!(r#"{{"id":{id},"method":"initialize"}}"#);
            assert_eq!(is_initialize(body.as_bytes()), Ok(false), "{id}");
        }
        for other in [
            "[]",
            "[0,0,0]",
            "null",
            "42",
            r#""initialize""#,
            r#"[[{"id":1,"method":"initialize"}]]"#,
        ] {
            assert_eq!(is_initialize(other.as_bytes()), Ok(false), "{other}");
        }
        assert_eq!(is_initialize(b"{} x"), Err(Rejection::ParseError));
    }
}
