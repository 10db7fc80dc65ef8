//! The server of the `rmcp_server` example: an rmcp `ServerHandler` with the tools, resources
//! and prompts the MCP conformance suite's server scenarios call, one stateful rmcp session
//! per layer session (`tower_mcp_session::rmcp::stateful`), rmcp's stateless mode for
//! sessionless requests (MCP-Protocol-Version >= 2026-07-28). Shared with the tests.
//!
//! The same handler serves both paths. What differs by protocol version:
//!
//! - Multi round-trip requests (SEP-2322, the `test_input_required_result_*` tools and
//!   prompt, `test_missing_capability`, `test_streaming_elicitation`): a 2026-07-28 client
//!   gets an `InputRequiredResult` and retries with its answers; in a 2025-11-25 session,
//!   where rmcp refuses that result, the handler sends the same requests to the client over
//!   the session (sampling, elicitation, `roots/list`) and runs the next round itself.
//! - Each request states its client's capabilities (2026-07-28, `_meta`); a tool that needs
//!   one the client did not declare answers -32021 (SEP-2575).
//! - `test_logging_tool` logs only when the request's `_meta` asks for a log level
//!   (2026-07-28); a 2025-11-25 session always gets its messages.
//!
//! What a session keeps lives in the layer's session data (`tower_mcp_session::rmcp::session`
//! reaches it from the request context), not in the handler: the `increment` counter and the
//! level set with `logging/setLevel` (which `notify_later` obeys). With `--redis-url` that is
//! Redis, so every server sees the same values; a handler on one server is a fresh one after a
//! restore on another. In `--mode rmcp-native` (no layer) the handler's own counter is used.
//!
//! - `subscriptions/listen` (2026-07-28) accepts what the server's capabilities advertise.
//! - `test_custom_headers` has `x-mcp-header` annotations: rmcp checks the `Mcp-Param-*`
//!   headers of a 2026-07-28 `tools/call` against its arguments (SEP-2243), through
//!   `ServerHandler::get_tool`.

// MCP logging, sampling and roots are deprecated in rmcp after 2025-11-25 (SEP-2577); this
// server speaks 2025-11-25, where they are current.
#![allow(deprecated)]

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tower_mcp_session::bus::RedisBus;
use tower_mcp_session::rmcp::RedisEventStore;
use tower_mcp_session::store::RedisStore;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities,
    CompleteRequestParams, CompleteResult, CreateMessageRequestParams, CreateMessageResult,
    DEFAULT_MRTR_MAX_ROUNDS, ElicitRequestParams, ElicitResult, ElicitationAction,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, InputRequest, InputRequests,
    InputRequiredResult, InputResponses, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListRootsResult, ListToolsResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ServerConfig, SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams,
};
use rmcp::model::{RequestStateCodec, SealOptions};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_mcp_session::guard::OriginGuardLayer;
use tower_mcp_session::{Cluster, SessionLayer, Sessions};

/// A 1x1 red PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV header with no samples.
const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=";

/// The limits the layer enforces.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// A session unused this long expires.
    pub idle_timeout: Duration,
    /// Sessions shared with the other servers of a deployment through Redis: records, data
    /// and messages (store, bus) and rmcp's SSE events (so a stream resumes through any
    /// server). Default: none, everything in this process.
    pub redis: Option<Redis>,
    /// Host names allowed in `Host` and `Origin` besides loopback (`localhost`, `127.0.0.1`,
    /// `[::1]`, any port), checked by the crate's Origin guard before anything else and again
    /// by rmcp itself. Default: none.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the server cross-origin: their `Origin` passes the
    /// guard and CORS answers their preflights. Default: none (no CORS).
    pub allowed_origins: Vec<String>,
    /// How `requestState` handles are kept (SEP-2322): in this process by default; give every
    /// server the same [`RequestStates::sealed`] to make them valid on all of them.
    pub request_states: Arc<RequestStates>,
}

/// What [`Config::redis`] holds.
#[derive(Debug, Clone)]
pub struct Redis {
    /// Session records and data.
    pub store: RedisStore,
    /// Closes and messages between servers.
    pub bus: RedisBus,
    /// rmcp's SSE events, for `Last-Event-ID` through any server.
    pub events: RedisEventStore,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            idle_timeout: Duration::from_secs(30 * 60),
            redis: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            request_states: Arc::default(),
        }
    }
}

/// The router and the handles the tests read.
pub struct App {
    /// `/mcp`, behind the session layer.
    pub router: Router,
    /// The layer's session table.
    pub sessions: Sessions,
    /// Handlers alive now (each stateful session has one; stateless requests one each, while
    /// they run). Read by the tests.
    #[allow(dead_code)]
    pub handlers: Arc<AtomicUsize>,
}

/// Builds the app.
pub fn build(config: Config) -> App {
    let handlers = Arc::new(AtomicUsize::new(0));
    // One table of requestState handles for both paths (a 2026-07-28 client may retry on
    // any connection; every handler of this process can redeem them).
    let states = Arc::clone(&config.request_states);
    let live = Arc::clone(&handlers);
    let shared = Arc::clone(&states);
    let rmcp_config = rmcp_config(&config);
    let mut factory = tower_mcp_session::rmcp::stateful(
        move || Ok(Conformance::new(&live, &shared)),
        rmcp_config.clone(),
    );
    if let Some(redis) = &config.redis {
        factory = factory.event_store(Arc::new(redis.events.clone()));
    }
    let mut layer = SessionLayer::mcp(factory)
        .max_sessions(config.max_sessions)
        .idle_timeout(config.idle_timeout);
    if let Some(redis) = config.redis {
        // A server that does not hold a session restores it by replaying its `initialize`.
        layer = layer.cluster(Cluster::new(redis.store).bus(redis.bus));
    }
    let layer = layer.build();
    let sessions = layer.sessions();
    let live = Arc::clone(&handlers);
    let sessionless = tower_mcp_session::rmcp::stateless(
        move || Ok(Conformance::new(&live, &states)),
        rmcp_config.with_json_response(true),
    );
    let router = Router::new().route_service(
        "/mcp",
        ServiceBuilder::new().layer(layer).service(sessionless),
    );
    let router = guarded(router, &config.allowed_hosts, &config.allowed_origins);
    App {
        router,
        sessions,
        handlers,
    }
}

