//! `cargo xtask bench store`: the store figures. NF-2 lifecycles/s on SQLite beside a raw-SQLite
//! floor measured in the same run, NF-6 create p99 to durable, NF-4 start to ready with 100k
//! pending.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use assent_core::{
    capability::IntoDynCapability,
    model::Channel,
    store::{Commit, Store, StoreError},
};
use assent_engine::{ConsoleRoute, Engine};
use assent_store::{OpenOptions, SqlStore};
use assent_testing::{FakeChannel, HookedStore, StoreHook, exec_request, test_config};
use async_trait::async_trait;
use sqlx::{Connection, Executor, SqliteConnection};

pub(crate) fn fresh(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// Counts commits so the floor does the same number of transactions.
#[derive(Default)]
struct CountCommits(AtomicUsize);

#[async_trait]
impl StoreHook for CountCommits {
    async fn on_commit(&self, _: &Commit) -> Result<Option<Box<dyn std::any::Any + Send>>, StoreError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }
}

/// NF-2 on `store`: `lifecycles` full lifecycles in waves of 500, three approvers on one fake
/// account; how long they took, and how many commits they made.
pub(crate) async fn nf2(store: Arc<dyn Store>, lifecycles: usize) -> (Duration, usize) {
    let store = Arc::new(HookedStore::new(store, CountCommits::default()));
    let fake = FakeChannel::new(Channel::Telegram, "main", &["41", "42", "43"]);
    let engine =
        Engine::builder(store.clone(), crate::config()).start().await.unwrap_or_else(|e| panic!("{e}"));
    let h = engine.handle();
    h.attach(fake.clone().erase()).await.unwrap_or_else(|e| panic!("{e}"));
    let before = store.hook.0.load(Ordering::Relaxed);
    let elapsed = crate::lifecycle_waves(&h, std::slice::from_ref(&fake), lifecycles, 500).await;
    let commits = store.hook.0.load(Ordering::Relaxed) - before;
    engine.shutdown(Duration::from_millis(100)).await;
    (elapsed, commits)
}

/// NF-2 on SQLite and the raw floor: the same number of commits, each one bare transaction
/// inserting a row of similar size, on the same PRAGMAs.
async fn nf2_sqlite(dir: &Path, lifecycles: usize) {
    let sqlite = SqlStore::open_sqlite(&fresh(dir, "nf2.db"), OpenOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (elapsed, commits) = nf2(Arc::new(sqlite), lifecycles).await;
    let rate = lifecycles as f64 / elapsed.as_secs_f64();

    // The floor: the same number of commits with bare SQL.
    let floor_elapsed: Duration = bare_commits(&fresh(dir, "floor.db"), commits).await.iter().sum();
    let per_lifecycle = commits as f64 / lifecycles as f64;
    let floor_rate = commits as f64 / floor_elapsed.as_secs_f64() / per_lifecycle;
    println!(
        "NF-2 lifecycles on SQLite: {lifecycles} in {:.2} s = {rate:.0}/s; raw-SQLite floor for the same {commits} commits \
         ({per_lifecycle:.1} per lifecycle): {floor_rate:.0}/s; ratio {:.0}% (budget: ≥ 50% and ≥ 3,000/s)",
        elapsed.as_secs_f64(),
        rate / floor_rate * 100.0
    );
}

/// The raw-SQLite floor: `n` bare transactions on one connection, each inserting one 2 KiB row,
/// on the store's PRAGMAs; how long each took.
pub(crate) async fn bare_commits(path: &Path, n: usize) -> Vec<Duration> {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap_or_else(|e| panic!("{e}"));
    for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL", "PRAGMA busy_timeout = 5000"] {
        conn.execute(pragma).await.unwrap_or_else(|e| panic!("{e}"));
    }
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body = "x".repeat(2048);
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let mut tx = conn.begin().await.unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("INSERT INTO t (id, body) VALUES ($1, $2)")
            .bind(i64::try_from(i).unwrap_or_default())
            .bind(&body)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        times.push(started.elapsed());
    }
    times
}

