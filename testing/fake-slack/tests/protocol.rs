//! The fake against Slack's documentation, spoken raw (plain HTTP and a plain websocket), so it
//! is checked independently of the app that uses it.

#![allow(clippy::unwrap_used)] // Tests: a failed step must fail loudly.

use std::time::Duration;

use assent_fake_slack::{APP_TOKEN, BOT_TOKEN, FakeSlack, SIGNING_SECRET};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const KIM: &str = "U0KIM00001";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

/// `POST {api}/{method}` with `token` and a JSON body: (status, retry-after, body).
fn call(fake: &FakeSlack, token: &str, method: &str, body: Value) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent
        .post(&format!("{}/{method}", fake.api_url()))
        .header("authorization", &format!("Bearer {token}"))
        .send_json(body)
        .unwrap();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), retry, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn card(header: &str) -> Value {
    json!([
        { "type": "header", "text": { "type": "plain_text", "text": header } },
        { "type": "actions", "block_id": "assent:1", "elements": [
            { "type": "button", "action_id": "assent.decide.allow-once", "text": { "type": "plain_text", "text": "Allow once" }, "value": "tok", "style": "primary" }
        ] }
    ])
}

#[test]
fn the_web_api_checks_tokens_blocks_and_rate_limits_as_documented() {
    let rt = runtime();
    let fake = rt.block_on(FakeSlack::start());
    fake.person(KIM, "kim");
    assert_eq!(call(&fake, BOT_TOKEN, "auth.test", json!({})).2["ok"], true);
    assert_eq!(call(&fake, "", "auth.test", json!({})).2["error"], "not_authed");
    assert_eq!(call(&fake, APP_TOKEN, "chat.postMessage", json!({})).2["error"], "not_allowed_token_type");
    let dm = call(&fake, BOT_TOKEN, "conversations.open", json!({ "users": KIM })).2;
    let dm = dm["channel"]["id"].as_str().unwrap().to_owned();
    assert!(dm.starts_with('D'));
    assert_eq!(
        call(&fake, BOT_TOKEN, "conversations.open", json!({ "users": "U0NOBODY" })).2["error"],
        "user_not_found"
    );

    // Block Kit limits: refused whole, with what was wrong.
    let long = call(
        &fake,
        BOT_TOKEN,
        "chat.postMessage",
        json!({ "channel": dm, "text": "t", "blocks": card(&"h".repeat(151)) }),
    )
    .2;
    assert_eq!(long["error"], "invalid_blocks");
    assert!(long["response_metadata"]["messages"][0].as_str().unwrap().contains("/blocks/0/text"), "{long}");
    let huge =
        call(&fake, BOT_TOKEN, "chat.postMessage", json!({ "channel": dm, "text": "x".repeat(40_001) })).2;
    assert_eq!(huge["error"], "msg_too_long");

    // About one message a second per channel, with a short burst; then 429 with Retry-After.
    for _ in 0..3 {
        let (status, _, ok) = call(
            &fake,
            BOT_TOKEN,
            "chat.postMessage",
            json!({ "channel": dm, "text": "t", "blocks": card("ok") }),
        );
        assert_eq!((status, &ok["ok"]), (200, &json!(true)), "{ok}");
    }
    let (status, retry, limited) =
        call(&fake, BOT_TOKEN, "chat.postMessage", json!({ "channel": dm, "text": "t" }));
    assert_eq!((status, retry.as_deref(), &limited["error"]), (429, Some("1"), &json!("ratelimited")));

    let ts = fake.bot_messages(&dm)[0].ts.clone();
    let updated = call(
        &fake,
        BOT_TOKEN,
        "chat.update",
        json!({ "channel": dm, "ts": ts, "text": "done", "blocks": [] }),
    )
    .2;
    assert_eq!(updated["ok"], true, "{updated}");
    assert_eq!(fake.bot_messages(&dm)[0].edits, 1);
    let channel = fake.channel();
    let ephemeral = call(
        &fake,
        BOT_TOKEN,
        "chat.postEphemeral",
        json!({ "channel": channel, "user": KIM, "text": "only you" }),
    )
    .2;
    assert!(ephemeral["message_ts"].is_string(), "{ephemeral}");
    let wrong = call(
        &fake,
        BOT_TOKEN,
        "chat.postEphemeral",
        json!({ "channel": dm, "user": "U0OTHER", "text": "x" }),
    )
    .2;
    assert_eq!(wrong["error"], "user_not_in_channel");
}

