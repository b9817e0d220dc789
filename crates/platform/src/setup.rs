//! What a platform gets while it checks one account's keys.

use std::path::{Path, PathBuf};

/// One account being configured: its id, its table's name and the data directory.
#[derive(Debug, Clone)]
pub struct AccountSetup<'a> {
    /// Account id, the `<id>` of `[channels.<platform>.accounts.<id>]`.
    pub id: &'a str,
    /// The table's dotted name, `channels.matrix.accounts.main`.
    pub table: &'a str,
    /// assent's data directory, for state a platform keeps per account.
    pub data_dir: &'a Path,
    /// `server.public_url`: where platforms can reach this server.
    pub public_url: Option<&'a str>,
}

impl AccountSetup<'_> {
    /// The full name of one of the account's keys, for messages: `channels.matrix.accounts.main.password`.
    pub fn key(&self, name: &str) -> String {
        format!("{}.{name}", self.table)
    }

    /// The public URL of this account's hook, `<server.public_url>/hooks/<platform>/<id>`, or
    /// `None` without `server.public_url`.
    pub fn hook_url(&self, platform: &str) -> Option<String> {
        self.public_url.map(|u| format!("{}/hooks/{platform}/{}", u.trim_end_matches('/'), self.id))
    }

    /// `<data dir>/<platform>/<id>`: the default home of an account's own state.
    pub fn state_dir(&self, platform: &str) -> PathBuf {
        self.data_dir.join(platform).join(self.id)
    }

    /// A secret given as `name`, `name_env` or `name_file` (CFG-1), or an error naming the keys
    /// to set when none is.
    pub fn required_secret(
        &self,
        name: &str,
        inline: Option<&str>,
        env: Option<&str>,
        file: Option<&str>,
    ) -> Result<String, String> {
        let key = self.key(name);
        secret(&key, inline, env, file)?
            .ok_or_else(|| format!("{}: set {name}, {name}_env or {name}_file", self.table))
    }
}

/// Reads a secret given as `key`, `key_env` or `key_file` (CFG-1). `Ok(None)` when none is
/// given. The value never appears in errors.
pub fn secret(
    key: &str,
    inline: Option<&str>,
    env: Option<&str>,
    file: Option<&str>,
) -> Result<Option<String>, String> {
    match (inline, env, file) {
        (None, None, None) => Ok(None),
        (Some(v), None, None) => Ok(Some(v.to_owned())),
        (None, Some(var), None) => std::env::var(var)
            .map(Some)
            .map_err(|_| format!("{key}_env names ${var}, which is not set in assent's environment")),
        (None, None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end().to_owned()))
            .map_err(|e| format!("{key}_file = \"{path}\" cannot be read: {e}")),
        _ => Err(format!("give only one of {key}, {key}_env and {key}_file")),
    }
}