/// NF-6: create → durable, one at a time, p50/p99.
async fn nf6(dir: &Path, samples: usize) {
    let store = Arc::new(
        SqlStore::open_sqlite(&fresh(dir, "nf6.db"), OpenOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let mut config = test_config();
    config.console_route = ConsoleRoute::Always;
    let engine = Engine::builder(store, config).start().await.unwrap_or_else(|e| panic!("{e}"));
    let h = engine.handle();
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let req = exec_request(&["echo", &i.to_string()]);
        let t = Instant::now();
        h.create(req).await.unwrap_or_else(|e| panic!("{e}"));
        times.push(t.elapsed());
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "NF-6 create to durable on SQLite, {samples} creates: p50 {:.2} ms, p99 {:.2} ms (budget: p99 ≤ 5 ms)",
        p(0.5),
        p(0.99)
    );
    engine.shutdown(Duration::from_millis(100)).await;
}

/// Fills a fresh SQLite file at `path` with `pending` approvals waiting on the console, created
/// 64 at a time through the engine, as a server would have left them.
pub(crate) async fn seed_pending(path: &Path, pending: usize) {
    let store =
        Arc::new(SqlStore::open_sqlite(path, OpenOptions::default()).await.unwrap_or_else(|e| panic!("{e}")));
    let mut config = test_config();
    config.console_route = ConsoleRoute::Always;
    let engine = Engine::builder(store, config).start().await.unwrap_or_else(|e| panic!("{e}"));
    let h = engine.handle();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..pending {
        if tasks.len() >= 64 {
            tasks.join_next().await;
        }
        let h = h.clone();
        tasks.spawn(async move { h.create(exec_request(&["echo", &i.to_string()])).await.map(|_| ()) });
    }
    while tasks.join_next().await.is_some() {}
    engine.shutdown(Duration::from_secs(5)).await;
}

/// NF-4: open the store and start the engine (index + sweeper pass) with 100k pending. The two
/// steps are timed apart, so a regression says which one it is in.
async fn nf4(dir: &Path, pending: usize) {
    let path = fresh(dir, "nf4.db");
    seed_pending(&path, pending).await;
    wait_until_closed(&path).await;
    let start = Instant::now();
    let store = Arc::new(
        SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap_or_else(|e| panic!("{e}")),
    );
    let opened = start.elapsed();
    let engine = Engine::builder(store, test_config()).start().await.unwrap_or_else(|e| panic!("{e}"));
    let ready = start.elapsed();
    let n = engine.handle().pending_count();
    println!(
        "NF-4 start to ready with {n} pending on SQLite (open, migrate check, index, sweeper pass): {:.2} s \
         (open {:.2} s, engine start {:.2} s) (budget: ≤ 1 s)",
        ready.as_secs_f64(),
        opened.as_secs_f64(),
        (ready - opened).as_secs_f64(),
    );
    engine.shutdown(Duration::from_millis(100)).await;
}

/// Waits until the seeding store has closed: a dropped store closes its connections in the
/// background, and the last one copies the WAL into the database and deletes it. Timing starts
/// after that, as a restart after a clean stop does. Opening sooner races that close: the new
/// store then replays the few hundred MB of WAL the seeding left (0.1–0.3 s here), as a restart
/// after a crash under load does (docs/benchmarks.md, fourteenth pass).
async fn wait_until_closed(db: &Path) {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while wal.exists() {
        if Instant::now() > deadline {
            println!("(the seeding store's WAL is still there after 30 s: NF-4 below includes replaying it)");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn run(quick: bool) {
    let dir = std::env::temp_dir().join(format!("assent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let (l2, s6, p4) = if quick { (500, 200, 5_000) } else { (5_000, 2_000, 100_000) };
    println!("assent store benchmarks (release build, SQLite in {}, WAL, synchronous=NORMAL)", dir.display());
    nf2_sqlite(&dir, l2).await;
    nf6(&dir, s6).await;
    nf4(&dir, p4).await;
    let _ = std::fs::remove_dir_all(&dir);
}
