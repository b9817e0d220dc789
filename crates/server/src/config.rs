//! `assent.toml` (CFG-1..CFG-3): parsed strictly, so a typo is an error naming the key and its
//! line instead of a silently ignored setting.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use assent_core::{
    clock::{format_duration, parse_duration},
    model::{Kind, TimeoutAction},
    policy::{Ask, Policy, PolicyRule, RuleMatch, ScopeOption, TimeoutBounds},
    text::Redactor,
};
use serde::Deserialize;
use toml::Spanned;

use crate::scope::Scope;

/// The default API and console address (CH-WEB-1).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8740";

/// A configuration file that cannot be used. The message names the file, line and key.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A rule's timeout must be one some request it matches may wait (DM-7's bounds per kind): a
/// rule for one kind takes that kind's bounds; a rule for every kind, the widest.
fn timeout_fits(d: Duration, kind: Option<Kind>) -> Result<(), String> {
    let kinds: Vec<Kind> = kind.map_or_else(|| Kind::ALL.to_vec(), |k| vec![k]);
    let bounds: Vec<TimeoutBounds> = kinds.iter().map(|k| TimeoutBounds::for_kind(*k)).collect();
    let min = bounds.iter().map(|b| b.min).min().unwrap_or_default();
    let max = bounds.iter().map(|b| b.max).max().unwrap_or_default();
    if d < min || d > max {
        let what = kind.map_or_else(|| "approvals".to_owned(), |k| format!("{k} approvals"));
        return Err(format!(
            "is out of range: {what} wait between {} and {}",
            format_duration(min),
            format_duration(max)
        ));
    }
    Ok(())
}

/// The whole file. Every section is optional: an empty file is the embedded default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerSection,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreSection,
    /// `[[tokens]]`.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// `[console]`.
    #[serde(default)]
    pub console: ConsoleSection,
    /// `[channels.<platform>.accounts.<id>]`, checked by the channel that is compiled in.
    #[serde(default)]
    pub channels: BTreeMap<String, Spanned<toml::Table>>,
    /// `[[policy]]` rules, first match wins.
    #[serde(default)]
    pub policy: Vec<PolicyEntry>,
    /// `[redaction]`.
    #[serde(default)]
    pub redaction: RedactionSection,
    /// `[retention]`.
    #[serde(default)]
    pub retention: RetentionSection,
    /// `[webhooks]`.
    #[serde(default)]
    pub webhooks: WebhooksSection,
    /// `[grants]`.
    #[serde(default)]
    pub grants: GrantsSection,
}

/// `[grants]` (PO-3).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsSection {
    /// Environment variables an exact grant does not compare (say `TERM` or `COLUMNS`); every
    /// other variable's name and value must match.
    #[serde(default)]
    pub ignore_env: Vec<Spanned<String>>,
}

/// `[webhooks]` (API-5).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    /// HMAC secret for `Assent-Signature`; default: generated into `<data dir>/webhook.secret`.
    pub secret: Option<String>,
    /// Secret variant.
    pub secret_env: Option<String>,
    /// Secret variant.
    pub secret_file: Option<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// API and console address; default `127.0.0.1:8740`.
    pub listen: Option<Spanned<String>>,
    /// Public base URL, for links on cards.
    pub public_url: Option<String>,
    /// Allow plain HTTP on a non-loopback address (CH-WEB-1).
    #[serde(default)]
    pub insecure_http: bool,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://assent.db` (relative to the data dir) or `postgres://…`.
    pub url: Option<String>,
    /// Secret variant of `url` for PostgreSQL passwords.
    pub url_env: Option<String>,
    /// Secret variant of `url`.
    pub url_file: Option<String>,
    /// `normal` or `power-loss`.
    #[serde(default)]
    pub durability: DurabilityKey,
}

/// `store.durability`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DurabilityKey {
    /// `synchronous = NORMAL`.
    #[default]
    Normal,
    /// `synchronous = FULL`.
    PowerLoss,
}

/// One `[[tokens]]` entry: only the SHA-256 of the token is configured.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Name, shown in the audit log as `token:<name>`.
    pub name: String,
    /// Hex SHA-256 of the token (`assent token new` prints it).
    pub sha256: Spanned<String>,
    /// `request`, `approve`, `admin`, `metrics`.
    pub scopes: Vec<Scope>,
}

/// `[console]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// RT-11.
    #[serde(default)]
    pub route: ConsoleRouteKey,
}

/// `console.route`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsoleRouteKey {
    /// Always a route while no channel account is attached; else only while connected.
    #[default]
    Auto,
    /// A route only while an approver has the console open.
    Connected,
    /// Always a route.
    Always,
}

