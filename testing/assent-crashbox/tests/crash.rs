//! NF-7: SIGKILL the engine at random points and check that nothing acknowledged was lost.
//!
//! Each round starts `assent-crashbox` on one SQLite file, feeds it random creates and decisions,
//! kills it with SIGKILL after a random delay, then opens the file and checks: every approval
//! whose creation was reported exists; every acknowledged decision is recorded as acknowledged;
//! no approval has more than one terminal transition. A last run drains: every terminal
//! approval's cards get finalized and its callback arrives at least once.
//!
//! Rounds: `ASSENT_CRASH_KILLS` (default 200; `cargo xtask soak` runs 1,000).

#![allow(clippy::unwrap_used)] // A test: failures must be loud.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use assent_core::{
    id::ApprovalId,
    model::{AuditType, Status},
    store::{ApprovalFilter, AuditFilter, Store},
};
use assent_store::{OpenOptions, SqlStore};

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Box_ {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

fn start(db: &Path, log: &Path) -> Box_ {
    let mut child = Command::new(env!("CARGO_BIN_EXE_assent-crashbox"))
        .arg(db)
        .arg(log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let b = Box_ { child, stdin, lines };
    let ready = b.lines.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(ready, "ready");
    b
}

#[derive(Default)]
struct Ledger {
    created: Vec<ApprovalId>,
    /// Acknowledged decisions: id → status the client was told.
    acked: HashMap<ApprovalId, Status>,
}

impl Ledger {
    fn read(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["created", id] => self.created.push(ApprovalId::parse(id).unwrap()),
            ["acked", id, status] => {
                let status = match *status {
                    "approved" => Status::Approved,
                    "denied" => Status::Denied,
                    "pending" => Status::Pending,
                    other => panic!("unexpected acked status {other}"),
                };
                let id = ApprovalId::parse(id).unwrap();
                // A pending ack is a non-final vote; only terminal acks are kept.
                if status != Status::Pending {
                    self.acked.insert(id, status);
                }
            }
            _ => {}
        }
    }
}

async fn verify(db: &Path, ledger: &Ledger) -> usize {
    let store = SqlStore::open_sqlite(db, OpenOptions::default()).await.unwrap();
    for id in &ledger.created {
        assert!(store.approval(id).await.unwrap().is_some(), "created {id} was reported but is gone");
    }
    for (id, status) in &ledger.acked {
        let a = store.approval(id).await.unwrap().unwrap();
        assert_eq!(a.status, *status, "acknowledged decision on {id} was lost");
    }
    let all = store.approvals(&ApprovalFilter { limit: 1_000_000, ..Default::default() }).await.unwrap();
    let audit = store.audit(&AuditFilter { limit: 10_000_000, ..Default::default() }).await.unwrap();
    let mut terminal: HashMap<ApprovalId, usize> = HashMap::new();
    for e in &audit {
        if matches!(
            e.kind,
            AuditType::Decided | AuditType::AutoApproved | AuditType::Expired | AuditType::Cancelled
        ) {
            *terminal.entry(e.approval_id.clone().unwrap()).or_default() += 1;
        }
    }
    for a in &all {
        let n = terminal.get(&a.id).copied().unwrap_or(0);
        match a.status {
            Status::Pending => assert_eq!(n, 0, "{} is pending but has a terminal audit entry", a.id),
            _ => assert_eq!(n, 1, "{} has {n} terminal transitions", a.id),
        }
    }
    all.len()
}

fn send(b: &mut Box_, line: &str) {
    // The child may already be dead (killed); that is the point of the test.
    let _ = writeln!(b.stdin, "{line}");
    let _ = b.stdin.flush();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nf_7_kill_9_at_random_points_loses_nothing_acknowledged() {
    let kills: usize = std::env::var("ASSENT_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("nf_7 seed {seed}, {kills} kills");
    let mut rng = Rng(seed);
    let dir = assent_testing::process_scratch(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), "crash");
    let (db, log) = (dir.join("assent.db"), dir.join("callbacks.log"));
    let mut ledger = Ledger::default();
    for round in 0..kills {
        let mut b = start(&db, &log);
        let deadline = Instant::now() + Duration::from_millis(5 + rng.below(60));
        while Instant::now() < deadline {
            if ledger.created.is_empty() || rng.below(3) == 0 {
                // Distinct commands, so an allow-always grant does not approve the rest.
                send(&mut b, &format!("create {}", rng.next()));
            } else {
                let id = &ledger.created[rng.below(ledger.created.len() as u64) as usize];
                let d = ["once", "always", "deny"][rng.below(3) as usize];
                send(&mut b, &format!("decide {id} {d}"));
            }
            while let Ok(line) = b.lines.try_recv() {
                ledger.read(&line);
            }
            thread::sleep(Duration::from_millis(rng.below(3)));
        }
        b.child.kill().unwrap(); // SIGKILL
        b.child.wait().unwrap();
        while let Ok(line) = b.lines.recv_timeout(Duration::from_millis(20)) {
            ledger.read(&line);
        }
        let total = verify(&db, &ledger).await;
        if round % 50 == 0 {
            println!("round {round}: {total} approvals, {} acknowledged decisions", ledger.acked.len());
        }
    }
    // Drain: cards of terminal approvals get finalized and callbacks arrive at least once.
    let mut b = start(&db, &log);
    send(&mut b, "drain");
    let drained = b.lines.recv_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(drained, "drained");
    drop(b.stdin);
    b.child.wait().unwrap();
    let store = SqlStore::open_sqlite(&db, OpenOptions::default()).await.unwrap();
    let delivered = std::fs::read_to_string(&log).unwrap_or_default();
    let all = store.approvals(&ApprovalFilter { limit: 1_000_000, ..Default::default() }).await.unwrap();
    let terminal: Vec<_> = all.iter().filter(|a| a.status != Status::Pending).collect();
    for a in &terminal {
        assert!(delivered.contains(&format!("{}:on_resolved", a.id)), "callback of {} never arrived", a.id);
        for e in store.entries(&a.id).await.unwrap() {
            assert!(!e.needs_finalizing(), "card {} of {} was never finalized", e.entry_id, a.id);
        }
    }
    assert!(!ledger.acked.is_empty() && !terminal.is_empty(), "the run exercised decisions");
    println!(
        "{} approvals, {} terminal, {} acknowledged decisions survived {kills} kills",
        all.len(),
        terminal.len(),
        ledger.acked.len()
    );
}
