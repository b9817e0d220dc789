//! The WAL's upkeep beside the writer thread: passive checkpoints from a reader connection, and
//! truncation on the writer thread once everything is copied (NF-4, NF-6).

use std::time::Duration;

use rusqlite::Connection;
use sqlx::{AnyPool, Row as _};
use tokio::sync::mpsc;

use super::{BUSY_TIMEOUT, Job};

/// How often the WAL is copied back into the database file, off the commit path (NF-6).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A WAL longer than this many frames (4 KiB pages) is truncated once it is fully copied back.
const WAL_TRUNCATE_FRAMES: i64 = 1000;

/// Copies committed WAL frames into the database file in the background. A passive checkpoint
/// waits for nobody, so commits never pay for it. Under a steady stream of commits the WAL file
/// would keep its largest size, so once a passive pass has copied everything and the WAL is
/// long, the writer thread is asked to truncate it (it only has to wait for readers, not copy or
/// sync pages): the WAL stays short, and so does the scan of it when the database is opened
/// again (NF-4).
pub(crate) async fn checkpoints(readers: AnyPool, writer: WalTruncator) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let passive = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&readers).await;
        let (log, copied) = match passive {
            Ok(row) => (row.try_get::<i64, _>(1).unwrap_or(0), row.try_get::<i64, _>(2).unwrap_or(0)),
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                continue;
            }
        };
        if log > WAL_TRUNCATE_FRAMES && copied == log {
            writer.request();
        }
    }
}

/// Asks the writer thread to reset the WAL ([`checkpoints`]).
#[derive(Debug, Clone)]
pub(crate) struct WalTruncator(pub(super) mpsc::WeakUnboundedSender<Job>);

impl WalTruncator {
    /// Queues a truncation behind the commits already queued; does nothing once the store is gone.
    pub(crate) fn request(&self) {
        if let Some(queue) = self.0.upgrade() {
            let _ = queue.send(Job::TruncateWal);
        }
    }
}

/// Resets the WAL to empty, asked for once a passive checkpoint has copied all of it. A
/// truncating checkpoint needs the write lock, so it runs here, between batches: run from another
/// connection it waited for this thread's lock in SQLite's busy handler, which polls in steps of
/// up to 100 ms, and under steady writes it got its turn only once they stopped (issue 15, eighth
/// pass). It must not hold up the commits queued behind it either, so it does not wait for
/// readers still on an older snapshot: the next pass tries again.
pub(super) fn truncate_wal(conn: &Connection) {
    let truncated = conn
        .busy_timeout(Duration::ZERO)
        .and_then(|()| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0)));
    if let Err(e) = truncated.and(conn.busy_timeout(BUSY_TIMEOUT)) {
        tracing::warn!(error = %e, "WAL truncation failed; will retry");
    }
}
