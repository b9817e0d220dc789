//! `assent-server`: everything `assent serve` runs. It opens the store, starts the engine,
//! serves the HTTP API (`/v1`), live events (SSE) and the web console on one listener.
//!
//! ```no_run
//! # async fn run() -> Result<(), assent_server::ServeError> {
//! use assent_server::{ServeOptions, config::LoadedConfig};
//! let server = assent_server::start(ServeOptions::new("/tmp/assent".into(), LoadedConfig::defaults())).await?;
//! println!("console at {}", server.console_url());
//! server.run_until_stopped().await;
//! # Ok(()) }
//! ```

mod approvals;
pub mod auth;
mod bindings;
pub mod config;
mod console;
mod error;
mod events;
mod extract;
mod grants;
mod hooks;
mod limits;
mod listener;
mod metrics;
mod openapi;
mod origins;
pub mod platforms;
mod router;
mod scope;
mod views;
mod webhook;

pub use self::{
    approvals::parse_create_body, openapi::document as openapi_document,
    webhook::signature as webhook_signature,
};

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use assent_core::token::{Keyring, TokenKey};
use assent_engine::{ConsoleRoute, Engine, EngineConfig, EngineHandle};
use assent_store::{Durability, OpenOptions, SqlStore};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use self::error::ApiError;
use self::{
    auth::{LiveTokens, Principal, Tokens},
    config::{ConfigError, ConsoleRouteKey, DurabilityKey, LoadedConfig},
};

/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The data directory when none is given (CLI-8): `$ASSENT_DATA_DIR`, else
/// `$XDG_DATA_HOME/assent`, else `~/.local/share/assent`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ASSENT_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("assent");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/assent")
}

/// What `assent serve` was asked to do.
pub struct ServeOptions {
    /// The data directory (SQLite file, lock, admin token, token key).
    pub data_dir: PathBuf,
    /// The configuration.
    pub config: LoadedConfig,
    /// Apply pending migrations (`--no-migrate` sets false).
    pub migrate: bool,
    /// Overrides `server.listen` (tests use port 0).
    pub listen: Option<SocketAddr>,
    /// The chat platforms that may be configured: [`platforms::compiled`] by default.
    pub platforms: Vec<Arc<dyn assent_platform::DynPlatform>>,
}

impl ServeOptions {
    /// Defaults for a data dir and configuration.
    pub fn new(data_dir: PathBuf, config: LoadedConfig) -> Self {
        Self { data_dir, config, migrate: true, listen: None, platforms: platforms::compiled() }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let platforms: Vec<_> = self.platforms.iter().map(|p| p.channel()).collect();
        f.debug_struct("ServeOptions")
            .field("data_dir", &self.data_dir)
            .field("config", &self.config.path)
            .field("migrate", &self.migrate)
            .field("listen", &self.listen)
            .field("platforms", &platforms)
            .finish()
    }
}

/// Why the server could not start. Each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory is unusable.
    #[error("data directory {path}: {error}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] assent_store::OpenError),
    /// The engine could not start.
    #[error("engine: {0}")]
    Engine(#[from] assent_engine::EngineError),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {error} (is another assent running? set server.listen)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// Shared by every request handler.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) engine: EngineHandle,
    pub(crate) tokens: Arc<LiveTokens>,
    pub(crate) sessions: Arc<console::Sessions>,
    pub(crate) keyring: Keyring,
    pub(crate) redactor: assent_core::text::Redactor,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) auth_failures: Arc<limits::AuthFailures>,
    /// CH-WEB-2: console cookies are `Secure` when people reach assent over https (a TLS proxy
    /// in front, announced by `server.public_url`).
    pub(crate) secure_cookies: bool,
    /// `[grants] ignore_env`: variables exact grants do not compare.
    pub(crate) ignore_env: Arc<[String]>,
    /// The console's own origins, checked on every cookie-authenticated request.
    pub(crate) console_origins: Arc<origins::ConsoleOrigins>,
    /// The chat accounts of the configuration, for the accounts page.
    pub(crate) configured_accounts: Arc<[platforms::AccountRow]>,
    /// Accounts' inbound HTTP endpoints, by account.
    pub(crate) hooks: Arc<platforms::Hooks>,
}

impl AppState {
    /// The caller presenting a bearer token.
    pub(crate) fn authenticate(&self, token: &str) -> Option<Principal> {
        self.tokens.current().authenticate(token)
    }
}

