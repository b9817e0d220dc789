//! Presentation (CH-SL-3): the card as Block Kit blocks plus the `text` fallback that
//! notifications and screen readers use.
//!
//! Block Kit's limits ("Reference: blocks", "Button element"): a header's text is at most 150
//! characters, a section's 3,000, a button's label 75 and its value 2,000. The command gets up
//! to 2,800 characters of its section, fenced as code, with the honest "Showing n of m" notice
//! when cut; escaping (`&` becomes `&amp;`) is counted, so a long command never makes Slack
//! refuse the message (`invalid_blocks`) and leave live buttons behind. `&`, `<` and `>` are
//! escaped ("Formatting text for app surfaces") and mass mentions neutralized, so a command
//! saying `<!channel>` pings nobody.
//!
//! Each button's `action_id` starts with `assent.decide` (`assent.decide.deny`…): Block Kit
//! refuses two elements with one `action_id` in a block. Its `value` is the signed token, and
//! the actions block is `assent:<approval id>`.

use assent_core::{
    capability::{FinalAction, Presentation},
    card::{CardView, Control, ControlStyle},
    model::Severity,
    text::neutralize_mentions,
};
use serde_json::{Value, json};
use slack_morphism::prelude::{SlackBlock, SlackMessageContent};

use crate::{SlackChannel, SlackEntry, SlackError};

/// The prefix of every decision button's `action_id`.
pub const DECIDE_ACTION: &str = "assent.decide";
/// "Full command".
pub const FULL_TEXT_ACTION: &str = "assent.full";
/// "Button element": `value` is at most 2,000 characters.
pub const VALUE_LIMIT: usize = 2000;
const HEADER_LIMIT: usize = 150;
const SECTION_LIMIT: usize = 3000;
/// The share of a section the command may take (SPEC CH-SL-3).
const COMMAND_BUDGET: usize = 2800;
const BUTTON_LABEL_LIMIT: usize = 75;
/// Plain messages are cut here, well below the 40,000 characters "chat.postMessage" refuses.
const TEXT_LIMIT: usize = 12_000;

/// A rendered card.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackCard {
    /// The `text` fallback.
    pub text: String,
    /// The blocks, as Slack receives them.
    pub blocks: Vec<Value>,
}

impl SlackCard {
    /// The message content slack-morphism sends.
    pub(crate) fn content(&self) -> Result<SlackMessageContent, SlackError> {
        let blocks: Vec<SlackBlock> = serde_json::from_value(Value::Array(self.blocks.clone()))
            .map_err(|e| SlackError::invalid(format!("a card block slack-morphism cannot model: {e}")))?;
        Ok(SlackMessageContent::new().with_text(self.text.clone()).with_blocks(blocks))
    }
}

/// Slack's presentation seam: pure, usable without a client (snapshot tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct SlackCards;

impl Presentation<SlackChannel> for SlackCards {
    fn render(&self, view: &CardView) -> Result<SlackCard, SlackError> {
        render(view)
    }

    /// CH-SL-6: the final blocks with no actions, by `chat.update`.
    fn finish(&self, view: &CardView, _entry: &SlackEntry) -> FinalAction<SlackCard> {
        match render(view) {
            Ok(card) => FinalAction::Update(card),
            Err(_) => FinalAction::ClearActions,
        }
    }
}

/// `&`, `<` and `>` as Slack wants them escaped.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Text for a plain message: escaped, and pinging nobody.
pub(crate) fn plain(s: &str) -> String {
    cut(&esc(&neutralize_mentions(s)), TEXT_LIMIT)
}

fn cut(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(limit - 1).collect();
    out.push('…');
    out
}

/// Text inside a code block: a fence in it would end the block early.
pub(crate) fn code(s: &str) -> String {
    s.replace("```", "`\u{200b}`\u{200b}`")
}

fn badge(s: Severity) -> &'static str {
    match s {
        Severity::Info => "ℹ️ ",
        Severity::Warning => "⚠️ ",
        Severity::Critical => "🛑 ",
    }
}

fn mrkdwn(text: &str) -> Value {
    json!({ "type": "mrkdwn", "text": cut(text, SECTION_LIMIT) })
}

/// A body block's section text: the label, the text fenced, the notice.
fn section_text(label: &str, shown: &str, notice: Option<&str>) -> String {
    let mut text = format!("*{label}*\n```{}```", code(&esc(shown)));
    if let Some(n) = notice {
        text.push_str(&format!("\n_{}_", esc(n)));
    }
    text
}

