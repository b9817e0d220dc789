//! SQLite's writer: a thread of the store's own that owns the one write connection and calls
//! SQLite in place (ST-3, NF-2, issue 15).
//!
//! sqlx runs each SQLite connection on a worker thread and hands it every statement, so a
//! commit used to cross threads several times (its statements, then the batch's `BEGIN` and
//! `COMMIT`), and those hand-offs, not SQLite's work, bounded every write (docs/benchmarks.md,
//! fifth to eighth passes). Here a commit crosses to another thread and back once: the caller
//! queues it, the thread runs it and answers. The statements are the same [`Step`]s PostgreSQL runs through sqlx
//! (`crate::writes`), prepared once and kept in the connection's statement cache.
//!
//! Group commit: the thread takes every commit waiting in the queue (up to a batch) and runs
//! them in one transaction (`batch.rs`).
//! - A commit whose checks fail (a stale version, a taken key) leaves nothing behind, and its
//!   caller gets that error, exactly as if it had run by itself: the batch runs again with a
//!   savepoint around each commit, and the failed one is rolled back to its savepoint alone.
//! - Every caller is answered only after the shared transaction is durable, so an acknowledged
//!   commit survives a crash (NF-7). If the transaction fails, every caller is told so and
//!   nothing of the batch is kept.
//!
//! Callback claims, retention and the WAL's resets queue here too, each claim and purge in a
//! transaction of its own, so nothing else in the process competes for SQLite's write lock. The
//! store's sqlx pool only reads (and migrates, before this thread starts).

mod batch;
mod load;
mod wal;

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use assent_core::{
    clock::Timestamp,
    store::{CallbackJob, Commit, Committed, StoreError},
};
use rusqlite::{
    CachedStatement, Connection, ErrorCode, OpenFlags, Row, ToSql, ffi,
    types::{ToSqlOutput, ValueRef},
};
use tokio::sync::{mpsc, oneshot};

pub(crate) use self::wal::{WalResetter, checkpoints};
use self::{
    batch::commit_batch,
    load::Load,
    wal::{Reset, reset_wal},
};

use crate::{
    Durability, OpenError,
    grant_cache::GrantCache,
    rows::{decode, limit},
    steps::{Step, Value},
    writes::{DOOMED, lease_out, removals},
};

/// Most commits in one transaction, so the first caller of a burst never waits for a long one.
pub(crate) const MAX_BATCH: usize = 128;

/// Callbacks due for their lease, oldest first (SQLite has one writer, so no row locks).
const CLAIMABLE: &str = "SELECT body FROM callbacks WHERE state = 'pending' AND next_attempt_at <= $1
    ORDER BY next_attempt_at LIMIT $2";

type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

/// A commit waiting for the thread.
struct Queued {
    commit: Commit,
    now: Timestamp,
    answer: Answer<Committed>,
}

#[allow(
    clippy::large_enum_variant,
    reason = "nearly every job is a commit: boxing it would cost an allocation each"
)]
enum Job {
    Commit(Queued),
    Claim {
        now: Timestamp,
        lease: Duration,
        n: usize,
        answer: Answer<Vec<CallbackJob>>,
    },
    Purge {
        before: Timestamp,
        answer: Answer<u64>,
    },
    ResetWal {
        reset: Reset,
        answer: oneshot::Sender<bool>,
    },
    /// A bug on the thread, in tests: what a panic leaves behind.
    #[cfg(test)]
    Panic,
}

/// The handle of the writer thread; the thread ends once the store (its only sender) drops and
/// the queue is empty.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    queue: mpsc::UnboundedSender<Job>,
}

