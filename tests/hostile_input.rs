//! Hostile input: every malformed, oversized or odd request gets a defined status and a
//! JSON-RPC error body from the layer, never a panic or a 500, never touches a live session
//! it does not name, and never creates one.
//!
//! Each case runs against a layer holding one live session; afterwards the table still holds
//! exactly that session, it still answers, and no request reached the wrong service.

mod reliability;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use reliability::*;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const SERVER_ERROR: i64 = -32000;
const SESSION_NOT_FOUND: i64 = -32001;

/// One hostile request and the answer the layer must give.
struct Case {
    name: String,
    request: Request<Body>,
    status: StatusCode,
    code: i64,
}

fn case(name: impl Into<String>, request: Request<Body>, status: StatusCode, code: i64) -> Case {
    Case {
        name: name.into(),
        request,
        status,
        code,
    }
}

fn post_raw(value: HeaderValue, body: &'static str) -> Request<Body> {
    let mut request = Request::post("/mcp").body(full(body)).unwrap();
    request.headers_mut().insert("mcp-session-id", value);
    request
}

fn post_no_id(body: impl Into<Bytes>) -> Request<Body> {
    Request::post("/mcp")
        .header("content-type", "application/json")
        .body(full(body.into()))
        .unwrap()
}

/// `id` with the case of its first letter flipped.
fn flip_case(id: &str) -> String {
    let at = id
        .find(|c: char| c.is_ascii_alphabetic())
        .expect("a UUID has a letter");
    let mut flipped = id.to_owned();
    let c = flipped.as_bytes()[at] as char;
    let swapped = if c.is_ascii_lowercase() {
        c.to_ascii_uppercase()
    } else {
        c.to_ascii_lowercase()
    };
    flipped.replace_range(at..=at, &swapped.to_string());
    assert_ne!(flipped, id);
    assert!(flipped.eq_ignore_ascii_case(id));
    flipped
}

/// Runs `cases` one by one against a layer with one live session, checking each answer and
/// that the session table and the live session are untouched.
async fn run(cases: impl FnOnce(&str) -> Vec<Case>) {
    let h = harness(|layer| layer);
    let id = open(&h.svc).await;
    let cases = cases(&id);
    assert!(!cases.is_empty());
    for Case {
        name,
        request,
        status,
        code,
    } in cases
    {
        let answer = send(&h.svc, request).await;
        assert_eq!(answer.status, status, "{name}: {answer:?}");
        assert_eq!(answer.json_rpc_code(), code, "{name}: {answer:?}");
        assert!(answer.session_id().is_none(), "{name}: minted an id");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(
                answer.headers[http::header::ALLOW],
                "GET, POST, DELETE",
                "{name}"
            );
        }
        assert_eq!(h.sessions.len(), 1, "{name}: the table changed");
        assert!(h.sessions.contains(&id), "{name}: the live session is gone");
        assert_eq!(h.tracker.created.load(Ordering::SeqCst), 1, "{name}");
        assert_eq!(h.tracker.misrouted(), 0, "{name}");
    }
    let after = send(&h.svc, post(&id, PING)).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.served_by(), Some(id.as_str()));
}

#[tokio::test]
async fn missing_session_id_is_400() {
    run(|_| {
        vec![
            case(
                "POST ping without id",
                post_no_id(PING),
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ),
            case(
                "GET without id",
                Request::get("/mcp").body(empty()).unwrap(),
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ),
            case(
                "DELETE without id",
                Request::delete("/mcp").body(empty()).unwrap(),
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ),
            case(
                "GET initialize without id (only POST opens)",
                Request::get("/mcp").body(full(INIT)).unwrap(),
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ),
        ]
    })
    .await;
}

