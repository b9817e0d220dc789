//! A small blocking HTTP client for the `/v1` API (CLI-7: no async runtime, no channel SDKs on
//! client paths, so `assent request` starts fast).

use std::{path::PathBuf, time::Duration};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Exit, Failure};

/// Where the CLI talks to and as whom.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// An API error body (API-3), or a transport failure.
#[derive(Debug)]
pub(crate) enum ApiFailure {
    /// The server answered with an error.
    Api { code: String, message: String },
    /// The server could not be reached.
    Unreachable(String),
}

impl ApiFailure {
    pub(crate) fn code(&self) -> &str {
        match self {
            ApiFailure::Api { code, .. } => code,
            ApiFailure::Unreachable(_) => "unreachable",
        }
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Api { code, message, .. } => write!(f, "{message} ({code})"),
            ApiFailure::Unreachable(e) => write!(f, "{e}"),
        }
    }
}

impl From<ApiFailure> for Failure {
    fn from(e: ApiFailure) -> Self {
        let hint = match e.code() {
            "unauthenticated" => "; pass --token, set ASSENT_TOKEN or use --token-file",
            "unreachable" => "; is `assent serve` running? (--server / ASSENT_URL)",
            _ => "",
        };
        Failure::new(Exit::Usage, format!("{e}{hint}"))
    }
}

impl Client {
    pub(crate) fn new(base: &str, token: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(330)))
            .build();
        Self { base: base.trim_end_matches('/').to_owned(), token, agent: config.into() }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A client for `global`'s server and token.
    pub(crate) fn from_global(global: &crate::Global) -> Result<Self, Failure> {
        let token = find_token(global.token.clone(), global.token_file.clone(), &global.server)?;
        Ok(Self::new(&global.server, token))
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.finish(req.call())
    }

    pub(crate) fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &Value,
    ) -> Result<T, ApiFailure> {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "DELETE" => self.agent.delete(&url).force_send_body(),
            _ => self.agent.post(&url),
        };
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.finish(req.send_json(body))
    }

    fn finish<T: DeserializeOwned>(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ApiFailure> {
        let base = &self.base;
        let mut response =
            result.map_err(|e| ApiFailure::Unreachable(format!("cannot reach the server at {base}: {e}")))?;
        let status = response.status().as_u16();
        let body: Value = response
            .body_mut()
            .read_json()
            .map_err(|e| ApiFailure::Unreachable(format!("{base} sent an unreadable answer: {e}")))?;
        if (200..300).contains(&status) {
            return serde_json::from_value(body)
                .map_err(|e| ApiFailure::Unreachable(format!("unexpected answer from the server: {e}")));
        }
        let e = &body["error"];
        Err(ApiFailure::Api {
            code: e["code"].as_str().unwrap_or("unknown").to_owned(),
            message: e["message"].as_str().unwrap_or("request failed").to_owned(),
        })
    }
}

/// CLI-1/CLI-8: `--token`, `$ASSENT_TOKEN`, `--token-file`, else the local server's first-run
/// admin token when talking to a loopback server.
pub(crate) fn find_token(
    token: Option<String>,
    token_file: Option<PathBuf>,
    server: &str,
) -> Result<Option<String>, Failure> {
    if let Some(t) = token {
        return Ok(Some(t));
    }
    if let Some(path) = token_file {
        return std::fs::read_to_string(&path)
            .map(|t| Some(t.trim().to_owned()))
            .map_err(|e| Failure::new(Exit::Usage, format!("--token-file {}: {e}", path.display())));
    }
    let loopback =
        ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| server.starts_with(p));
    if loopback {
        let path = assent_server::auth::admin_token_path(&assent_server::default_data_dir());
        if let Ok(t) = std::fs::read_to_string(path) {
            return Ok(Some(t.trim().to_owned()));
        }
    }
    Ok(None)
}
