//! Drives an MCP server through `tower_mcp_session::client`: initialize, call the `increment`
//! tool a few times, close the session with DELETE.
//!
//! ```text
//! cargo run --example mcp_server                                   # in one terminal
//! cargo run --example client --features client                     # in another
//! cargo run --example client --features client -- --url http://127.0.0.1:8080/mcp --calls 5
//! MCP_URL=http://127.0.0.1:8080/mcp cargo run --example client --features client
//! ```
//!
//! Restart the server while the client pauses between calls (`--pause-ms 2000`) and the
//! client carries on in a new session: the layer gets 404, initializes again and retries,
//! and the counter starts over at 1.

use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_mcp_session::client::{ClientBody, ResponseBody, SessionClientLayer};
use tracing_subscriber::EnvFilter;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// An MCP client that keeps its session across server restarts.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The MCP endpoint.
    #[arg(long, env = "MCP_URL", default_value = "http://127.0.0.1:3000/mcp")]
    url: String,
    /// How many times to call `increment`.
    #[arg(long, default_value_t = 3)]
    calls: u32,
    /// Pause between calls, in milliseconds (restart the server meanwhile to see recovery).
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let http = Client::builder(TokioExecutor::new()).build_http::<ClientBody>();
    let layer = SessionClientLayer::new();
    let session = layer.handle();
    let mut client = ServiceBuilder::new().layer(layer).service(http);

    // The handshake: initialize (the layer records it and takes the session id), then
    // notifications/initialized.
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "tower-mcp-session-client-example", "version": "0.1.0" },
        },
    });
    let result = rpc(&mut client, &args.url, &init).await?;
    let server = result.pointer("/result/serverInfo/name").cloned();
    println!(
        "initialized: server {}, session {}, protocol {}",
        server.unwrap_or(Value::Null),
        session.session_id().unwrap_or_else(|| "(none)".into()),
        session.protocol_version().unwrap_or_else(|| "?".into()),
    );
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    rpc(&mut client, &args.url, &initialized).await?;

    for id in 2..2 + u64::from(args.calls) {
        let call = json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": { "name": "increment", "arguments": {} },
        });
        let answer = rpc(&mut client, &args.url, &call).await?;
        let text = answer.pointer("/result/content/0/text").cloned();
        println!(
            "increment -> {} (session restarts so far: {})",
            text.unwrap_or(answer),
            session.restarts()
        );
        if args.pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        }
    }

    let status = client.close().await?;
    println!("closed: DELETE answered {status:?}");
    Ok(())
}

/// POSTs one JSON-RPC message; the JSON answer (`null` for a 202 with no body). Reads the
/// answer whether it comes as JSON or as an SSE event.
async fn rpc<S>(client: &mut S, url: &str, message: &Value) -> Result<Value, Error>
where
    S: Service<Request<ClientBody>, Response = Response<ResponseBody<hyper::body::Incoming>>>,
    S::Error: Into<Error>,
{
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(ClientBody::from(message.to_string()))?;
    let response = client
        .ready()
        .await
        .map_err(Into::into)?
        .call(request)
        .await
        .map_err(Into::into)?;
    let status = response.status();
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body: Bytes = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)).into());
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let json = if sse {
        let text = String::from_utf8_lossy(&body);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
            .collect();
        data.join("\n")
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    Ok(serde_json::from_str(&json)?)
}
