//! Display text safety: redaction (PO-9), sanitizing (PO-10) and honest truncation (PO-11).
//!
//! Order matters: redact first, then sanitize, then fit to a budget, so a secret is never half
//! shown by a cut and an invisible character never hides part of a command.

use std::sync::Arc;

use regex::{Regex, RegexSet};

/// What a hidden value is replaced with.
pub const REDACTED: &str = "‹redacted›";

/// Built-in secret shapes. Each has an optional capture group 1 that is kept (the key name).
const BUILTIN_PATTERNS: &[&str] = &[
    // PEM private keys, whole block.
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    // Bearer tokens.
    r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}",
    // key=value, token: value, --password=value …
    // An unquoted value ends at whitespace, a separator, or an escaped newline or tab (`\n` in
    // JSON or a script shown escaped): what follows is the next line, not the secret.
    r#"(?i)(\b[a-z0-9_.-]*(?:key|token|secret|password|passwd|pwd)\b["']?\s*[=:]\s*)(?:"[^"]*"|'[^']*'|(?:[^\s"',;&|\\]|\\[^nrt])+)"#,
    // AWS access key ids.
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    // GitHub tokens.
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
    r"\bgithub_pat_[A-Za-z0-9_]{22,}\b",
    // Slack tokens.
    r"\bxox[abeprs]-[A-Za-z0-9-]{10,}",
    // A secret flag with its value as the next argument: `--password S3cr`, `--api-key 'x y'`.
    r#"(?i)(\s-{1,2}[a-z0-9_-]*(?:key|token|secret|password|passwd|pwd|pass)\s+)(?:'[^']*'|"[^"]*"|[^\s'"-]\S*)"#,
    // MySQL's attached password: `mysql -uroot -pS3cr`.
    r"(?i)(\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n]*?\s-p)[^\s']+",
    r"(?i)(\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n]*?\s'-p)[^']+(')",
    // Registry logins' short password flag: `docker login -p 'Pa55 word'`.
    r#"(?i)(\b(?:docker|podman|buildah|skopeo|helm|oras)\s+(?:registry\s+)?login\b[^\n]*?\s-p\s+)(?:'[^']*'|"[^"]*"|\S+)"#,
    // `curl -u user:password`, `--user user:password`.
    r"(\s(?:-u|--user)[\s=]+'?[^\s:'/]+:)[^\s'/][^\s']*",
    // Credentials in a URL: `postgres://app:Pa55@db`; the user and the host stay.
    r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@']+:)[^\s@/']+(@)",
    // OpenAI / Anthropic style keys and Stripe keys.
    r"\bsk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_-]{20,}",
    r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}",
    // JSON Web Tokens.
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    // Google API keys, GitLab, npm, PyPI and Hugging Face tokens.
    r"\bAIza[0-9A-Za-z_-]{35}\b",
    r"\bglpat-[A-Za-z0-9_-]{20,}",
    r"\bnpm_[A-Za-z0-9]{36}\b",
    r"\bpypi-[A-Za-z0-9_-]{50,}",
    r"\bhf_[A-Za-z0-9]{30,}\b",
];

/// Error for a configured redaction pattern that is not a valid regex.
#[derive(Debug, thiserror::Error)]
#[error("redaction.patterns[{index}] is not a valid regex: {source}")]
pub struct InvalidPattern {
    /// Position in `[redaction] patterns`.
    pub index: usize,
    /// The regex error.
    #[source]
    pub source: regex::Error,
}

/// Replaces secrets with [`REDACTED`] in display text.
///
/// Cheap to clone: clones share the compiled patterns. A cloned `Regex` gets a pool of scratch
/// space of its own, and the server clones its state for every request, so unshared patterns
/// once cost each waiting long poll ~46 KiB.
#[derive(Debug, Clone)]
pub struct Redactor(Arc<Patterns>);

#[derive(Debug)]
struct Patterns {
    each: Vec<Regex>,
    /// All patterns in one automaton: most text has no secret, and one pass proves it.
    any: Option<RegexSet>,
}

