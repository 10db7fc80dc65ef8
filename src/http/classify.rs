//! What the layer does with a request, decided from its head alone.
//!
//! The order of the checks:
//!
//! 1. The profile's protocol-version rule (MCP: a version at or after 2026-07-28 is
//!    sessionless and goes to the inner service, and so does a single `MCP-Protocol-Version`
//!    that is not a date on a request without a session id; a repeated header, or a malformed
//!    one with a session id, gets 400).
//! 2. The [`sessionless`](crate::SessionLayerBuilder::sessionless) predicate, if any.
//! 3. The profile's methods (MCP: methods other than GET, POST and DELETE get 405).
//! 4. The session header: repeated or malformed gets 400; absent means the request may open a
//!    session (see [`open`](crate::http::open)).
//! 5. A request the [`ClosePolicy`](crate::ClosePolicy) claims closes its session (204), or
//!    gets 405 if the policy refuses DELETE.
//! 6. Anything else is routed to its session's service, or gets 404.

use http::request::Parts;
use http::{HeaderMap, Method};

use crate::http::config::Config;
use crate::http::policy::CloseKind;
use crate::http::profile::ALLOW_NO_DELETE;
use crate::http::rejection::{InvalidSessionHeader, Rejection};
use crate::id;

/// Where a request goes.
pub(crate) enum Route<'a> {
    /// To the inner service, without a session.
    Sessionless,
    /// Nowhere: the layer answers.
    Reject(Rejection),
    /// No session id: it may open a session.
    Open,
    /// The close policy claims it: close session `id`.
    Close(&'a str),
    /// To the service of session `id`.
    Session(&'a str),
}

/// Classifies a request by its head (see the module docs for the order).
pub(crate) fn classify<'a>(config: &Config, parts: &'a Parts) -> Route<'a> {
    match config.profile.is_sessionless(parts, &config.header) {
        Ok(true) => return Route::Sessionless,
        Ok(false) => {}
        Err(rejection) => return Route::Reject(rejection),
    }
    if config
        .sessionless
        .as_ref()
        .is_some_and(|predicate| predicate(parts))
    {
        return Route::Sessionless;
    }
    if let Err(rejection) = config.profile.check_method(&parts.method, &config.close) {
        return Route::Reject(rejection);
    }
    let id = match session_header(config, &parts.headers) {
        Err(rejection) => return Route::Reject(rejection),
        Ok(None) => return Route::Open,
        Ok(Some(id)) => id,
    };
    let delete = parts.method == Method::DELETE;
    match &config.close.0 {
        CloseKind::Never => Route::Session(id),
        CloseKind::Delete if delete => Route::Close(id),
        CloseKind::RefuseDelete if delete => {
            Route::Reject(Rejection::MethodNotAllowed(ALLOW_NO_DELETE))
        }
        CloseKind::When(predicate) if predicate(parts) => Route::Close(id),
        _ => Route::Session(id),
    }
}

/// The single value of the session header: `Ok(None)` if absent.
fn session_header<'a>(
    config: &Config,
    headers: &'a HeaderMap,
) -> Result<Option<&'a str>, Rejection> {
    let mut values = headers.get_all(&config.header).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidSessionId(InvalidSessionHeader::Repeated));
    }
    let bytes = value.as_bytes();
    id::validate(bytes)
        .map_err(|e| Rejection::InvalidSessionId(InvalidSessionHeader::Invalid(e)))?;
    // `validate` allows visible ASCII only, which is valid UTF-8: this never fails, and if it
    // did, the byte it names is the one at fault.
    std::str::from_utf8(bytes).map(Some).map_err(|e| {
        let byte = bytes[e.valid_up_to()];
        Rejection::InvalidSessionId(InvalidSessionHeader::Invalid(
            id::InvalidSessionId::InvalidByte(byte),
        ))
    })
}
