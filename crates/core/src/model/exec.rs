//! Exec approvals (DM-2): the exact argv, never a requester-supplied command string.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::validate::{ValidationError, max_bytes, no_nul, one_line};

/// An exec request as a requester sends it. Environment values are only hashed, never kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecRequest {
    /// The exact argument vector.
    pub argv: Vec<String>,
    /// Absolute path of the executable, if resolved by the requester (`assent run` does).
    #[serde(default)]
    pub executable: Option<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Environment the command will get; only the keys and a digest are kept.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host the command will run on.
    #[serde(default)]
    pub host: String,
}

/// A validated exec action as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecAction {
    /// The exact argument vector.
    pub argv: Vec<String>,
    /// Absolute path of the executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Sorted environment keys (names only).
    pub env_keys: Vec<String>,
    /// SHA-256 of the sorted `k=v` lines, if any environment was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_digest: Option<String>,
    /// The digest an exact grant compares when `[grants] ignore_env` left some variables out:
    /// SHA-256 of the significant `k=v` lines, or `""` when none is significant. Absent when
    /// every variable counts, and then `env_digest` is compared (PO-3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_env_digest: Option<String>,
    /// Host name.
    pub host: String,
    /// `argv` rendered with POSIX quoting by assent.
    pub command_text: String,
    /// SHA-256 of the canonical `{argv, executable, cwd, env_digest, host}`.
    pub action_digest: String,
}

const MAX_ARGS: usize = 256;
const MAX_ARG_BYTES: usize = 4096;
const MAX_ARGV_BYTES: usize = 32 * 1024;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// SHA-256 as lowercase hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

impl ExecAction {
    /// The environment digest an exact grant compares: every variable, unless the operator
    /// named some to ignore (PO-3).
    pub fn significant_env_digest(&self) -> Option<&str> {
        match self.grant_env_digest.as_deref() {
            Some("") => None,
            Some(d) => Some(d),
            None => self.env_digest.as_deref(),
        }
    }
}

fn env_lines<'a>(env: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    env.map(|(k, v)| format!("{k}={v}\n")).collect()
}

impl ExecRequest {
    /// Validates the request and derives the stored action; every environment variable is
    /// significant to grants.
    pub fn into_action(self) -> Result<ExecAction, ValidationError> {
        self.into_action_ignoring(&[])
    }

    /// Like [`ExecRequest::into_action`], with the variables `ignore_env` names left out of
    /// what an exact grant compares (they still count in `action_digest`).
    pub fn into_action_ignoring(self, ignore_env: &[String]) -> Result<ExecAction, ValidationError> {
        validate_argv(&self.argv)?;
        if let Some(exe) = &self.executable
            && !exe.starts_with('/')
        {
            return Err(ValidationError::new("executable", "must be an absolute path"));
        }
        no_nul("executable", self.executable.as_deref())?;
        max_bytes("cwd", self.cwd.as_deref(), MAX_ARG_BYTES)?;
        no_nul("cwd", self.cwd.as_deref())?;
        max_bytes("host", Some(&self.host), 64)?;
        one_line("host", Some(&self.host))?;
        validate_env(&self.env)?;
        let env_digest = (!self.env.is_empty()).then(|| sha256_hex(env_lines(self.env.iter()).as_bytes()));
        let ignored = |k: &String| ignore_env.contains(k);
        let grant_env_digest = self.env.keys().any(ignored).then(|| {
            let significant = env_lines(self.env.iter().filter(|(k, _)| !ignored(k)));
            if significant.is_empty() { String::new() } else { sha256_hex(significant.as_bytes()) }
        });
        let env_keys: Vec<String> = self.env.into_keys().collect();
        let action_digest = action_digest(
            &self.argv,
            self.executable.as_deref(),
            self.cwd.as_deref(),
            env_digest.as_deref(),
            &self.host,
        );
        Ok(ExecAction {
            command_text: self.argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "),
            argv: self.argv,
            executable: self.executable,
            cwd: self.cwd,
            env_keys,
            env_digest,
            grant_env_digest,
            host: self.host,
            action_digest,
        })
    }
}

