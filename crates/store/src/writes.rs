//! Everything a write does inside its transaction: the approval's compare-and-set, ledger,
//! grant, binding and callback rows, gap-free audit and event sequences, outbox claims and
//! retention.

use std::time::Duration;

use assent_core::{
    clock::Timestamp,
    id::ApprovalId,
    model::{Approval, AuditEntry, Event},
    store::{
        ApprovalWrite, BINDING_MOVED, BindingWrite, CONVERSATION_BOUND, CallbackJob, CallbackState,
        CallbackWrite, Commit, Committed, EntryWrite, GRANT_ALREADY_REVOKED, GRANT_NOT_ACTIVE, GrantWrite,
        IDEMPOTENCY_WINDOW, IdempotencyRecord, StoreError,
    },
};
use sqlx::{Row, any::AnyRow};

use crate::{
    rows::{Tx, int, json, limit, parse_all, unavailable},
    steps::{Step, run_all},
};

/// Commits on success, rolls back on error.
pub(crate) async fn finish<T>(tx: Tx<'_>, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Ok(v) => {
            tx.commit().await.map_err(unavailable)?;
            Ok(v)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Reserves `audit` audit and `events` event sequence numbers in one statement and returns the
/// first of each (unused when its count is 0).
async fn next_seqs(tx: &mut Tx<'_>, audit: usize, events: usize) -> Result<(i64, i64), StoreError> {
    // The row lock on a counter serializes committers, so seq order is commit order and a
    // rolled-back transaction leaves no gap (LC-15). A counter not needed is not locked.
    if audit > 0 && events > 0 && tx.backend_name() == "PostgreSQL" {
        // PostgreSQL runs commits side by side, and one UPDATE of two rows locks them in the
        // order it meets them, which differs between snapshots: two commits could each hold one
        // counter and wait for the other, and PostgreSQL would abort one ("deadlock detected").
        // So both are locked first, in name order. SQLite has one writer and no row locks.
        sqlx::query("SELECT name FROM counters WHERE name IN ('audit', 'events') ORDER BY name FOR UPDATE")
            .fetch_all(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    let Some(step) = reserve_seqs(audit, events) else { return Ok((0, 0)) };
    let rows = step.query()?.fetch_all(&mut **tx).await.map_err(unavailable)?;
    let counters = rows.iter().map(counter).collect::<Result<Vec<_>, _>>()?;
    first_seqs(audit, events, &counters)
}

/// The first of `audit` audit and `events` event numbers, from the counters' new values
/// ([`reserve_seqs`]'s rows).
pub(crate) fn first_seqs(
    audit: usize,
    events: usize,
    counters: &[(String, i64)],
) -> Result<(i64, i64), StoreError> {
    if counters.len() != usize::from(audit > 0) + usize::from(events > 0) {
        return Err(StoreError::Unavailable("the audit and event counters are missing".to_owned()));
    }
    let (mut first_audit, mut first_event) = (0, 0);
    for (name, last) in counters {
        match name.as_str() {
            "audit" => first_audit = last - limit(audit) + 1,
            _ => first_event = last - limit(events) + 1,
        }
    }
    Ok((first_audit, first_event))
}

/// Advances the audit and event counters by `audit` and `events`, returning each advanced
/// counter's `name` and new `value`; `None` when neither moves.
pub(crate) fn reserve_seqs(audit: usize, events: usize) -> Option<Step> {
    Some(match (audit, events) {
        (0, 0) => return None,
        (n, 0) => {
            Step::new("UPDATE counters SET value = value + $1 WHERE name = 'audit' RETURNING name, value")
                .bind(limit(n))
        }
        (0, n) => {
            Step::new("UPDATE counters SET value = value + $1 WHERE name = 'events' RETURNING name, value")
                .bind(limit(n))
        }
        (a, e) => Step::new(
            "UPDATE counters SET value = value + CASE name WHEN 'audit' THEN $1 ELSE $2 END
             WHERE name IN ('audit', 'events') RETURNING name, value",
        )
        .bind(limit(a))
        .bind(limit(e)),
    })
}

/// A counter row: its name and value.
fn counter(row: &AnyRow) -> Result<(String, i64), StoreError> {
    Ok((row.try_get("name").map_err(unavailable)?, row.try_get("value").map_err(unavailable)?))
}

/// Rows per multi-row insert: well under both databases' limits on bound values.
const ROWS_PER_INSERT: usize = 200;

/// `INSERT INTO {table} ({columns}) VALUES (…), (…)` for `rows` rows: one statement for all.
/// Only constant names and placeholders go into it; every value is bound.
fn insert_rows(table: &str, columns: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns.len() {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * columns.len() + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// The idempotency record already stored under `rec`'s key, if any.
pub(crate) fn idempotency_lookup(rec: &IdempotencyRecord) -> Step {
    Step::new("SELECT digest, approval_id, at FROM idempotency WHERE principal = $1 AND key = $2")
        .bind(rec.principal.as_str())
        .bind(rec.key.as_str())
}

/// Looks `rec`'s key up and applies [`StoredKey::admits`].
async fn check_idempotency(
    tx: &mut Tx<'_>,
    rec: &IdempotencyRecord,
    now: Timestamp,
) -> Result<(), StoreError> {
    let found = idempotency_lookup(rec).query()?.fetch_optional(&mut **tx).await.map_err(unavailable)?;
    let Some(row) = found else { return Ok(()) };
    let stored = StoredKey {
        digest: row.try_get("digest").map_err(unavailable)?,
        approval_id: row.try_get("approval_id").map_err(unavailable)?,
        at: row.try_get("at").map_err(unavailable)?,
    };
    stored.admits(rec, now)
}

/// What [`idempotency_lookup`] found under a key.
pub(crate) struct StoredKey {
    pub(crate) digest: String,
    pub(crate) approval_id: String,
    pub(crate) at: i64,
}

impl StoredKey {
    /// IN-4: a key used within the window for the same request replays it, and for another
    /// request is refused; an older use is forgotten.
    pub(crate) fn admits(self, rec: &IdempotencyRecord, now: Timestamp) -> Result<(), StoreError> {
        if Timestamp(self.at) + IDEMPOTENCY_WINDOW <= now {
            return Ok(());
        }
        if self.digest != rec.digest {
            return Err(StoreError::IdempotencyConflict);
        }
        let id = ApprovalId::parse(&self.approval_id).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Err(StoreError::IdempotentReplay(id))
    }
}

fn insert_approval(
    a: &Approval,
    idem: Option<&IdempotencyRecord>,
    now: Timestamp,
    steps: &mut Vec<Step>,
) -> Result<(), StoreError> {
    if let Some(rec) = idem {
        steps.push(
            Step::new(
                "INSERT INTO idempotency (principal, key, digest, approval_id, at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (principal, key) DO UPDATE SET digest = excluded.digest, approval_id = excluded.approval_id, at = excluded.at",
            )
            .bind(rec.principal.as_str())
            .bind(rec.key.as_str())
            .bind(rec.digest.as_str())
            .bind(a.id.as_str())
            .bind(now.0)
            .unique("idempotency key in use"),
        );
    }
    steps.push(
        Step::new(
            "INSERT INTO approvals (id, status, kind, requester, created_at, expires_at, version, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(a.id.as_str())
        .bind(a.status.as_str())
        .bind(a.kind().as_str())
        .bind(a.requester.principal.as_str())
        .bind(a.created_at.0)
        .bind(a.expires_at.0)
        .bind(int(a.version))
        .bind(json(a)?)
        .unique("approval id exists"),
    );
    Ok(())
}

fn update_approval(a: &Approval, expected: u64, steps: &mut Vec<Step>) -> Result<(), StoreError> {
    // ST-4: CAS on version; a terminal row only accepts its own status, so nothing is re-tagged.
    steps.push(
        Step::new(
            "UPDATE approvals SET status = $1, expires_at = $2, version = $3, body = $4
             WHERE id = $5 AND version = $6 AND (status = 'pending' OR status = $1)",
        )
        .bind(a.status.as_str())
        .bind(a.expires_at.0)
        .bind(int(a.version))
        .bind(json(a)?)
        .bind(a.id.as_str())
        .bind(int(expected))
        .changes_one("approval version"),
    );
    if a.status.is_terminal() {
        // Its open cards join the finalizer's queue.
        steps.push(
            Step::new("UPDATE entries SET finalizable = 1 WHERE approval_id = $1 AND open = 1")
                .bind(a.id.as_str()),
        );
    }
    Ok(())
}

fn write_entry(w: &EntryWrite) -> Result<Step, StoreError> {
    let (EntryWrite::Insert(e) | EntryWrite::Update(e)) = w;
    let open = i64::from(e.needs_finalizing());
    let next = e.next_attempt_at.map(|t| t.0);
    // `finalizable`: open, and its approval is terminal (as written earlier in this commit).
    Ok(match w {
        EntryWrite::Insert(_) => Step::new(
            "INSERT INTO entries (entry_id, approval_id, channel, account, target_key, open, next_attempt_at, body, finalizable)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                     $6 * (SELECT COUNT(*) FROM approvals WHERE id = $2 AND status <> 'pending'))",
        )
        .bind(e.entry_id.as_str())
        .bind(e.approval_id.as_str())
        .bind(e.channel.as_str())
        .bind(e.account.as_str())
        .bind(e.target_key.as_str())
        .bind(open)
        .bind(next)
        .bind(json(e)?)
        .unique("ledger entry exists"),
        EntryWrite::Update(_) => Step::new(
            "UPDATE entries SET open = $1, next_attempt_at = $2, body = $3,
             finalizable = $1 * (SELECT COUNT(*) FROM approvals WHERE id = $5 AND status <> 'pending')
             WHERE entry_id = $4",
        )
        .bind(open)
        .bind(next)
        .bind(json(e)?)
        .bind(e.entry_id.as_str())
        .bind(e.approval_id.as_str()),
    })
}

fn write_grant(w: &GrantWrite) -> Result<Step, StoreError> {
    Ok(match w {
        GrantWrite::Insert(g) => {
            Step::new("INSERT INTO grants (kind, revoked, created_at, body, id) VALUES ($1, $2, $3, $4, $5)")
                .bind(g.kind.as_str())
                .bind(i64::from(g.revoked_at.is_some()))
                .bind(g.created_at.0)
                .bind(json(g)?)
                .bind(g.id.as_str())
                .unique("grant exists")
        }
        GrantWrite::Use { id, at } => {
            Step::new("UPDATE grants SET uses = uses + 1, last_used_at = $1 WHERE id = $2 AND revoked = 0")
                .bind(at.0)
                .bind(id.as_str())
                .changes_one(GRANT_NOT_ACTIVE)
        }
        GrantWrite::Revoke { id, at, by } => Step::new(
            "UPDATE grants SET revoked = 1, revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked = 0",
        )
        .bind(at.0)
        .bind(by.as_str())
        .bind(id.as_str())
        .changes_one(GRANT_ALREADY_REVOKED),
    })
}

fn write_binding(w: &BindingWrite) -> Result<Step, StoreError> {
    Ok(match w {
        // The conflict's update happens only for the same install root: otherwise no row
        // changes, and the commit is a conflict.
        BindingWrite::Bind(b) => Step::new(
            "INSERT INTO bindings (key, body, binding_id, plugin_root) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET body = excluded.body, binding_id = excluded.binding_id
             WHERE bindings.plugin_root = excluded.plugin_root",
        )
        .bind(b.key.as_str())
        .bind(json(&**b)?)
        .bind(b.id.as_str())
        .bind(b.plugin.root.as_str())
        .changes_one(CONVERSATION_BOUND),
        BindingWrite::Refresh(b) => {
            Step::new("UPDATE bindings SET body = $1 WHERE key = $2 AND binding_id = $3")
                .bind(json(&**b)?)
                .bind(b.key.as_str())
                .bind(b.id.as_str())
                .changes_one(BINDING_MOVED)
        }
        BindingWrite::Remove { key, id } => {
            Step::new("DELETE FROM bindings WHERE key = $1 AND binding_id = $2")
                .bind(key.as_str())
                .bind(id.as_str())
                .changes_one(BINDING_MOVED)
        }
    })
}

fn state_name(s: CallbackState) -> &'static str {
    match s {
        CallbackState::Pending => "pending",
        CallbackState::Done => "done",
        CallbackState::Failed => "failed",
    }
}

fn write_callback(w: &CallbackWrite) -> Result<Step, StoreError> {
    let (CallbackWrite::Insert(j) | CallbackWrite::Update(j)) = w;
    let sql = match w {
        CallbackWrite::Insert(_) => {
            "INSERT INTO callbacks (state, next_attempt_at, body, key) VALUES ($1, $2, $3, $4)"
        }
        CallbackWrite::Update(_) => {
            "UPDATE callbacks SET state = $1, next_attempt_at = $2, body = $3 WHERE key = $4"
        }
    };
    Ok(Step::new(sql)
        .bind(state_name(j.state))
        .bind(j.next_attempt_at.0)
        .bind(json(j)?)
        .bind(j.key.as_str())
        .unique("callback job exists"))
}

/// A commit's writes in order, except what needs the database's answer first: the idempotency
/// check before them and the audit and event rows after them.
pub(crate) fn plan(c: &Commit, now: Timestamp) -> Result<Vec<Step>, StoreError> {
    let mut steps = Vec::with_capacity(4 + c.entries.len());
    match &c.approval {
        Some(ApprovalWrite::Insert { approval, idempotency }) => {
            insert_approval(approval, idempotency.as_ref(), now, &mut steps)?
        }
        Some(ApprovalWrite::Update { approval, expected_version }) => {
            update_approval(approval, *expected_version, &mut steps)?
        }
        None => {}
    }
    for w in &c.entries {
        steps.push(write_entry(w)?);
    }
    for w in &c.grants {
        steps.push(write_grant(w)?);
    }
    for w in &c.bindings {
        steps.push(write_binding(w)?);
    }
    for w in &c.callbacks {
        steps.push(write_callback(w)?);
    }
    if let Some(key) = &c.notice_key {
        steps.push(
            Step::new("INSERT INTO notice_keys (key) VALUES ($1)")
                .bind(key.as_str())
                .unique("notice already sent"),
        );
    }
    if let Some((key, origin)) = &c.session_origin {
        steps.push(
            Step::new(
                "INSERT INTO sessions (session_key, origin) VALUES ($1, $2)
                 ON CONFLICT (session_key) DO UPDATE SET origin = excluded.origin",
            )
            .bind(key.as_str())
            .bind(json(origin)?),
        );
    }
    Ok(steps)
}

/// Numbers the audit entries and events from `first_audit` and `first_event` (LC-15) and
/// inserts each table's rows with one statement (a commit has a handful).
pub(crate) fn log(
    audit: &mut [AuditEntry],
    events: &mut [Event],
    first_audit: i64,
    first_event: i64,
) -> Result<Vec<Step>, StoreError> {
    for (i, a) in audit.iter_mut().enumerate() {
        a.seq = u64::try_from(first_audit + limit(i)).unwrap_or_default();
    }
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = u64::try_from(first_event + limit(i)).unwrap_or_default();
    }
    let mut steps = Vec::with_capacity(2);
    for chunk in audit.chunks(ROWS_PER_INSERT) {
        let mut step = Step::new(insert_rows("audit", &["seq", "at", "approval_id", "body"], chunk.len()));
        for a in chunk {
            let approval = a.approval_id.as_ref().map(|id| id.as_str().to_owned());
            step = step.bind(int(a.seq)).bind(a.at.0).bind(approval).bind(json(a)?);
        }
        steps.push(step);
    }
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut step = Step::new(insert_rows("events", &["seq", "at", "body"], chunk.len()));
        for e in chunk {
            step = step.bind(int(e.seq)).bind(e.at.0).bind(json(e)?);
        }
        steps.push(step);
    }
    Ok(steps)
}

/// Runs a commit's statements through sqlx (PostgreSQL; SQLite's writer thread runs the same
/// steps in place, `crate::sqlite_writer`).
pub(crate) async fn apply(tx: &mut Tx<'_>, mut c: Commit, now: Timestamp) -> Result<Committed, StoreError> {
    if let Some(ApprovalWrite::Insert { idempotency: Some(rec), .. }) = &c.approval {
        check_idempotency(tx, rec, now).await?;
    }
    run_all(tx, plan(&c, now)?).await?;
    let (first_audit, first_event) = next_seqs(tx, c.audit.len(), c.events.len()).await?;
    run_all(tx, log(&mut c.audit, &mut c.events, first_audit, first_event)?).await?;
    Ok(Committed::new(c.events))
}

pub(crate) async fn claim(
    tx: &mut Tx<'_>,
    select: &'static str,
    now: Timestamp,
    lease: Duration,
    n: usize,
) -> Result<Vec<CallbackJob>, StoreError> {
    let rows =
        sqlx::query(select).bind(now.0).bind(limit(n)).fetch_all(&mut **tx).await.map_err(unavailable)?;
    let mut jobs: Vec<CallbackJob> = parse_all(&rows)?;
    run_all(tx, lease_out(&mut jobs, now, lease)?).await?;
    Ok(jobs)
}

/// Leases claimed `jobs` until `now + lease`: the statements that record it.
pub(crate) fn lease_out(
    jobs: &mut [CallbackJob],
    now: Timestamp,
    lease: Duration,
) -> Result<Vec<Step>, StoreError> {
    jobs.iter_mut()
        .map(|job| {
            job.next_attempt_at = now + lease;
            write_callback(&CallbackWrite::Update(job.clone()))
        })
        .collect()
}

/// Terminal approvals created before `$1` whose cards are all final: what retention removes.
/// The rest waits for the next run.
pub(crate) const DOOMED: &str = "SELECT id FROM approvals a WHERE a.status <> 'pending' AND a.created_at < $1
    AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.approval_id = a.id AND e.open = 1)";

pub(crate) async fn purge(tx: &mut Tx<'_>, before: Timestamp) -> Result<u64, StoreError> {
    let rows = sqlx::query(DOOMED).bind(before.0).fetch_all(&mut **tx).await.map_err(unavailable)?;
    let ids: Vec<String> =
        rows.iter().map(|r| r.try_get::<String, _>("id")).collect::<Result<_, _>>().map_err(unavailable)?;
    run_all(tx, removals(&ids, before)).await?;
    Ok(ids.len() as u64)
}

/// Retention's deletes: the `doomed` approvals with their cards, notices and finished
/// callbacks, then audit, events and idempotency keys older than `before`.
pub(crate) fn removals(doomed: &[String], before: Timestamp) -> Vec<Step> {
    let mut steps = Vec::with_capacity(doomed.len() * 4 + 3);
    for id in doomed {
        for sql in [
            "DELETE FROM entries WHERE approval_id = $1",
            "DELETE FROM approvals WHERE id = $1",
            "DELETE FROM notice_keys WHERE key = 'notice:' || $1",
            "DELETE FROM callbacks WHERE key LIKE $1 || ':%' AND state <> 'pending'",
        ] {
            steps.push(Step::new(sql).bind(id.as_str()));
        }
    }
    for sql in [
        "DELETE FROM audit WHERE at < $1",
        "DELETE FROM events WHERE at < $1",
        "DELETE FROM idempotency WHERE at < $1",
    ] {
        steps.push(Step::new(sql).bind(before.0));
    }
    steps
}