/// rmcp's own stateful server, without the layer: `StreamableHttpService` with rmcp's
/// `LocalSessionManager` and the default (stateful) config, serving the same handler. For
/// side-by-side measurements (`scripts/compare_rmcp.sh`).
pub fn build_native(config: &Config) -> Router {
    use rmcp::transport::streamable_http_server::StreamableHttpService;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    let live = Arc::new(AtomicUsize::new(0));
    let states = Arc::new(RequestStates::default());
    let service = StreamableHttpService::new(
        move || Ok(Conformance::new(&live, &states)),
        Arc::new(LocalSessionManager::default()),
        rmcp_config(config),
    );
    let router = Router::new().route_service("/mcp", service);
    guarded(router, &config.allowed_hosts, &config.allowed_origins)
}

/// rmcp's HTTP configuration: its own `Host` check (a second line behind the guard) allows
/// loopback and the configured hosts.
fn rmcp_config(config: &Config) -> StreamableHttpServerConfig {
    let hosts = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .chain(config.allowed_hosts.iter().cloned());
    StreamableHttpServerConfig::default().with_allowed_hosts(hosts)
}

/// `router` behind CORS for `origins` (if any) and, outermost, the crate's Origin guard: a
/// request for a foreign host or from a foreign origin gets 403 before CORS or a session sees
/// it (rmcp checks `Host` only, and no `Origin` by default).
fn guarded(router: Router, hosts: &[String], origins: &[String]) -> Router {
    let router = if origins.is_empty() {
        router
    } else {
        let allowed: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim().trim_end_matches('/')).ok())
            .collect();
        router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(allowed))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers(
                    [
                        "mcp-session-id",
                        "mcp-protocol-version",
                        "last-event-id",
                        "content-type",
                        "authorization",
                    ]
                    .map(HeaderName::from_static),
                )
                .expose_headers([HeaderName::from_static("mcp-session-id")]),
        )
    };
    router.layer(
        OriginGuardLayer::loopback()
            .allow_hosts(hosts)
            .allow_origins(origins),
    )
}

/// Counts live handlers: one more while it exists.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The session-data key of the `increment` counter.
const COUNTER: &str = "counter";
/// The session-data key of the level set with `logging/setLevel`.
const LOG_LEVEL: &str = "logLevel";

/// A session-data error as a JSON-RPC error: retriable when the store is unavailable.
fn data_error(error: tower_mcp_session::DataError) -> ErrorData {
    if error.is_retriable() {
        ErrorData::new(
            rmcp::model::ErrorCode(-32010),
            format!("Session data temporarily unavailable: retry later ({error})"),
            Some(json!({ "retryAfterMs": 500 })),
        )
    } else {
        internal(error)
    }
}

/// The MCP server of one session.
pub struct Conformance {
    counter: AtomicU64,
    states: Arc<RequestStates>,
    _alive: Alive,
}

impl Conformance {
    fn new(live: &Arc<AtomicUsize>, states: &Arc<RequestStates>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self {
            counter: AtomicU64::new(0),
            states: Arc::clone(states),
            _alive: Alive(Arc::clone(live)),
        }
    }
}

/// rmcp's model types from their JSON form, as the conformance suite documents them.
fn from_json<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid MCP message")
}

/// A result from its JSON form, with `"resultType": "complete"`: MCP 2026-07-28 requires it in
/// every result (rmcp's own constructors set it; deserializing leaves it out), and rmcp strips
/// it again for peers that negotiated an older version.
fn result<T: DeserializeOwned>(mut value: Value) -> T {
    if let Value::Object(map) = &mut value {
        map.entry("resultType").or_insert_with(|| json!("complete"));
    }
    from_json(value)
}

fn text(text: impl Into<String>) -> CallToolResult {
    result(json!({"content": [{"type": "text", "text": text.into()}]}))
}

fn internal(error: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(error.to_string(), None)
}

