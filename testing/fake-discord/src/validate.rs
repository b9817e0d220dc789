//! The limits Discord enforces on what a bot sends, each refused with its "Invalid Form Body"
//! path, code and message: "Create Message" (content 2,000; embeds 10), "Embed Limits" (title
//! 256, description 4,096, 25 fields of 256/1,024, footer 2,048, 6,000 in all), "Message
//! Components" (5 rows of 5; `custom_id` 100, unique; label 80) and "Application Commands"
//! (names 1-32 lower case, descriptions 1-100, 25 options).

use std::collections::HashSet;

use serde_json::Value;

/// Why a body is refused: (path, code, message).
pub(crate) type Invalid = (String, &'static str, String);

fn too_long(path: String, max: usize) -> Invalid {
    (path, "BASE_TYPE_MAX_LENGTH", format!("Must be {max} or fewer in length."))
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn check_len(v: &Value, path: impl Fn() -> String, max: usize) -> Result<usize, Invalid> {
    let n = chars(v);
    if n > max { Err(too_long(path(), max)) } else { Ok(n) }
}

/// A create or edit body (message, follow-up, interaction response data).
pub(crate) fn message(body: &Value) -> Result<(), Invalid> {
    check_len(&body["content"], || "content".to_owned(), 2000)?;
    let embeds = body["embeds"].as_array().map_or(&[][..], Vec::as_slice);
    if embeds.len() > 10 {
        return Err(too_long("embeds".to_owned(), 10));
    }
    let mut total = 0;
    for (i, e) in embeds.iter().enumerate() {
        total += embed(e, i)?;
    }
    if total > 6000 {
        return Err((
            "embeds".to_owned(),
            "MAX_EMBED_SIZE_EXCEEDED",
            "Embed size exceeds maximum size of 6000".to_owned(),
        ));
    }
    let rows = body["components"].as_array().map_or(&[][..], Vec::as_slice);
    components(rows)?;
    Ok(())
}

/// Nothing to show: no content, embeds or components (50006 on a create).
pub(crate) fn is_empty(body: &Value) -> bool {
    body["content"].as_str().is_none_or(str::is_empty)
        && body["embeds"].as_array().is_none_or(Vec::is_empty)
        && body["components"].as_array().is_none_or(Vec::is_empty)
}

fn embed(e: &Value, i: usize) -> Result<usize, Invalid> {
    let p = |f: &str| format!("embeds.{i}.{f}");
    let mut total = check_len(&e["title"], || p("title"), 256)?;
    total += check_len(&e["description"], || p("description"), 4096)?;
    total += check_len(&e["footer"]["text"], || p("footer.text"), 2048)?;
    total += check_len(&e["author"]["name"], || p("author.name"), 256)?;
    let fields = e["fields"].as_array().map_or(&[][..], Vec::as_slice);
    if fields.len() > 25 {
        return Err(too_long(p("fields"), 25));
    }
    for (j, f) in fields.iter().enumerate() {
        if chars(&f["name"]) == 0 || chars(&f["value"]) == 0 {
            return Err((
                p(&format!("fields.{j}")),
                "BASE_TYPE_REQUIRED",
                "This field is required".to_owned(),
            ));
        }
        total += check_len(&f["name"], || p(&format!("fields.{j}.name")), 256)?;
        total += check_len(&f["value"], || p(&format!("fields.{j}.value")), 1024)?;
    }
    if let Some(c) = e["color"].as_i64()
        && !(0..=0xFF_FFFF).contains(&c)
    {
        return Err((
            p("color"),
            "NUMBER_TYPE_MAX",
            "int value should be less than or equal to 16777215.".to_owned(),
        ));
    }
    Ok(total)
}

fn components(rows: &[Value]) -> Result<(), Invalid> {
    if rows.len() > 5 {
        return Err(too_long("components".to_owned(), 5));
    }
    let mut seen = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let p = |f: &str| format!("components.{i}.{f}");
        if row["type"] != 1 {
            return Err((
                p("type"),
                "UNION_TYPE_CHOICES",
                "Value of field \"type\" must be one of (1,).".to_owned(),
            ));
        }
        let items = row["components"].as_array().map_or(&[][..], Vec::as_slice);
        if items.is_empty() || items.len() > 5 {
            return Err((
                p("components"),
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 5 in length.".to_owned(),
            ));
        }
        for (j, b) in items.iter().enumerate() {
            let q = |f: &str| p(&format!("components.{j}.{f}"));
            if b["type"] != 2 {
                return Err((q("type"), "UNION_TYPE_CHOICES", "Only buttons are expected here.".to_owned()));
            }
            check_len(&b["label"], || q("label"), 80)?;
            let style = b["style"].as_u64().unwrap_or(0);
            if !(1..=5).contains(&style) {
                return Err((
                    q("style"),
                    "BASE_TYPE_CHOICES",
                    "Value must be one of {1, 2, 3, 4, 5}.".to_owned(),
                ));
            }
            if style == 5 {
                continue; // A link button has a url, no custom_id.
            }
            let Some(id) = b["custom_id"].as_str().filter(|s| !s.is_empty()) else {
                return Err((q("custom_id"), "BASE_TYPE_REQUIRED", "This field is required".to_owned()));
            };
            check_len(&b["custom_id"], || q("custom_id"), 100)?;
            if !seen.insert(id.to_owned()) {
                return Err((
                    q("custom_id"),
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated".to_owned(),
                ));
            }
        }
    }
    Ok(())
}

/// An application command in a bulk overwrite.
pub(crate) fn command(c: &Value) -> Result<(), Invalid> {
    let name = c["name"].as_str().unwrap_or_default();
    let valid = (1..=32).contains(&name.chars().count())
        && name.chars().all(|ch| ch.is_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
    if !valid {
        return Err((
            "name".to_owned(),
            "APPLICATION_COMMAND_INVALID_NAME",
            "Command name is invalid".to_owned(),
        ));
    }
    let kind = c["type"].as_u64().unwrap_or(1);
    if kind == 1 && !(1..=100).contains(&chars(&c["description"])) {
        return Err(too_long("description".to_owned(), 100));
    }
    let options = c["options"].as_array().map_or(&[][..], Vec::as_slice);
    if options.len() > 25 {
        return Err(too_long("options".to_owned(), 25));
    }
    let mut optional_seen = false;
    for (i, o) in options.iter().enumerate() {
        if !(1..=100).contains(&chars(&o["description"])) {
            return Err(too_long(format!("options.{i}.description"), 100));
        }
        let required = o["required"].as_bool().unwrap_or(false);
        if required && optional_seen {
            return Err((
                format!("options.{i}"),
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                "Required options must be placed before non-required options".to_owned(),
            ));
        }
        optional_seen |= !required;
    }
    Ok(())
}