impl SqliteWriter {
    /// Opens the write connection to the database at `path` (already created and migrated) and
    /// starts the thread. `batch`: most commits per transaction (1 turns group commit off).
    /// `grants`: the active grants to keep in step with every batch kept.
    pub(crate) fn start(
        path: &Path,
        durability: Durability,
        batch: usize,
        grants: Option<Arc<GrantCache>>,
    ) -> Result<Self, OpenError> {
        let conn = open(path, durability).map_err(|e| OpenError::Io {
            context: format!("opening the write connection to {}", path.display()),
            source: std::io::Error::other(e),
        })?;
        let (queue, jobs) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("assent-sqlite-writer".to_owned())
            .spawn(move || {
                let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve(&conn, jobs, batch.max(1), grants.as_deref());
                }));
                if let Err(panic) = served {
                    // Its queue is gone with it: every write now fails, and `/v1/ready` says so.
                    tracing::error!(
                        panic = assent_core::panic_message(&panic),
                        "the SQLite writer thread panicked; writes fail until a restart"
                    );
                }
            })
            .map_err(|source| OpenError::Io {
                context: "starting the SQLite writer thread".to_owned(),
                source,
            })?;
        Ok(Self { queue })
    }

    /// Commits `commit` with whatever else is queued; returns once it is durable.
    pub(crate) async fn commit(&self, commit: Commit, now: Timestamp) -> Result<Committed, StoreError> {
        self.ask(|answer| Job::Commit(Queued { commit, now, answer })).await
    }

    /// Leases up to `n` callback jobs due at `now` for `lease`.
    pub(crate) async fn claim(
        &self,
        now: Timestamp,
        lease: Duration,
        n: usize,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        self.ask(|answer| Job::Claim { now, lease, n, answer }).await
    }

    /// Whether the thread still takes writes: false once it has died (a panic). Readiness.
    pub(crate) fn running(&self) -> bool {
        !self.queue.is_closed()
    }

    /// A handle for the store's checkpoint task, which does not keep the thread running.
    pub(crate) fn wal_resetter(&self) -> WalResetter {
        WalResetter(self.queue.downgrade())
    }

    /// Retention: removes what is older than `before` and finished.
    pub(crate) async fn purge(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.ask(|answer| Job::Purge { before, answer }).await
    }

    async fn ask<T>(&self, job: impl FnOnce(Answer<T>) -> Job) -> Result<T, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(job(answer))
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".to_owned()))?;
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer stopped before answering".to_owned()))?
    }
}

/// How long the write connection waits for SQLite's locks (other processes, a checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The write connection, set up as sqlx sets up the readers (`SqlStore::connect`).
fn open(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let synchronous = match durability {
        Durability::Normal => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // NF-6: no checkpoint inside a commit; the store's background task runs them beside it.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // Each commit of a batch runs in a savepoint, and SQLite keeps the pages a savepoint changes
    // in a statement journal, spilled to a temporary file past 64 KiB: two `pwrite`s a page,
    // twice as many as the WAL got (issue 15, eleventh pass). In memory a page costs a copy;
    // a savepoint holds one commit's pages and is emptied when released.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // A statement of every kind of write, and multi-row inserts of a few sizes.
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// The thread's loop: consecutive commits share a transaction; a claim or a purge runs alone,
/// after the commits queued before it.
fn serve(
    conn: &Connection,
    mut queue: mpsc::UnboundedReceiver<Job>,
    batch: usize,
    grants: Option<&GrantCache>,
) {
    let mut commits = Vec::with_capacity(batch);
    let mut writer = Writer { grants, load: Load::new(), careful: false };
    while let Some(first) = queue.blocking_recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Commit(queued) => commits.push(queued),
                Job::Claim { now, lease, n, answer } => {
                    commit_queued(conn, &mut commits, &mut writer);
                    let _ = answer.send(writer.load.other(|| alone(conn, |conn| claim(conn, now, lease, n))));
                }
                Job::Purge { before, answer } => {
                    commit_queued(conn, &mut commits, &mut writer);
                    let _ = answer.send(writer.load.other(|| alone(conn, |conn| purge(conn, before))));
                }
                Job::ResetWal { reset, answer } => {
                    commit_queued(conn, &mut commits, &mut writer);
                    let _ = answer.send(writer.load.other(|| reset_wal(conn, reset)));
                }
                #[cfg(test)]
                Job::Panic => panic!("a bug on the writer thread"),
            }
            if commits.len() < batch {
                next = queue.try_recv().ok();
            }
        }
        commit_queued(conn, &mut commits, &mut writer);
    }
}

/// What the thread carries from one batch to the next.
struct Writer<'g> {
    /// The active grants, kept in step with every batch kept.
    grants: Option<&'g GrantCache>,
    load: Load,
    /// The next batch starts with savepoints: a commit of the last one failed.
    careful: bool,
}

