//! Embedded, forward-only migrations (ST-5). One script serves SQLite and PostgreSQL: only types
//! and syntax both accept are used (`TEXT`, `BIGINT`, partial indexes, `ON CONFLICT`).

use assent_core::model::Binding;
use sqlx::Row;

use crate::rows::Tx;

/// Migrations in order; the position + 1 is the version. Never edit a released one: append.
pub(crate) const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        kind TEXT NOT NULL,
        requester TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        body TEXT NOT NULL
    )",
        "CREATE INDEX approvals_pending_deadline ON approvals (expires_at) WHERE status = 'pending'",
        "CREATE INDEX approvals_created ON approvals (created_at)",
        "CREATE TABLE idempotency (
        principal TEXT NOT NULL,
        key TEXT NOT NULL,
        digest TEXT NOT NULL,
        approval_id TEXT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (principal, key)
    )",
        "CREATE TABLE entries (
        entry_id TEXT PRIMARY KEY,
        approval_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        account TEXT NOT NULL,
        target_key TEXT NOT NULL,
        open BIGINT NOT NULL,
        next_attempt_at BIGINT,
        body TEXT NOT NULL,
        UNIQUE (approval_id, channel, account, target_key)
    )",
        "CREATE INDEX entries_open ON entries (next_attempt_at) WHERE open = 1",
        "CREATE INDEX entries_account ON entries (channel, account) WHERE open = 1",
        "CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        revoked BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        body TEXT NOT NULL
    )",
        "CREATE TABLE bindings (key TEXT PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE TABLE audit (seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, approval_id TEXT, body TEXT NOT NULL)",
        "CREATE INDEX audit_approval ON audit (approval_id, seq)",
        "CREATE TABLE events (seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, body TEXT NOT NULL)",
        "CREATE TABLE callbacks (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        body TEXT NOT NULL
    )",
        "CREATE INDEX callbacks_due ON callbacks (next_attempt_at) WHERE state = 'pending'",
        "CREATE TABLE notice_keys (key TEXT PRIMARY KEY)",
        "CREATE TABLE sessions (session_key TEXT PRIMARY KEY, origin TEXT NOT NULL)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('audit', 0), ('events', 0)",
    ],
    &[
        // 2: the finalizer's queue. `finalizable` marks open cards of terminal approvals, so a pass
        // reads what is due rather than every card of every pending approval.
        "ALTER TABLE entries ADD COLUMN finalizable BIGINT NOT NULL DEFAULT 0",
        "UPDATE entries SET finalizable = 1
     WHERE open = 1 AND approval_id IN (SELECT id FROM approvals WHERE status <> 'pending')",
        "CREATE INDEX entries_finalizable ON entries (next_attempt_at) WHERE finalizable = 1",
    ],
    &[
        // 3: a grant's body is written once. Uses and revocation go to columns of their own, so
        // a write of one never carries a stale copy of the other (a hit undid a revocation).
        // `uses` counts on top of the body's `use_count`; the others, when set, replace the body's.
        "ALTER TABLE grants ADD COLUMN uses BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE grants ADD COLUMN last_used_at BIGINT",
        "ALTER TABLE grants ADD COLUMN revoked_at BIGINT",
        "ALTER TABLE grants ADD COLUMN revoked_by TEXT",
        // A binding write names the binding (or install root) it expects to find, so a late
        // write cannot take, bring back or detach another binding (BD-1, BD-7). Filled from
        // the bodies by `fill_binding_owners`.
        "ALTER TABLE bindings ADD COLUMN binding_id TEXT",
        "ALTER TABLE bindings ADD COLUMN plugin_root TEXT",
    ],
    // 4: SQLite only, [`SQLITE_SEQ_AS_ROWID`].
    &[],
];

/// The version whose statements on SQLite are [`SQLITE_SEQ_AS_ROWID`].
pub(crate) const SEQ_AS_ROWID: i64 = 4;

/// Migration 4 on SQLite: the audit and event tables keyed by `seq` itself. A `BIGINT` primary
/// key is a second B-tree beside the table's own rowid, so every row was inserted twice; an
/// `INTEGER PRIMARY KEY` is the rowid. That is one B-tree fewer to write for every audit entry
/// and event, about 6% of the SQLite writer's time under load (docs/benchmarks.md, thirteenth
/// pass). PostgreSQL has no rowid: its `BIGINT` key is the only index, so it has nothing to do.
pub(crate) const SQLITE_SEQ_AS_ROWID: &[&str] = &[
    "CREATE TABLE audit_by_seq (seq INTEGER PRIMARY KEY, at BIGINT NOT NULL, approval_id TEXT, body TEXT NOT NULL)",
    "INSERT INTO audit_by_seq (seq, at, approval_id, body) SELECT seq, at, approval_id, body FROM audit",
    "DROP TABLE audit",
    "ALTER TABLE audit_by_seq RENAME TO audit",
    "CREATE INDEX audit_approval ON audit (approval_id, seq)",
    "CREATE TABLE events_by_seq (seq INTEGER PRIMARY KEY, at BIGINT NOT NULL, body TEXT NOT NULL)",
    "INSERT INTO events_by_seq (seq, at, body) SELECT seq, at, body FROM events",
    "DROP TABLE events",
    "ALTER TABLE events_by_seq RENAME TO events",
];

/// The version whose data step is [`fill_binding_owners`].
pub(crate) const BINDING_OWNERS: i64 = 3;

/// Migration 3's data step, which SQL cannot take on both databases alike: each binding's id
/// and install root, copied from its JSON body into the columns that guard binding writes.
pub(crate) async fn fill_binding_owners(tx: &mut Tx<'_>) -> Result<(), sqlx::Error> {
    let rows = sqlx::query("SELECT body FROM bindings").fetch_all(&mut **tx).await?;
    for row in rows {
        let body: String = row.try_get("body")?;
        let b: Binding = serde_json::from_str(&body).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        sqlx::query("UPDATE bindings SET binding_id = $1, plugin_root = $2 WHERE key = $3")
            .bind(b.id.as_str())
            .bind(b.plugin.root.as_str())
            .bind(b.key.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The schema version this binary writes.
pub(crate) fn latest() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}
