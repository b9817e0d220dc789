//! API-5: the outcome is POSTed to the request's callback URL, signed with the webhook secret
//! and carrying an idempotency key.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

use crate::harness::Server;

/// A received request: lower-cased headers and the body.
type Received = (Vec<(String, String)>, Vec<u8>);

/// Accepts one POST, answers 200, and reports it.
fn receive_one(listener: TcpListener, tx: mpsc::Sender<Received>) {
    let (stream, _) = listener.accept().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = Vec::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let Some((k, v)) = line.trim_end().split_once(": ") else { break };
        headers.push((k.to_ascii_lowercase(), v.to_owned()));
    }
    let length: usize =
        headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut stream = stream;
    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
    tx.send((headers, body)).unwrap();
}

#[test]
fn api_5_the_outcome_reaches_the_callback_signed_with_an_idempotency_key() {
    let secret = "webhook-secret-for-the-test";
    let server = Server::with_config(&format!("[webhooks]\nsecret = \"{secret}\"\n"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let callback = format!("http://{}/hooks/assent", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || receive_one(listener, tx));
    let (status, a) = server.call(
        "POST",
        "/v1/approvals",
        Some(json!({ "kind": "exec", "exec": { "argv": ["deploy"] }, "callback": callback })),
    );
    assert_eq!(status, 201, "{a}");
    assert_eq!(server.decide(a["id"].as_str().unwrap(), "allow-once").0, 200);
    let (headers, body) = rx.recv_timeout(Duration::from_secs(20)).expect("the webhook arrives");
    let header =
        |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let signature = header("assent-signature");
    let t: u64 = signature.strip_prefix("t=").and_then(|s| s.split(',').next()).unwrap().parse().unwrap();
    assert_eq!(signature, assent_server::webhook_signature(secret.as_bytes(), t, &body), "valid HMAC");
    assert!(!header("assent-idempotency-key").is_empty());
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert!(payload.to_string().contains(a["id"].as_str().unwrap()), "{payload}");
    assert!(payload.to_string().contains("approved"), "{payload}");
}

#[test]
fn api_5_a_callback_that_is_not_https_or_loopback_is_refused() {
    let server = Server::start();
    let (status, body) = server.call(
        "POST",
        "/v1/approvals",
        Some(
            json!({ "kind": "exec", "exec": { "argv": ["deploy"] }, "callback": "http://example.org/hook" }),
        ),
    );
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    assert!(server.pending().is_empty());
}
