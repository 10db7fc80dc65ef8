//! What the copies of one rmcp session on several nodes share through the layer's bus.
//!
//! Behind a balancer without stickiness, the layer restores a session on every node a request
//! of it lands on, and each node runs its own rmcp copy of the session. Three things must
//! cross between the copies (see the [module docs](super#several-nodes)):
//!
//! * what a copy sends outside a request (its *common* stream: logging, list-changed,
//!   requests not tied to a client request) reaches the client's GET stream wherever it is:
//!   each copy pumps its common stream into the bus, and a GET stream on any node is the
//!   session's bus subscription there;
//! * the answer to a request a copy sent to the client reaches that copy: the request's id
//!   names the copy (`tms.<tag>.<id>`), and an answer POSTed to another node goes to it over
//!   the bus;
//! * a `notifications/cancelled` reaches every copy (the cancelled request runs on one of
//!   them; the others ignore an id they do not know, as rmcp does).
//!
//! A message on the bus is [`MAGIC`], one kind byte and JSON; other bytes published to the
//! session (by the application) are left alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, NumberOrString, RequestId, ServerJsonRpcMessage,
};
use rmcp::transport::streamable_http_server::session::ServerSseMessage;
use serde_json::{Value, json};

use crate::handle::session::{Session, WeakSession};

/// The start of every message the relay puts on the bus.
const MAGIC: &[u8] = b"\0tower-mcp-session/rmcp\0";
/// Kind byte: an event of the session's common stream.
const EVENT: u8 = b'e';
/// Kind byte: the client's answer to a request of one copy.
const ANSWER: u8 = b'a';
/// Kind byte: a cancellation, for every copy but the one that received it.
const CANCEL: u8 = b'c';
/// How the ids of a copy's requests to the client start.
const ID_PREFIX: &str = "tms.";

/// One rmcp copy's part in the relay: its tag, and the layer session it belongs to.
pub(crate) struct Relay {
    /// Random, unique per copy: the `<tag>` of `tms.<tag>.<id>`.
    tag: String,
    session: OnceLock<WeakSession>,
    /// Set with `session`: whether the layer's cluster has a bus (else nothing is relayed
    /// and the copy behaves as rmcp does on one node).
    across: AtomicBool,
}

impl Relay {
    pub(crate) fn new() -> Arc<Self> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Arc::new(Self {
            tag: tag[..12].to_owned(),
            session: OnceLock::new(),
            across: AtomicBool::new(false),
        })
    }

    /// Remembers the layer session of the copy (from its first request).
    pub(crate) fn attach(&self, session: &Session) {
        if self.session.set(session.downgrade()).is_ok() {
            self.across.store(session.has_bus(), Ordering::Release);
        }
    }

    /// The layer session, if one was attached.
    pub(crate) fn session(&self) -> Option<&WeakSession> {
        self.session.get()
    }

    /// Whether the copy relays (the layer has a bus).
    pub(crate) fn across(&self) -> bool {
        self.across.load(Ordering::Acquire)
    }

    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// `event` with the id of a request it carries named after this copy (rmcp numbers a
    /// copy's requests from 0, so two copies' ids collide). Idempotent: only numeric ids,
    /// which rmcp gives, are renamed.
    pub(crate) fn name_event(&self, mut event: ServerSseMessage) -> ServerSseMessage {
        if !self.across() {
            return event;
        }
        if let Some(message) = &event.message
            && let ServerJsonRpcMessage::Request(request) = message.as_ref()
            && let NumberOrString::Number(n) = request.id
        {
            let mut request = request.clone();
            request.id = NumberOrString::String(format!("{ID_PREFIX}{}.{n}", self.tag).into());
            event.message = Some(Arc::new(ServerJsonRpcMessage::Request(request)));
        }
        event
    }

    /// Where a message POSTed by the client goes.
    pub(crate) fn route(&self, message: ClientJsonRpcMessage) -> Route {
        if !self.across() {
            return Route::Here(message);
        }
        let id = match &message {
            ClientJsonRpcMessage::Response(response) => Some(&response.id),
            ClientJsonRpcMessage::Error(error) => error.id.as_ref(),
            ClientJsonRpcMessage::Notification(notification) => {
                return if matches!(
                    notification.notification,
                    ClientNotification::CancelledNotification(_)
                ) {
                    Route::Everywhere(message)
                } else {
                    Route::Here(message)
                };
            }
            ClientJsonRpcMessage::Request(_) => None,
        };
        match id.and_then(asked_by) {
            Some((tag, original)) if tag == self.tag => Route::Here(with_id(message, original)),
            Some((tag, original)) => Route::To(tag.to_owned(), with_id(message, original)),
            None => Route::Here(message),
        }
    }

    /// What this copy must take from a message of the bus, if anything.
    pub(crate) fn take(&self, bytes: &[u8]) -> Option<ClientJsonRpcMessage> {
        let (kind, body) = split(bytes)?;
        let field = match kind {
            ANSWER => "to",
            CANCEL => "from",
            _ => return None,
        };
        let mut value: Value = serde_json::from_slice(body).ok()?;
        let mine = value[field].as_str() == Some(self.tag.as_str());
        if mine != (kind == ANSWER) {
            return None;
        }
        serde_json::from_value(value["m"].take()).ok()
    }
}

