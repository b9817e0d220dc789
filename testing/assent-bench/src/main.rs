//! `cargo xtask bench`: the engine benchmarks behind NF-1, NF-2 and NF-3, on MemoryStore and
//! FakeChannel. Prints each figure next to its budget. Figures, not assertions: a slow machine
//! prints a slow number.

// matrix-sdk futures are deeply nested; the default limit is too small to prove them `Send`.
#![recursion_limit = "256"]

mod alloc;
mod discord;
mod hot;
mod matrix;
#[cfg(feature = "postgres")]
mod postgres;
mod scaling;
mod server;
mod slack;
mod store;
mod telegram;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use assent_core::{
    capability::IntoDynCapability,
    clock::Timestamp,
    memory::MemoryStore,
    model::{Channel, Decision, Kind},
    store::{ApprovalWrite, CallbackJob, Commit, Store},
    token::TokenAction,
};
use assent_engine::{CallbackSink, ConsoleRoute, Engine, EngineConfig, EngineHandle};
use assent_testing::{FakeChannel, exec_request, test_config, test_keyring};
use async_trait::async_trait;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const USAGE: &str = "usage: assent-bench [store|postgres|server|hot|scaling|matrix|telegram|discord|slack] [--quick]\n  matrix   a Matrix approval round trip on a real Synapse, against a bare matrix-sdk bot\n  telegram a press until the fake Bot API server gets answerCallbackQuery, against a bare teloxide bot\n  discord  a click until the fake Discord gets the deferred update, against a bare serenity bot\n  slack    a click until the fake Slack gets the ack, in Socket Mode and HTTP mode, against bare slack-morphism apps\n  store    the SQLite figures (NF-2 with its raw floor, NF-4, NF-6) instead of the engine ones\n  postgres NF-2 on a durable PostgreSQL server, group commit off and on, beside bare commits (needs the `postgres` feature)\n  server   the real binary ($ASSENT_BIN): NF-5 CLI start, 10k long-poll waiters\n  scaling  heap per pending approval and NF-2 with 1k/10k/100k pending and 1/10/100 accounts\n  hot      the real binary ($ASSENT_BIN): requests a grant or a refusal answers, 32 keep-alive clients, beside GET /v1/health and bare SQLite\n  nf1|nf2|nf3  only these engine figures (default: all three)\n  --quick  smaller runs (for a smoke test)";

/// A webhook receiver that takes 30 s to answer, like a slow plugin.
struct SleepySink;

#[async_trait]
impl CallbackSink for SleepySink {
    async fn send(&self, _job: &CallbackJob) -> Result<(), String> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(())
    }
}

fn config() -> EngineConfig {
    let mut c = test_config();
    c.callback_attempt_timeout = Duration::from_secs(60);
    c.route_wait = Duration::from_secs(30);
    c.notice_wait = Duration::from_secs(10);
    c
}

async fn engine(config: EngineConfig, channels: &[FakeChannel], sink: bool) -> (Engine, EngineHandle) {
    let mut b = Engine::builder(Arc::new(MemoryStore::new()), config);
    if sink {
        b = b.webhook_sink(Arc::new(SleepySink));
    }
    let engine = b.start().await.unwrap_or_else(|e| panic!("engine: {e}"));
    let h = engine.handle();
    for c in channels {
        h.attach(c.clone().erase()).await.unwrap_or_else(|e| panic!("attach: {e}"));
    }
    (engine, h)
}

