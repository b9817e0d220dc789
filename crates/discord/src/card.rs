//! Presentation (CH-DC-2): the card as one embed and one row of buttons.
//!
//! "Embed Limits": title 256, description 4,096, field values 1,024, 6,000 in all. The command
//! gets up to 3,500 characters of the description, fenced as code, with the honest "Showing n
//! of m" notice when cut; "Full command" then sends the rest privately. `custom_id` (at most
//! 100 characters) is the signed token. `allowed_mentions` is empty, so a command that says
//! `@everyone` pings nobody.

use assent_core::{
    capability::{FinalAction, Presentation},
    card::{CardView, ControlStyle, Phase},
    model::Severity,
};
use serde_json::{Value, json};

use crate::{DiscordChannel, DiscordEntry, DiscordError};

/// "Message Components": `custom_id` is at most 100 characters.
pub const CUSTOM_ID_LIMIT: usize = 100;
/// The share of the description the command may take (SPEC CH-DC-2).
const COMMAND_BUDGET: usize = 3500;
const TITLE_LIMIT: usize = 256;
const DESCRIPTION_LIMIT: usize = 4096;
const FIELD_LIMIT: usize = 1024;
const FOOTER_LIMIT: usize = 2048;

/// A rendered card: the message body for create and edit.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordCard {
    /// `{embeds, components, allowed_mentions}`.
    pub body: Value,
}

/// Whether decided cards are deleted rather than edited (`cleanup_after_resolve`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscordCards {
    /// Approved and denied cards are deleted once final.
    pub cleanup_after_resolve: bool,
}

impl Presentation<DiscordChannel> for DiscordCards {
    fn render(&self, view: &CardView) -> Result<DiscordCard, DiscordError> {
        render(view)
    }

    /// CH-DC-5: the final embed with no components; deleted instead for approvals and denials
    /// when the account cleans up.
    fn finish(&self, view: &CardView, _entry: &DiscordEntry) -> FinalAction<DiscordCard> {
        let decided = matches!(view.phase, Phase::ApprovedOnce | Phase::ApprovedAlways | Phase::Denied);
        if self.cleanup_after_resolve && decided {
            return FinalAction::Delete;
        }
        match render(view) {
            Ok(card) => FinalAction::Update(card),
            Err(_) => FinalAction::ClearActions,
        }
    }
}

/// "Markdown Text": characters that would format, escaped. `#` and `-` format only at the
/// start of a line (headers, lists), so only there.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut line_start = true;
    for c in s.chars() {
        let formats = matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '[' | ']')
            || (line_start && matches!(c, '#' | '-'));
        if formats {
            out.push('\\');
        }
        out.push(c);
        line_start = c == '\n';
    }
    out
}

/// Text inside a code block: a fence in it would end the block early.
pub(crate) fn code(s: &str) -> String {
    s.replace("```", "`\u{200b}`\u{200b}`")
}

fn cut(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(limit - 1).collect();
    out.push('…');
    out
}

/// CH-CARD: colour by phase, and by severity while a plugin card is open.
fn colour(view: &CardView) -> u32 {
    match view.phase {
        Phase::Pending | Phase::Progress => match view.severity {
            Some(Severity::Critical) => 0xED_4245,
            Some(Severity::Warning) => 0xFE_E75C,
            _ => 0x58_65F2,
        },
        Phase::ApprovedOnce | Phase::ApprovedAlways => 0x57_F287,
        Phase::Denied => 0xED_4245,
        Phase::Expired | Phase::NoRoute | Phase::Cancelled => 0x95_A5A6,
    }
}

fn badge(s: Severity) -> &'static str {
    match s {
        Severity::Info => "ℹ️ ",
        Severity::Warning => "⚠️ ",
        Severity::Critical => "🛑 ",
    }
}

/// "Button Styles": Primary 1, Secondary 2, Success 3, Danger 4.
fn style(s: ControlStyle) -> u8 {
    match s {
        ControlStyle::Success => 3,
        ControlStyle::Primary => 1,
        ControlStyle::Danger => 4,
        ControlStyle::Secondary => 2,
    }
}

/// "Ref a1b2c3d4", quorum progress while it counts, and "expires" before the embed's timestamp.
fn footer(view: &CardView) -> String {
    let mut footer = format!("Ref {}", view.reference);
    if let Some(p) = view.progress.filter(|_| view.phase.is_open()) {
        footer.push_str(&format!(" · Approvals {}/{}", p.votes, p.required));
    }
    if view.phase.is_open() {
        footer.push_str(" · expires");
    }
    footer
}

