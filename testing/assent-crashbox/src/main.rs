//! The NF-7 crash box: the engine with a fake channel on a SQLite file, driven line by line over
//! stdin, so a test can SIGKILL it at any point and check what survived.
//!
//! ```text
//! assent-crashbox <sqlite file> <callback log>
//!   create <n>          → "created <id>" once `deploy --build <n>` is durable
//!   decide <id> <d>     → "acked <id> <status>" once the decision is durable, or "rejected <id>"
//!   drain               → "drained" once every terminal approval's cards are final and its
//!                         callback was delivered
//! ```
//! Callbacks are appended to the log and fsynced before they count as delivered.

use std::{io::Write, path::PathBuf, sync::Arc, time::Duration};

use assent_core::{
    capability::IntoDynCapability,
    id::ApprovalId,
    model::{Actor, Channel, Kind, Status},
    store::{ApprovalFilter, CallbackJob, CallbackState, Store},
};
use assent_engine::{ApprovalRef, Authority, CallbackSink, Engine, EngineHandle, Interaction};
use assent_store::{OpenOptions, SqlStore};
use assent_testing::{FakeChannel, exec_request, test_config};
use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Appends each delivered callback's key to a file and syncs it before reporting success.
struct FileSink(PathBuf);

#[async_trait]
impl CallbackSink for FileSink {
    async fn send(&self, job: &CallbackJob) -> Result<(), String> {
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.0).map_err(|e| e.to_string())?;
        // One write per line; a kill mid-write can still leave a line without its newline, which
        // the test tolerates by searching for keys rather than whole lines.
        f.write_all(format!("{}\n", job.key).as_bytes()).map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The parent reads these lines; if it is gone there is nobody to tell.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn decide(h: &EngineHandle, id: &str, decision: &str) {
    let (Ok(id), Some(decision)) = (ApprovalId::parse(id), assent_core::command::parse_decision(decision))
    else {
        say(&format!("rejected {id} bad-command"));
        return;
    };
    let ix = Interaction {
        approval: ApprovalRef::Id(id.clone()),
        kind: Some(Kind::Exec),
        decision,
        actor: Actor::console("kim"),
        authority: Authority::Approver,
        reason: None,
        grant_scope: None,
    };
    match h.precheck(&ix) {
        Err(r) => say(&format!("rejected {id} {r}")),
        Ok(acc) => match h.resolve(acc).await {
            Ok(res) => say(&format!("acked {id} {}", res.approval.status.as_str())),
            Err(e) => say(&format!("rejected {id} {e}")),
        },
    }
}

/// Waits until every terminal approval has final cards and a delivered callback.
async fn drain(store: &Arc<dyn Store>) {
    loop {
        let all = store
            .approvals(&ApprovalFilter { limit: 1_000_000, ..Default::default() })
            .await
            .unwrap_or_default();
        let mut settled = true;
        for a in all.iter().filter(|a| a.status != Status::Pending) {
            let entries = store.entries(&a.id).await.unwrap_or_default();
            let job = store.callback(&format!("{}:on_resolved", a.id)).await.ok().flatten();
            if entries.iter().any(|e| e.needs_finalizing())
                || job.is_none_or(|j| j.state != CallbackState::Done)
            {
                settled = false;
                break;
            }
        }
        if settled {
            say("drained");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, log] = args.as_slice() else {
        eprintln!("usage: assent-crashbox <sqlite file> <callback log>");
        std::process::exit(2);
    };
    let store: Arc<dyn Store> = match SqlStore::open_sqlite(db.as_ref(), OpenOptions::default()).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("assent-crashbox: {e}");
            std::process::exit(1);
        }
    };
    let mut config = test_config();
    config.route_wait = Duration::from_secs(30);
    let engine = match Engine::builder(store.clone(), config)
        .webhook_sink(Arc::new(FileSink(log.into())))
        .start()
        .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("assent-crashbox: {e}");
            std::process::exit(1);
        }
    };
    let h = engine.handle();
    let fake = FakeChannel::new(Channel::Telegram, "main", &["42"]).lenient();
    if let Err(e) = h.attach(fake.erase()).await {
        eprintln!("assent-crashbox: {e}");
        std::process::exit(1);
    }
    say("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["create", build] => {
                let mut req = exec_request(&["deploy", "--build", build]);
                req.callback = Some("https://hooks.example.org/assent".to_owned());
                match h.create(req).await {
                    Ok(a) => say(&format!("created {}", a.id)),
                    Err(e) => say(&format!("failed {e}")),
                }
            }
            ["decide", id, d] => decide(&h, id, d).await,
            ["drain"] => drain(&store).await,
            _ => say("unknown command"),
        }
    }
    engine.shutdown(Duration::from_secs(2)).await;
}
