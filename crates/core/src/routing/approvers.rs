//! Approver normalization per platform (RT-2). Only platform-verified ids are accepted: display
//! names, usernames and e-mail addresses are refused, so a renamed account cannot approve.

use crate::model::Channel;

/// An approver entry that was dropped, with the reason `doctor` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidApprover {
    /// The raw config value.
    pub raw: String,
    /// Why it was refused and what to write instead.
    pub why: &'static str,
}

fn snowflake(s: &str) -> bool {
    (15..=21).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())
}

/// Normalizes one approver for `channel`, or says why it is refused.
pub fn normalize_approver(channel: Channel, raw: &str) -> Result<String, &'static str> {
    let s = raw.trim();
    match channel {
        Channel::Discord => {
            let inner = s
                .strip_prefix("<@!")
                .or_else(|| s.strip_prefix("<@"))
                .and_then(|r| r.strip_suffix('>'))
                .or_else(|| s.strip_prefix("user:"))
                .unwrap_or(s);
            if snowflake(inner) {
                Ok(inner.to_owned())
            } else {
                Err("Discord approvers are numeric user ids (snowflakes)")
            }
        }
        Channel::Slack => {
            let inner = s
                .strip_prefix("<@")
                .and_then(|r| r.strip_suffix('>'))
                .or_else(|| s.strip_prefix("slack:"))
                .or_else(|| s.strip_prefix("user:"))
                .unwrap_or(s)
                .to_ascii_uppercase();
            let ok = (inner.starts_with('U') || inner.starts_with('W'))
                && (9..=21).contains(&inner.len())
                && inner.chars().all(|c| c.is_ascii_alphanumeric());
            if ok { Ok(inner) } else { Err("Slack approvers are member ids starting with U or W") }
        }
        Channel::Telegram => match s.parse::<i64>() {
            Ok(id) if id > 0 => Ok(id.to_string()),
            Ok(_) => Err("Telegram approvers are positive user ids; group and channel ids are negative"),
            Err(_) => Err("Telegram approvers are numeric user ids, not @usernames"),
        },
        Channel::Matrix => {
            let ok = s.starts_with('@')
                && s[1..].split_once(':').is_some_and(|(local, server)| {
                    !local.is_empty()
                        && !server.is_empty()
                        && !s.contains('*')
                        && !s.contains(char::is_whitespace)
                });
            if ok {
                Ok(s.to_owned())
            } else {
                Err("Matrix approvers are full user ids like @kim:example.org")
            }
        }
        Channel::Console => {
            let ok = !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if ok { Ok(s.to_owned()) } else { Err("console approvers are user names of [A-Za-z0-9._-]") }
        }
    }
}

/// Normalizes a list, deduplicating and reporting dropped entries.
pub fn normalize_approvers(channel: Channel, raw: &[String]) -> (Vec<String>, Vec<InvalidApprover>) {
    let mut ok: Vec<String> = Vec::new();
    let mut bad = Vec::new();
    for r in raw {
        match normalize_approver(channel, r) {
            Ok(id) if !ok.contains(&id) => ok.push(id),
            Ok(_) => {}
            Err(why) => bad.push(InvalidApprover { raw: r.clone(), why }),
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rt_2_platform_ids_are_normalized_and_names_refused() {
        use Channel::*;
        assert_eq!(normalize_approver(Discord, "<@!111111111111111111>").unwrap(), "111111111111111111");
        assert_eq!(normalize_approver(Discord, "user:111111111111111111").unwrap(), "111111111111111111");
        assert!(normalize_approver(Discord, "kim#1234").is_err());
        assert_eq!(normalize_approver(Slack, "<@u012abcdef>").unwrap(), "U012ABCDEF");
        assert_eq!(normalize_approver(Slack, "slack:W012ABCDEF").unwrap(), "W012ABCDEF");
        assert!(normalize_approver(Slack, "kim@example.org").is_err());
        assert_eq!(normalize_approver(Telegram, " 123456789 ").unwrap(), "123456789");
        assert!(normalize_approver(Telegram, "-1001234567890").is_err());
        assert!(normalize_approver(Telegram, "@kim").is_err());
        assert_eq!(normalize_approver(Matrix, "@kim:example.org").unwrap(), "@kim:example.org");
        assert!(normalize_approver(Matrix, "@*:example.org").is_err());
        assert!(normalize_approver(Matrix, "kim").is_err());
    }

    #[test]
    fn rt_2_invalid_entries_are_dropped_and_reported() {
        let raw = vec!["123".to_owned(), "@kim".to_owned(), "123".to_owned()];
        let (ok, bad) = normalize_approvers(Channel::Telegram, &raw);
        assert_eq!(ok, ["123"]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].raw, "@kim");
    }
}