/// Redacted text and how many values were hidden (the card says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The text with secrets replaced.
    pub text: String,
    /// Number of replaced values.
    pub hidden: usize,
}

impl Default for Redactor {
    fn default() -> Self {
        // The built-in patterns are constants covered by tests, so they always compile.
        Self::new(&[]).unwrap_or_else(|_| Self(Arc::new(Patterns { each: Vec::new(), any: None })))
    }
}

impl Redactor {
    /// Built-ins plus the configured patterns.
    pub fn new(extra: &[String]) -> Result<Self, InvalidPattern> {
        let mut patterns = Vec::with_capacity(BUILTIN_PATTERNS.len() + extra.len());
        for p in BUILTIN_PATTERNS {
            patterns.push(Regex::new(p).map_err(|source| InvalidPattern { index: usize::MAX, source })?);
        }
        for (index, p) in extra.iter().enumerate() {
            patterns.push(Regex::new(p).map_err(|source| InvalidPattern { index, source })?);
        }
        // A set that fails to build (size limits) only disables the shortcut.
        let any = RegexSet::new(patterns.iter().map(Regex::as_str)).ok();
        Ok(Self(Arc::new(Patterns { each: patterns, any })))
    }

    /// Redacts `text`.
    pub fn redact(&self, text: &str) -> Redacted {
        if self.0.any.as_ref().is_some_and(|set| !set.is_match(text)) {
            return Redacted { text: text.to_owned(), hidden: 0 };
        }
        let mut current = text.to_owned();
        let mut hidden = 0;
        for re in &self.0.each {
            let mut count = 0;
            let replaced = re.replace_all(&current, |caps: &regex::Captures<'_>| {
                count += 1;
                // Group 1 is kept before the mask and group 2, if any, after it.
                let keep = caps.get(1).map_or("", |m| m.as_str());
                let tail = caps.get(2).map_or("", |m| m.as_str());
                format!("{keep}{REDACTED}{tail}")
            });
            if count > 0 {
                current = replaced.into_owned();
                hidden += count;
            }
        }
        Redacted { text: current, hidden }
    }
}

