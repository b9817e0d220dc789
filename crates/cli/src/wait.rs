//! Waiting for a decision: long polls in a background thread, a one-line progress display on a
//! terminal (CLI-3), reconnection when the server restarts, and Ctrl-C that cancels first.

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    Exit, Failure,
    client::{ApiFailure, Client},
};

/// One long poll; the server answers early once the approval is terminal.
const POLL_SECS: u64 = 25;
/// The progress line is redrawn at most 4 times a second (CLI-3).
const TICK: Duration = Duration::from_millis(250);
/// How long past the approval's deadline the requester keeps waiting for an answer before it
/// gives up: the server expires it at the deadline, so silence after that means the server is
/// gone, and the outcome unknown.
const GRACE: Duration = Duration::from_secs(15);
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

fn interrupted_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    // Only the first handler installs; a second call in one process is not needed.
    let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
    flag
}

/// The approval's deadline (`expires_at`, ms since the epoch) plus [`GRACE`].
fn give_up_at(view: &Value) -> Option<std::time::SystemTime> {
    let ms = u64::try_from(view["expires_at"].as_i64()?).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_millis(ms) + GRACE)
}

pub(crate) fn is_terminal(v: &Value) -> bool {
    v["status"].as_str().is_some_and(|s| s != "pending")
}

/// Waits until `view` is decided. Returns the final view.
pub(crate) fn until_decided(client: &Client, mut view: Value) -> Result<Value, Failure> {
    let interrupted = interrupted_flag();
    let id = view["id"].as_str().unwrap_or_default().to_owned();
    let tty = std::io::stderr().is_terminal();
    let reference = view["ref"].as_str().unwrap_or_default().to_owned();
    if !tty && !is_terminal(&view) {
        eprintln!("waiting for approval {reference} ({})", routes(&view));
    }
    let (tx, rx) = mpsc::channel();
    if !is_terminal(&view) {
        let poller = Client::new(client.base(), client.token().map(str::to_owned));
        let path = format!("/v1/approvals/{id}/wait?timeout={POLL_SECS}");
        std::thread::spawn(move || poll(&poller, &path, &tx));
    }
    let mut offline_since: Option<Instant> = None;
    let mut tick = 0usize;
    let give_up = give_up_at(&view);
    while !is_terminal(&view) {
        if interrupted.load(Ordering::SeqCst) {
            return Err(interrupt(client, &id, tty));
        }
        if give_up.is_some_and(|at| std::time::SystemTime::now() > at) {
            if tty {
                eprint!("\r\x1b[2K");
            }
            return Err(Failure::new(
                Exit::Usage,
                format!(
                    "no answer from {} about approval {reference} although its deadline has passed; \
                     its outcome is unknown (check `assent approvals show {reference}` once the server is back)",
                    client.base()
                ),
            ));
        }
        match rx.recv_timeout(TICK) {
            Ok(Ok(v)) => {
                view = v;
                offline_since = None;
            }
            Ok(Err(e)) if e.is_unreachable() => {
                offline_since.get_or_insert_with(Instant::now);
            }
            Ok(Err(e)) => return Err(Failure::from(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if tty {
            tick += 1;
            draw(&view, tick, offline_since);
        }
    }
    if tty {
        eprint!("\r\x1b[2K");
    }
    let _ = std::io::stderr().flush();
    Ok(view)
}

/// Long polls until terminal; reports each answer. A server that is down or restarting is
/// retried every second: the approval is durable, so the wait picks up where it was.
fn poll(client: &Client, path: &str, tx: &mpsc::Sender<Result<Value, ApiFailure>>) {
    loop {
        let answer = client.get::<Value>(path);
        let done = match &answer {
            Ok(v) => is_terminal(v),
            Err(e) => !e.is_unreachable(),
        };
        let unreachable = answer.as_ref().is_err_and(ApiFailure::is_unreachable);
        if tx.send(answer).is_err() || done {
            return;
        }
        if unreachable {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn routes(view: &Value) -> String {
    let list: Vec<&str> =
        view["routes"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if list.is_empty() { "no route yet".to_owned() } else { format!("sent to {}", list.join(", ")) }
}

fn draw(view: &Value, tick: usize, offline_since: Option<Instant>) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let left = (view["expires_at"].as_i64().unwrap_or(now_ms) - now_ms).max(0) / 1000;
    let mut line = format!(
        "{} waiting for {} · {}:{:02} left",
        SPINNER[tick % SPINNER.len()],
        view["ref"].as_str().unwrap_or_default(),
        left / 60,
        left % 60
    );
    if view["required"].as_u64().unwrap_or(1) > 1 {
        line.push_str(&format!(" · {}/{}", view["votes"], view["required"]));
    }
    match offline_since {
        Some(t) => line.push_str(&format!(" · server unreachable for {}s, retrying", t.elapsed().as_secs())),
        None => line.push_str(&format!(" · {}", routes(view))),
    }
    eprint!("\r\x1b[2K{line}");
    let _ = std::io::stderr().flush();
}

/// CLI-2: Ctrl-C cancels the pending approval first, then exits 130.
fn interrupt(client: &Client, id: &str, tty: bool) -> Failure {
    if tty {
        eprint!("\r\x1b[2K");
    }
    let cancelled = client.send::<Value>("POST", &format!("/v1/approvals/{id}/cancel"), &json!({})).is_ok();
    let what = if cancelled { "cancelled the request" } else { "could not cancel the request" };
    Failure::new(Exit::Interrupted, format!("interrupted: {what}"))
}

/// LC-16 text and CLI-2 exit code of a final view.
pub(crate) fn outcome(view: &Value) -> (String, Exit) {
    let text = view["outcome"]["text"].as_str().unwrap_or("unknown outcome").to_owned();
    let exit = match view["status"].as_str() {
        Some("approved") => Exit::Ok,
        Some("denied") => Exit::Denied,
        Some("cancelled") => Exit::Cancelled,
        _ => Exit::Expired,
    };
    (text, exit)
}
