//! The request spans (feature `spans`): one `mcp_session.request` span per request, with the
//! redacted session id, the protocol version, the decision and the status, read from
//! tracing-subscriber's formatter at each span's close; the layer's open and close events
//! inside them.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use http::StatusCode;
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything the formatter writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }
}

#[tokio::test]
async fn each_request_has_a_span_with_its_decision() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("tower_mcp_session=debug")
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let Fixture(_, _, _, app) = Fixture::mcp(|layer| layer);
    let id = open(&app).await;
    let mut versioned = post(&id);
    versioned
        .headers_mut()
        .insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
    assert_eq!(status_of(&app, versioned).await, StatusCode::OK);
    assert_eq!(status_of(&app, delete(&id)).await, StatusCode::NO_CONTENT);
    assert_not_found(send(&app, post(&id)).await).await;

    let lines = captured.lines();
    let closes: Vec<&String> = lines.iter().filter(|l| l.contains(": close")).collect();
    let redacted = format!("session={}…", &id[..8]);
    let expected = [
        String::from("decision=\"opened\" http.response.status_code=200"),
        String::from("decision=\"routed\" http.response.status_code=200"),
        String::from("decision=\"closed\" http.response.status_code=204"),
        String::from("decision=\"rejected\" http.response.status_code=404"),
    ];
    assert_eq!(closes.len(), expected.len(), "{lines:#?}");
    assert!(
        closes[1].contains("mcp.protocol.version=\"2025-11-25\""),
        "{}",
        closes[1]
    );
    for (line, fields) in closes.iter().zip(&expected) {
        assert!(line.contains("mcp_session.request{"), "{line}");
        assert!(line.contains(&redacted), "{line}");
        assert!(line.contains(fields.as_str()), "{line} lacks {fields}");
        assert!(!line.contains(&id), "the id is never written whole: {line}");
    }
    // The open and close events happen inside the spans of the requests that caused them.
    let opened = lines.iter().find(|l| l.contains("session opened")).unwrap();
    assert!(opened.contains("mcp_session.request{"), "{opened}");
    let closed = lines.iter().find(|l| l.contains("session closed")).unwrap();
    assert!(closed.contains("mcp_session.request{"), "{closed}");
    assert!(lines.iter().all(|l| !l.contains(&id)));
}
