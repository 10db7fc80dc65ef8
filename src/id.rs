//! Session ids: [`SessionId`], the rules a valid id follows, and [`MakeSessionId`], the
//! strategy that mints new ones.
//!
//! MCP 2025-11-25, Streamable HTTP, Session Management: the id "SHOULD be globally unique and
//! cryptographically secure" and "MUST only contain visible ASCII characters (ranging from 0x21
//! to 0x7E)". The default generator, [`UuidV4`], draws 122 random bits from the operating
//! system's CSPRNG. Whatever generator is configured, the layer checks each id it produces with
//! [`SessionId::parse`] before using it.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A session id: visible ASCII (0x21–0x7E), 1 to [`SessionId::MAX_LEN`] bytes.
///
/// Cheap to clone (a reference-counted string) and hashes like the `str` it holds, so the
/// session table can be searched with the raw header value without allocating.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Longest session id accepted from a request or a generator: 255 bytes.
    ///
    /// The MCP specification sets no upper bound; 255 bytes fits every common scheme (UUIDs,
    /// prefixed random tokens, short JWTs) and keeps a hostile header from costing more than
    /// a bounded amount of hashing.
    pub const MAX_LEN: usize = 255;

    /// Checks `value` against the id rules and returns it as a `SessionId`.
    ///
    /// # Errors
    ///
    /// [`InvalidSessionId`] if `value` is empty, longer than [`MAX_LEN`](Self::MAX_LEN) bytes, or
    /// holds a byte outside visible ASCII (0x21–0x7E; MCP 2025-11-25, Streamable HTTP,
    /// Session Management).
    pub fn parse(value: &str) -> Result<Self, InvalidSessionId> {
        validate(value.as_bytes())?;
        Ok(Self(Arc::from(value)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a header value (ids are visible ASCII, which every header value may hold).
    pub(crate) fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_str(self.as_str())
            .expect("a SessionId holds visible ASCII only, a valid header value")
    }

    /// The id for logs: its first 8 bytes followed by `…` (an id of 8 bytes or fewer shows
    /// only `…`). The layer logs ids only this way; `Debug` uses it too. `Display` prints the
    /// whole id, for building responses.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(&self.0)
    }
}

/// Checks raw header bytes against the id rules without allocating.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), InvalidSessionId> {
    if bytes.is_empty() {
        return Err(InvalidSessionId::Empty);
    }
    if bytes.len() > SessionId::MAX_LEN {
        return Err(InvalidSessionId::TooLong(bytes.len()));
    }
    // Branch-free over the bytes so that it vectorizes; the first bad byte is looked for
    // only when there is one.
    let bad = bytes
        .iter()
        .fold(false, |bad, &b| bad | (b.wrapping_sub(0x21) > 0x7e - 0x21));
    if bad && let Some(&b) = bytes.iter().find(|b| !(0x21..=0x7e).contains(*b)) {
        return Err(InvalidSessionId::InvalidByte(b));
    }
    Ok(())
}

impl Hash for SessionId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must agree with `str`'s hash because of the `Borrow<str>` impl below.
        self.as_str().hash(state);
    }
}

impl Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Redacted: a session id is a bearer token when no principal is bound, so `Debug` output
/// (which ends up in logs and panic messages) shows only its first 8 bytes.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.redacted())
    }
}

/// The first bytes of an id followed by `…`, for logs; see [`SessionId::redacted`].
#[derive(Clone, Copy)]
pub struct Redacted<'a>(&'a str);

/// Any id-like string, redacted as [`SessionId::redacted`] does.
#[cfg_attr(not(feature = "spans"), allow(dead_code))]
pub(crate) fn redact(id: &str) -> Redacted<'_> {
    Redacted(id)
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are ASCII, so any byte index is a char boundary.
        match self.0.get(..REDACTED_PREFIX) {
            Some(prefix) if self.0.len() > REDACTED_PREFIX => write!(f, "{prefix}…"),
            _ => f.write_str("…"),
        }
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Bytes of an id that logs show (32 random bits of a UUID v4: enough to correlate log
/// lines, far too few to guess the rest).
const REDACTED_PREFIX: usize = 8;

impl std::str::FromStr for SessionId {
    type Err = InvalidSessionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a string is not a valid [`SessionId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidSessionId {
    /// The id is empty.
    Empty,
    /// The id is longer than [`SessionId::MAX_LEN`]; holds the length in bytes.
    TooLong(usize),
    /// The id holds a byte outside visible ASCII (0x21–0x7E); holds the first such byte.
    InvalidByte(u8),
}

impl fmt::Display for InvalidSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("session id is empty"),
            Self::TooLong(len) => write!(
                f,
                "session id is {len} bytes long, the limit is {}",
                SessionId::MAX_LEN
            ),
            Self::InvalidByte(b) => write!(
                f,
                "session id holds byte 0x{b:02x}, outside visible ASCII (0x21-0x7E)"
            ),
        }
    }
}

impl std::error::Error for InvalidSessionId {}

/// Mints the id of each new session.
///
/// Implemented for [`UuidV4`] (the default) and for every `Fn() -> String` closure, so a
/// custom scheme (a prefix, a signed token) is one closure away. Each id produced is checked
/// with [`SessionId::parse`]; an invalid one, or one that collides with a live session three
/// times in a row, fails the open with 500 Internal Server Error.
pub trait MakeSessionId: Send + Sync + 'static {
    /// Returns a new, unpredictable id.
    fn make_session_id(&self) -> String;
}

impl<F> MakeSessionId for F
where
    F: Fn() -> String + Send + Sync + 'static,
{
    fn make_session_id(&self) -> String {
        self()
    }
}

/// The default id generator: a random (version 4) UUID in hyphenated lowercase form,
/// 122 bits from the operating system's CSPRNG (the `uuid` crate with `getrandom`).
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV4;

impl MakeSessionId for UuidV4 {
    fn make_session_id(&self) -> String {
        uuid::Uuid::new_v4().hyphenated().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_visible_ascii() {
        let id = SessionId::parse("abc-DEF_123!~").unwrap();
        assert_eq!(id.as_str(), "abc-DEF_123!~");
    }

    #[test]
    fn parse_rejects_bad_ids() {
        assert_eq!(SessionId::parse(""), Err(InvalidSessionId::Empty));
        assert_eq!(
            SessionId::parse("a b"),
            Err(InvalidSessionId::InvalidByte(b' '))
        );
        assert_eq!(
            SessionId::parse("é"),
            Err(InvalidSessionId::InvalidByte(0xc3))
        );
        let long = "a".repeat(SessionId::MAX_LEN + 1);
        assert_eq!(
            SessionId::parse(&long),
            Err(InvalidSessionId::TooLong(SessionId::MAX_LEN + 1))
        );
        assert!(SessionId::parse(&long[1..]).is_ok());
    }

    #[test]
    fn uuid_ids_are_valid_and_distinct() {
        let a = UuidV4.make_session_id();
        let b = UuidV4.make_session_id();
        assert_ne!(a, b);
        assert!(SessionId::parse(&a).is_ok());
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn hashes_like_str() {
        use std::hash::BuildHasher;
        let s = std::hash::RandomState::new();
        let id = SessionId::parse("xyz").unwrap();
        assert_eq!(s.hash_one(&id), s.hash_one("xyz"));
    }
}