/// Where [`Relay::route`] sends a client message.
pub(crate) enum Route {
    /// To this copy.
    Here(ClientJsonRpcMessage),
    /// To the copy with this tag, on another node.
    To(String, ClientJsonRpcMessage),
    /// To this copy and to every other.
    Everywhere(ClientJsonRpcMessage),
}

/// The tag and the original id of a request named by [`Relay::name_event`].
fn asked_by(id: &RequestId) -> Option<(&str, RequestId)> {
    let NumberOrString::String(id) = id else {
        return None;
    };
    let (tag, n) = id.strip_prefix(ID_PREFIX)?.split_once('.')?;
    Some((tag, NumberOrString::Number(n.parse().ok()?)))
}

fn with_id(message: ClientJsonRpcMessage, id: RequestId) -> ClientJsonRpcMessage {
    match message {
        ClientJsonRpcMessage::Response(mut response) => {
            response.id = id;
            ClientJsonRpcMessage::Response(response)
        }
        ClientJsonRpcMessage::Error(mut error) => {
            error.id = Some(id);
            ClientJsonRpcMessage::Error(error)
        }
        other => other,
    }
}

fn split(bytes: &[u8]) -> Option<(u8, &[u8])> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (&kind, body) = rest.split_first()?;
    Some((kind, body))
}

fn envelope(kind: u8, body: &Value) -> Bytes {
    let mut bytes = Vec::with_capacity(MAGIC.len() + 128);
    bytes.extend_from_slice(MAGIC);
    bytes.push(kind);
    // A `Value` always serializes.
    let _ = serde_json::to_writer(&mut bytes, body);
    bytes.into()
}

/// The bus message of an event of the common stream.
pub(crate) fn event_message(event: &ServerSseMessage) -> Bytes {
    envelope(
        EVENT,
        &json!({
            "id": event.event_id,
            "m": event.message.as_deref(),
            "r": event.retry.map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
        }),
    )
}

/// The event of the common stream in a bus message, if it is one.
pub(crate) fn event_of(bytes: &[u8]) -> Option<ServerSseMessage> {
    let (EVENT, body) = split(bytes)? else {
        return None;
    };
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut event = ServerSseMessage::default();
    event.event_id = value["id"].as_str().map(str::to_owned);
    if !value["m"].is_null() {
        event.message = Some(Arc::new(serde_json::from_value(value["m"].take()).ok()?));
    }
    event.retry = value["r"].as_u64().map(Duration::from_millis);
    Some(event)
}

