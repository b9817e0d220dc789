//! Webhook mode ("setWebhook"): Telegram POSTs each update to `/hooks/telegram/<id>` with the
//! secret in `X-Telegram-Bot-Api-Secret-Token`. The hook answers on every replica: it checks the
//! secret in constant time (wrong or missing: 401, nothing decided), acks with 200 at once, and
//! handles the update beside the answer.

use std::sync::Arc;

use assent_platform::{Hook, HookFuture, HookRequest, HookResponse};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;
use teloxide_core::{
    payloads::setters::*,
    requests::Requester,
    types::{AllowedUpdate, Update},
};

use crate::{Shared, TelegramError, updates};

const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The webhook's secret token: derived from the bot token, so every replica (and every restart)
/// agrees on it without storing it, and nobody without the bot token can guess it. 43
/// characters of `A-Z a-z 0-9 _ -`, as `secret_token` allows.
pub(crate) fn secret(token: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"assent telegram webhook secret v1");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Points the bot's webhook at `url`, replacing any earlier one.
pub(crate) async fn register(shared: &Shared, url: &str) -> Result<(), TelegramError> {
    let url = url::Url::parse(url).map_err(|e| TelegramError::invalid(format!("webhook URL {url}: {e}")))?;
    shared
        .bot
        .set_webhook(url)
        .secret_token(secret(&shared.token))
        .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
        .await
        .map(|_| ())
        .map_err(|e| TelegramError::new(&e, &shared.token))
}

/// The account's hook.
pub(crate) struct TelegramHook {
    shared: Arc<Shared>,
    secret: String,
}

impl TelegramHook {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let secret = secret(&shared.token);
        Self { shared, secret }
    }
}

impl Hook for TelegramHook {
    fn handle(&self, request: HookRequest) -> HookFuture<'_> {
        Box::pin(async move {
            let given = request.headers.get(SECRET_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
            if !bool::from(given.ct_eq(self.secret.as_bytes())) {
                return HookResponse::unauthorized("wrong or missing X-Telegram-Bot-Api-Secret-Token");
            }
            match serde_json::from_slice::<Update>(&request.body) {
                Ok(update) => {
                    // Telegram waits for this answer before it sends the next update: ack now.
                    let shared = self.shared.clone();
                    tokio::spawn(async move { updates::handle(&shared, update).await });
                    HookResponse::ok()
                }
                Err(e) => HookResponse::bad_request(&format!("not a Telegram update: {e}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::secret;

    #[test]
    fn the_secret_is_stable_allowed_and_not_the_token() {
        let s = secret("123:ABC");
        assert_eq!(s, secret("123:ABC"), "every replica derives the same");
        assert_ne!(s, secret("123:ABD"));
        assert_eq!(s.len(), 43);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{s}");
        assert!(!s.contains("ABC"));
    }
}