#[tokio::test]
async fn malformed_session_ids_are_400() {
    run(|id| {
        let mut cases = vec![
            case(
                "empty id",
                post_raw(HeaderValue::from_static(""), PING),
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ),
            case(
                "DELETE with an empty id",
                {
                    let mut r = delete(id);
                    r.headers_mut()
                        .insert("mcp-session-id", HeaderValue::from_static(""));
                    r
                },
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ),
        ];
        for ws in [" ", "   ", "\t", " \t ", "abc def", "\tabc"] {
            cases.push(case(
                format!("whitespace id {ws:?}"),
                post_raw(HeaderValue::from_str(ws).unwrap(), PING),
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ));
        }
        // Whitespace around a live id: still not the id (the layer does not trim; hyper
        // trims what arrives over HTTP/1 before the layer sees it).
        for padded in [format!(" {id}"), format!("{id} "), format!("{id}\t")] {
            cases.push(case(
                format!("live id padded {padded:?}"),
                post_raw(HeaderValue::from_str(&padded).unwrap(), PING),
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ));
        }
        // Bytes outside visible ASCII that `http` lets through: obs-text (0x80-0xFF), which
        // is also not UTF-8 on its own. Control bytes and DEL cannot be put in a
        // `HeaderValue` at all.
        let non_ascii: [&[u8]; 5] = [
            b"\xff\xfe",
            b"abc\x80",
            "sessi\u{f3}n".as_bytes(),
            b"\xc3\x28",
            b"\xed\xa0\x80",
        ];
        for bytes in non_ascii {
            cases.push(case(
                format!("non-visible-ASCII id {bytes:?}"),
                post_raw(HeaderValue::from_bytes(bytes).unwrap(), PING),
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ));
        }
        let mut live_then_byte = id.as_bytes().to_vec();
        live_then_byte.push(0xff);
        cases.push(case(
            "live id followed by 0xFF",
            post_raw(HeaderValue::from_bytes(&live_then_byte).unwrap(), PING),
            StatusCode::BAD_REQUEST,
            SERVER_ERROR,
        ));
        cases.push(case(
            "64 KiB id",
            post_raw(HeaderValue::from_str(&"a".repeat(64 * 1024)).unwrap(), PING),
            StatusCode::BAD_REQUEST,
            SERVER_ERROR,
        ));
        cases.push(case(
            "64 KiB id starting with the live id",
            post_raw(
                HeaderValue::from_str(&format!("{id}{}", "b".repeat(64 * 1024))).unwrap(),
                PING,
            ),
            StatusCode::BAD_REQUEST,
            SERVER_ERROR,
        ));
        cases.push(case(
            "256-byte id (one over the limit)",
            post_raw(HeaderValue::from_str(&"c".repeat(256)).unwrap(), PING),
            StatusCode::BAD_REQUEST,
            SERVER_ERROR,
        ));
        cases.push(case(
            "255-byte unknown id (at the limit: well-formed, so 404)",
            post_raw(HeaderValue::from_str(&"c".repeat(255)).unwrap(), PING),
            StatusCode::NOT_FOUND,
            SESSION_NOT_FOUND,
        ));
        cases
    })
    .await;
}

#[tokio::test]
async fn repeated_session_header_is_400_even_with_the_live_id() {
    run(|id| {
        let mut cases = Vec::new();
        for (what, second) in [
            ("same live id twice", id),
            ("live id and unknown id", "other"),
        ] {
            for method in [Method::POST, Method::GET, Method::DELETE] {
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri("/mcp")
                    .body(full(PING))
                    .unwrap();
                let headers = request.headers_mut();
                headers.append("mcp-session-id", HeaderValue::from_str(id).unwrap());
                headers.append("mcp-session-id", HeaderValue::from_str(second).unwrap());
                cases.push(case(
                    format!("{method} with {what}"),
                    request,
                    StatusCode::BAD_REQUEST,
                    SERVER_ERROR,
                ));
            }
        }
        cases
    })
    .await;
}

