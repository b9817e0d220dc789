//! `cargo xtask bench telegram`: a button press until the fake Bot API server receives the
//! bot's `answerCallbackQuery`, p50/p99, with 10k approvals pending in the engine; then a bare
//! teloxide bot (the same client, a plain long-poll loop that answers every callback at once)
//! answering the same presses through the same fake. Prints both and the ratio.
//!
//! Cards to one private chat are paced at one a second (as Telegram asks), so a round takes a
//! second: the press is measured, not the pacing.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::IntoDynCapability,
    memory::MemoryStore,
    model::{AccountKey, Action, Channel, Kind, NewApproval},
    routing::AccountRouting,
};
use assent_engine::{ConsoleRoute, Engine, Inbound};
use assent_fake_telegram::{FakeTelegram, TOKEN};
use assent_telegram::{TelegramAccount, TelegramChannel, TelegramPlatform};
use assent_testing::{exec_request, samples, test_config};
use teloxide_core::{
    Bot,
    payloads::setters::*,
    requests::Requester,
    types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, UpdateKind},
};

use crate::{percentile, wait_for};

const KIM: i64 = 1001;

pub(crate) async fn run(quick: bool) {
    let (rounds, pending) = if quick { (5, 1_000) } else { (40, 10_000) };
    let fake = FakeTelegram::start().await;
    fake.person(KIM, "Kim", Some("kim"));
    fake.start_bot(KIM);

    let mut through_assent = assent(&fake, rounds, pending).await;
    let mut bare = bare_bot(&fake, rounds).await;
    through_assent.sort();
    bare.sort();
    let (a50, a99) = (percentile(&through_assent, 0.5), percentile(&through_assent, 0.99));
    let (b50, b99) = (percentile(&bare, 0.5), percentile(&bare, 0.99));
    println!("telegram press → answerCallbackQuery ({rounds} presses, {pending} approvals pending):");
    println!("  assent      p50 {a50:?}  p99 {a99:?}");
    println!("  bare bot    p50 {b50:?}  p99 {b99:?}");
    let ratio = a50.as_secs_f64() / b50.as_secs_f64().max(1e-9);
    println!("  ratio p50   {ratio:.2}x (goal ≤ 1.2x)");
}

/// Presses on fresh cards through assent, with `pending` approvals the account does not handle.
async fn assent(fake: &FakeTelegram, rounds: usize, pending: usize) -> Vec<Duration> {
    let mut config = test_config();
    config.console_route = ConsoleRoute::Always;
    config.route_wait = Duration::from_secs(30);
    let engine =
        Engine::builder(Arc::new(MemoryStore::new()), config).start().await.unwrap_or_else(|e| panic!("{e}"));
    let h = engine.handle();
    for _ in 0..pending {
        // Plugin approvals: the console's, not this Telegram account's (it handles exec only).
        let Action::Plugin(p) = samples::plugin_action() else { unreachable!("a plugin action") };
        h.create(NewApproval::new(Action::Plugin(p), "token:bench")).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let key = AccountKey::new(Channel::Telegram, "main");
    let mut routing = AccountRouting::new(key.clone(), vec![KIM.to_string()]);
    routing.kinds = vec![Kind::Exec];
    let state = std::env::temp_dir().join(format!("assent-bench-telegram-{}", std::process::id()));
    let account = TelegramAccount::new("main", TOKEN, &fake.url(), state);
    let channel = TelegramChannel::connect(
        account,
        TelegramPlatform::availability(routing),
        Inbound::new(h.clone(), key),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    h.attach(channel.clone().erase()).await.unwrap_or_else(|e| panic!("{e}"));
    let mut delays = Vec::new();
    for n in 0..rounds {
        let a = h.create(exec_request(&["echo", &n.to_string()])).await.unwrap_or_else(|e| panic!("{e}"));
        let marker = format!("Ref {}", a.short_ref());
        let card = wait_for(|| fake.bot_messages(KIM).into_iter().find(|m| m.text.contains(&marker))).await;
        let query = fake.press(KIM, KIM, card.id, &card.buttons[0][0].1);
        delays.push(wait_for(|| fake.answer_delay(&query)).await);
        h.wait(&a.id, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e}"));
    }
    drop(channel);
    h.detach(&AccountKey::new(Channel::Telegram, "main")).await.unwrap_or_else(|e| panic!("{e}"));
    engine.shutdown(Duration::from_secs(5)).await;
    delays
}

/// The same presses answered by a bare teloxide bot: long poll, answer every callback at once.
async fn bare_bot(fake: &FakeTelegram, rounds: usize) -> Vec<Duration> {
    let url = url::Url::parse(&fake.url()).unwrap_or_else(|e| panic!("{e}"));
    let bot = Bot::new(TOKEN).set_api_url(url);
    let poller = bot.clone();
    let answering = tokio::spawn(async move {
        let mut offset = 0;
        loop {
            let Ok(updates) = poller.get_updates().offset(offset).timeout(10).await else { continue };
            for u in updates {
                offset = i32::try_from(u.id.0).unwrap_or(i32::MAX) + 1;
                if let UpdateKind::CallbackQuery(q) = u.kind {
                    let _ = poller.answer_callback_query(q.id).text("Recording: allow once").await;
                }
            }
        }
    });
    let mut delays = Vec::new();
    for n in 0..rounds {
        let keyboard =
            InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Allow once", format!("bare.{n}"))]]);
        let message = loop {
            match bot.send_message(ChatId(KIM), format!("card {n}")).reply_markup(keyboard.clone()).await {
                Ok(m) => break m.id.0,
                // The chat's send limit, as Telegram enforces it: wait as told.
                Err(teloxide_core::RequestError::RetryAfter(s)) => tokio::time::sleep(s.duration()).await,
                Err(e) => panic!("{e}"),
            }
        };
        let query = fake.press(KIM, KIM, i64::from(message), &format!("bare.{n}"));
        delays.push(wait_for(|| fake.answer_delay(&query)).await);
        // The same pace as assent's cards.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    answering.abort();
    delays
}
