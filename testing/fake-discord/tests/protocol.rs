//! The fake against Discord's documentation, spoken raw (plain HTTP and a plain websocket), so
//! it is checked independently of the bot that uses it.

#![allow(clippy::unwrap_used)] // Tests: a failed step must fail loudly.

use std::time::Duration;

use assent_fake_discord::{APPLICATION_ID, FakeDiscord, TOKEN};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const KIM: u64 = 222_222_222_222_222_222;

struct Rest {
    base: String,
    agent: ureq::Agent,
}

impl Rest {
    fn new(fake: &FakeDiscord) -> Self {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { base: fake.api_url(), agent }
    }

    /// (status, headers we care about, body).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Vec<(String, String)>, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bot {TOKEN}");
        let response = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("authorization", &auth).call(),
            ("DELETE", _) => self.agent.delete(&url).header("authorization", &auth).call(),
            ("PATCH", Some(b)) => self.agent.patch(&url).header("authorization", &auth).send_json(b),
            (_, b) => self.agent.post(&url).header("authorization", &auth).send_json(b.unwrap_or(json!({}))),
        };
        let mut r = response.unwrap();
        let headers = r
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-ratelimit") || k.as_str() == "retry-after")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn card(custom_id: &str) -> Value {
    json!({
        "embeds": [{ "title": "t", "description": "d" }],
        "components": [{ "type": 1, "components": [{ "type": 2, "style": 3, "label": "Allow", "custom_id": custom_id }] }],
    })
}

#[test]
fn messages_follow_the_documented_limits_errors_and_rate_limit_headers() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    fake.person(KIM, "kim");
    let rest = Rest::new(&fake);
    let (status, _, body) = rest.call("GET", "/users/@me", None);
    assert_eq!((status, body["id"].as_str()), (200, Some(APPLICATION_ID.to_string().as_str())));
    let (_, _, dm) =
        rest.call("POST", "/users/@me/channels", Some(json!({ "recipient_id": KIM.to_string() })));
    assert_eq!(dm["type"], 1);
    let dm = dm["id"].as_str().unwrap().to_owned();

    // "Invalid Form Body" names the field.
    let (status, _, e) = rest.call("POST", &format!("/channels/{dm}/messages"), Some(card(&"x".repeat(101))));
    assert_eq!((status, &e["code"]), (400, &json!(50035)));
    assert_eq!(
        e["errors"]["components"]["0"]["components"]["0"]["custom_id"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );
    let long = json!({ "embeds": [{ "description": "d".repeat(4097) }] });
    let (status, _, e) = rest.call("POST", &format!("/channels/{dm}/messages"), Some(long));
    assert_eq!(status, 400);
    assert!(e["errors"]["embeds"]["0"]["description"].is_object(), "{e}");
    let (status, _, e) =
        rest.call("POST", &format!("/channels/{dm}/messages"), Some(json!({ "content": "" })));
    assert_eq!((status, &e["code"]), (400, &json!(50006)));

    // Five creations per channel in five seconds; the headers say so, then a 429.
    for n in 0..5 {
        let (status, headers, m) = rest.call("POST", &format!("/channels/{dm}/messages"), Some(card("ok")));
        assert_eq!(status, 200, "{m}");
        let remaining = headers.iter().find(|(k, _)| k == "x-ratelimit-remaining").unwrap();
        assert_eq!(remaining.1, (4 - n).to_string());
    }
    let (status, headers, e) = rest.call("POST", &format!("/channels/{dm}/messages"), Some(card("ok")));
    assert_eq!(status, 429);
    assert!(e["retry_after"].as_f64().unwrap() > 0.0 && e["global"] == false, "{e}");
    assert!(headers.iter().any(|(k, _)| k == "retry-after"), "{headers:?}");

    // DMs closed: 50007.
    fake.close_dms(KIM);
    let (status, _, e) = rest.call("PATCH", "/channels/0/messages/0", Some(card("ok")));
    assert_eq!((status, &e["code"]), (404, &json!(10008)));
    std::thread::sleep(Duration::from_secs(5));
    let (status, _, e) = rest.call("POST", &format!("/channels/{dm}/messages"), Some(card("ok")));
    assert_eq!((status, &e["code"]), (403, &json!(50007)));

    // No token, no entry.
    let anonymous = rest.agent.get(&format!("{}/users/@me", rest.base)).call().unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[test]
fn interactions_must_be_answered_once_within_three_seconds() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    fake.person(KIM, "kim");
    let rest = Rest::new(&fake);
    let (_, _, dm) =
        rest.call("POST", "/users/@me/channels", Some(json!({ "recipient_id": KIM.to_string() })));
    let dm = dm["id"].as_str().unwrap().to_owned();
    let (_, _, m) = rest.call("POST", &format!("/channels/{dm}/messages"), Some(card("press-me")));
    let message: u64 = m["id"].as_str().unwrap().parse().unwrap();

    let answered = fake.click(KIM, message, "press-me");
    let late = fake.click(KIM, message, "press-me");
    let token = |id: u64| format!("aW50ZXJhY3Rpb246{id}OmZha2UtZGlzY29yZA");
    let callback = |id: u64| format!("/interactions/{id}/{}/callback", token(id));
    let (status, _, _) = rest.call("POST", &callback(answered), Some(json!({ "type": 6 })));
    assert_eq!(status, 204);
    let (status, _, e) = rest.call("POST", &callback(answered), Some(json!({ "type": 6 })));
    assert_eq!((status, &e["code"]), (400, &json!(40060)), "one initial response");
    let (status, _, m) = rest.call(
        "POST",
        &format!("/webhooks/{APPLICATION_ID}/{}", token(answered)),
        Some(json!({ "content": "only you", "flags": 64 })),
    );
    assert_eq!(status, 200, "{m}");
    assert!(fake.interaction(answered).unwrap().followups[0].is_ephemeral());

    std::thread::sleep(Duration::from_millis(3200));
    let (status, _, e) = rest.call("POST", &callback(late), Some(json!({ "type": 6 })));
    assert_eq!((status, &e["code"]), (404, &json!(10062)), "too late");
    assert!(fake.interaction(late).unwrap().failed, "the person saw \"This interaction failed\"");
    assert_eq!(fake.failed_interactions(), 1);
}

