//! API tokens (API-1, NF-12): configured as SHA-256 hashes with scopes, compared in constant
//! time; plaintext tokens are never stored. Also the first-run admin token (CLI-8).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ConfigError, LoadedConfig};

pub use crate::scope::Scope;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Token name.
    pub name: String,
    scopes: Vec<Scope>,
}

impl Principal {
    /// `token:<name>`, the requester principal stored on approvals.
    pub fn id(&self) -> String {
        format!("token:{}", self.name)
    }

    /// Whether the caller has `scope` (admin implies request and approve).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
            || (self.scopes.contains(&Scope::Admin) && matches!(scope, Scope::Request | Scope::Approve))
    }
}

/// The name of the first-run admin token.
pub const ADMIN_TOKEN_NAME: &str = "admin";

/// The file holding the first-run admin token in the data dir (CLI-8).
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Known token hashes.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Principal>,
}

impl Tokens {
    /// The tokens of `[[tokens]]`.
    pub fn from_config(config: &LoadedConfig) -> Result<Self, ConfigError> {
        let mut tokens = Self::default();
        for t in &config.config.tokens {
            let Some(hash) = parse_hex32(t.sha256.get_ref()) else {
                return Err(ConfigError {
                    file: config.file(),
                    line: None,
                    message: format!(
                        "tokens `{}`: sha256 must be 64 hex digits (`assent token new` prints it)",
                        t.name
                    ),
                });
            };
            tokens.insert(hash, Principal { name: t.name.clone(), scopes: t.scopes.clone() });
        }
        Ok(tokens)
    }

    /// Adds a token by hash.
    pub fn insert(&mut self, hash: [u8; 32], principal: Principal) {
        self.by_hash.insert(hash, principal);
    }

    /// Whether no token is configured at all.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The caller presenting `token`, compared in constant time against every known hash.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for (hash, principal) in &self.by_hash {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(principal.clone());
            }
        }
        found
    }
}

/// The tokens in force: read on every request, replaced whole when the configuration is reloaded
/// (`SIGHUP`), so revoking a token needs no restart (issue 9, finding 17).
#[derive(Debug, Default)]
pub struct LiveTokens(std::sync::RwLock<std::sync::Arc<Tokens>>);

impl LiveTokens {
    /// Starts with `tokens`.
    pub fn new(tokens: Tokens) -> Self {
        Self(std::sync::RwLock::new(std::sync::Arc::new(tokens)))
    }

    /// The tokens in force now.
    pub fn current(&self) -> std::sync::Arc<Tokens> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Puts `tokens` in force.
    pub fn replace(&self, tokens: Tokens) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(tokens);
    }
}

impl Tokens {
    /// Whether `principal` (name and scopes) still has a token.
    pub fn holds(&self, principal: &Principal) -> bool {
        self.by_hash.values().any(|p| p == principal)
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// The tokens of `config`, plus the first-run admin token in `data_dir` unless one of them
    /// can decide (CLI-8): adding a `request` token for an agent must never leave the server with
    /// nobody able to approve. Also returns the admin token file and whether it was just created.
    pub fn for_server(
        config: &LoadedConfig,
        data_dir: &Path,
    ) -> Result<(Self, Option<(PathBuf, bool)>), TokensError> {
        let mut tokens = Self::from_config(config)?;
        let can_decide = tokens
            .by_hash
            .values()
            .any(|p| p.scopes.iter().any(|s| matches!(s, Scope::Admin | Scope::Approve)));
        if can_decide {
            return Ok((tokens, None));
        }
        let (path, hash, created) = ensure_admin_token(data_dir).map_err(TokensError::AdminToken)?;
        tokens.insert(hash, admin(ADMIN_TOKEN_NAME));
        Ok((tokens, Some((path, created))))
    }
}

/// Why the server's tokens could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// A `[[tokens]]` entry is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The first-run admin token file could not be read or created.
    #[error("the admin token file: {0}")]
    AdminToken(std::io::Error),
}

/// An `admin` principal (the first-run token).
pub fn admin(name: &str) -> Principal {
    Principal { name: name.to_owned(), scopes: vec![Scope::Admin, Scope::Metrics] }
}

/// A fresh token: 32 random bytes, base64url. Never one that begins with `-`: a command line
/// would take `--token -x…` for an option (1 token in 64 used to).
pub fn new_token() -> Result<String, getrandom::Error> {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if !token.starts_with('-') {
            return Ok(token);
        }
    }
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// CLI-8: creates `<data dir>/admin.token` (mode 0600) once and returns its hash. The file holds
/// the token for the local CLI; the server keeps only the hash in memory.
pub fn ensure_admin_token(data_dir: &Path) -> std::io::Result<(PathBuf, [u8; 32], bool)> {
    let path = admin_token_path(data_dir);
    let (token, created) = data_dir_secret(&path)?;
    Ok((path, sha256(token.as_bytes()), created))
}

/// A random secret kept in a file of the data dir: read if present, else created once with
/// mode 0600 and synced. Returns it and whether it was just created.
pub(crate) fn data_dir_secret(path: &Path) -> std::io::Result<(String, bool)> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok((existing.trim().to_owned(), false));
    }
    let secret = new_token().map_err(std::io::Error::other)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    Ok((secret, true))
}

#[cfg(test)]
mod tests {
    /// Found by CI: `assent --token <token> grants list` failed with "unexpected argument" when
    /// the generated token began with `-`. 4,000 tokens would include about 62 such.
    #[test]
    fn no_token_begins_with_a_dash() {
        for _ in 0..4_000 {
            let token = super::new_token().unwrap();
            assert!(!token.starts_with('-'), "{token}");
        }
    }
}
