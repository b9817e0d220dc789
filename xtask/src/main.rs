//! Developer commands. `cargo xtask ci` runs exactly what CI runs; `cargo xtask bench` runs the
//! benchmark harness and prints the figures the spec budgets (NF-1, NF-2, NF-3).

mod fuzz;

use std::{
    env,
    path::Path,
    process::{Command, ExitCode},
};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci        run exactly what CI runs: fmt check, clippy -D warnings, the core purity check,
            the docs with RUSTDOCFLAGS=-Dwarnings, the fuzz targets briefly, then every test
            with all features (nextest, plus doctests). The PostgreSQL tests start a real
            server from the machine's PostgreSQL binaries (`.ci/run` installs them when
            missing). Clippy and rustdoc build in target/check, removed after them
  bench     run the engine benchmarks (release build) and print NF-1 ack p50/p99,
            NF-2 lifecycles/s and NF-3 bytes per pending approval (`bench nf2`: one of them);
            `bench store`: SQLite NF-2 vs a raw floor, NF-4, NF-6;
            `bench postgres`: NF-2 on a durable PostgreSQL, group commit off and on;
            `bench server`: NF-5 CLI start, 10k long-poll waiters (memory, latency);
            `bench hot`: requests a grant or a refusal answers, beside GET /v1/health;
            `bench scaling`: NF-2 and memory at 1k/10k/100k pending and 1/10/100 accounts;
            `bench matrix`: a Matrix round trip on Synapse vs a bare matrix-sdk bot;
            `bench telegram`: press → answerCallbackQuery vs a bare teloxide bot;
            `bench discord`: click → deferred update vs a bare serenity bot;
            `bench slack`: click → ack in Socket Mode and HTTP mode vs bare slack-morphism apps
  soak      the NF-7 crash test with 1,000 SIGKILLs instead of CI's 200 (release build)
  fuzz      `fuzz <target>|all [--time SECONDS]`: run fuzz targets with cargo-fuzz on stable
            Rust (no sanitizer), 60 s each by default, and print their executions. Targets:
            approve_parser, callback_token, config_loader, create_body, hook_stdin. New
            inputs go to target/fuzz/corpus/<target>, crashes to target/fuzz/artifacts/<target>
  help      show this text";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        Some("soak") => soak(),
        Some("fuzz") => fuzz::command(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

pub(crate) fn run(what: &str, cmd: &mut Command) -> Result<(), String> {
    eprintln!("\n==> {what}");
    let status = cmd.status().map_err(|e| format!("{what}: could not start: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{what} failed ({status})")) }
}

fn has_nextest() -> bool {
    cargo().args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success())
}

fn ci() -> Result<(), String> {
    warn_if_disk_is_short();
    ensure_test_peers()?;
    // Every feature is on, so the PostgreSQL backend and its tests are always checked.
    let all = ["--workspace", "--all-features", "--locked"];
    run("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    // CI's disk is small, so its three builds never sit on it together. The checks (clippy and
    // rustdoc share a metadata-only build) and the instrumented fuzz build each go in a directory
    // that is removed after them; the test build comes last.
    let checks = (|| {
        let dir = ["--target-dir", CHECK_DIR];
        run(
            "clippy",
            cargo().arg("clippy").args(all).args(dir).args(["--all-targets", "--", "-D", "warnings"]),
        )?;
        core_is_sans_io()?;
        // Every other step unifies all features, which can switch on a dependency feature the
        // lean gateway (`Cargo.toml` of `assent`) lacks: build that one as its users do.
        let lean = ["-p", "assent", "--no-default-features", "--features", "sqlite", "--locked"];
        run("lean gateway", cargo().arg("check").args(lean).args(dir))?;
        run("docs", cargo().arg("doc").args(all).args(dir).arg("--no-deps").env("RUSTDOCFLAGS", "-Dwarnings"))
    })();
    remove_build_dir(CHECK_DIR);
    checks?;
    fuzz::ci(fuzz::CI_SECONDS)?;
    if has_nextest() {
        run("tests (nextest)", cargo().args(["nextest", "run"]).args(all).args(["--profile", "ci"]))?;
        run("doctests", cargo().arg("test").args(all).arg("--doc"))?;
    } else {
        eprintln!("cargo-nextest not found; falling back to cargo test");
        run("tests", cargo().arg("test").args(all))?;
    }
    eprintln!("\nci: all checks passed");
    Ok(())
}

/// Where `cargo xtask ci` builds for clippy and rustdoc.
const CHECK_DIR: &str = "target/check";

/// Removes a build directory that a CI step is done with; a failure to remove it is only reported.
pub(crate) fn remove_build_dir(dir: &str) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("xtask: could not remove {dir}: {e}");
    }
}

