//! `cargo xtask bench slack`: a button click until the fake Slack has its acknowledgement
//! (the Socket Mode ack, or the HTTP 200), p50/p99, in both modes, with 10k approvals pending
//! in the engine and every approval's callback sleeping 30 s. In the same run, bare
//! slack-morphism apps acknowledge the same clicks through the same fake: its Socket Mode
//! listener with a callback that returns at once, and an HTTP endpoint that verifies the
//! signature with its `SlackEventSignatureVerifier` and answers 200. The bare apps post the very
//! cards assent posted, so every click carries the same payload to both. Prints both, the ratio, and
//! how far p99 is from Slack's 3 s deadline.
//!
//! Cards to one DM are paced at about one a second (as Slack asks), and each click comes 200 ms
//! after its card appears, as a person needs longer to read it. The fake runs on a runtime of
//! its own, as Slack runs on machines of its own: what assent does after the ack (recording the
//! decision, editing the card) must not delay the fake's noting of the ack.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::IntoDynCapability,
    memory::MemoryStore,
    model::{AccountKey, Action, Channel, Kind, NewApproval},
    routing::AccountRouting,
};
use assent_engine::{ConsoleRoute, Engine, EngineHandle, Inbound};
use assent_fake_slack::{APP_TOKEN, BOT_TOKEN, FakeSlack, SIGNING_SECRET};
use assent_platform::{Hook, HookRequest, Platform};
use assent_slack::{SlackAccount, SlackChannel, SlackPlatform};
use assent_testing::{exec_request, samples, token_decision};
use slack_morphism::{
    hyper_tokio::{SlackClientHyperConnector, SlackHyperClient},
    prelude::*,
    signature_verifier::SlackEventSignatureVerifier,
};

use crate::{SleepySink, config, percentile, wait_for};

const KIM: &str = "U0KIM00001";
const PACE: Duration = Duration::from_millis(1100);
const CALLBACK: &str = "https://hooks.example.org/assent";
/// From the card's arrival to the click.
const READ: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Socket,
    Http,
}

pub(crate) async fn run(quick: bool) {
    let (rounds, pending) = if quick { (5, 1_000) } else { (40, 10_000) };
    println!(
        "slack click → ack at the fake ({rounds} clicks per mode, {pending} approvals pending, callbacks sleeping 30 s):"
    );
    for mode in [Mode::Socket, Mode::Http] {
        let (fake, apart) = fake_apart();
        let (mut through_assent, cards) = assent(&fake, mode, rounds, pending).await;
        drop(fake);
        apart.shutdown_background();
        let (fake, apart) = fake_apart();
        let mut bare = bare_app(&fake, mode, &cards).await;
        drop(fake);
        apart.shutdown_background();
        through_assent.sort();
        bare.sort();
        let (a50, a99) = (percentile(&through_assent, 0.5), percentile(&through_assent, 0.99));
        let (b50, b99) = (percentile(&bare, 0.5), percentile(&bare, 0.99));
        let name = match mode {
            Mode::Socket => "Socket Mode",
            Mode::Http => "HTTP mode",
        };
        println!("  {name}");
        println!("    assent                p50 {a50:?}  p99 {a99:?}");
        println!("    bare slack-morphism   p50 {b50:?}  p99 {b99:?}");
        let ratio = a50.as_secs_f64() / b50.as_secs_f64().max(1e-9);
        println!("    ratio p50             {ratio:.2}x (goal ≤ 1.2x)");
        println!("    deadline              p99 is {:.2}% of Slack's 3 s", a99.as_secs_f64() / 3.0 * 100.0);
    }
}

/// A fake Slack with its person, on a one-thread runtime of its own.
fn fake_apart() -> (FakeSlack, tokio::runtime::Runtime) {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let fake = runtime.block_on(FakeSlack::start());
        fake.person(KIM, "kim");
        (fake, runtime)
    })
    .join()
    .unwrap_or_else(|_| panic!("the fake's runtime"))
}

fn with_callback(mut request: NewApproval) -> NewApproval {
    request.callback = Some(CALLBACK.to_owned());
    request
}

