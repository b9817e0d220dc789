//! Servers that tests start (PostgreSQL, Synapse, chromedriver and its browser) outlive nothing.
//!
//! Each runs in its own process group under a small `sh` watchdog that polls the test process.
//! Once the test process is gone, however it ended (SIGKILL included), the watchdog sends the
//! stop signal to the whole group and to the PID a pid file names (PostgreSQL's postmaster
//! runs under `runuser` as root, which does not pass signals on), waits up to 10 s, then
//! SIGKILLs what is left and removes the scratch directory.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The scratch directory the `peer` server (`pg`, `synapse`) of test process `pid` uses.
pub fn scratch_dir_of(peer: &str, pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("assent-{peer}-{pid}"))
}

/// How to start and stop one watched server.
#[derive(Debug, Clone)]
pub struct Watched<'a> {
    /// The server's shell command line (quoted by the caller); it becomes a process group leader.
    pub command: String,
    /// Where its output goes.
    pub log: &'a Path,
    /// The signal that stops it gracefully: `INT` (PostgreSQL's fast shutdown) or `TERM`.
    pub stop: &'static str,
    /// A file whose first line is the server's own PID, if it has one.
    pub pid_file: Option<&'a Path>,
    /// Removed once the server is gone.
    pub remove: Option<&'a Path>,
}

/// Starts `w` under a watchdog tied to this process; returns the server's PID (its group id).
pub fn spawn(w: &Watched<'_>) -> Result<u32, String> {
    let pid_file = w.pid_file.map(|p| format!("'{}'", p.display())).unwrap_or_else(|| "/dev/null".to_owned());
    let remove = w.remove.map(|d| format!("rm -rf '{}'", d.display())).unwrap_or_else(|| "true".to_owned());
    // `setsid` gives the server its own process group, so one signal reaches what it started.
    // The watchdog prints the server's PID first, so the caller can tell the groups apart.
    let script = format!(
        "setsid {command} >'{log}' 2>&1 </dev/null & s=$!; echo $s; \
         while kill -0 {me} 2>/dev/null && kill -0 $s 2>/dev/null; do sleep 0.5; done; \
         own=$(head -n1 {pid_file} 2>/dev/null); \
         kill -{stop} -$s $own 2>/dev/null; \
         i=0; while [ $i -lt 20 ] && {{ kill -0 -$s 2>/dev/null || {{ [ -n \"$own\" ] && kill -0 $own 2>/dev/null; }}; }}; do sleep 0.5; i=$((i+1)); done; \
         kill -KILL -$s $own 2>/dev/null; wait $s; {remove}",
        command = w.command,
        log = w.log.display(),
        me = std::process::id(),
        stop = w.stop,
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the watchdog: {e}"))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("the watchdog has no stdout")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .map_err(|e| format!("reading the server's pid: {e}"))?;
    line.trim().parse().map_err(|_| format!("the watchdog did not start the server: {line:?}"))
}