/// Polls `check` every millisecond until it gives a value (a minute at most).
async fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..60_000 {
        if let Some(found) = check() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// NF-1: receipt → ack issued (the precheck) with 10k pending and callbacks that sleep 30 s.
async fn nf1(pending: usize, samples: usize) {
    let fake = FakeChannel::new(Channel::Telegram, "main", &["42"]);
    let (engine, h) = engine(config(), std::slice::from_ref(&fake), true).await;
    let mut ids = Vec::with_capacity(pending);
    for i in 0..pending {
        let mut req = exec_request(&["echo", &i.to_string()]);
        req.callback = Some("https://hooks.example.org/assent".to_owned());
        ids.push(h.create(req).await.unwrap_or_else(|e| panic!("create: {e}")).id);
    }
    let keyring = test_keyring();
    let account = fake.key();
    let actor = fake.actor("42");
    let mut acks = Vec::with_capacity(samples);
    for id in ids.iter().take(samples) {
        let token = keyring.sign(Kind::Exec, TokenAction::Decide(Decision::AllowOnce), id, &account);
        let received = Instant::now();
        let accepted = h.precheck_token(&account, &token, actor.clone());
        acks.push(received.elapsed());
        let accepted = accepted.unwrap_or_else(|r| panic!("precheck refused: {r}"));
        // Resolve after the ack, as a channel does; its callback then sleeps 30 s in the outbox.
        let h2 = h.clone();
        tokio::spawn(async move { h2.resolve(accepted).await });
    }
    acks.sort();
    println!(
        "NF-1 ack (receipt → ack issued), {pending} pending, callbacks sleeping 30 s, {samples} acks: p50 {:.1} µs, p99 {:.1} µs (budget: p99 ≤ 1 ms)",
        percentile(&acks, 0.50).as_secs_f64() * 1e6,
        percentile(&acks, 0.99).as_secs_f64() * 1e6,
    );
    engine.shutdown(Duration::from_millis(10)).await;
}

/// Runs `lifecycles` full lifecycles (create, deliver to the 3 approvers of every fake account,
/// resolve, finalize every card) in waves, so the harness never polls per approval: create a
/// wave, wait until its cards are delivered, resolve them all, wait until every card is final.
/// Cards and finalizations already counted by the fakes (approvals left pending) are ignored.
pub(crate) async fn lifecycle_waves(
    h: &EngineHandle,
    fakes: &[FakeChannel],
    lifecycles: usize,
    wave: usize,
) -> Duration {
    let keyring = test_keyring();
    let account = fakes[0].key();
    let sent = || fakes.iter().map(FakeChannel::message_count).sum::<usize>();
    let finalized = || fakes.iter().map(FakeChannel::finalized_count).sum::<usize>();
    let (sent_before, finalized_before) = (sent(), finalized());
    let wave = wave.min(lifecycles).max(1);
    let start = Instant::now();
    for w in 0..lifecycles.div_ceil(wave) {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..wave {
            let h = h.clone();
            tasks.spawn(async move {
                h.create(exec_request(&["echo", &(w * wave + i).to_string()])).await.map(|a| a.id)
            });
        }
        let ids: Vec<_> =
            tasks.join_all().await.into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}"))).collect();
        let done = w * wave + ids.len();
        wait_until(|| sent() >= sent_before + done * 3 * fakes.len()).await;
        let mut tasks = tokio::task::JoinSet::new();
        for id in &ids {
            let token = keyring.sign(Kind::Exec, TokenAction::Decide(Decision::AllowOnce), id, &account);
            let acc =
                h.precheck_token(&account, &token, fakes[0].actor("42")).unwrap_or_else(|r| panic!("{r}"));
            let h = h.clone();
            tasks.spawn(async move { h.resolve(acc).await.map(|_| ()) });
        }
        for r in tasks.join_all().await {
            r.unwrap_or_else(|e| panic!("{e}"));
        }
        // `on_finalized` fires once per approval and account, when all its cards there are final.
        wait_until(|| finalized() >= finalized_before + done * fakes.len()).await;
    }
    start.elapsed()
}

