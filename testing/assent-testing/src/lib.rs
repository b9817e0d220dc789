//! Test support for assent: [`FakeChannel`], a [`TestBed`] that starts an engine on a manual
//! clock with deterministic ids, and the contract-test macros every store
//! ([`store_contract_tests!`]) and every channel ([`channel_contract_tests!`]) must pass.

pub mod channel_contract;
mod fake;
mod hooked;
mod peers;
mod platform;
pub mod postgres;
pub mod samples;
pub mod store_contract;
pub mod synapse;
pub mod watchdog;

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    clock::{ManualClock, Timestamp},
    id::SequentialIds,
    memory::MemoryStore,
    model::{Action, ExecRequest, NewApproval},
    store::Store,
    token::{Keyring, TokenKey},
};
use assent_engine::{CallbackSink, Engine, EngineConfig, EngineHandle};

pub use self::fake::{
    ClickOutcome, FakeAnchor, FakeCards, FakeChannel, FakeEntry, FakeError, FakeMessage, FakePayload, Fault,
    FinalMode, Op, render_card, token_decision,
};
pub use self::hooked::{HookedStore, StoreHook};
pub use self::platform::{FakeAccount, FakeKeys, FakePlatform};

/// The fixed start time of every test clock: 2026-01-01T00:00:00Z.
pub const T0: Timestamp = Timestamp(1_767_225_600_000);

/// The token key tests use.
pub fn test_keyring() -> Keyring {
    Keyring::new(TokenKey::new([42; 32]), Vec::new())
}

/// An engine configuration with fast timers for tests.
pub fn test_config() -> EngineConfig {
    let mut c = EngineConfig::new(test_keyring());
    c.sweep_interval = Duration::from_millis(250);
    c.route_wait = Duration::from_millis(500);
    c.notice_wait = Duration::from_millis(300);
    c.callback_attempt_timeout = Duration::from_millis(500);
    c
}

/// An exec request for `argv` from `token:ci`.
pub fn exec_request(argv: &[&str]) -> NewApproval {
    let exec = ExecRequest {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        host: "build-1".to_owned(),
        ..Default::default()
    };
    // Test argv are small and valid.
    let action = exec.into_action().unwrap_or_else(|e| panic!("test argv invalid: {e}"));
    NewApproval::new(Action::Exec(action), "token:ci")
}

/// An engine on a manual clock and sequential ids, with fake channels attached.
pub struct TestBed {
    /// The engine.
    pub engine: Engine,
    /// Its handle.
    pub handle: EngineHandle,
    /// The clock.
    pub clock: ManualClock,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The id source, shared across restarts so ids never repeat.
    pub ids: Arc<SequentialIds>,
    config: EngineConfig,
}

impl TestBed {
    /// Memory store, test config, the given fakes attached.
    pub async fn new(channels: &[FakeChannel]) -> Self {
        Self::with(Arc::new(MemoryStore::new()), test_config(), channels).await
    }

    /// A bed over `store` with `config`.
    pub async fn with(store: Arc<dyn Store>, config: EngineConfig, channels: &[FakeChannel]) -> Self {
        Self::with_clock(store, config, channels, ManualClock::new(T0)).await
    }

    /// A bed that shares `clock` (for restarts).
    pub async fn with_clock(
        store: Arc<dyn Store>,
        config: EngineConfig,
        channels: &[FakeChannel],
        clock: ManualClock,
    ) -> Self {
        Self::start(store, config, erase_all(channels), clock, Arc::new(SequentialIds::default())).await
    }

    /// A bed whose URL callbacks go to `sink`.
    pub async fn with_webhook(channels: &[FakeChannel], sink: Arc<dyn CallbackSink>) -> Self {
        let ids = Arc::new(SequentialIds::default());
        Self::start_with(
            Arc::new(MemoryStore::new()),
            test_config(),
            erase_all(channels),
            ManualClock::new(T0),
            ids,
            Some(sink),
        )
        .await
    }

