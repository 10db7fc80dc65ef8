//! [`OriginGuardLayer`]: the allow-list, and the check of one request against it.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, Uri, header};

use crate::guard::refused::Refused;

/// The hosts every guard allows: loopback, by name and address.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

pub(crate) type RejectionFn = Arc<dyn Fn(&Refused) -> Response<Bytes> + Send + Sync>;

/// A [`Layer`](tower_layer::Layer) that refuses requests whose `Host`, target authority or `Origin` is not allowed
/// (see the [module docs](super) for the rules and answers). A plain value: each method
/// returns the layer changed; clones share nothing mutable.
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct OriginGuardLayer {
    pub(crate) policy: Arc<Policy>,
    pub(crate) rejection: Option<RejectionFn>,
}

/// What the guard allows.
#[derive(Debug, Default, Clone)]
pub(crate) struct Policy {
    /// Lower-case host names and bracketed IPv6 literals, without port.
    hosts: Vec<Box<str>>,
    /// Exact origins, lower-case, without a trailing `/`.
    origins: Vec<Box<str>>,
}

impl Default for OriginGuardLayer {
    /// The same as [`loopback`](Self::loopback).
    fn default() -> Self {
        Self::loopback()
    }
}

impl OriginGuardLayer {
    /// A guard that allows `localhost`, `127.0.0.1` and `[::1]`, on any port, and origins on
    /// them: what a server bound to loopback needs.
    pub fn loopback() -> Self {
        Self {
            policy: Arc::new(Policy {
                hosts: LOOPBACK.iter().map(|h| Box::from(*h)).collect(),
                origins: Vec::new(),
            }),
            rejection: None,
        }
    }

    /// Also allows `host` (a name such as `mcp.example.com`, an IPv4 address, or an IPv6
    /// address with or without brackets; any port given is ignored) in `Host`, in the
    /// target's authority, and as the host of an `Origin`. Name the host names the server is
    /// reached by behind a proxy or on a public address.
    pub fn allow_host(mut self, host: &str) -> Self {
        let host = normalize_host(host);
        if !host.is_empty() {
            Arc::make_mut(&mut self.policy).hosts.push(host.into());
        }
        self
    }

    /// Also allows each of `hosts` (see [`allow_host`](Self::allow_host)).
    pub fn allow_hosts<I, H>(self, hosts: I) -> Self
    where
        I: IntoIterator<Item = H>,
        H: AsRef<str>,
    {
        hosts
            .into_iter()
            .fold(self, |layer, host| layer.allow_host(host.as_ref()))
    }

    /// Also allows the exact browser origin `origin` (`scheme://host[:port]`, as browsers send
    /// `Origin`; compared case-insensitively, a trailing `/` ignored), even though its host is
    /// not an allowed one; `null` (what sandboxed pages and some redirects send) is allowed
    /// only if listed. An origin on an allowed host needs no listing.
    pub fn allow_origin(mut self, origin: &str) -> Self {
        let origin = normalize_origin(origin);
        if !origin.is_empty() {
            Arc::make_mut(&mut self.policy).origins.push(origin.into());
        }
        self
    }

    /// Also allows each of `origins` (see [`allow_origin`](Self::allow_origin)).
    pub fn allow_origins<I, O>(self, origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: AsRef<str>,
    {
        origins
            .into_iter()
            .fold(self, |layer, origin| layer.allow_origin(origin.as_ref()))
    }

    /// Replaces the default answers (see [`Refused::to_response`]) with what `responder`
    /// returns, as [`SessionLayerBuilder::rejection`](crate::SessionLayerBuilder::rejection)
    /// does for the session layer's.
    pub fn rejection<R>(mut self, responder: R) -> Self
    where
        R: Fn(&Refused) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.rejection = Some(Arc::new(responder));
        self
    }
}

impl fmt::Debug for OriginGuardLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginGuardLayer")
            .field("hosts", &self.policy.hosts)
            .field("origins", &self.policy.origins)
            .field("rejection", &self.rejection.is_some())
            .finish()
    }
}

