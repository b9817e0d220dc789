//! [`SqlStore`]: the [`Store`] over SQLite or PostgreSQL through sqlx's `Any` driver, so both
//! backends share one implementation. Records are stored as JSON bodies beside the columns that
//! are indexed or compared (status, version, deadlines, ledger keys).

use std::{fs::File, sync::Arc, time::Duration};

use assent_core::{
    clock::Timestamp,
    id::{ApprovalId, EntryId, GrantId},
    model::{AccountKey, Approval, AuditEntry, Binding, Entry, Event, Grant, Kind, Origin, PendingFacts},
    store::{ApprovalFilter, AuditFilter, CallbackJob, Commit, Committed, Store, StoreError},
};
use async_trait::async_trait;
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use sqlx::{AnyPool, Row};

use crate::{
    Backend, OpenError,
    grant_cache::GrantCache,
    group::GroupCommit,
    migrations,
    rows::{Query, Tx, int, limit, parse, parse_grant, unavailable},
    writes::{apply, claim, finish, purge},
};

/// Every pending approval's stored body: what `pending` and `pending_facts` decode.
const PENDING_BODIES: &str = "SELECT body FROM approvals WHERE status = 'pending'";

/// A durable [`Store`] on SQLite or PostgreSQL.
#[derive(Debug)]
pub struct SqlStore {
    /// Reads, PostgreSQL's writes, and migrations. An open SQLite store writes only on its
    /// writer thread (`sqlite_writer`).
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// The database URL, for the sessions that replicas keep outside the pools (ST-7, ST-8).
    pub(crate) url: String,
    /// The SQLite lock file, held for the store's lifetime.
    pub(crate) lock: Option<File>,
    /// The SQLite background checkpointer, stopped with the store.
    pub(crate) checkpoints: Option<tokio::task::AbortHandle>,
    /// PostgreSQL's writer task when group commit is on: it commits whatever is queued in one
    /// transaction.
    pub(crate) group: Option<GroupCommit>,
    /// SQLite's writer thread: every write of an open SQLite store goes through it.
    #[cfg(feature = "sqlite")]
    pub(crate) sqlite_writer: Option<crate::sqlite_writer::SqliteWriter>,
    /// SQLite's active grants, kept in step by its writer thread.
    pub(crate) grants: Option<Arc<GrantCache>>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Some(task) = &self.checkpoints {
            task.abort();
        }
    }
}

impl SqlStore {
    /// Runs a read returning `body` columns and decodes them.
    async fn bodies<T: DeserializeOwned>(&self, q: Query<'_>) -> Result<Vec<T>, StoreError> {
        // Each row is decoded as it arrives, while the database's own thread reads the next:
        // a start-up read of 100k pending approvals keeps both cores busy (NF-4).
        let mut rows = q.fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(unavailable)? {
            out.push(parse(&row)?);
        }
        Ok(out)
    }

    /// Runs a read of grant rows (the columns [`parse_grant`] reads).
    async fn grant_rows(&self, q: Query<'_>) -> Result<Vec<Grant>, StoreError> {
        let rows = q.fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.iter().map(parse_grant).collect()
    }

    /// Runs a read returning at most one `body` and decodes it.
    async fn body<T: DeserializeOwned>(&self, q: Query<'_>) -> Result<Option<T>, StoreError> {
        let row = q.fetch_optional(&self.pool).await.map_err(unavailable)?;
        row.as_ref().map(parse).transpose()
    }
}