#[tokio::test]
async fn ids_are_case_sensitive() {
    run(|id| {
        let flipped = flip_case(id);
        vec![
            case(
                "POST with the live id's case flipped",
                post(&flipped, PING),
                StatusCode::NOT_FOUND,
                SESSION_NOT_FOUND,
            ),
            case(
                "GET with the live id's case flipped",
                get(&flipped),
                StatusCode::NOT_FOUND,
                SESSION_NOT_FOUND,
            ),
            case(
                "DELETE with the live id's case flipped (must not close it)",
                delete(&flipped),
                StatusCode::NOT_FOUND,
                SESSION_NOT_FOUND,
            ),
            case(
                "the live id upper-cased",
                post(&id.to_ascii_uppercase(), PING),
                StatusCode::NOT_FOUND,
                SESSION_NOT_FOUND,
            ),
            case(
                "a well-formed id never issued",
                post("00000000-0000-4000-8000-000000000000", PING),
                StatusCode::NOT_FOUND,
                SESSION_NOT_FOUND,
            ),
        ]
    })
    .await;
}

#[tokio::test]
async fn broken_initialize_bodies_are_400() {
    let deep_arrays = "[".repeat(10_000) + &"]".repeat(10_000);
    let unclosed = "[".repeat(10_000);
    run(move |_| {
        vec![
            case(
                "invalid JSON",
                post_no_id("{nope"),
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
            ),
            case(
                "truncated initialize",
                post_no_id(&INIT.as_bytes()[..INIT.len() / 2]),
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
            ),
            case(
                "initialize missing its last byte",
                post_no_id(&INIT.as_bytes()[..INIT.len() - 1]),
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
            ),
            case(
                "empty body",
                post_no_id(""),
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
            ),
            case(
                "initialize followed by garbage",
                post_no_id(format!("{INIT}xyz")),
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
            ),
            case(
                "invalid UTF-8 inside a JSON string",
                post_no_id(&b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\xff\"}"[..]),
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
            ),
            case(
                "arrays nested 10,000 deep",
                post_no_id(deep_arrays),
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
            ),
            case(
                "10,000 unclosed brackets",
                post_no_id(unclosed),
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
            ),
        ]
    })
    .await;
}

/// 0.2 probes an opening body without building a JSON tree: nesting inside fields it does
/// not read is skipped by serde_json without recursion (no stack risk, memory bounded by the
/// peek limit), so a deeply nested body that is not an `initialize` request is answered like
/// any other non-initialize JSON: 400 -32000. (An `initialize` whose params are nested deep
/// reaches the per-session service, which parses it and decides.)
#[tokio::test]
async fn objects_nested_10000_deep_are_not_an_initialize_request() {
    let deep_objects = r#"{"a":"#.repeat(10_000) + "1" + &"}".repeat(10_000);
    run(move |_| {
        vec![case(
            "objects nested 10,000 deep",
            post_no_id(deep_objects),
            StatusCode::BAD_REQUEST,
            SERVER_ERROR,
        )]
    })
    .await;
}

#[tokio::test]
async fn json_that_is_not_an_initialize_request_is_400() {
    run(|_| {
        let mut cases = vec![
            case(
                "batch holding initialize",
                post_no_id(format!("[{INIT}]")),
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
            ),
            case(
                "batch of ping and initialize",
                post_no_id(format!("[{PING},{INIT}]")),
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
            ),
        ];
        for body in [
            "[]",
            "null",
            "42",
            "\"initialize\"",
            PING,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"Initialize"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":["initialize"]}"#,
            r#"{"jsonrpc":"2.0","id":1,"params":{"method":"initialize"}}"#,
        ] {
            cases.push(case(
                format!("non-initialize JSON {body}"),
                post_no_id(body),
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ));
        }
        cases
    })
    .await;
}