/// The store tests run a real PostgreSQL server and the console test a real headless Chromium,
/// from the machine's binaries. On Debian as root, install them when missing (the test harnesses
/// themselves never download anything).
fn ensure_test_peers() -> Result<(), String> {
    let postgres = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.filter_map(Result::ok).any(|e| e.path().join("bin/initdb").exists()))
        .unwrap_or(false)
        || env::var_os("ASSENT_PG_BINDIR").is_some();
    let chromium = Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    let mut missing = Vec::new();
    if !postgres {
        missing.push("postgresql");
    }
    if !chromium {
        missing.extend(["chromium", "chromium-driver"]);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let root =
        Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root || Command::new("apt-get").arg("--version").output().is_err() {
        eprintln!(
            "xtask: the tests need the Debian packages {} (PostgreSQL tests; the web console test in \
             headless Chromium); install them, or set ASSENT_PG_BINDIR for PostgreSQL.",
            missing.join(", ")
        );
        return Ok(());
    }
    run("apt-get update", Command::new("apt-get").args(["update", "-qq"]))?;
    run(
        "install test peers",
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// A full run builds about 3.2 GiB under `target/` at its peak (the test build, plus Synapse's
/// virtualenv; measured on a clean checkout with `CARGO_INCREMENTAL=0`, as `.ci/run` sets). Running out of disk mid-build fails with a
/// rustc write error that says little, so say it up front.
fn warn_if_disk_is_short() {
    const NEEDED_KIB: u64 = 7 * 1024 * 1024 / 2;
    let Ok(out) = Command::new("df").args(["-Pk", "."]).output() else { return };
    let text = String::from_utf8_lossy(&out.stdout);
    // POSIX `df -P`: the second line's fourth column is the space available, in KiB.
    let free =
        text.lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).and_then(|f| f.parse::<u64>().ok());
    if let Some(free) = free.filter(|&f| f < NEEDED_KIB) {
        eprintln!(
            "xtask: warning: {} MiB free here; a full CI build needs about 3.5 GiB (set \
             CARGO_INCREMENTAL=0 to save 1 GiB of incremental caches)",
            free / 1024
        );
    }
}

/// NF-14: assent-core has no tokio, HTTP or platform types.
fn core_is_sans_io() -> Result<(), String> {
    eprintln!("\n==> assent-core dependency check");
    let out = cargo()
        .args(["tree", "-p", "assent-core", "-e", "normal", "--prefix", "none", "--locked"])
        .output()
        .map_err(|e| format!("cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo tree failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    let forbidden =
        ["tokio", "hyper", "reqwest", "serenity", "teloxide", "matrix-sdk", "slack-morphism", "sqlx"];
    let found: Vec<&str> =
        forbidden.iter().copied().filter(|f| tree.lines().any(|l| l.starts_with(&format!("{f} ")))).collect();
    if found.is_empty() {
        eprintln!("assent-core depends on none of: {}", forbidden.join(", "));
        Ok(())
    } else {
        Err(format!("assent-core must stay sans-I/O but depends on: {}", found.join(", ")))
    }
}

fn soak() -> Result<(), String> {
    run(
        "crash soak (1,000 kills)",
        cargo()
            .args(["test", "--release", "--locked", "-p", "assent-crashbox", "--", "--nocapture"])
            .env("ASSENT_CRASH_KILLS", "1000"),
    )
}

fn bench(rest: &[String]) -> Result<(), String> {
    // One build of both binaries: cargo unifies features across the packages it builds
    // together, so building them apart (or through `cargo run -p assent-bench`) would make
    // each rebuild half of the dependency tree for the other, a quarter of an hour each time.
    let mut build = cargo();
    build.args(["build", "--release", "--locked", "-p", "assent", "-p", "assent-bench"]);
    // Only the PostgreSQL bench links the PostgreSQL driver; the others measure `assent` as
    // it ships (switching between the two rebuilds the store and what depends on it).
    if rest.iter().any(|c| c == "postgres") {
        build.args(["--features", "assent-bench/postgres"]);
    }
    run("build assent and assent-bench (release)", &mut build)?;
    let target = env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    let release = Path::new(&target).join("release");
    let binary = |name: &str| release.join(name).canonicalize().map_err(|e| format!("{name}: {e}"));
    // The server figures are taken from outside, on the real release binary.
    run("bench", Command::new(binary("assent-bench")?).env("ASSENT_BIN", binary("assent")?).args(rest))
}