impl SqlStore {
    pub(crate) fn from_pool(pool: AnyPool, backend: Backend, url: &str) -> Self {
        Self {
            pool,
            backend,
            url: url.to_owned(),
            lock: None,
            checkpoints: None,
            group: None,
            #[cfg(feature = "sqlite")]
            sqlite_writer: None,
            grants: None,
        }
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
        let mut tx = self.pool.begin().await?;
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
            if version == migrations::BINDING_OWNERS {
                migrations::fill_binding_owners(&mut tx).await?;
            }
            if version == migrations::SEQ_AS_ROWID && self.backend == Backend::Sqlite {
                for statement in migrations::SQLITE_SEQ_AS_ROWID {
                    sqlx::query(*statement).execute(&mut *tx).await?;
                }
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

    /// Starts a write transaction (PostgreSQL; SQLite writes on its writer thread).
    async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        self.pool.begin().await.map_err(unavailable)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn commit(&self, commit: Commit, now: Timestamp) -> Result<Committed, StoreError> {
        #[cfg(feature = "sqlite")]
        if let Some(writer) = &self.sqlite_writer {
            return writer.commit(commit, now).await;
        }
        if let Some(group) = &self.group {
            return group.commit(commit, now).await;
        }
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
        self.bodies(sqlx::query(PENDING_BODIES)).await
    }

    /// The same rows as `pending`, read into the few fields the engine's index keeps.
    async fn pending_facts(&self) -> Result<Vec<PendingFacts>, StoreError> {
        self.bodies(sqlx::query(PENDING_BODIES)).await
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
        self.bodies(
            sqlx::query(
                "SELECT body FROM entries
             WHERE finalizable = 1 AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
             LIMIT $2",
            )
            .bind(now.0)
            .bind(limit(n)),
        )
        .await
    }

    async fn active_grants(&self, kind: Kind) -> Result<Vec<Grant>, StoreError> {
        let Some(cache) = &self.grants else {
            let sql = "SELECT body, uses, last_used_at, revoked_at, revoked_by FROM grants
                 WHERE kind = $1 AND revoked = 0";
            return self.grant_rows(sqlx::query(sql).bind(kind.as_str())).await;
        };
        let generation = match cache.get(kind) {
            Ok(active) => return Ok(active),
            Err(generation) => generation,
        };
        let sql = "SELECT body, uses, last_used_at, revoked_at, revoked_by FROM grants WHERE revoked = 0";
        let active = self.grant_rows(sqlx::query(sql)).await?;
        let of_kind = active.iter().filter(|g| g.kind == kind).cloned().collect();
        cache.fill(generation, active);
        Ok(of_kind)
    }

    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        let sql = "SELECT body, uses, last_used_at, revoked_at, revoked_by FROM grants
             ORDER BY created_at DESC, id DESC";
        self.grant_rows(sqlx::query(sql)).await
    }

    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, StoreError> {
        let sql = "SELECT body, uses, last_used_at, revoked_at, revoked_by FROM grants WHERE id = $1";
        Ok(self.grant_rows(sqlx::query(sql).bind(id.as_str())).await?.pop())
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

    async fn ready(&self) -> Result<(), StoreError> {
        #[cfg(feature = "sqlite")]
        if self.sqlite_writer.as_ref().is_some_and(|w| !w.running()) {
            return Err(StoreError::Unavailable("the store's writer has stopped".to_owned()));
        }
        self.latest_event_seq().await.map(|_| ())
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
        #[cfg(feature = "sqlite")]
        if let Some(writer) = &self.sqlite_writer {
            return writer.claim(now, lease, n).await;
        }
        // PostgreSQL replicas skip rows another replica is claiming (ST-8).
        let select = "SELECT body FROM callbacks WHERE state = 'pending' AND next_attempt_at <= $1
            ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED";
        let mut tx = self.begin().await?;
        let result = claim(&mut tx, select, now, lease, n).await;
        finish(tx, result).await
    }

    async fn purge(&self, before: Timestamp) -> Result<u64, StoreError> {
        #[cfg(feature = "sqlite")]
        if let Some(writer) = &self.sqlite_writer {
            return writer.purge(before).await;
        }
        let mut tx = self.begin().await?;
        let result = purge(&mut tx, before).await;
        finish(tx, result).await
    }

    async fn callback(&self, key: &str) -> Result<Option<CallbackJob>, StoreError> {
        self.body(sqlx::query("SELECT body FROM callbacks WHERE key = $1").bind(key)).await
    }
}