    /// A bed over `store` with erased capabilities of any channel.
    pub async fn with_capabilities(
        store: Arc<dyn Store>,
        config: EngineConfig,
        caps: Vec<Arc<dyn DynApprovalCapability>>,
    ) -> Self {
        Self::start(store, config, caps, ManualClock::new(T0), Arc::new(SequentialIds::default())).await
    }

    async fn start(
        store: Arc<dyn Store>,
        config: EngineConfig,
        caps: Vec<Arc<dyn DynApprovalCapability>>,
        clock: ManualClock,
        ids: Arc<SequentialIds>,
    ) -> Self {
        Self::start_with(store, config, caps, clock, ids, None).await
    }

    async fn start_with(
        store: Arc<dyn Store>,
        config: EngineConfig,
        caps: Vec<Arc<dyn DynApprovalCapability>>,
        clock: ManualClock,
        ids: Arc<SequentialIds>,
        sink: Option<Arc<dyn CallbackSink>>,
    ) -> Self {
        let mut builder =
            Engine::builder(store.clone(), config.clone()).clock(Arc::new(clock.clone())).ids(ids.clone());
        if let Some(sink) = sink {
            builder = builder.webhook_sink(sink);
        }
        let engine = builder.start().await.unwrap_or_else(|e| panic!("engine failed to start: {e}"));
        let handle = engine.handle();
        for c in caps {
            handle.attach(c).await.unwrap_or_else(|e| panic!("attach failed: {e}"));
        }
        Self { engine, handle, clock, store, ids, config }
    }

    /// Stops this engine (as a shutdown would; a crash loses nothing more, since every decision
    /// is committed before it is acknowledged) and starts a new one on the same store, clock and
    /// id source, attaching `channels`.
    pub async fn restart(self, channels: &[FakeChannel]) -> Self {
        self.restart_with(erase_all(channels)).await
    }

    /// [`TestBed::restart`] with erased capabilities of any channel.
    pub async fn restart_with(self, caps: Vec<Arc<dyn DynApprovalCapability>>) -> Self {
        let TestBed { engine, store, clock, ids, config, .. } = self;
        engine.shutdown(Duration::from_millis(100)).await;
        Self::start(store, config, caps, clock, ids).await
    }
}

fn erase_all(channels: &[FakeChannel]) -> Vec<Arc<dyn DynApprovalCapability>> {
    channels.iter().map(|c| c.clone().erase()).collect()
}

#[doc(hidden)]
pub mod __private {
    pub use assent_core::store::Store;
}

/// This test process's own directory `<base>/<name>-<pid>`, created if needed. The first call
/// for a `name` also removes the directories earlier test processes left behind (their pid is
/// gone), so repeated runs do not pile up scratch data under `target/`.
pub fn process_scratch(base: &std::path::Path, name: &str) -> std::path::PathBuf {
    static SWEPT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut swept = SWEPT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !swept.iter().any(|n| n == name) {
        swept.push(name.to_owned());
        sweep_dead(base, name);
    }
    let dir = base.join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Removes `<base>/<name>-<pid>` of processes that no longer run (Linux: no `/proc/<pid>`), and
/// this process's own if an earlier process with the same pid left one.
fn sweep_dead(base: &std::path::Path, name: &str) {
    let proc = std::path::Path::new("/proc");
    let own = std::process::id().to_string();
    let (Ok(entries), true) = (std::fs::read_dir(base), proc.is_dir()) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let pid = file_name.to_str().and_then(|f| f.strip_prefix(name)).and_then(|f| f.strip_prefix('-'));
        if let Some(pid) = pid.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && (pid == own || !proc.join(pid).exists())
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Polls `check` every 5 ms for up to 10 s of real time. Not a timing assertion: it only bounds
/// how long a broken test hangs.
pub async fn eventually(what: &str, check: &mut dyn FnMut() -> bool) {
    for _ in 0..2000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}