/// True for Unicode format characters (category Cf) and the line/paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// Renders control and invisible characters as `\u{XXXX}` (PO-10). Newline and tab survive only
/// when `code_block` is true.
pub fn sanitize(text: &str, code_block: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let keep_ws = code_block && (c == '\n' || c == '\t');
        if (c.is_control() && !keep_ws) || is_invisible(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The characters [`sanitize`] escapes in `text` (newline and tab aside), each once, in order of
/// appearance: what a console should flag, since an escaped `\u{202E}` is easy to read past.
pub fn escaped_characters(text: &str) -> Vec<char> {
    let mut found = Vec::new();
    for c in text.chars() {
        if ((c.is_control() && c != '\n' && c != '\t') || is_invisible(c)) && !found.contains(&c) {
            found.push(c);
        }
    }
    found
}

/// A short description of a character [`escaped_characters`] finds, naming the direction
/// overrides and zero-width characters that disguise commands.
pub fn describe_escaped(c: char) -> String {
    let what = match c as u32 {
        0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F | 0x061C => "changes text direction",
        0x200B..=0x200D | 0x2060 | 0xFEFF => "zero-width, invisible",
        0x00AD => "soft hyphen, invisible",
        0x2028 | 0x2029 => "line or paragraph separator",
        _ if c.is_control() => "control character",
        _ => "invisible formatting character",
    };
    format!("U+{:04X} ({what})", c as u32)
}

/// Neutralizes mass mentions (`@everyone`, `@here`, `@room`, `<!channel>`…) so a card never pings.
pub fn neutralize_mentions(text: &str) -> String {
    if !text.contains(['@', '<']) {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    for word in ["everyone", "here", "room", "channel"] {
        out = out.replace(&format!("@{word}"), &format!("@\u{2009}{word}"));
        out = out.replace(&format!("<!{word}"), &format!("<\u{2009}!{word}"));
    }
    out
}

/// A fence of backticks longer than any run inside `text` (at least three).
pub fn code_fence(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat((longest + 1).max(3))
}

/// Text prepared for a card: redacted, sanitized, and cut to a budget only with a notice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DisplayText {
    /// The full redacted, sanitized text.
    pub full: String,
    /// Number of secrets hidden.
    pub hidden: usize,
}

/// A [`DisplayText`] fitted to a character budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    /// The text to show.
    pub shown: String,
    /// `Some("Showing 1,200 of 5,310 characters")` when cut.
    pub notice: Option<String>,
}

impl DisplayText {
    /// Redacts then sanitizes `raw`.
    pub fn new(raw: &str, redactor: &Redactor, code_block: bool) -> Self {
        let redacted = redactor.redact(raw);
        Self { full: sanitize(&redacted.text, code_block), hidden: redacted.hidden }
    }

    /// Length in characters.
    pub fn chars(&self) -> usize {
        self.full.chars().count()
    }

    /// Cuts to `budget` characters, saying so (PO-11). Never cuts inside a `‹redacted›` marker or
    /// a `\u{…}` escape.
    pub fn fit(&self, budget: usize) -> Fitted {
        let total = self.chars();
        if total <= budget {
            return Fitted { shown: self.full.clone(), notice: None };
        }
        let mut cut: String = self.full.chars().take(budget).collect();
        for marker_start in [REDACTED.chars().next(), Some('\\')].into_iter().flatten() {
            if let Some(pos) = cut.rfind(marker_start) {
                let tail = &cut[pos..];
                let whole = &self.full[pos..];
                let complete = if marker_start == '\\' {
                    !whole.starts_with("\\u{") || tail.contains('}')
                } else {
                    !whole.starts_with(REDACTED) || tail.starts_with(REDACTED)
                };
                if !complete {
                    cut.truncate(pos);
                }
            }
        }
        let shown_chars = cut.chars().count();
        Fitted {
            shown: cut,
            notice: Some(format!(
                "Showing {} of {} characters",
                group_thousands(shown_chars),
                group_thousands(total)
            )),
        }
    }
}

/// `5310` → `5,310`.
pub fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cloned_redactor_shares_its_compiled_patterns() {
        // The server clones its state, redactor included, for every request and long poll.
        let r = Redactor::new(&["secret-[0-9]+".to_owned()]).unwrap();
        let c = r.clone();
        assert!(Arc::ptr_eq(&r.0, &c.0));
        assert_eq!(c.redact("x secret-42").hidden, 1);
    }

    use super::*;

    #[test]
    fn po_9_builtins_hide_common_secrets_and_count_them() {
        let r = Redactor::default();
        let cases = [
            ("curl -H 'Authorization: Bearer abcdef123456789'", "Bearer ‹redacted›"),
            ("deploy --token=s3cr3t-value", "--token=‹redacted›"),
            ("export API_KEY=xyz123 && run", "API_KEY=‹redacted›"),
            ("PASSWORD: 'hunter 2'", "PASSWORD: ‹redacted›"),
            ("aws AKIAIOSFODNN7EXAMPLE", "aws ‹redacted›"),
            ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh ‹redacted›"),
            ("xoxb-1234567890-abcdefghij", "‹redacted›"),
        ];
        for (input, expected) in cases {
            let out = r.redact(input);
            assert!(out.text.contains(expected), "{input} → {}", out.text);
            assert!(out.hidden >= 1);
        }
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----";
        assert_eq!(r.redact(pem).text, REDACTED);
        assert_eq!(r.redact("ls -la /tmp").hidden, 0);
    }

    #[test]
    fn po_9_redaction_stops_at_the_end_of_the_secret() {
        let r = Redactor::new(&[]).unwrap();
        // As JSON (a hook's tool input) and shell-escaped text carry it: `\n` is two characters.
        let escaped = r.redact(r"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\nDEBUG=1\tX=2").text;
        assert_eq!(escaped, r"AWS_SECRET_ACCESS_KEY=‹redacted›\nDEBUG=1\tX=2");
        let real = r.redact("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG\nDEBUG=1").text;
        assert_eq!(real, "AWS_SECRET_ACCESS_KEY=‹redacted›\nDEBUG=1");
        // Other backslashes belong to the secret.
        assert_eq!(r.redact(r"TOKEN=ab\cd ok").text, "TOKEN=‹redacted› ok");
    }

    #[test]
    fn po_9_configured_patterns_apply_and_bad_ones_are_named() {
        let r = Redactor::new(&["(?i)x-api-key: \\S+".to_owned()]).unwrap();
        assert_eq!(r.redact("curl -H x-api-key: abc").text, "curl -H ‹redacted›");
        let err = Redactor::new(&["ok".to_owned(), "(".to_owned()]).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.to_string().starts_with("redaction.patterns[1]"));
    }

    #[test]
    fn po_10_invisible_and_control_characters_are_escaped() {
        assert_eq!(sanitize("rm\u{202E}fdp", false), "rm\\u{202E}fdp");
        assert_eq!(sanitize("a\u{200B}b\u{FEFF}", false), "a\\u{200B}b\\u{FEFF}");
        assert_eq!(sanitize("a\u{2028}b", true), "a\\u{2028}b");
        assert_eq!(sanitize("a\nb\tc\u{7}", true), "a\nb\tc\\u{0007}");
        assert_eq!(sanitize("a\nb", false), "a\\u{000A}b");
    }

    #[test]
    fn po_10_escaped_characters_are_listed_once_with_what_they_do() {
        let found = escaped_characters("rm \u{202E}fdp\u{202E} a\nb\tc\u{7}\u{200B}");
        assert_eq!(found, vec!['\u{202E}', '\u{7}', '\u{200B}']);
        assert_eq!(describe_escaped('\u{202E}'), "U+202E (changes text direction)");
        assert_eq!(describe_escaped('\u{200B}'), "U+200B (zero-width, invisible)");
        assert_eq!(describe_escaped('\u{7}'), "U+0007 (control character)");
        assert!(escaped_characters("plain\ttext\n").is_empty());
    }

    #[test]
    fn po_10_code_fences_outgrow_backtick_runs() {
        assert_eq!(code_fence("ls"), "```");
        assert_eq!(code_fence("echo ````"), "`````");
    }

    #[test]
    fn ch_card_1_mass_mentions_are_neutralized() {
        let out = neutralize_mentions("hi @everyone and <!channel> @room @here");
        for bad in ["@everyone", "<!channel>", "@room", "@here"] {
            assert!(!out.contains(bad), "{out}");
        }
    }

    #[test]
    fn po_11_truncation_is_never_silent_and_redacts_first() {
        let r = Redactor::default();
        let raw = format!("{} --token=abc {}", "a".repeat(10), "b".repeat(5300));
        let d = DisplayText::new(&raw, &r, true);
        assert_eq!(d.hidden, 1);
        let fitted = d.fit(1200);
        assert_eq!(fitted.shown.chars().count(), 1200);
        assert_eq!(
            fitted.notice.as_deref(),
            Some(&*format!("Showing 1,200 of {} characters", group_thousands(d.chars())))
        );
        assert!(!d.full.contains("abc"));
        let short = d.fit(100_000);
        assert!(short.notice.is_none());
    }

    #[test]
    fn po_11_cut_never_splits_a_marker() {
        let d = DisplayText { full: format!("ab{REDACTED}cd"), hidden: 1 };
        assert_eq!(d.fit(5).shown, "ab");
        let e = DisplayText { full: "ab\\u{202E}cd".to_owned(), hidden: 0 };
        assert_eq!(e.fit(5).shown, "ab");
    }
}