fn tools() -> Value {
    let none = json!({"type": "object", "properties": {}});
    let string_arg = |name: &str| json!({"type": "object", "properties": {name: {"type": "string"}}, "required": [name]});
    json!({"tools": [
        {"name": "test_simple_text", "description": "Returns simple text", "inputSchema": none},
        {"name": "test_image_content", "description": "Returns an image", "inputSchema": none},
        {"name": "test_audio_content", "description": "Returns audio", "inputSchema": none},
        {"name": "test_embedded_resource", "description": "Returns an embedded resource", "inputSchema": none},
        {"name": "test_multiple_content_types", "description": "Returns text, image and resource", "inputSchema": none},
        {"name": "test_tool_with_logging", "description": "Logs three messages", "inputSchema": none},
        {"name": "test_tool_with_progress", "description": "Reports progress", "inputSchema": none},
        {"name": "test_error_handling", "description": "Always fails", "inputSchema": none},
        {"name": "test_sampling", "description": "Asks the client's LLM", "inputSchema": string_arg("prompt")},
        {"name": "test_elicitation", "description": "Asks the user", "inputSchema": string_arg("message")},
        {"name": "test_elicitation_sep1034_defaults", "description": "Elicitation with defaults", "inputSchema": none},
        {"name": "test_elicitation_sep1330_enums", "description": "Elicitation with enums", "inputSchema": none},
        {"name": "test_reconnection", "description": "Answers on its stream", "inputSchema": none},
        {"name": "json_schema_2020_12_tool", "description": "Tool with JSON Schema 2020-12 features", "inputSchema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"$anchor": "addressDef", "type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}, "contactMethod": {"type": "string", "enum": ["phone", "email"]}, "phone": {"type": "string"}, "email": {"type": "string"}},
            "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
            "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
            "then": {"required": ["phone"]},
            "else": {"required": ["email"]},
            "additionalProperties": false
        }},
        {"name": "increment", "description": "Adds one to this session's counter and returns it", "inputSchema": none},
        {"name": "whoami", "description": "The client info and capabilities this session's initialize carried", "inputSchema": none},
        {"name": "list_roots", "description": "Asks the client for its roots (roots/list) and returns them", "inputSchema": none},
        {"name": "notify_later", "description": "After the answer, sends a log message on the session's GET stream", "inputSchema": string_arg("message")},
        {"name": "test_input_required_result_elicitation", "description": "Asks the user's name, then greets them (SEP-2322)", "inputSchema": none},
        {"name": "test_input_required_result_sampling", "description": "Asks the client's LLM a question (SEP-2322)", "inputSchema": none},
        {"name": "test_input_required_result_list_roots", "description": "Asks the client for its roots (SEP-2322)", "inputSchema": none},
        {"name": "test_input_required_result_request_state", "description": "Asks for a confirmation, keeping its state in requestState (SEP-2322)", "inputSchema": none},
        {"name": "test_input_required_result_multiple_inputs", "description": "Asks the user, the LLM and the roots at once (SEP-2322)", "inputSchema": none},
        {"name": "test_input_required_result_multi_round", "description": "Asks two questions, one round each (SEP-2322)", "inputSchema": none},
        {"name": "test_input_required_result_tampered_state", "description": "Asks for a confirmation; rejects a requestState it did not issue (SEP-2322)", "inputSchema": none},
        {"name": "test_input_required_result_capabilities", "description": "Asks only what the client declared it can answer (SEP-2322)", "inputSchema": none},
        {"name": "test_missing_capability", "description": "Needs the client's sampling capability (-32021 without it)", "inputSchema": none},
        {"name": "test_streaming_elicitation", "description": "Asks the user for input mid-call: InputRequiredResult, never a request on the response stream", "inputSchema": none},
        {"name": "test_logging_tool", "description": "Logs at the level the request asks for (_meta logLevel), not at all without one", "inputSchema": none},
        {"name": "test_custom_headers", "description": "Echoes its arguments; region and priority travel in Mcp-Param-* headers too (SEP-2243)", "inputSchema": {
            "type": "object",
            "properties": {
                "region": {"type": "string", "description": "Mirrored in Mcp-Param-Region", "x-mcp-header": "Region"},
                "priority": {"type": "integer", "description": "Mirrored in Mcp-Param-Priority", "x-mcp-header": "Priority"},
                "query": {"type": "string", "description": "Not mirrored"}
            },
            "required": ["region", "query"]
        }}
    ]})
}

/// The tool list, parsed once: `list_tools` answers it, `get_tool` looks tools up in it.
fn tool_list() -> &'static ListToolsResult {
    static TOOLS: OnceLock<ListToolsResult> = OnceLock::new();
    TOOLS.get_or_init(|| result(tools()))
}