/// Runs `work` in a transaction of its own.
fn alone<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    control(conn, "BEGIN IMMEDIATE")?;
    match work(conn) {
        Ok(done) => match control(conn, "COMMIT") {
            Ok(()) => Ok(done),
            Err(e) => {
                rollback(conn);
                Err(e)
            }
        },
        Err(e) => {
            rollback(conn);
            Err(e)
        }
    }
}

/// [`commit_batch`], counted in the writer's `load`.
fn commit_queued(conn: &Connection, commits: &mut Vec<Queued>, writer: &mut Writer<'_>) {
    if commits.is_empty() {
        return;
    }
    let (began, size) = (Instant::now(), commits.len());
    writer.careful = commit_batch(conn, commits, writer.grants, writer.careful);
    writer.load.batch(size, began);
}

fn claim(
    conn: &Connection,
    now: Timestamp,
    lease: Duration,
    n: usize,
) -> Result<Vec<CallbackJob>, StoreError> {
    let select = Step::new(CLAIMABLE).bind(now.0).bind(limit(n));
    let bodies: Vec<String> = rows(conn, &select, |row| row.get("body"))?;
    let mut jobs = bodies.iter().map(|body| decode(body)).collect::<Result<Vec<CallbackJob>, _>>()?;
    for step in lease_out(&mut jobs, now, lease)? {
        execute(conn, &step)?;
    }
    Ok(jobs)
}

fn purge(conn: &Connection, before: Timestamp) -> Result<u64, StoreError> {
    let doomed: Vec<String> = rows(conn, &Step::new(DOOMED).bind(before.0), |row| row.get("id"))?;
    for step in removals(&doomed, before) {
        execute(conn, &step)?;
    }
    Ok(doomed.len() as u64)
}

/// Runs a statement without values or rows (transaction control).
fn control(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql).and_then(|mut s| s.raw_execute()).map(drop).map_err(unavailable)
}

/// Ends the open transaction, if any. Used only on a path that already failed, so its own
/// failure adds nothing (SQLite may have rolled back by itself).
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// Runs `step`, which returns no rows, and applies its check.
fn execute(conn: &Connection, step: &Step) -> Result<(), StoreError> {
    let changed = bound(conn, step)?.raw_execute().map_err(|e| step_error(step, e))?;
    step.check(u64::try_from(changed).unwrap_or(u64::MAX))
}

/// Runs `step` and reads each row it returns with `read`.
fn rows<T>(
    conn: &Connection,
    step: &Step,
    mut read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = bound(conn, step)?;
    let mut found = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = found.next().map_err(|e| step_error(step, e))? {
        out.push(read(row).map_err(unavailable)?);
    }
    Ok(out)
}

/// `step`'s statement from the cache with its values bound. SQLite numbers `$1`, `$2`… by
/// first appearance, not by their digits, so each parameter is matched to its value by name.
fn bound<'c>(conn: &'c Connection, step: &Step) -> Result<CachedStatement<'c>, StoreError> {
    let mut statement = conn.prepare_cached(&step.sql).map_err(unavailable)?;
    for index in 1..=statement.parameter_count() {
        let value = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$')?.parse::<usize>().ok())
            .and_then(|n| step.values.get(n.checked_sub(1)?))
            .ok_or_else(|| {
                StoreError::Unavailable(format!("a statement's parameter {index} has no value"))
            })?;
        statement.raw_bind_parameter(index, value).map_err(unavailable)?;
    }
    Ok(statement)
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Int(v) | Self::MaybeInt(Some(v)) => ValueRef::Integer(*v),
            Self::Text(v) | Self::MaybeText(Some(v)) => ValueRef::Text(v.as_bytes()),
            Self::MaybeInt(None) | Self::MaybeText(None) => ValueRef::Null,
        }))
    }
}

/// What a failure of `step` means to the caller: a taken unique key is its conflict.
fn step_error(step: &Step, e: rusqlite::Error) -> StoreError {
    match (step.unique_conflict(), &e) {
        (Some(what), rusqlite::Error::SqliteFailure(failure, _))
            if failure.code == ErrorCode::ConstraintViolation
                && matches!(
                    failure.extended_code,
                    ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
        {
            StoreError::Conflict(what)
        }
        _ => unavailable(e),
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests;
