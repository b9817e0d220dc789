//! SQLite's fast way through group commit (issue 15): each commit's statements cross to
//! SQLite's thread as one script, not one trip each.
//!
//! sqlx runs SQLite on a thread of its own and hands it every statement: two thread wake-ups per
//! statement, and those hand-offs, not SQLite's work, bound a commit (docs/benchmarks.md, fifth
//! pass). A script of several statements makes one trip. sqlx's SQLite driver binds `$N` by its
//! number across the whole script, so each statement's parameters are renumbered to follow the
//! previous ones'. (sqlx calls several statements in one query deprecated for SQLite; every
//! commit of the store's SQLite tests goes through here, so a change in that behaviour fails
//! them.)
//!
//! A script cannot stop to look at an answer, so it decides nothing the database is asked:
//! - the audit and event numbers come from the writer's own copy of the counters
//!   ([`Scripts::counters`]), and the script's counter update returns the new values, which must
//!   be the expected ones;
//! - an idempotency key must have no row yet;
//! - a compare-and-set must change its one row, and a unique key must be free.
//!
//! If any of that fails, the commit is rolled back to its savepoint and run again a statement at
//! a time (`writes::apply`), which gives exactly the result it would have had alone. So a script
//! is only ever a faster way to the same outcome, and an unusual commit (a conflict, a replayed
//! key) just pays the old price.

use assent_core::{
    clock::Timestamp,
    store::{ApprovalWrite, Commit, Committed, StoreError},
};
use futures::StreamExt;
use sqlx::{AssertSqlSafe, Either, Executor, Row, any::AnyArguments};

use crate::{
    rows::{Tx, limit},
    steps::Step,
    writes::{apply, counter, idempotency_lookup, log, plan, reserve_seqs},
};

/// The last audit and event numbers handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    audit: i64,
    events: i64,
}

/// What one statement of a script must find for the script to stand.
#[derive(Debug)]
enum Check {
    Nothing,
    /// The commit's savepoint: before it is open, a failure is the batch's, not the commit's.
    Opens,
    /// The step's own check (a compare-and-set changes one row).
    Step(Step),
    /// An unused idempotency key.
    NoRow,
    /// The counters moved from what the writer knew to exactly these.
    Counters {
        after: Counters,
        rows: usize,
    },
}

/// Statements joined into one text, with their values in one list.
#[derive(Default)]
struct Script {
    sql: String,
    args: AnyArguments,
    bound: usize,
    checks: Vec<Check>,
}

impl Script {
    fn push(&mut self, mut step: Step, check: impl FnOnce(Step) -> Check) -> Result<(), StoreError> {
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        shift_parameters(&step.sql, self.bound, &mut self.sql);
        for value in step.values.drain(..) {
            value.add_to(&mut self.args)?;
            self.bound += 1;
        }
        self.checks.push(check(step));
        Ok(())
    }

    fn plain(&mut self, sql: &'static str, check: Check) {
        // No values, so nothing can fail.
        let _ = self.push(Step::new(sql), |_| check);
    }

    /// Runs the script. `Ok(true)`: every check held. `Ok(false)`: the commit must be redone a
    /// statement at a time. `Err`: it failed before its savepoint opened.
    async fn run(self, tx: &mut Tx<'_>) -> Result<bool, sqlx::Error> {
        let Script { sql, args, checks, .. } = self;
        let mut answers = (&mut **tx).fetch_many(sqlx::query_with(AssertSqlSafe(sql), args));
        let (mut done, mut opened, mut rows) = (0, false, Vec::new());
        while let Some(answer) = answers.next().await {
            let result = match answer {
                Err(e) if !opened => return Err(e),
                Err(_) => return Ok(false),
                Ok(Either::Right(row)) => {
                    rows.push(row);
                    continue;
                }
                Ok(Either::Left(result)) => result,
            };
            let held = match &checks[done] {
                Check::Nothing => true,
                Check::Opens => {
                    opened = true;
                    true
                }
                Check::Step(step) => step.check(result.rows_affected()).is_ok(),
                Check::NoRow => rows.is_empty(),
                Check::Counters { after, rows: expected } => {
                    rows.len() == *expected && rows.iter().all(|row| counter_matches(row, after))
                }
            };
            if !held {
                return Ok(false);
            }
            rows.clear();
            done += 1;
        }
        if !opened {
            // The answers stopped short of the savepoint: rolling back to "it" would undo the
            // commit before.
            return Err(sqlx::Error::Protocol("a script ended before its savepoint".to_owned()));
        }
        Ok(done == checks.len())
    }
}

fn counter_matches(row: &sqlx::any::AnyRow, after: &Counters) -> bool {
    match counter(row) {
        Ok((name, value)) if name == "audit" => value == after.audit,
        Ok((name, value)) if name == "events" => value == after.events,
        _ => false,
    }
}

