//! Client commands: `request`, `run`, `approvals`, `grants`, `audit`, `token`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use assent_core::{clock::parse_duration, model::ExecRequest, text::sanitize};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::{Exit, Failure, Global, client::Client, output::outln, wait};

#[derive(Debug, Subcommand)]
pub(crate) enum RequestCommand {
    /// Ask to run a command. Waits for the decision; exit code 0 means approved.
    Exec(ExecArgs),
}

/// What `request exec` and `run` send.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// How long approvers get, e.g. 90s, 30m (default: the policy's).
    #[arg(long)]
    timeout: Option<String>,
    /// Working directory the command runs in (default: the current one).
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Agent id, shown on the card and used by policy rules.
    #[arg(long)]
    agent: Option<String>,
    /// Session key, for session-limited grants.
    #[arg(long)]
    session: Option<String>,
    /// Print the approval and exit without waiting.
    #[arg(long)]
    no_wait: bool,
    /// The command, exactly as it will run.
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

pub(crate) fn request(global: &Global, cmd: RequestCommand) -> Result<Exit, Failure> {
    let RequestCommand::Exec(args) = cmd;
    let client = Client::from_global(global)?;
    // The resolved executable is part of what a grant matches (PO-3). A command that is not on
    // this PATH is sent without one, and matches only grants made without one.
    let exec = ExecRequest {
        argv: args.command.clone(),
        executable: which(&args.command[0]).map(|p| p.display().to_string()),
        cwd: Some(cwd(&args)?),
        host: host(),
        ..ExecRequest::default()
    };
    let view = ask(&client, &args, exec)?;
    if args.no_wait {
        print_view(global, &view);
        return Ok(Exit::Ok);
    }
    let view = wait::until_decided(&client, view)?;
    let (text, exit) = wait::outcome(&view);
    if global.json {
        outln!("{view}");
    }
    eprintln!("{text}");
    Ok(exit)
}

fn cwd(args: &ExecArgs) -> Result<String, Failure> {
    let dir = match &args.cwd {
        Some(d) => d.clone(),
        None => std::env::current_dir()
            .map_err(|e| Failure::new(Exit::Usage, format!("current directory: {e}")))?,
    };
    Ok(dir.display().to_string())
}

/// This machine's name, bound into the action digest.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// How long `request` and `run` keep asking when the server stopped before answering their
/// request: long enough for a restart, short enough that a script is not stuck on a dead server.
const CREATE_RETRY: Duration = Duration::from_secs(60);

fn ask(client: &Client, args: &ExecArgs, exec: ExecRequest) -> Result<Value, Failure> {
    let timeout = match &args.timeout {
        Some(t) => Some(
            parse_duration(t)
                .map_err(|e| Failure::new(Exit::Usage, format!("--timeout {t}: {e}")))?
                .as_secs(),
        ),
        None => None,
    };
    let body = json!({
        "kind": "exec",
        "exec": exec,
        "timeout": timeout,
        "agent_id": args.agent,
        "session_key": args.session,
    });
    Ok(client.create_approval(&body, Instant::now() + CREATE_RETRY)?)
}

/// CLI-4: resolve the executable first, ask, re-check the digest, consume, then exec.
pub(crate) fn run(global: &Global, args: ExecArgs) -> Result<Exit, Failure> {
    let client = Client::from_global(global)?;
    let executable = which(&args.command[0])
        .ok_or_else(|| Failure::new(Exit::Usage, format!("`{}` was not found on PATH", args.command[0])))?;
    let exec = ExecRequest {
        argv: args.command.clone(),
        executable: Some(executable.display().to_string()),
        cwd: Some(cwd(&args)?),
        host: host(),
        ..ExecRequest::default()
    };
    let expected = exec
        .clone()
        .into_action()
        .map_err(|e| Failure::new(Exit::Usage, format!("invalid command: {e}")))?
        .action_digest;
    let view = ask(&client, &args, exec.clone())?;
    let view = wait::until_decided(&client, view)?;
    let (text, exit) = wait::outcome(&view);
    eprintln!("{text}");
    if exit != Exit::Ok {
        return Ok(exit);
    }
    // Re-check what would run now: the PATH lookup and directory, not what we saw before waiting.
    let now = which(&args.command[0]).map(|p| p.display().to_string());
    let unchanged = now == exec.executable
        && exec.cwd.as_deref().is_some_and(|d| Path::new(d).is_dir())
        && view["action_digest"].as_str() == Some(expected.as_str());
    if !unchanged {
        return Err(Failure::new(
            Exit::Denied,
            format!(
                "`{}` now resolves to something other than what was approved; nothing was run",
                args.command[0]
            ),
        ));
    }
    let id = view["id"].as_str().unwrap_or_default();
    client.send::<Value>("POST", &format!("/v1/approvals/{id}/consume"), &json!({}))?;
    exec_replace(&executable, &exec)
}

fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = std::fs::canonicalize(name).ok()?;
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Replaces this process with the approved command (Unix), so signals and the exit status are
/// the command's own.
fn exec_replace(executable: &Path, exec: &ExecRequest) -> Result<Exit, Failure> {
    let mut command = std::process::Command::new(executable);
    command.args(&exec.argv[1..]);
    if let Some(dir) = &exec.cwd {
        command.current_dir(dir);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.arg0(&exec.argv[0]);
        let e = command.exec();
        Err(Failure::new(Exit::Usage, format!("could not run {}: {e}", executable.display())))
    }
    #[cfg(not(unix))]
    {
        let status = command.status().map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// List approvals, newest first.
    List {
        /// Only this status: pending, approved, denied, expired, cancelled.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (per page with --all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Every page, down to the oldest approval.
        #[arg(long)]
        all: bool,
    },
    /// Show one approval (full id or its first 8+ characters).
    Show { reference: String },
    /// Approve once (or always, with --always).
    Approve {
        reference: String,
        /// Allow always: also create a standing grant.
        #[arg(long)]
        always: bool,
        /// Narrow the grant of --always: `session` (this agent session only) or `ttl:8h`.
        #[arg(long, requires = "always")]
        scope: Option<String>,
        /// A note kept in the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny.
    Deny {
        reference: String,
        /// Shown to the requester.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Cancel your own pending request (admins: any).
    Cancel { reference: String },
}

/// The items of `path` and the cursor of what is left; with `all`, every page.
fn list_pages(client: &Client, path: &str, all: bool) -> Result<(Vec<Value>, Option<String>), Failure> {
    let mut items = Vec::new();
    let mut page: Value = client.get(path)?;
    loop {
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        let next = page["next"].as_str().map(str::to_owned);
        match next {
            Some(cursor) if all => page = client.get(&format!("{path}&before={cursor}"))?,
            _ => return Ok((items, next)),
        }
    }
}

pub(crate) fn approvals(global: &Global, cmd: ApprovalsCommand) -> Result<Exit, Failure> {
    let client = Client::from_global(global)?;
    match cmd {
        ApprovalsCommand::List { status, limit, all } => {
            let mut path = format!("/v1/approvals?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            let (items, next) = list_pages(&client, &path, all)?;
            if global.json {
                outln!("{}", json!({ "items": items, "next": next }));
            } else {
                if items.is_empty() {
                    outln!("no approvals");
                }
                for a in &items {
                    outln!(
                        "{}  {:<9}  {}",
                        a["ref"].as_str().unwrap_or_default(),
                        a["status"].as_str().unwrap_or_default(),
                        sanitize(a["title"].as_str().unwrap_or_default(), false)
                    );
                }
                if next.is_some() {
                    eprintln!("more approvals are older than these: add --all to list every page");
                }
            }
        }
        ApprovalsCommand::Show { reference } => {
            let view: Value = client.get(&format!("/v1/approvals/{reference}"))?;
            print_view(global, &view);
        }
        ApprovalsCommand::Approve { reference, always, scope, reason } => {
            let decision = if always { "allow-always" } else { "allow-once" };
            decide(global, &client, &reference, decision, reason, scope.as_deref())?;
        }
        ApprovalsCommand::Deny { reference, reason } => {
            decide(global, &client, &reference, "deny", reason, None)?;
        }
        ApprovalsCommand::Cancel { reference } => {
            let view: Value =
                client.send("POST", &format!("/v1/approvals/{reference}/cancel"), &json!({}))?;
            print_view(global, &view);
        }
    }
    Ok(Exit::Ok)
}

fn decide(
    global: &Global,
    client: &Client,
    reference: &str,
    decision: &str,
    reason: Option<String>,
    scope: Option<&str>,
) -> Result<(), Failure> {
    let current: Value = client.get(&format!("/v1/approvals/{reference}"))?;
    let mut body = json!({ "kind": current["kind"], "decision": decision, "reason": reason });
    if let Some(scope) = scope {
        body["grant_scope"] = narrowed(&current["scope"], scope)?;
    }
    let view: Value = client.send("POST", &format!("/v1/approvals/{reference}/resolve"), &body)?;
    print_view(global, &view);
    Ok(())
}

/// The approval's default allow-always scope, narrowed by `--scope session` or `--scope ttl:8h`.
fn narrowed(default: &Value, scope: &str) -> Result<Value, Failure> {
    if default.is_null() {
        return Err(Failure::new(Exit::Usage, "this approval offers no allow-always grant to narrow"));
    }
    let mut s = default.clone();
    match scope {
        "session" => s["session"] = json!(true),
        _ => match scope.strip_prefix("ttl:").map(parse_duration) {
            Some(Ok(d)) => s["ttl-secs"] = json!(d.as_secs()),
            _ => {
                return Err(Failure::new(Exit::Usage, format!("--scope {scope}: use `session` or `ttl:8h`")));
            }
        },
    }
    Ok(s)
}

fn print_view(global: &Global, v: &Value) {
    if global.json {
        outln!("{v}");
        return;
    }
    outln!("{}  {}", v["ref"].as_str().unwrap_or_default(), v["title"].as_str().unwrap_or_default());
    outln!("  status: {}", v["outcome"]["text"].as_str().unwrap_or_default());
    if let Some(text) = v["text"].as_str() {
        outln!("  {text}");
    }
    for f in v["fields"].as_array().into_iter().flatten() {
        outln!("  {}: {}", f["label"].as_str().unwrap_or_default(), f["value"].as_str().unwrap_or_default());
    }
    outln!("  id: {}", v["id"].as_str().unwrap_or_default());
}

#[derive(Debug, Subcommand)]
pub(crate) enum GrantsCommand {
    /// List active grants.
    List,
    /// Revoke a grant (admin).
    Revoke { id: String },
}

pub(crate) fn grants(global: &Global, cmd: GrantsCommand) -> Result<Exit, Failure> {
    let client = Client::from_global(global)?;
    match cmd {
        GrantsCommand::List => {
            let page: Value = client.get("/v1/grants")?;
            if global.json {
                outln!("{page}");
            } else {
                let items = page["items"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    outln!("no active grants");
                }
                // The server escapes these already; a terminal must never run what an argv hid.
                let text = |v: &Value| sanitize(v.as_str().unwrap_or_default(), false);
                for g in items {
                    outln!(
                        "{}  {:<7} used {:>4}×  {}\n    matches {}",
                        text(&g["id"]),
                        text(&g["kind"]),
                        g["use_count"],
                        text(&g["subject"]),
                        text(&g["scope"]),
                    );
                }
            }
        }
        GrantsCommand::Revoke { id } => {
            let v: Value = client.send("DELETE", &format!("/v1/grants/{id}"), &json!({}))?;
            if global.json { outln!("{v}") } else { outln!("revoked {id}") }
        }
    }
    Ok(Exit::Ok)
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only entries about this approval.
    #[arg(long)]
    approval: Option<String>,
    /// Keep printing new entries as they happen.
    #[arg(long)]
    follow: bool,
}

pub(crate) fn audit(global: &Global, args: AuditArgs) -> Result<Exit, Failure> {
    let client = Client::from_global(global)?;
    let mut after = 0u64;
    loop {
        let mut path = format!("/v1/audit?after={after}&limit=500");
        if let Some(a) = &args.approval {
            path.push_str(&format!("&approval={a}"));
        }
        let page: Value = client.get(&path)?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        for e in &items {
            after = after.max(e["seq"].as_u64().unwrap_or(after));
            if global.json {
                outln!("{e}");
            } else {
                let who = e["actor"]["principal"].as_str().unwrap_or("-");
                let approval = e["approval_id"].as_str().map_or("-", |s| &s[..s.len().min(8)]);
                outln!(
                    "{:>6}  {:<22} {approval:<8}  {who}",
                    e["seq"],
                    e["type"].as_str().unwrap_or_default()
                );
            }
        }
        if items.len() == 500 {
            continue;
        }
        if !args.follow {
            return Ok(Exit::Ok);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Make a new API token: prints the token once and the [[tokens]] entry for assent.toml.
    New {
        /// Name recorded in the audit log as token:<name>.
        #[arg(long, default_value = "agent")]
        name: String,
        /// request, approve, admin or metrics (repeatable).
        #[arg(long = "scope", default_value = "request")]
        scopes: Vec<String>,
    },
}

pub(crate) fn token(global: &Global, cmd: TokenCommand) -> Result<Exit, Failure> {
    let TokenCommand::New { name, scopes } = cmd;
    for s in &scopes {
        if !["request", "approve", "admin", "metrics"].contains(&s.as_str()) {
            return Err(Failure::new(
                Exit::Usage,
                format!("--scope {s}: use request, approve, admin or metrics"),
            ));
        }
    }
    let token = assent_server::auth::new_token().map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
    let hash = assent_server::auth::hex(&assent_server::auth::sha256(token.as_bytes()));
    if global.json {
        outln!("{}", json!({ "name": name, "token": token, "sha256": hash, "scopes": scopes }));
    } else {
        let scopes = scopes.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        outln!("token: {token}\n\nAdd this to assent.toml (the server keeps only the hash):\n");
        outln!("[[tokens]]\nname = \"{name}\"\nsha256 = \"{hash}\"\nscopes = [{scopes}]");
    }
    Ok(Exit::Ok)
}