/// Environment names are one-line identifiers without `=`, and values hold no NUL or newline:
/// otherwise `{"A":"1\nB=2"}` and `{"A":"1","B":"2"}` would share one `env_digest` while the
/// card lists different names (issue 9, finding 9).
fn validate_env(env: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    if env.len() > MAX_ARGS {
        return Err(ValidationError::new("env", format!("at most {MAX_ARGS} variables, got {}", env.len())));
    }
    for (key, value) in env {
        let field = format!("env.{}", key.escape_debug());
        if key.is_empty() || key.contains('=') {
            return Err(ValidationError::new(field, "a variable name must be non-empty and contain no `=`"));
        }
        one_line(&field, Some(key))?;
        max_bytes(&field, Some(value), MAX_ARG_BYTES)?;
        if value.contains(['\0', '\n', '\r']) {
            return Err(ValidationError::new(field, "a value must not contain NUL, CR or LF"));
        }
    }
    Ok(())
}

fn validate_argv(argv: &[String]) -> Result<(), ValidationError> {
    if argv.is_empty() || argv.len() > MAX_ARGS {
        return Err(ValidationError::new("argv", format!("1 to {MAX_ARGS} items, got {}", argv.len())));
    }
    for (i, arg) in argv.iter().enumerate() {
        if arg.len() > MAX_ARG_BYTES {
            return Err(ValidationError::new(
                format!("argv[{i}]"),
                format!("at most {MAX_ARG_BYTES} bytes, got {}", arg.len()),
            ));
        }
        if arg.contains('\0') {
            return Err(ValidationError::new(format!("argv[{i}]"), "contains a NUL byte"));
        }
    }
    let total: usize = argv.iter().map(String::len).sum();
    if total > MAX_ARGV_BYTES {
        return Err(ValidationError::new(
            "argv",
            format!("at most {MAX_ARGV_BYTES} bytes in total, got {total}"),
        ));
    }
    Ok(())
}

/// The digest that binds a decision to exactly what runs (CLI-4 re-checks it).
pub fn action_digest(
    argv: &[String],
    executable: Option<&str>,
    cwd: Option<&str>,
    env_digest: Option<&str>,
    host: &str,
) -> String {
    #[derive(Serialize)]
    struct Canonical<'a> {
        argv: &'a [String],
        executable: Option<&'a str>,
        cwd: Option<&'a str>,
        env_digest: Option<&'a str>,
        host: &'a str,
    }
    let canonical = Canonical { argv, executable, cwd, env_digest, host };
    // Serializing a struct of strings cannot fail.
    let json = serde_json::to_vec(&canonical).unwrap_or_default();
    sha256_hex(&json)
}

