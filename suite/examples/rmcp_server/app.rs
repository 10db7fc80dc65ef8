//! The server of the `rmcp_server` example: an rmcp `ServerHandler` with the tools, resources
//! and prompts the MCP conformance suite's server scenarios call, one stateful rmcp session
//! per layer session (`tower_mcp_session::rmcp::stateful`), rmcp's stateless mode for
//! sessionless requests (MCP-Protocol-Version >= 2026-07-28). Shared with the tests.
//!
//! `test_custom_headers` has `x-mcp-header` annotations: rmcp checks the `Mcp-Param-*`
//! headers of a 2026-07-28 `tools/call` against its arguments (SEP-2243), through
//! `ServerHandler::get_tool`.

// MCP logging, sampling and roots are deprecated in rmcp after 2025-11-25 (SEP-2577); this
// server speaks 2025-11-25, where they are current.
#![allow(deprecated)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    CreateMessageRequestParams, ElicitRequestParams, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ServerConfig, SetLevelRequestParams, SubscribeRequestParams, Tool, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_mcp_session::{SessionLayer, Sessions};

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            idle_timeout: Duration::from_secs(30 * 60),
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
    let live = Arc::clone(&handlers);
    let rmcp_config = StreamableHttpServerConfig::default();
    let factory =
        tower_mcp_session::rmcp::stateful(move || Ok(Conformance::new(&live)), rmcp_config.clone());
    let layer = SessionLayer::mcp(factory.clone())
        .max_sessions(config.max_sessions)
        .idle_timeout(config.idle_timeout);
    let sessions = layer.sessions();
    factory.bind(&sessions);
    let live = Arc::clone(&handlers);
    let sessionless = tower_mcp_session::rmcp::stateless(
        move || Ok(Conformance::new(&live)),
        rmcp_config.with_json_response(true),
    );
    let router = Router::new().route_service(
        "/mcp",
        ServiceBuilder::new().layer(layer).service(sessionless),
    );
    App {
        router,
        sessions,
        handlers,
    }
}

/// rmcp's own stateful server, without the layer: `StreamableHttpService` with rmcp's
/// `LocalSessionManager` and the default (stateful) config, serving the same handler. For
/// side-by-side measurements (`scripts/compare_rmcp.sh`).
pub fn build_native() -> Router {
    use rmcp::transport::streamable_http_server::StreamableHttpService;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    let live = Arc::new(AtomicUsize::new(0));
    let service = StreamableHttpService::new(
        move || Ok(Conformance::new(&live)),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    Router::new().route_service("/mcp", service)
}

/// Counts live handlers: one more while it exists.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The MCP server of one session.
pub struct Conformance {
    counter: AtomicU64,
    _alive: Alive,
}

impl Conformance {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self {
            counter: AtomicU64::new(0),
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
            "test_custom_headers" => {
                // rmcp has already checked the Mcp-Param-* headers against these arguments.
                let arguments = request.arguments.clone().unwrap_or_default();
                text(format!(
                    "Custom headers test completed: {}",
                    Value::Object(arguments)
                ))
            }
            "increment" => text((self.counter.fetch_add(1, Ordering::SeqCst) + 1).to_string()),
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
                // Sent after the answer, outside any request: on the session's GET stream.
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
        self.call(request, context).await.map(Into::into)
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
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
            {"name": "test_prompt_with_image", "description": "A prompt with an image"}
        ]})))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
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
