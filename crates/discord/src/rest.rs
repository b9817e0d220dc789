//! REST calls through serenity's route table and request builder, with our own rate limiting.
//!
//! serenity's ratelimiter ignores `HttpBuilder::proxy`, so it cannot reach anything but
//! discord.com (an HTTP proxy such as twilight-http-proxy, or a test server). So that the code
//! tested is the code run, every account turns it off and this module does its job, as "Rate
//! Limits" asks:
//! - after each answer, a bucket (serenity's grouping: route and major id) whose
//!   `X-RateLimit-Remaining` reached 0 waits `X-RateLimit-Reset-After` before its next call;
//! - a 429 waits its `retry_after` (body) or `Retry-After` (header), on the bucket or, when
//!   `global` is set, on every call; up to three quick attempts, after which the error goes to
//!   the engine's retry schedule (RT-12) with the wait it was told.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::de::DeserializeOwned;
use serde_json::Value;
use serenity::http::{LightMethod, RatelimitingBucket, Request, Route};

use crate::error::{DiscordError, scrub};

/// Discord's own API; any other `api_url` is reached through serenity's proxy setting.
pub const DEFAULT_API_URL: &str = "https://discord.com/api/v10";
/// Attempts of one call when told to wait.
const QUICK_ATTEMPTS: usize = 3;
/// A wait longer than this goes back to the engine's retry schedule instead.
const QUICK_WAIT_LIMIT: Duration = Duration::from_secs(30);
/// No call waits longer for an answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// One account's REST client.
pub(crate) struct Rest {
    client: reqwest::Client,
    /// `http://host:port` replacing `https://discord.com` in every route, or `None`.
    proxy: Option<String>,
    /// `Bot <token>`.
    authorization: String,
    token: String,
    /// Each bucket's turn, and until when it must wait. A bucket sends one request at a
    /// time, so each sees the headers of the one before (as serenity's own ratelimiter does).
    buckets: Mutex<HashMap<RatelimitingBucket, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
    global: Mutex<Option<Instant>>,
}

