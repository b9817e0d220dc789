//! The typed `/approve` grammar (IX-5) on any text: it never panics, and whatever it accepts is
//! a well-formed command.
#![no_main]

use assent_core::command::{ParsedCommand, TypedMessage, parse_approve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    // The first line names the bot, the rest is the message.
    let (bot, text) = text.split_once('\n').unwrap_or(("assentbot", text));
    let msg = TypedMessage { text, is_edit: false, from_bot: false };
    if let ParsedCommand::Approve { reference, reason, .. } = parse_approve(msg, Some(bot)) {
        assert!(reference.len() >= 8, "short ref accepted: {reference:?}");
        assert!(reference.chars().all(|c| c.is_ascii_alphanumeric()), "{reference:?}");
        assert!(reason.is_none_or(|r| !r.is_empty() && r.chars().count() <= 200));
    }
    let edit = TypedMessage { text, is_edit: true, from_bot: false };
    assert_eq!(parse_approve(edit, Some(bot)), ParsedCommand::NotACommand);
});