impl Policy {
    /// Checks a request's head: `Ok` if it may pass (see the module docs).
    pub(crate) fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), Refused> {
        // A map with as many values as names repeats no header: then one lookup each is
        // enough (the usual request); else every value is looked at.
        let repeats = headers.len() != headers.keys_len();
        let host = headers.get(header::HOST);
        if repeats && headers.get_all(header::HOST).iter().nth(1).is_some() {
            return Err(Refused::RepeatedHost);
        }
        let target = uri.authority();
        if host.is_none() && target.is_none() {
            return Err(Refused::NoHost);
        }
        // Bytes throughout: the allowed names are ASCII, so a value that is not cannot match.
        // `Host` holds no userinfo (RFC 9110, 7.2): a value with `@` matches no name.
        if let Some(host) = host
            && !self.host_ok(without_port(host.as_bytes()))
        {
            return Err(Refused::ForeignHost(lossy(host.as_bytes())));
        }
        if let Some(target) = target
            && !self.host_ok(target.host().as_bytes())
        {
            return Err(Refused::ForeignHost(target.as_str().to_owned()));
        }
        if repeats {
            for origin in headers.get_all(header::ORIGIN) {
                if !self.origin_ok(origin.as_bytes()) {
                    return Err(Refused::ForeignOrigin(lossy(origin.as_bytes())));
                }
            }
        } else if let Some(origin) = headers.get(header::ORIGIN)
            && !self.origin_ok(origin.as_bytes())
        {
            return Err(Refused::ForeignOrigin(lossy(origin.as_bytes())));
        }
        Ok(())
    }

    /// Whether `host` (no port, no userinfo) is an allowed host.
    fn host_ok(&self, host: &[u8]) -> bool {
        !host.is_empty()
            && self
                .hosts
                .iter()
                .any(|h| h.as_bytes().eq_ignore_ascii_case(host))
    }

    fn origin_ok(&self, origin: &[u8]) -> bool {
        let trimmed = origin.trim_ascii();
        let trimmed = trimmed.strip_suffix(b"/").unwrap_or(trimmed);
        if self
            .origins
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(trimmed))
        {
            return true;
        }
        // `scheme://authority`, nothing after it.
        let Some(at) = trimmed.windows(3).position(|w| w == b"://") else {
            return false;
        };
        let authority = &trimmed[at + 3..];
        !authority.contains(&b'/')
            && !authority.contains(&b'@')
            && self.host_ok(without_port(authority))
    }
}

/// A header value for a log line.
fn lossy(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` without the port.
fn without_port(authority: &[u8]) -> &[u8] {
    let end = if authority.first() == Some(&b'[') {
        authority
            .iter()
            .position(|&b| b == b']')
            .map_or(authority.len(), |e| e + 1)
    } else {
        authority
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(authority.len())
    };
    &authority[..end]
}

/// An allowed host as the guard compares it: lower case, no port, IPv6 in brackets.
fn normalize_host(host: &str) -> String {
    let host = host.trim();
    // A bare IPv6 address has two colons or more; a name or IPv4 with a port has one.
    if !host.starts_with('[') && host.matches(':').count() >= 2 {
        return format!("[{}]", host.to_ascii_lowercase());
    }
    String::from_utf8_lossy(without_port(host.as_bytes())).to_ascii_lowercase()
}

/// An allowed origin as the guard compares it: lower case, no trailing `/`.
fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hosts() {
        assert_eq!(without_port(b"localhost:3000"), b"localhost");
        assert_eq!(without_port(b"127.0.0.1"), b"127.0.0.1");
        assert_eq!(without_port(b"[::1]:8080"), b"[::1]");
        assert_eq!(without_port(b"[::1]"), b"[::1]");
        assert_eq!(
            without_port(b"user@evil.example.com:80"),
            b"user@evil.example.com"
        );
        assert_eq!(normalize_host("::1"), "[::1]");
        assert_eq!(normalize_host("MCP.Example.com:443"), "mcp.example.com");
        assert_eq!(normalize_host("[FD00::1]:8443"), "[fd00::1]");
    }
}
