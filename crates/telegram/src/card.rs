//! Presentation (CH-TG-2): the card as one HTML message of at most 4,096 characters, and one
//! inline keyboard row of the allowed decisions (plus "Full command" when the text was cut).

use assent_core::{
    capability::{FinalAction, Presentation},
    card::{CardView, FittedCard},
    model::Severity,
};

use crate::{TelegramChannel, TelegramEntry, TelegramError};

/// "sendMessage": text of 1-4096 characters after entities parsing.
pub const MESSAGE_LIMIT: usize = 4096;
/// "InlineKeyboardButton": `callback_data` of 1-64 bytes.
pub const CALLBACK_DATA_LIMIT: usize = 64;
/// The command gets what the rest of the card leaves, but never less than this.
const MIN_COMMAND_BUDGET: usize = 200;

/// A rendered card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramCard {
    /// The message text, `parse_mode = "HTML"`.
    pub html: String,
    /// One row of buttons: (label, callback data). Empty once the card is final.
    pub buttons: Vec<(String, String)>,
}

/// Telegram's presentation seam: pure, usable without a bot (snapshot tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct TelegramCards;

impl Presentation<TelegramChannel> for TelegramCards {
    fn render(&self, view: &CardView) -> Result<TelegramCard, TelegramError> {
        render(view)
    }

    /// A decided card is edited to its final text with an empty keyboard.
    fn finish(&self, view: &CardView, _entry: &TelegramEntry) -> FinalAction<TelegramCard> {
        match render(view) {
            Ok(card) => FinalAction::Update(card),
            // A final card has no buttons and its text is cut to fit: rendering cannot fail,
            // but if it did, taking the buttons away is still right.
            Err(_) => FinalAction::ClearActions,
        }
    }
}

/// HTML-escapes text for Telegram ("Formatting options": `<`, `>` and `&` must be escaped).
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders `view`, cutting the command so the whole message fits, honestly ("Showing n of m").
pub fn render(view: &CardView) -> Result<TelegramCard, TelegramError> {
    // What the card shows besides the command, measured once with an empty command.
    let rest = visible_len(&compose(view, &view.fit(0, true)));
    let mut budget = MESSAGE_LIMIT.saturating_sub(rest + 64).max(MIN_COMMAND_BUDGET);
    loop {
        let fitted = view.fit(budget, true);
        let html = compose(view, &fitted);
        if visible_len(&html) <= MESSAGE_LIMIT {
            let buttons: Vec<(String, String)> =
                fitted.controls.iter().map(|c| (c.label.clone(), c.token.clone())).collect();
            if let Some((label, data)) = buttons.iter().find(|(_, d)| d.len() > CALLBACK_DATA_LIMIT) {
                // A keyboard Telegram would refuse must fail loudly, never vanish.
                return Err(TelegramError::invalid(format!(
                    "the \"{label}\" button's callback data is {} bytes; Telegram allows {CALLBACK_DATA_LIMIT}",
                    data.len()
                )));
            }
            return Ok(TelegramCard { html, buttons });
        }
        // Characters outside the BMP count twice in Telegram's limit: cut further.
        budget = budget.saturating_sub(budget / 4 + 1);
    }
}

fn compose(view: &CardView, fitted: &FittedCard) -> String {
    let mut out = Vec::new();
    let title = format!("<b>{}</b>", esc(&view.title));
    out.push(match view.severity {
        Some(s) => format!("{} {title}", badge(s)),
        None => title,
    });
    for (i, block) in view.blocks.iter().enumerate() {
        let (shown, notice) = if i == 0 {
            (fitted.text.shown.as_str(), fitted.text.notice.as_deref())
        } else {
            (block.text.full.as_str(), None)
        };
        out.push(format!("{}:\n<pre>{}</pre>", esc(block.label), esc(shown)));
        if let Some(n) = notice {
            out.push(format!("<i>{}</i>", esc(n)));
        }
    }
    if let Some(note) = &fitted.note {
        out.push(format!("<i>{}</i>", esc(note)));
    }
    let fields: Vec<String> =
        view.fields.iter().map(|f| format!("<b>{}:</b> {}", esc(f.label), esc(&f.value))).collect();
    if !fields.is_empty() {
        out.push(fields.join("\n"));
    }
    if let Some(outcome) = &view.outcome {
        out.push(format!("<b>{}</b>", esc(outcome)));
    }
    let typed: Vec<&str> = fitted.controls.iter().filter_map(|c| c.decision).map(|d| d.as_str()).collect();
    if view.phase.is_open() && !typed.is_empty() {
        out.push(format!("<i>Or reply /approve {} {}</i>", esc(&view.reference), typed.join("|")));
    }
    out.push(format!("<i>{}</i>", esc(&view.footer)));
    out.join("\n\n")
}

