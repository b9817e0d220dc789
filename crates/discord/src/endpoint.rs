//! HTTP interactions (CH-DC-1): with `public_key` set, Discord POSTs each interaction to
//! `/hooks/discord/<id>` ("Receiving an Interaction"), on whichever replica it reaches.
//!
//! The hook checks `X-Signature-Ed25519` over `X-Signature-Timestamp` + the raw body with the
//! application's public key (serenity's `Verifier`, ed25519-dalek's strict verification) and
//! answers 401 when it does not hold, as Discord's own endpoint check requires. A valid one is
//! answered in the HTTP response itself (PONG, or the deferred update), and decided beside it.

use std::{sync::Arc, time::Duration};

use assent_platform::{Hook, HookFuture, HookRequest, HookResponse};
use serenity::{interactions_endpoint::Verifier, model::application::Interaction};

use crate::{Shared, interactions};

/// A signature older (or newer) than this is refused: a captured request cannot be replayed.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// The account's interactions endpoint.
pub(crate) struct DiscordHook {
    shared: Arc<Shared>,
    verifier: Verifier,
}

impl DiscordHook {
    /// `public_key` was checked to be 64 hex digits when the account was read.
    pub(crate) fn new(shared: Arc<Shared>, public_key: &str) -> Self {
        Self { shared, verifier: Verifier::new(public_key) }
    }

    fn verified(&self, request: &HookRequest) -> Result<(), &'static str> {
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(signature), Some(timestamp)) =
            (header("x-signature-ed25519"), header("x-signature-timestamp"))
        else {
            return Err("missing X-Signature-Ed25519 or X-Signature-Timestamp");
        };
        self.verifier.verify(signature, timestamp, &request.body).map_err(|_| "invalid request signature")?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let sent =
            timestamp.parse::<u64>().map(Duration::from_secs).map_err(|_| "invalid request signature")?;
        if now.abs_diff(sent) > MAX_SKEW {
            return Err("the signature's timestamp is more than 5 minutes off");
        }
        Ok(())
    }
}

impl Hook for DiscordHook {
    fn handle(&self, request: HookRequest) -> HookFuture<'_> {
        Box::pin(async move {
            if let Err(why) = self.verified(&request) {
                return HookResponse::unauthorized(why);
            }
            let interaction: Interaction = match serde_json::from_slice(&request.body) {
                Ok(i) => i,
                Err(e) => return HookResponse::bad_request(&format!("not a Discord interaction: {e}")),
            };
            let Some(begun) = interactions::begin(&self.shared, &interaction) else {
                return HookResponse::bad_request("an interaction assent does not handle");
            };
            if let Some(after) = begun.after {
                let shared = self.shared.clone();
                tokio::spawn(async move { interactions::finish(shared, after).await });
            }
            HookResponse::json(&begun.response)
        })
    }
}
