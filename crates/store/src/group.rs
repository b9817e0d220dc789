//! Group commit on PostgreSQL (ST-3, issue 15), when `OpenOptions::group_commit` asks for it:
//! a writer task takes every commit waiting in the queue and runs them in one transaction, each
//! in its own savepoint.
//!
//! - a commit whose checks fail (a stale version, a taken key) is rolled back to its savepoint
//!   alone, and its caller gets that error, exactly as if it had run by itself;
//! - every caller is answered only after the shared transaction is durable, so an acknowledged
//!   commit survives a crash (NF-7); if the transaction fails, every caller is told so and
//!   nothing of the batch is kept.
//!
//! The queue is a task, not a leader chosen among callers: a caller that gives up (an HTTP client
//! that disconnects) must not strand the commits of everyone behind it.
//!
//! Off by default: PostgreSQL runs its writers on concurrent connections and already merges
//! their WAL flushes, so one writer task serializes what runs in parallel without it
//! (docs/benchmarks.md, fourth pass). SQLite's writes go through its own writer thread
//! (`crate::sqlite_writer`), which groups commits the same way.

use std::time::{Duration, Instant};

use assent_core::{
    clock::Timestamp,
    store::{Commit, Committed, StoreError},
};
use sqlx::{Acquire, Any, AnyPool, pool::PoolConnection};
use tokio::sync::{mpsc, oneshot};

use crate::{
    rows::Tx,
    writes::{apply, finish},
};

/// Most commits in one transaction, so the first caller of a burst never waits for a long one.
const MAX_BATCH: usize = 128;

/// Longest the writer task keeps the write connection while commits keep coming.
const HOLD_AT_MOST: Duration = Duration::from_millis(50);

/// The write connection, taken from its pool.
type Connection = PoolConnection<Any>;

type Answer = oneshot::Sender<Result<Committed, StoreError>>;

struct Job {
    commit: Commit,
    now: Timestamp,
    answer: Answer,
}

/// The handle of the writer task; the task ends when the store (its only sender) drops.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the writer task on `writer`.
    pub(crate) fn start(writer: AnyPool) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, jobs));
        Self { queue }
    }

    /// Commits `commit` with whatever else is queued; returns once it is durable.
    pub(crate) async fn commit(&self, commit: Commit, now: Timestamp) -> Result<Committed, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Job { commit, now, answer })
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".to_owned()))?;
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer stopped before answering".to_owned()))?
    }
}

async fn run(writer: AnyPool, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut held: Option<(Connection, Instant)> = None;
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs = std::mem::take(&mut batch);
        let (mut conn, since) = match held.take() {
            Some(held) => held,
            None => match writer.acquire().await {
                Ok(conn) => (conn, Instant::now()),
                Err(e) => {
                    let lost = jobs.into_iter().map(|job| (job.answer, Ok(Committed::default()))).collect();
                    answer_lost(lost, &unavailable(&e));
                    continue;
                }
            },
        };
        let kept = commit_batch(&mut conn, jobs).await;
        // Taking the connection from the pool for each batch cost more than a batch's BEGIN
        // (measured on SQLite, docs/benchmarks.md, sixth pass), so it is kept while commits keep
        // coming. It goes back when the queue is empty, after a lost batch, and at least every
        // HOLD_AT_MOST, so other writers waiting for a connection get their turn.
        if kept && !queue.is_empty() && since.elapsed() < HOLD_AT_MOST {
            held = Some((conn, since));
        }
    }
}

fn unavailable(e: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Commits `jobs` in one transaction and answers each caller; `false` if the batch was lost.
async fn commit_batch(writer: &mut Connection, mut jobs: Vec<Job>) -> bool {
    let mut tx = match writer.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let error = unavailable(&e);
            jobs.into_iter().for_each(|job| drop(job.answer.send(Err(error.clone()))));
            return false;
        }
    };
    let results = if jobs.len() == 1 {
        // Alone: the plain transaction, no savepoint to pay for; a failure discards it whole.
        let job = jobs.remove(0);
        match apply(&mut tx, job.commit, job.now).await {
            Ok(committed) => vec![(job.answer, Ok(committed))],
            failed @ Err(_) => {
                drop(job.answer.send(finish(tx, failed).await));
                return true;
            }
        }
    } else {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            match in_savepoint(&mut tx, job.commit, job.now).await {
                Ok(result) => results.push((job.answer, result)),
                Err(e) => {
                    // The savepoint itself failed: the transaction's state is unknown, so none
                    // of the batch may be kept.
                    results.push((job.answer, Ok(Committed::default())));
                    return discard(tx, results, &unavailable(&e)).await;
                }
            }
        }
        results
    };
    let last_seq = results.iter().filter_map(|(_, r)| r.as_ref().ok()?.events.last()).map(|e| e.seq).max();
    if let Some(seq) = last_seq {
        // ST-8: PostgreSQL delivers the notice only on COMMIT, with the batch.
        let notified = sqlx::query("SELECT pg_notify('assent_events', $1)")
            .bind(seq.to_string())
            .execute(&mut *tx)
            .await;
        if let Err(e) = notified {
            return discard(tx, results, &unavailable(&e)).await;
        }
    }
    match tx.commit().await {
        Ok(()) => {
            results.into_iter().for_each(|(answer, result)| drop(answer.send(result)));
            true
        }
        Err(e) => {
            answer_lost(results, &unavailable(&e));
            false
        }
    }
}

/// Rolls the batch back and tells every caller.
async fn discard(
    tx: Tx<'_>,
    results: Vec<(Answer, Result<Committed, StoreError>)>,
    error: &StoreError,
) -> bool {
    let _ = tx.rollback().await;
    answer_lost(results, error);
    false
}

/// A commit that failed its own checks keeps its own error; the rest were lost with the batch.
fn answer_lost(results: Vec<(Answer, Result<Committed, StoreError>)>, error: &StoreError) {
    for (answer, result) in results {
        let _ = answer.send(Err(result.err().unwrap_or_else(|| error.clone())));
    }
}

/// One commit inside the shared transaction. The outer error means the savepoint statements
/// failed; the inner result is the commit's own.
async fn in_savepoint(
    tx: &mut Tx<'_>,
    commit: Commit,
    now: Timestamp,
) -> Result<Result<Committed, StoreError>, sqlx::Error> {
    sqlx::query("SAVEPOINT assent_commit").execute(&mut **tx).await?;
    let result = apply(tx, commit, now).await;
    if result.is_err() {
        sqlx::query("ROLLBACK TO assent_commit").execute(&mut **tx).await?;
    }
    sqlx::query("RELEASE assent_commit").execute(&mut **tx).await?;
    Ok(result)
}
