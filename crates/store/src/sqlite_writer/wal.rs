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
/// long, the writer thread is asked to truncate it: the WAL stays short, and so does the scan of
/// it when the database is opened again (NF-4).
///
/// The writer must first copy whatever was committed after the last pass began, and every
/// commit waits while it does. A pass over a long WAL takes a while, so the frames committed
/// meanwhile are many: the writer used to spend 40–170 ms copying them, twice a second, which
/// was the grant hit's p90 under sustained load (issue 15, eleventh pass). So before asking,
/// further passes catch up, each copying only what the one before it left, until a pass finds
/// little new.
pub(crate) async fn checkpoints(readers: AnyPool, writer: WalTruncator) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let Some(mut pass) = passive(&readers).await else { continue };
        if pass.log <= WAL_TRUNCATE_FRAMES {
            continue;
        }
        for _ in 0..CATCH_UP_PASSES {
            if !pass.complete() {
                break;
            }
            let Some(next) = passive(&readers).await else { break };
            let added = next.log.saturating_sub(pass.log);
            pass = next;
            if added <= CAUGHT_UP_FRAMES {
                break;
            }
        }
        // A pass left behind by an old snapshot waits for the next round; one that never caught up
        // (commits faster than copies) still asks, so the WAL stays bounded.
        if pass.complete() {
            // Frames per round over commits per round is the WAL's cost of a commit.
            tracing::debug!(frames = pass.log, "asking the writer to truncate the WAL");
            writer.request();
        }
    }
}

/// A truncation is asked for once a catch-up pass found at most this many new frames (1 MiB):
/// what the writer then copies itself takes it a few milliseconds.
const CAUGHT_UP_FRAMES: i64 = 256;

/// Most catch-up passes before the truncation is asked for anyway.
const CATCH_UP_PASSES: usize = 8;

/// What one passive checkpoint saw: frames in the WAL when it began, and frames copied.
struct Pass {
    log: i64,
    copied: i64,
}

impl Pass {
    /// Everything the pass found was copied (no reader held it back).
    fn complete(&self) -> bool {
        self.copied == self.log
    }
}

/// One passive checkpoint from a reader connection; `None` (logged) when it failed.
async fn passive(readers: &AnyPool) -> Option<Pass> {
    match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(readers).await {
        Ok(row) => Some(Pass {
            log: row.try_get::<i64, _>(1).unwrap_or(0),
            copied: row.try_get::<i64, _>(2).unwrap_or(0),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
            None
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
