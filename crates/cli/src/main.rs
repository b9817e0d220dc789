//! `assent`: run the approval gateway (`assent serve`) or talk to one.

// Doc comments on the clap types are `--help` text written for terminals, not rustdoc markup.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod client;
mod commands;
mod doctor;
mod hook;
mod output;
mod serve;
mod wait;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

/// The gateway's heap (the `jemalloc` feature, on by default): glibc's per-thread arenas grow a
/// page at a time and hold on to fragments, which many tokio tasks make costly.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static HEAP: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit codes (CLI-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Approved, or the command succeeded.
    Ok = 0,
    /// Denied, or a `doctor` check failed.
    Denied = 1,
    /// Expired: timed out or no route.
    Expired = 2,
    /// Cancelled.
    Cancelled = 3,
    /// Usage, configuration, authentication or connection error.
    Usage = 4,
    /// Interrupted (the pending approval was cancelled first).
    Interrupted = 130,
}

/// A command that ends with a message and an exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into() }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "assent",
    version,
    about = "Human approval for risky actions: agents ask, people decide on chat or the web console",
    long_about = "assent is an approval gateway. `assent serve` runs it (SQLite and the web console \
                  at http://127.0.0.1:8740 with no configuration); the other commands ask it for \
                  approval, decide, or inspect what happened.\n\n\
                  Exit codes: 0 approved/success, 1 denied (or a doctor check failed), 2 expired \
                  (timeout or no route), 3 cancelled, 4 usage/config/auth/connection error, \
                  130 interrupted."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Where the CLI looks for the server unless told otherwise.
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8740";

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The assent server.
    #[arg(long, env = "ASSENT_URL", default_value = DEFAULT_SERVER, global = true)]
    pub(crate) server: String,
    /// API token. Without one, the CLI uses the local server's first-run admin token.
    #[arg(long, env = "ASSENT_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// Read the API token from this file.
    #[arg(long, global = true)]
    pub(crate) token_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Configuration file (default: $ASSENT_CONFIG, else <data dir>/assent.toml if present).
    #[arg(long, env = "ASSENT_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: API, live events and web console on one listener.
    Serve(serve::ServeArgs),
    /// Ask for approval and wait for the answer (exit 0 approved, 1 denied, 2 expired).
    #[command(subcommand)]
    Request(commands::RequestCommand),
    /// Ask for approval of a command, then run exactly that command if approved.
    Run(commands::ExecArgs),
    /// List, inspect and decide approvals.
    #[command(subcommand)]
    Approvals(commands::ApprovalsCommand),
    /// List and revoke standing grants made by "allow always".
    #[command(subcommand)]
    Grants(commands::GrantsCommand),
    /// Show the audit log.
    Audit(commands::AuditArgs),
    /// Check the configuration, store and channel accounts; one line per check.
    Doctor(doctor::DoctorArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(commands::TokenCommand),
    /// Integrations that turn a host's permission hook into an approval.
    #[command(subcommand)]
    Hook(hook::HookCommand),
}

fn main() -> ExitCode {
    // matrix-sdk links rustls with aws-lc-rs, the store and ureq with ring: name the process-wide
    // provider once, before any TLS client is built, or rustls refuses to guess.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `--help` and `--version` are answers, not errors.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // A usage error exits 4, like every other usage error (2 means "expired").
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args),
        Command::Request(cmd) => commands::request(&cli.global, cmd),
        Command::Run(args) => commands::run(&cli.global, args),
        Command::Approvals(cmd) => commands::approvals(&cli.global, cmd),
        Command::Grants(cmd) => commands::grants(&cli.global, cmd),
        Command::Audit(args) => commands::audit(&cli.global, args),
        Command::Doctor(args) => doctor::run(&cli.global, args),
        Command::Token(cmd) => commands::token(&cli.global, cmd),
        Command::Hook(cmd) => hook::run(&cli.global, cmd),
    };
    match result {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("assent: {}", f.message);
            }
            ExitCode::from(f.exit as u8)
        }
    }
}
