//! Group commit: the commits queued together run in one transaction (issue 15).
//!
//! Each commit must fail alone: a commit whose checks fail (a stale version, a taken key) leaves
//! no trace, and the others are kept. A savepoint around each commit gives that, but costs two
//! statements and a copy of every page the commit changes into SQLite's statement journal: a
//! tenth of the writer's time under load (docs/benchmarks.md, thirteenth pass). Failures are
//! rare, so a batch first runs without savepoints. If a commit fails, that attempt is rolled
//! back whole and the batch runs again with a savepoint each. It runs the same statements on
//! the same data in the same order, so every commit gets the answer it would have had alone.
//! After a batch in which a commit failed, the next one starts with savepoints, so a stream of
//! conflicts does not pay for every batch twice.

use assent_core::{
    clock::Timestamp,
    store::{ApprovalWrite, Commit, Committed, GRANT_NOT_ACTIVE, GrantWrite, StoreError},
};
use rusqlite::Connection;

use super::{Queued, control, execute, rollback, rows};
use crate::{
    grant_cache::GrantCache,
    writes::{StoredKey, first_seqs, idempotency_lookup, log, plan, reserve_seqs},
};

/// How a batch's transaction ended.
struct Outcome {
    /// Each commit's own result, in order. Commits past its end never ran.
    results: Vec<Result<(), StoreError>>,
    /// Why the transaction was not kept, if it was not: every commit that did not fail on its
    /// own is answered with this.
    lost: Option<StoreError>,
}

/// Commits the queued `commits` in one transaction and answers each caller. `careful` starts
/// with a savepoint per commit. Returns whether a commit failed, so the next batch can start
/// careful.
pub(super) fn commit_batch(
    conn: &Connection,
    commits: &mut Vec<Queued>,
    grants: Option<&GrantCache>,
    careful: bool,
) -> bool {
    let outcome = if careful { None } else { without_savepoints(conn, commits) };
    let outcome = outcome.unwrap_or_else(|| with_savepoints(conn, commits));
    let failed = outcome.results.iter().any(Result::is_err);
    answer(commits, outcome, grants);
    failed
}

/// The batch with no savepoints, or `None` if a commit failed: then nothing was kept.
fn without_savepoints(conn: &Connection, commits: &mut [Queued]) -> Option<Outcome> {
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        return Some(Outcome { results: Vec::new(), lost: Some(e) });
    }
    for Queued { commit, now, .. } in commits.iter_mut() {
        if apply(conn, commit, *now).is_err() {
            rollback(conn);
            return None;
        }
    }
    let results = commits.iter().map(|_| Ok(())).collect();
    Some(finish(conn, results))
}

/// The batch with a savepoint around each commit, so a failed one is rolled back alone.
fn with_savepoints(conn: &Connection, commits: &mut [Queued]) -> Outcome {
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        return Outcome { results: Vec::new(), lost: Some(e) };
    }
    let mut results = Vec::with_capacity(commits.len());
    for Queued { commit, now, .. } in commits.iter_mut() {
        match in_savepoint(conn, commit, *now) {
            Ok(result) => results.push(result),
            Err(e) => {
                // The savepoint itself failed: the transaction's state is unknown, so none of
                // the batch may be kept.
                rollback(conn);
                return Outcome { results, lost: Some(e) };
            }
        }
    }
    finish(conn, results)
}

/// Commits the open transaction.
fn finish(conn: &Connection, results: Vec<Result<(), StoreError>>) -> Outcome {
    match control(conn, "COMMIT") {
        Ok(()) => Outcome { results, lost: None },
        Err(e) => {
            rollback(conn);
            Outcome { results, lost: Some(e) }
        }
    }
}

/// One commit inside the shared transaction. The outer error means the savepoint statements
/// failed; the inner result is the commit's own.
fn in_savepoint(
    conn: &Connection,
    commit: &mut Commit,
    now: Timestamp,
) -> Result<Result<(), StoreError>, StoreError> {
    control(conn, "SAVEPOINT assent_commit")?;
    let result = apply(conn, commit, now);
    if result.is_err() {
        control(conn, "ROLLBACK TO assent_commit")?;
    }
    control(conn, "RELEASE assent_commit")?;
    Ok(result)
}

/// Answers each caller of a batch that ended as `outcome`.
fn answer(commits: &mut Vec<Queued>, outcome: Outcome, grants: Option<&GrantCache>) {
    let Outcome { results, lost } = outcome;
    if lost.is_some()
        && let Some(cache) = grants
    {
        // A batch whose `COMMIT` failed late may have left the cache ahead of the database.
        cache.forget();
    }
    let mut results = results.into_iter();
    // Drained rather than taken, so the queue keeps its capacity from one batch to the next.
    for Queued { mut commit, answer, .. } in commits.drain(..) {
        let result = results.next().unwrap_or(Ok(()));
        let result = match &lost {
            Some(error) => Err(result.err().unwrap_or_else(|| error.clone())),
            None => {
                if let Some(cache) = grants {
                    keep_in_step(cache, &commit.grants, &result);
                }
                result.map(|()| Committed::new(std::mem::take(&mut commit.events)))
            }
        };
        let _ = answer.send(result);
    }
}

/// Applies a durable commit's grant writes to the cache. A hit refused because its grant is no
/// longer active means the cache was late: it loads afresh.
fn keep_in_step(cache: &GrantCache, writes: &[GrantWrite], result: &Result<(), StoreError>) {
    match result {
        Ok(()) if !writes.is_empty() => cache.apply(writes),
        Err(StoreError::Conflict(GRANT_NOT_ACTIVE)) => cache.forget(),
        _ => {}
    }
}

/// A commit's statements, as `writes::apply` runs them through sqlx: the idempotency check,
/// the writes, the counters, then the audit and event rows. The sequence numbers it assigns are
/// written into `c`'s audit entries and events, and a second run overwrites them.
fn apply(conn: &Connection, c: &mut Commit, now: Timestamp) -> Result<(), StoreError> {
    if let Some(ApprovalWrite::Insert { idempotency: Some(rec), .. }) = &c.approval {
        let found = rows(conn, &idempotency_lookup(rec), |row| {
            Ok(StoredKey {
                digest: row.get("digest")?,
                approval_id: row.get("approval_id")?,
                at: row.get("at")?,
            })
        })?;
        if let Some(stored) = found.into_iter().next() {
            stored.admits(rec, now)?;
        }
    }
    for step in plan(c, now)? {
        execute(conn, &step)?;
    }
    let counters = match reserve_seqs(c.audit.len(), c.events.len()) {
        Some(step) => rows(conn, &step, |row| Ok((row.get("name")?, row.get("value")?)))?,
        None => Vec::new(),
    };
    let (first_audit, first_event) = first_seqs(c.audit.len(), c.events.len(), &counters)?;
    for step in log(&mut c.audit, &mut c.events, first_audit, first_event)? {
        execute(conn, &step)?;
    }
    Ok(())
}
