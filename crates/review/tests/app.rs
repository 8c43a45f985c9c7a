//! The review app over real HTTP (a raw TCP client, so nothing is normalized on the way), with
//! a stand-in for the models: the app's own behaviour (storage, escaping headers, limits,
//! errors, tokens) without loading a model. The browser test in `tests/cli.rs` drives the real
//! models.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use radit_feedback::{FeedbackDb, ModelIdentity, ShownAnswer, ShownChunk};
use radit_review::{QueueItem, Review, ReviewConfig, ReviewError, Side, MAX_BODY_BYTES};
use serde_json::{json, Value};

/// One HTTP/1.1 exchange: status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body; a reset write is fine then.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked bodies (the JSON responses are small: one chunk).
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split_once("\r\n")
            .map_or("", |(_, rest)| rest)
            .rsplitn(3, "\r\n")
            .last()
            .unwrap_or("")
            .to_string()
    } else {
        body.to_string()
    };
    (status, body)
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "raw": text })),
    )
}

fn fake_answer(question: &str, side: Side) -> Result<ShownAnswer, String> {
    if question == "fail" {
        return Err("the generator could not answer".into());
    }
    Ok(ShownAnswer {
        question: question.into(),
        answer: format!("answer {side:?}"),
        log_p: Some(-0.5),
        models: ModelIdentity {
            label: format!("model {side:?}"),
            generator: "g".into(),
            generator_fingerprint: "fp".into(),
            query_encoder: None,
            query_fingerprint: None,
            index_identity: Some("idx".into()),
            index_dir: None,
        },
        chunks: vec![ShownChunk {
            chunk_id: 4,
            title: "T".into(),
            text: "T: <script>window.x=1</script>".into(),
            text_hash: "h".into(),
            p_r: 1.0,
            log_p_lm: Some(-0.5),
            share: Some(1.0),
        }],
    })
}

struct Running {
    addr: SocketAddr,
    stop: radit_review::StopHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(db: &std::path::Path, models: usize, token: Option<&str>) -> Running {
    let review = Review::start(
        ReviewConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            token: token.map(String::from),
            queue: vec![
                QueueItem {
                    question: "first?".into(),
                },
                QueueItem {
                    question: "second?".into(),
                },
            ],
            models: (0..models).map(|i| format!("m{i}")).collect(),
        },
        FeedbackDb::open(db).unwrap(),
    )
    .unwrap();
    let addr = review.addr();
    let stop = review.stop_handle();
    let thread = std::thread::spawn(move || review.serve(fake_answer).unwrap());
    Running {
        addr,
        stop,
        thread: Some(thread),
    }
}

