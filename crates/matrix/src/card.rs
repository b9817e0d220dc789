//! Presentation (CH-MX-2): the card as plain text, HTML and an `io.assent.approval` block, and
//! the reaction keys that decide it.

use assent_core::{
    capability::{FinalAction, Presentation},
    card::{CardView, Phase},
    model::{Decision, Kind, Severity},
};
use serde::{Deserialize, Serialize};

use crate::{MatrixChannel, MatrixEntry, MatrixError};

/// Matrix's presentation seam: pure, usable without a client (snapshot tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct MatrixCards;

impl Presentation<MatrixChannel> for MatrixCards {
    fn render(&self, view: &CardView) -> Result<MatrixCard, MatrixError> {
        Ok(render(view))
    }

    /// A decided card is edited to its final text; its seeded reactions are removed.
    fn finish(&self, view: &CardView, _entry: &MatrixEntry) -> FinalAction<MatrixCard> {
        FinalAction::Update(render(view))
    }
}

/// CH-MX-2: commands longer than this are cut with a notice.
pub(crate) const COMMAND_BUDGET: usize = 8_000;

/// The reactions a card is seeded with, one per allowed decision.
pub(crate) const REACTIONS: [(&str, Decision); 3] =
    [("✅", Decision::AllowOnce), ("♾️", Decision::AllowAlways), ("❌", Decision::Deny)];

/// A reaction key's decision (CH-MX-3): compared without U+FE0F; 🔁 also means always allow.
pub fn reaction_decision(key: &str) -> Option<Decision> {
    let key: String = key.chars().filter(|c| *c != '\u{fe0f}').collect();
    match key.as_str() {
        "✅" => Some(Decision::AllowOnce),
        "♾" | "🔁" => Some(Decision::AllowAlways),
        "❌" => Some(Decision::Deny),
        _ => None,
    }
}

/// A rendered card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixCard {
    /// `body`: plain text.
    pub body: String,
    /// `formatted_body`: HTML.
    pub html: String,
    /// `io.assent.approval`.
    pub approval: ApprovalTag,
    /// Reactions to seed (pending cards only).
    pub reactions: Vec<&'static str>,
}

/// The machine-readable part of a card, so other tools can tell approval cards apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTag {
    /// Approval id.
    pub id: String,
    /// Kind.
    pub kind: Kind,
    /// Phase name.
    pub phase: String,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders `view` for Matrix.
pub(crate) fn render(view: &CardView) -> MatrixCard {
    let open = view.phase.is_open();
    let allowed: Vec<Decision> = view.controls.iter().filter_map(|c| c.decision).collect();
    let reactions: Vec<&'static str> =
        REACTIONS.iter().filter(|(_, d)| allowed.contains(d)).map(|(k, _)| *k).collect();
    let mut body = Vec::new();
    let mut html = Vec::new();
    if open {
        let keys: Vec<String> = REACTIONS
            .iter()
            .filter(|(_, d)| allowed.contains(d))
            .map(|(k, d)| format!("{k} {}", label(*d)))
            .collect();
        let line = format!("React {}, or send /approve {} <decision>", keys.join(" · "), view.reference);
        html.push(format!("<p><em>{}</em></p>", esc(&line)));
        body.push(line);
    }
    match view.severity {
        Some(severity) => {
            let (badge, color) = badge(severity);
            body.push(format!("{} [{badge}]", view.title));
            html.push(format!(
                "<p><strong>{}</strong> <font data-mx-bg-color=\"{color}\" data-mx-color=\"#ffffff\">&nbsp;{badge}&nbsp;</font></p>",
                esc(&view.title)
            ));
        }
        None => {
            body.push(view.title.clone());
            html.push(format!("<p><strong>{}</strong></p>", esc(&view.title)));
        }
    }
    for block in &view.blocks {
        let fitted = block.text.fit(COMMAND_BUDGET);
        body.push(format!("{}:\n{}", block.label, fitted.shown));
        html.push(format!("<p>{}:</p><pre><code>{}</code></pre>", esc(block.label), esc(&fitted.shown)));
        if let Some(notice) = fitted.notice {
            body.push(notice.clone());
            html.push(format!("<p><em>{}</em></p>", esc(&notice)));
        }
    }
    for f in &view.fields {
        body.push(format!("{}: {}", f.label, f.value));
        html.push(format!("<p>{}: {}</p>", esc(f.label), esc(&f.value)));
    }
    if let Some(outcome) = &view.outcome {
        body.push(outcome.clone());
        html.push(format!("<p><strong>{}</strong></p>", esc(outcome)));
    }
    body.push(view.footer.clone());
    html.push(format!("<p><sub>{}</sub></p>", esc(&view.footer)));
    MatrixCard {
        body: body.join("\n"),
        html: html.join(""),
        approval: ApprovalTag { id: view.id.to_string(), kind: view.kind, phase: phase_name(view.phase) },
        reactions: if open { reactions } else { Vec::new() },
    }
}

