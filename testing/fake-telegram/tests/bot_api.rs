//! The fake answers as the Bot API documents, over plain HTTP: shapes, limits, errors, long
//! polling and faults.

#![allow(clippy::unwrap_used)] // Tests: a failed step must fail loudly.

use assent_fake_telegram::{FakeTelegram, Fault, TOKEN};
use serde_json::{Value, json};

/// Calls `method` with a JSON body; (HTTP status, body).
async fn call(fake: &FakeTelegram, method: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/bot{TOKEN}/{method}", fake.url());
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        match agent.post(&url).send_json(body) {
            Ok(mut r) => (r.status().as_u16(), r.body_mut().read_json().unwrap_or(Value::Null)),
            Err(e) => (0, json!(e.to_string())),
        }
    })
    .await
    .unwrap()
}

async fn fake() -> FakeTelegram {
    let fake = FakeTelegram::start().await;
    fake.person(1001, "Kim", Some("kim"));
    fake.start_bot(1001);
    fake
}

fn keyboard(data: &str) -> Value {
    json!({ "inline_keyboard": [[{ "text": "Allow", "callback_data": data }]] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_returns_the_message_and_enforces_the_documented_limits() {
    let fake = fake().await;
    let (status, sent) = call(
        &fake,
        "sendMessage",
        json!({ "chat_id": 1001, "text": "<b>hi</b>", "parse_mode": "HTML", "reply_markup": keyboard("x") }),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["result"]["text"], "hi");
    assert_eq!(sent["result"]["chat"]["type"], "private");
    assert_eq!(sent["result"]["reply_markup"], keyboard("x"));
    let cases = [
        (json!({ "chat_id": 1001, "text": "x".repeat(4097) }), 400, "Bad Request: message is too long"),
        (
            json!({ "chat_id": 1001, "text": "x", "reply_markup": keyboard(&"d".repeat(65)) }),
            400,
            "Bad Request: BUTTON_DATA_INVALID",
        ),
        (
            json!({ "chat_id": 1001, "text": "<x>", "parse_mode": "HTML" }),
            400,
            "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0",
        ),
        (
            json!({ "chat_id": 2002, "text": "x" }),
            403,
            "Forbidden: bot can't initiate conversation with a user",
        ),
        (json!({ "chat_id": -5, "text": "x" }), 400, "Bad Request: chat not found"),
        (
            json!({ "chat_id": 1001, "text": "x", "message_thread_id": 9 }),
            400,
            "Bad Request: message thread not found",
        ),
    ];
    for (body, code, description) in cases {
        let (status, answer) = call(&fake, "sendMessage", body).await;
        assert_eq!((status, answer["error_code"].as_u64()), (code, Some(u64::from(code))), "{answer}");
        assert_eq!(answer["ok"], false);
        assert_eq!(answer["description"], description);
    }
    fake.block_bot(1001);
    let (status, answer) = call(&fake, "sendMessage", json!({ "chat_id": 1001, "text": "x" })).await;
    assert_eq!(
        (status, answer["description"].as_str()),
        (403, Some("Forbidden: bot was blocked by the user"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_edit_is_not_modified_and_a_callback_is_answered_once() {
    let fake = fake().await;
    let (_, sent) =
        call(&fake, "sendMessage", json!({ "chat_id": 1001, "text": "a", "reply_markup": keyboard("x") }))
            .await;
    let id = sent["result"]["message_id"].clone();
    let same = json!({ "chat_id": 1001, "message_id": id, "text": "a", "reply_markup": keyboard("x") });
    let (status, answer) = call(&fake, "editMessageText", same).await;
    assert_eq!(status, 400);
    assert!(
        answer["description"].as_str().unwrap().starts_with("Bad Request: message is not modified"),
        "{answer}"
    );
    // Leaving the markup out removes the keyboard.
    let (status, edited) =
        call(&fake, "editMessageText", json!({ "chat_id": 1001, "message_id": id, "text": "b" })).await;
    assert_eq!(status, 200, "{edited}");
    assert!(edited["result"].get("reply_markup").is_none(), "{edited}");
    assert_eq!(fake.bot_messages(1001)[0].edits, ["a"]);

    let (_, sent) =
        call(&fake, "sendMessage", json!({ "chat_id": 1001, "text": "c", "reply_markup": keyboard("y") }))
            .await;
    let query = fake.press(1001, 1001, sent["result"]["message_id"].as_i64().unwrap(), "y");
    let answer = json!({ "callback_query_id": query, "text": "ok" });
    assert_eq!(call(&fake, "answerCallbackQuery", answer.clone()).await.0, 200);
    let (status, again) = call(&fake, "answerCallbackQuery", answer).await;
    assert_eq!(status, 400);
    assert_eq!(
        again["description"],
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    );
    let long = json!({ "callback_query_id": "x", "text": "t".repeat(201) });
    assert_eq!(
        call(&fake, "answerCallbackQuery", long).await.1["description"],
        "Bad Request: MESSAGE_TOO_LONG"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_updates_confirms_below_the_offset_and_waits_for_news() {
    let fake = fake().await; // `/start` is update 1.
    let (_, first) = call(&fake, "getUpdates", json!({})).await;
    let updates = first["result"].as_array().unwrap().clone();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["message"]["text"], "/start");
    let next = updates[0]["update_id"].as_i64().unwrap() + 1;
    // Not confirmed yet: asked again, it comes again; with the offset it is gone.
    assert_eq!(call(&fake, "getUpdates", json!({})).await.1["result"].as_array().unwrap().len(), 1);
    let waiting = tokio::spawn({
        let url = fake.url();
        async move {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            tokio::task::spawn_blocking(move || {
                let mut r = agent
                    .post(format!("{url}/bot{TOKEN}/getUpdates"))
                    .send_json(json!({ "offset": next, "timeout": 5 }))
                    .unwrap();
                r.body_mut().read_json::<Value>().unwrap()
            })
            .await
            .unwrap()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    fake.type_text(1001, 1001, None, "hello");
    let got = waiting.await.unwrap();
    assert_eq!(got["result"][0]["message"]["text"], "hello", "{got}");
    assert_eq!(got["result"][0]["update_id"], next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_429_with_retry_after_a_5xx_page_and_a_dropped_connection() {
    let fake = fake().await;
    fake.fail_next("sendmessage", Fault::TooManyRequests { retry_after: 7 });
    let (status, answer) = call(&fake, "sendMessage", json!({ "chat_id": 1001, "text": "x" })).await;
    assert_eq!(status, 429);
    assert_eq!(answer["description"], "Too Many Requests: retry after 7");
    assert_eq!(answer["parameters"]["retry_after"], 7);
    fake.fail_next("sendMessage", Fault::ServerError(502));
    assert_eq!(call(&fake, "sendMessage", json!({ "chat_id": 1001, "text": "x" })).await.0, 502);
    fake.fail_next("sendMessage", Fault::Drop);
    assert_eq!(
        call(&fake, "sendMessage", json!({ "chat_id": 1001, "text": "x" })).await.0,
        0,
        "no answer at all"
    );
    assert!(fake.bot_messages(1001).is_empty(), "nothing was sent by the failed calls");
    assert_eq!(call(&fake, "sendMessage", json!({ "chat_id": 1001, "text": "x" })).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_401_and_an_unknown_method_404() {
    let fake = fake().await;
    let url = format!("{}/bot1:nope/getMe", fake.url());
    let status = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        agent.get(&url).call().unwrap().status().as_u16()
    })
    .await
    .unwrap();
    assert_eq!(status, 401);
    let (status, answer) = call(&fake, "fooBar", json!({})).await;
    assert_eq!((status, answer["description"].as_str()), (404, Some("Not Found: method not found")));
}
