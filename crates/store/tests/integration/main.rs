//! Integration tests of assent-store: the store contract on SQLite and on a real PostgreSQL
//! server, migrations (ST-5), SQLite settings (ST-3) and the engine on a durable store.

// Tests fail loudly on purpose, and `&[fake.clone()]` reads better than `slice::from_ref`.
#![allow(clippy::unwrap_used, clippy::cloned_ref_to_slice_refs)]

mod engine;
mod migrations;
// The PostgreSQL tests need the `postgres` feature (`cargo xtask ci` runs with all features).
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
mod replicas;
mod sqlite;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

/// A fresh SQLite path under cargo's per-target temporary directory.
pub(crate) fn temp_db() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir =
        assent_testing::process_scratch(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), "assent-store");
    let path = dir.join(format!("t{}.db", N.fetch_add(1, Ordering::SeqCst)));
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}
