//! Claude Code hook payloads (CLI-6) as approval requests. A `Bash` tool call is an exec approval
//! of `sh -c '<command>'`; any other tool is a plugin approval "Use {tool}" with a redacted
//! summary of its input (for `Write` and `Edit`, the file and the change).

use std::{sync::LazyLock, time::Duration};

use assent_core::{model::ExecRequest, text::Redactor};
use serde_json::{Value, json};

/// Largest payload the hook reads from stdin.
pub const MAX_INPUT: u64 = 1024 * 1024;
/// The input summary on a plugin card, in characters.
const SUMMARY_CHARS: usize = 512;
/// The built-in redaction, compiled once.
static REDACTOR: LazyLock<Redactor> = LazyLock::new(Redactor::default);

/// The hook events assent answers; any other is let through at once, with no card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEvent {
    /// `PreToolUse` (also assumed when a host sends no `hook_event_name`).
    PreToolUse,
    /// `PermissionRequest`.
    PermissionRequest,
    /// Anything else (`PostToolUse`, `Stop`, …): nothing to decide.
    Other(String),
}

/// The payload's `hook_event_name`.
pub fn event_of(payload: &Value) -> HookEvent {
    match payload["hook_event_name"].as_str() {
        None | Some("PreToolUse") => HookEvent::PreToolUse,
        Some("PermissionRequest") => HookEvent::PermissionRequest,
        Some(other) => HookEvent::Other(other.chars().take(64).collect()),
    }
}

fn text<'a>(input: &'a Value, field: &str, tool: &str) -> Result<&'a str, String> {
    input[field].as_str().ok_or_else(|| format!("the {tool} call has no tool_input.{field}"))
}

/// What a plugin card shows for a tool call: the file and its new content for `Write`, the
/// replaced and replacing text for `Edit`, else the redacted input as JSON.
fn summary(tool: &str, input: &Value) -> Result<String, String> {
    Ok(match tool {
        "Write" => format!("{}\n\n{}", text(input, "file_path", tool)?, text(input, "content", tool)?),
        "Edit" => format!(
            "{}\n\n- {}\n+ {}",
            text(input, "file_path", tool)?,
            text(input, "old_string", tool)?.replace('\n', "\n- "),
            text(input, "new_string", tool)?.replace('\n', "\n+ ")
        ),
        _ => input.to_string(),
    })
}

/// The `POST /v1/approvals` body for a hook payload. `limit` is the hook's own deadline (the
/// approval times out with it) and `host` this machine's name, bound into the action digest.
/// A payload without `tool_name` or `tool_input`, or without the fields its tool needs, is an
/// error naming what is missing: no card is made for it.
pub fn request_body(payload: &Value, limit: Duration, host: String) -> Result<Value, String> {
    let tool = payload["tool_name"].as_str().ok_or("the hook input has no tool_name")?;
    let input = &payload["tool_input"];
    if !input.is_object() {
        return Err(format!("the {tool} call has no tool_input"));
    }
    let timeout = limit.as_secs();
    let session = payload["session_id"].as_str().map(|s| format!("claude-code:{s}"));
    let cwd = payload["cwd"].as_str();
    if tool == "Bash" {
        let command = text(input, "command", tool)?;
        if command.trim().is_empty() {
            return Err("the Bash call's tool_input.command is empty".to_owned());
        }
        let exec = ExecRequest {
            argv: vec!["sh".to_owned(), "-c".to_owned(), command.to_owned()],
            cwd: cwd.map(str::to_owned),
            host,
            ..ExecRequest::default()
        };
        return Ok(json!({
            "kind": "exec", "exec": exec, "timeout": timeout, "agent_id": "claude-code", "session_key": session
        }));
    }
    let mut summary = REDACTOR.redact(&summary(tool, input)?).text;
    if let Some(dir) = cwd {
        summary = format!("in {dir}\n{summary}");
    }
    let summary: String = if summary.chars().count() > SUMMARY_CHARS {
        summary.chars().take(SUMMARY_CHARS - 1).chain(['…']).collect()
    } else {
        summary
    };
    let name: String = tool.chars().take(64).collect();
    let plugin = json!({
        "plugin_id": "claude-code",
        "title": format!("Use {name}").chars().take(80).collect::<String>(),
        "description": summary,
        "tool_name": name,
        "tool_call_id": payload["tool_use_id"].as_str().map(|s| s.chars().take(128).collect::<String>()),
    });
    Ok(json!({
        "kind": "plugin", "plugin": plugin, "timeout": timeout, "agent_id": "claude-code", "session_key": session
    }))
}