/// One `[[policy]]` rule (PO-1).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Name recorded on each approval.
    pub name: String,
    /// Selector; every given key must match.
    #[serde(default, rename = "match")]
    pub matcher: MatchEntry,
    /// `unless-granted` (default) or `always`.
    #[serde(default)]
    pub ask: Ask,
    /// Approvals needed, 1..=9.
    #[serde(default = "one")]
    pub quorum: Spanned<QuorumCount>,
    /// Default timeout, e.g. `"15m"`.
    pub timeout: Option<Spanned<String>>,
    /// Offer allow-always.
    #[serde(default = "yes")]
    pub allow_always: bool,
    /// Scopes an allow-always may create.
    pub grant_scope: Option<Vec<Spanned<String>>>,
    /// `deny` (default) or `approve-unsafe`.
    #[serde(default)]
    pub on_timeout: TimeoutAction,
    /// Refuse the requester's own vote.
    #[serde(default)]
    pub prevent_self_approval: bool,
}

fn one() -> Spanned<QuorumCount> {
    Spanned::new(0..0, QuorumCount(1))
}

/// `quorum`: a count, refused in plain words when it is not one (`quorum = "two"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumCount(pub u8);

impl<'de> Deserialize<'de> for QuorumCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Count;
        impl serde::de::Visitor<'_> for Count {
            type Value = QuorumCount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a whole number of approvals from 1 to 9, such as quorum = 2")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<QuorumCount, E> {
                u8::try_from(v)
                    .map(QuorumCount)
                    .map_err(|_| E::custom(format!("quorum must be 1..=9, not {v}")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<QuorumCount, E> {
                u8::try_from(v)
                    .map(QuorumCount)
                    .map_err(|_| E::custom(format!("quorum must be 1..=9, not {v}")))
            }
        }
        d.deserialize_any(Count)
    }
}

fn yes() -> bool {
    true
}

/// `match = { … }` of a policy rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchEntry {
    /// `exec`, `plugin` or `binding`.
    pub kind: Option<Kind>,
    /// Agent id.
    pub agent: Option<String>,
    /// Session key.
    pub session: Option<String>,
    /// Executable path or basename.
    pub executable: Option<String>,
    /// Plugin id.
    pub plugin: Option<String>,
}

/// `[redaction]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionSection {
    /// Extra regexes whose matches are masked on cards, events and the console.
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
}

/// `[retention]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// How long terminal approvals and the audit log are kept (ST-6), default `"90d"`.
    pub keep: Option<Spanned<String>>,
}

/// A parsed file with its source, so later checks can point at lines.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The settings.
    pub config: Config,
    /// Where they came from (`None`: built-in defaults).
    pub path: Option<PathBuf>,
    source: String,
}

impl LoadedConfig {
    /// The built-in defaults (no file).
    pub fn defaults() -> Self {
        Self { config: Config::default(), path: None, source: String::new() }
    }

