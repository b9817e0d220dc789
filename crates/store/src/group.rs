//! Group commit (ST-3, NF-2). SQLite has one writer, so commits queue for it anyway; instead of
//! one transaction each, the writer task takes every commit waiting in the queue and runs them
//! in one transaction, each in its own savepoint:
//!
//! - a commit whose checks fail (a stale version, a taken key) is rolled back to its savepoint
//!   alone, and its caller gets that error, exactly as if it had run by itself;
//! - every caller is answered only after the shared transaction is durable, so an acknowledged
//!   commit survives a crash (NF-7); if the transaction fails, every caller is told so and
//!   nothing of the batch is kept.
//!
//! On SQLite each commit of a batch crosses to SQLite's thread as one script
//! (`crate::script`); on PostgreSQL its statements run one by one.
//!
//! The queue is a task, not a leader chosen among callers: a caller that gives up (an HTTP client
//! that disconnects) must not strand the commits of everyone behind it.
//!
//! On by default for SQLite. PostgreSQL can use it too (`OpenOptions::group_commit`), but runs
//! its writers on concurrent connections and already merges their WAL flushes, so it is off
//! there unless asked for (not measured there yet; docs/benchmarks.md).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use assent_core::{
    clock::Timestamp,
    store::{Commit, Committed, GRANT_NOT_ACTIVE, GrantWrite, StoreError},
};
use sqlx::{Acquire, Any, AnyPool, pool::PoolConnection};
use tokio::sync::{mpsc, oneshot};

use crate::{
    grant_cache::GrantCache,
    rows::Tx,
    script::Scripts,
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
    /// Starts the writer task on `writer`. `notify`: tell other replicas of each batch
    /// (PostgreSQL's `assent_events` channel, ST-8).
    /// `grants`: the active grants to keep in step with every batch kept (SQLite).
    pub(crate) fn start(writer: AnyPool, notify: bool, grants: Option<Arc<GrantCache>>) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, notify, grants, jobs));
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

async fn run(
    writer: AnyPool,
    notify: bool,
    grants: Option<Arc<GrantCache>>,
    mut queue: mpsc::UnboundedReceiver<Job>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut scripts = Scripts::default();
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
        // The batch's grant writes, for the cache once the batch is durable.
        let grant_writes: Vec<_> = match &grants {
            Some(_) => jobs.iter().map(|job| job.commit.grants.clone()).collect(),
            None => Vec::new(),
        };
        let kept = commit_batch(&mut conn, notify, jobs, &mut scripts, |results| {
            if let Some(cache) = &grants {
                keep_in_step(cache, &grant_writes, results);
            }
        })
        .await;
        if !kept {
            scripts.forget();
            // A batch that failed at its COMMIT may still have been kept.
            if let Some(cache) = &grants {
                cache.forget();
            }
        }
        // Taking the connection from the pool for each batch cost more than a batch's BEGIN
        // (docs/benchmarks.md, sixth pass), so it is kept while commits keep coming. It goes back
        // when the queue is empty, after a lost batch, and at least every HOLD_AT_MOST, so the
        // store's other writes (callback claims, retention) that wait for it get their turn.
        if kept && !queue.is_empty() && since.elapsed() < HOLD_AT_MOST {
            held = Some((conn, since));
        }
    }
}