async fn wait_until(f: impl Fn() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// NF-2: full lifecycles per second on MemoryStore, after a counted warm-up that gives the heap
/// allocations per lifecycle (a figure that, unlike the rate, does not move with the machine).
async fn nf2(lifecycles: usize) {
    const COUNTED: usize = 1_000;
    let fake = FakeChannel::new(Channel::Telegram, "main", &["41", "42", "43"]);
    let (engine, h) = engine(config(), std::slice::from_ref(&fake), false).await;
    alloc::count_calls();
    let before = alloc::calls();
    lifecycle_waves(&h, std::slice::from_ref(&fake), COUNTED, 1_000).await;
    let per_lifecycle = (alloc::calls() - before) as f64 / COUNTED as f64;
    alloc::stop_counting();
    let elapsed = lifecycle_waves(&h, std::slice::from_ref(&fake), lifecycles, 1_000).await;
    println!(
        "NF-2 lifecycles on MemoryStore (create, deliver to 3 targets, resolve, finalize all 3): {lifecycles} in {:.2} s = {:.0}/s (budget: ≥ 50,000/s); {per_lifecycle:.0} heap allocations per lifecycle, fake channel and harness included",
        elapsed.as_secs_f64(),
        lifecycles as f64 / elapsed.as_secs_f64()
    );
    engine.shutdown(Duration::from_millis(10)).await;
}

/// NF-3: resident bytes per pending approval, engine only and engine + MemoryStore.
async fn nf3(pending: usize) {
    let mut c = config();
    c.console_route = ConsoleRoute::Always;
    let (engine, h) = engine(c, &[], false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = alloc::live_bytes();
    for i in 0..pending {
        h.create(exec_request(&["echo", &i.to_string()])).await.unwrap_or_else(|e| panic!("{e}"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let total = alloc::live_bytes() - before;
    // The same records committed straight into a fresh MemoryStore: the store's share. Measured
    // from before they are read, so the copies the twin keeps are counted.
    let before_store = alloc::live_bytes();
    let records = h
        .store()
        .approvals(&assent_core::store::ApprovalFilter { limit: pending, ..Default::default() })
        .await
        .unwrap_or_default();
    let events = h.store().events_since(0, pending).await.unwrap_or_default();
    let audit = h
        .store()
        .audit(&assent_core::store::AuditFilter { limit: pending, ..Default::default() })
        .await
        .unwrap_or_default();
    let twin = MemoryStore::new();
    for ((a, e), au) in records.into_iter().zip(events).zip(audit) {
        let commit = Commit {
            approval: Some(ApprovalWrite::Insert { approval: a, idempotency: None }),
            events: vec![e],
            audit: vec![au],
            ..Commit::default()
        };
        twin.commit(commit, Timestamp(0)).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let store_share = alloc::live_bytes() - before_store;
    let per = |b: isize| b as f64 / pending as f64;
    println!(
        "NF-3 resident bytes per pending approval ({pending} pending): engine {:.0} B, engine + MemoryStore {:.0} B (budget: engine ≤ 2,048 B)",
        per(total - store_share),
        per(total)
    );
    drop(twin);
    engine.shutdown(Duration::from_millis(10)).await;
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let figures = ["nf1", "nf2", "nf3"];
    let commands =
        ["store", "postgres", "server", "hot", "scaling", "matrix", "telegram", "discord", "slack"];
    let words: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "--quick").collect();
    let command = words.iter().copied().find(|w| commands.contains(w));
    if words.iter().any(|w| !figures.contains(w) && !commands.contains(w))
        || (command.is_some() && words.len() > 1)
    {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    match command {
        Some("store") => return rt.block_on(store::run(quick)),
        #[cfg(feature = "postgres")]
        Some("postgres") => return rt.block_on(postgres::run(quick)),
        #[cfg(not(feature = "postgres"))]
        Some("postgres") => {
            eprintln!(
                "this assent-bench was built without its `postgres` feature: run `cargo xtask bench postgres`"
            );
            std::process::exit(2);
        }
        Some("server") => return rt.block_on(server::run(quick)),
        Some("hot") => return rt.block_on(hot::run(quick)),
        Some("scaling") => return rt.block_on(scaling::run(quick)),
        Some("matrix") => return rt.block_on(matrix::run(quick)),
        Some("telegram") => return rt.block_on(telegram::run(quick)),
        Some("discord") => return rt.block_on(discord::run(quick)),
        Some("slack") => return rt.block_on(slack::run(quick)),
        _ => {}
    }
    let (p1, s1, l2, p3) = if quick { (1_000, 500, 1_000, 10_000) } else { (10_000, 5_000, 20_000, 100_000) };
    let wanted = |figure: &str| words.is_empty() || words.contains(&figure);
    println!("assent engine benchmarks (release build, 2 worker threads, MemoryStore + FakeChannel)");
    // NF-3 first: it needs the allocation counter, which the others run without.
    if wanted("nf3") {
        rt.block_on(nf3(p3));
    }
    alloc::stop_counting();
    // NF-2 before NF-1: NF-1 leaves its resolves and their callbacks running when it ends,
    // which would share the runtime with NF-2's lifecycles and its count of allocations.
    if wanted("nf2") {
        rt.block_on(nf2(l2));
    }
    if wanted("nf1") {
        rt.block_on(nf1(p1, s1));
    }
}
