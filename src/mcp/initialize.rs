//! Initialize detection: is the body of a request without a session id an MCP `initialize`
//! request? Probed with serde visitors, without building a JSON tree.

use crate::mcp::McpError;

/// Reads a peeked body: `Ok(true)` if it is a JSON-RPC `initialize` request (with a string or
/// number `id`; an `initialize` notification opens nothing), `Ok(false)` for any other JSON.
///
/// The body is probed, not parsed into a tree: only `method` and `id` of the top-level object
/// (or of each element of a top-level batch) are looked at, everything else is skipped with
/// `IgnoredAny`, so memory stays at the size of the `method` string whatever the body holds.
///
/// # Errors
///
/// [`McpError::NotJson`] if the body is not JSON (nesting deeper than serde_json's limit of
/// 128 counts as not JSON), [`McpError::BatchedInitialize`] if it is a batch holding an
/// `initialize` request.
pub(crate) fn is_initialize(body: &[u8]) -> Result<bool, McpError> {
    match serde_json::from_slice::<probe::Message>(body) {
        Ok(probe::Message::Single(is_init)) => Ok(is_init),
        Ok(probe::Message::Batch(false)) => Ok(false),
        Ok(probe::Message::Batch(true)) => Err(McpError::BatchedInitialize),
        Err(_) => Err(McpError::NotJson),
    }
}

/// Serde visitors that look at a JSON-RPC message without keeping it.
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

    #[test]
    fn detects_initialize() {
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        assert_eq!(is_initialize(init), Ok(true));
        assert_eq!(
            is_initialize(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(false)
        );
        assert_eq!(is_initialize(b"{nope"), Err(McpError::NotJson));
        let notification = br#"{"jsonrpc":"2.0","method":"initialize","params":{}}"#;
        assert_eq!(is_initialize(notification), Ok(false));
        let null_id = br#"{"jsonrpc":"2.0","id":null,"method":"initialize"}"#;
        assert_eq!(is_initialize(null_id), Ok(false));
        assert_eq!(
            is_initialize(br#"[{"jsonrpc":"2.0","id":1,"method":"initialize"}]"#),
            Err(McpError::BatchedInitialize)
        );
        let deep = "[".repeat(10_000);
        assert_eq!(is_initialize(deep.as_bytes()), Err(McpError::NotJson));
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
        assert_eq!(is_initialize(b"{} x"), Err(McpError::NotJson));
    }
}
