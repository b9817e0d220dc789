//! Small pieces every console page shares: escaping, badges, times, and the command shown so a
//! dangerous request is obvious (wrapped at token boundaries, escaped characters flagged).

use std::fmt::Write as _;

use assent_core::{
    clock::Timestamp,
    model::{Action, Approval, Kind, Mode, Reason, Severity, Status},
    text::{Redactor, describe_escaped, escaped_characters, sanitize},
};

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time as UTC text that the page's script turns into local, relative wording.
pub(crate) fn time(t: Timestamp) -> String {
    let rfc = t.to_rfc3339();
    let shown = format!("{} {} UTC", &rfc[..10], &rfc[11..16]);
    format!("<time datetime=\"{rfc}\" data-ts=\"{}\">{shown}</time>", t.as_millis())
}

/// What the console calls an approval: the card's title without its "Approval needed:" prefix,
/// which every item on a page of approvals would repeat.
pub(crate) fn heading(a: &Approval, r: &Redactor) -> String {
    let clean = |s: &str| sanitize(&r.redact(s).text, false);
    match &a.action {
        Action::Exec(_) => "Run a command".to_owned(),
        Action::Plugin(p) => clean(&p.title),
        Action::Binding(b) => format!("Let {} take over a conversation", clean(&b.plugin.name)),
    }
}

/// The first line of the shown text, cut at `max` characters with an ellipsis.
pub(crate) fn preview(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max || text.lines().nth(1).is_some() {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else {
        line.to_owned()
    }
}

pub(crate) fn kind_badge(kind: Kind) -> String {
    let label = match kind {
        Kind::Exec => "Command",
        Kind::Plugin => "Plugin action",
        Kind::Binding => "Conversation",
    };
    format!("<span class=\"badge kind\">{label}</span>")
}

pub(crate) fn severity_badge(a: &Approval) -> String {
    let Action::Plugin(p) = &a.action else { return String::new() };
    let (class, label) = match p.severity {
        Severity::Info => ("info", "Info"),
        Severity::Warning => ("warning", "Warning"),
        Severity::Critical => ("critical", "Critical"),
    };
    format!("<span class=\"badge sev-{class}\">{label}</span>")
}

/// A warning badge for text with invisible or direction-changing characters.
pub(crate) fn hidden_badge(a: &Approval) -> String {
    if escaped_characters(raw_text(a)).is_empty() {
        String::new()
    } else {
        "<span class=\"badge sev-critical\">Hidden characters</span>".to_owned()
    }
}

/// A plugin action its plugin called critical.
pub(crate) fn critical(a: &Approval) -> bool {
    matches!(&a.action, Action::Plugin(p) if p.severity == Severity::Critical)
}

/// The status in a word or two, as a coloured badge.
pub(crate) fn status_badge(a: &Approval) -> String {
    let (class, label) = match (a.status, a.mode, a.reason) {
        (Status::Pending, ..) => ("pending", "Pending"),
        (Status::Approved, _, Some(Reason::Grant)) => ("approved", "Allowed by grant"),
        (Status::Approved, Some(Mode::Always), _) => ("approved", "Always allowed"),
        (Status::Approved, ..) => ("approved", "Approved once"),
        (Status::Denied, ..) => ("denied", "Denied"),
        (Status::Expired, ..) => ("expired", "Expired"),
        (Status::Cancelled, ..) => ("expired", "Cancelled"),
    };
    format!("<span class=\"badge status-{class}\">{label}</span>")
}

/// "1 of 2 approvals" with a bar, or nothing for a single approver.
pub(crate) fn quorum(votes: usize, required: u8) -> String {
    if required <= 1 {
        return String::new();
    }
    format!(
        "<span class=\"quorum\"><progress value=\"{votes}\" max=\"{required}\" \
         aria-label=\"Approvals\"></progress> {votes} of {required} approvals</span>"
    )
}

/// The shown (redacted, escaped) command as HTML: each shell word in its own box so lines break
/// between words, never inside one unless it is wider than the page, and each escaped character
/// marked.
pub(crate) fn command(shown: &str) -> String {
    let mut out = String::new();
    for (i, line) in shown.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for (j, word) in shell_words(line).into_iter().enumerate() {
            if j > 0 {
                out.push(' ');
            }
            let _ = write!(out, "<span class=\"word\">{}</span>", mark_escapes(&esc(word)));
        }
    }
    out
}

/// Splits at spaces outside quotes; quoted runs stay in their word. The text is a display form,
/// so a stray quote only makes a longer word.
fn shell_words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let (mut start, mut quote, mut escaped) = (0, None, false);
    for (i, c) in line.char_indices() {
        match (c, quote) {
            _ if escaped => escaped = false,
            ('\\', q) if q != Some('\'') => escaped = true,
            ('\'' | '"', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            (' ', None) => {
                if start < i {
                    words.push(&line[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < line.len() {
        words.push(&line[start..]);
    }
    words
}

/// Wraps each `\u{XXXX}` escape that sanitizing wrote in a `<mark>`.
fn mark_escapes(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find("\\u{") {
        let tail = &rest[at..];
        let Some(end) = tail.find('}').filter(|&e| (4..=9).contains(&e)) else {
            out.push_str(&rest[..at + 3]);
            rest = &rest[at + 3..];
            continue;
        };
        out.push_str(&rest[..at]);
        let _ = write!(
            out,
            "<mark class=\"escaped\" title=\"an invisible or control character\">{}</mark>",
            &tail[..=end]
        );
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A warning naming the invisible, direction-changing and control characters in `raw`, which
/// the shown text carries as `\u{…}` escapes; empty when there are none.
pub(crate) fn escaped_warning(raw: &str) -> String {
    let found = escaped_characters(raw);
    if found.is_empty() {
        return String::new();
    }
    let list: Vec<String> = found.iter().map(|c| describe_escaped(*c)).collect();
    format!(
        "<div class=\"warning\" id=\"suspicious\" role=\"alert\"><strong>Look closely: this text contains \
         characters you cannot see.</strong> They are shown as highlighted <code>\\u{{…}}</code> escapes: \
         {}. Such characters can make a command look different from what runs.</div>",
        esc(&list.join(", "))
    )
}

/// The raw text the main block of `a` shows, before redaction (for finding hidden characters).
pub(crate) fn raw_text(a: &Approval) -> &str {
    match &a.action {
        Action::Exec(e) => &e.command_text,
        Action::Plugin(p) => &p.description,
        Action::Binding(b) => &b.summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_break_outside_quotes_only() {
        assert_eq!(
            shell_words("echo 'a b' \"c d\" e\\ f  g"),
            vec!["echo", "'a b'", "\"c d\"", "e\\ f", "g"]
        );
        assert_eq!(shell_words("'it'\\''s ok' x"), vec!["'it'\\''s ok'", "x"]);
    }

    #[test]
    fn escapes_are_marked_and_html_is_escaped() {
        let html = command("rm \\u{202E}fdp <x>");
        assert!(html.contains("<mark class=\"escaped\""), "{html}");
        assert!(html.contains(">\\u{202E}</mark>fdp"), "{html}");
        assert!(html.contains("&lt;x&gt;"), "{html}");
    }

    #[test]
    fn a_warning_names_each_hidden_character() {
        let w = escaped_warning("ls \u{202E}txt.exe");
        assert!(w.contains("U+202E (changes text direction)"), "{w}");
        assert!(escaped_warning("ls -la").is_empty());
    }
}