async fn next(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(frame) => return json!({ "closed": frame.map(|f| u16::from(f.code)) }),
            _ => {}
        }
    }
}

#[test]
fn the_gateway_identifies_heartbeats_and_resumes_with_what_was_missed() {
    let rt = runtime();
    rt.block_on(async {
        let fake = FakeDiscord::start().await;
        fake.person(KIM, "kim");
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("{}?v=10", fake.gateway_url())).await.unwrap();
        let hello = next(&mut ws).await;
        assert_eq!(hello["op"], 10);
        assert!(hello["d"]["heartbeat_interval"].as_u64().unwrap() > 0);
        let identify = json!({ "op": 2, "d": { "token": TOKEN, "intents": 1 << 12, "properties": {} } });
        ws.send(Message::Text(identify.to_string().into())).await.unwrap();
        let ready = next(&mut ws).await;
        assert_eq!((ready["t"].as_str(), ready["s"].as_u64()), (Some("READY"), Some(1)));
        for field in ["v", "user", "guilds", "session_id", "resume_gateway_url", "shard", "application"] {
            assert!(!ready["d"][field].is_null(), "READY lacks {field}");
        }
        ws.send(Message::Text(json!({ "op": 1, "d": 1 }).to_string().into())).await.unwrap();
        assert_eq!(next(&mut ws).await["op"], 11, "heartbeat ACK");

        // A forced disconnect; a message typed meanwhile is replayed on Resume.
        fake.disconnect_gateway(Some(4000));
        assert_eq!(next(&mut ws).await["closed"], 4000);
        let dm = {
            // The bot's DM with kim, as opened over REST.
            let rest = Rest::new(&fake);
            let r = tokio::task::spawn_blocking(move || {
                rest.call("POST", "/users/@me/channels", Some(json!({ "recipient_id": KIM.to_string() })))
            })
            .await
            .unwrap();
            r.2["id"].as_str().unwrap().parse::<u64>().unwrap()
        };
        fake.type_text(KIM, dm, "/approve a1b2c3d4 deny");
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("{}?v=10", fake.gateway_url())).await.unwrap();
        next(&mut ws).await; // Hello
        let resume =
            json!({ "op": 6, "d": { "token": TOKEN, "session_id": ready["d"]["session_id"], "seq": 1 } });
        ws.send(Message::Text(resume.to_string().into())).await.unwrap();
        let missed = next(&mut ws).await;
        assert_eq!(missed["t"], "MESSAGE_CREATE");
        assert_eq!(missed["d"]["content"], "/approve a1b2c3d4 deny", "DMs carry content without the intent");
        assert_eq!(next(&mut ws).await["t"], "RESUMED");
        assert_eq!(fake.gateway_sessions(), (true, 1, 1));
    });
}

#[test]
fn a_privileged_intent_the_app_was_not_granted_is_refused_with_4014() {
    let rt = runtime();
    rt.block_on(async {
        let fake = FakeDiscord::start().await;
        fake.deny_message_content();
        let (mut ws, _) = tokio_tungstenite::connect_async(fake.gateway_url()).await.unwrap();
        next(&mut ws).await;
        let identify = json!({ "op": 2, "d": { "token": TOKEN, "intents": 1 << 15, "properties": {} } });
        ws.send(Message::Text(identify.to_string().into())).await.unwrap();
        assert_eq!(next(&mut ws).await["closed"], 4014);
    });
}
