//! Claude Code hook payloads (CLI-6) as approval requests. A `Bash` tool call is an exec approval
//! of `sh -c '<command>'`; any other tool is a plugin approval "Use {tool}" with a redacted
//! summary of its input.

use std::{sync::LazyLock, time::Duration};

use assent_core::{model::ExecRequest, text::Redactor};
use serde_json::{Value, json};

/// Largest payload the hook reads from stdin.
pub const MAX_INPUT: u64 = 1024 * 1024;
/// The input summary on a plugin card, in characters.
const SUMMARY_CHARS: usize = 512;
/// The built-in redaction, compiled once.
static REDACTOR: LazyLock<Redactor> = LazyLock::new(Redactor::default);

/// The `POST /v1/approvals` body for a hook payload. `limit` is the hook's own deadline (the
/// approval times out with it) and `host` this machine's name, bound into the action digest.
/// A payload without `tool_name` is an error naming it.
pub fn request_body(payload: &Value, limit: Duration, host: String) -> Result<Value, String> {
    let tool = payload["tool_name"].as_str().ok_or("the hook input has no tool_name")?;
    let input = &payload["tool_input"];
    let timeout = limit.as_secs();
    let session = payload["session_id"].as_str().map(|s| format!("claude-code:{s}"));
    if let (true, Some(command)) = (tool == "Bash", input["command"].as_str()) {
        let exec = ExecRequest {
            argv: vec!["sh".to_owned(), "-c".to_owned(), command.to_owned()],
            cwd: payload["cwd"].as_str().map(str::to_owned),
            host,
            ..ExecRequest::default()
        };
        return Ok(json!({
            "kind": "exec", "exec": exec, "timeout": timeout, "agent_id": "claude-code", "session_key": session
        }));
    }
    let summary = REDACTOR.redact(&input.to_string()).text;
    let summary: String = if summary.chars().count() > SUMMARY_CHARS {
        summary.chars().take(SUMMARY_CHARS - 1).chain(['…']).collect()
    } else {
        summary
    };
    let name: String = tool.chars().take(64).collect();
    let plugin = json!({
        "plugin_id": "claude-code",
        "title": format!("Use {name}").chars().take(80).collect::<String>(),
        "description": if summary.is_empty() { "(no input)".to_owned() } else { summary },
        "tool_name": name,
        "tool_call_id": payload["tool_use_id"].as_str().map(|s| s.chars().take(128).collect::<String>()),
    });
    Ok(json!({
        "kind": "plugin", "plugin": plugin, "timeout": timeout, "agent_id": "claude-code", "session_key": session
    }))
}