fn arg(request: &CallToolRequestParams, name: &str) -> String {
    request
        .arguments
        .as_ref()
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

async fn elicit(
    context: &RequestContext<RoleServer>,
    message: &str,
    schema: Value,
) -> Result<Value, ErrorData> {
    let params: ElicitRequestParams =
        from_json(json!({"mode": "form", "message": message, "requestedSchema": schema}));
    let result = context
        .peer
        .create_elicitation(params)
        .await
        .map_err(internal)?;
    serde_json::to_value(result).map_err(internal)
}

/// Whether the request speaks MCP 2026-07-28 or later (a sessionless request, whose `_meta`
/// carries its version) rather than 2025-11-25 (a session, negotiated by `initialize`). The
/// same comparison rmcp makes before it lets an `InputRequiredResult` out.
fn speaks_2026(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// -32021 (MissingRequiredClientCapability, `data.requiredCapabilities` naming them) unless
/// the client declared each of `needed` ("sampling", "elicitation", "roots"): per request in
/// `_meta` on 2026-07-28, at `initialize` in a 2025-11-25 session. A server must not rely on
/// capabilities the client did not declare (SEP-2575).
fn require(context: &RequestContext<RoleServer>, needed: &[&str]) -> Result<(), ErrorData> {
    let declared = declared(context)?;
    let missing: serde_json::Map<String, Value> = needed
        .iter()
        .filter(|name| declared.get(**name).is_none())
        .map(|name| ((*name).to_owned(), json!({})))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let missing: ClientCapabilities = from_json(Value::Object(missing));
    Err(ErrorData::missing_required_client_capability(missing))
}

/// The client's capabilities as JSON (an object; empty if it declared none).
fn declared(context: &RequestContext<RoleServer>) -> Result<Value, ErrorData> {
    serde_json::to_value(context.client_capabilities().unwrap_or_default()).map_err(internal)
}

/// One round of a multi round-trip request (SEP-2322): the answer, or what the client must
/// answer first.
enum Round<T> {
    Done(T),
    Ask(InputRequiredResult),
}

/// Runs a multi round-trip request whose rounds `round` computes from the answers and the
/// `requestState` the client sent back. A 2026-07-28 client drives the rounds: it gets the
/// `InputRequiredResult` and retries. In a 2025-11-25 session, where rmcp refuses to send an
/// `InputRequiredResult`, the handler sends those requests to the client itself, over the
/// session (sampling, elicitation, `roots/list`, as `test_sampling` does), and runs the next
/// round with the answers, up to rmcp's own limit on rounds.
async fn rounds<T>(
    context: &RequestContext<RoleServer>,
    mut answers: InputResponses,
    mut state: Option<String>,
    round: impl Fn(&InputResponses, Option<&str>) -> Result<Round<T>, ErrorData>,
) -> Result<Round<T>, ErrorData> {
    if speaks_2026(context) {
        return round(&answers, state.as_deref());
    }
    for _ in 0..DEFAULT_MRTR_MAX_ROUNDS {
        match round(&answers, state.as_deref())? {
            Round::Ask(asked) => {
                answers =
                    ask_over_session(context, asked.input_requests.unwrap_or_default()).await?;
                state = asked.request_state;
            }
            done @ Round::Done(_) => return Ok(done),
        }
    }
    Err(internal(format!(
        "no answer after {DEFAULT_MRTR_MAX_ROUNDS} rounds"
    )))
}

/// Sends each input request to the client of a 2025-11-25 session and collects its answers
/// under the same keys.
async fn ask_over_session(
    context: &RequestContext<RoleServer>,
    requests: InputRequests,
) -> Result<InputResponses, ErrorData> {
    let peer = &context.peer;
    let mut answers = InputResponses::new();
    for (key, request) in requests {
        let answer = match request {
            InputRequest::CreateMessage(request) => serde_json::to_value(
                peer.create_message(request.params)
                    .await
                    .map_err(internal)?,
            ),
            InputRequest::Elicitation(request) => serde_json::to_value(
                peer.create_elicitation(request.params)
                    .await
                    .map_err(internal)?,
            ),
            InputRequest::ListRoots(_) => {
                serde_json::to_value(peer.list_roots().await.map_err(internal)?)
            }
            other => return Err(internal(format!("cannot send {other:?} over a session"))),
        };
        answers.insert(key, answer.map_err(internal)?);
    }
    Ok(answers)
}

/// An `elicitation/create` input request for one required `field` of JSON type `kind`.
fn ask_user(message: &str, field: &str, kind: &str) -> InputRequest {
    from_json(json!({"method": "elicitation/create", "params": {
        "mode": "form",
        "message": message,
        "requestedSchema": {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
    }}))
}

/// A `sampling/createMessage` input request.
fn ask_llm(prompt: &str, max_tokens: u32) -> InputRequest {
    from_json(json!({"method": "sampling/createMessage", "params": {
        "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
        "maxTokens": max_tokens
    }}))
}

/// A `roots/list` input request.
fn ask_roots() -> InputRequest {
    from_json(json!({"method": "roots/list", "params": {}}))
}

fn asking<const N: usize>(requests: [(&str, InputRequest); N]) -> InputRequests {
    requests
        .into_iter()
        .map(|(key, request)| (key.to_owned(), request))
        .collect()
}

/// The client's answer under `key` as a `T`: `None` if it sent none (the round asks again:
/// a missing or misnamed answer is re-requested, SEP-2322), -32602 if it is not a `T` (an
/// answer of the wrong shape is a protocol error, not a reason to ask again).
fn answer<T: DeserializeOwned>(
    answers: &InputResponses,
    key: &str,
) -> Result<Option<T>, ErrorData> {
    let Some(value) = answers.get(key) else {
        return Ok(None);
    };
    serde_json::from_value(value.clone())
        .map(Some)
        .map_err(|error| {
            ErrorData::invalid_params(format!("inputResponses[{key:?}]: {error}"), None)
        })
}

/// The user's answer to elicitation `key`: `None` if not answered yet, `Some(None)` if they
/// declined or cancelled, `Some(Some(text))` with the accepted `field` (-32602 if an
/// accepted answer lacks it).
fn elicited(
    answers: &InputResponses,
    key: &str,
    field: &str,
) -> Result<Option<Option<String>>, ErrorData> {
    let Some(result) = answer::<ElicitResult>(answers, key)? else {
        return Ok(None);
    };
    if !matches!(result.action, ElicitationAction::Accept) {
        return Ok(Some(None));
    }
    match result
        .content
        .as_ref()
        .and_then(|content| content.get(field))
    {
        Some(Value::String(text)) => Ok(Some(Some(text.clone()))),
        Some(other) => Ok(Some(Some(other.to_string()))),
        None => Err(ErrorData::invalid_params(
            format!("inputResponses[{key:?}] accepts without {field:?}"),
            None,
        )),
    }
}

/// The LLM's text in the answer to sampling request `key`.
fn sampled(answers: &InputResponses, key: &str) -> Result<Option<String>, ErrorData> {
    let Some(result) = answer::<CreateMessageResult>(answers, key)? else {
        return Ok(None);
    };
    let result = serde_json::to_value(result).map_err(internal)?;
    let text = result.pointer("/content/text").and_then(Value::as_str);
    Ok(Some(text.unwrap_or("(no text)").to_owned()))
}

/// The root URIs in the answer to `roots/list` request `key`.
fn listed_roots(answers: &InputResponses, key: &str) -> Result<Option<String>, ErrorData> {
    let Some(result) = answer::<ListRootsResult>(answers, key)? else {
        return Ok(None);
    };
    let uris: Vec<&str> = result.roots.iter().map(|root| root.uri.as_str()).collect();
    Ok(Some(uris.join(", ")))
}

/// How long an issued `requestState` handle stays good.
const STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// Most handles outstanding at once (then the oldest goes).
const MAX_STATES: usize = 10_000;

/// The `requestState` handles this server issued (SEP-2322), each for the request it belongs
/// to, with the answers the client gave in earlier rounds.
///
/// Without a key the state stays in this process: the client holds an unguessable handle (a
/// counter under a per-process keyed hash), good for one retry, so a forged, altered,
/// replayed or expired one is simply unknown; another server behind the same balancer does
/// not know it. With a key ([`RequestStates::sealed`], the same on every server) the state is
/// sealed into the string itself with rmcp's `RequestStateCodec` (HMAC-SHA256, bound to the
/// request's name, 10 minutes): any server holding the key opens it, a forged, altered or
/// expired one fails verification, but a copy can be retried within its 10 minutes (nothing
/// is kept to tell a second use).
#[derive(Default)]
pub struct RequestStates {
    keys: RandomState,
    next: AtomicU64,
    issued: Mutex<HashMap<String, Issued>>,
    codec: Option<RequestStateCodec>,
}

struct Issued {
    at: Instant,
    request: String,
    answers: InputResponses,
}

impl RequestStates {
    /// States sealed with `key` (at least 32 bytes, the same on every server), valid on every
    /// server that holds it.
    pub fn sealed(key: &[u8]) -> Result<Self, String> {
        let codec = RequestStateCodec::try_new(key.to_vec()).map_err(|e| {
            format!(
                "the requestState key: {e} (at least {} bytes)",
                RequestStateCodec::MIN_KEY_LENGTH
            )
        })?;
        Ok(Self {
            codec: Some(codec),
            ..Self::default()
        })
    }

    /// A new handle for `request` (a tool or prompt name) with the answers so far.
    fn issue(&self, request: &str, answers: InputResponses) -> String {
        if let Some(codec) = &self.codec {
            let options = SealOptions::new()
                .associated_data(request.as_bytes())
                .ttl(STATE_TTL);
            // A map of JSON values always serializes.
            return codec.seal_json_with(&answers, &options).unwrap_or_default();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let handle = format!("{n:x}.{:016x}", self.keys.hash_one(n));
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(PoisonError::into_inner);
        issued.retain(|_, state| now.duration_since(state.at) < STATE_TTL);
        if issued.len() >= MAX_STATES
            && let Some(oldest) = issued
                .iter()
                .min_by_key(|(_, state)| state.at)
                .map(|(handle, _)| handle.clone())
        {
            issued.remove(&oldest);
        }
        let request = request.to_owned();
        issued.insert(
            handle.clone(),
            Issued {
                at: now,
                request,
                answers,
            },
        );
        handle
    }

    /// The answers behind `handle`, once; -32602 if this server did not issue it for
    /// `request`, or it expired or was used.
    fn redeem(&self, request: &str, handle: &str) -> Result<InputResponses, ErrorData> {
        if let Some(codec) = &self.codec {
            return codec
                .open_json_with(handle, request.as_bytes())
                .map_err(|_| refused_state());
        }
        let issued = self
            .issued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(handle);
        match issued {
            Some(state) if state.request == request && state.at.elapsed() < STATE_TTL => {
                Ok(state.answers)
            }
            _ => Err(refused_state()),
        }
    }
}

impl std::fmt::Debug for RequestStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestStates")
            .field("sealed", &self.codec.is_some())
            .finish_non_exhaustive()
    }
}

/// -32602 for a `requestState` that does not verify.
fn refused_state() -> ErrorData {
    ErrorData::invalid_params(
        "requestState failed verification: not issued by this server for this request, expired or already used",
        None,
    )
}

/// The tools that take several rounds (SEP-2322).
const ROUND_TOOLS: &[&str] = &[
    "test_input_required_result_elicitation",
    "test_input_required_result_sampling",
    "test_input_required_result_list_roots",
    "test_input_required_result_request_state",
    "test_input_required_result_multiple_inputs",
    "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state",
    "test_input_required_result_capabilities",
    "test_missing_capability",
    "test_streaming_elicitation",
];

/// The prompt that asks first (SEP-2322).
const ROUND_PROMPT: &str = "test_input_required_result_prompt";

impl Conformance {
    /// The answers so far of a request that keeps them in `requestState`: those the handle
    /// stands for plus this retry's answers under `keys` (others are ignored). Without a
    /// handle the request starts over: answers sent without one are not trusted.
    fn answers_so_far(
        &self,
        request: &str,
        keys: &[&str],
        answers: &InputResponses,
        state: Option<&str>,
    ) -> Result<InputResponses, ErrorData> {
        let Some(handle) = state else {
            return Ok(InputResponses::new());
        };
        let mut so_far = self.states.redeem(request, handle)?;
        for key in keys {
            if let Some(answer) = answers.get(*key) {
                so_far.insert((*key).to_owned(), answer.clone());
            }
        }
        Ok(so_far)
    }

    /// Asks `requests`, carrying the answers so far in a new `requestState` handle.
    fn ask_keeping(
        &self,
        request: &str,
        requests: InputRequests,
        so_far: InputResponses,
    ) -> Round<String> {
        let handle = self.states.issue(request, so_far);
        Round::Ask(InputRequiredResult::new(Some(requests), Some(handle)))
    }

    /// One round of tool `name` (one of [`ROUND_TOOLS`]), given the client's answers and
    /// `requestState`; the text of the tool's result when done.
    fn tool_round(
        &self,
        name: &str,
        context: &RequestContext<RoleServer>,
        answers: &InputResponses,
        state: Option<&str>,
    ) -> Result<Round<String>, ErrorData> {
        let ask = |requests| {
            Ok(Round::Ask(InputRequiredResult::from_input_requests(
                requests,
            )))
        };
        let done = |text: String| Ok(Round::Done(text));
        match name {
            "test_input_required_result_elicitation" => {
                require(context, &["elicitation"])?;
                match elicited(answers, "user_name", "name")? {
                    None => ask(asking([(
                        "user_name",
                        ask_user("What is your name?", "name", "string"),
                    )])),
                    Some(Some(name)) => done(format!("Hello, {name}!")),
                    Some(None) => done("The user gave no name.".to_owned()),
                }
            }
            "test_input_required_result_sampling" | "test_missing_capability" => {
                require(context, &["sampling"])?;
                match sampled(answers, "capital_question")? {
                    None => ask(asking([(
                        "capital_question",
                        ask_llm("What is the capital of France?", 100),
                    )])),
                    Some(text) => done(format!("LLM response: {text}")),
                }
            }
            "test_input_required_result_list_roots" => {
                require(context, &["roots"])?;
                match listed_roots(answers, "client_roots")? {
                    None => ask(asking([("client_roots", ask_roots())])),
                    Some(roots) => done(format!("Client roots: {roots}")),
                }
            }
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                require(context, &["elicitation"])?;
                let so_far = self.answers_so_far(name, &["confirm"], answers, state)?;
                match elicited(&so_far, "confirm", "ok")? {
                    None => Ok(self.ask_keeping(
                        name,
                        asking([("confirm", ask_user("Please confirm", "ok", "boolean"))]),
                        so_far,
                    )),
                    Some(ok) => done(format!(
                        "state-ok: requestState verified, confirmed: {}",
                        ok.as_deref().unwrap_or("no (declined)")
                    )),
                }
            }
            "test_input_required_result_multiple_inputs" => {
                require(context, &["elicitation", "sampling", "roots"])?;
                let keys = ["user_name", "greeting", "client_roots"];
                let so_far = self.answers_so_far(name, &keys, answers, state)?;
                let user = elicited(&so_far, "user_name", "name")?;
                let greeting = sampled(&so_far, "greeting")?;
                let roots = listed_roots(&so_far, "client_roots")?;
                let (Some(user), Some(greeting), Some(roots)) = (&user, &greeting, &roots) else {
                    // Ask again only what is still missing; the rest travels in the state.
                    let mut missing = InputRequests::new();
                    if user.is_none() {
                        missing.insert(
                            "user_name".to_owned(),
                            ask_user("What is your name?", "name", "string"),
                        );
                    }
                    if greeting.is_none() {
                        missing.insert("greeting".to_owned(), ask_llm("Generate a greeting", 50));
                    }
                    if roots.is_none() {
                        missing.insert("client_roots".to_owned(), ask_roots());
                    }
                    return Ok(self.ask_keeping(name, missing, so_far));
                };
                let user = user.as_deref().unwrap_or("(declined)");
                done(format!(
                    "Name: {user}; greeting: {greeting}; roots: {roots}"
                ))
            }
            "test_input_required_result_multi_round" => {
                require(context, &["elicitation"])?;
                let so_far = self.answers_so_far(name, &["step1", "step2"], answers, state)?;
                let Some(user) = elicited(&so_far, "step1", "name")? else {
                    let step1 = ask_user("Step 1: What is your name?", "name", "string");
                    return Ok(self.ask_keeping(name, asking([("step1", step1)]), so_far));
                };
                let Some(user) = user else {
                    return done("The user gave no name.".to_owned());
                };
                let Some(color) = elicited(&so_far, "step2", "color")? else {
                    let step2 = ask_user("Step 2: What is your favorite color?", "color", "string");
                    return Ok(self.ask_keeping(name, asking([("step2", step2)]), so_far));
                };
                let color = color.unwrap_or_else(|| "a secret".to_owned());
                done(format!("{user}'s favorite color is {color}."))
            }
            "test_input_required_result_capabilities" => {
                // Asks only what the client can answer: nothing it did not declare.
                let declared = declared(context)?;
                let mut wanted = InputRequests::new();
                if declared.get("sampling").is_some() {
                    wanted.insert(
                        "capital_question".to_owned(),
                        ask_llm("What is the capital of France?", 100),
                    );
                }
                if declared.get("elicitation").is_some() {
                    wanted.insert(
                        "user_name".to_owned(),
                        ask_user("What is your name?", "name", "string"),
                    );
                }
                if declared.get("roots").is_some() {
                    wanted.insert("client_roots".to_owned(), ask_roots());
                }
                if wanted.is_empty() {
                    return done(
                        "The client declared no sampling, elicitation or roots: nothing to ask."
                            .to_owned(),
                    );
                }
                let mut told = Vec::new();
                if let Some(text) = sampled(answers, "capital_question")? {
                    told.push(format!("LLM: {text}"));
                    wanted.remove("capital_question");
                }
                if let Some(user) = elicited(answers, "user_name", "name")? {
                    told.push(format!("name: {}", user.as_deref().unwrap_or("(declined)")));
                    wanted.remove("user_name");
                }
                if let Some(roots) = listed_roots(answers, "client_roots")? {
                    told.push(format!("roots: {roots}"));
                    wanted.remove("client_roots");
                }
                if wanted.is_empty() {
                    done(told.join("; "))
                } else {
                    ask(wanted)
                }
            }
            "test_streaming_elicitation" => {
                // Input mid-call: on 2026-07-28 an InputRequiredResult on the response, never
                // an elicitation/create request on the response stream (SEP-2575).
                require(context, &["elicitation"])?;
                match elicited(answers, "user_input", "value")? {
                    None => ask(asking([(
                        "user_input",
                        ask_user("Please provide a value", "value", "string"),
                    )])),
                    Some(value) => done(format!(
                        "Received: {}",
                        value.as_deref().unwrap_or("(declined)")
                    )),
                }
            }
            other => Err(ErrorData::invalid_params(
                format!("unknown tool {other}"),
                None,
            )),
        }
    }

    /// One round of [`ROUND_PROMPT`]: the context the user gave, when done.
    fn prompt_round(
        context: &RequestContext<RoleServer>,
        answers: &InputResponses,
    ) -> Result<Round<String>, ErrorData> {
        require(context, &["elicitation"])?;
        Ok(match elicited(answers, "user_context", "context")? {
            None => Round::Ask(InputRequiredResult::from_input_requests(asking([(
                "user_context",
                ask_user("What context should the prompt use?", "context", "string"),
            )]))),
            Some(given) => Round::Done(given.unwrap_or_else(|| "(none given)".to_owned())),
        })
    }

    /// `tools/call` of one of [`ROUND_TOOLS`].
    async fn call_in_rounds(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = &*request.name;
        let answers = request.input_responses.clone().unwrap_or_default();
        let state = request.request_state.clone();
        let round = rounds(context, answers, state, |answers, state| {
            self.tool_round(name, context, answers, state)
        })
        .await?;
        Ok(match round {
            Round::Done(done) => text(done).into(),
            Round::Ask(asked) => asked.into(),
        })
    }
}

impl Conformance {
    async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let peer = &context.peer;
        Ok(match &*request.name {
            "test_simple_text" | "test_reconnection" => {
                text("This is a simple text response for testing.")
            }
            "test_image_content" => result(
                json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]}),
            ),
            "test_audio_content" => result(
                json!({"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]}),
            ),
            "test_embedded_resource" => {
                result(json!({"content": [{"type": "resource", "resource": {
                "uri": "test://embedded-resource", "mimeType": "text/plain",
                "text": "This is an embedded resource content."}}]}))
            }
            "test_multiple_content_types" => result(json!({"content": [
                {"type": "text", "text": "Multiple content types test:"},
                {"type": "image", "data": PNG, "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                    "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}
            ]})),
            "test_tool_with_logging" => {
                for (i, message) in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ]
                .into_iter()
                .enumerate()
                {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    let param = LoggingMessageNotificationParam::new(
                        LoggingLevel::Info,
                        Value::from(message),
                    );
                    peer.notify_logging_message(param).await.map_err(internal)?;
                }
                text("Tool with logging executed successfully")
            }
            "test_tool_with_progress" => {
                let token = context.meta.get_progress_token();
                for (i, progress) in [0, 50, 100].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if let Some(token) = &token {
                        let param: ProgressNotificationParam = from_json(
                            json!({"progressToken": token, "progress": progress, "total": 100}),
                        );
                        peer.notify_progress(param).await.map_err(internal)?;
                    }
                }
                text("Tool with progress executed successfully")
            }
            "test_error_handling" => result(json!({"isError": true, "content": [
                {"type": "text", "text": "This tool intentionally returns an error for testing"}]})),
            "test_sampling" => {
                let params: CreateMessageRequestParams = from_json(json!({
                    "messages": [{"role": "user", "content": {"type": "text", "text": arg(&request, "prompt")}}],
                    "maxTokens": 100
                }));
                let result = peer.create_message(params).await.map_err(internal)?;
                let result = serde_json::to_value(result).map_err(internal)?;
                let answer = result
                    .pointer("/content/text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                text(format!("LLM response: {answer}"))
            }
            "test_elicitation" => {
                let schema = json!({"type": "object", "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"}
                }, "required": ["username", "email"]});
                let result = elicit(&context, &arg(&request, "message"), schema).await?;
                text(format!("User response: {result}"))
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({"type": "object", "properties": {
                    "name": {"type": "string", "default": "John Doe"},
                    "age": {"type": "integer", "default": 30},
                    "score": {"type": "number", "default": 95.5},
                    "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                    "verified": {"type": "boolean", "default": true}
                }});
                let result = elicit(&context, "Please review the defaults", schema).await?;
                text(format!("Elicitation completed: {result}"))
            }
            "test_elicitation_sep1330_enums" => {
                let schema = json!({"type": "object", "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {"type": "string", "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"}]},
                    "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"]},
                    "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                    "titledMulti": {"type": "array", "items": {"anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"}]}}
                }});
                let result = elicit(&context, "Please choose", schema).await?;
                text(format!("Elicitation completed: {result}"))
            }
            "json_schema_2020_12_tool" => text("ok"),
            "test_logging_tool" => {
                // 2026-07-28: a request asks for log messages with `_meta`'s logLevel and
                // gets none without it (SEP-2575). A 2025-11-25 session sets its level with
                // logging/setLevel, which this example accepts and ignores: it gets them all.
                let threshold = if speaks_2026(&context) {
                    context.meta.log_level()
                } else {
                    Some(LoggingLevel::Debug)
                };
                let mut sent = 0;
                if let Some(threshold) = threshold {
                    for (level, message) in [
                        (LoggingLevel::Debug, "Logging tool: debug"),
                        (LoggingLevel::Info, "Logging tool: info"),
                        (LoggingLevel::Warning, "Logging tool: warning"),
                    ] {
                        if level as u8 >= threshold as u8 {
                            let param =
                                LoggingMessageNotificationParam::new(level, Value::from(message));
                            peer.notify_logging_message(param).await.map_err(internal)?;
                            sent += 1;
                        }
                    }
                }
                text(format!("Logging tool done: {sent} messages"))
            }
            "test_custom_headers" => {
                // rmcp has already checked the Mcp-Param-* headers against these arguments.
                let arguments = request.arguments.clone().unwrap_or_default();
                text(format!(
                    "Custom headers test completed: {}",
                    Value::Object(arguments)
                ))
            }
            "increment" => match tower_mcp_session::rmcp::session(&context) {
                // In the layer's session data: the same counter on every server.
                Some(session) => {
                    let count = session
                        .data()
                        .increment(COUNTER, 1)
                        .await
                        .map_err(data_error)?;
                    text(count.to_string())
                }
                None => text((self.counter.fetch_add(1, Ordering::SeqCst) + 1).to_string()),
            },
            "whoami" => {
                let info = peer
                    .peer_info()
                    .ok_or_else(|| internal("no initialize seen"))?;
                let info = serde_json::to_value(&*info).map_err(internal)?;
                result(json!({"content": [{"type": "text", "text": info.to_string()}]}))
            }
            "list_roots" => {
                let roots = peer.list_roots().await.map_err(internal)?;
                text(serde_json::to_string(&roots).map_err(internal)?)
            }
            "notify_later" => {
                // Sent after the answer, outside any request: on the session's GET stream,
                // unless the session's level (logging/setLevel) is above info.
                let level = match tower_mcp_session::rmcp::session(&context) {
                    Some(session) => session
                        .data()
                        .get::<LoggingLevel>(LOG_LEVEL)
                        .await
                        .map_err(data_error)?,
                    None => None,
                };
                if level.is_some_and(|level| level as u8 > LoggingLevel::Info as u8) {
                    return Ok(text("filtered by the session's log level"));
                }
                let peer = peer.clone();
                let message = arg(&request, "message");
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let param =
                        LoggingMessageNotificationParam::new(LoggingLevel::Info, message.into());
                    let _ = peer.notify_logging_message(param).await;
                });
                text("scheduled")
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other}"),
                    None,
                ));
            }
        })
    }
}

