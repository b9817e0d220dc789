//! [`SqlStore`]: the [`Store`] over SQLite or PostgreSQL through sqlx's `Any` driver, so both
//! backends share one implementation. Records are stored as JSON bodies beside the columns that
//! are indexed or compared (status, version, deadlines, ledger keys).

use std::{fs::File, time::Duration};

use assent_core::{
    clock::Timestamp,
    id::{ApprovalId, EntryId, GrantId},
    model::{AccountKey, Approval, AuditEntry, Binding, Entry, Event, Grant, Kind, Origin},
    store::{
        ApprovalFilter, ApprovalWrite, AuditFilter, BindingWrite, CallbackJob, CallbackState, CallbackWrite,
        Commit, Committed, EntryWrite, GrantWrite, IDEMPOTENCY_WINDOW, IdempotencyRecord, Store, StoreError,
    },
};
use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{Any, AnyPool, Row, Transaction, any::AnyRow};

use crate::{Backend, OpenError, migrations};

type Tx = Transaction<'static, Any>;

/// A durable [`Store`] on SQLite or PostgreSQL.
#[derive(Debug)]
pub struct SqlStore {
    /// Readers (and, on PostgreSQL, writers too).
    pool: AnyPool,
    /// Writes. On SQLite a pool of one connection: writers queue for it instead of failing
    /// with `SQLITE_BUSY` (ST-3, one writer).
    writer: AnyPool,
    backend: Backend,
    /// The database URL, for the sessions that replicas keep outside the pools (ST-7, ST-8).
    pub(crate) url: String,
    /// The SQLite lock file, held for the store's lifetime.
    pub(crate) lock: Option<File>,
    /// The SQLite background checkpointer, stopped with the store.
    pub(crate) checkpoints: Option<tokio::task::AbortHandle>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Some(task) = &self.checkpoints {
            task.abort();
        }
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps a unique-constraint violation to `Conflict(what)`, anything else to `Unavailable`.
fn unique(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => unavailable(e),
    }
}

fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Unavailable(format!("cannot encode a record: {e}")))
}

fn parse<T: DeserializeOwned>(row: &AnyRow) -> Result<T, StoreError> {
    let body: String = row.try_get("body").map_err(unavailable)?;
    serde_json::from_str(&body)
        .map_err(|e| StoreError::Unavailable(format!("a stored record does not decode: {e}")))
}

fn parse_all<T: DeserializeOwned>(rows: &[AnyRow]) -> Result<Vec<T>, StoreError> {
    rows.iter().map(parse).collect()
}

type Query<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

impl SqlStore {
    /// Runs a read returning `body` columns and decodes them.
    async fn bodies<T: DeserializeOwned>(&self, q: Query<'_>) -> Result<Vec<T>, StoreError> {
        let rows = q.fetch_all(&self.pool).await.map_err(unavailable)?;
        parse_all(&rows)
    }

    /// Runs a read returning at most one `body` and decodes it.
    async fn body<T: DeserializeOwned>(&self, q: Query<'_>) -> Result<Option<T>, StoreError> {
        let row = q.fetch_optional(&self.pool).await.map_err(unavailable)?;
        row.as_ref().map(parse).transpose()
    }
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqlStore {
    pub(crate) fn from_pools(pool: AnyPool, writer: AnyPool, backend: Backend, url: &str) -> Self {
        Self { pool, writer, backend, url: url.to_owned(), lock: None, checkpoints: None }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The schema version stored in the database.
    pub async fn schema_version(&self) -> Result<i64, OpenError> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("v")?)
    }

