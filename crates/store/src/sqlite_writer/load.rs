//! What the writer thread has been doing, logged at debug level about once a second while it
//! works: how many commits each transaction carried (what group commit gains), and how long the
//! longest one held the write lock (what a commit queued behind it waited). Without these, a
//! sustained load's latency could only be inferred (issue 15, eleventh pass).

use std::time::{Duration, Instant};

/// How often the figures are logged while the writer is busy. An idle writer logs nothing.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The writer's transactions since the last report.
pub(super) struct Load {
    since: Instant,
    transactions: u64,
    commits: u64,
    largest: usize,
    /// The longest transaction of commits.
    longest: Duration,
    /// The longest other work: a claim, a purge or a reset of the WAL.
    longest_other: Duration,
    busy: Duration,
}

impl Load {
    pub(super) fn new() -> Self {
        Self {
            since: Instant::now(),
            transactions: 0,
            commits: 0,
            largest: 0,
            longest: Duration::ZERO,
            longest_other: Duration::ZERO,
            busy: Duration::ZERO,
        }
    }

    /// Counts a transaction of `commits` commits that began at `began`. Reports when due.
    pub(super) fn batch(&mut self, commits: usize, began: Instant) {
        let took = began.elapsed();
        self.transactions += 1;
        self.commits += commits as u64;
        self.largest = self.largest.max(commits);
        self.longest = self.longest.max(took);
        self.add(took);
    }

    /// Runs `work`, other work under the write lock (a claim, a purge, a reset of the WAL), and
    /// counts its time. Reports when due.
    pub(super) fn other<T>(&mut self, work: impl FnOnce() -> T) -> T {
        let began = Instant::now();
        let done = work();
        let took = began.elapsed();
        self.longest_other = self.longest_other.max(took);
        self.add(took);
        done
    }

    fn add(&mut self, took: Duration) {
        self.busy += took;
        let window = self.since.elapsed();
        if window >= REPORT_EVERY {
            // Claims and purges come on a timer even when nothing is written: no line for them.
            if self.transactions > 0 {
                self.report(window);
            }
            *self = Self::new();
        }
    }

    fn report(&self, window: Duration) {
        #[allow(clippy::cast_precision_loss, reason = "a figure for a log line")]
        let (mean, busy) = (
            self.commits as f64 / self.transactions.max(1) as f64,
            self.busy.as_secs_f64() / window.as_secs_f64(),
        );
        tracing::debug!(
            transactions = self.transactions,
            commits = self.commits,
            commits_per_transaction = format_args!("{mean:.1}"),
            largest = self.largest,
            longest_ms = format_args!("{:.1}", self.longest.as_secs_f64() * 1e3),
            longest_other_ms = format_args!("{:.1}", self.longest_other.as_secs_f64() * 1e3),
            busy = format_args!("{:.0}%", busy * 100.0),
            window_ms = window.as_millis(),
            "SQLite writer"
        );
    }
}