/// Renders `view`.
pub fn render(view: &CardView) -> Result<DiscordCard, DiscordError> {
    let fitted = view.fit(COMMAND_BUDGET, true);
    let mut description = Vec::new();
    for (i, block) in view.blocks.iter().enumerate() {
        let (shown, notice) = if i == 0 {
            (fitted.text.shown.as_str(), fitted.text.notice.as_deref())
        } else {
            (block.text.full.as_str(), None)
        };
        description.push(format!("**{}**\n```\n{}\n```", block.label, code(shown)));
        if let Some(n) = notice {
            description.push(format!("*{}*", esc(n)));
        }
    }
    if let Some(note) = &fitted.note {
        description.push(format!("*{}*", esc(note)));
    }
    if let Some(outcome) = &view.outcome {
        description.push(format!("**{}**", esc(outcome)));
    }
    let typed: Vec<&str> = fitted.controls.iter().filter_map(|c| c.decision).map(|d| d.as_str()).collect();
    if view.phase.is_open() && !typed.is_empty() {
        description.push(format!("Or type `/approve {} {}`", view.reference, typed.join("|")));
    }
    let mut fields: Vec<Value> = view
        .fields
        .iter()
        .map(|f| json!({ "name": f.label, "value": cut(&esc(&f.value), FIELD_LIMIT), "inline": false }))
        .collect();
    let open = view.phase.is_open();
    if open {
        // Markdown timestamps render in fields, not in footers ("Message Formatting").
        fields.push(json!({ "name": "Expires", "value": format!("<t:{}:R>", view.expires_at.unix_seconds()), "inline": true }));
    }
    let title = match view.severity {
        Some(s) => format!("{}{}", badge(s), view.title),
        None => view.title.clone(),
    };
    let mut embed = json!({
        "title": cut(&title, TITLE_LIMIT),
        "description": cut(&description.join("\n\n"), DESCRIPTION_LIMIT),
        "color": colour(view),
        "fields": fields,
        "footer": { "text": cut(&footer(view), FOOTER_LIMIT) },
    });
    if open {
        // Shown beside the footer ("… · expires • Today at 14:30"), in each reader's time zone.
        embed["timestamp"] = json!(view.expires_at.to_rfc3339());
    }
    let buttons = fitted
        .controls
        .iter()
        .map(|c| {
            if c.token.chars().count() > CUSTOM_ID_LIMIT {
                // A row Discord would refuse must fail loudly, never vanish.
                return Err(DiscordError::invalid(format!(
                    "the \"{}\" button's custom_id is {} characters; Discord allows {CUSTOM_ID_LIMIT}",
                    c.label,
                    c.token.chars().count()
                )));
            }
            Ok(json!({ "type": 2, "style": style(c.style), "label": cut(&c.label, 80), "custom_id": c.token }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let components =
        if buttons.is_empty() { json!([]) } else { json!([{ "type": 1, "components": buttons }]) };
    let body = json!({
        "embeds": [embed],
        "components": components,
        "allowed_mentions": { "parse": [] },
    });
    Ok(DiscordCard { body })
}

#[cfg(test)]
mod tests {
    use assent_core::model::{AccountKey, Channel};
    use assent_testing::samples;

    use super::{CUSTOM_ID_LIMIT, render};

    fn account() -> AccountKey {
        AccountKey::new(Channel::Discord, "main")
    }

    /// CAP-2: what Discord shows for every kind in every phase.
    #[test]
    fn cap_2_snapshots_of_every_kind_and_phase() {
        for (name, view) in samples::every_card(&account()) {
            let card = render(&view).unwrap();
            insta::assert_json_snapshot!(format!("discord_{name}"), card.body);
        }
    }

    #[test]
    fn ch_dc_2_a_huge_command_is_cut_honestly_and_fits_every_limit() {
        let chunk = "x".repeat(4000);
        let argv: Vec<&str> = std::iter::once("echo").chain(std::iter::repeat_n(chunk.as_str(), 3)).collect();
        let a = samples::approval(samples::exec_action(&argv), 1);
        let card = render(&samples::view(&a, &account())).unwrap();
        let embed = &card.body["embeds"][0];
        let description = embed["description"].as_str().unwrap();
        assert!(description.chars().count() <= 4096, "{}", description.chars().count());
        assert!(description.contains("Showing "), "the notice says it was cut");
        let buttons = card.body["components"][0]["components"].as_array().unwrap();
        assert_eq!(buttons.last().unwrap()["label"], "Full command");
        assert_eq!(buttons.last().unwrap()["style"], 2, "Secondary");
        assert!(buttons.iter().all(|b| b["custom_id"].as_str().unwrap().len() <= CUSTOM_ID_LIMIT));
    }

    #[test]
    fn ch_dc_2_mentions_ping_nobody_and_fences_cannot_be_broken() {
        let a = samples::approval(samples::exec_action(&["echo", "@everyone", "```", "<@123>"]), 1);
        let card = render(&samples::view(&a, &account())).unwrap();
        assert_eq!(card.body["allowed_mentions"], serde_json::json!({ "parse": [] }));
        let description = card.body["embeds"][0]["description"].as_str().unwrap();
        assert_eq!(description.matches("```").count(), 2, "only our own fence: {description}");
    }

    #[test]
    fn ch_dc_2_buttons_are_success_primary_danger_and_the_token_is_the_custom_id() {
        let a = samples::approval(samples::exec_action(&["ls"]), 1);
        let view = samples::view(&a, &account());
        let card = render(&view).unwrap();
        let buttons = card.body["components"][0]["components"].as_array().unwrap();
        let styles: Vec<u64> = buttons.iter().map(|b| b["style"].as_u64().unwrap()).collect();
        assert_eq!(styles, [3, 1, 4]);
        assert_eq!(buttons[0]["custom_id"], view.controls[0].token);
        let footer = card.body["embeds"][0]["footer"]["text"].as_str().unwrap();
        assert!(footer.starts_with(&format!("Ref {}", view.reference)), "{footer}");
    }

    #[test]
    fn ch_dc_2_a_custom_id_over_100_fails_instead_of_dropping_the_buttons() {
        let a = samples::approval(samples::exec_action(&["ls"]), 1);
        let mut view = samples::view(&a, &account());
        view.controls[0].token = "t".repeat(101);
        let e = render(&view).unwrap_err();
        assert!(e.to_string().contains("101 characters"), "{e}");
    }
}