    /// ST-5: refuses a newer schema, applies pending migrations under an exclusive lock, or with
    /// `apply = false` fails if any are pending.
    pub(crate) async fn migrate(&self, apply: bool) -> Result<(), OpenError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&self.pool)
            .await?;
        let mut tx = self.writer.begin().await?;
        if self.backend == Backend::Postgres {
            // One migrator at a time across replicas.
            sqlx::query("SELECT pg_advisory_xact_lock(7265726)").execute(&mut *tx).await?;
        } else {
            // Take SQLite's write lock now, so two processes cannot both start migrating.
            sqlx::query("UPDATE schema_migrations SET version = version WHERE 1 = 0")
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?;
        let found: i64 = row.try_get("v")?;
        let latest = migrations::latest();
        if found > latest {
            return Err(OpenError::SchemaTooNew { found, supported: latest });
        }
        if found < latest && !apply {
            return Err(OpenError::MigrationsPending { pending: latest - found });
        }
        for (index, statements) in migrations::MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
            if version <= found {
                continue;
            }
            for statement in *statements {
                sqlx::query(*statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(0_i64)
                .execute(&mut *tx)
                .await?;
            tracing::info!(version, "applied store migration");
        }
        tx.commit().await?;
        Ok(())
    }

    /// Test and operations hook: records a schema version newer than this binary knows.
    #[doc(hidden)]
    pub async fn pretend_schema_version(&self, version: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Starts a write transaction, queued behind SQLite's single writer.
    async fn begin(&self) -> Result<Tx, StoreError> {
        self.writer.begin().await.map_err(unavailable)
    }
}

/// Commits on success, rolls back on error.
async fn finish<T>(tx: Tx, result: Result<T, StoreError>) -> Result<T, StoreError> {
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

async fn next_seq(tx: &mut Tx, counter: &'static str, n: usize) -> Result<i64, StoreError> {
    // The row lock on the counter serializes committers, so seq order is commit order and a
    // rolled-back transaction leaves no gap (LC-15).
    let row = sqlx::query("UPDATE counters SET value = value + $1 WHERE name = $2 RETURNING value")
        .bind(limit(n))
        .bind(counter)
        .fetch_one(&mut **tx)
        .await
        .map_err(unavailable)?;
    let last: i64 = row.try_get("value").map_err(unavailable)?;
    Ok(last - limit(n) + 1)
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
    if done.rows_affected() == 1 { Ok(()) } else { Err(StoreError::Conflict("approval version")) }
}

async fn write_entry(tx: &mut Tx, w: &EntryWrite) -> Result<(), StoreError> {
    let (EntryWrite::Insert(e) | EntryWrite::Update(e)) = w;
    let open = i64::from(e.needs_finalizing());
    let next = e.next_attempt_at.map(|t| t.0);
    match w {
        EntryWrite::Insert(_) => sqlx::query(
            "INSERT INTO entries (entry_id, approval_id, channel, account, target_key, open, next_attempt_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
            sqlx::query("UPDATE entries SET open = $1, next_attempt_at = $2, body = $3 WHERE entry_id = $4")
                .bind(open)
                .bind(next)
                .bind(json(e)?)
                .bind(e.entry_id.as_str())
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

async fn write_callback(tx: &mut Tx, w: &CallbackWrite) -> Result<(), StoreError> {
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

async fn apply(tx: &mut Tx, c: Commit, now: Timestamp) -> Result<Committed, StoreError> {
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
    if !c.audit.is_empty() {
        let first = next_seq(tx, "audit", c.audit.len()).await?;
        for (i, mut a) in c.audit.into_iter().enumerate() {
            a.seq = u64::try_from(first + limit(i)).unwrap_or_default();
            sqlx::query("INSERT INTO audit (seq, at, approval_id, body) VALUES ($1, $2, $3, $4)")
                .bind(int(a.seq))
                .bind(a.at.0)
                .bind(a.approval_id.as_ref().map(|id| id.as_str().to_owned()))
                .bind(json(&a)?)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
        }
    }
    let mut events = Vec::with_capacity(c.events.len());
    if !c.events.is_empty() {
        let first = next_seq(tx, "events", c.events.len()).await?;
        for (i, mut e) in c.events.into_iter().enumerate() {
            e.seq = u64::try_from(first + limit(i)).unwrap_or_default();
            sqlx::query("INSERT INTO events (seq, at, body) VALUES ($1, $2, $3)")
                .bind(int(e.seq))
                .bind(e.at.0)
                .bind(json(&e)?)
                .execute(&mut **tx)
                .await
                .map_err(unavailable)?;
            events.push(e);
        }
    }
    Ok(Committed { events })
}

async fn claim(
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

async fn purge(tx: &mut Tx, before: Timestamp) -> Result<u64, StoreError> {
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

#[async_trait]
impl Store for SqlStore {
    async fn commit(&self, commit: Commit, now: Timestamp) -> Result<Committed, StoreError> {
        let mut tx = self.begin().await?;
        let mut result = apply(&mut tx, commit, now).await;
        if self.backend == Backend::Postgres
            && let Ok(committed) = &result
            && let Some(last) = committed.events.last()
        {
            // ST-8: other replicas learn of the commit; PostgreSQL delivers it only on COMMIT.
            let notified = sqlx::query("SELECT pg_notify('assent_events', $1)")
                .bind(last.seq.to_string())
                .execute(&mut *tx)
                .await;
            if let Err(e) = notified {
                result = Err(unavailable(e));
            }
        }
        finish(tx, result).await
    }

    async fn commit_feed(&self) -> Result<Option<assent_core::store::CommitFeed>, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(None),
            Backend::Postgres => crate::replicas::commit_feed(&self.url).await.map(Some),
        }
    }

    async fn try_lease(
        &self,
        account: &AccountKey,
    ) -> Result<Option<Box<dyn assent_core::store::Lease>>, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(Some(Box::new(assent_core::store::SoleLease))),
            Backend::Postgres => crate::replicas::try_lease(&self.url, account).await,
        }
    }

    async fn approval(&self, id: &ApprovalId) -> Result<Option<Approval>, StoreError> {
        self.body(sqlx::query("SELECT body FROM approvals WHERE id = $1").bind(id.as_str())).await
    }

    async fn pending(&self) -> Result<Vec<Approval>, StoreError> {
        self.bodies(sqlx::query("SELECT body FROM approvals WHERE status = 'pending'")).await
    }

    async fn due_for_expiry(&self, now: Timestamp, n: usize) -> Result<Vec<Approval>, StoreError> {
        self.bodies(sqlx::query(
            "SELECT body FROM approvals WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now.0)
        .bind(limit(n))).await
    }

    async fn approvals(&self, f: &ApprovalFilter) -> Result<Vec<Approval>, StoreError> {
        self.bodies(
            sqlx::query(
                "SELECT body FROM approvals
             WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
               AND (CAST($2 AS TEXT) IS NULL OR kind = $2)
               AND (CAST($3 AS TEXT) IS NULL OR requester = $3)
               AND (CAST($4 AS BIGINT) IS NULL OR created_at >= $4)
               AND (CAST($6 AS BIGINT) IS NULL OR created_at < $6 OR (created_at = $6 AND id < $7))
               AND (CAST($8 AS TEXT) IS NULL OR (id >= $8 AND id < $9))
             ORDER BY created_at DESC, id DESC LIMIT $5",
            )
            .bind(f.status.map(|s| s.as_str().to_owned()))
            .bind(f.kind.map(|k| k.as_str().to_owned()))
            .bind(f.requester.clone())
            .bind(f.since.map(|t| t.0))
            .bind(limit(if f.limit == 0 { 100 } else { f.limit }))
            .bind(f.before.as_ref().map(|(t, _)| t.0))
            .bind(f.before.as_ref().map(|(_, id)| id.as_str().to_owned()))
            // A prefix as a key range: ids are lower-case base32, and `~` sorts after them all.
            .bind(f.id_prefix.clone())
            .bind(f.id_prefix.as_ref().map(|p| format!("{p}~"))),
        )
        .await
    }

    async fn entries(&self, id: &ApprovalId) -> Result<Vec<Entry>, StoreError> {
        self.bodies(
            sqlx::query("SELECT body FROM entries WHERE approval_id = $1 ORDER BY entry_id")
                .bind(id.as_str()),
        )
        .await
    }

    async fn entry(&self, id: &EntryId) -> Result<Option<Entry>, StoreError> {
        self.body(sqlx::query("SELECT body FROM entries WHERE entry_id = $1").bind(id.as_str())).await
    }

    async fn open_entries(&self, account: &AccountKey) -> Result<Vec<Entry>, StoreError> {
        self.bodies(
            sqlx::query("SELECT body FROM entries WHERE open = 1 AND channel = $1 AND account = $2")
                .bind(account.channel.as_str())
                .bind(&account.account),
        )
        .await
    }

    async fn entries_of_pending(&self) -> Result<Vec<Entry>, StoreError> {
        self.bodies(sqlx::query(
            "SELECT e.body AS body FROM entries e JOIN approvals a ON a.id = e.approval_id WHERE a.status = 'pending'",
        )).await
    }

    async fn finalize_due(&self, now: Timestamp, n: usize) -> Result<Vec<Entry>, StoreError> {
        self.bodies(sqlx::query(
            "SELECT e.body AS body FROM entries e JOIN approvals a ON a.id = e.approval_id
             WHERE e.open = 1 AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= $1) AND a.status <> 'pending'
             LIMIT $2",
        )
        .bind(now.0)
        .bind(limit(n))).await
    }

    async fn active_grants(&self, kind: Kind) -> Result<Vec<Grant>, StoreError> {
        self.bodies(
            sqlx::query("SELECT body FROM grants WHERE kind = $1 AND revoked = 0").bind(kind.as_str()),
        )
        .await
    }

    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.bodies(sqlx::query("SELECT body FROM grants ORDER BY created_at DESC, id DESC")).await
    }

    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, StoreError> {
        self.body(sqlx::query("SELECT body FROM grants WHERE id = $1").bind(id.as_str())).await
    }

    async fn binding(&self, key: &str) -> Result<Option<Binding>, StoreError> {
        self.body(sqlx::query("SELECT body FROM bindings WHERE key = $1").bind(key)).await
    }

    async fn events_since(&self, seq: u64, n: usize) -> Result<Vec<Event>, StoreError> {
        self.bodies(
            sqlx::query("SELECT body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(int(seq))
                .bind(limit(n)),
        )
        .await
    }

    async fn latest_event_seq(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT value FROM counters WHERE name = 'events'")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        let value: i64 = row.try_get("value").map_err(unavailable)?;
        Ok(u64::try_from(value).unwrap_or(0))
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = if f.before_seq.is_some() {
            "SELECT body FROM audit WHERE seq > $1 AND seq < $4 AND (CAST($2 AS TEXT) IS NULL OR approval_id = $2) \
             ORDER BY seq DESC LIMIT $3"
        } else {
            "SELECT body FROM audit WHERE seq > $1 AND seq < $4 AND (CAST($2 AS TEXT) IS NULL OR approval_id = $2) \
             ORDER BY seq LIMIT $3"
        };
        self.bodies(
            sqlx::query(sql)
                .bind(int(f.after_seq))
                .bind(f.approval_id.as_ref().map(|id| id.as_str().to_owned()))
                .bind(limit(if f.limit == 0 { 1000 } else { f.limit }))
                .bind(int(f.before_seq.unwrap_or(u64::MAX))),
        )
        .await
    }

    async fn session_origin(&self, session_key: &str) -> Result<Option<Origin>, StoreError> {
        self.body(sqlx::query("SELECT origin AS body FROM sessions WHERE session_key = $1").bind(session_key))
            .await
    }

    async fn claim_callbacks(
        &self,
        now: Timestamp,
        lease: Duration,
        n: usize,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        // PostgreSQL replicas skip rows another replica is claiming (ST-8); SQLite has one writer.
        let select: &'static str = match self.backend {
            Backend::Postgres => {
                "SELECT body FROM callbacks WHERE state = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED"
            }
            Backend::Sqlite => {
                "SELECT body FROM callbacks WHERE state = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at LIMIT $2"
            }
        };
        let mut tx = self.begin().await?;
        let result = claim(&mut tx, select, now, lease, n).await;
        finish(tx, result).await
    }

    async fn purge(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let result = purge(&mut tx, before).await;
        finish(tx, result).await
    }

    async fn callback(&self, key: &str) -> Result<Option<CallbackJob>, StoreError> {
        self.body(sqlx::query("SELECT body FROM callbacks WHERE key = $1").bind(key)).await
    }
}
