//! `cargo xtask fuzz`: the fuzz targets in `fuzz/` under cargo-fuzz (libFuzzer) on stable Rust.
//! Stable has no sanitizers, so targets run with `-s none`: coverage guidance still works, and
//! the targets assert their own invariants.

use std::{path::Path, process::Command};

use crate::{cargo, remove_build_dir, run};

/// Every target in `fuzz/Cargo.toml`.
pub(crate) const TARGETS: [&str; 5] =
    ["approve_parser", "callback_token", "config_loader", "create_body", "hook_stdin"];
/// Seconds per target in CI: enough to replay the seeds and explore a little; long runs are
/// `cargo xtask fuzz all --time 3600`.
pub(crate) const CI_SECONDS: u64 = 20;
const DEFAULT_SECONDS: u64 = 60;

/// `fuzz <target>|all [--time N]`.
pub(crate) fn command(args: &[String]) -> Result<(), String> {
    let usage = || format!("usage: cargo xtask fuzz <{}|all> [--time SECONDS]", TARGETS.join("|"));
    let target = args.first().ok_or_else(usage)?;
    let seconds = match (args.get(1).map(String::as_str), args.get(2)) {
        (None, _) => DEFAULT_SECONDS,
        (Some("--time"), Some(n)) => {
            n.parse().map_err(|_| format!("--time {n}: a number of seconds\n{}", usage()))?
        }
        _ => return Err(usage()),
    };
    match target.as_str() {
        "all" => all(seconds),
        t if TARGETS.contains(&t) => {
            build()?;
            run_one(t, seconds)
        }
        other => Err(format!("unknown fuzz target `{other}`\n{}", usage())),
    }
}

/// Builds every target once, then runs each for `seconds`.
pub(crate) fn all(seconds: u64) -> Result<(), String> {
    build()?;
    let mut lines = Vec::new();
    for t in TARGETS {
        lines.push(run_one(t, seconds).map(|()| t)?);
    }
    eprintln!("fuzz: {} targets ran {seconds} s each without a failure", lines.len());
    Ok(())
}

/// What CI runs: every target for `seconds`, then the instrumented build is removed (the corpus
/// and any crash artifacts under `target/fuzz` stay), so it never adds to the test build's disk.
pub(crate) fn ci(seconds: u64) -> Result<(), String> {
    let result = all(seconds);
    for dir in ["target/fuzz/x86_64-unknown-linux-gnu", "target/fuzz/release"] {
        remove_build_dir(dir);
    }
    result
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    if cargo().args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    run("install cargo-fuzz", cargo().args(["install", "cargo-fuzz", "--locked", "--version", "0.13.2"]))
}

/// cargo-fuzz keeps its own build under `target/fuzz`, so everything built stays in `target/`.
fn fuzz_cargo() -> Command {
    let mut cmd = cargo();
    cmd.current_dir("fuzz").arg("fuzz");
    cmd
}

fn build() -> Result<(), String> {
    ensure_cargo_fuzz()?;
    run("build fuzz targets", fuzz_cargo().args(["build", "-s", "none", "--target-dir", "../target/fuzz"]))
}

/// Runs `target` for `seconds` from its committed seeds (`fuzz/seeds/<target>`) plus what earlier
/// runs found, and prints how many inputs it executed.
fn run_one(target: &str, seconds: u64) -> Result<(), String> {
    let corpus = format!("../target/fuzz/corpus/{target}");
    let artifacts = format!("../target/fuzz/artifacts/{target}/");
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(Path::new("fuzz").join(dir)).map_err(|e| format!("{dir}: {e}"))?;
    }
    eprintln!("\n==> fuzz {target} for {seconds} s");
    let out = fuzz_cargo()
        .args(["run", "-s", "none", "--target-dir", "../target/fuzz", target, &corpus])
        .arg(format!("seeds/{target}"))
        .arg("--")
        .args([format!("-max_total_time={seconds}"), format!("-artifact_prefix={artifacts}")])
        .args(["-print_final_stats=1", "-max_len=65536"])
        .output()
        .map_err(|e| format!("fuzz {target}: could not start: {e}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let found = log.lines().find(|l| l.contains("Test unit written to")).unwrap_or("");
        return Err(format!("fuzz {target} failed {found}\n{}", tail.join("\n")));
    }
    let stat = |name: &str| {
        log.lines().find_map(|l| l.strip_prefix(&format!("stat::{name}:")).map(|v| v.trim().to_owned()))
    };
    eprintln!(
        "fuzz {target}: {} executions in {seconds} s ({}/s), corpus {} inputs, no failure",
        stat("number_of_executed_units").unwrap_or_else(|| "?".to_owned()),
        stat("average_exec_per_sec").unwrap_or_else(|| "?".to_owned()),
        log.lines()
            .rev()
            .find_map(|l| l.split("corp: ").nth(1))
            .and_then(|c| c.split('/').next())
            .unwrap_or("?"),
    );
    Ok(())
}
