//! `rmcp::RedisEventStore` on Redis as production runs it (issue 18): over TLS with an ACL
//! user, and on a Redis Cluster (each stream key in its session's slot, `MOVED` followed).
//! The servers are those of `scripts/redis/servers.sh`:
//!
//! ```text
//! scripts/redis/servers.sh -- cargo test -p tower-mcp-session-suite --test redis_prod_events
//! ```
//!
//! A test whose `TMS_REDIS_*` variable is unset prints why and returns.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::{EventStore, ServerSseMessage};
use serde_json::json;
use tower_mcp_session::RedisConfig;
use tower_mcp_session::rmcp::RedisEventStore;

const WAIT: Duration = Duration::from_secs(10);

fn var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            eprintln!("skipped: {name} is unset; run under scripts/redis/servers.sh");
            None
        }
    }
}

fn progress(text: &str) -> ServerSseMessage {
    let message: ServerJsonRpcMessage = serde_json::from_value(json!({"jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": {"progressToken": "t", "progress": 1, "message": text}}))
    .unwrap();
    let mut event = ServerSseMessage::default();
    event.message = Some(Arc::new(message));
    event
}

/// Events of streams of several sessions stored interleaved; each replay gives exactly the
/// later events of its own stream, in order, with their ids.
async fn replays(config: &RedisConfig) {
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let prefix = format!("tms-prod-ev:{unique}:");
    let store = RedisEventStore::connect(config, &prefix).unwrap();
    let sessions: Vec<String> = (0..12).map(|n| format!("s{n}-{unique}")).collect();
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); sessions.len()];
    for n in 0..3 {
        for (s, session) in sessions.iter().enumerate() {
            let stream = format!("{session}/{session}:common");
            let id = tokio::time::timeout(
                WAIT,
                store.store_event(&stream, &progress(&format!("{s}-{n}"))),
            )
            .await
            .expect("stored in time")
            .expect("stored");
            ids[s].push(id);
        }
    }
    for (s, ids) in ids.iter().enumerate() {
        let replayed: Vec<ServerSseMessage> = tokio::time::timeout(WAIT, async {
            store
                .replay_events_after(&ids[0])
                .await
                .unwrap()
                .collect()
                .await
        })
        .await
        .expect("replayed in time");
        let got: Vec<(Option<String>, String)> = replayed
            .iter()
            .map(|e| {
                let m = serde_json::to_value(e.message.as_deref().unwrap()).unwrap();
                (
                    e.event_id.clone(),
                    m["params"]["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want: Vec<(Option<String>, String)> = ids[1..]
            .iter()
            .enumerate()
            .map(|(n, id)| (Some(id.clone()), format!("{s}-{}", n + 1)))
            .collect();
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn the_event_store_over_tls_with_an_acl_user() {
    let (Some(port), Some(password), Some(certs)) = (
        var("TMS_REDIS_TLS_PORT"),
        var("TMS_REDIS_ACL_PASSWORD"),
        var("TMS_REDIS_CERTS"),
    ) else {
        return;
    };
    let config = RedisConfig::new(format!("rediss://app:{password}@localhost:{port}"))
        .ca_file(std::path::Path::new(&certs).join("ca.pem"));
    replays(&config).await;
    let shown = format!("{:?}", RedisEventStore::connect(&config, "p:").unwrap());
    assert!(!shown.contains(&password), "{shown}");
}

#[tokio::test]
async fn the_event_store_on_a_redis_cluster() {
    let Some(urls) = var("TMS_REDIS_CLUSTER") else {
        return;
    };
    replays(&RedisConfig::cluster(urls.split(','))).await;
}
