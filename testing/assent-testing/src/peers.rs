//! What the real test peers (PostgreSQL, Synapse) share: a free loopback port, a scratch
//! directory per test process, and running a setup command with its output in the error.

use std::{
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::{Command, Stdio},
};

pub(crate) fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Runs `cmd` to completion; a failure carries its output.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// An empty `/tmp/assent-<peer>-<pid>` for this test process's server.
pub(crate) fn scratch_dir(peer: &str) -> Result<PathBuf, String> {
    let dir = crate::watchdog::scratch_dir_of(peer, std::process::id());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}
