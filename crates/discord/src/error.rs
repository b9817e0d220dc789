//! Discord errors, classified for retries ("JSON Error Codes", "Rate Limits") and scrubbed of
//! secrets: the bot token, and interaction tokens (they sit in webhook and callback URLs).

use std::time::Duration;

use assent_core::capability::{ClassifyError, RetryKind};

/// "JSON Error Codes" the channel acts on.
pub(crate) mod code {
    /// The interaction's 3 seconds are over (or it never existed).
    pub(crate) const UNKNOWN_INTERACTION: i64 = 10062;
    /// The message is gone.
    pub(crate) const UNKNOWN_MESSAGE: i64 = 10008;
    /// The person does not accept DMs from the bot.
    pub(crate) const CANNOT_DM: i64 = 50007;
}

/// Why a Discord call failed. The message never contains a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("discord: {message}")]
pub struct DiscordError {
    message: String,
    retry: RetryKind,
    /// Discord's JSON error code, when it answered with one.
    code: Option<i64>,
}

impl DiscordError {
    /// Discord answered `status` with `code` and `text`.
    pub(crate) fn api(status: u16, code: Option<i64>, text: &str, retry_after: Option<Duration>) -> Self {
        let retry = if status == 429 {
            RetryKind::Transient { retry_after }
        } else if status >= 500 {
            RetryKind::Transient { retry_after: None }
        } else {
            RetryKind::Permanent
        };
        let mut message = match code {
            Some(c) => format!("{text} (HTTP {status}, code {c})"),
            None => format!("{text} (HTTP {status})"),
        };
        if let Some(hint) = code.and_then(hint) {
            message.push_str(" — ");
            message.push_str(hint);
        }
        Self { message, retry, code }
    }

    /// No answer: the connection failed or timed out.
    pub(crate) fn network(text: String) -> Self {
        Self { message: text, retry: RetryKind::Transient { retry_after: None }, code: None }
    }

    /// Refused before any call (a bad id, a card Discord would refuse).
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self { message: message.into(), retry: RetryKind::Permanent, code: None }
    }

    /// Discord's JSON error code.
    pub(crate) fn code(&self) -> Option<i64> {
        self.code
    }
}

impl ClassifyError for DiscordError {
    fn retry_kind(&self) -> RetryKind {
        self.retry
    }
}

/// What an operator should do about a refusal.
fn hint(code: i64) -> Option<&'static str> {
    match code {
        code::CANNOT_DM => Some(
            "the approver does not accept DMs from the bot: they must share a server with it and allow \
             direct messages from its members (or use target = \"channel\")",
        ),
        10003 => Some("check the channel id, and that the bot was invited to its server"),
        50001 | 50013 => Some("give the bot View Channel, Send Messages and Embed Links in that channel"),
        _ => None,
    }
}

/// `text` without `secrets`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        out = out.replace(s, "<token>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn tokens_are_scrubbed() {
        let clean = scrub(
            "POST http://x/interactions/1/abcdefghij/callback with Bot secret123",
            &["abcdefghij", "secret123"],
        );
        assert_eq!(clean, "POST http://x/interactions/1/<token>/callback with Bot <token>");
    }
}
