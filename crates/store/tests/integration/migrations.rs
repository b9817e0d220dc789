use std::time::Duration;

use assent_core::{
    clock::Timestamp,
    id::EntryId,
    model::{Approval, AuditEntry, AuditType, Event, EventType, Grant, Status},
    store::{
        ApprovalWrite, AuditFilter, BindingWrite, CONVERSATION_BOUND, Commit, EntryWrite, GrantWrite, Store,
        StoreError,
    },
};
use assent_store::{OpenError, OpenOptions, SqlStore};
#[cfg(feature = "postgres")]
use assent_testing::postgres::PgServer;
use assent_testing::store_contract;
use sqlx::Connection;

use crate::temp_db;

#[tokio::test]
async fn st_5_a_newer_schema_is_refused_on_sqlite() {
    let path = temp_db();
    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 4);
    store.pretend_schema_version(99).await.unwrap();
    drop(store);
    let err = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap_err();
    assert!(matches!(err, OpenError::SchemaTooNew { found: 99, supported: 4 }), "{err}");
    assert!(err.to_string().starts_with("schema_too_new"));
}

#[tokio::test]
async fn st_5_no_migrate_fails_while_migrations_are_pending() {
    let path = temp_db();
    let no = OpenOptions { migrate: false, ..OpenOptions::default() };
    let err = SqlStore::open_sqlite(&path, no).await.unwrap_err();
    assert!(matches!(err, OpenError::MigrationsPending { pending: 4 }), "{err}");
    drop(SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap());
    SqlStore::open_sqlite(&path, no).await.expect("nothing pending any more");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn st_5_migrations_are_idempotent_and_refuse_newer_schemas_on_postgres() {
    let url = PgServer::shared().fresh_database();
    let a = SqlStore::open(&url, OpenOptions::default()).await.unwrap();
    let b = SqlStore::open(&url, OpenOptions::default()).await.unwrap();
    assert_eq!(b.schema_version().await.unwrap(), 4, "a second replica applies nothing twice");
    a.pretend_schema_version(7).await.unwrap();
    let err = SqlStore::open(&url, OpenOptions::default()).await.unwrap_err();
    assert!(matches!(err, OpenError::SchemaTooNew { found: 7, .. }), "{err}");
}

/// Migration 2 (the finalizer's queue) on a database written by version 1: the open card of an
/// approval decided before the upgrade is still finalized, and one of a pending approval waits.
#[tokio::test]
async fn st_5_a_version_1_database_keeps_its_finalization_queue() {
    let path = temp_db();
    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    let t0 = Timestamp(1_700_000_000_000);
    let (decided, pending) = (store_contract::sample(1), store_contract::sample(2));
    for (a, bits) in [(&decided, 11), (&pending, 12)] {
        let commit = Commit {
            approval: Some(ApprovalWrite::Insert { approval: a.clone(), idempotency: None }),
            entries: vec![EntryWrite::Insert(store_contract::entry(&a.id, bits, &format!("user:{bits}")))],
            ..Commit::default()
        };
        store.commit(commit, t0).await.unwrap();
    }
    let mut denied = decided.clone();
    (denied.status, denied.version) = (Status::Denied, 2);
    let update = ApprovalWrite::Update { approval: denied, expected_version: 1 };
    store.commit(Commit { approval: Some(update), ..Commit::default() }, t0).await.unwrap();
    drop(store);

    // Back to version 1, as an older assent left it.
    back_to_version_2(&path).await;
    run_raw(
        &path,
        &[
            "DROP INDEX entries_finalizable",
            "ALTER TABLE entries DROP COLUMN finalizable",
            "DELETE FROM schema_migrations WHERE version = 2",
        ],
    )
    .await;

    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 4);
    let due = store.finalize_due(t0 + Duration::from_secs(1), 10).await.unwrap();
    assert_eq!(due.iter().map(|e| e.entry_id.clone()).collect::<Vec<_>>(), vec![EntryId::from_bits(11)]);
}

/// Migration 3 on a database written by version 2, which kept a grant's uses and revocation in
/// its body: both survive, and new uses count on top. Its bindings get the owner columns that
/// guard binding writes.
#[tokio::test]
async fn st_5_a_version_2_database_keeps_its_grants_uses_and_revocations_and_binding_owners() {
    let path = temp_db();
    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    let t0 = Timestamp(1_700_000_000_000);
    let (t1, t2) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
    let used = Grant { use_count: 5, last_used_at: Some(t1), ..store_contract::grant(1) };
    let revoked =
        Grant { revoked_at: Some(t1), revoked_by: Some("console:admin".into()), ..store_contract::grant(2) };
    for g in [&used, &revoked] {
        store
            .commit(Commit { grants: vec![GrantWrite::Insert(Box::new(g.clone()))], ..Commit::default() }, t0)
            .await
            .unwrap();
    }
    let bound = store_contract::binding(3, "/plugins/codex@1");
    let bind = BindingWrite::Bind(Box::new(bound.clone()));
    store.commit(Commit { bindings: vec![bind], ..Commit::default() }, t0).await.unwrap();
    drop(store);
    back_to_version_2(&path).await;

    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    assert_eq!(store.grant(&used.id).await.unwrap().unwrap(), used);
    assert_eq!(store.grant(&revoked.id).await.unwrap().unwrap(), revoked);
    let one_more =
        Commit { grants: vec![GrantWrite::Use { id: used.id.clone(), at: t2 }], ..Commit::default() };
    store.commit(one_more, t2).await.unwrap();
    let after = store.grant(&used.id).await.unwrap().unwrap();
    assert_eq!((after.use_count, after.last_used_at), (6, Some(t2)));
    let late =
        Commit { grants: vec![GrantWrite::Use { id: revoked.id.clone(), at: t2 }], ..Commit::default() };
    assert!(store.commit(late, t2).await.is_err(), "a grant revoked before the upgrade stays revoked");

    let other = BindingWrite::Bind(Box::new(store_contract::binding(4, "/plugins/other@1")));
    let taken = store.commit(Commit { bindings: vec![other], ..Commit::default() }, t2).await;
    assert!(matches!(taken, Err(StoreError::Conflict(CONVERSATION_BOUND))), "{taken:?}");
    let detach = BindingWrite::Remove { key: bound.key.clone(), id: bound.id.clone() };
    store.commit(Commit { bindings: vec![detach], ..Commit::default() }, t2).await.unwrap();
}

