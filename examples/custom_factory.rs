//! A session factory that does real work: it loads each session's state from a (simulated)
//! store, asynchronously, and can fail. Plus a custom id format and a custom header.
//!
//! - Header `X-Session-Token` instead of `Mcp-Session-Id`.
//! - Ids `sess_` + 32 hex digits (a random UUID v4, 122 bits from the OS CSPRNG). Whatever the
//!   generator returns, the layer checks it is a valid id before using it.
//! - `POST /login` without a token opens a session for the user named in `X-User` (the
//!   session's principal: a later request with the token but another `X-User` gets 404).
//! - The factory loads the user's profile from the store (a short sleep stands for the round
//!   trip). When the store is down the factory fails: the client gets 500 with JSON-RPC error
//!   -32603, no session is stored and no token is issued.
//!
//! ```text
//! cargo run --example custom_factory
//! ```
//!
//! runs a short scripted demo against the layer (no network) and exits.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_mcp_session::body::{RequestBody, ResponseBody};
use tower_mcp_session::{ClosePolicy, OpenPolicy, Principal, SessionInfo, SessionLayer, Sessions};

/// The session header of this app.
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("x-session-token");
/// The header naming the user (in a real app: set by an authentication layer).
pub const USER_HEADER: HeaderName = HeaderName::from_static("x-user");
/// The prefix of every session id this app mints.
pub const ID_PREFIX: &str = "sess_";

type Body = RequestBody<Full<Bytes>>;
/// What the app takes.
pub type AppRequest = Request<Full<Bytes>>;
/// What the app answers.
pub type AppResponse = Response<ResponseBody<Full<Bytes>>>;

/// What the store keeps about a user, and each of the user's sessions loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The name shown to the user.
    pub display_name: String,
    /// The user's plan.
    pub plan: String,
}

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store is down.
    Unavailable,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable => f.write_str("profile store unavailable"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A stand-in for a database of user profiles.
#[derive(Debug)]
pub struct Store {
    available: AtomicBool,
    latency: Duration,
    profiles: Mutex<HashMap<String, Profile>>,
    loads: AtomicU64,
}

impl Store {
    /// A store that answers after `latency`, holding the profiles of "alice" and "bob".
    pub fn new(latency: Duration) -> Arc<Self> {
        let profiles = [("alice", "Alice", "pro"), ("bob", "Bob", "free")]
            .into_iter()
            .map(|(user, name, plan)| {
                let profile = Profile {
                    display_name: name.to_owned(),
                    plan: plan.to_owned(),
                };
                (user.to_owned(), profile)
            })
            .collect();
        Arc::new(Self {
            available: AtomicBool::new(true),
            latency,
            profiles: Mutex::new(profiles),
            loads: AtomicU64::new(0),
        })
    }

    /// Takes the store down (`false`) or brings it back (`true`).
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// How many profiles were loaded successfully.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }

    /// Loads the profile of `user`; an unknown user (or none) gets a guest profile.
    pub async fn load_profile(&self, user: Option<&Principal>) -> Result<Profile, StoreError> {
        tokio::time::sleep(self.latency).await;
        if !self.available.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable);
        }
        let user = user.map_or("guest", Principal::as_str);
        let profile = self
            .profiles
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_else(|| Profile {
                display_name: user.to_owned(),
                plan: "guest".to_owned(),
            });
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(profile)
    }
}