#[tokio::test]
async fn other_http_methods_are_405() {
    run(|id| {
        let mut cases = Vec::new();
        for method in [
            Method::PUT,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
            Method::from_bytes(b"BREW").unwrap(),
            Method::from_bytes(b"post").unwrap(),
        ] {
            for with_id in [false, true] {
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri("/mcp")
                    .body(full(INIT))
                    .unwrap();
                if with_id {
                    request
                        .headers_mut()
                        .insert("mcp-session-id", HeaderValue::from_str(id).unwrap());
                }
                cases.push(case(
                    format!("{method} with id: {with_id}"),
                    request,
                    StatusCode::METHOD_NOT_ALLOWED,
                    SERVER_ERROR,
                ));
            }
        }
        // The method is checked before the session header.
        let mut garbage = Request::put("/mcp").body(empty()).unwrap();
        garbage
            .headers_mut()
            .insert("mcp-session-id", HeaderValue::from_bytes(b"\xffx").unwrap());
        cases.push(case(
            "PUT with a malformed id",
            garbage,
            StatusCode::METHOD_NOT_ALLOWED,
            SERVER_ERROR,
        ));
        cases
    })
    .await;
}

#[tokio::test]
async fn malformed_protocol_version_is_400_with_a_session_id_and_the_inner_services_without() {
    let bad: [&[u8]; 9] = [
        b"latest",
        b"",
        b"2025-11-25 ",
        b"2025-11",
        b"2025/11/25",
        b"2025-11-250",
        b"\xff\xfe",
        b"2o25-11-25",
        b"-2025-11-2",
    ];
    run(|id| {
        let mut cases = Vec::new();
        for version in bad {
            let mut request = post(id, PING);
            request.headers_mut().insert(
                "mcp-protocol-version",
                HeaderValue::from_bytes(version).unwrap(),
            );
            cases.push(case(
                format!("version {version:?}, with id"),
                request,
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ));
        }
        for with_id in [false, true] {
            let mut repeated = if with_id {
                post(id, PING)
            } else {
                initialize()
            };
            for _ in 0..2 {
                repeated.headers_mut().append(
                    "mcp-protocol-version",
                    HeaderValue::from_static("2025-11-25"),
                );
            }
            cases.push(case(
                format!("repeated version header, with id: {with_id}"),
                repeated,
                StatusCode::BAD_REQUEST,
                SERVER_ERROR,
            ));
        }
        cases
    })
    .await;

    // Without a session id, a single version that is not a date is the server's to answer
    // (it knows which versions it speaks): the inner service gets it, nothing opens.
    let h = harness(|layer| layer);
    let id = open(&h.svc).await;
    for version in bad {
        let mut request = initialize();
        request.headers_mut().insert(
            "mcp-protocol-version",
            HeaderValue::from_bytes(version).unwrap(),
        );
        let answer = send(&h.svc, request).await;
        assert_eq!(answer.status, StatusCode::OK, "{version:?}: {answer:?}");
        assert_eq!(&answer.body[..], b"inner", "{version:?}");
        assert!(answer.session_id().is_none(), "{version:?}: minted an id");
    }
    assert_eq!(h.sessions.len(), 1, "nothing opened");
    assert!(h.sessions.contains(&id));
    assert_eq!(h.tracker.created.load(Ordering::SeqCst), 1);
}

/// A body of `total` bytes produced 64 KiB at a time, counting the bytes the layer pulled.
struct Endless {
    remaining: u64,
    pulled: Arc<AtomicU64>,
}

const CHUNK: usize = 64 * 1024;
static CHUNK_BYTES: [u8; CHUNK] = [b' '; CHUNK];
const HUNDRED_MIB: u64 = 100 * 1024 * 1024;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK as u64);
        self.remaining -= n;
        self.pulled.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &CHUNK_BYTES[..n as usize],
        )))))
    }
}