    /// Reads and parses `path`. Unknown keys and wrong types are errors with the line.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Self::parse(&source, Some(path.to_owned()))
    }

    /// Parses `source` (`path` is only used in messages).
    pub fn parse(source: &str, path: Option<PathBuf>) -> Result<Self, ConfigError> {
        let file = path.as_ref().map_or_else(|| "<config>".to_owned(), |p| p.display().to_string());
        let config: Config = toml::from_str(source).map_err(|e| ConfigError {
            line: e.span().map(|s| line_of(source, s.start)),
            file,
            message: e.message().to_owned(),
        })?;
        let loaded = Self { config, path, source: source.to_owned() };
        loaded.policy()?;
        loaded.ignore_env()?;
        loaded.retention()?;
        loaded.listen()?;
        Ok(loaded)
    }

    fn error<T>(&self, span: std::ops::Range<usize>, message: String) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file(),
            line: (span.end > 0).then(|| line_of(&self.source, span.start)),
            message,
        })
    }

    /// The file name for messages.
    pub fn file(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            // Text parsed without a file (tests, tools) is not the embedded default.
            None if !self.source.is_empty() => "<config>".to_owned(),
            None => "<defaults>".to_owned(),
        }
    }

    /// `server.listen`, parsed.
    pub fn listen(&self) -> Result<SocketAddr, ConfigError> {
        let Some(listen) = &self.config.server.listen else {
            return Ok(DEFAULT_LISTEN.parse().unwrap_or_else(|_| unreachable!("a valid literal")));
        };
        match listen.get_ref().parse::<SocketAddr>() {
            Ok(addr) if !addr.ip().is_loopback() && !self.config.server.insecure_http => self.error(
                listen.span(),
                format!(
                    "server.listen = \"{addr}\" is not a loopback address; the console has no TLS of its \
                     own, so put it behind a TLS proxy and set server.insecure_http = true"
                ),
            ),
            Ok(addr) => Ok(addr),
            Err(_) => self.error(
                listen.span(),
                format!("server.listen = \"{}\" is not an address like \"127.0.0.1:8740\"", listen.get_ref()),
            ),
        }
    }

    /// `--listen`, checked like `server.listen` (CH-WEB-1): plain HTTP is served on a loopback
    /// address only, unless `server.insecure_http` says a TLS proxy is in front.
    pub fn listen_override(&self, addr: SocketAddr) -> Result<SocketAddr, ConfigError> {
        if addr.ip().is_loopback() || self.config.server.insecure_http {
            return Ok(addr);
        }
        Err(ConfigError {
            file: "--listen".to_owned(),
            line: None,
            message: format!(
                "{addr} is not a loopback address; the console has no TLS of its own, so put it behind a \
                 TLS proxy and set server.insecure_http = true in the configuration"
            ),
        })
    }

    /// ST-6 retention.
    pub fn retention(&self) -> Result<Option<Duration>, ConfigError> {
        match &self.config.retention.keep {
            None => Ok(None),
            Some(keep) => match parse_duration(keep.get_ref()) {
                Ok(d) => Ok(Some(d)),
                Err(e) => self.error(keep.span(), format!("retention.keep: {e}")),
            },
        }
    }

    /// `[grants] ignore_env`, checked: names only, as a request's `env` would spell them.
    pub fn ignore_env(&self) -> Result<Vec<String>, ConfigError> {
        let mut names = Vec::new();
        for name in &self.config.grants.ignore_env {
            let n = name.get_ref();
            if n.is_empty() || n.contains('=') || n.chars().any(char::is_control) {
                return self.error(
                    name.span(),
                    format!(
                        "grants.ignore_env: `{}` is not a variable name; write names such as \"TERM\"",
                        n.escape_debug()
                    ),
                );
            }
            names.push(n.clone());
        }
        Ok(names)
    }

    /// The policy the engine enforces.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let patterns: Vec<String> =
            self.config.redaction.patterns.iter().map(|p| p.get_ref().clone()).collect();
        let redactor = match Redactor::new(&patterns) {
            Ok(r) => r,
            Err(e) => {
                let span = self.config.redaction.patterns.first().map(Spanned::span).unwrap_or(0..0);
                return self.error(span, format!("redaction.patterns: {e}"));
            }
        };
        let mut rules = Vec::new();
        for entry in &self.config.policy {
            rules.push(self.rule(entry)?);
        }
        Ok(Policy { rules, redactor, ..Policy::default() })
    }

    fn rule(&self, e: &PolicyEntry) -> Result<PolicyRule, ConfigError> {
        let quorum = e.quorum.get_ref().0;
        if !(1..=9).contains(&quorum) {
            return self
                .error(e.quorum.span(), format!("policy `{}`: quorum must be 1..=9, not {quorum}", e.name));
        }
        let timeout = match &e.timeout {
            None => None,
            Some(t) => match parse_duration(t.get_ref()) {
                Ok(d) => {
                    if let Err(why) = timeout_fits(d, e.matcher.kind) {
                        return self.error(
                            t.span(),
                            format!("policy `{}`: timeout = \"{}\" {why}", e.name, t.get_ref()),
                        );
                    }
                    Some(d)
                }
                Err(err) => return self.error(t.span(), format!("policy `{}`: timeout: {err}", e.name)),
            },
        };
        let mut grant_scope = Vec::new();
        for s in e.grant_scope.iter().flatten() {
            match ScopeOption::parse(s.get_ref()) {
                Ok(o) => grant_scope.push(o),
                Err(err) => return self.error(s.span(), format!("policy `{}`: grant_scope: {err}", e.name)),
            }
        }
        if grant_scope.is_empty() {
            grant_scope.push(ScopeOption::ExactArgv);
        }
        let m = &e.matcher;
        Ok(PolicyRule {
            name: e.name.clone(),
            matcher: RuleMatch {
                kind: m.kind,
                agent: m.agent.clone(),
                session: m.session.clone(),
                executable: m.executable.clone(),
                plugin: m.plugin.clone(),
            },
            ask: e.ask,
            quorum,
            timeout,
            allow_always: e.allow_always,
            grant_scope,
            on_timeout: e.on_timeout,
            prevent_self_approval: e.prevent_self_approval,
        })
    }

    /// The file's text (empty for the built-in defaults).
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// An error at a byte range of the file (its line), or at the file itself.
    pub(crate) fn error_at(&self, span: Option<std::ops::Range<usize>>, message: String) -> ConfigError {
        ConfigError { file: self.file(), line: span.map(|s| line_of(&self.source, s.start)), message }
    }
}

fn line_of(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].bytes().filter(|b| *b == b'\n').count() + 1
}