#[test]
fn questions_answers_and_judgments_are_stored_and_bad_requests_get_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fb.sqlite");
    let app = start(&db, 1, None);
    let addr = app.addr;

    let (status, page) = http(addr, "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"app.js\""), "{page}");
    let mut raw = String::new();
    TcpStream::connect(addr)
        .and_then(|mut s| {
            s.write_all(
                format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
            )?;
            s.read_to_string(&mut raw)
        })
        .unwrap();
    let lower = raw.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{raw}"
    );

    let (status, r) = post(addr, "/api/ask", &json!({ "question": "  who?  " }));
    assert_eq!(status, 200, "{r}");
    let answer = &r["answers"][0];
    assert_eq!(answer["question"], "who?");
    assert_eq!(
        answer["chunks"][0]["text"],
        "T: <script>window.x=1</script>"
    );
    let id = answer["id"].as_i64().unwrap();

    let (status, r) = post(
        addr,
        "/api/judge",
        &json!({ "answer_id": id, "verdict": "wrong", "correction": "Ann", "chunks": [[0, "helpful"]] }),
    );
    assert_eq!((status, &r["saved"]), (200, &json!(true)), "{r}");
    // Saved means committed: another connection to the file sees it at once.
    let judged = FeedbackDb::open(&db).unwrap().judgments(None).unwrap();
    assert_eq!(judged.len(), 1);
    assert_eq!(judged[0].judgment.correction.as_deref(), Some("Ann"));

    let (status, r) = http(addr, "GET", "/api/recent", &[], b"");
    assert_eq!(status, 200);
    assert!(r.contains("\"correction\":\"Ann\""), "{r}");
    let (status, r) = http(addr, "GET", "/api/queue/1", &[], b"");
    assert_eq!(status, 200);
    let q: Value = serde_json::from_str(&r).unwrap();
    assert_eq!(
        (q["question"].as_str(), q["total"].as_u64()),
        (Some("second?"), Some(2))
    );

    // Bad input: each a 4xx with a JSON message, and nothing written.
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/api/judge", b"{not json".to_vec(), 400, "json"),
        (
            "/api/judge",
            br#"{"answer_id": 999, "verdict": "right"}"#.to_vec(),
            404,
            "no answer with id 999",
        ),
        (
            "/api/judge",
            format!(r#"{{"answer_id": {id}, "chunks": [[5, "helpful"]]}}"#).into_bytes(),
            422,
            "no chunk of rank 5",
        ),
        (
            "/api/judge",
            format!(r#"{{"answer_id": {id}, "verdict": "maybe"}}"#).into_bytes(),
            422,
            "unknown variant",
        ),
        (
            "/api/judge",
            format!(r#"{{"answer_id": {id}, "verdict": "right", "extra": 1}}"#).into_bytes(),
            422,
            "unknown field",
        ),
        ("/api/ask", br#"{"question": "   "}"#.to_vec(), 422, "empty"),
        (
            "/api/ask",
            br#"{"question": "fail"}"#.to_vec(),
            422,
            "could not answer",
        ),
        ("/api/ask", vec![b'x'; MAX_BODY_BYTES + 10], 413, ""),
    ];
    for (path, body, want, message) in cases {
        let (status, text) = http(
            addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(
            status,
            want,
            "{path} {}: {text}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert!(
            text.to_lowercase().contains(&message.to_lowercase()),
            "{path}: {text}"
        );
    }
    // A form post (what a cross-site page can send) is refused.
    let (status, _) = http(
        addr,
        "POST",
        "/api/judge",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"answer_id=1",
    );
    assert_eq!(status, 415);
    // A DNS-rebinding host name is refused on loopback.
    let (status, text) = http(
        addr,
        "GET",
        "/api/recent",
        &[("Host", "evil.example:80")],
        b"",
    );
    assert_eq!(status, 403, "{text}");
    let (status, _) = http(addr, "GET", "/api/queue/7", &[], b"");
    assert_eq!(status, 404);
    assert_eq!(FeedbackDb::open(&db).unwrap().counts().unwrap(), (1, 1, 0));
}

#[test]
fn compare_mode_answers_twice_and_records_the_pick() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fb.sqlite");
    let app = start(&db, 2, None);
    let (status, r) = post(app.addr, "/api/ask", &json!({ "question": "who?" }));
    assert_eq!(status, 200, "{r}");
    let (a, b) = (&r["answers"][0], &r["answers"][1]);
    assert_eq!(
        (a["answer"].as_str(), b["answer"].as_str()),
        (Some("answer A"), Some("answer B"))
    );
    let (status, r) = post(
        app.addr,
        "/api/prefer",
        &json!({ "answer_a": a["id"], "answer_b": b["id"], "choice": "b", "reviewer": "ana" }),
    );
    assert_eq!(status, 200, "{r}");
    let prefs = FeedbackDb::open(&db).unwrap().preferences().unwrap();
    assert_eq!(
        (prefs.len(), prefs[0].b.shown.answer.as_str()),
        (1, "answer B")
    );
}

#[test]
fn a_token_is_required_off_loopback_and_checked_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = FeedbackDb::open(&dir.path().join("fb.sqlite")).unwrap();
    let open = Review::start(
        ReviewConfig {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            token: None,
            queue: vec![],
            models: vec!["m".into()],
        },
        db,
    );
    assert!(matches!(open, Err(ReviewError::TokenRequired(_))));

    let app = start(&dir.path().join("t.sqlite"), 1, Some("s3cret"));
    let (status, text) = http(app.addr, "GET", "/api/info", &[], b"");
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("token"), "{text}");
    let (status, _) = http(
        app.addr,
        "GET",
        "/api/info",
        &[("x-radit-token", "wrong!")],
        b"",
    );
    assert_eq!(status, 401);
    let (status, _) = http(
        app.addr,
        "GET",
        "/api/info",
        &[("x-radit-token", "s3cret")],
        b"",
    );
    assert_eq!(status, 200);
    let (status, page) = http(app.addr, "GET", "/?token=s3cret", &[], b"");
    assert_eq!(status, 200, "{page}");
}
