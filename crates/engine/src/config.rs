//! Engine settings. Every field has the spec's default; the server maps `assent.toml` onto them.

use std::time::Duration;

use assent_core::{policy::Policy, routing::Forward, text::Redactor, token::Keyring};

/// When the web console counts as a route (RT-11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConsoleRoute {
    /// `"always"` when no channel account is attached, else `"connected"`.
    #[default]
    Auto,
    /// Only while an `approve`-scope console session is open.
    Connected,
    /// Always.
    Always,
}

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Policy rules, `[[allow]]` grants and redaction.
    pub policy: Policy,
    /// Callback-token keys (CH-CARD-2).
    pub keyring: Keyring,
    /// RT-11.
    pub console_route: ConsoleRoute,
    /// `server.public_url`, for console links on cards.
    pub public_url: Option<String>,
    /// `[[forward]]` entries for channel accounts (RT-7).
    pub forwards: Vec<Forward>,
    /// Sweeper period (LC-8): 1 s, configurable 250 ms to 10 s.
    pub sweep_interval: Duration,
    /// How long deliveries may fail before `expired/no-route` (LC-7).
    pub route_wait: Duration,
    /// How long to wait for accounts to report before the notice (RT-9).
    pub notice_wait: Duration,
    /// Give up finalizing a card after this long (LC-12).
    pub finalize_give_up: Duration,
    /// Longest pause between finalization attempts (LC-12).
    pub finalize_max_backoff: Duration,
    /// Time limit of one callback attempt.
    pub callback_attempt_timeout: Duration,
    /// BD-2: the binding's `requested_by` may allow-once it.
    pub requester_may_approve_bindings: bool,
    /// ST-6: terminal approvals, their ledger and the audit log are kept this long (90 days).
    pub retention: Duration,
}

impl EngineConfig {
    /// Spec defaults with the given token keys.
    pub fn new(keyring: Keyring) -> Self {
        Self {
            policy: Policy { redactor: Redactor::default(), ..Policy::default() },
            keyring,
            console_route: ConsoleRoute::Auto,
            public_url: None,
            forwards: Vec::new(),
            sweep_interval: Duration::from_secs(1),
            route_wait: Duration::from_secs(30),
            notice_wait: Duration::from_secs(10),
            finalize_give_up: Duration::from_secs(24 * 3600),
            finalize_max_backoff: Duration::from_secs(300),
            callback_attempt_timeout: Duration::from_secs(10),
            requester_may_approve_bindings: false,
            retention: Duration::from_secs(90 * 86_400),
        }
    }
}
