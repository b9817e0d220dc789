//! Slack errors, classified for retries ("Rate Limits", "Web API": `{"ok": false, "error": …}`)
//! and free of secrets: no message built here contains a token or the signing secret.

use std::time::Duration;

use assent_core::capability::{ClassifyError, RetryKind};
use slack_morphism::errors::SlackClientError;

/// Why a Slack call failed. The message never contains a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("slack: {message}")]
pub struct SlackError {
    message: String,
    retry: RetryKind,
    /// Slack's `error` code, when it answered with one (`channel_not_found`).
    code: Option<String>,
}

impl SlackError {
    /// Refused before any call (a bad id, a card Slack would refuse).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self { message: message.into(), retry: RetryKind::Permanent, code: None }
    }

    /// No answer: the connection failed.
    pub(crate) fn network(message: String) -> Self {
        Self { message, retry: RetryKind::Transient { retry_after: None }, code: None }
    }

    /// No answer in time.
    pub(crate) fn timeout(method: &str, after: Duration) -> Self {
        Self {
            message: format!("{method}: no answer within {after:?}"),
            retry: RetryKind::Transient { retry_after: None },
            code: None,
        }
    }

    /// Slack answered `method` with `{"ok": false, "error": code}`.
    pub(crate) fn refused(method: &str, code: &str) -> Self {
        let mut message = format!("Slack refused {method}: {code}");
        if let Some(h) = hint(code) {
            message.push_str(" — ");
            message.push_str(h);
        }
        Self { message, retry: RetryKind::Permanent, code: Some(code.to_owned()) }
    }

    /// What slack-morphism reported for `method`.
    pub(crate) fn from_client(method: &str, e: &SlackClientError) -> Self {
        match e {
            SlackClientError::ApiError(api) => {
                let mut message = format!("Slack refused {method}: {}", api.code);
                if let Some(why) = api.http_response_body.as_deref().and_then(details) {
                    message.push_str(&format!(" ({why})"));
                }
                if let Some(h) = hint(&api.code) {
                    message.push_str(" — ");
                    message.push_str(h);
                }
                // "ratelimited" with HTTP 200 never happens; other codes are the request's fault.
                let retry = if matches!(
                    api.code.as_str(),
                    "internal_error" | "fatal_error" | "service_unavailable"
                ) {
                    RetryKind::Transient { retry_after: None }
                } else {
                    RetryKind::Permanent
                };
                Self { message, retry, code: Some(api.code.clone()) }
            }
            SlackClientError::RateLimitError(r) => Self {
                message: format!("Slack rate-limited {method} (429, retry after {:?})", r.retry_after),
                retry: RetryKind::Transient { retry_after: r.retry_after },
                code: Some("ratelimited".to_owned()),
            },
            SlackClientError::HttpError(h) => Self {
                message: format!("{method}: Slack answered HTTP {}", h.status_code),
                retry: if h.status_code.is_server_error() {
                    RetryKind::Transient { retry_after: None }
                } else {
                    RetryKind::Permanent
                },
                code: None,
            },
            // Connection failures, unreadable answers: worth another try.
            other => Self {
                message: format!("{method}: {}", first_line(&other.to_string())),
                retry: RetryKind::Transient { retry_after: None },
                code: None,
            },
        }
    }

    /// Slack's `error` code.
    pub(crate) fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The wait a 429 asked for.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self.retry {
            RetryKind::Transient { retry_after } if self.code() == Some("ratelimited") => {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            }
            _ => None,
        }
    }
}

impl ClassifyError for SlackError {
    fn retry_kind(&self) -> RetryKind {
        self.retry
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// `response_metadata.messages`: what Slack found wrong (`invalid_blocks` names the block).
fn details(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let messages: Vec<&str> =
        v["response_metadata"]["messages"].as_array()?.iter().filter_map(|m| m.as_str()).collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

/// What an operator should do about a refusal.
fn hint(code: &str) -> Option<&'static str> {
    match code {
        "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" => Some(
            "the bot token is not accepted: reinstall the app and copy its Bot User OAuth Token (xoxb-…)",
        ),
        "not_allowed_token_type" => {
            Some("Socket Mode needs an app-level token (xapp-…) with the connections:write scope")
        }
        "missing_scope" => Some("add the scopes listed in docs/channels/slack.md and reinstall the app"),
        "channel_not_found" | "not_in_channel" => {
            Some("check the channel id, and invite the app to the channel (/invite @your-app)")
        }
        "user_not_found" => Some("check the approver's member id (profile → ⋮ → Copy member ID)"),
        "cannot_dm_bot" => Some("approvers must be people, not bots"),
        _ => None,
    }
}

/// `text` without `secrets`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        out = out.replace(s, "<secret>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{details, scrub};

    #[test]
    fn invalid_blocks_names_the_block() {
        let body = r#"{"ok":false,"error":"invalid_blocks","response_metadata":{"messages":["must be less than 3001 characters [json-pointer:/blocks/1/text]"]}}"#;
        assert_eq!(details(body).unwrap(), "must be less than 3001 characters [json-pointer:/blocks/1/text]");
    }

    #[test]
    fn secrets_are_scrubbed() {
        assert_eq!(scrub("token xoxb-123456789 failed", &["xoxb-123456789"]), "token <secret> failed");
    }
}
