//! The typed `/approve` grammar (IX-5) and its reply texts (IX-6).

use crate::{id::is_id_prefix, model::Decision};

/// The usage line (IX-6).
pub const USAGE: &str = "Usage: /approve <ref> <once|always|deny>";

/// A typed chat message as a channel sees it.
#[derive(Debug, Clone, Copy)]
pub struct TypedMessage<'a> {
    /// Message text.
    pub text: &'a str,
    /// The message is an edit of an earlier one (never decides).
    pub is_edit: bool,
    /// The sender is a bot (never decides).
    pub from_bot: bool,
}

/// What a message means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedCommand {
    /// Not an `/approve` command at all (bare "yes" or "ok" included): ignore quietly.
    NotACommand,
    /// `/approve@otherbot …`: ignore quietly.
    OtherBot,
    /// Looks like the command but is malformed: reply with the message.
    Usage(&'static str),
    /// A well-formed command.
    Approve {
        /// Lower-cased ref (≥ 8 characters) or full id.
        reference: String,
        /// Decision.
        decision: Decision,
        /// Trailing text, the deny reason (≤ 200 characters).
        reason: Option<String>,
    },
}

/// Parses a decision word, case-insensitively.
pub fn parse_decision(word: &str) -> Option<Decision> {
    match word.to_ascii_lowercase().as_str() {
        "once" | "allow" | "allow-once" | "allowonce" => Some(Decision::AllowOnce),
        "always" | "allow-always" | "allowalways" => Some(Decision::AllowAlways),
        "deny" | "reject" | "no" | "block" => Some(Decision::Deny),
        _ => None,
    }
}

/// Parses a message addressed to the bot named `bot_username` (without `@`).
pub fn parse_approve(msg: TypedMessage<'_>, bot_username: Option<&str>) -> ParsedCommand {
    if msg.is_edit || msg.from_bot {
        return ParsedCommand::NotACommand;
    }
    let text = msg.text.trim();
    // One command per message (IX-5): a second `/approve` line would otherwise ride along as
    // the first one's reason.
    if text.lines().skip(1).any(|line| is_command_word(line.split_whitespace().next().unwrap_or(""))) {
        return ParsedCommand::Usage("One command per message: send each /approve on its own.");
    }
    let mut words = text.split_whitespace();
    let Some(head) = words.next() else { return ParsedCommand::NotACommand };
    let head_lower = head.to_ascii_lowercase();
    let bare = head_lower.strip_prefix('/').unwrap_or(&head_lower);
    let (name, addressee) = match bare.split_once('@') {
        Some((n, bot)) => (n, Some(bot)),
        None => (bare, None),
    };
    if name != "approve" {
        return ParsedCommand::NotACommand;
    }
    if let Some(bot) = addressee
        && bot_username.is_none_or(|me| !me.eq_ignore_ascii_case(bot))
    {
        return ParsedCommand::OtherBot;
    }
    let (Some(first), Some(second)) = (words.next(), words.next()) else {
        return ParsedCommand::Usage(USAGE);
    };
    let (reference, decision) = match (parse_decision(first), parse_decision(second)) {
        (Some(d), None) => (second, d),
        (None, Some(d)) => (first, d),
        _ => return ParsedCommand::Usage(USAGE),
    };
    let reference = reference.to_ascii_lowercase();
    if reference.len() < crate::id::REF_LEN || !is_id_prefix(&reference) {
        return ParsedCommand::Usage(USAGE);
    }
    // The reason is the rest of the original text after the second word. A reason that starts
    // with another decision word ("once deny") is a conflict, never a guess.
    let reason = rest_after_words(text, 3).filter(|r| !r.is_empty());
    let conflicting = reason
        .as_deref()
        .and_then(|r| r.split_whitespace().next())
        .and_then(parse_decision)
        .is_some_and(|d| d != decision);
    if conflicting {
        return ParsedCommand::Usage("Conflicting decisions: give exactly one of once, always or deny.");
    }
    if reason.as_ref().is_some_and(|r| r.chars().count() > 200) {
        return ParsedCommand::Usage("The reason is limited to 200 characters.");
    }
    ParsedCommand::Approve { reference, decision, reason }
}

/// `approve`, `/approve` or either addressed with `@…`.
fn is_command_word(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    let bare = lower.strip_prefix('/').unwrap_or(&lower);
    bare.split('@').next() == Some("approve")
}

fn rest_after_words(text: &str, n: usize) -> Option<String> {
    let mut rest = text;
    for _ in 0..n {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        rest = &rest[end..];
    }
    Some(rest.trim().to_owned())
}

/// IX-6 reply for a recorded decision: "Recorded: allow once for {ref}." or, for a non-final vote,
/// "Recorded your approval for {ref} (1/2).".
pub fn recorded_text(reference: &str, decision: Decision, progress: Option<(usize, u8)>) -> String {
    match progress {
        Some((n, of)) => format!("Recorded your approval for {reference} ({n}/{of})."),
        None => format!("Recorded: {} for {reference}.", decision.label()),
    }
}

/// IX-9.
pub const ALREADY_RECORDED: &str = "Already recorded.";

