//! HTTP mode (CH-SL-2): with `signing_secret` set, Slack POSTs interactivity, slash commands and
//! events to `/hooks/slack/<id>`, on whichever replica it reaches.
//!
//! "Verifying requests from Slack": `X-Slack-Signature` is `v0=` and the hex HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{body}` with the signing secret, compared in constant time
//! (slack-morphism's `SlackEventSignatureVerifier`), and a timestamp more than five minutes off
//! is refused, so a captured request cannot be replayed. A request that fails either gets 401
//! and changes nothing. A valid one is answered 200 with an empty body at once (the ack), and
//! decided beside it.

use std::sync::Arc;

use assent_platform::{Hook, HookFuture, HookRequest, HookResponse};
use serde::Deserialize;
use serde_json::{Map, Value};
use slack_morphism::signature_verifier::{SlackEventSignatureVerifier, SlackEventSignatureVerifierError};

use crate::{
    Shared,
    events::{self, Refused},
    payload::Incoming,
};

/// The account's Request URL.
pub(crate) struct SlackHook {
    shared: Arc<Shared>,
    verifier: SlackEventSignatureVerifier,
}

impl SlackHook {
    pub(crate) fn new(shared: Arc<Shared>, signing_secret: &str) -> Self {
        Self { shared, verifier: SlackEventSignatureVerifier::new(&signing_secret.to_owned().into()) }
    }

    fn verified<'a>(&self, request: &'a HookRequest) -> Result<&'a str, &'static str> {
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(signature), Some(timestamp)) = (
            header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
            header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
        ) else {
            return Err("missing X-Slack-Signature or X-Slack-Request-Timestamp");
        };
        let body = std::str::from_utf8(&request.body).map_err(|_| "invalid request signature")?;
        match self.verifier.verify(signature, body, timestamp) {
            Ok(()) => Ok(body),
            Err(SlackEventSignatureVerifierError::IncorrectOrExpiredTimestampError(_)) => {
                Err("the request timestamp is more than 5 minutes off")
            }
            Err(_) => Err("invalid request signature"),
        }
    }
}

/// What one request carries.
enum Body {
    Incoming(Box<Incoming>),
    /// "url_verification": Slack checks the Request URL by asking for the challenge back.
    Challenge(String),
    /// "ssl_check": Slack checks the certificate of a slash command's URL.
    Check,
}

fn form(body: &str) -> Map<String, Value> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().map(|(k, v)| (k, Value::String(v))).collect()
}

/// "url_verification": `{"type": "url_verification", "challenge": "…"}`.
#[derive(Debug, Deserialize)]
struct Verification {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    challenge: Option<String>,
}

fn read(request: &HookRequest, body: &str) -> Result<Body, String> {
    let content_type = request.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        let v: Verification = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        if v.kind.as_deref() == Some("url_verification") {
            return Ok(Body::Challenge(v.challenge.unwrap_or_default()));
        }
        return Incoming::event(body).map(|i| Body::Incoming(Box::new(i)));
    }
    let fields = form(body);
    if let Some(payload) = fields.get("payload").and_then(Value::as_str) {
        return Incoming::interactive(payload).map(|i| Body::Incoming(Box::new(i)));
    }
    if fields.contains_key("ssl_check") {
        return Ok(Body::Check);
    }
    if fields.contains_key("command") {
        let json = Value::Object(fields).to_string();
        return Incoming::command(&json).map(|i| Body::Incoming(Box::new(i)));
    }
    Err("neither an interaction, a slash command nor an event".to_owned())
}

impl Hook for SlackHook {
    fn handle(&self, request: HookRequest) -> HookFuture<'_> {
        Box::pin(async move {
            let body = match self.verified(&request) {
                Ok(body) => body,
                Err(why) => return HookResponse::unauthorized(why),
            };
            let incoming = match read(&request, body) {
                Ok(Body::Incoming(i)) => i,
                Ok(Body::Challenge(c)) => return HookResponse::json(&serde_json::json!({ "challenge": c })),
                Ok(Body::Check) => return HookResponse::ok(),
                Err(why) => return HookResponse::bad_request(&why),
            };
            let me = match self.shared.identity().await {
                Ok(me) => me,
                Err(e) => {
                    tracing::warn!(account = %self.shared.key, error = %e, "cannot learn the Slack app's identity");
                    return HookResponse::unavailable(
                        "assent cannot reach Slack to check the app's identity",
                    );
                }
            };
            match events::begin(&self.shared, &me, *incoming) {
                Ok(after) => {
                    // The 200 is the ack; nothing after this line can fail before it is sent.
                    if let Some(after) = after.and_then(|a| events::acked(&self.shared, a)) {
                        tokio::spawn(events::finish(self.shared.clone(), after));
                    }
                    HookResponse::ok()
                }
                Err(Refused::Malformed(why)) => HookResponse::bad_request(&why),
                Err(Refused::Foreign(why)) => HookResponse::unauthorized(&why),
            }
        })
    }
}
