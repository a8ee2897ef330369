//! Messages built from what the interpreter reports, kept short.
//!
//! They end up in a webhook's refusal, a Service's event and a policy's
//! status, so each is one line of bounded length. The interpreter's own
//! texts are not: a 4-KB rule of `+` signs gives one parse error per sign,
//! each repeating the whole line (24 MB, seconds to format), and a runtime
//! error prints any value it met in full. Formatting stops once the bound is
//! reached, so the cost is bounded too.

use std::fmt::{self, Display, Write};

use kube_cel::cel::ParseErrors;

/// Longest message, in bytes (Kubernetes keeps an event's message to 1 KB).
pub(crate) const MAX_MESSAGE: usize = 512;
/// Characters of the rule shown either side of a parse error.
const CONTEXT: usize = 24;

/// `d` on one line (runs of white space become one space), cut to
/// [`MAX_MESSAGE`] bytes with an ellipsis.
pub(crate) fn bounded(d: impl Display) -> String {
    let mut out = OneLine {
        text: String::new(),
        space: false,
        full: false,
    };
    // An error here only means the bound was reached.
    let _ = write!(out, "{d}");
    if out.full {
        out.text.push('…');
    }
    out.text
}

/// The first parse error of `expression`: position, what the parser
/// expected, the text around it, and how many more errors there are.
pub(crate) fn parse_error(errors: &ParseErrors, expression: &str) -> String {
    let Some(first) = errors.errors.first() else {
        return "the expression does not parse".into();
    };
    let (line, column) = first.pos;
    let mut message = format!("{line}:{column}: {}", first.msg);
    if let Some(near) = near(expression, line, column) {
        message.push_str(&format!(" (at \"{near}\")"));
    }
    match errors.errors.len() {
        0 | 1 => {}
        2 => message.push_str(" and 1 more error"),
        n => message.push_str(&format!(" and {} more errors", n - 1)),
    }
    bounded(message)
}

/// The characters around 1-based `line`, `column`, the error's place marked
/// with `⟨here⟩`.
fn near(expression: &str, line: isize, column: isize) -> Option<String> {
    let text = expression
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let at = usize::try_from(column).ok()?.saturating_sub(1);
    let before: String = text.chars().take(at).collect();
    let before: String = before
        .chars()
        .skip(before.chars().count().saturating_sub(CONTEXT))
        .collect();
    let after: String = text.chars().skip(at).take(CONTEXT).collect();
    Some(format!("{before}⟨here⟩{after}"))
}

/// A writer that folds white space and refuses past [`MAX_MESSAGE`].
struct OneLine {
    text: String,
    space: bool,
    full: bool,
}

impl Write for OneLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if c.is_whitespace() {
                self.space = !self.text.is_empty();
                continue;
            }
            let needed = c.len_utf8() + usize::from(self.space);
            if self.text.len() + needed > MAX_MESSAGE {
                self.full = true;
                return Err(fmt::Error);
            }
            if std::mem::take(&mut self.space) {
                self.text.push(' ');
            }
            self.text.push(c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_white_space_and_cuts_at_the_bound() {
        assert_eq!(bounded(" a \n\t b  "), "a b");
        let long = bounded("x ".repeat(10_000));
        assert!(long.len() <= MAX_MESSAGE + '…'.len_utf8(), "{}", long.len());
        assert!(long.ends_with('…'));
        // Multi-byte characters are never split.
        assert!(bounded("é".repeat(1_000)).starts_with("éé"));
    }

    #[test]
    fn a_parse_error_names_its_place_and_counts_the_rest() {
        let errors = kube_cel::cel::Program::compile("a b")
            .err()
            .into_iter()
            .next();
        let message = parse_error(&errors.expect("does not parse"), "a b");
        assert!(message.starts_with("1:3: Syntax error"), "{message}");
        assert!(message.contains("(at \"a ⟨here⟩b\")"), "{message}");
    }
}
