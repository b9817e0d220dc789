//! Issue 17: a server a test started stops, and its scratch directory goes, within 10 s of its
//! test process dying, SIGKILL included (as root, PostgreSQL runs under `runuser`).
//!
//! Each case runs its other half, an ignored test that starts the server and waits, in a child
//! process of this test binary, kills that child with SIGKILL, and watches what is left.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use assent_testing::{postgres::PgServer, synapse::SynapseServer, watchdog::scratch_dir_of};

const CHILD: &str = "ASSENT_WATCHDOG_CHILD";

/// The child half: starts `peer` and sleeps until it is killed.
fn serve_until_killed(peer: &str) {
    if std::env::var_os(CHILD).is_none() {
        return; // Only as the child of a case below.
    }
    match peer {
        "pg" => drop(PgServer::shared()),
        _ => drop(SynapseServer::shared()),
    }
    println!("READY");
    std::thread::sleep(Duration::from_secs(300));
}

#[test]
#[ignore = "the child half of `postgres_stops_when_its_test_process_is_killed`"]
fn child_serving_postgres() {
    serve_until_killed("pg");
}

#[test]
#[ignore = "the child half of `synapse_stops_when_its_test_process_is_killed`"]
fn child_serving_synapse() {
    serve_until_killed("synapse");
}

/// Processes whose command line mentions `dir`.
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

fn stops_when_killed(peer: &str, child_test: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child_test, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = scratch_dir_of(peer, child.id());
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.map_while(Result::ok).any(|l| l.contains("READY"));
    assert!(ready, "the child never started {peer}");
    assert!(!processes_using(&dir).is_empty(), "{peer} runs in {}", dir.display());
    child.kill().unwrap(); // SIGKILL: no destructor, no exit handler runs.
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_using(&dir);
        if left.is_empty() && !dir.exists() {
            return;
        }
        assert!(Instant::now() < deadline, "10 s after SIGKILL, {} still exists: {left:?}", dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postgres_stops_when_its_test_process_is_killed() {
    stops_when_killed("pg", "child_serving_postgres");
}

#[test]
fn synapse_stops_when_its_test_process_is_killed() {
    stops_when_killed("synapse", "child_serving_synapse");
}
