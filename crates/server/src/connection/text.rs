//! Client-supplied text on its way to logs and session.json: bounded in length, and escaped in
//! logs so a newline or a terminal escape in a participant id cannot forge a log line.

use std::fmt;

/// Most bytes of one client-supplied string kept in the report or shown in a log line.
pub(crate) const MAX_CLIENT_TEXT_BYTES: usize = 256;

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a char boundary.
pub(crate) fn truncated(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to [`MAX_CLIENT_TEXT_BYTES`], owned: what the report keeps of a client string.
pub(crate) fn bounded(text: &str) -> String {
    truncated(text, MAX_CLIENT_TEXT_BYTES).to_owned()
}

/// Shows client text in a log line: at most [`MAX_CLIENT_TEXT_BYTES`] of it, escaped as Rust
/// escapes a string literal (`\n`, `\u{1b}`, `\"`), with `…` when it was cut.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = truncated(self.0, MAX_CLIENT_TEXT_BYTES);
        fmt::Display::fmt(&shown.escape_debug(), f)?;
        if shown.len() < self.0.len() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_chars() {
        assert_eq!(truncated("héllo", 2), "h");
        assert_eq!(truncated("héllo", 3), "hé");
        assert_eq!(truncated("abc", 10), "abc");
        assert_eq!(bounded(&"x".repeat(1000)).len(), MAX_CLIENT_TEXT_BYTES);
    }

    #[test]
    fn escaped_text_cannot_forge_a_log_line() {
        let shown = Escaped("a\nINFO forged\u{1b}[31m").to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert_eq!(shown, "a\\nINFO forged\\u{1b}[31m");
        let long = Escaped(&"y".repeat(1000)).to_string();
        assert!(long.ends_with('…') && long.len() < 300, "{long}");
    }
}
