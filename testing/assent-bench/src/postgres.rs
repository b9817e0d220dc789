//! `cargo xtask bench postgres`: NF-2 lifecycles on a real PostgreSQL server with its default
//! durability (each commit flushed before it returns), with the store's group commit off (the
//! default on PostgreSQL) and on. Beside them, in the same run, floors of bare commits: one
//! connection at a time, and as many connections as the store's pool.
//!
//! Built only with the bench's `postgres` feature (`cargo xtask bench postgres` turns it on), so
//! the other benches measure the `assent` binary as it ships.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use assent_store::{OpenOptions, SqlStore};
use assent_testing::postgres::PgServer;
use sqlx::{Connection, Executor, PgConnection};

pub(crate) async fn run(quick: bool) {
    let lifecycles = if quick { 500 } else { 5_000 };
    let server = PgServer::durable().unwrap_or_else(|e| panic!("{e}"));
    println!(
        "assent PostgreSQL benchmarks (release build; PostgreSQL on 127.0.0.1:{} with fsync and synchronous_commit on)",
        server.port()
    );
    let pool = OpenOptions::default().max_connections;
    let mut per_lifecycle = 0.0;
    let mut rates = Vec::new();
    for group in [false, true] {
        let options = OpenOptions { group_commit: Some(group), ..OpenOptions::default() };
        let store = SqlStore::open(&server.fresh_database(), options).await.unwrap_or_else(|e| panic!("{e}"));
        let (elapsed, commits) = crate::store::nf2(Arc::new(store), lifecycles).await;
        per_lifecycle = commits as f64 / lifecycles as f64;
        let rate = lifecycles as f64 / elapsed.as_secs_f64();
        rates.push(rate);
        println!(
            "NF-2 lifecycles on PostgreSQL, group commit {}: {lifecycles} in {:.2} s = {rate:.0}/s ({commits} commits, {per_lifecycle:.1} per lifecycle)",
            if group { "on" } else { "off (the default)" },
            elapsed.as_secs_f64(),
        );
    }
    println!("  group commit on / off: {:.2}x", rates[1] / rates[0]);
    let url = server.fresh_database();
    for connections in [1, pool as usize] {
        let commits = (per_lifecycle * lifecycles as f64) as usize;
        let rate = bare_commits(&url, commits, connections).await;
        println!(
            "floor: bare PostgreSQL commits (one 2 KiB row each) on {connections} connection(s): {rate:.0}/s = {:.0} lifecycles/s at {per_lifecycle:.1} commits each",
            rate / per_lifecycle
        );
    }
}

/// `n` bare transactions, each inserting one 2 KiB row, spread over `connections` connections
/// working at once; commits per second.
async fn bare_commits(url: &str, n: usize, connections: usize) -> f64 {
    let mut setup = PgConnection::connect(url).await.unwrap_or_else(|e| panic!("{e}"));
    setup
        .execute("DROP TABLE IF EXISTS t; CREATE TABLE t (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (url, next) = (url.to_owned(), next.clone());
            tokio::spawn(async move {
                let mut conn = PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("{e}"));
                let body = "x".repeat(2048);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let mut tx = conn.begin().await.unwrap_or_else(|e| panic!("{e}"));
                    sqlx::query("INSERT INTO t (id, body) VALUES ($1, $2)")
                        .bind(i64::try_from(i).unwrap_or_default())
                        .bind(&body)
                        .execute(&mut *tx)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap_or_else(|e| panic!("{e}"));
    }
    n as f64 / started.elapsed().as_secs_f64()
}
