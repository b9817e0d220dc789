//! Block Kit's limits ("Reference: blocks", "Reference: block elements"): a message with a
//! block Slack would refuse is refused whole with `invalid_blocks`, naming what was wrong.

use std::collections::HashSet;

use serde_json::Value;

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn text_of(v: &Value, what: &str, max: usize) -> Result<(), String> {
    let n = chars(&v["text"]);
    if n == 0 {
        return Err(format!("{what} text must not be empty"));
    }
    if n > max {
        return Err(format!("must be less than {} characters [json-pointer:{what}/text]", max + 1));
    }
    Ok(())
}

/// Checks a message's blocks.
pub(crate) fn blocks(blocks: &[Value]) -> Result<(), String> {
    if blocks.len() > 50 {
        return Err("no more than 50 items allowed [json-pointer:/blocks]".to_owned());
    }
    let mut ids = HashSet::new();
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("/blocks/{i}");
        if let Some(id) = b["block_id"].as_str() {
            if id.chars().count() > 255 {
                return Err(format!("must be less than 256 characters [json-pointer:{at}/block_id]"));
            }
            if !ids.insert(id.to_owned()) {
                return Err(format!("duplicate block_id [json-pointer:{at}/block_id]"));
            }
        }
        match b["type"].as_str().unwrap_or_default() {
            "header" => text_of(&b["text"], &format!("{at}/text"), 150)?,
            "section" => {
                if !b["text"].is_null() {
                    text_of(&b["text"], &format!("{at}/text"), 3000)?;
                }
                let fields = b["fields"].as_array().map_or(&[][..], Vec::as_slice);
                if fields.len() > 10 {
                    return Err(format!("no more than 10 items allowed [json-pointer:{at}/fields]"));
                }
                for (j, f) in fields.iter().enumerate() {
                    text_of(f, &format!("{at}/fields/{j}"), 2000)?;
                }
                if b["text"].is_null() && fields.is_empty() {
                    return Err(format!("must provide text or fields [json-pointer:{at}]"));
                }
            }
            "context" => {
                let elements = b["elements"].as_array().map_or(&[][..], Vec::as_slice);
                if elements.is_empty() || elements.len() > 10 {
                    return Err(format!("must have 1 to 10 elements [json-pointer:{at}/elements]"));
                }
                for (j, e) in elements.iter().enumerate() {
                    text_of(e, &format!("{at}/elements/{j}"), 3000)?;
                }
            }
            "actions" => actions(b, &at)?,
            "divider" => {}
            other => return Err(format!("unsupported block type `{other}` [json-pointer:{at}/type]")),
        }
    }
    Ok(())
}

fn actions(b: &Value, at: &str) -> Result<(), String> {
    let elements = b["elements"].as_array().map_or(&[][..], Vec::as_slice);
    if elements.is_empty() || elements.len() > 25 {
        return Err(format!("must have 1 to 25 elements [json-pointer:{at}/elements]"));
    }
    let mut ids = HashSet::new();
    for (j, e) in elements.iter().enumerate() {
        let here = format!("{at}/elements/{j}");
        if e["type"] != "button" {
            return Err(format!("only buttons are expected here [json-pointer:{here}/type]"));
        }
        text_of(&e["text"], &here, 75)?;
        if chars(&e["value"]) > 2000 {
            return Err(format!("must be less than 2001 characters [json-pointer:{here}/value]"));
        }
        let action = e["action_id"].as_str().unwrap_or_default();
        if action.chars().count() > 255 {
            return Err(format!("must be less than 256 characters [json-pointer:{here}/action_id]"));
        }
        if !action.is_empty() && !ids.insert(action.to_owned()) {
            // Several buttons may share an action_id only across blocks, never within one.
            return Err(format!("duplicate action_id [json-pointer:{here}/action_id]"));
        }
        if let Some(style) = e["style"].as_str()
            && !matches!(style, "primary" | "danger")
        {
            return Err(format!("must be primary or danger [json-pointer:{here}/style]"));
        }
    }
    Ok(())
}