impl ServerHandler for Conformance {
    fn get_info(&self) -> ServerConfig {
        from_json(json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {
                "tools": {"listChanged": false},
                "resources": {"subscribe": true, "listChanged": false},
                "prompts": {"listChanged": false},
                "logging": {},
                "completions": {}
            },
            "serverInfo": {"name": "tower-mcp-session-rmcp-example", "version": "0.2.0"}
        }))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(tool_list().clone())
    }

    /// Lets rmcp check a 2026-07-28 `tools/call`'s `Mcp-Param-*` headers against the
    /// arguments, per the tool's `x-mcp-header` annotations (SEP-2243).
    fn get_tool(&self, name: &str) -> Option<Tool> {
        tool_list()
            .tools
            .iter()
            .find(|tool| tool.name == name)
            .cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if ROUND_TOOLS.contains(&&*request.name) {
            return self.call_in_rounds(&request, &context).await;
        }
        self.call(request, context).await.map(Into::into)
    }

    /// `subscriptions/listen` (2026-07-28): whatever the client asks for, which rmcp narrows
    /// to what `get_info` advertises (resource updates; no list changes: the lists are
    /// fixed). rmcp acknowledges, tags the stream's notifications with the subscription id
    /// and keeps the stream open until the client leaves.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Kept in the layer's session data, where every server of the session reads it.
        if let Some(session) = tower_mcp_session::rmcp::session(&context) {
            session
                .data()
                .insert(LOG_LEVEL, &request.level)
                .await
                .map_err(data_error)?;
        }
        Ok(())
    }

    async fn complete(
        &self,
        _request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        Ok(result(
            json!({"completion": {"values": ["paris", "park", "party"], "total": 3, "hasMore": false}}),
        ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(result(json!({"resources": [
            {"uri": "test://static-text", "name": "static-text", "description": "A static text resource", "mimeType": "text/plain"},
            {"uri": "test://static-binary", "name": "static-binary", "description": "A static binary resource", "mimeType": "image/png"},
            {"uri": "test://watched-resource", "name": "watched-resource", "description": "A resource to subscribe to", "mimeType": "text/plain"}
        ]})))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(result(json!({"resourceTemplates": [
            {"uriTemplate": "test://template/{id}/data", "name": "template", "description": "Data by id", "mimeType": "application/json"}
        ]})))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = if uri == "test://static-text" || uri == "test://watched-resource" {
            json!({"uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."})
        } else if uri == "test://static-binary" {
            json!({"uri": uri, "mimeType": "image/png", "blob": PNG})
        } else if let Some(id) = uri
            .strip_prefix("test://template/")
            .and_then(|rest| rest.strip_suffix("/data"))
        {
            let data =
                json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            json!({"uri": uri, "mimeType": "application/json", "text": data.to_string()})
        } else {
            return Err(ErrorData::resource_not_found(
                format!("Resource not found: {uri}"),
                Some(json!({"uri": uri})),
            ));
        };
        let result: ReadResourceResult = result(json!({"contents": [contents]}));
        Ok(result.into())
    }

    async fn subscribe(
        &self,
        _request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn unsubscribe(
        &self,
        _request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let required = |name: &str, description: &str| json!({"name": name, "description": description, "required": true});
        Ok(result(json!({"prompts": [
            {"name": "test_simple_prompt", "description": "A simple prompt"},
            {"name": "test_prompt_with_arguments", "description": "A prompt with arguments",
                "arguments": [required("arg1", "First test argument"), required("arg2", "Second test argument")]},
            {"name": "test_prompt_with_embedded_resource", "description": "A prompt with an embedded resource",
                "arguments": [required("resourceUri", "URI of the resource to embed")]},
            {"name": "test_prompt_with_image", "description": "A prompt with an image"},
            {"name": ROUND_PROMPT, "description": "Asks the user for context first (SEP-2322)"}
        ]})))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name == ROUND_PROMPT {
            let answers = request.input_responses.clone().unwrap_or_default();
            let state = request.request_state.clone();
            let round = rounds(&context, answers, state, |answers, _| {
                Self::prompt_round(&context, answers)
            })
            .await?;
            return Ok(match round {
                Round::Done(given) => {
                    let result: GetPromptResult = result(json!({"messages": [{"role": "user",
                        "content": {"type": "text", "text": format!("Answer with this context in mind: {given}")}}]}));
                    result.into()
                }
                Round::Ask(asked) => asked.into(),
            });
        }
        let arg = |name: &str| {
            request
                .arguments
                .as_ref()
                .and_then(|a| a.get(name))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let user = |content: Value| json!({"role": "user", "content": content});
        let messages = match request.name.as_str() {
            "test_simple_prompt" => json!([user(
                json!({"type": "text", "text": "This is a simple prompt for testing."})
            )]),
            "test_prompt_with_arguments" => json!([user(json!({"type": "text", "text":
                format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2"))}))]),
            "test_prompt_with_embedded_resource" => json!([
                user(
                    json!({"type": "resource", "resource": {"uri": arg("resourceUri"),
                    "mimeType": "text/plain", "text": "Embedded resource content for testing."}})
                ),
                user(
                    json!({"type": "text", "text": "Please process the embedded resource above."})
                )
            ]),
            "test_prompt_with_image" => json!([
                user(json!({"type": "image", "data": PNG, "mimeType": "image/png"})),
                user(json!({"type": "text", "text": "Please analyze the image above."}))
            ]),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown prompt {other}"),
                    None,
                ));
            }
        };
        let result: GetPromptResult = result(json!({"messages": messages}));
        Ok(result.into())
    }
}