/// Copies `sql` to `out` with each `$N` parameter renumbered `$N+by`. The store's statements are
/// constants whose only `$` are parameters.
fn shift_parameters(sql: &str, by: usize, out: &mut String) {
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

/// The SQLite writer's state between its scripts.
#[derive(Debug, Default)]
pub(crate) struct Scripts {
    /// The counters as of the last commit the writer knows was kept; `None` after anything that
    /// leaves them in doubt, and they are read again.
    counters: Option<Counters>,
    /// A savepoint of this batch's is open (the next script releases it first).
    open: bool,
    /// Commits run again a statement at a time.
    #[cfg(test)]
    pub(crate) redone: usize,
}

impl Scripts {
    /// A new batch's transaction has begun.
    pub(crate) fn begin_batch(&mut self) {
        self.open = false;
    }

    /// The batch was not kept: what the writer knew of the counters may be wrong.
    pub(crate) fn forget(&mut self) {
        self.counters = None;
    }

    /// One commit inside the batch's transaction. The outer error means the batch's transaction
    /// is in doubt; the inner result is the commit's own.
    pub(crate) async fn commit(
        &mut self,
        tx: &mut Tx<'_>,
        mut commit: Commit,
        now: Timestamp,
    ) -> Result<Result<Committed, StoreError>, sqlx::Error> {
        let known = match self.counters.take() {
            Some(known) => known,
            None => read_counters(tx).await?,
        };
        let mut script = Script::default();
        if self.open {
            script.plain("RELEASE assent_commit", Check::Nothing);
        }
        script.plain("SAVEPOINT assent_commit", Check::Opens);
        let after = match add_commit(&mut script, &mut commit, now, known) {
            Ok(after) => after,
            // Nothing ran: the counters are still as known.
            Err(e) => {
                self.counters = Some(known);
                return Ok(Err(e));
            }
        };
        let kept = script.run(tx).await?;
        self.open = true;
        if kept {
            self.counters = Some(after);
            return Ok(Ok(Committed { events: commit.events }));
        }
        #[cfg(test)]
        {
            self.redone += 1;
        }
        sqlx::query("ROLLBACK TO assent_commit").execute(&mut **tx).await?;
        let result = apply(tx, commit, now).await;
        // A conflict is the usual cause and is the caller's to report; anything else is worth a
        // look, since every redo costs a commit's statements one hand-off each.
        match &result {
            Err(
                StoreError::Conflict(_) | StoreError::IdempotentReplay(_) | StoreError::IdempotencyConflict,
            ) => {}
            other => {
                tracing::debug!(ok = other.is_ok(), "a commit's script was redone a statement at a time")
            }
        }
        if result.is_err() {
            sqlx::query("ROLLBACK TO assent_commit").execute(&mut **tx).await?;
        }
        Ok(result)
    }
}

/// Adds `commit`'s statements to `script`, numbering its audit entries and events after `known`;
/// returns the counters it leaves.
fn add_commit(
    script: &mut Script,
    commit: &mut Commit,
    now: Timestamp,
    known: Counters,
) -> Result<Counters, StoreError> {
    if let Some(ApprovalWrite::Insert { idempotency: Some(rec), .. }) = &commit.approval {
        script.push(idempotency_lookup(rec), |_| Check::NoRow)?;
    }
    for step in plan(commit, now)? {
        script.push(step, Check::Step)?;
    }
    let (audit, events) = (commit.audit.len(), commit.events.len());
    let after = Counters { audit: known.audit + limit(audit), events: known.events + limit(events) };
    if let Some(step) = reserve_seqs(audit, events) {
        let rows = usize::from(audit > 0) + usize::from(events > 0);
        script.push(step, |_| Check::Counters { after, rows })?;
    }
    for step in log(&mut commit.audit, &mut commit.events, known.audit + 1, known.events + 1)? {
        script.push(step, Check::Step)?;
    }
    Ok(after)
}

async fn read_counters(tx: &mut Tx<'_>) -> Result<Counters, sqlx::Error> {
    let rows = sqlx::query("SELECT name, value FROM counters WHERE name IN ('audit', 'events')")
        .fetch_all(&mut **tx)
        .await?;
    let mut known = Counters { audit: 0, events: 0 };
    for row in rows {
        let value: i64 = row.try_get("value")?;
        match row.try_get::<String, _>("name")?.as_str() {
            "audit" => known.audit = value,
            _ => known.events = value,
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::shift_parameters;

    #[test]
    fn parameters_are_renumbered_after_the_previous_statements() {
        let mut out = String::new();
        shift_parameters("UPDATE t SET a = $1, b = $2 WHERE id = $12 AND c = $1", 3, &mut out);
        assert_eq!(out, "UPDATE t SET a = $4, b = $5 WHERE id = $15 AND c = $4");
        out.clear();
        shift_parameters("SELECT '$' || $1", 0, &mut out);
        assert_eq!(out, "SELECT '$' || $1", "a `$` without a number is left alone");
    }
}