/// Serves `hook` at a free loopback port and points the fake at it.
async fn serve(fake: &FakeSlack, hook: Arc<dyn Hook>) {
    let app = axum::Router::new().route(
        "/hooks/slack/main",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let hook = hook.clone();
            async move {
                let answer = hook.handle(HookRequest { headers, body: body.to_vec() }).await;
                (answer.status, answer.body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}/hooks/slack/main", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake.set_request_url(&url);
}

/// The engine with `pending` approvals the account does not handle, and the account attached.
async fn engine(fake: &FakeSlack, mode: Mode, pending: usize) -> (Engine, EngineHandle, SlackChannel) {
    let mut config = config();
    config.console_route = ConsoleRoute::Always;
    let engine = Engine::builder(Arc::new(MemoryStore::new()), config)
        .webhook_sink(Arc::new(SleepySink))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let h = engine.handle();
    for _ in 0..pending {
        // Plugin approvals: the console's, not this Slack account's (it handles exec only).
        let Action::Plugin(p) = samples::plugin_action() else { unreachable!("a plugin action") };
        h.create(with_callback(NewApproval::new(Action::Plugin(p), "token:bench")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let key = AccountKey::new(Channel::Slack, "main");
    let mut routing = AccountRouting::new(key.clone(), vec![KIM.to_owned()]);
    routing.kinds = vec![Kind::Exec];
    let account = match mode {
        Mode::Socket => SlackAccount::socket_mode("main", BOT_TOKEN, APP_TOKEN, &fake.api_url()),
        Mode::Http => SlackAccount::http_mode("main", BOT_TOKEN, SIGNING_SECRET, &fake.api_url()),
    };
    let availability = SlackPlatform::availability(routing);
    if mode == Mode::Http {
        let hook = SlackPlatform.hook(&account, &availability, Inbound::new(h.clone(), key.clone()));
        serve(fake, hook.unwrap_or_else(|| panic!("a signing secret"))).await;
    }
    let channel = SlackChannel::connect(account, availability, Inbound::new(h.clone(), key))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.attach(channel.clone().erase()).await.unwrap_or_else(|e| panic!("{e}"));
    channel.socket_ready().await;
    (engine, h, channel)
}

/// The blocks of one posted card.
type Blocks = Vec<serde_json::Value>;

/// Clicks on fresh cards through assent; the delays, and the cards' blocks.
async fn assent(fake: &FakeSlack, mode: Mode, rounds: usize, pending: usize) -> (Vec<Duration>, Vec<Blocks>) {
    let (engine, h, channel) = engine(fake, mode, pending).await;
    let mut delays = Vec::new();
    let mut cards = Vec::new();
    for n in 0..rounds {
        let a = h
            .create(with_callback(exec_request(&["echo", &n.to_string()])))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let marker = format!("Ref {}", a.short_ref());
        let card = wait_for(|| {
            let dm = fake.dm_of(KIM)?;
            fake.bot_messages(&dm).into_iter().find(|m| m.shown.contains(&marker))
        })
        .await;
        let label = card.buttons.iter().find(|(_, _, v)| token_decision(v).is_some()).map(|b| b.0.clone());
        tokio::time::sleep(READ).await;
        let click =
            fake.click(KIM, &card.channel, &card.ts, &label.unwrap_or_else(|| panic!("no decision button")));
        delays.push(wait_for(|| fake.delivery(&click)?.acked).await);
        cards.push(card.blocks.clone());
        h.wait(&a.id, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(PACE).await;
    }
    drop(channel);
    engine.shutdown(Duration::from_secs(5)).await;
    (delays, cards)
}

fn client(fake: &FakeSlack) -> Arc<SlackHyperClient> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .unwrap_or_else(|e| panic!("{e}"))
        .https_or_http()
        .enable_http1()
        .build();
    let connector = SlackClientHyperConnector::from(https).with_slack_api_url(&fake.api_url());
    Arc::new(SlackClient::new(connector))
}

async fn ack_at_once(
    _event: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    _state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    Ok(())
}

/// A bare slack-morphism app: Socket Mode listener or signature-checking endpoint, posting
/// `cards` and acknowledging their clicks at once.
async fn bare_app(fake: &FakeSlack, mode: Mode, cards: &[Blocks]) -> Vec<Duration> {
    let client = client(fake);
    let listener = match mode {
        Mode::Socket => {
            let callbacks = SlackSocketModeListenerCallbacks::new().with_interaction_events(ack_at_once);
            let environment = Arc::new(SlackClientEventsListenerEnvironment::new(client.clone()));
            let config = SlackClientSocketModeConfig::new().with_max_connections_count(1);
            let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
            let app_token = SlackApiToken::new(APP_TOKEN.into());
            listener.listen_for(&app_token).await.unwrap_or_else(|e| panic!("{e}"));
            listener.start().await;
            wait_for(|| (fake.sockets().0 == 1).then_some(())).await;
            Some(listener)
        }
        Mode::Http => {
            serve(
                fake,
                Arc::new(BareHook(SlackEventSignatureVerifier::new(&SIGNING_SECRET.to_owned().into()))),
            )
            .await;
            None
        }
    };
    let bot = SlackApiToken::new(BOT_TOKEN.into());
    let session = client.open_session(&bot);
    let dm = session
        .conversations_open(&SlackApiConversationsOpenRequest::new().with_users(vec![KIM.into()]))
        .await;
    // slack-morphism sends `users` as a JSON array; the fake, like the method's page, wants a
    // comma-separated string, so the DM is opened as assent opens it.
    let dm = match dm {
        Ok(opened) => opened.channel.id.to_string(),
        Err(_) => {
            let opened: serde_json::Value = session
                .http_session_api
                .http_post("conversations.open", &serde_json::json!({ "users": KIM }), None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            opened["channel"]["id"].as_str().unwrap_or_else(|| panic!("no DM")).to_owned()
        }
    };
    let mut delays = Vec::new();
    for (n, card) in cards.iter().enumerate() {
        let blocks: Vec<SlackBlock> =
            serde_json::from_value(serde_json::Value::Array(card.clone())).unwrap_or_else(|e| panic!("{e}"));
        let content = SlackMessageContent::new().with_text(format!("card {n}")).with_blocks(blocks);
        let posted = session
            .chat_post_message(&SlackApiChatPostMessageRequest::new(dm.clone().into(), content))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(READ).await;
        let click = fake.click(KIM, &dm, posted.ts.as_ref(), "Allow once");
        delays.push(wait_for(|| fake.delivery(&click)?.acked).await);
        tokio::time::sleep(PACE).await;
    }
    if let Some(listener) = listener {
        listener.shutdown().await;
    }
    delays
}

/// HTTP mode with slack-morphism's verifier and nothing else.
struct BareHook(SlackEventSignatureVerifier);

impl Hook for BareHook {
    fn handle(&self, request: HookRequest) -> assent_platform::HookFuture<'_> {
        Box::pin(async move {
            let header =
                |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let body = String::from_utf8_lossy(&request.body);
            match self.0.verify(
                header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
                &body,
                header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
            ) {
                Ok(()) => assent_platform::HookResponse::ok(),
                Err(_) => assent_platform::HookResponse::unauthorized("bad signature"),
            }
        })
    }
}
