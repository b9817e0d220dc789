//! Everything a write does inside its transaction: the approval's compare-and-set, ledger,
//! grant, binding and callback rows, gap-free audit and event sequences, outbox claims and
//! retention.

use std::time::Duration;

use assent_core::{
    clock::Timestamp,
    id::ApprovalId,
    model::Approval,
    store::{
        ApprovalWrite, BindingWrite, CallbackJob, CallbackState, CallbackWrite, Commit, Committed,
        EntryWrite, GrantWrite, IDEMPOTENCY_WINDOW, IdempotencyRecord, StoreError,
    },
};
use sqlx::Row;

use crate::rows::{Tx, int, json, limit, parse_all, unavailable, unique};

/// Commits on success, rolls back on error.
pub(crate) async fn finish<T>(tx: Tx, result: Result<T, StoreError>) -> Result<T, StoreError> {
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
async fn next_seqs(tx: &mut Tx, audit: usize, events: usize) -> Result<(i64, i64), StoreError> {
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
    let query = match (audit, events) {
        (0, 0) => return Ok((0, 0)),
        (n, 0) => {
            sqlx::query("UPDATE counters SET value = value + $1 WHERE name = 'audit' RETURNING name, value")
                .bind(limit(n))
        }
        (0, n) => {
            sqlx::query("UPDATE counters SET value = value + $1 WHERE name = 'events' RETURNING name, value")
                .bind(limit(n))
        }
        (a, e) => sqlx::query(
            "UPDATE counters SET value = value + CASE name WHEN 'audit' THEN $1 ELSE $2 END
             WHERE name IN ('audit', 'events') RETURNING name, value",
        )
        .bind(limit(a))
        .bind(limit(e)),
    };
    let rows = query.fetch_all(&mut **tx).await.map_err(unavailable)?;
    if rows.len() != usize::from(audit > 0) + usize::from(events > 0) {
        return Err(StoreError::Unavailable("the audit and event counters are missing".to_owned()));
    }
    let (mut first_audit, mut first_event) = (0, 0);
    for row in rows {
        let name: String = row.try_get("name").map_err(unavailable)?;
        let last: i64 = row.try_get("value").map_err(unavailable)?;
        match name.as_str() {
            "audit" => first_audit = last - limit(audit) + 1,
            _ => first_event = last - limit(events) + 1,
        }
    }
    Ok((first_audit, first_event))
}

/// Rows per multi-row insert: well under both databases' limits on bound values.
const ROWS_PER_INSERT: usize = 200;

/// `INSERT INTO {table} ({columns}) VALUES (…), (…)` for `rows` rows: one statement for all.
/// Only constant names and placeholders go into it; every value is bound.
fn insert_rows(table: &str, columns: &[&str], rows: usize) -> sqlx::AssertSqlSafe<String> {
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
    sqlx::AssertSqlSafe(sql)
}

async fn insert_approval(
    tx: &mut Tx,
    a: &Approval,
    idem: Option<&IdempotencyRecord>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if let Some(rec) = idem {
        let found =
            sqlx::query("SELECT digest, approval_id, at FROM idempotency WHERE principal = $1 AND key = $2")
                .bind(&rec.principal)
                .bind(&rec.key)
                .fetch_optional(&mut **tx)
                .await
                .map_err(unavailable)?;
        if let Some(row) = found {
            let at: i64 = row.try_get("at").map_err(unavailable)?;
            if Timestamp(at) + IDEMPOTENCY_WINDOW > now {
                let digest: String = row.try_get("digest").map_err(unavailable)?;
                if digest != rec.digest {
                    return Err(StoreError::IdempotencyConflict);
                }
                let id: String = row.try_get("approval_id").map_err(unavailable)?;
                let id = ApprovalId::parse(&id).map_err(|e| StoreError::Unavailable(e.to_string()))?;
                return Err(StoreError::IdempotentReplay(id));
            }
        }
        sqlx::query(
            "INSERT INTO idempotency (principal, key, digest, approval_id, at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (principal, key) DO UPDATE SET digest = excluded.digest, approval_id = excluded.approval_id, at = excluded.at",
        )
        .bind(&rec.principal)
        .bind(&rec.key)
        .bind(&rec.digest)
        .bind(a.id.as_str())
        .bind(now.0)
        .execute(&mut **tx)
        .await
        .map_err(unique("idempotency key in use"))?;
    }
    sqlx::query(
        "INSERT INTO approvals (id, status, kind, requester, created_at, expires_at, version, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(a.id.as_str())
    .bind(a.status.as_str())
    .bind(a.kind().as_str())
    .bind(&a.requester.principal)
    .bind(a.created_at.0)
    .bind(a.expires_at.0)
    .bind(int(a.version))
    .bind(json(a)?)
    .execute(&mut **tx)
    .await
    .map_err(unique("approval id exists"))?;
    Ok(())
}

async fn update_approval(tx: &mut Tx, a: &Approval, expected: u64) -> Result<(), StoreError> {
    // ST-4: CAS on version; a terminal row only accepts its own status, so nothing is re-tagged.
    let done = sqlx::query(
        "UPDATE approvals SET status = $1, expires_at = $2, version = $3, body = $4
         WHERE id = $5 AND version = $6 AND (status = 'pending' OR status = $1)",
    )
    .bind(a.status.as_str())
    .bind(a.expires_at.0)
    .bind(int(a.version))
    .bind(json(a)?)
    .bind(a.id.as_str())
    .bind(int(expected))
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict("approval version"));
    }
    if a.status.is_terminal() {
        // Its open cards join the finalizer's queue.
        sqlx::query("UPDATE entries SET finalizable = 1 WHERE approval_id = $1 AND open = 1")
            .bind(a.id.as_str())
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

async fn write_entry(tx: &mut Tx, w: &EntryWrite) -> Result<(), StoreError> {
    let (EntryWrite::Insert(e) | EntryWrite::Update(e)) = w;
    let open = i64::from(e.needs_finalizing());
    let next = e.next_attempt_at.map(|t| t.0);
    // `finalizable`: open, and its approval is terminal (as written earlier in this commit).
    match w {
        EntryWrite::Insert(_) => sqlx::query(
            "INSERT INTO entries (entry_id, approval_id, channel, account, target_key, open, next_attempt_at, body, finalizable)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                     $6 * (SELECT COUNT(*) FROM approvals WHERE id = $2 AND status <> 'pending'))",
        )
        .bind(e.entry_id.as_str())
        .bind(e.approval_id.as_str())
        .bind(e.channel.as_str())
        .bind(&e.account)
        .bind(&e.target_key)
        .bind(open)
        .bind(next)
        .bind(json(e)?)
        .execute(&mut **tx)
        .await
        .map_err(unique("ledger entry exists"))?,
        EntryWrite::Update(_) => {
            sqlx::query(
                "UPDATE entries SET open = $1, next_attempt_at = $2, body = $3,
                 finalizable = $1 * (SELECT COUNT(*) FROM approvals WHERE id = $5 AND status <> 'pending')
                 WHERE entry_id = $4",
            )
            .bind(open)
            .bind(next)
            .bind(json(e)?)
            .bind(e.entry_id.as_str())
            .bind(e.approval_id.as_str())
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?
        }
    };
    Ok(())
}

async fn write_grant(tx: &mut Tx, w: &GrantWrite) -> Result<(), StoreError> {
    let (GrantWrite::Insert(g) | GrantWrite::Update(g)) = w;
    let q = match w {
        GrantWrite::Insert(_) => {
            "INSERT INTO grants (kind, revoked, created_at, body, id) VALUES ($1, $2, $3, $4, $5)"
        }
        GrantWrite::Update(_) => {
            "UPDATE grants SET kind = $1, revoked = $2, created_at = $3, body = $4 WHERE id = $5"
        }
    };
    sqlx::query(q)
        .bind(g.kind.as_str())
        .bind(i64::from(g.revoked_at.is_some()))
        .bind(g.created_at.0)
        .bind(json(g)?)
        .bind(g.id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(unique("grant exists"))?;
    Ok(())
}

async fn write_binding(tx: &mut Tx, w: &BindingWrite) -> Result<(), StoreError> {
    match w {
        BindingWrite::Upsert(b) => sqlx::query(
            "INSERT INTO bindings (key, body) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET body = excluded.body",
        )
        .bind(&b.key)
        .bind(json(&**b)?),
        BindingWrite::Remove(key) => sqlx::query("DELETE FROM bindings WHERE key = $1").bind(key),
    }
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

fn state_name(s: CallbackState) -> &'static str {
    match s {
        CallbackState::Pending => "pending",
        CallbackState::Done => "done",
        CallbackState::Failed => "failed",
    }
}

pub(crate) async fn write_callback(tx: &mut Tx, w: &CallbackWrite) -> Result<(), StoreError> {
    let (CallbackWrite::Insert(j) | CallbackWrite::Update(j)) = w;
    let q = match w {
        CallbackWrite::Insert(_) => {
            "INSERT INTO callbacks (state, next_attempt_at, body, key) VALUES ($1, $2, $3, $4)"
        }
        CallbackWrite::Update(_) => {
            "UPDATE callbacks SET state = $1, next_attempt_at = $2, body = $3 WHERE key = $4"
        }
    };
    sqlx::query(q)
        .bind(state_name(j.state))
        .bind(j.next_attempt_at.0)
        .bind(json(j)?)
        .bind(&j.key)
        .execute(&mut **tx)
        .await
        .map_err(unique("callback job exists"))?;
    Ok(())
}

pub(crate) async fn apply(tx: &mut Tx, c: Commit, now: Timestamp) -> Result<Committed, StoreError> {
    match &c.approval {
        Some(ApprovalWrite::Insert { approval, idempotency }) => {
            insert_approval(tx, approval, idempotency.as_ref(), now).await?
        }
        Some(ApprovalWrite::Update { approval, expected_version }) => {
            update_approval(tx, approval, *expected_version).await?
        }
        None => {}
    }
    for w in &c.entries {
        write_entry(tx, w).await?;
    }
    for w in &c.grants {
        write_grant(tx, w).await?;
    }
    for w in &c.bindings {
        write_binding(tx, w).await?;
    }
    for w in &c.callbacks {
        write_callback(tx, w).await?;
    }
    if let Some(key) = &c.notice_key {
        sqlx::query("INSERT INTO notice_keys (key) VALUES ($1)")
            .bind(key)
            .execute(&mut **tx)
            .await
            .map_err(unique("notice already sent"))?;
    }
    if let Some((key, origin)) = &c.session_origin {
        sqlx::query(
            "INSERT INTO sessions (session_key, origin) VALUES ($1, $2)
             ON CONFLICT (session_key) DO UPDATE SET origin = excluded.origin",
        )
        .bind(key)
        .bind(json(origin)?)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    // Audit and event rows: one statement reserves their sequence numbers, one inserts each
    // table's rows (a commit has a handful; every statement is a round trip to the database).
    let (first_audit, first_event) = next_seqs(tx, c.audit.len(), c.events.len()).await?;
    let mut audit = c.audit;
    for (i, a) in audit.iter_mut().enumerate() {
        a.seq = u64::try_from(first_audit + limit(i)).unwrap_or_default();
    }
    for chunk in audit.chunks(ROWS_PER_INSERT) {
        let mut q = sqlx::query(insert_rows("audit", &["seq", "at", "approval_id", "body"], chunk.len()));
        for a in chunk {
            let approval = a.approval_id.as_ref().map(|id| id.as_str().to_owned());
            q = q.bind(int(a.seq)).bind(a.at.0).bind(approval).bind(json(a)?);
        }
        q.execute(&mut **tx).await.map_err(unavailable)?;
    }
    let mut events = c.events;
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = u64::try_from(first_event + limit(i)).unwrap_or_default();
    }
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut q = sqlx::query(insert_rows("events", &["seq", "at", "body"], chunk.len()));
        for e in chunk {
            q = q.bind(int(e.seq)).bind(e.at.0).bind(json(e)?);
        }
        q.execute(&mut **tx).await.map_err(unavailable)?;
    }
    Ok(Committed { events })
}

pub(crate) async fn claim(
    tx: &mut Tx,
    select: &'static str,
    now: Timestamp,
    lease: Duration,
    n: usize,
) -> Result<Vec<CallbackJob>, StoreError> {
    let rows =
        sqlx::query(select).bind(now.0).bind(limit(n)).fetch_all(&mut **tx).await.map_err(unavailable)?;
    let mut jobs: Vec<CallbackJob> = parse_all(&rows)?;
    for job in &mut jobs {
        job.next_attempt_at = now + lease;
        write_callback(tx, &CallbackWrite::Update(job.clone())).await?;
    }
    Ok(jobs)
}

pub(crate) async fn purge(tx: &mut Tx, before: Timestamp) -> Result<u64, StoreError> {
    // Terminal approvals whose cards are all final; the rest waits for the next run.
    const DOOMED: &str = "SELECT id FROM approvals a WHERE a.status <> 'pending' AND a.created_at < $1
        AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.approval_id = a.id AND e.open = 1)";
    let rows = sqlx::query(DOOMED).bind(before.0).fetch_all(&mut **tx).await.map_err(unavailable)?;
    let ids: Vec<String> =
        rows.iter().map(|r| r.try_get::<String, _>("id")).collect::<Result<_, _>>().map_err(unavailable)?;
    for id in &ids {
        for q in [
            "DELETE FROM entries WHERE approval_id = $1",
            "DELETE FROM approvals WHERE id = $1",
            "DELETE FROM notice_keys WHERE key = 'notice:' || $1",
            "DELETE FROM callbacks WHERE key LIKE $1 || ':%' AND state <> 'pending'",
        ] {
            sqlx::query(q).bind(id).execute(&mut **tx).await.map_err(unavailable)?;
        }
    }
    for q in [
        "DELETE FROM audit WHERE at < $1",
        "DELETE FROM events WHERE at < $1",
        "DELETE FROM idempotency WHERE at < $1",
    ] {
        sqlx::query(q).bind(before.0).execute(&mut **tx).await.map_err(unavailable)?;
    }
    Ok(ids.len() as u64)
}
