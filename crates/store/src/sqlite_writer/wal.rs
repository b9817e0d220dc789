//! The WAL's upkeep beside the writer thread: passive checkpoints from a reader connection, and
//! resets of the WAL on the writer thread once everything is copied (NF-4, NF-6).

use std::time::{Duration, Instant};

use rusqlite::Connection;
use sqlx::{AnyPool, Row as _};
use tokio::sync::{mpsc, oneshot};

use super::{BUSY_TIMEOUT, Job};

/// How often the WAL is copied back into the database file, off the commit path (NF-6).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A WAL longer than this many frames (4 KiB pages) is reset once it is fully copied back.
const WAL_LONG_FRAMES: i64 = 1000;

/// Copies committed WAL frames into the database file in the background. A passive checkpoint
/// waits for nobody, so commits never pay for it. But SQLite starts the WAL over only when a
/// commit finds every frame copied, which a steady stream of commits never lets happen, so once
/// a passive pass has copied a long WAL the writer thread is asked to reset it: the WAL stays
/// short, and so does the scan of it when the database is opened again (NF-4).
///
/// The writer must first copy whatever was committed after the last pass began, and every
/// commit waits while it does. A pass over a long WAL takes a while, so the frames committed
/// meanwhile are many: the writer used to spend 40–170 ms copying them, twice a second, which
/// was the grant hit's p90 under sustained load (issue 15, eleventh pass). So before asking,
/// further passes catch up, each copying only what the one before it left, until a pass finds
/// little new.
///
/// Under load the reset is a restart: the next commit writes the WAL from its start, over the
/// old frames, and the file keeps its size. Cutting the file to nothing each time cost the
/// writer the cut and every later commit the regrowth (issue 15, twelfth pass). The first quiet
/// round after that cuts it once, handing the disk space back.
pub(crate) async fn checkpoints(readers: AnyPool, writer: WalResetter) {
    // Whether a restart has left the file at its largest since it was last cut. (SQLite removes
    // the WAL when the store closes; one a crash left with a long log is restarted, then cut.)
    let mut grown = false;
    // The WAL's length at the round before. A restart takes effect only at the next commit, so
    // a WAL restarted just as the writes stopped keeps its length: a round that finds it
    // unchanged is quiet too, however long it is, or it would be restarted again every round
    // and never cut.
    let mut last_log = -1;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let Some(mut pass) = passive(&readers).await else { continue };
        let quiet = pass.log == last_log;
        last_log = pass.log;
        if pass.log <= WAL_LONG_FRAMES || quiet {
            if grown && pass.complete() {
                // A reader still on the WAL holds the cut back: the next quiet round tries again.
                grown = !writer.reset(Reset::Truncate).await;
            }
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
        last_log = pass.log;
        // A pass left behind by an old snapshot waits for the next round; one that never caught up
        // (commits faster than copies) still asks, so the WAL stays bounded.
        if pass.complete() {
            // Frames per round over commits per round is the WAL's cost of a commit.
            tracing::debug!(frames = pass.log, "asking the writer to restart the WAL");
            writer.reset(Reset::Restart).await;
            grown = true;
        }
    }
}

/// A reset is asked for once a catch-up pass found at most this many new frames (1 MiB):
/// what the writer then copies itself takes it a few milliseconds.
const CAUGHT_UP_FRAMES: i64 = 256;

/// Most catch-up passes before the reset is asked for anyway.
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

/// What the writer thread does with a WAL whose frames are all copied ([`checkpoints`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reset {
    /// The next commit writes the WAL from its start, over the old frames.
    Restart,
    /// The WAL file is cut to nothing.
    Truncate,
}

impl Reset {
    fn pragma(self) -> &'static str {
        match self {
            Self::Restart => "PRAGMA wal_checkpoint(RESTART)",
            Self::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        }
    }
}

/// Asks the writer thread to reset the WAL ([`checkpoints`]).
#[derive(Debug, Clone)]
pub(crate) struct WalResetter(pub(super) mpsc::WeakUnboundedSender<Job>);

impl WalResetter {
    /// Resets the WAL after the commits already queued. False when a reader held the reset back,
    /// or the store is gone.
    async fn reset(&self, reset: Reset) -> bool {
        let Some(queue) = self.0.upgrade() else { return false };
        let (answer, done) = oneshot::channel();
        // The queue is let go before waiting, so a store dropped meanwhile can still stop its thread.
        let sent = queue.send(Job::ResetWal { reset, answer }).is_ok();
        drop(queue);
        sent && done.await.unwrap_or(false)
    }
}

/// Copies what is left of the WAL and resets it, as asked once a passive checkpoint has copied
/// all of it. Both kinds of reset need the write lock, so they run here, between batches: run from
/// another connection they waited for this thread's lock in SQLite's busy handler, which polls in
/// steps of up to 100 ms, and under steady writes got their turn only once they stopped (issue 15,
/// eighth pass). A reset must not hold up the commits queued behind it either, so it does not wait
/// for readers still on the WAL: the next round tries again. True when the WAL was reset.
pub(super) fn reset_wal(conn: &Connection, reset: Reset) -> bool {
    let began = Instant::now();
    let done = conn.busy_timeout(Duration::ZERO).and_then(|()| {
        conn.query_row(reset.pragma(), [], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
    });
    match done.and_then(|found| conn.busy_timeout(BUSY_TIMEOUT).map(|()| found)) {
        Ok((busy, frames)) => {
            let held_back = busy != 0;
            tracing::debug!(?reset, frames, held_back, ms = began.elapsed().as_millis(), "WAL reset");
            !held_back
        }
        Err(e) => {
            tracing::warn!(error = %e, ?reset, "WAL reset failed; will retry");
            false
        }
    }
}