/// The first block within its section's limit once escaped: when escaping lengthens it past
/// 3,000, it is fitted again to a budget smaller by the overshoot, so the notice stays true.
fn fitted_command(view: &CardView) -> (assent_core::card::FittedCard, Option<String>) {
    let mut budget = COMMAND_BUDGET;
    loop {
        let fitted = view.fit(budget, true);
        let Some(first) = view.blocks.first() else { return (fitted, None) };
        let text = section_text(first.label, &fitted.text.shown, fitted.text.notice.as_deref());
        let over = text.chars().count().saturating_sub(SECTION_LIMIT);
        if over == 0 || budget <= 100 {
            return (fitted, Some(text));
        }
        budget = budget.saturating_sub(over).max(100);
    }
}

/// Renders `view`.
pub fn render(view: &CardView) -> Result<SlackCard, SlackError> {
    let (fitted, first) = fitted_command(view);
    let title = match view.severity {
        Some(s) => format!("{}{}", badge(s), view.title),
        None => view.title.clone(),
    };
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": cut(&neutralize_mentions(&title), HEADER_LIMIT), "emoji": true },
    })];
    for (i, block) in view.blocks.iter().enumerate() {
        let text = match (&first, i) {
            (Some(t), 0) => t.clone(),
            _ => section_text(block.label, &block.text.full, None),
        };
        blocks.push(json!({ "type": "section", "text": mrkdwn(&text) }));
    }
    let fields: Vec<Value> = view
        .fields
        .iter()
        .map(|f| mrkdwn(&format!("*{}:* {}", f.label, esc(&neutralize_mentions(&f.value)))))
        .collect();
    for chunk in fields.chunks(10) {
        blocks.push(json!({ "type": "section", "fields": chunk }));
    }
    if let Some(note) = &fitted.note {
        blocks.push(json!({ "type": "context", "elements": [mrkdwn(&format!("_{}_", esc(note)))] }));
    }
    if let Some(outcome) = &view.outcome {
        blocks.push(json!({ "type": "section", "text": mrkdwn(&format!("*{}*", esc(outcome))) }));
    }
    let buttons = fitted.controls.iter().map(button).collect::<Result<Vec<_>, _>>()?;
    if !buttons.is_empty() {
        blocks.push(
            json!({ "type": "actions", "block_id": format!("assent:{}", view.id), "elements": buttons }),
        );
    }
    blocks.push(json!({ "type": "context", "elements": [mrkdwn(&context(view, &fitted.controls))] }));
    Ok(SlackCard { text: fallback(view), blocks })
}

/// "Ref a1b2c3d4 · Approvals 1/2 · expires 14:30 · or type `/approve …`".
fn context(view: &CardView, controls: &[Control]) -> String {
    let mut context = vec![format!("Ref {}", view.reference)];
    if let Some(p) = view.progress.filter(|_| view.phase.is_open()) {
        context.push(format!("Approvals {}/{}", p.votes, p.required));
    }
    if view.phase.is_open() {
        // Shown in each reader's time zone ("Formatting text": dates).
        let at = view.expires_at.unix_seconds();
        context.push(format!(
            "expires <!date^{at}^{{date_short_pretty}} at {{time}}|{}>",
            view.expires_at.to_rfc3339()
        ));
        let typed: Vec<&str> = controls.iter().filter_map(|c| c.decision).map(|d| d.as_str()).collect();
        if !typed.is_empty() {
            context.push(format!("or type `/approve {} {}`", view.reference, typed.join("|")));
        }
    }
    context.join(" · ")
}

/// The notification text: title, ref and outcome, never the command.
fn fallback(view: &CardView) -> String {
    let mut text = format!("{} (ref {})", view.title, view.reference);
    if let Some(outcome) = &view.outcome {
        text.push_str(&format!(": {outcome}"));
    }
    plain(&text)
}