fn hundred_mib(content_length: Option<u64>) -> (Request<Body>, Arc<AtomicU64>) {
    let pulled = Arc::new(AtomicU64::new(0));
    let body = Endless {
        remaining: HUNDRED_MIB,
        pulled: Arc::clone(&pulled),
    };
    let mut request = Request::post("/mcp")
        .header("content-type", "application/json")
        .body(body.boxed_unsync())
        .unwrap();
    if let Some(len) = content_length {
        request
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, len.into());
    }
    (request, pulled)
}

#[tokio::test]
async fn hundred_mib_initialize_is_cut_off_at_the_peek_limit() {
    let h = harness(|layer| layer);
    let id = open(&h.svc).await;
    // The default peek limit: 64 KiB.
    let limit = 64 * 1024_u64;

    // No Content-Length: read up to the limit (plus the chunk that crossed it), then 413.
    let (request, pulled) = hundred_mib(None);
    let answer = send(&h.svc, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    assert_eq!(answer.json_rpc_code(), SERVER_ERROR);
    let read = pulled.load(Ordering::SeqCst);
    assert!(read > 0, "the body was never read");
    assert!(
        read <= limit + CHUNK as u64,
        "pulled {read} bytes of a 100 MiB body; the peek limit is {limit}"
    );

    // A Content-Length that understates the body changes nothing.
    let (request, pulled) = hundred_mib(Some(10));
    let answer = send(&h.svc, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    assert!(pulled.load(Ordering::SeqCst) <= limit + CHUNK as u64);

    // An honest Content-Length over the limit: 413 without reading a byte.
    let (request, pulled) = hundred_mib(Some(HUNDRED_MIB));
    let answer = send(&h.svc, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    assert_eq!(answer.json_rpc_code(), SERVER_ERROR);
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        0,
        "read a body declared too large"
    );

    // A Content-Length that is not a number: the limit still holds.
    let (mut request, pulled) = hundred_mib(None);
    request.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from_static("lots"),
    );
    let answer = send(&h.svc, request).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    assert!(pulled.load(Ordering::SeqCst) <= limit + CHUNK as u64);

    // With an id the body is not the layer's business: it streams to the session untouched
    // (the echo service reads all of it), and nothing is buffered by the layer on the way.
    assert_eq!(h.sessions.len(), 1);
    assert_eq!(h.tracker.created.load(Ordering::SeqCst), 1);
    assert_eq!(send(&h.svc, post(&id, PING)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn initialize_at_the_peek_limit_opens_and_one_byte_more_is_413() {
    const LIMIT: usize = 4096;
    let h = harness(|layer| layer.peek_limit(LIMIT));
    // `INIT` padded with JSON whitespace to exactly `LIMIT` bytes, then one more.
    let padded = format!("{INIT}{}", " ".repeat(LIMIT - INIT.len()));
    assert_eq!(padded.len(), LIMIT);
    let answer = send(&h.svc, post_no_id(padded.clone())).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let id = answer.session_id().expect("opened").to_owned();
    // The per-session service saw the body exactly as sent.
    assert_eq!(&answer.body[..], format!("{id}\n{padded}").as_bytes());

    let over = format!("{padded} ");
    let answer = send(&h.svc, post_no_id(over)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    assert_eq!(answer.json_rpc_code(), SERVER_ERROR);
    assert_eq!(h.sessions.len(), 1);
}

/// A body that yields some bytes and then fails, like a client that disconnects mid-upload.
struct Broken {
    sent: bool,
}

impl http_body::Body for Broken {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.sent {
            return Poll::Ready(Some(Err(std::io::Error::other("connection reset"))));
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &INIT.as_bytes()[..20],
        )))))
    }
}

#[tokio::test]
async fn initialize_body_that_fails_midway_is_400() {
    run(|_| {
        vec![case(
            "body errors after 20 bytes",
            Request::post("/mcp")
                .body(Broken { sent: false }.boxed_unsync())
                .unwrap(),
            StatusCode::BAD_REQUEST,
            PARSE_ERROR,
        )]
    })
    .await;
}