/// Undoes migrations 4 and 3, as version 2 of assent left the schema.
async fn back_to_version_2(path: &std::path::Path) {
    back_to_version_3(path).await;
    run_raw(
        path,
        &[
            "ALTER TABLE grants DROP COLUMN uses",
            "ALTER TABLE grants DROP COLUMN last_used_at",
            "ALTER TABLE grants DROP COLUMN revoked_at",
            "ALTER TABLE grants DROP COLUMN revoked_by",
            "ALTER TABLE bindings DROP COLUMN binding_id",
            "ALTER TABLE bindings DROP COLUMN plugin_root",
            "DELETE FROM schema_migrations WHERE version = 3",
        ],
    )
    .await;
}

/// Migration 4 on a database written by version 3, whose audit and event tables had a `BIGINT`
/// key beside their rowid: every entry and event is kept with its number, the numbering carries
/// on from the last, and `seq` is now the rowid.
#[tokio::test]
async fn st_5_a_version_3_database_keeps_its_audit_and_events_in_order() {
    let path = temp_db();
    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    let t0 = Timestamp(1_700_000_000_000);
    for bits in 1..=3 {
        let a = store_contract::sample(bits);
        let commit = Commit {
            approval: Some(ApprovalWrite::Insert { approval: a.clone(), idempotency: None }),
            audit: vec![AuditEntry::new(AuditType::Requested, t0).approval(&a.id)],
            events: vec![requested(&a, t0)],
            ..Commit::default()
        };
        store.commit(commit, t0).await.unwrap();
    }
    let (audit, events) =
        (store.audit(&AuditFilter::default()).await.unwrap(), store.events_since(0, 10).await.unwrap());
    drop(store);
    back_to_version_3(&path).await;
    assert!(
        !seq_is_rowid(&path, "audit").await && !seq_is_rowid(&path, "events").await,
        "as version 3 left them"
    );

    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 4);
    assert_eq!(store.audit(&AuditFilter::default()).await.unwrap(), audit);
    assert_eq!(store.events_since(0, 10).await.unwrap(), events);
    let a = store_contract::sample(4);
    let next = Commit {
        audit: vec![AuditEntry::new(AuditType::Requested, t0).approval(&a.id)],
        events: vec![requested(&a, t0)],
        ..Commit::default()
    };
    let committed = store.commit(next, t0).await.unwrap();
    assert_eq!(committed.events[0].seq, 4, "the numbering carries on");
    let mine = AuditFilter { approval_id: Some(a.id.clone()), ..AuditFilter::default() };
    assert_eq!(store.audit(&mine).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4]);
    drop(store);
    assert!(seq_is_rowid(&path, "audit").await && seq_is_rowid(&path, "events").await);
}

fn requested(a: &Approval, at: Timestamp) -> Event {
    Event {
        seq: 0,
        kind: EventType::Requested,
        at,
        approval_kind: Some(a.kind()),
        approval_id: Some(a.id.clone()),
        data: serde_json::Value::Null,
    }
}

/// Undoes migration 4, as version 3 of assent left the schema: `seq` a `BIGINT` key of its own.
async fn back_to_version_3(path: &std::path::Path) {
    run_raw(
        path,
        &[
            "CREATE TABLE audit_v3 (seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, approval_id TEXT, body TEXT NOT NULL)",
            "INSERT INTO audit_v3 SELECT seq, at, approval_id, body FROM audit",
            "DROP TABLE audit",
            "ALTER TABLE audit_v3 RENAME TO audit",
            "CREATE INDEX audit_approval ON audit (approval_id, seq)",
            "CREATE TABLE events_v3 (seq BIGINT PRIMARY KEY, at BIGINT NOT NULL, body TEXT NOT NULL)",
            "INSERT INTO events_v3 SELECT seq, at, body FROM events",
            "DROP TABLE events",
            "ALTER TABLE events_v3 RENAME TO events",
            "DELETE FROM schema_migrations WHERE version = 4",
        ],
    )
    .await;
}

/// Whether `table`'s `seq` is its rowid: SQLite then has no separate index for its key.
async fn seq_is_rowid(path: &std::path::Path, table: &str) -> bool {
    let url = format!("sqlite://{}", path.display());
    let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
    let indexes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND name LIKE 'sqlite_autoindex%'",
    )
    .bind(table)
    .fetch_one(&mut raw)
    .await
    .unwrap();
    raw.close().await.unwrap();
    indexes == 0
}

async fn run_raw(path: &std::path::Path, statements: &[&'static str]) {
    let url = format!("sqlite://{}", path.display());
    let mut raw = sqlx::AnyConnection::connect(&url).await.unwrap();
    for statement in statements {
        sqlx::query(*statement).execute(&mut raw).await.unwrap();
    }
    raw.close().await.unwrap();
}