/// The id generator: `sess_` followed by a random UUID v4 as 32 lowercase hex digits.
pub fn make_session_id() -> String {
    format!("{ID_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// The app: the session layer with the store-backed factory around a sessionless inner
/// service. Returns the service and a handle to its session table.
pub fn app(
    store: Arc<Store>,
) -> (
    impl Service<AppRequest, Response = AppResponse, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static,
    Sessions,
) {
    // No request reaches the inner service here (every request opens or names a session); it
    // is the template handed to the factory, which does not need it.
    let inner = service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(text(StatusCode::NOT_FOUND, "not found\n".to_owned()))
    });

    let factory = move |session: SessionInfo, _inner| {
        let store = Arc::clone(&store);
        async move {
            // Any async work can happen here; the opening request waits for it. An error
            // becomes a 500 for the client and a `tracing` error event for the operator.
            let profile = Arc::new(store.load_profile(session.principal()).await?);
            let requests = Arc::new(AtomicU64::new(0));
            Ok::<_, StoreError>(service_fn(move |req: Request<Body>| {
                let n = requests.fetch_add(1, Ordering::Relaxed) + 1;
                let body = format!(
                    "{} ({} plan) {} {}: request {n} of session {}\n",
                    profile.display_name,
                    profile.plan,
                    req.method(),
                    req.uri().path(),
                    session.id(),
                );
                async move { Ok::<_, Infallible>(text(StatusCode::OK, body)) }
            }))
        }
    };

    let layer = SessionLayer::generic(factory)
        .header(SESSION_HEADER)
        .make_session_id(make_session_id)
        .close_policy(ClosePolicy::when(|parts| {
            parts.method == Method::DELETE && parts.uri.path() == "/logout"
        }))
        .open_policy(OpenPolicy::when(|parts| {
            parts.method == Method::POST && parts.uri.path() == "/login"
        }))
        .principal(|parts| {
            let user = parts.headers.get(USER_HEADER)?.to_str().ok()?;
            Some(Principal::from(user))
        })
        .idle_timeout(Duration::from_secs(15 * 60))
        .build();
    let sessions = layer.sessions();
    (ServiceBuilder::new().layer(layer).service(inner), sessions)
}

/// Builds a request: `method path`, with `X-User` and the session token when given.
pub fn request(method: Method, path: &str, user: Option<&str>, token: Option<&str>) -> AppRequest {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(user) = user {
        request = request.header(USER_HEADER, user);
    }
    if let Some(token) = token {
        request = request.header(SESSION_HEADER, token);
    }
    request.body(Full::default()).unwrap()
}

async fn show<S>(app: &S, req: AppRequest) -> Option<String>
where
    S: Service<AppRequest, Response = AppResponse, Error = Infallible> + Clone,
{
    let line = format!("{} {}", req.method(), req.uri());
    let response = app.clone().oneshot(req).await.unwrap();
    let token = response
        .headers()
        .get(SESSION_HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    println!("{line:<16} -> {status}");
    if let Some(token) = &token {
        println!("    {SESSION_HEADER}: {token}");
    }
    if !body.is_empty() {
        println!("    {}", String::from_utf8_lossy(&body).trim_end());
    }
    token
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let store = Store::new(Duration::from_millis(50));
    let (app, sessions) = app(Arc::clone(&store));

    println!("# alice logs in: the factory loads her profile, the token comes back");
    let token = show(&app, request(Method::POST, "/login", Some("alice"), None))
        .await
        .expect("a token");
    show(
        &app,
        request(Method::GET, "/whoami", Some("alice"), Some(&token)),
    )
    .await;

    println!("\n# someone else with alice's token: 404, as for an unknown session");
    show(
        &app,
        request(Method::GET, "/whoami", Some("mallory"), Some(&token)),
    )
    .await;

    println!("\n# the store goes down: bob's login fails with 500, no session is stored");
    store.set_available(false);
    show(&app, request(Method::POST, "/login", Some("bob"), None)).await;
    println!("    sessions open: {} (alice's)", sessions.len());

    println!("\n# the store is back: bob logs in");
    store.set_available(true);
    let bob = show(&app, request(Method::POST, "/login", Some("bob"), None))
        .await
        .expect("a token");

    println!("\n# logout: DELETE closes the session, the token is dead");
    show(
        &app,
        request(Method::DELETE, "/logout", Some("bob"), Some(&bob)),
    )
    .await;
    show(
        &app,
        request(Method::GET, "/whoami", Some("bob"), Some(&bob)),
    )
    .await;
    println!("    sessions open: {} (alice's)", sessions.len());
}
