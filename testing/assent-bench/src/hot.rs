//! `cargo xtask bench hot`: the path agents feel most. Most requests never reach a person: a
//! standing grant (or a fail-closed refusal) answers them. Measured against a release
//! `assent serve` on SQLite, with 32 concurrent keep-alive clients over loopback, each HTTP load
//! for ten seconds (one with `--quick`):
//!
//! - `POST /v1/approvals` answered by an exact-argv grant;
//! - the same answered at once with "no" (no approval route: the policy language has no deny
//!   rule, and a request nobody can see is refused at creation, LC-7);
//! - the same through `assent request` (process start to exit code);
//!
//! beside two floors in the same run: the same HTTP load on `GET /v1/health`, and bare SQLite
//! commits (one per request, the least a durable answer costs). Then the grant hit once more on
//! servers started with 1k, 10k and 100k approvals pending, for the scaling table.

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::server::{Served, binary, ms, percentile};

/// Concurrent keep-alive clients.
const CLIENTS: usize = 32;

/// One keep-alive HTTP/1.1 connection, spoken by hand so the harness adds no client stack.
struct Conn {
    stream: BufReader<TcpStream>,
    addr: String,
    token: String,
}

impl Conn {
    async fn open(addr: &str, token: &str) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap_or_else(|e| panic!("{e}"));
        Self { stream: BufReader::new(stream), addr: addr.to_owned(), token: token.to_owned() }
    }

    /// Sends one request and reads its whole answer; the status and body.
    async fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).await.unwrap_or_else(|e| panic!("write: {e}"));
        let (mut status, mut length) = (0, 0);
        let mut line = String::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap_or_else(|e| panic!("read: {e}"));
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some(code) = header.strip_prefix("HTTP/1.1 ") {
                status = code.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            } else if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.unwrap_or_else(|e| panic!("read body: {e}"));
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Requests per second and the latency distribution of one load.
struct Load {
    requests: usize,
    rate: f64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
}

impl Load {
    /// The figures of `times` (sorted here), taken in `elapsed`.
    fn of(mut times: Vec<Duration>, elapsed: Duration) -> Self {
        times.sort();
        Self {
            requests: times.len(),
            rate: times.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&times, 0.5),
            p90: percentile(&times, 0.9),
            p99: percentile(&times, 0.99),
        }
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what}: {:.0} req/s, p50 {}, p90 {}, p99 {} ({} requests)",
            self.rate,
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            self.requests
        )
    }
}

/// `CLIENTS` connections sending one request after another for `lasting`; `check` sees each
/// answer. A load is timed, not counted: it must outlast several rounds of the WAL's upkeep
/// (every 500 ms), or its p99 misses what a sustained load waits for (issue 15, eleventh pass).
async fn load(
    addr: &str,
    token: &str,
    (method, path, body): (&'static str, &'static str, &'static str),
    lasting: Duration,
    check: fn(u16, &str),
) -> Load {
    let mut clients = Vec::with_capacity(CLIENTS);
    let started = Instant::now();
    for _ in 0..CLIENTS {
        let (addr, token) = (addr.to_owned(), token.to_owned());
        clients.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr, &token).await;
            let mut times = Vec::new();
            while started.elapsed() < lasting {
                let t = Instant::now();
                let (status, answer) = conn.call(method, path, body).await;
                times.push(t.elapsed());
                check(status, &answer);
            }
            times
        }));
    }
    let mut times = Vec::new();
    for c in clients {
        times.extend(c.await.unwrap_or_else(|e| panic!("{e}")));
    }
    Load::of(times, started.elapsed())
}

const GRANTED: &str = r#"{"kind":"exec","exec":{"argv":["deploy","--env","staging"],"host":"bench"}}"#;

