//! `assent doctor` (CLI-5): one line per check, `OK|WARN|FAIL|OFF subject — fix`, naming the
//! exact configuration key to change. Exit 1 if any check fails.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde_json::Value;

use assent_server::{config::LoadedConfig, platforms};

use crate::{Exit, Failure, Global, client::Client, output::outln, serve::load_config};

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Data directory to check (default as for `assent serve`).
    #[arg(long, env = "ASSENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Also ask every platform who the bot is (5 s per account).
    #[arg(long)]
    online: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum Status {
    Ok,
    Warn,
    Fail,
    Off,
}

#[derive(Debug, Serialize)]
struct Check {
    status: Status,
    subject: String,
    message: String,
    keys: Vec<String>,
}

fn check(status: Status, subject: &str, message: impl Into<String>, keys: &[&str]) -> Check {
    Check {
        status,
        subject: subject.to_owned(),
        message: message.into(),
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
    }
}

pub(crate) fn run(global: &Global, args: DoctorArgs) -> Result<Exit, Failure> {
    let data_dir = args.data_dir.unwrap_or_else(assent_server::default_data_dir);
    let mut checks = Vec::new();
    let config = match load_config(global, &data_dir) {
        Ok(c) => {
            let what = c
                .path
                .as_ref()
                .map_or_else(|| "no file; built-in defaults".to_owned(), |p| p.display().to_string());
            checks.push(check(Status::Ok, "config", what, &[]));
            Some(c)
        }
        Err(e) => {
            checks.push(check(Status::Fail, "config", e.message, &[]));
            None
        }
    };
    checks.push(data_dir_check(&data_dir));
    if let Some(config) = &config {
        checks.push(match config.listen() {
            Ok(addr) => check(Status::Ok, "console", format!("listens on {addr}"), &["server.listen"]),
            Err(e) => check(Status::Fail, "console", e.message, &["server.listen"]),
        });
        checks.extend(account_checks(config, &data_dir));
        checks.extend(policy_lint(config));
    }
    checks.push(server_check(global));
    if args.online {
        checks.push(check(Status::Off, "online", "no channel account is compiled in to ask", &[]));
    }
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if global.json {
        outln!("{}", serde_json::to_string(&checks).unwrap_or_default());
    } else {
        for c in &checks {
            let status = serde_json::to_value(c.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            outln!("{status:<4} {} — {}", c.subject, c.message);
        }
    }
    Ok(if failed { Exit::Denied } else { Exit::Ok })
}

fn data_dir_check(dir: &std::path::Path) -> Check {
    if !dir.exists() {
        return check(
            Status::Warn,
            "store",
            format!("{} does not exist yet; `assent serve` creates it", dir.display()),
            &[],
        );
    }
    let probe = dir.join(".doctor-probe");
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            let db = dir.join("assent.db");
            let what = if db.exists() {
                format!("{} is writable", db.display())
            } else {
                format!("{} is writable (no database yet)", dir.display())
            };
            check(Status::Ok, "store", what, &["store.url"])
        }
        Err(e) => check(
            Status::Fail,
            "store",
            format!("{} is not writable: {e} — fix its permissions or set ASSENT_DATA_DIR", dir.display()),
            &[],
        ),
    }
}

/// Per configured chat account: whether anybody can approve there (with the key to set when
/// nobody can), and the platform's own probe. A platform this build lacks is OFF.
fn account_checks(config: &LoadedConfig, data_dir: &std::path::Path) -> Vec<Check> {
    let all = platforms::compiled();
    let mut checks = Vec::new();
    let (compiled, missing): (Vec<_>, Vec<_>) =
        config.config.channels.keys().partition(|name| !platforms::known_but_not_compiled(&all, name));
    for name in missing {
        let message = format!("not compiled in — build with --features {name}, or remove [channels.{name}]");
        checks.push(check(Status::Off, name, message, &[&format!("channels.{name}")]));
    }
    let accounts = match platforms::accounts_of(config, &all, data_dir, &compiled) {
        Ok(accounts) => accounts,
        Err(e) => {
            checks.push(check(Status::Fail, "channels", e.to_string(), &[]));
            return checks;
        }
    };
    for account in accounts {
        let subject = account.key().to_string();
        let availability = account.availability();
        let table = availability.table().to_owned();
        let hints = availability.all_hints();
        checks.push(if hints.is_empty() {
            let found =
                format!("{}, {} approver(s)", account.identity(), availability.settings().approvers.len());
            check(Status::Ok, &subject, found, &[&format!("{table}.approvals.approvers")])
        } else {
            let message = hints.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            let keys: Vec<&str> = hints.iter().map(|h| h.key.as_str()).collect();
            check(Status::Fail, &subject, message, &keys)
        });
        let login = format!("{subject} login");
        checks.push(match account.probe() {
            Ok(found) => check(Status::Ok, &login, found, &[&table]),
            Err(problem) => check(Status::Fail, &login, problem, &[&table]),
        });
    }
    checks
}

/// A rule after a rule that matches everything can never apply.
fn policy_lint(config: &LoadedConfig) -> Vec<Check> {
    let mut out = Vec::new();
    let mut catch_all: Option<&str> = None;
    for rule in &config.config.policy {
        if let Some(first) = catch_all {
            out.push(check(
                Status::Warn,
                "policy",
                format!(
                    "rule `{}` never applies: rule `{first}` before it matches everything — move it up",
                    rule.name
                ),
                &["policy"],
            ));
        }
        let m = &rule.matcher;
        if catch_all.is_none()
            && m.kind.is_none()
            && m.agent.is_none()
            && m.session.is_none()
            && m.executable.is_none()
            && m.plugin.is_none()
        {
            catch_all = Some(&rule.name);
        }
    }
    if out.is_empty() {
        out.push(check(
            Status::Ok,
            "policy",
            format!("{} rule(s) plus the default", config.config.policy.len()),
            &["policy"],
        ));
    }
    out
}

fn server_check(global: &Global) -> Check {
    let client = match Client::from_global(global) {
        Ok(c) => c,
        Err(e) => return check(Status::Fail, "server", e.message, &[]),
    };
    match client.get::<Value>("/v1/ready") {
        Ok(v) => {
            let routes = v["console_is_route"].as_bool().unwrap_or(false);
            let accounts = v["accounts"].as_array().map_or(0, Vec::len);
            if !routes && accounts == 0 {
                check(
                    Status::Fail,
                    "server",
                    "no approval route: no channel account and the console is not a route — set console.route = \"always\" or configure a channel",
                    &["console.route"],
                )
            } else {
                check(
                    Status::Ok,
                    "server",
                    format!("{} is ready ({} pending)", client.base(), v["pending"]),
                    &[],
                )
            }
        }
        Err(e) => check(
            Status::Warn,
            "server",
            format!("{} is not answering ({e}) — start it with `assent serve`", client.base()),
            &[],
        ),
    }
}
