//! Telegram errors, classified for retries and scrubbed of the bot token (teloxide's network
//! errors print the request URL, which carries it: `…/bot<token>/sendMessage`).

use assent_core::capability::{ClassifyError, RetryKind};
use teloxide_core::{ApiError, RequestError};

/// Why a Telegram call failed. The message never contains the bot token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("telegram: {message}")]
pub struct TelegramError {
    message: String,
    retry: RetryKind,
    /// The Bot API's own description, when it answered.
    description: Option<String>,
}

impl TelegramError {
    /// Classifies `e` and removes `token` from its text.
    pub(crate) fn new(e: &RequestError, token: &str) -> Self {
        let description = match e {
            RequestError::Api(api) => Some(api_text(api)),
            _ => None,
        };
        let retry = match e {
            // "Too Many Requests": `parameters.retry_after`.
            RequestError::RetryAfter(s) => RetryKind::Transient { retry_after: Some(s.duration()) },
            // The connection failed, or a 5xx page that is not the Bot API's JSON.
            RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_) => {
                RetryKind::Transient { retry_after: None }
            }
            RequestError::Api(_) | RequestError::MigrateToChatId(_) => RetryKind::Permanent,
        };
        let mut message = scrub(&description.clone().unwrap_or_else(|| e.to_string()), token);
        if let Some(hint) = description.as_deref().and_then(hint) {
            message.push_str(" — ");
            message.push_str(hint);
        }
        Self { message, retry, description }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self { message: message.into(), retry: RetryKind::Permanent, description: None }
    }

    /// The Bot API's description contains `text` (its wording, as documented).
    pub(crate) fn says(&self, text: &str) -> bool {
        self.description.as_deref().is_some_and(|d| d.contains(text))
    }
}

impl ClassifyError for TelegramError {
    fn retry_kind(&self) -> RetryKind {
        self.retry
    }
}

/// The description the Bot API gave. teloxide maps known ones to variants whose `Display` is
/// the description; unknown ones keep the text.
fn api_text(e: &ApiError) -> String {
    match e {
        ApiError::Unknown(text) => text.clone(),
        other => other.to_string(),
    }
}

/// What an operator should do about a refusal.
fn hint(description: &str) -> Option<&'static str> {
    if description.contains("can't initiate conversation") || description.contains("bot was blocked") {
        Some("ask them to send /start to the bot")
    } else if description.contains("chat not found") {
        Some("add the bot to the chat, or check the chat id")
    } else {
        None
    }
}

/// `text` without the bot token, in plain or URL-encoded form.
pub(crate) fn scrub(text: &str, token: &str) -> String {
    if token.is_empty() {
        return text.to_owned();
    }
    let encoded = token.replace(':', "%3A");
    text.replace(token, "<token>").replace(&encoded, "<token>")
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn the_token_is_scrubbed_plain_and_url_encoded() {
        let token = "123:ABC-def";
        let text = "error sending request for url (http://x/bot123:ABC-def/GetMe) and bot123%3AABC-def";
        let clean = scrub(text, token);
        assert!(!clean.contains("ABC-def"), "{clean}");
        assert!(clean.contains("bot<token>/GetMe"), "{clean}");
    }
}