/// `api_url` as serenity's proxy: the part that replaces `https://discord.com`.
pub(crate) fn proxy_of(api_url: &str) -> Result<Option<String>, String> {
    let trimmed = api_url.trim_end_matches('/');
    if trimmed == DEFAULT_API_URL {
        return Ok(None);
    }
    let base = trimmed
        .strip_suffix("/api/v10")
        .ok_or_else(|| format!("\"{api_url}\" must end in /api/v10, the API version assent speaks"))?;
    let url = url::Url::parse(base).map_err(|e| format!("\"{api_url}\" is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.path() != "/" {
        return Err(format!("\"{api_url}\" must be http(s)://host[:port]/api/v10"));
    }
    Ok(Some(base.to_owned()))
}

fn header_secs(headers: &reqwest::header::HeaderMap, name: &str) -> Option<Duration> {
    let v = headers.get(name)?.to_str().ok()?.parse::<f64>().ok()?;
    Duration::try_from_secs_f64(v.max(0.0)).ok()
}

impl Rest {
    pub(crate) fn new(token: &str, proxy: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            client,
            proxy,
            authorization: format!("Bot {token}"),
            token: token.to_owned(),
            buckets: Mutex::new(HashMap::new()),
            global: Mutex::new(None),
        }
    }

    /// Calls `route` and decodes the answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<&Value>,
    ) -> Result<T, DiscordError> {
        let bytes = self.send(route, method, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| DiscordError::network(format!("Discord answered with unexpected JSON: {e}")))
    }

    /// Calls `route`; the answer's body is not needed.
    pub(crate) async fn call(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<&Value>,
    ) -> Result<(), DiscordError> {
        self.send(route, method, body).await.map(|_| ())
    }

    fn bucket(&self, bucket: RatelimitingBucket) -> Arc<tokio::sync::Mutex<Option<Instant>>> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets.entry(bucket).or_default().clone()
    }

    /// Drops a bucket nobody waits on and nothing blocks: every interaction has a bucket of its
    /// own, and keeping them all would grow without end.
    fn forget_idle(&self, bucket: RatelimitingBucket, turn: &Arc<tokio::sync::Mutex<Option<Instant>>>) {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Handles are only cloned under this lock: two means the map's and ours.
        let idle = Arc::strong_count(turn) == 2
            && turn.try_lock().is_ok_and(|until| until.is_none_or(|t| t <= Instant::now()));
        if idle {
            buckets.remove(&bucket);
        }
    }

    /// How many buckets are remembered (tests).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Waits out this bucket's block and any global one.
    async fn wait_turn(&self, blocked: Option<Instant>) {
        let global = *self.global.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(until) = global.into_iter().chain(blocked).max() {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    async fn send(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<&Value>,
    ) -> Result<Vec<u8>, DiscordError> {
        let bucket = route.ratelimiting_bucket();
        // Interaction and webhook tokens sit in the path: never show them.
        let secrets = [self.token.clone(), route_token(&route)];
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let body = body.map(|b| b.to_string().into_bytes());
        let turn = self.bucket(bucket);
        let result = {
            let mut blocked = turn.lock().await;
            self.attempts(route, method, body.as_deref(), &secret_refs, &mut blocked).await
        };
        self.forget_idle(bucket, &turn);
        result
    }

    /// Up to [`QUICK_ATTEMPTS`] tries of one call, holding its bucket's turn; `blocked` is the
    /// bucket's "wait until".
    async fn attempts(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<&[u8]>,
        secret_refs: &[&str],
        blocked: &mut Option<Instant>,
    ) -> Result<Vec<u8>, DiscordError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.wait_turn(*blocked).await;
            *blocked = None;
            let request = Request::new(route, method).body(body.map(<[u8]>::to_vec));
            let invalid = |e: &dyn std::fmt::Display| {
                DiscordError::invalid(scrub(&format!("building a request: {e}"), secret_refs))
            };
            let request = request
                .build(&self.client, &self.authorization, self.proxy.as_deref())
                .map_err(|e| invalid(&e))?
                .build()
                .map_err(|e| invalid(&e))?;
            let response = self.client.execute(request).await.map_err(|e| {
                DiscordError::network(scrub(&format!("cannot reach Discord: {e}"), secret_refs))
            })?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.map_err(|e| {
                DiscordError::network(scrub(&format!("reading Discord's answer: {e}"), secret_refs))
            })?;
            if headers.get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()) == Some("0")
                && let Some(reset) = header_secs(&headers, "x-ratelimit-reset-after")
            {
                *blocked = Some(Instant::now() + reset);
            }
            if (200..300).contains(&status) {
                return Ok(bytes.to_vec());
            }
            let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status == 429 {
                let wait = error["retry_after"]
                    .as_f64()
                    .and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok())
                    .or_else(|| header_secs(&headers, "retry-after"))
                    .unwrap_or(Duration::from_secs(1));
                let global = error["global"] == true
                    || headers.get("x-ratelimit-global").is_some_and(|v| v.as_bytes() == b"true");
                if global {
                    *self.global.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(Instant::now() + wait);
                } else {
                    *blocked = Some(Instant::now() + wait);
                }
                if attempt < QUICK_ATTEMPTS && wait <= QUICK_WAIT_LIMIT {
                    tracing::debug!(?wait, global, "discord: rate limited; waiting as told");
                    continue;
                }
                return Err(DiscordError::api(429, None, "rate limited", Some(wait)));
            }
            let text = error["message"].as_str().map_or_else(|| http_reason(status), str::to_owned);
            return Err(DiscordError::api(status, error["code"].as_i64(), &scrub(&text, secret_refs), None));
        }
    }
}

fn http_reason(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map_or_else(|| format!("HTTP {status}"), str::to_owned)
}

/// The token a webhook or interaction route carries in its path.
fn route_token(route: &Route<'_>) -> String {
    match route {
        Route::InteractionResponse { token, .. }
        | Route::WebhookFollowupMessages { token, .. }
        | Route::WebhookOriginalInteractionResponse { token, .. } => (*token).to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serenity::{
        http::{LightMethod, Route},
        model::id::InteractionId,
    };

    use super::{Rest, proxy_of};

    #[tokio::test]
    async fn each_interactions_bucket_is_forgotten_once_idle() {
        let callback = axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT });
        let app = axum::Router::new().route("/api/v10/interactions/{id}/{token}/callback", callback);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let rest = Rest::new("a.b.c", Some(base));
        for id in 1..=20 {
            let route = Route::InteractionResponse { interaction_id: InteractionId::new(id), token: "t" };
            rest.call(route, LightMethod::Post, Some(&serde_json::json!({ "type": 6 }))).await.unwrap();
        }
        assert_eq!(rest.remembered(), 0, "one bucket per interaction, none kept");
    }

    #[test]
    fn the_api_url_becomes_serenitys_proxy() {
        assert_eq!(proxy_of("https://discord.com/api/v10").unwrap(), None);
        assert_eq!(
            proxy_of("http://127.0.0.1:8080/api/v10/").unwrap().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert!(proxy_of("http://127.0.0.1:8080/api/v9").unwrap_err().contains("/api/v10"));
        assert!(proxy_of("http://127.0.0.1:8080/x/api/v10").is_err());
    }
}
