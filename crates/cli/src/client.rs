//! A small blocking HTTP client for the `/v1` API (CLI-7: no async runtime, no channel SDKs on
//! client paths, so `assent request` starts fast).

use std::{
    io::ErrorKind,
    path::PathBuf,
    time::{Duration, Instant},
};

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
    /// The server could not be reached: the request never left.
    Unreachable(String),
    /// The request went out but no answer came back (the server stopped or restarted while
    /// handling it), so it may or may not have been carried out.
    NoAnswer(String),
}

impl ApiFailure {
    pub(crate) fn code(&self) -> &str {
        match self {
            ApiFailure::Api { code, .. } => code,
            ApiFailure::Unreachable(_) | ApiFailure::NoAnswer(_) => "unreachable",
        }
    }

    /// The server is down or restarting, as opposed to having answered with an error.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, ApiFailure::Unreachable(_) | ApiFailure::NoAnswer(_))
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Api { code, message, .. } => write!(f, "{message} ({code})"),
            ApiFailure::Unreachable(e) | ApiFailure::NoAnswer(e) => write!(f, "{e}"),
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

    /// `POST /v1/approvals`, surviving a server that stops while it handles the request. The
    /// body gets a fresh idempotency key; when the answer is lost, the same body is sent again
    /// every second (through the server's restart) until it answers or `give_up` passes. The
    /// key makes the server answer a repeat with the approval it already recorded, so a lost
    /// answer never leaves an approval pending with nobody waiting for it, nor creates two.
    pub(crate) fn create_approval(&self, body: &Value, give_up: Instant) -> Result<Value, ApiFailure> {
        let mut body = body.clone();
        body["idempotency_key"] = Value::String(idempotency_key());
        let mut lost: Option<ApiFailure> = None;
        loop {
            match self.send::<Value>("POST", "/v1/approvals", &body) {
                Err(e @ ApiFailure::NoAnswer(_)) => {
                    if lost.is_none() {
                        eprintln!("assent: {e}; asking again (the approval is not created twice)");
                    }
                    lost = Some(e);
                }
                // While the server restarts, after it may have recorded the request.
                Err(e @ ApiFailure::Unreachable(_)) if lost.is_some() => lost = Some(e),
                answer => return answer,
            }
            if Instant::now() >= give_up {
                let e = lost.map(|e| e.to_string()).unwrap_or_default();
                return Err(ApiFailure::NoAnswer(format!(
                    "{e}; the approval may have been recorded before the server stopped (`assent approvals` lists it)"
                )));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn finish<T: DeserializeOwned>(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ApiFailure> {
        let base = &self.base;
        let mut response = result.map_err(|e| {
            let message = format!("cannot reach the server at {base}: {e}");
            if never_sent(&e) { ApiFailure::Unreachable(message) } else { ApiFailure::NoAnswer(message) }
        })?;
        let status = response.status().as_u16();
        let body: Value = response
            .body_mut()
            .read_json()
            .map_err(|e| ApiFailure::NoAnswer(format!("{base} sent an unreadable answer: {e}")))?;
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

/// Whether `e` says the request never reached the server: no connection was made. Anything
/// else (a reset, an early close, a timeout while waiting for the answer) may have come after
/// the server read the request.
fn never_sent(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::BadUri(_) => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NetworkUnreachable
        ),
        _ => false,
    }
}

/// A key no other request of this principal uses (API idempotency keys are per principal).
fn idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_ok() {
        return format!("cli-{}", assent_server::auth::hex(&bytes));
    }
    // Should the OS have no randomness to give, the process id and the time still make a key
    // that no earlier run used (a reused key with another command would be refused).
    let nanos = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos());
    format!("cli-{}-{nanos}", std::process::id())
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