fn granted(status: u16, answer: &str) {
    assert!(
        status == 201 && answer.contains(r#""status":"approved""#),
        "not a grant hit ({status}): {answer}"
    );
}

fn refused(status: u16, answer: &str) {
    assert!(
        status == 201 && answer.contains(r#""status":"expired""#),
        "not refused at once ({status}): {answer}"
    );
}

fn healthy(status: u16, answer: &str) {
    assert!(status == 200, "health ({status}): {answer}");
}

/// Makes the grant the load hits: one request, allowed always through the API.
async fn grant(server: &Served) {
    let mut conn = Conn::open(&server.addr, &server.token).await;
    let (status, answer) = conn.call("POST", "/v1/approvals", GRANTED).await;
    assert_eq!(status, 201, "{answer}");
    let id = crate::server::id_of(&answer);
    let body = r#"{"kind":"exec","decision":"allow-always"}"#;
    let (status, answer) = conn.call("POST", &format!("/v1/approvals/{id}/resolve"), body).await;
    assert_eq!(status, 200, "allow always: {answer}");
}

/// `assent request` run `runs` times, `CLIENTS` at once, each until its exit code.
async fn cli(bin: &Path, server: &Served, runs: usize) -> Load {
    let request = |no_wait: bool| {
        let mut cmd = Command::new(bin);
        cmd.args(["request", "exec"]);
        if no_wait {
            cmd.arg("--no-wait");
        }
        cmd.args(["--", "true"])
            .env("ASSENT_URL", format!("http://{}", server.addr))
            .env("ASSENT_TOKEN", &server.token)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    // The grant covers exactly what the CLI sends (argv, executable, directory, host), so it is
    // made from one CLI request.
    let first = request(true).output().unwrap_or_else(|e| panic!("{e}"));
    assert!(first.status.success(), "assent request --no-wait: {first:?}");
    let mut conn = Conn::open(&server.addr, &server.token).await;
    let (_, listed) = conn.call("GET", "/v1/approvals?status=pending&limit=1", "").await;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap_or_default();
    let id = listed["items"][0]["id"].as_str().unwrap_or_else(|| panic!("no pending CLI request: {listed}"));
    let body = r#"{"kind":"exec","decision":"allow-always"}"#;
    let (status, answer) = conn.call("POST", &format!("/v1/approvals/{id}/resolve"), body).await;
    assert_eq!(status, 200, "allow always: {answer}");
    let started = Instant::now();
    let mut times = Vec::with_capacity(runs);
    let mut left = runs;
    while left > 0 {
        let wave = left.min(CLIENTS);
        let children: Vec<_> = (0..wave)
            .map(|_| (Instant::now(), request(false).spawn().unwrap_or_else(|e| panic!("{e}"))))
            .collect();
        for (t, mut child) in children {
            let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
            assert!(status.success(), "assent request was not allowed by the grant: {status}");
            times.push(t.elapsed());
        }
        left -= wave;
    }
    Load::of(times, started.elapsed())
}

/// Bare SQLite: one transaction inserting one row per request, one writer, the server's PRAGMAs.
async fn sqlite_floor(commits: usize) -> Load {
    let dir = std::env::temp_dir().join(format!("assent-bench-hot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let times = crate::store::bare_commits(&crate::store::fresh(&dir, "floor.db"), commits).await;
    let floor = Load::of(times, started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    floor
}

/// The grant hit again on a server that starts with `pending` approvals already waiting: a
/// grant hit reads grants, not the queue, so its cost should not grow with it (the scaling table).
async fn hit_with_pending(bin: &Path, pending: usize, lasting: Duration) -> (Load, u64) {
    let dir = Served::fresh_dir("");
    crate::store::seed_pending(&dir.join("assent.db"), pending).await;
    let server = Served::launch(bin, dir);
    grant(&server).await;
    let hit = load(&server.addr, &server.token, ("POST", "/v1/approvals", GRANTED), lasting, granted).await;
    (hit, server.rss_kib())
}

pub(crate) async fn run(quick: bool) {
    let bin = binary();
    // Ten seconds cover twenty rounds of the WAL's upkeep; a quick run covers two.
    let (lasting, runs, floor_commits) =
        if quick { (Duration::from_secs(1), 64, 3_200) } else { (Duration::from_secs(10), 320, 16_000) };
    println!(
        "assent hot path (release binary {}, SQLite, {CLIENTS} keep-alive clients, {} s a load, loopback)",
        bin.display(),
        lasting.as_secs()
    );
    let server = Arc::new(Served::start(&bin, ""));
    grant(&server).await;
    let health = load(&server.addr, &server.token, ("GET", "/v1/health", ""), lasting, healthy).await;
    let hit = load(&server.addr, &server.token, ("POST", "/v1/approvals", GRANTED), lasting, granted).await;
    let through_cli = cli(&bin, &server, runs).await;
    drop(server);
    // Nobody can see a request here (the console counts only while someone has it open).
    let closed = Served::start(&bin, "[console]\nroute = \"connected\"\n");
    let no = load(&closed.addr, &closed.token, ("POST", "/v1/approvals", GRANTED), lasting, refused).await;
    drop(closed);
    let floor = sqlite_floor(floor_commits).await;

    println!("  {}", health.line("floor: GET /v1/health"));
    println!("  {}", floor.line("floor: bare SQLite, one commit per request"));
    println!("  {}", hit.line("POST /v1/approvals answered by an exact-argv grant"));
    println!("  {}", no.line("POST /v1/approvals refused at once (no approval route)"));
    println!(
        "  {}",
        through_cli
            .line(&format!("`assent request` answered by a grant, {CLIENTS} at a time, start to exit"))
    );
    println!(
        "  grant hit / health: {:.1}% (goal ≥ 50%); grant hit / bare SQLite: {:.1}%; refusal / health: {:.1}%; \
         grant hit p99 {} (goal ≤ 5 ms)",
        hit.rate / health.rate * 100.0,
        hit.rate / floor.rate * 100.0,
        no.rate / health.rate * 100.0,
        ms(hit.p99),
    );
    let levels: &[usize] = if quick { &[1_000] } else { &[1_000, 10_000, 100_000] };
    for &pending in levels {
        let (at, rss) = hit_with_pending(&bin, pending, lasting).await;
        println!(
            "  {}; server RSS {} MiB ({:.0}% of the rate with none pending)",
            at.line(&format!("grant hit with {pending} approvals pending")),
            rss / 1024,
            at.rate / hit.rate * 100.0
        );
    }
}
