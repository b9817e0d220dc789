//! The Web API, through slack-morphism's client: only the base URL differs between Slack and a
//! test server (`api_url`, given to the connector built with `https_or_http`).
//!
//! "Rate Limits": a 429 carries `Retry-After`; the call waits that long and tries again, up to
//! three times, then leaves the rest to the engine's retry schedule with the same wait.
//! `chat.postMessage` is paced to about one message a second per channel, which Slack allows
//! with short bursts. slack-morphism's own rate control is not used: it paces
//! `chat.postMessage` per workspace, which would deliver ten approvers' cards in ten seconds.

use std::{collections::HashMap, future::Future, sync::Mutex, time::Duration};

use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use slack_morphism::{
    errors::SlackClientError,
    hyper_tokio::{SlackClientHyperConnector, SlackHyperClient},
    prelude::*,
};
use tokio::time::Instant;

use crate::error::SlackError;

/// The public Web API.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";
/// One call may take this long before it is given up (and retried by the engine).
const CALL_LIMIT: Duration = Duration::from_secs(20);
/// 429s waited out inside one call before the engine's schedule takes over.
const QUICK_RETRIES: usize = 3;
/// "chat.postMessage": about one message per second per channel. A little more, so that
/// network jitter never makes two posts reach Slack closer together than that.
const POST_INTERVAL: Duration = Duration::from_millis(1100);

/// A message's content: the `text` fallback and the blocks.
pub(crate) type Content = SlackMessageContent;

type Connector = SlackClientHyperConnector<hyper_rustls::HttpsConnector<HttpConnector>>;

/// The bot's (or the app's) view of the Web API.
pub(crate) struct Web {
    client: SlackHyperClient,
    bot: SlackApiToken,
    /// The next free `chat.postMessage` slot of each channel.
    pace: Mutex<HashMap<String, Instant>>,
}

/// The connector slack-morphism is given: TLS with the system's roots, and plain HTTP allowed
/// so that `api_url` may point at a local Slack (tests, a proxy).
pub(crate) fn connector(api_url: &str) -> Result<Connector, SlackError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| SlackError::invalid(format!("no TLS roots for {api_url}: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(SlackClientHyperConnector::from(https).with_slack_api_url(api_url.trim_end_matches('/')))
}

/// Who the bot is: from `auth.test` and `bots.info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) team_id: String,
    pub(crate) app_id: String,
    pub(crate) bot_user: String,
}

impl Web {
    pub(crate) fn new(api_url: &str, bot_token: &str) -> Result<Self, SlackError> {
        let client = SlackClient::new(connector(api_url)?);
        let bot = SlackApiToken::new(bot_token.into());
        Ok(Self { client, bot, pace: Mutex::new(HashMap::new()) })
    }

    fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.bot)
    }

    /// Runs `call` (a Web API call with [`Web::session`]): timed out, 429s waited out a few
    /// times.
    async fn run<T, F, Fut>(&self, method: &str, call: F) -> Result<T, SlackError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SlackClientError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match tokio::time::timeout(CALL_LIMIT, call()).await {
                Err(_) => return Err(SlackError::timeout(method, CALL_LIMIT)),
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => SlackError::from_client(method, &e),
            };
            match error.retry_after() {
                Some(wait) if attempt <= QUICK_RETRIES => {
                    tracing::debug!(method, ?wait, "Slack asked to slow down");
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// Waits for `channel`'s next `chat.postMessage` slot and takes it.
    async fn paced(&self, channel: &str) {
        let slot = {
            let mut next = self.pace.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let slot = next.get(channel).copied().filter(|t| *t > now).unwrap_or(now);
            next.insert(channel.to_owned(), slot + POST_INTERVAL);
            next.retain(|_, t| *t + POST_INTERVAL > now);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// `method` with `request`; the answer is read leniently: only the fields assent uses are
    /// needed, so an answer that differs elsewhere still counts.
    async fn call<R: serde::Serialize + Send + Sync>(
        &self,
        method: &str,
        request: &R,
    ) -> Result<Value, SlackError> {
        self.run(method, || async { self.session().http_session_api.http_post(method, request, None).await })
            .await
    }

    /// `auth.test` then `bots.info`: the workspace, the app and the bot user.
    pub(crate) async fn identity(&self) -> Result<Identity, SlackError> {
        let me = self.run("auth.test", || async { self.session().auth_test().await }).await?;
        let bot_id = me.bot_id.clone().ok_or_else(|| {
            SlackError::invalid(
                "auth.test says this token is not a bot's: use the Bot User OAuth Token (xoxb-…)",
            )
        })?;
        let request = SlackApiBotsInfoRequest::new().with_bot(bot_id.to_string());
        let info = self.run("bots.info", || async { self.session().bots_info(&request).await });
        let info = info.await?;
        Ok(Identity {
            team_id: me.team_id.to_string(),
            app_id: info.bot.app_id,
            bot_user: me.user_id.to_string(),
        })
    }

    /// `conversations.open` with one person: their DM with the app (`D…`).
    pub(crate) async fn open_dm(&self, user: &str) -> Result<String, SlackError> {
        // "users" is a comma-separated string, as the method's page documents it.
        let body = json!({ "users": user });
        let opened: Value = self.call("conversations.open", &body).await?;
        opened["channel"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SlackError::invalid("conversations.open gave no channel id"))
    }

    /// `chat.postMessage`, paced per channel; returns the message's `ts`.
    pub(crate) async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        content: &Content,
    ) -> Result<String, SlackError> {
        self.paced(channel).await;
        let request = SlackApiChatPostMessageRequest::new(channel.into(), content.clone())
            .opt_thread_ts(thread_ts.map(Into::into));
        let posted = self.call("chat.postMessage", &request).await?;
        posted["ts"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SlackError::invalid("chat.postMessage answered with no ts"))
    }

    /// `chat.update`.
    pub(crate) async fn update(&self, channel: &str, ts: &str, content: &Content) -> Result<(), SlackError> {
        let request = SlackApiChatUpdateRequest::new(channel.into(), content.clone(), ts.into());
        self.call("chat.update", &request).await.map(|_| ())
    }

    /// `chat.delete`; a message already gone counts as deleted.
    pub(crate) async fn delete(&self, channel: &str, ts: &str) -> Result<(), SlackError> {
        let request = SlackApiChatDeleteRequest::new(channel.into(), ts.into());
        match self.call("chat.delete", &request).await {
            Err(e) if e.code() == Some("message_not_found") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `chat.postEphemeral`: `text` (mrkdwn, already escaped) shown to `user` only, in
    /// `channel` (and `thread_ts`).
    pub(crate) async fn ephemeral(
        &self,
        channel: &str,
        user: &str,
        thread_ts: Option<&str>,
        text: &str,
    ) -> Result<(), SlackError> {
        let content = SlackMessageContent::new().with_text(text.to_owned());
        let request = SlackApiChatPostEphemeralRequest::new(channel.into(), user.into(), content)
            .opt_thread_ts(thread_ts.map(Into::into));
        self.call("chat.postEphemeral", &request).await.map(|_| ())
    }

    /// `apps.connections.open` with the app-level token: a Socket Mode URL, good for one
    /// connection.
    pub(crate) async fn socket_url(&self, app_token: &SlackApiToken) -> Result<String, SlackError> {
        let method = "apps.connections.open";
        let call = self.client.open_session(app_token);
        let opened = tokio::time::timeout(
            CALL_LIMIT,
            call.apps_connections_open(&SlackApiAppsConnectionOpenRequest::new()),
        )
        .await
        .map_err(|_| SlackError::timeout(method, CALL_LIMIT))?
        .map_err(|e| SlackError::from_client(method, &e))?;
        Ok(opened.url.0.to_string())
    }
}
