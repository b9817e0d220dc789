//! `assent hook claude-code` (CLI-6): a Claude Code `PreToolUse` or `PermissionRequest` hook.
//! Reads the hook payload on stdin, asks for approval, writes the decision JSON on stdout.
//! Anything that goes wrong is a deny with the reason (fail closed).

use std::{
    io::Read,
    time::{Duration, Instant},
};

use assent_cli::claude_code::{HookEvent, MAX_INPUT, event_of, request_body};
use assent_core::clock::parse_duration;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::{Exit, Failure, Global, client::Client, output::outln, wait::is_terminal};

#[derive(Debug, Subcommand)]
pub(crate) enum HookCommand {
    /// Claude Code hook: PreToolUse or PermissionRequest JSON in, the decision JSON out.
    ClaudeCode {
        /// Give up (deny) after this long; keep it inside the host's 60 s hook limit.
        #[arg(long, default_value = "50s")]
        timeout: String,
    },
}

pub(crate) fn run(global: &Global, cmd: HookCommand) -> Result<Exit, Failure> {
    let HookCommand::ClaudeCode { timeout } = cmd;
    let mut input = String::new();
    let read = std::io::stdin().take(MAX_INPUT).read_to_string(&mut input);
    let payload: Option<Value> = read.ok().and_then(|_| serde_json::from_str(&input).ok());
    let event = payload.as_ref().map_or(HookEvent::PreToolUse, event_of);
    if let HookEvent::Other(name) = &event {
        // Not a question: answer at once, in the fields every hook event accepts.
        let note = format!("assent: {name} is not an approval event; nothing to decide");
        outln!("{}", json!({ "suppressOutput": true, "systemMessage": note }));
        return Ok(Exit::Ok);
    }
    let (allow, reason) = match (payload, parse_duration(&timeout)) {
        (_, Err(e)) => (false, format!("assent: --timeout {timeout}: {e}")),
        (None, _) => (false, "assent: the hook input is not valid JSON; denied".to_owned()),
        (Some(p), Ok(limit)) => match request_body(&p, limit, crate::commands::host()) {
            // Malformed: denied at once, before any card exists.
            Err(e) => (false, format!("assent: {e}; denied")),
            Ok(body) => match decide(global, &body, limit) {
                Ok(answer) => answer,
                Err(e) => (false, format!("assent: {}; denied", e.message)),
            },
        },
    };
    let out = if event == HookEvent::PermissionRequest {
        let decision = if allow {
            json!({ "behavior": "allow" })
        } else {
            json!({ "behavior": "deny", "message": reason })
        };
        json!({ "hookSpecificOutput": { "hookEventName": "PermissionRequest", "decision": decision } })
    } else {
        json!({ "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": if allow { "allow" } else { "deny" },
            "permissionDecisionReason": reason,
        }})
    };
    outln!("{out}");
    Ok(Exit::Ok)
}

fn decide(global: &Global, body: &Value, limit: Duration) -> Result<(bool, String), Failure> {
    let deadline = Instant::now() + limit;
    let client = Client::from_global(global)?;
    let mut view = client.create_approval(body, deadline)?;
    let id = view["id"].as_str().unwrap_or_default().to_owned();
    while !is_terminal(&view) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = client.send::<Value>("POST", &format!("/v1/approvals/{id}/cancel"), &json!({}));
            return Ok((false, format!("assent: nobody answered within {}s; denied", limit.as_secs())));
        }
        let secs = left.as_secs().clamp(1, 25);
        match client.get::<Value>(&format!("/v1/approvals/{id}/wait?timeout={secs}")) {
            Ok(v) => view = v,
            Err(e) if e.is_unreachable() => std::thread::sleep(Duration::from_secs(1)),
            Err(e) => return Err(e.into()),
        }
    }
    let allow = view["status"].as_str() == Some("approved");
    Ok((allow, format!("assent: {}", view["outcome"]["text"].as_str().unwrap_or("decided"))))
}