/// Quotes one argument for a POSIX shell: bare when safe, else single-quoted.
pub fn shell_quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(argv: &[&str]) -> ExecRequest {
        ExecRequest { argv: argv.iter().map(|s| (*s).to_owned()).collect(), ..Default::default() }
    }

    #[test]
    fn digests_are_lowercase_hex_sha256_as_stored() {
        // Stored grants compare these strings: the encoding must never change.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hex(&[0x00, 0x0f, 0xf0, 0xff]), "000ff0ff");
    }

    #[test]
    fn dm_2_command_text_is_derived_with_posix_quoting() {
        let a = req(&["rm", "-rf", "my dir", "it's", ""]).into_action().unwrap();
        assert_eq!(a.command_text, r#"rm -rf 'my dir' 'it'\''s' ''"#);
    }

    #[test]
    fn dm_2_env_values_are_never_kept_only_keys_and_digest() {
        let mut r = req(&["deploy"]);
        r.env.insert("TOKEN".into(), "hunter2".into());
        r.env.insert("A".into(), "1".into());
        let a = r.into_action().unwrap();
        assert_eq!(a.env_keys, ["A", "TOKEN"]);
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("hunter2"));
        assert_eq!(a.env_digest.as_deref(), Some(sha256_hex(b"A=1\nTOKEN=hunter2\n").as_str()));
    }

    #[test]
    fn dm_2_digest_changes_with_every_bound_field() {
        let base = req(&["ls", "-l"]).into_action().unwrap();
        let mut other = req(&["ls", "-la"]);
        assert_ne!(base.action_digest, other.clone().into_action().unwrap().action_digest);
        other.argv = vec!["ls".into(), "-l".into()];
        other.cwd = Some("/tmp".into());
        assert_ne!(base.action_digest, other.into_action().unwrap().action_digest);
        assert_eq!(base.action_digest, req(&["ls", "-l"]).into_action().unwrap().action_digest);
    }

    #[test]
    fn dm_2_argv_limits_are_enforced_with_the_field_named() {
        assert_eq!(req(&[]).into_action().unwrap_err().field, "argv");
        assert_eq!(req(&["a", "b\0c"]).into_action().unwrap_err().field, "argv[1]");
        let long = "x".repeat(4097);
        assert_eq!(req(&["a", &long]).into_action().unwrap_err().field, "argv[1]");
        let many: Vec<&str> = vec!["a"; 257];
        assert_eq!(req(&many).into_action().unwrap_err().field, "argv");
        let big = "x".repeat(4000);
        let total: Vec<&str> = vec![big.as_str(); 9];
        assert!(req(&total).into_action().unwrap_err().message.contains("in total"));
        let mut rel = req(&["ls"]);
        rel.executable = Some("bin/ls".into());
        assert_eq!(rel.into_action().unwrap_err().field, "executable");
    }

    #[test]
    fn finding_9_env_cannot_smuggle_a_variable_past_the_card() {
        let env = |pairs: &[(&str, &str)]| {
            let mut r = req(&["make"]);
            r.env = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            r.into_action()
        };
        let smuggled = env(&[("A", "1\nLD_PRELOAD=/x")]).unwrap_err();
        assert_eq!(smuggled.field, "env.A");
        assert!(smuggled.message.contains("LF"), "{smuggled}");
        assert!(env(&[("A", "1"), ("LD_PRELOAD", "/x")]).is_ok());
        assert!(env(&[("A=B", "1")]).unwrap_err().message.contains("`=`"));
        assert!(env(&[("", "1")]).is_err());
        assert!(env(&[("A\0", "1")]).unwrap_err().message.contains("U+0000"));
        assert!(env(&[("A", "1\0")]).unwrap_err().message.contains("NUL"));
    }

    #[test]
    fn finding_9_nul_and_controls_are_refused_in_cwd_host_and_executable() {
        let mut r = req(&["ls"]);
        r.cwd = Some("/tmp\0/x".into());
        assert_eq!(r.into_action().unwrap_err().field, "cwd");
        let mut r = req(&["ls"]);
        r.host = "h\0st".into();
        assert_eq!(r.into_action().unwrap_err().field, "host");
        let mut r = req(&["ls"]);
        r.host = "h\r\nost".into();
        assert_eq!(r.into_action().unwrap_err().field, "host");
        let mut r = req(&["ls"]);
        r.executable = Some("/bin/l\0s".into());
        assert_eq!(r.into_action().unwrap_err().field, "executable");
    }

    #[test]
    fn po_3_ignored_variables_leave_the_grant_digest_but_not_the_action_digest() {
        let mut r = req(&["make"]);
        r.env.insert("TERM".into(), "xterm".into());
        r.env.insert("PROFILE".into(), "dev".into());
        let all = r.clone().into_action().unwrap();
        assert_eq!(all.grant_env_digest, None);
        assert_eq!(all.significant_env_digest(), all.env_digest.as_deref());
        let ignoring = r.clone().into_action_ignoring(&["TERM".into()]).unwrap();
        assert_eq!(ignoring.action_digest, all.action_digest, "what runs is still bound whole");
        assert_eq!(ignoring.significant_env_digest(), Some(sha256_hex(b"PROFILE=dev\n").as_str()));
        let only_term = req(&["make"]);
        let mut only_term = only_term;
        only_term.env.insert("TERM".into(), "xterm".into());
        assert_eq!(only_term.into_action_ignoring(&["TERM".into()]).unwrap().significant_env_digest(), None);
    }
}
