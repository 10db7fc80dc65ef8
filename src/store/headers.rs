//! The replayed headers of an opening request as bytes: one `name:value\n` line per value, in
//! order: the `headers` field of `RedisStore` and `PostgresStore` records.
//!
//! Header names are lowercase tokens (no `:`) and a header value cannot hold `\n`, so the
//! encoding is unambiguous; values are kept byte for byte, obs-text (0x80–0xFF) included.
//! Only the [`is_sensitive`](http::HeaderValue::is_sensitive) flag is not kept.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// `headers` as stored: one `name:value\n` line per value.
pub(crate) fn encode(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Reads what [`encode`] wrote; `None` if `bytes` is not such a list.
pub(crate) fn decode(bytes: &[u8]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n')?;
        let (line, tail) = rest.split_at(end);
        rest = &tail[1..];
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = HeaderValue::from_bytes(&line[colon + 1..]).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_junk() {
        let mut headers = HeaderMap::new();
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        headers.insert("x", HeaderValue::from_bytes(b"caf\xe9\t:").unwrap());
        headers.insert("empty", HeaderValue::from_static(""));
        let bytes = encode(&headers);
        assert_eq!(decode(&bytes), Some(headers));
        assert_eq!(decode(b""), Some(HeaderMap::new()));
        assert_eq!(decode(b"no-newline:x"), None);
        assert_eq!(decode(b"no colon\n"), None);
        assert_eq!(decode(b"bad name:x\n"), None);
    }
}