/// The bus message of an answer for the copy `tag`.
pub(crate) fn answer_message(tag: &str, message: &ClientJsonRpcMessage) -> Bytes {
    envelope(ANSWER, &json!({ "to": tag, "m": message }))
}

/// The bus message of a cancellation received by the copy `tag`.
pub(crate) fn cancel_message(tag: &str, message: &ClientJsonRpcMessage) -> Bytes {
    envelope(CANCEL, &json!({ "from": tag, "m": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay() -> Arc<Relay> {
        let relay = Relay::new();
        relay.across.store(true, Ordering::Release);
        relay
    }

    fn request(id: i64) -> ServerSseMessage {
        let message: ServerJsonRpcMessage =
            serde_json::from_value(json!({"jsonrpc": "2.0", "id": id, "method": "roots/list"}))
                .unwrap();
        let mut event = ServerSseMessage::default();
        event.event_id = Some("7".into());
        event.message = Some(Arc::new(message));
        event
    }

    fn answer(id: Value) -> ClientJsonRpcMessage {
        serde_json::from_value(json!({"jsonrpc": "2.0", "id": id, "result": {"roots": []}}))
            .unwrap()
    }

    fn id_of(event: &ServerSseMessage) -> Value {
        serde_json::to_value(event.message.as_deref().unwrap()).unwrap()["id"].clone()
    }

    #[test]
    fn a_request_is_named_after_its_copy_once() {
        let relay = relay();
        let named = relay.name_event(request(3));
        let expected = format!("tms.{}.3", relay.tag());
        assert_eq!(id_of(&named), json!(expected));
        assert_eq!(id_of(&relay.name_event(named)), json!(expected));
        // Without a bus nothing is renamed.
        assert_eq!(id_of(&Relay::new().name_event(request(3))), json!(3));
    }

    #[test]
    fn answers_go_to_the_copy_that_asked() {
        let (a, b) = (relay(), relay());
        let id = id_of(&a.name_event(request(5)));
        match b.route(answer(id.clone())) {
            Route::To(tag, message) => {
                assert_eq!(tag, a.tag());
                let bytes = answer_message(&tag, &message);
                assert!(b.take(&bytes).is_none(), "not for b");
                let taken = a.take(&bytes).expect("for a");
                assert_eq!(serde_json::to_value(taken).unwrap()["id"], json!(5));
            }
            _ => panic!("an answer to a's request goes to a"),
        }
        assert!(matches!(a.route(answer(id)), Route::Here(m)
            if serde_json::to_value(&m).unwrap()["id"] == json!(5)));
        // An id the relay did not name stays here, unchanged.
        assert!(matches!(b.route(answer(json!("tms.x"))), Route::Here(_)));
        assert!(matches!(b.route(answer(json!(5))), Route::Here(_)));
    }

    #[test]
    fn a_cancellation_reaches_every_other_copy() {
        let (a, b) = (relay(), relay());
        let cancel: ClientJsonRpcMessage = serde_json::from_value(json!({"jsonrpc": "2.0",
            "method": "notifications/cancelled", "params": {"requestId": 9}}))
        .unwrap();
        let Route::Everywhere(cancel) = a.route(cancel) else {
            panic!("a cancellation goes everywhere");
        };
        let bytes = cancel_message(a.tag(), &cancel);
        assert!(a.take(&bytes).is_none(), "a took it already");
        assert!(b.take(&bytes).is_some());
    }

    #[test]
    fn events_cross_the_bus_unchanged() {
        let event = request(1);
        let back = event_of(&event_message(&event)).unwrap();
        assert_eq!(back.event_id.as_deref(), Some("7"));
        assert_eq!(id_of(&back), json!(1));
        assert!(event_of(b"application bytes").is_none());
        assert!(event_of(&answer_message("t", &answer(json!(1)))).is_none());
    }
}
