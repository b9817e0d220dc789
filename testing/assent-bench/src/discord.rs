//! `cargo xtask bench discord`: a button click until the fake Discord receives the bot's
//! deferred update (type 6), p50/p99, with 10k approvals pending in the engine and every
//! approval's callback sleeping 30 s; then a bare serenity bot (the same client, an event
//! handler that acknowledges every click at once) answering the same clicks through the same
//! fake. Prints both, the ratio, and how far p99 is from Discord's 3 s deadline.
//!
//! Cards to one DM channel follow Discord's bucket (five in five seconds), so rounds are paced
//! at one a second for both bots: the click is measured, not the pacing. Both bots' clicks come
//! 200 ms after the card appears (a person needs longer to read it), so a click is not timed
//! against the card's own delivery bookkeeping, which a real click never races.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::IntoDynCapability,
    memory::MemoryStore,
    model::{AccountKey, Action, Channel, Kind, NewApproval},
    routing::AccountRouting,
};
use assent_discord::{DiscordAccount, DiscordChannel, DiscordPlatform};
use assent_engine::{ConsoleRoute, Engine, Inbound};
use assent_fake_discord::{FakeDiscord, TOKEN};
use assent_testing::{exec_request, samples, token_decision};
use serenity::all::{
    ChannelId, Context, CreateButton, CreateInteractionResponse, CreateMessage, EventHandler, GatewayIntents,
    HttpBuilder, Interaction, UserId,
};

use crate::{SleepySink, config, percentile, wait_for};

const KIM: u64 = 222_222_222_222_222_222;
const PACE: Duration = Duration::from_millis(1100);
const CALLBACK: &str = "https://hooks.example.org/assent";
/// From the card's arrival to the click.
const READ: Duration = Duration::from_millis(200);

pub(crate) async fn run(quick: bool) {
    let (rounds, pending) = if quick { (5, 1_000) } else { (40, 10_000) };
    let fake = FakeDiscord::start().await;
    fake.person(KIM, "kim");

    let mut through_assent = assent(&fake, rounds, pending).await;
    let mut bare = bare_bot(&fake, rounds).await;
    through_assent.sort();
    bare.sort();
    let (a50, a99) = (percentile(&through_assent, 0.5), percentile(&through_assent, 0.99));
    let (b50, b99) = (percentile(&bare, 0.5), percentile(&bare, 0.99));
    println!(
        "discord click → deferred update at the fake ({rounds} clicks, {pending} approvals pending, callbacks sleeping 30 s):"
    );
    println!("  assent      p50 {a50:?}  p99 {a99:?}");
    println!("  bare bot    p50 {b50:?}  p99 {b99:?}");
    let ratio = a50.as_secs_f64() / b50.as_secs_f64().max(1e-9);
    println!("  ratio p50   {ratio:.2}x (goal ≤ 1.2x)");
    println!("  deadline    p99 is {:.2}% of Discord's 3 s", a99.as_secs_f64() / 3.0 * 100.0);
    println!("  failed      {} interactions (\"This interaction failed\")", fake.failed_interactions());
}

fn with_callback(mut request: NewApproval) -> NewApproval {
    request.callback = Some(CALLBACK.to_owned());
    request
}

/// Clicks on fresh cards through assent, with `pending` approvals the account does not handle.
async fn assent(fake: &FakeDiscord, rounds: usize, pending: usize) -> Vec<std::time::Duration> {
    let mut config = config();
    config.console_route = ConsoleRoute::Always;
    let engine = Engine::builder(Arc::new(MemoryStore::new()), config)
        .webhook_sink(Arc::new(SleepySink))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let h = engine.handle();
    for _ in 0..pending {
        // Plugin approvals: the console's, not this Discord account's (it handles exec only).
        let Action::Plugin(p) = samples::plugin_action() else { unreachable!("a plugin action") };
        let request = with_callback(NewApproval::new(Action::Plugin(p), "token:bench"));
        h.create(request).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let key = AccountKey::new(Channel::Discord, "main");
    let mut routing = AccountRouting::new(key.clone(), vec![KIM.to_string()]);
    routing.kinds = vec![Kind::Exec];
    let account = DiscordAccount::new("main", TOKEN, &fake.api_url());
    let channel = DiscordChannel::connect(
        account,
        DiscordPlatform::availability(routing),
        Inbound::new(h.clone(), key.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    h.attach(channel.clone().erase()).await.unwrap_or_else(|e| panic!("{e}"));
    channel.gateway_ready().await;
    let mut delays = Vec::new();
    for n in 0..rounds {
        let request = with_callback(exec_request(&["echo", &n.to_string()]));
        let a = h.create(request).await.unwrap_or_else(|e| panic!("{e}"));
        let marker = format!("Ref {}", a.short_ref());
        let card = wait_for(|| {
            let dm = fake.dm_of(KIM)?;
            fake.bot_messages(dm).into_iter().find(|m| m.text().contains(&marker))
        })
        .await;
        let allow =
            card.buttons.iter().find(|(_, id)| token_decision(id).is_some()).map(|(_, id)| id.clone());
        tokio::time::sleep(READ).await;
        let click = fake.click(KIM, card.id, &allow.unwrap_or_else(|| panic!("no decision button")));
        delays.push(wait_for(|| fake.interaction(click)?.ack_delay).await);
        h.wait(&a.id, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(PACE).await;
    }
    drop(channel);
    h.detach(&key).await.unwrap_or_else(|e| panic!("{e}"));
    engine.shutdown(Duration::from_secs(5)).await;
    delays
}

/// A bare serenity bot: acknowledge every click at once.
struct Bare;

#[serenity::async_trait]
impl EventHandler for Bare {
    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        if let Interaction::Component(c) = interaction {
            let _ = c.create_response(&ctx.http, CreateInteractionResponse::Acknowledge).await;
        }
    }
}

/// The same clicks answered by the bare bot.
async fn bare_bot(fake: &FakeDiscord, rounds: usize) -> Vec<Duration> {
    let before = fake.gateway_sessions().1;
    let base = fake.api_url().trim_end_matches("/api/v10").to_owned();
    let http = || HttpBuilder::new(TOKEN).proxy(base.clone()).ratelimiter_disabled(true).build();
    // The handler answers through the client's own HTTP, so it must reach the fake too.
    let mut client = serenity::client::ClientBuilder::new_with_http(http(), GatewayIntents::empty())
        .event_handler(Bare)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    *client.ws_url.lock().await = fake.gateway_url();
    let shards = client.shard_manager.clone();
    let running = tokio::spawn(async move { client.start().await });
    wait_for(|| {
        let (live, identifies, _) = fake.gateway_sessions();
        (live && identifies > before).then_some(())
    })
    .await;
    let rest = http();
    let dm = UserId::new(KIM).create_dm_channel(&rest).await.unwrap_or_else(|e| panic!("{e}")).id;
    let mut delays = Vec::new();
    for n in 0..rounds {
        let id = format!("bare.{n}");
        let card = CreateMessage::new()
            .content(format!("card {n}"))
            .button(CreateButton::new(&id).label("Allow once"));
        let message =
            ChannelId::new(dm.get()).send_message(&rest, card).await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(READ).await;
        let click = fake.click(KIM, message.id.get(), &id);
        delays.push(wait_for(|| fake.interaction(click)?.ack_delay).await);
        tokio::time::sleep(PACE).await;
    }
    shards.shutdown_all().await;
    running.abort();
    delays
}