#[tokio::test]
async fn initialize_with_a_live_id_goes_to_that_session() {
    let h = harness(|layer| layer);
    let a = open(&h.svc).await;
    let b = open(&h.svc).await;
    for id in [&a, &b, &a] {
        let answer = send(&h.svc, post(id, INIT)).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.served_by(), Some(id.as_str()), "{answer:?}");
        // The request reached the session's service unchanged; no id was minted or echoed.
        assert_eq!(&answer.body[..], format!("{id}\n{INIT}").as_bytes());
        assert!(answer.session_id().is_none(), "{answer:?}");
    }
    assert_eq!(h.sessions.len(), 2, "a second initialize opened a session");
    assert_eq!(h.tracker.created.load(Ordering::SeqCst), 2);
    assert_eq!(h.tracker.misrouted(), 0);

    // With an unknown id it is an ordinary unknown session.
    let answer = send(&h.svc, post("never-issued", INIT)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json_rpc_code(), SESSION_NOT_FOUND);
    assert_eq!(h.sessions.len(), 2);
}

#[tokio::test]
async fn sessionless_protocol_version_ignores_any_id() {
    let h = harness(|layer| layer);
    let id = open(&h.svc).await;
    let served_before = h.tracker.served.load(Ordering::SeqCst);
    for version in ["2026-07-28", "2027-01-01", "9999-99-99"] {
        let ids: [&[u8]; 5] = [
            id.as_bytes(),
            b"never-issued",
            b"",
            b"\xff\xfe",
            flip_case(&id).into_bytes().leak(),
        ];
        for value in ids {
            for method in [Method::POST, Method::GET, Method::DELETE] {
                let mut request = Request::builder()
                    .method(method.clone())
                    .uri("/mcp")
                    .header("mcp-protocol-version", version)
                    .body(full(INIT))
                    .unwrap();
                request
                    .headers_mut()
                    .insert("mcp-session-id", HeaderValue::from_bytes(value).unwrap());
                let answer = send(&h.svc, request).await;
                assert_eq!(
                    answer.status,
                    StatusCode::OK,
                    "{method} {value:?}: {answer:?}"
                );
                assert_eq!(&answer.body[..], b"inner", "{method} {value:?}");
                assert!(answer.session_id().is_none(), "{method} {value:?}");
            }
        }
        // An initialize without an id: no session is opened and no id minted.
        let mut request = initialize();
        request
            .headers_mut()
            .insert("mcp-protocol-version", HeaderValue::from_static(version));
        let answer = send(&h.svc, request).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], b"inner");
        assert!(answer.session_id().is_none());
    }
    // The session never saw any of it, DELETE did not close it, and nothing opened.
    assert_eq!(h.tracker.served.load(Ordering::SeqCst), served_before);
    assert_eq!(h.sessions.len(), 1);
    assert!(h.sessions.contains(&id));
    assert_eq!(h.tracker.created.load(Ordering::SeqCst), 1);
    assert_eq!(h.tracker.misrouted(), 0);
    // An older version with the id is routed to the session as usual.
    let mut request = post(&id, PING);
    request.headers_mut().insert(
        "mcp-protocol-version",
        HeaderValue::from_static("2025-11-25"),
    );
    assert_eq!(send(&h.svc, request).await.served_by(), Some(id.as_str()));
}

/// Serves `svc` with hyper's HTTP/1 server on a loopback port, one connection at a time.
async fn serve(svc: Svc) -> std::net::SocketAddr {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = tower::ServiceBuilder::new()
                .map_request(|req: Request<hyper::body::Incoming>| {
                    req.map(|body| body.map_err(std::io::Error::other).boxed_unsync())
                })
                .service(svc.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc)),
            );
        }
    });
    addr
}

