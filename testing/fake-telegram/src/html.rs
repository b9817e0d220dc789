//! `parse_mode = "HTML"` as the Bot API reads it ("Formatting options", HTML style): the tags it
//! supports, the four named entities and numeric ones. Anything else is refused the way the Bot
//! API refuses it, and the text's length is counted after the markup is taken out, in UTF-16
//! code units, as the 4096 limit of `sendMessage` is.

/// Tags the Bot API accepts in HTML parse mode.
const TAGS: [&str; 16] = [
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// The visible text of `html`, or the Bot API's description of why it cannot be parsed.
pub(crate) fn visible_text(html: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < html.len() {
        match bytes[i] {
            b'<' => {
                let end = html[i..]
                    .find('>')
                    .map(|e| i + e)
                    .ok_or_else(|| format!("can't parse entities: Unclosed start tag at byte offset {i}"))?;
                let inner = &html[i + 1..end];
                if let Some(name) = inner.strip_prefix('/') {
                    let name = name.trim().to_ascii_lowercase();
                    match open.pop() {
                        Some(top) if top == name => {}
                        _ => {
                            return Err(format!(
                                "can't parse entities: Unmatched end tag at byte offset {i}, expected \"</{}>\", found \"</{name}>\"",
                                open.last().map_or("", String::as_str)
                            ));
                        }
                    }
                } else {
                    let name = inner.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
                    if !TAGS.contains(&name.as_str()) {
                        return Err(format!(
                            "can't parse entities: Unsupported start tag \"{name}\" at byte offset {i}"
                        ));
                    }
                    open.push(name);
                }
                i = end + 1;
            }
            b'&' => {
                let end = html[i..].find(';').map(|e| i + e);
                let entity = end.map(|e| &html[i + 1..e]);
                let decoded = match entity {
                    Some("lt") => Some('<'),
                    Some("gt") => Some('>'),
                    Some("amp") => Some('&'),
                    Some("quot") => Some('"'),
                    Some(e) if e.starts_with('#') => {
                        let n = e
                            .strip_prefix("#x")
                            .map_or_else(|| e[1..].parse().ok(), |h| u32::from_str_radix(h, 16).ok());
                        n.and_then(char::from_u32)
                    }
                    _ => None,
                };
                match (decoded, end) {
                    (Some(c), Some(e)) => {
                        out.push(c);
                        i = e + 1;
                    }
                    // The Bot API keeps an unknown `&…` as text.
                    _ => {
                        out.push('&');
                        i += 1;
                    }
                }
            }
            _ => {
                let c = html[i..].chars().next().unwrap_or_default();
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    if let Some(tag) = open.last() {
        return Err(format!("can't parse entities: Can't find end tag corresponding to start tag \"{tag}\""));
    }
    Ok(out)
}

/// The length the Bot API's limits count: UTF-16 code units.
pub(crate) fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::visible_text;

    #[test]
    fn markup_is_taken_out_and_entities_decoded() {
        assert_eq!(visible_text("<b>rm</b> &lt;x&gt; &amp; &#33;").unwrap(), "rm <x> & !");
        assert_eq!(visible_text("<pre><code>ls</code></pre>").unwrap(), "ls");
    }

    #[test]
    fn unsupported_or_unbalanced_tags_are_refused_as_the_bot_api_says() {
        let e = visible_text("<script>x</script>").unwrap_err();
        assert!(e.starts_with("can't parse entities: Unsupported start tag \"script\""), "{e}");
        assert!(visible_text("<b>x").unwrap_err().contains("Can't find end tag"));
        assert!(visible_text("<b>x</i>").unwrap_err().contains("Unmatched end tag"));
    }
}