/// CH-CARD-1: a plugin card's severity badge and its background colour.
fn badge(severity: Severity) -> (&'static str, &'static str) {
    match severity {
        Severity::Info => ("info", "#1565c0"),
        Severity::Warning => ("warning", "#ef6c00"),
        Severity::Critical => ("critical", "#c62828"),
    }
}

fn label(d: Decision) -> &'static str {
    match d {
        Decision::AllowOnce => "allow once",
        Decision::AllowAlways => "always allow",
        Decision::Deny => "deny",
    }
}

fn phase_name(p: Phase) -> String {
    serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The `m.room.message` content of a card.
pub(crate) fn content(card: &MatrixCard) -> serde_json::Value {
    serde_json::json!({
        "msgtype": "m.text",
        "body": card.body,
        "format": "org.matrix.custom.html",
        "formatted_body": card.html,
        "io.assent.approval": card.approval,
    })
}

/// CH-MX-6: an `m.replace` edit of `event_id` to `card`.
pub(crate) fn replacement(event_id: &str, card: &MatrixCard) -> serde_json::Value {
    let new = content(card);
    serde_json::json!({
        "msgtype": "m.text",
        "body": format!("* {}", card.body),
        "format": "org.matrix.custom.html",
        "formatted_body": card.html,
        "m.new_content": new,
        "m.relates_to": { "rel_type": "m.replace", "event_id": event_id },
    })
}

#[cfg(test)]
mod tests {
    use assent_core::model::{AccountKey, Channel, Decision};
    use assent_testing::samples;

    use super::{COMMAND_BUDGET, content, reaction_decision, render, replacement};

    fn account() -> AccountKey {
        AccountKey::new(Channel::Matrix, "main")
    }

    /// CAP-2: what Matrix shows for every kind in every phase.
    #[test]
    fn cap_2_snapshots_of_every_kind_and_phase() {
        for (name, view) in samples::every_card(&account()) {
            let card = render(&view);
            let shown = serde_json::json!({ "content": content(&card), "seeds": card.reactions });
            insta::assert_json_snapshot!(format!("matrix_{name}"), shown);
        }
    }

    #[test]
    fn ch_mx_2_seeds_only_the_allowed_decisions_and_final_cards_none() {
        let plugin = samples::phases(samples::plugin_action());
        assert_eq!(render(&samples::view(&plugin[0].1, &account())).reactions, ["✅", "❌"]);
        let exec = samples::phases(samples::exec_action(&["ls"]));
        assert_eq!(render(&samples::view(&exec[0].1, &account())).reactions, ["✅", "♾️", "❌"]);
        for (phase, a) in &exec[2..] {
            assert!(render(&samples::view(a, &account())).reactions.is_empty(), "{phase}");
        }
    }

    #[test]
    fn ch_mx_2_a_huge_command_is_cut_and_the_event_stays_under_64_kib() {
        let chunk = "x".repeat(4000);
        let argv: Vec<&str> = std::iter::once("echo").chain(std::iter::repeat_n(chunk.as_str(), 7)).collect();
        let a = samples::approval(samples::exec_action(&argv), 1);
        let card = render(&samples::view(&a, &account()));
        assert!(card.body.contains("Showing"), "a notice says it was cut");
        assert!(card.body.len() < 3 * COMMAND_BUDGET, "{}", card.body.len());
        let edit = replacement("$card", &card).to_string();
        assert!(edit.len() < 64 * 1024, "the edit, which carries the card twice, is {} bytes", edit.len());
    }

    #[test]
    fn ch_mx_2_html_is_escaped() {
        let a = samples::approval(samples::exec_action(&["echo", "<script>alert(1)</script>"]), 1);
        let card = render(&samples::view(&a, &account()));
        assert!(card.html.contains("&lt;script&gt;"), "{}", card.html);
        assert!(!card.html.contains("<script>"), "{}", card.html);
    }

    #[test]
    fn ch_mx_3_keys_compare_without_the_variation_selector() {
        assert_eq!(reaction_decision("✅"), Some(Decision::AllowOnce));
        assert_eq!(reaction_decision("✅\u{fe0f}"), Some(Decision::AllowOnce));
        assert_eq!(reaction_decision("♾"), Some(Decision::AllowAlways));
        assert_eq!(reaction_decision("♾️"), Some(Decision::AllowAlways));
        assert_eq!(reaction_decision("🔁"), Some(Decision::AllowAlways));
        assert_eq!(reaction_decision("❌"), Some(Decision::Deny));
        assert_eq!(reaction_decision("👍"), None, "other reactions fall through");
    }
}