fn unavailable(e: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Applies the grant writes of a durable batch's kept commits, in commit order. A hit refused
/// because its grant is no longer active means the cache was late: it loads afresh.
fn keep_in_step(
    cache: &GrantCache,
    writes: &[Vec<GrantWrite>],
    results: &[(Answer, Result<Committed, StoreError>)],
) {
    for (writes, (_, result)) in writes.iter().zip(results) {
        match result {
            Ok(_) if !writes.is_empty() => cache.apply(writes),
            Err(StoreError::Conflict(GRANT_NOT_ACTIVE)) => cache.forget(),
            _ => {}
        }
    }
}

/// Commits `jobs` in one transaction and answers each caller; `false` if the batch was lost.
/// `durable` sees the results of a batch that was kept, in commit order, once it is durable and
/// before any caller hears of them.
async fn commit_batch(
    writer: &mut Connection,
    notify: bool,
    mut jobs: Vec<Job>,
    scripts: &mut Scripts,
    durable: impl FnOnce(&[(Answer, Result<Committed, StoreError>)]),
) -> bool {
    let mut tx = match writer.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let error = unavailable(&e);
            jobs.into_iter().for_each(|job| drop(job.answer.send(Err(error.clone()))));
            return false;
        }
    };
    // SQLite sends each commit as one script (`crate::script`); PostgreSQL runs its statements
    // one by one, since it takes no parameters in a text of several statements.
    let scripted = tx.backend_name() == "SQLite";
    scripts.begin_batch();
    let results = if jobs.len() == 1 && !scripted {
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
            let ran = if scripted {
                scripts.commit(&mut tx, job.commit, job.now).await
            } else {
                in_savepoint(&mut tx, job.commit, job.now).await
            };
            match ran {
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
    if notify && let Some(seq) = last_seq {
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
            durable(&results);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use assent_core::{
        model::{AuditEntry, AuditType, Channel, EntryState, Event, EventType, Origin},
        store::{ApprovalWrite, AuditFilter, CallbackWrite, EntryWrite, IdempotencyRecord, Store},
    };
    use assent_testing::{
        T0,
        store_contract::{callback_job, entry, sample},
    };

    use super::*;
    use crate::{OpenOptions, SqlStore};

    async fn store() -> SqlStore {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "assent-group-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        SqlStore::open_sqlite(&dir.join("a.db"), OpenOptions::default()).await.unwrap()
    }

    fn job(commit: Commit) -> (Job, oneshot::Receiver<Result<Committed, StoreError>>) {
        let (answer, answered) = oneshot::channel();
        (Job { commit, now: T0, answer }, answered)
    }

    /// One approval update with an event and an audit entry; `expected` is the version it
    /// compares against (1 is right for a fresh sample).
    fn vote(bits: u128, expected: u64) -> Commit {
        let mut next = sample(bits);
        next.version = 2;
        let event = Event {
            seq: 0,
            kind: EventType::Vote,
            at: T0,
            approval_kind: Some(next.kind()),
            approval_id: Some(next.id.clone()),
            data: serde_json::Value::Null,
        };
        Commit {
            audit: vec![AuditEntry::new(AuditType::Vote, T0).approval(&next.id)],
            events: vec![event],
            approval: Some(ApprovalWrite::Update { approval: next, expected_version: expected }),
            ..Commit::default()
        }
    }

    /// Issue 15: in one shared transaction, a commit that fails its own check is rolled back
    /// alone (what it wrote before the check too), the others are kept, and the sequences have
    /// no gap where it was.
    #[tokio::test]
    async fn a_failed_commit_in_a_batch_fails_alone_and_leaves_no_gap() {
        let store = store().await;
        for bits in 1..=3 {
            let insert = ApprovalWrite::Insert { approval: sample(bits), idempotency: None };
            store.commit(Commit { approval: Some(insert), ..Commit::default() }, T0).await.unwrap();
        }
        let notice = Commit { notice_key: Some("notice:x".to_owned()), ..Commit::default() };
        store.commit(notice, T0).await.unwrap();
        // The second updates its approval first, then fails on a notice key already taken.
        let mut late_failure = vote(2, 1);
        late_failure.notice_key = Some("notice:x".to_owned());
        let (first, first_answer) = job(vote(1, 1));
        let (second, second_answer) = job(late_failure);
        let (third, third_answer) = job(vote(3, 1));
        commit_batch(
            &mut store.writer.acquire().await.unwrap(),
            false,
            vec![first, second, third],
            &mut Scripts::default(),
            |_| {},
        )
        .await;
        let first = first_answer.await.unwrap().unwrap();
        assert_eq!(second_answer.await.unwrap(), Err(StoreError::Conflict("notice already sent")));
        let third = third_answer.await.unwrap().unwrap();
        assert_eq!((first.events[0].seq, third.events[0].seq), (1, 2), "no gap where the failed one was");
        assert_eq!(store_version(&store, 2).await, 1, "the failed commit's own update was rolled back");
        assert_eq!((store_version(&store, 1).await, store_version(&store, 3).await), (2, 2));
        let audit = store.audit(&AuditFilter::default()).await.unwrap();
        assert_eq!(audit.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    /// Issue 15: on SQLite each commit crosses as one script; only a commit whose checks fail
    /// (a moved version, a used idempotency key) is run again a statement at a time, and it gets
    /// the answer it would have had alone. The numbering carries on after it without a gap.
    #[tokio::test]
    async fn only_a_commit_that_fails_its_checks_is_redone_a_statement_at_a_time() {
        let store = store().await;
        let keyed = |bits| ApprovalWrite::Insert {
            approval: sample(bits),
            idempotency: Some(IdempotencyRecord {
                principal: "agent".to_owned(),
                key: "k".to_owned(),
                digest: "d".to_owned(),
            }),
        };
        let first = sample(1).id;
        let mut created = vote(1, 1);
        created.approval = Some(keyed(1));
        created.entries = vec![EntryWrite::Insert(entry(&first, 1, "dm"))];
        let mut replayed = vote(2, 1);
        replayed.approval = Some(keyed(2));
        let mut later = vote(3, 1);
        later.approval = Some(ApprovalWrite::Insert { approval: sample(3), idempotency: None });
        let (jobs, answers): (Vec<_>, Vec<_>) =
            [created, vote(1, 1), vote(1, 1), replayed, later].into_iter().map(job).unzip();
        let mut scripts = Scripts::default();
        commit_batch(&mut store.writer.acquire().await.unwrap(), false, jobs, &mut scripts, |_| {}).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap().map(|c| c.events.iter().map(|e| e.seq).collect::<Vec<_>>()));
        }
        assert_eq!(
            results,
            vec![
                Ok(vec![1]),
                Ok(vec![2]),
                Err(StoreError::Conflict("approval version")),
                Err(StoreError::IdempotentReplay(first.clone())),
                Ok(vec![3]),
            ]
        );
        assert_eq!(scripts.redone, 2, "only the two that failed their checks were redone");
        assert_eq!(store_version(&store, 1).await, 2);
        assert!(store.approval(&sample(2).id).await.unwrap().is_none(), "the replay wrote nothing");
        assert_eq!(
            store.entry(&entry(&first, 1, "dm").entry_id).await.unwrap().map(|e| e.target_key),
            Some("dm".to_owned())
        );
        let audit = store.audit(&AuditFilter::default()).await.unwrap();
        assert_eq!(audit.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    /// The script carries every kind of write a commit can hold, so ordinary commits are never
    /// redone: a redo would give the same result, only at the old price.
    #[tokio::test]
    async fn a_commit_of_every_kind_of_write_crosses_as_one_script() {
        let store = store().await;
        let first = sample(1).id;
        let card = entry(&first, 1, "dm");
        let mut created = vote(1, 1);
        created.approval = Some(ApprovalWrite::Insert { approval: sample(1), idempotency: None });
        created.entries = vec![EntryWrite::Insert(card.clone())];
        created.callbacks = vec![CallbackWrite::Insert(callback_job(&first))];
        let origin = Origin {
            channel: Channel::Telegram,
            account: "main".into(),
            conversation: "42".into(),
            parent: None,
            thread: None,
        };
        created.session_origin = Some(("session".to_owned(), origin.clone()));
        let mut decided = vote(1, 1);
        let mut finalized = card.clone();
        finalized.state = EntryState::Finalized;
        decided.entries = vec![EntryWrite::Update(finalized)];
        decided.notice_key = Some(format!("notice:{first}"));
        let (jobs, answers): (Vec<_>, Vec<_>) = [created, decided].into_iter().map(job).unzip();
        let mut scripts = Scripts::default();
        commit_batch(&mut store.writer.acquire().await.unwrap(), false, jobs, &mut scripts, |_| {}).await;
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        assert_eq!(scripts.redone, 0);
        assert_eq!(store_version(&store, 1).await, 2);
        let stored = store.entry(&card.entry_id).await.unwrap().unwrap();
        assert_eq!(stored.state, EntryState::Finalized);
        assert_eq!(store.session_origin("session").await.unwrap(), Some(origin));
        assert!(store.callback(&format!("{first}:on_resolved")).await.unwrap().is_some());
        let audit = store.audit(&AuditFilter::default()).await.unwrap();
        assert_eq!(audit.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    /// The writer task keeps the write connection while commits keep coming, but not past
    /// HOLD_AT_MOST: a callback claim, which needs the same connection, gets its turn while
    /// thousands of commits are still queued instead of after the last of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_gets_the_write_connection_while_commits_are_still_queued() {
        const QUEUED: usize = 5_000;
        let store = std::sync::Arc::new(store().await);
        let done = std::sync::Arc::new(AtomicUsize::new(0));
        for bits in 0..QUEUED {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let insert =
                    ApprovalWrite::Insert { approval: sample(1_000 + bits as u128), idempotency: None };
                let mut commit = vote(1_000 + bits as u128, 1);
                commit.approval = Some(insert);
                store.commit(commit, T0).await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        while done.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        store.claim_callbacks(T0, std::time::Duration::from_secs(60), 10).await.unwrap();
        let finished = done.load(Ordering::SeqCst);
        assert!(finished < QUEUED / 2, "the claim waited for {finished} of {QUEUED} queued commits");
    }

    async fn store_version(store: &SqlStore, bits: u128) -> u64 {
        store.approval(&sample(bits).id).await.unwrap().unwrap().version
    }
}
