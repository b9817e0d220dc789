//! Several replicas on one PostgreSQL database (ST-7, ST-8): a `LISTEN assent_events` session
//! feeds other replicas' commits to the engine, and each account's platform connection is held
//! under a session-level advisory lock, on a connection kept outside the pools.

use std::time::Duration;

use assent_core::{
    model::AccountKey,
    store::{CommitFeed, Lease, StoreError},
};
use async_trait::async_trait;
use sqlx::{AnyConnection, Connection};

/// How often a lease's session is checked: a dead session stops the handler within 1 s (ST-7).
const LEASE_CHECK: Duration = Duration::from_millis(500);

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The advisory-lock key of an account: stable across replicas and versions.
pub(crate) fn lease_key(account: &AccountKey) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("assent-lease:{account}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

#[cfg(feature = "postgres")]
pub(crate) async fn commit_feed(url: &str) -> Result<CommitFeed, StoreError> {
    use futures::StreamExt;
    let mut listener = sqlx::postgres::PgListener::connect(url).await.map_err(unavailable)?;
    listener.listen("assent_events").await.map_err(unavailable)?;
    let feed = listener.into_stream().filter_map(|n| async move { n.ok()?.payload().parse::<u64>().ok() });
    Ok(Box::pin(feed))
}

#[cfg(not(feature = "postgres"))]
pub(crate) async fn commit_feed(url: &str) -> Result<CommitFeed, StoreError> {
    Err(StoreError::Unavailable(format!("{url}: built without the `postgres` feature")))
}

/// A held advisory lock and the session that holds it.
struct PgLease {
    session: tokio::sync::Mutex<AnyConnection>,
}

#[async_trait]
impl Lease for PgLease {
    async fn lost(&self) {
        loop {
            tokio::time::sleep(LEASE_CHECK).await;
            let mut session = self.session.lock().await;
            if session.ping().await.is_err() {
                return;
            }
        }
    }
}

pub(crate) async fn try_lease(url: &str, account: &AccountKey) -> Result<Option<Box<dyn Lease>>, StoreError> {
    let mut session = AnyConnection::connect(url).await.map_err(unavailable)?;
    let row = sqlx::query("SELECT pg_try_advisory_lock($1) AS held")
        .bind(lease_key(account))
        .fetch_one(&mut session)
        .await
        .map_err(unavailable)?;
    let held: bool = sqlx::Row::try_get(&row, "held").map_err(unavailable)?;
    if held {
        Ok(Some(Box::new(PgLease { session: tokio::sync::Mutex::new(session) })))
    } else {
        let _ = session.close().await;
        Ok(None)
    }
}