/// RT-1 reply when approvals are off.
pub const APPROVALS_OFF: &str = "Approvals are off for this bot.";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ParsedCommand {
        parse_approve(TypedMessage { text, is_edit: false, from_bot: false }, Some("assentbot"))
    }

    fn approve(r: &str, d: Decision, reason: Option<&str>) -> ParsedCommand {
        ParsedCommand::Approve { reference: r.to_owned(), decision: d, reason: reason.map(str::to_owned) }
    }

    #[test]
    fn ix_5_grammar_accepts_every_documented_form() {
        use Decision::*;
        assert_eq!(p("/approve a1b2c3d4 once"), approve("a1b2c3d4", AllowOnce, None));
        assert_eq!(p("approve A1B2C3D4 allow"), approve("a1b2c3d4", AllowOnce, None));
        assert_eq!(
            p("/APPROVE deny a1b2c3d4 too broad, ask Kim"),
            approve("a1b2c3d4", Deny, Some("too broad, ask Kim"))
        );
        assert_eq!(p("/approve@AssentBot a1b2c3d4 allowalways"), approve("a1b2c3d4", AllowAlways, None));
        for w in ["always", "allow-always"] {
            assert_eq!(p(&format!("/approve a1b2c3d4 {w}")), approve("a1b2c3d4", AllowAlways, None));
        }
        for w in ["deny", "reject", "no", "block", "Block"] {
            assert_eq!(p(&format!("/approve a1b2c3d4 {w}")), approve("a1b2c3d4", Deny, None));
        }
        for w in ["once", "allow", "allow-once", "allowonce"] {
            assert_eq!(p(&format!("approve {w} a1b2c3d4")), approve("a1b2c3d4", AllowOnce, None));
        }
    }

    #[test]
    fn ix_5_bare_words_edits_bots_and_other_bots_never_decide() {
        for text in ["yes", "ok", "approve", "approved a1b2c3d4 once", ""] {
            let r = p(text);
            assert!(matches!(r, ParsedCommand::NotACommand | ParsedCommand::Usage(_)), "{text}: {r:?}");
        }
        assert_eq!(p("yes"), ParsedCommand::NotACommand);
        assert_eq!(p("/approve@otherbot a1b2c3d4 once"), ParsedCommand::OtherBot);
        let edit = TypedMessage { text: "/approve a1b2c3d4 once", is_edit: true, from_bot: false };
        assert_eq!(parse_approve(edit, None), ParsedCommand::NotACommand);
        let bot = TypedMessage { text: "/approve a1b2c3d4 once", is_edit: false, from_bot: true };
        assert_eq!(parse_approve(bot, None), ParsedCommand::NotACommand);
    }

    #[test]
    fn ix_5_questionable_forms_are_decided_one_way() {
        use Decision::*;
        // The slash is optional (IX-5), so a bare `approve` command decides too.
        assert_eq!(p("approve a1b2c3d4 deny"), approve("a1b2c3d4", Deny, None));
        // Conflicting decision words never pick one.
        assert!(
            matches!(p("/approve a1b2c3d4 once deny"), ParsedCommand::Usage(m) if m.contains("Conflicting"))
        );
        assert!(
            matches!(p("/approve deny a1b2c3d4 always"), ParsedCommand::Usage(m) if m.contains("Conflicting"))
        );
        assert_eq!(
            p("/approve a1b2c3d4 deny no, wrong host"),
            approve("a1b2c3d4", Deny, Some("no, wrong host"))
        );
        // One command per message: a second line cannot ride along as the reason.
        let two = p("/approve a1b2c3d4 once\n/approve e5f6g7h8 deny");
        assert!(matches!(two, ParsedCommand::Usage(m) if m.contains("One command")), "{two:?}");
        let two = p("/approve a1b2c3d4 deny\napprove@assentbot e5f6g7h8 once");
        assert!(matches!(two, ParsedCommand::Usage(_)), "{two:?}");
        assert_eq!(
            p("/approve a1b2c3d4 deny too broad\nask Kim"),
            approve("a1b2c3d4", Deny, Some("too broad\nask Kim"))
        );
        // Matrix addresses the bot by its user id without the `@`.
        let mx = |text| {
            parse_approve(TypedMessage { text, is_edit: false, from_bot: false }, Some("assent:example.org"))
        };
        assert_eq!(mx("/approve@assent:example.org a1b2c3d4 once"), approve("a1b2c3d4", AllowOnce, None));
        assert_eq!(mx("/approve@other:example.org a1b2c3d4 once"), ParsedCommand::OtherBot);
        assert_eq!(mx("/approve a1b2c3d4 always"), approve("a1b2c3d4", AllowAlways, None));
    }

    #[test]
    fn ix_5_short_or_malformed_refs_get_usage() {
        assert_eq!(p("/approve a1b2 once"), ParsedCommand::Usage(USAGE));
        assert_eq!(p("/approve a1b2c3d4"), ParsedCommand::Usage(USAGE));
        assert_eq!(p("/approve once deny"), ParsedCommand::Usage(USAGE));
        assert_eq!(p("/approve a1b2c3d! once"), ParsedCommand::Usage(USAGE));
        let long = format!("/approve a1b2c3d4 deny {}", "x".repeat(201));
        assert!(matches!(p(&long), ParsedCommand::Usage(m) if m.contains("200")));
    }

    #[test]
    fn ix_6_reply_texts() {
        assert_eq!(
            recorded_text("a1b2c3d4", Decision::AllowOnce, None),
            "Recorded: allow once for a1b2c3d4."
        );
        assert_eq!(
            recorded_text("a1b2c3d4", Decision::AllowOnce, Some((1, 2))),
            "Recorded your approval for a1b2c3d4 (1/2)."
        );
    }
}
