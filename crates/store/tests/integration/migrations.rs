use assent_store::{OpenError, OpenOptions, SqlStore};
#[cfg(feature = "postgres")]
use assent_testing::postgres::PgServer;

use crate::temp_db;

#[tokio::test]
async fn st_5_a_newer_schema_is_refused_on_sqlite() {
    let path = temp_db();
    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 1);
    store.pretend_schema_version(99).await.unwrap();
    drop(store);
    let err = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap_err();
    assert!(matches!(err, OpenError::SchemaTooNew { found: 99, supported: 1 }), "{err}");
    assert!(err.to_string().starts_with("schema_too_new"));
}

#[tokio::test]
async fn st_5_no_migrate_fails_while_migrations_are_pending() {
    let path = temp_db();
    let no = OpenOptions { migrate: false, ..OpenOptions::default() };
    let err = SqlStore::open_sqlite(&path, no).await.unwrap_err();
    assert!(matches!(err, OpenError::MigrationsPending { pending: 1 }), "{err}");
    drop(SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap());
    SqlStore::open_sqlite(&path, no).await.expect("nothing pending any more");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn st_5_migrations_are_idempotent_and_refuse_newer_schemas_on_postgres() {
    let url = PgServer::shared().fresh_database();
    let a = SqlStore::open(&url, OpenOptions::default()).await.unwrap();
    let b = SqlStore::open(&url, OpenOptions::default()).await.unwrap();
    assert_eq!(b.schema_version().await.unwrap(), 1, "a second replica applies nothing twice");
    a.pretend_schema_version(7).await.unwrap();
    let err = SqlStore::open(&url, OpenOptions::default()).await.unwrap_err();
    assert!(matches!(err, OpenError::SchemaTooNew { found: 7, .. }), "{err}");
}
