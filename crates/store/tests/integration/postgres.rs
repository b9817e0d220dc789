use std::sync::Arc;

use assent_core::store::Store;
use assent_store::{Backend, OpenOptions, SqlStore};
use assent_testing::{postgres::PgServer, store_contract_tests};

mod contract {
    use super::*;
    store_contract_tests!(async {
        let url = PgServer::shared().fresh_database();
        Arc::new(SqlStore::open(&url, OpenOptions::default()).await.unwrap()) as Arc<dyn Store>
    });
}

/// The same contract with group commit on (off by default on PostgreSQL).
mod contract_grouped {
    use super::*;
    store_contract_tests!(async {
        let url = PgServer::shared().fresh_database();
        let options = OpenOptions { group_commit: Some(true), ..OpenOptions::default() };
        Arc::new(SqlStore::open(&url, options).await.unwrap()) as Arc<dyn Store>
    });
}

#[tokio::test]
async fn st_1_postgres_is_a_real_server() {
    let url = PgServer::shared().fresh_database();
    let store = SqlStore::open(&url, OpenOptions::default()).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    assert!(url.starts_with("postgres://postgres@127.0.0.1:"));
}
