//! Outbound webhooks (API-5): the engine's callback outbox calls this sink, which POSTs the job's
//! JSON with `Assent-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` and
//! `Assent-Idempotency-Key`. Receivers verify the signature and drop repeated keys: delivery is
//! at least once.

use std::{path::Path, time::Duration};

use assent_core::store::{CallbackJob, CallbackTarget};
use assent_engine::CallbackSink;
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::auth::hex;

/// Each attempt's time limit (the engine retries with backoff).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Signs and sends webhook callbacks.
pub(crate) struct WebhookSink {
    secret: Vec<u8>,
    agent: ureq::Agent,
}

impl WebhookSink {
    pub(crate) fn new(secret: Vec<u8>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(ATTEMPT_TIMEOUT))
            .max_redirects(0)
            .build()
            .into();
        Self { secret, agent }
    }
}

/// The `Assent-Signature` header value for `body` at unix time `t`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex(&mac.finalize().into_bytes()))
}

#[async_trait]
impl CallbackSink for WebhookSink {
    async fn send(&self, job: &CallbackJob) -> Result<(), String> {
        let CallbackTarget::Url { url } = &job.target else {
            return Err("not a webhook job".to_owned());
        };
        let body = serde_json::to_vec(&job.payload).map_err(|e| e.to_string())?;
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let request = self
            .agent
            .post(url)
            .header("content-type", "application/json")
            .header("assent-signature", signature(&self.secret, t, &body))
            .header("assent-idempotency-key", &job.key);
        let url = url.clone();
        let status =
            tokio::task::spawn_blocking(move || request.send(&body[..]).map(|r| r.status().as_u16()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("POST {url}: {e}"))?;
        if (200..300).contains(&status) { Ok(()) } else { Err(format!("POST {url}: HTTP {status}")) }
    }
}

/// The signing secret: `[webhooks] secret` (or `_env` / `_file`), else a random one kept in
/// `<data dir>/webhook.secret` so receivers can be configured once.
pub(crate) fn secret(configured: Option<String>, data_dir: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(s) = configured {
        return Ok(s.into_bytes());
    }
    Ok(crate::auth::data_dir_secret(&data_dir.join("webhook.secret"))?.0.into_bytes())
}