/// A running server.
pub struct RunningServer {
    addr: SocketAddr,
    engine: Engine,
    handle: EngineHandle,
    stop: CancellationToken,
    http: tokio::task::JoinHandle<()>,
    first_run_token: Option<PathBuf>,
    admin_token_path: Option<PathBuf>,
    login_code: Option<String>,
    /// The chat accounts; the engine runs each while it is registered.
    accounts: Vec<assent_platform::Running>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/`.
    pub fn console_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The admin token file, when the server made one on this start (CLI-8).
    pub fn first_run_token(&self) -> Option<&Path> {
        self.first_run_token.as_deref()
    }

    /// The admin token file used by this server, if tokens come from the data dir.
    pub fn admin_token_path(&self) -> Option<&Path> {
        self.admin_token_path.as_deref()
    }

    /// A one-time console login link (CLI-8), valid for 15 minutes, when the server uses the
    /// data dir's admin token.
    pub fn login_link(&self) -> Option<String> {
        self.login_code.as_ref().map(|c| format!("http://{}/login?code={c}", self.addr))
    }

    /// The engine, for in-process tests and channel crates.
    pub fn engine(&self) -> &EngineHandle {
        &self.handle
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn run_until_stopped(self) {
        self.run_until(std::future::pending()).await;
    }

    /// Serves until Ctrl-C, SIGTERM or `stop` completes, then shuts down gracefully.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = shutdown_signal() => {}
            () = stop => {}
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }

    /// Stops accepting requests, lets in-flight ones finish, then stops the engine.
    pub async fn shutdown(self) {
        drop(self.accounts);
        self.stop.cancel();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.http).await;
        self.engine.shutdown(SHUTDOWN_GRACE).await;
    }
}

fn tokens_error(e: auth::TokensError, data_dir: &Path) -> ServeError {
    match e {
        auth::TokensError::Config(c) => c.into(),
        auth::TokensError::AdminToken(error) => {
            ServeError::DataDir { path: data_dir.display().to_string(), error }
        }
    }
}

/// `SIGHUP` re-reads `[[tokens]]` from the configuration file: a removed token stops working at
/// once and its console sessions end. A file that does not load keeps the tokens in force.
#[cfg(unix)]
async fn reload_tokens_on_hangup(state: AppState, path: PathBuf, data_dir: PathBuf, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else { return };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = hangups.recv() => {}
        }
        let loaded = LoadedConfig::load(&path)
            .map_err(auth::TokensError::from)
            .and_then(|c| Tokens::for_server(&c, &data_dir));
        match loaded {
            Ok((tokens, _)) => {
                tracing::info!(tokens = tokens.len(), file = %path.display(), "tokens reloaded");
                state.sessions.retain(|p| tokens.holds(p));
                state.tokens.replace(tokens);
            }
            Err(e) => tracing::error!(error = %e, "tokens not reloaded; the previous ones stay in force"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// Opens the store, starts the engine and the HTTP listener.
pub async fn start(options: ServeOptions) -> Result<RunningServer, ServeError> {
    let ServeOptions { data_dir, config, migrate, listen, platforms } = options;
    let accounts = platforms::accounts(&config, &platforms, &data_dir)?;
    // The data dir holds the database and the key files: owner-only (issue 9, finding 10).
    assent_store::create_private_dir(&data_dir)
        .map_err(|error| ServeError::DataDir { path: data_dir.display().to_string(), error })?;
    let addr = match listen {
        Some(a) => config.listen_override(a)?,
        None => config.listen()?,
    };
    let (tokens, admin_file) =
        Tokens::for_server(&config, &data_dir).map_err(|e| tokens_error(e, &data_dir))?;
    let first_run_token = admin_file.as_ref().filter(|(_, created)| *created).map(|(p, _)| p.clone());
    let admin_token_path = admin_file.map(|(p, _)| p);
    let keyring = Keyring::new(token_key(&data_dir)?, Vec::new());
    let engine_config = engine_config(&config, keyring.clone())?;
    let redactor = engine_config.policy.redactor.clone();
    let w = &config.config.webhooks;
    let configured = assent_platform::secret(
        "webhooks.secret",
        w.secret.as_deref(),
        w.secret_env.as_deref(),
        w.secret_file.as_deref(),
    )
    .map_err(|message| ConfigError { file: config.file(), line: None, message })?;
    let webhook_secret = webhook::secret(configured, &data_dir)
        .map_err(|error| ServeError::DataDir { path: data_dir.display().to_string(), error })?;
    let store = open_store(&config, &data_dir, migrate).await?;
    let engine = Engine::builder(Arc::new(store), engine_config)
        .webhook_sink(Arc::new(webhook::WebhookSink::new(webhook_secret)))
        .start()
        .await?;
    let handle = engine.handle();
    let listener = TcpListener::bind(addr).await.map_err(|error| ServeError::Bind { addr, error })?;
    let addr = listener.local_addr().map_err(|error| ServeError::Bind { addr, error })?;
    let metrics = metrics::Metrics::start(&handle);
    let configured_accounts = accounts.iter().map(|a| platforms::AccountRow::of(a.as_ref())).collect();
    let (accounts, hooks) = platforms::start(accounts, &handle);
    let state = AppState {
        engine: handle.clone(),
        tokens: Arc::new(LiveTokens::new(tokens)),
        sessions: Arc::new(console::Sessions::default()),
        keyring,
        redactor,
        metrics,
        auth_failures: Arc::default(),
        secure_cookies: config.config.server.public_url.as_deref().is_some_and(|u| u.starts_with("https://")),
        console_origins: Arc::new(origins::ConsoleOrigins::new(
            addr,
            config.config.server.public_url.as_deref(),
        )),
        ignore_env: config.ignore_env()?.into(),
        configured_accounts,
        hooks: Arc::new(hooks),
    };
    let login_code = admin_token_path
        .is_some()
        .then(|| state.sessions.one_time_link(auth::admin(auth::ADMIN_TOKEN_NAME)))
        .flatten();
    let stop = CancellationToken::new();
    #[cfg(unix)]
    if let Some(path) = config.path.clone() {
        tokio::spawn(reload_tokens_on_hangup(state.clone(), path, data_dir.clone(), stop.clone()));
    }
    let app = router::router(state);
    let http = tokio::spawn(listener::serve(listener, app, stop.clone(), listener::HEADER_READ_TIMEOUT));
    tracing::info!(%addr, "assent is listening");
    Ok(RunningServer {
        addr,
        engine,
        handle,
        stop,
        http,
        first_run_token,
        admin_token_path,
        login_code,
        accounts,
    })
}

fn engine_config(config: &LoadedConfig, keyring: Keyring) -> Result<EngineConfig, ConfigError> {
    let mut c = EngineConfig::new(keyring);
    c.policy = config.policy()?;
    c.console_route = match config.config.console.route {
        ConsoleRouteKey::Auto => ConsoleRoute::Auto,
        ConsoleRouteKey::Connected => ConsoleRoute::Connected,
        ConsoleRouteKey::Always => ConsoleRoute::Always,
    };
    c.public_url = config.config.server.public_url.clone();
    if let Some(keep) = config.retention()? {
        c.retention = keep;
    }
    Ok(c)
}

async fn open_store(config: &LoadedConfig, data_dir: &Path, migrate: bool) -> Result<SqlStore, ServeError> {
    let durability = match config.config.store.durability {
        DurabilityKey::Normal => Durability::Normal,
        DurabilityKey::PowerLoss => Durability::PowerLoss,
    };
    let options = OpenOptions { migrate, durability, ..OpenOptions::default() };
    let s = &config.config.store;
    let url =
        assent_platform::secret("store.url", s.url.as_deref(), s.url_env.as_deref(), s.url_file.as_deref())
            .map_err(|message| ConfigError { file: config.file(), line: None, message })?;
    match url {
        None => Ok(SqlStore::open_sqlite(&data_dir.join("assent.db"), options).await?),
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(rel) => Ok(SqlStore::open_sqlite(&data_dir.join(rel), options).await?),
            None => Ok(SqlStore::open(&url, options).await?),
        },
    }
}

/// The callback-token key (CH-CARD-2), derived from a secret made once per data dir so cards
/// stay valid across restarts.
fn token_key(data_dir: &Path) -> Result<TokenKey, ServeError> {
    let path = data_dir.join("token.key");
    let (secret, _) = auth::data_dir_secret(&path)
        .map_err(|error| ServeError::DataDir { path: path.display().to_string(), error })?;
    Ok(TokenKey::new(auth::sha256(secret.as_bytes())))
}
