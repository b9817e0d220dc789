//! A real PostgreSQL server for tests: `initdb` into a temporary directory (as `nobody` when the
//! tests run as root, since `initdb` refuses root), started on a free loopback port, with a
//! watchdog that stops it and removes its files when the test process exits.
//!
//! The binaries come from `$ASSENT_PG_BINDIR`, else the newest `/usr/lib/postgresql/*/bin`, else
//! `pg_config --bindir`. `.ci/run` installs Debian's `postgresql` package when none is found.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::peers::{free_port, run, scratch_dir};

/// Tests trade durability for speed: a crash of the test server loses nothing anyone needs.
const FAST: &str = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off";

/// A running PostgreSQL server owned by this test process.
#[derive(Debug)]
pub struct PgServer {
    bindir: PathBuf,
    port: u16,
    databases: AtomicUsize,
}

fn find_bindir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("ASSENT_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    if let Some(newest) = versions.pop() {
        return Ok(newest);
    }
    let out = Command::new("pg_config").arg("--bindir").output().map_err(|_| {
        "PostgreSQL server binaries not found: install Debian's `postgresql` package (`.ci/run` does) \
         or set ASSENT_PG_BINDIR to the directory holding initdb and postgres"
            .to_owned()
    })?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `program` as `nobody` when we are root, else as ourselves.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PgServer {
    /// The server shared by every test of this process, started on first use.
    pub fn shared() -> &'static PgServer {
        static SERVER: OnceLock<PgServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            Self::start("pg", FAST).unwrap_or_else(|e| panic!("could not start PostgreSQL for tests: {e}"))
        })
    }

    /// A server of its own with PostgreSQL's default durability (fsync, synchronous commit and
    /// full-page writes on), for benchmarks whose figures must include the flush. Its files
    /// live apart from the shared server's, so both can run in one process.
    pub fn durable() -> Result<Self, String> {
        Self::start("pg-durable", "")
    }

    /// Starts a server in the scratch directory `name` with these extra `-c` settings.
    fn start(name: &str, settings: &str) -> Result<Self, String> {
        let bindir = find_bindir()?;
        let dir = scratch_dir(name)?;
        if is_root() {
            // `nobody` (uid 65534) must own the cluster directory.
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        let data = dir.join("data");
        run(
            as_server_user(&bindir.join("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]),
            "initdb",
        )?;
        let port = free_port()?;
        // The watchdog stops the server and removes its files once this test process is gone.
        let command = format!(
            "{runas} '{bin}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 {settings} \
             -c max_connections=300",
            runas = if is_root() { "runuser -u nobody --" } else { "" },
            bin = bindir.join("postgres").display(),
            data = data.display(),
            dir = dir.display(),
        );
        let log = dir.join("server.log");
        let pid_file = data.join("postmaster.pid");
        crate::watchdog::spawn(&crate::watchdog::Watched {
            command,
            log: &log,
            stop: "INT",
            pid_file: Some(&pid_file),
            remove: Some(&dir),
        })
        .map_err(|e| format!("starting postgres: {e}"))?;
        let server = Self { bindir, port, databases: AtomicUsize::new(0) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match server.psql("postgres", "SELECT 1") {
                Ok(_) => return Ok(server),
                Err(e) if Instant::now() > deadline => {
                    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                    return Err(format!("PostgreSQL did not become ready: {e}\n{log}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        run(
            Command::new(self.bindir.join("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    database,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-tAc",
                    sql,
                ])
                .arg("-p")
                .arg(self.port.to_string()),
            "psql",
        )
    }

    /// A new, empty database; returns its URL.
    pub fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("assent_test_{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("{e}"));
        self.url(&name)
    }

    /// The URL of a database on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}