/// Writes `head` (and `body`) on a fresh connection and reads the answer until the server
/// closes it: (status, body after the blank line). Bounded by a 20 s hang guard.
async fn raw(addr: std::net::SocketAddr, head: &[u8], body: &[u8]) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(head).await.unwrap();
        // The server may answer (and close) before reading the body: ignore write errors.
        let _ = stream.write_all(body).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        answer
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), exchange)
        .await
        .expect("the server never answered");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |at| at + 4);
    (status, answer[split..].to_vec())
}

fn json_rpc_code(body: &[u8]) -> i64 {
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(body)));
    value["error"]["code"].as_i64().expect("a JSON-RPC error")
}

/// The same hostile inputs as raw bytes on a socket, through hyper: what the layer sees is
/// what hyper lets through, and the answers are the same.
#[tokio::test]
async fn hostile_bytes_over_http1() {
    let h = harness(|layer| layer);
    let addr = serve(h.svc.clone()).await;
    let id = open(&h.svc).await;

    // obs-text and non-UTF-8 bytes reach the layer: 400 with a JSON-RPC body.
    let head = b"POST /mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nMcp-Session-Id: \xff\xfe\x80\r\n\r\n";
    let (status, body) = raw(addr, head, b"").await;
    assert_eq!(status, 400);
    assert_eq!(json_rpc_code(&body), SERVER_ERROR);

    // A control byte in the id is refused by hyper's parser before the layer sees it.
    let head = b"POST /mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nMcp-Session-Id: ab\x01cd\r\n\r\n";
    let (status, _) = raw(addr, head, b"").await;
    assert_eq!(status, 400);

    // A 64 KiB id fits hyper's default header buffer (about 400 KiB), so the layer answers.
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nMcp-Session-Id: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (status, body) = raw(addr, head.as_bytes(), b"").await;
    assert_eq!(status, 400);
    assert_eq!(json_rpc_code(&body), SERVER_ERROR);

    // Padding whitespace around the live id: hyper trims it, so the id works.
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\nMcp-Session-Id:   {id}  \r\n\r\n",
        PING.len()
    );
    let (status, body) = raw(addr, head.as_bytes(), PING.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(body.starts_with(id.as_bytes()));

    // Two session headers, both the live id: 400.
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nMcp-Session-Id: {id}\r\nmcp-session-id: {id}\r\n\r\n"
    );
    let (status, body) = raw(addr, head.as_bytes(), b"").await;
    assert_eq!(status, 400);
    assert_eq!(json_rpc_code(&body), SERVER_ERROR);

    // 100 MiB declared: 413 at once; the client sends only the head and the answer comes
    // without the body ever being sent.
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {HUNDRED_MIB}\r\n\r\n"
    );
    let (status, body) = raw(addr, head.as_bytes(), b"").await;
    assert_eq!(status, 413);
    assert_eq!(json_rpc_code(&body), SERVER_ERROR);

    // Chunked, no length: the layer stops reading at the peek limit and answers 413; the
    // client's 2 MiB of chunks need not all be read.
    let head = b"POST /mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut chunks = Vec::new();
    for _ in 0..32 {
        chunks.extend_from_slice(format!("{:x}\r\n", CHUNK).as_bytes());
        chunks.extend_from_slice(&CHUNK_BYTES);
        chunks.extend_from_slice(b"\r\n");
    }
    chunks.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw(addr, head, &chunks).await;
    assert_eq!(status, 413);
    assert_eq!(json_rpc_code(&body), SERVER_ERROR);

    // A method hyper accepts but MCP does not serve.
    let head = b"BREW /mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let (status, body) = raw(addr, head, b"").await;
    assert_eq!(status, 405);
    assert_eq!(json_rpc_code(&body), SERVER_ERROR);

    assert_eq!(h.sessions.len(), 1);
    assert!(h.sessions.contains(&id));
    assert_eq!(h.tracker.created.load(Ordering::SeqCst), 1);
    assert_eq!(h.tracker.misrouted(), 0);
}