async fn next(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(_) => return json!({ "closed": true }),
            _ => {}
        }
    }
}

#[test]
fn socket_mode_sends_hello_envelopes_to_acknowledge_and_disconnect() {
    let rt = runtime();
    let fake = rt.block_on(FakeSlack::start());
    fake.person(KIM, "kim");
    let dm = call(&fake, BOT_TOKEN, "conversations.open", json!({ "users": KIM })).2["channel"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let posted = call(
        &fake,
        BOT_TOKEN,
        "chat.postMessage",
        json!({ "channel": dm, "text": "t", "blocks": card("Deploy?") }),
    )
    .2;
    let ts = posted["ts"].as_str().unwrap().to_owned();
    let url =
        call(&fake, APP_TOKEN, "apps.connections.open", json!({})).2["url"].as_str().unwrap().to_owned();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        assert_eq!(next(&mut ws).await["type"], "hello");
        let acked = fake.click(KIM, &dm, &ts, "Allow once");
        let envelope = next(&mut ws).await;
        assert_eq!(envelope["type"], "interactive");
        let payload = &envelope["payload"];
        assert_eq!(
            (payload["type"].as_str(), payload["user"]["id"].as_str()),
            (Some("block_actions"), Some(KIM))
        );
        assert_eq!(payload["actions"][0]["value"], "tok");
        assert_eq!(payload["actions"][0]["block_id"], "assent:1");
        ws.send(Message::Text(json!({ "envelope_id": envelope["envelope_id"] }).to_string().into()))
            .await
            .unwrap();
        let ignored = fake.click(KIM, &dm, &ts, "Allow once");
        next(&mut ws).await; // Never acknowledged.
        tokio::time::sleep(Duration::from_millis(3200)).await;
        assert!(fake.delivery(&acked).unwrap().acked.is_some());
        assert!(fake.delivery(&ignored).unwrap().failed, "Slack shows the person an error");
        fake.disconnect_socket();
        assert_eq!(next(&mut ws).await["type"], "disconnect");
    });
}

#[test]
fn http_mode_deliveries_are_signed_with_the_signing_secret() {
    use hmac_check::valid;
    let rt = runtime();
    let fake = rt.block_on(FakeSlack::start());
    fake.person(KIM, "kim");
    let channel = fake.channel();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let url = rt.block_on(async {
        let seen = seen.clone();
        let app = axum::Router::new().route(
            "/slack",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
                    let ok = valid(&h("x-slack-request-timestamp"), &body, &h("x-slack-signature"));
                    seen.lock().unwrap().push((ok, body));
                    if ok { axum::http::StatusCode::OK } else { axum::http::StatusCode::UNAUTHORIZED }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/slack", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    });
    fake.set_request_url(&url);
    let command = fake.slash(KIM, &channel, "a1b2c3d4 deny");
    let message = fake.type_text(KIM, &channel, "approve a1b2c3d4 deny", None);
    for id in [&command, &message] {
        for _ in 0..100 {
            if fake.delivery(id).and_then(|d| d.acked).is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(fake.delivery(id).unwrap().acked.is_some(), "{id}");
    }
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|(ok, _)| *ok));
    // Deliveries run side by side: either may arrive first.
    assert!(seen.iter().any(|(_, b)| b.contains("command=%2Fapprove")), "{seen:?}");
    assert!(seen.iter().any(|(_, b)| b.contains("\"event_callback\"")), "{seen:?}");
}

/// Slack's documented check, written here from the docs (not the fake's code).
mod hmac_check {
    use super::SIGNING_SECRET;

    pub(super) fn valid(timestamp: &str, body: &str, signature: &str) -> bool {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
        mac.update(format!("v0:{timestamp}:{body}").as_bytes());
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        signature == format!("v0={hex}")
    }
}
