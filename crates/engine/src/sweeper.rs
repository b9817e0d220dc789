//! The expiry sweeper (LC-8): expires due approvals by compare-and-set through the store's
//! deadline index. It runs to completion at start-up, before decisions are accepted.

use crate::{EngineError, EngineHandle};

const BATCH: usize = 512;

pub(crate) async fn run(h: EngineHandle) {
    let period = h
        .config()
        .sweep_interval
        .clamp(std::time::Duration::from_millis(250), std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            () = h.inner.shutdown.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        if let Err(e) = h.sweep_once().await {
            tracing::error!(error = %e, "expiry sweep failed");
        }
    }
}

impl EngineHandle {
    /// Expires every due approval; returns how many it expired.
    pub async fn sweep_once(&self) -> Result<usize, EngineError> {
        let mut total = 0;
        // Bounded so a backend that keeps returning rows it cannot expire cannot spin forever.
        for _ in 0..1024 {
            let due = self.inner.store.due_for_expiry(self.now(), BATCH).await?;
            if due.is_empty() {
                return Ok(total);
            }
            let n = due.len();
            for a in due {
                self.expire_now(&a).await;
            }
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
        Ok(total)
    }
}

/// ST-6: once an hour (and shortly after start), purge what retention no longer keeps.
pub(crate) async fn retain(h: EngineHandle) {
    let mut wait = std::time::Duration::from_secs(60);
    loop {
        tokio::select! {
            () = h.inner.shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = std::time::Duration::from_secs(3600);
        let before = h.now() - h.config().retention;
        match h.inner.store.purge(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(approvals = n, "retention purged old approvals"),
            Err(e) => tracing::warn!(error = %e, "retention purge failed; will retry"),
        }
    }
}
