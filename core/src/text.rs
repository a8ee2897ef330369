//! Messages on one line. A status condition, an admission denial and an
//! event are read as one line (kubectl's columns, Argo CD's health
//! message, a log line), and they quote what users wrote — annotation
//! values, CEL expressions, compiler errors — which may hold newlines or
//! other control characters.

use std::borrow::Cow;

/// `s` with each control character written as an escape (`\n`, `\t`,
/// `\u{1b}`), so it stays on one line; borrowed when there is none.
pub fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(one_line("pool web: ok é"), Cow::Borrowed(_)));
        assert_eq!(one_line("a\nb\r\tc\u{1b}d"), "a\\nb\\r\\tc\\u{1b}d");
        assert!(!one_line("x\u{85}y").contains('\u{85}'));
    }
}
