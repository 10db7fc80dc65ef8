//! [`SessionFactory`]: builds the service (and, optionally, the typed state) of one session.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use crate::info::SessionInfo;

/// Builds the per-session service, and a typed per-session state, when a session opens.
///
/// Called once per opening request with the new session's [`SessionInfo`] and a clone of the
/// inner service the layer wraps (use it as a template, or ignore it). The returned service
/// serves every request of that session; it is cloned for each request, so it must be
/// `Clone`, and clones must share the session's state (hold it in an `Arc`). A service that
/// cannot be cloned can be wrapped in `tower::buffer::Buffer` (it is then `Clone`, `Send` and
/// `Sync`).
///
/// The state is whatever the application wants to reach from outside the session's service:
/// [`Sessions::state`](crate::Sessions::state) returns a clone of it for a session id (a
/// background job pushing a notification into a session's stream, say), and handlers read it
/// through [`Session::state`](crate::Session::state) or, with the `axum` feature, the
/// [`SessionState`](crate::SessionState) extractor. It lives exactly as long as the session's
/// entry: no second map to fill in the factory and empty in `on_close`.
///
/// If the factory fails, the opening request is answered 500 Internal Server Error
/// (JSON-RPC -32603), the error is logged with `tracing`, and no session is stored.
///
/// Implemented for every closure `Fn(SessionInfo, S) -> Future<Output = Result<Service, E>>`
/// (state `()`), including `async` closures whose future borrows nothing from the closure;
/// wrap a closure that returns `Result<(Service, State), E>` in [`with_state`].
pub trait SessionFactory<S>: Clone + Send + Sync + 'static {
    /// The per-session service.
    type Service;
    /// The per-session state; `()` when there is none.
    type State: Send + Sync + 'static;
    /// Why a session could not be built; logged, never sent to the client.
    type Error: fmt::Display;
    /// Resolves to the per-session service and state.
    type Future: Future<Output = Result<(Self::Service, Self::State), Self::Error>> + Send + 'static;

    /// Builds the service and state of the session described by `info`; `inner` is a clone
    /// of the service the layer wraps.
    fn make_session(&self, info: SessionInfo, inner: S) -> Self::Future;
}

impl<S, F, Fut, T, E> SessionFactory<S> for F
where
    F: Fn(SessionInfo, S) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: fmt::Display,
{
    type Service = T;
    type State = ();
    type Error = E;
    type Future = WithoutState<Fut>;

    fn make_session(&self, info: SessionInfo, inner: S) -> Self::Future {
        WithoutState {
            future: self(info, inner),
        }
    }
}

pin_project! {
    /// The future of a closure factory: its service with the state `()`. Named only as the
    /// `Future` of the closure implementation of [`SessionFactory`].
    pub struct WithoutState<Fut> {
        #[pin]
        future: Fut,
    }
}

impl<Fut, T, E> Future for WithoutState<Fut>
where
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<(T, ()), E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().future.poll(cx)).map(|service| (service, ())))
    }
}

/// A factory from a closure that returns the service and the session's typed state:
/// `Fn(SessionInfo, S) -> Future<Output = Result<(Service, State), E>>`.
///
/// ```
/// use std::convert::Infallible;
/// use tokio::sync::broadcast;
/// use tower::service_fn;
/// use tower_mcp_session::{SessionInfo, SessionLayer, with_state};
/// # type Req = http::Request<tower_mcp_session::body::RequestBody<http_body_util::Full<bytes::Bytes>>>;
///
/// // Each session gets a channel that a background job can push notifications into.
/// let layer = SessionLayer::mcp(with_state(|_info: SessionInfo, _inner: ()| async move {
///     let (notify, _) = broadcast::channel::<String>(16);
///     let service = service_fn(|_req: Req| async {
///         Ok::<_, Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
///     });
///     Ok::<_, Infallible>((service, notify))
/// })).build();
/// let sessions = layer.sessions();
/// // Later: sessions.state::<broadcast::Sender<String>>(&id).map(|tx| tx.send("hi".into()));
/// # let _ = sessions;
/// ```
pub fn with_state<F>(factory: F) -> WithState<F> {
    WithState(factory)
}

/// A [`SessionFactory`] made by [`with_state`].
#[derive(Clone, Copy)]
pub struct WithState<F>(F);

impl<F> fmt::Debug for WithState<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WithState(..)")
    }
}

impl<S, F, Fut, T, St, E> SessionFactory<S> for WithState<F>
where
    F: Fn(SessionInfo, S) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(T, St), E>> + Send + 'static,
    St: Send + Sync + 'static,
    E: fmt::Display,
{
    type Service = T;
    type State = St;
    type Error = E;
    type Future = Fut;

    fn make_session(&self, info: SessionInfo, inner: S) -> Self::Future {
        (self.0)(info, inner)
    }
}