fn button(c: &Control) -> Result<Value, SlackError> {
    let length = c.token.chars().count();
    if length > VALUE_LIMIT {
        // Buttons Slack would refuse must fail loudly, never vanish.
        return Err(SlackError::invalid(format!(
            "the \"{}\" button's value is {length} characters; Slack allows {VALUE_LIMIT}",
            c.label
        )));
    }
    let action = match c.decision {
        Some(d) => format!("{DECIDE_ACTION}.{}", d.as_str()),
        None => FULL_TEXT_ACTION.to_owned(),
    };
    let mut b = json!({
        "type": "button",
        "action_id": action,
        "text": { "type": "plain_text", "text": cut(&c.label, BUTTON_LABEL_LIMIT), "emoji": true },
        "value": c.token,
    });
    // "Button element": primary (green) and danger (red); no style is the neutral default.
    match c.style {
        ControlStyle::Success => b["style"] = json!("primary"),
        ControlStyle::Danger => b["style"] = json!("danger"),
        ControlStyle::Primary | ControlStyle::Secondary => {}
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use assent_core::model::{AccountKey, Channel};
    use assent_testing::samples;

    use super::{VALUE_LIMIT, render};

    fn account() -> AccountKey {
        AccountKey::new(Channel::Slack, "main")
    }

    fn chars(v: &serde_json::Value) -> usize {
        v.as_str().map_or(0, |s| s.chars().count())
    }

    /// CAP-2: what Slack shows for every kind in every phase; each converts to slack-morphism's
    /// model and back unchanged, so what is sent is what was rendered.
    #[test]
    fn cap_2_snapshots_of_every_kind_and_phase() {
        for (name, view) in samples::every_card(&account()) {
            let card = render(&view).unwrap();
            let content = card.content().unwrap();
            assert_eq!(
                serde_json::to_value(content.blocks.unwrap()).unwrap(),
                serde_json::json!(card.blocks)
            );
            insta::assert_json_snapshot!(
                format!("slack_{name}"),
                serde_json::json!({ "text": card.text, "blocks": card.blocks })
            );
        }
    }

    #[test]
    fn ch_sl_3_a_huge_command_full_of_ampersands_fits_every_limit_with_its_notice() {
        let chunk = "a&b<c>".repeat(600);
        let argv: Vec<&str> = std::iter::once("echo").chain(std::iter::repeat_n(chunk.as_str(), 5)).collect();
        let a = samples::approval(samples::exec_action(&argv), 1);
        let card = render(&samples::view(&a, &account())).unwrap();
        let section = &card.blocks[1]["text"]["text"];
        assert!(chars(section) <= 3000, "{}", chars(section));
        assert!(section.as_str().unwrap().contains("Showing "), "the notice says it was cut");
        assert!(chars(&card.blocks[0]["text"]["text"]) <= 150);
        let actions = card.blocks.iter().find(|b| b["type"] == "actions").unwrap();
        let labels: Vec<&str> = actions["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["text"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(labels.last(), Some(&"Full command"));
    }

    #[test]
    fn ch_sl_3_escapes_and_mass_mentions_ping_nobody() {
        let a = samples::approval(samples::exec_action(&["echo", "<!channel>", "<@U123>", "a&b", "```"]), 1);
        let mut view = samples::view(&a, &account());
        view.fields[0].value = "@here <!everyone>".to_owned();
        let card = render(&view).unwrap();
        let all = serde_json::to_string(&card.blocks).unwrap();
        // Slack mentions only through `<!…>` and `<@…>`; a field's bare `@here` is broken up too.
        for live in ["<!channel>", "<!everyone>", "<@U123>", "@here"] {
            assert!(!all.contains(live), "{live} in {all}");
        }
        assert!(all.contains("a&amp;b"));
        let section = card.blocks[1]["text"]["text"].as_str().unwrap();
        assert_eq!(section.matches("```").count(), 2, "only our own fence: {section}");
        assert!(!card.text.contains('<'), "the fallback is escaped too: {}", card.text);
    }

    #[test]
    fn ch_sl_3_actions_carry_the_token_in_a_block_of_the_approval() {
        let a = samples::approval(samples::exec_action(&["ls"]), 1);
        let view = samples::view(&a, &account());
        let card = render(&view).unwrap();
        let actions = card.blocks.iter().find(|b| b["type"] == "actions").unwrap();
        assert_eq!(actions["block_id"], format!("assent:{}", view.id));
        let buttons = actions["elements"].as_array().unwrap();
        assert_eq!(buttons[0]["value"], view.controls[0].token);
        assert!(buttons.iter().all(|b| b["action_id"].as_str().unwrap().starts_with("assent.decide")));
        let styles: Vec<&serde_json::Value> = buttons.iter().map(|b| &b["style"]).collect();
        assert_eq!(
            styles,
            [&serde_json::json!("primary"), &serde_json::Value::Null, &serde_json::json!("danger")]
        );
        let context = card.blocks.last().unwrap()["elements"][0]["text"].as_str().unwrap();
        assert!(context.starts_with(&format!("Ref {}", view.reference)), "{context}");
    }

    #[test]
    fn ch_sl_3_a_value_over_2000_fails_instead_of_dropping_the_buttons() {
        let a = samples::approval(samples::exec_action(&["ls"]), 1);
        let mut view = samples::view(&a, &account());
        view.controls[0].token = "t".repeat(VALUE_LIMIT + 1);
        let e = render(&view).unwrap_err();
        assert!(e.to_string().contains("2001 characters"), "{e}");
    }
}