/// CH-CARD-1: a plugin card's severity.
fn badge(s: Severity) -> &'static str {
    match s {
        Severity::Info => "ℹ️ INFO",
        Severity::Warning => "⚠️ WARNING",
        Severity::Critical => "🛑 CRITICAL",
    }
}

/// The length Telegram counts: the text without markup, in UTF-16 code units.
pub(crate) fn visible_len(html: &str) -> usize {
    let mut n = 0;
    let mut in_tag = false;
    let mut chars = html.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            '&' => {
                // An entity counts as the one character it stands for.
                for e in chars.by_ref() {
                    if e == ';' {
                        break;
                    }
                }
                n += 1;
            }
            c => n += c.len_utf16(),
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use assent_core::model::{AccountKey, Channel};
    use assent_testing::samples;

    use super::{CALLBACK_DATA_LIMIT, MESSAGE_LIMIT, render, visible_len};

    fn account() -> AccountKey {
        AccountKey::new(Channel::Telegram, "main")
    }

    /// CAP-2: what Telegram shows for every kind in every phase.
    #[test]
    fn cap_2_snapshots_of_every_kind_and_phase() {
        for (name, view) in samples::every_card(&account()) {
            let card = render(&view).unwrap();
            let labels: Vec<&str> = card.buttons.iter().map(|(l, _)| l.as_str()).collect();
            insta::assert_snapshot!(
                format!("telegram_{name}"),
                format!("{}\n\n[{}]", card.html, labels.join("] ["))
            );
        }
    }

    #[test]
    fn ch_tg_2_a_huge_command_is_cut_honestly_and_offers_the_full_text() {
        let chunk = "x".repeat(4000);
        let argv: Vec<&str> = std::iter::once("echo").chain(std::iter::repeat_n(chunk.as_str(), 3)).collect();
        let a = samples::approval(samples::exec_action(&argv), 1);
        let card = render(&samples::view(&a, &account())).unwrap();
        assert!(visible_len(&card.html) <= MESSAGE_LIMIT, "{}", visible_len(&card.html));
        assert!(card.html.contains("Showing "), "the notice says it was cut");
        assert_eq!(card.buttons.last().unwrap().0, "Full command");
        assert!(card.buttons.iter().all(|(_, d)| d.len() <= CALLBACK_DATA_LIMIT));
    }

    #[test]
    fn ch_tg_2_emoji_count_twice_and_still_fit() {
        // 3,000 emoji: 3,000 characters, but 6,000 in Telegram's count.
        let wide = "🙂".repeat(1000);
        let a = samples::approval(samples::exec_action(&["echo", &wide, &wide, &wide]), 1);
        let card = render(&samples::view(&a, &account())).unwrap();
        assert!(visible_len(&card.html) <= MESSAGE_LIMIT, "{}", visible_len(&card.html));
    }

    #[test]
    fn ch_tg_2_html_is_escaped() {
        let a = samples::approval(samples::exec_action(&["echo", "<b>&amp;</b>"]), 1);
        let card = render(&samples::view(&a, &account())).unwrap();
        assert!(card.html.contains("&lt;b&gt;&amp;amp;&lt;/b&gt;"), "{}", card.html);
    }

    #[test]
    fn ch_tg_3_a_token_over_64_bytes_fails_instead_of_dropping_the_keyboard() {
        let a = samples::approval(samples::exec_action(&["ls"]), 1);
        let mut view = samples::view(&a, &account());
        view.controls[0].token = "t".repeat(65);
        let e = render(&view).unwrap_err();
        assert!(e.to_string().contains("65 bytes"), "{e}");
    }
}
