use std::sync::Arc;

use assent_core::store::Store;
use assent_store::{OpenError, OpenOptions, SqlStore};
use assent_testing::store_contract_tests;

use crate::temp_db;

mod contract {
    use super::*;
    store_contract_tests!(async {
        Arc::new(SqlStore::open_sqlite(&temp_db(), OpenOptions::default()).await.unwrap()) as Arc<dyn Store>
    });
}

/// The same contract with group commit off: one transaction per commit.
mod contract_one_transaction_per_commit {
    use super::*;
    store_contract_tests!(async {
        let options = OpenOptions { group_commit: Some(false), ..OpenOptions::default() };
        Arc::new(SqlStore::open_sqlite(&temp_db(), options).await.unwrap()) as Arc<dyn Store>
    });
}

#[tokio::test]
async fn st_3_a_second_server_on_the_same_file_is_refused() {
    let path = temp_db();
    let first = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    let second = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap_err();
    assert!(matches!(second, OpenError::Locked { .. }), "{second}");
    assert!(second.to_string().contains("another assent server"));
    drop(first);
    SqlStore::open_sqlite(&path, OpenOptions::default()).await.expect("the lock is released with the store");
}

#[tokio::test]
async fn st_3_the_database_uses_a_write_ahead_log() {
    let path = temp_db();
    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    store.commit(Default::default(), assent_testing::T0).await.unwrap();
    assert!(std::path::Path::new(&format!("{}-wal", path.display())).exists());
}

#[tokio::test]
async fn st_3_store_urls_are_checked() {
    let err = SqlStore::open("mysql://localhost/x", OpenOptions::default()).await.unwrap_err();
    assert!(matches!(err, OpenError::UnsupportedUrl(_)));
    assert!(err.to_string().contains("sqlite://"));
    let path = temp_db();
    let url = format!("sqlite://{}", path.display());
    SqlStore::open(&url, OpenOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_3_many_concurrent_writers_queue_behind_one_writer() {
    let store = Arc::new(SqlStore::open_sqlite(&temp_db(), OpenOptions::default()).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..500u128 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let a = assent_testing::store_contract::sample(10_000 + i);
            let commit = assent_core::store::Commit {
                approval: Some(assent_core::store::ApprovalWrite::Insert {
                    approval: a.clone(),
                    idempotency: None,
                }),
                audit: vec![assent_core::model::AuditEntry::new(
                    assent_core::model::AuditType::Requested,
                    assent_testing::T0,
                )],
                ..Default::default()
            };
            store.commit(commit, assent_testing::T0).await.unwrap();
            store.entries(&a.id).await.unwrap();
        }));
    }
    for t in tasks {
        tokio::time::timeout(std::time::Duration::from_secs(60), t)
            .await
            .expect("no writer starves")
            .unwrap();
    }
    assert_eq!(store.pending().await.unwrap().len(), 500);
}

/// Issue 15: SQLite keeps the active grants in memory. Should the table change behind the
/// store's back, a hit on a grant revoked there is still refused by the table, and the refusal
/// makes the store read the table afresh.
#[tokio::test]
async fn po_12_a_grant_revoked_behind_the_stores_back_is_refused_and_then_forgotten() {
    use assent_core::{
        model::Kind,
        store::{Commit, GRANT_NOT_ACTIVE, GrantWrite, StoreError},
    };
    use sqlx::Connection;

    let path = temp_db();
    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    let g = assent_testing::store_contract::grant(1);
    let insert = Commit { grants: vec![GrantWrite::Insert(Box::new(g.clone()))], ..Commit::default() };
    store.commit(insert, assent_testing::T0).await.unwrap();
    assert_eq!(store.active_grants(Kind::Exec).await.unwrap(), [g.clone()]);

    let mut raw = sqlx::AnyConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("UPDATE grants SET revoked = 1").execute(&mut raw).await.unwrap();
    raw.close().await.unwrap();
    assert_eq!(store.active_grants(Kind::Exec).await.unwrap(), [g.clone()], "the store has not seen it");

    let hit = Commit {
        grants: vec![GrantWrite::Use { id: g.id.clone(), at: assent_testing::T0 }],
        ..Commit::default()
    };
    let refused = store.commit(hit, assent_testing::T0).await;
    assert!(matches!(refused, Err(StoreError::Conflict(GRANT_NOT_ACTIVE))), "{refused:?}");
    assert!(store.active_grants(Kind::Exec).await.unwrap().is_empty(), "the refusal reloads the grants");
}

/// The WAL does not keep growing while commits keep coming: once a passive checkpoint has copied
/// it all, the writer thread restarts it between two batches, and the next commit writes it from
/// its start (NF-4 reads a short WAL at the next start). Writers stay busy the whole time, as under
/// load. Once they stop, the file itself is cut, handing its disk space back, even if a reader
/// held the first attempt back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_3_the_wal_restarts_while_commits_keep_coming_and_shrinks_once_they_stop() {
    use sqlx::Connection;

    let path = temp_db();
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    let store = Arc::new(SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8u128 {
        let (store, stop) = (store.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u128;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let approval = assent_testing::store_contract::sample(1_000_000 * (w + 1) + n);
                let insert = assent_core::store::ApprovalWrite::Insert { approval, idempotency: None };
                let commit = assent_core::store::Commit { approval: Some(insert), ..Default::default() };
                store.commit(commit, assent_testing::T0).await.unwrap();
                n += 1;
            }
        }));
    }
    let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    // 1,000 frames of 4 KiB is where the store starts resetting the WAL.
    let long = 1_000 * 4_096;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut restarts_seen_from = None;
    loop {
        let (now, restarts) = (size(), wal_restarts(&wal));
        assert!(std::time::Instant::now() < deadline, "the WAL never restarted twice ({now} bytes)");
        if now > long {
            let from = *restarts_seen_from.get_or_insert(restarts);
            if restarts >= from + 2 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    // A reader that begins before the last commits are copied reads through the WAL, so the
    // first quiet round's cut is held back while it lasts, and a later round must try again.
    let mut reader = sqlx::AnyConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    sqlx::query("SELECT COUNT(*) FROM approvals").fetch_one(&mut reader).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    reader.close().await.unwrap();
    while size() > long / 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL was not cut once writes stopped: {} bytes",
            size()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The WAL header's checkpoint sequence number, which SQLite counts up each time the WAL starts
/// over (0 while there is no header).
fn wal_restarts(wal: &std::path::Path) -> u32 {
    let mut header = [0; 16];
    std::fs::File::open(wal)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
        .map_or(0, |()| u32::from_be_bytes([header[12], header[13], header[14], header[15]]))
}
