//! `cargo xtask bench scaling`: how the engine's cost grows with the work, on MemoryStore and
//! fake channels. Heap bytes per pending approval and NF-2 lifecycles/s with 1k, 10k and 100k
//! approvals already pending; NF-2 with 1, 10 and 100 accounts attached.

use std::time::Duration;

use assent_core::model::Channel;
use assent_engine::{ConsoleRoute, Engine, EngineHandle};
use assent_testing::{FakeChannel, exec_request};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const ACCOUNTS: [usize; 3] = [1, 10, 100];

/// An engine with `accounts` fake Telegram accounts of three approvers each. RT-4 sends an
/// approval to one account per platform, so the first is the default and takes every card; the
/// others are attached beside it, as in a gateway that serves many bots.
async fn engine_with(accounts: usize) -> (Engine, EngineHandle, Vec<FakeChannel>) {
    let fakes: Vec<FakeChannel> = (0..accounts)
        .map(|i| {
            FakeChannel::new(Channel::Telegram, &format!("a{i}"), &["41", "42", "43"])
                .with_routing(|r| r.default = i == 0)
        })
        .collect();
    let (engine, h) = crate::engine(crate::config(), &fakes, false).await;
    (engine, h, fakes)
}

/// Creates `n` approvals and waits until every card of them is out.
async fn fill(h: &EngineHandle, fakes: &[FakeChannel], n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        if tasks.len() >= 256 {
            tasks.join_next().await;
        }
        let h = h.clone();
        tasks.spawn(async move { h.create(exec_request(&["sleep", &format!("p{i}")])).await.map(|_| ()) });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    }
    let cards = n * 3 * fakes.len();
    crate::wait_until(|| fakes.iter().map(FakeChannel::message_count).sum::<usize>() >= cards).await;
}

/// Live heap bytes per pending approval (engine and MemoryStore together) at each size. Runs
/// first: it needs the allocation counter, which the throughput figures run without.
async fn memory() -> Vec<f64> {
    let mut per = Vec::new();
    for n in SIZES {
        let mut config = crate::config();
        config.console_route = ConsoleRoute::Always;
        let (engine, h) = crate::engine(config, &[], false).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = crate::alloc::live_bytes();
        fill(&h, &[], n).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        per.push((crate::alloc::live_bytes() - before) as f64 / n as f64);
        engine.shutdown(Duration::from_millis(10)).await;
    }
    per
}

/// NF-2 lifecycles/s with `pending` approvals waiting beside them and `accounts` accounts.
async fn lifecycles(pending: usize, accounts: usize, lifecycles: usize) -> f64 {
    let (engine, h, fakes) = engine_with(accounts).await;
    let used = &fakes[..1];
    fill(&h, used, pending).await;
    let elapsed = crate::lifecycle_waves(&h, used, lifecycles, 500).await;
    engine.shutdown(Duration::from_millis(10)).await;
    lifecycles as f64 / elapsed.as_secs_f64()
}

pub(crate) async fn run(quick: bool) {
    let n = if quick { 1_000 } else { 5_000 };
    println!(
        "assent scaling (release build, 2 worker threads, MemoryStore + fake channels, {n} lifecycles a row)"
    );
    let bytes = memory().await;
    crate::alloc::stop_counting();
    println!("| pending | heap per pending approval | NF-2 lifecycles/s |");
    println!("|---|---|---|");
    for (size, per) in SIZES.into_iter().zip(bytes) {
        let rate = lifecycles(size, 1, n).await;
        println!("| {size} | {per:.0} B | {rate:.0} |");
    }
    println!("| attached accounts (one takes the cards, RT-4) | NF-2 lifecycles/s |");
    println!("|---|---|");
    for accounts in ACCOUNTS {
        let rate = lifecycles(0, accounts, n).await;
        println!("| {accounts} | {rate:.0} |");
    }
}
