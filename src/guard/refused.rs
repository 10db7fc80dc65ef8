//! [`Refused`]: why the guard refused a request, and its default answer.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// A request the [guard](super) refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The request carries more than one `Host` header: which one would a proxy have routed
    /// on? 400 Bad Request.
    RepeatedHost,
    /// The request names no host at all (no `Host`, no authority in its target). 403
    /// Forbidden.
    NoHost,
    /// `Host` or the target's authority names a host that is not allowed (holds what it
    /// named, for logs; never sent back). 403 Forbidden.
    ForeignHost(String),
    /// `Origin` names an origin that is not allowed (holds it, for logs; never sent back).
    /// 403 Forbidden.
    ForeignOrigin(String),
}

impl Refused {
    /// The HTTP status of the default answer: 400 for [`RepeatedHost`](Self::RepeatedHost),
    /// 403 for the others.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::RepeatedHost => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The JSON-RPC error message of the default answer.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Self::RepeatedHost => "Bad Request: more than one Host header".into(),
            Self::NoHost | Self::ForeignHost(_) | Self::ForeignOrigin(_) => {
                "Forbidden: Host or Origin not allowed".into()
            }
        }
    }

    /// The default answer: the status and
    /// `{"jsonrpc":"2.0","error":{"code":-32000,"message":..},"id":null}` with
    /// `Content-Type: application/json`, as the session layer's own answers.
    pub fn to_response(&self) -> Response<Bytes> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","error":{{"code":-32000,"message":"{}"}},"id":null}}"#,
            self.message()
        );
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl std::error::Error for Refused {}

/// With the `axum` feature a refusal is an axum response too, its default one.
#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Refused {
    fn into_response(self) -> axum_core::response::Response {
        self.to_response().map(axum_core::body::Body::from)
    }
}
