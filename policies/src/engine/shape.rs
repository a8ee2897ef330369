//! A scan of an expression's shape before it reaches the CEL parser. The
//! parser recurses once per nesting level and overflows a thread's stack on
//! deeply nested input (a stack overflow aborts the process; `catch_unwind`
//! cannot contain it), nested comprehensions multiply evaluation work, and
//! a repeated unary operator (`!!x`, `--x`) makes the parser walk its operand
//! twice — nested, that doubles per level: a 251-byte rule took 1.4 s and
//! reported 139,596 errors (found by the `cel` fuzz target). Its error
//! recovery does the same with what it makes of junk: pairs of a unary
//! operator, junk and another (`(!,!(!,!(…`: minutes on a worker given up
//! on, and its memory), the text of a string the lexer refused (a bad
//! escape), mismatched brackets around characters CEL does not have (2 s,
//! 1.2 GB). So every token is checked here — CEL's characters, whole
//! operators, strings that lex, brackets closed by their own kind — and
//! what is not refused with the position of the offending token. No valid
//! expression is refused: valid CEL needs no recovery.

/// The macros that iterate over a list or map.
const COMPREHENSIONS: [&str; 6] = [
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "transformList",
];

/// An open bracket: which, where, and whether it opened a comprehension.
struct Open {
    bracket: u8,
    at: usize,
    comprehension: bool,
}

/// Checks the expression's tokens and brackets: every character outside
/// strings and comments is one of CEL's, every operator whole (`==`, `&&`),
/// every bracket closed by its own kind, nesting and comprehension nesting
/// within the limits. Returns the deepest comprehension nesting (0: none).
/// What the lexer would drop or the parser would recover from is refused
/// here: that recovery is where the parser's time goes (see the module's
/// documentation), and no valid rule needs it.
pub(crate) fn check(
    expr: &str,
    max_nesting: usize,
    max_comprehensions: usize,
) -> Result<usize, String> {
    let bytes = expr.as_bytes();
    let mut open: Vec<Open> = Vec::new();
    let mut comprehensions = 0usize;
    let mut deepest = 0usize;
    // The last token byte: tells a unary `-` from a binary one.
    let mut previous: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() || c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            i = skip_blank(bytes, i);
            continue;
        }
        token(expr, i, previous)?;
        previous = Some(c);
        match c {
            b'"' | b'\'' => {
                i = skip_string(bytes, i).map_err(|e| string_error(expr, i, e))?;
                continue;
            }
            b'`' => {
                i = skip_escaped_name(expr, i)?;
                continue;
            }
            b'=' | b'<' | b'>' | b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                continue;
            }
            b'&' | b'|' => {
                i += 2; // `token` checked the pair
                continue;
            }
            b'(' | b'[' | b'{' => {
                let comprehension = c == b'(' && preceding_macro(bytes, i);
                if comprehension {
                    comprehensions += 1;
                    deepest = deepest.max(comprehensions);
                    if comprehensions > max_comprehensions {
                        return Err(format!(
                            "{}: comprehensions nested {comprehensions} deep; the limit is {max_comprehensions} (each level multiplies the work)",
                            position(expr, i)
                        ));
                    }
                }
                open.push(Open {
                    bracket: c,
                    at: i,
                    comprehension,
                });
                if open.len() > max_nesting {
                    return Err(format!(
                        "{}: brackets nested {} deep; the limit is {max_nesting}",
                        position(expr, i),
                        open.len()
                    ));
                }
            }
            b')' | b']' | b'}' => {
                let closed = close(expr, open.pop(), i)?;
                comprehensions -= usize::from(closed.comprehension);
            }
            _ => {}
        }
        i += 1;
    }
    match open.last() {
        Some(o) => Err(format!(
            "{}: this `{}` is not closed; close it",
            position(expr, o.at),
            char::from(o.bracket)
        )),
        None => Ok(deepest),
    }
}

/// The index past the white space and `//` comments starting at `at`.
fn skip_blank(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() {
        if bytes[at].is_ascii_whitespace() {
            at += 1;
        } else if bytes[at..].starts_with(b"//") {
            at = bytes[at..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |n| at + n);
        } else {
            break;
        }
    }
    at
}

/// Checks the token starting at `at` (outside strings and comments): a
/// character of CEL's, an operator whole, a unary operator followed by its
/// operand.
fn token(expr: &str, at: usize, previous: Option<u8>) -> Result<(), String> {
    let bytes = expr.as_bytes();
    let c = bytes[at];
    let next = bytes.get(at + 1).copied();
    let known = c.is_ascii_alphanumeric() || b"_.,?:()[]{}+-*/%!=<>&|\"'`".contains(&c);
    if !known {
        let ch = expr[at..].chars().next().unwrap_or('?');
        return Err(format!(
            "{}: `{}` is not part of CEL outside a string or comment; remove it or quote it",
            position(expr, at),
            ch.escape_default()
        ));
    }
    let whole = match c {
        b'=' => next == Some(b'='),
        b'&' | b'|' => next == Some(c),
        _ => true,
    };
    if !whole {
        let op = char::from(c);
        let fix = if c == b'=' {
            "==".to_string()
        } else {
            format!("{op}{op}")
        };
        return Err(format!(
            "{}: `{op}` alone is not a CEL operator; write `{fix}`",
            position(expr, at)
        ));
    }
    match unary_operand(bytes, at, previous) {
        None => Ok(()),
        Some(after) => {
            let op = char::from(c);
            Err(if after == Some(c) {
                format!(
                    "{}: `{op}{op}` (a repeated unary operator) is not supported; drop the pair",
                    position(expr, at)
                )
            } else {
                format!(
                    "{}: `{op}` is not followed by what it applies to (a name, a literal or a bracket); complete the expression",
                    position(expr, at)
                )
            })
        }
    }
}

/// The bracket `open` that the closing one at `at` closes, if it is of its
/// kind.
fn close(expr: &str, open: Option<Open>, at: usize) -> Result<Open, String> {
    let c = expr.as_bytes()[at];
    let want = match c {
        b')' => b'(',
        b']' => b'[',
        _ => b'{',
    };
    match open {
        Some(o) if o.bracket == want => Ok(o),
        Some(o) => Err(format!(
            "{}: `{}` does not close the `{}` at {}; match the brackets",
            position(expr, at),
            char::from(c),
            char::from(o.bracket),
            position(expr, o.at)
        )),
        None => Err(format!(
            "{}: `{}` closes no bracket; remove it",
            position(expr, at),
            char::from(c)
        )),
    }
}

/// The refusal of the string literal at `at`.
fn string_error(expr: &str, at: usize, e: StringError) -> String {
    match e {
        // The lexer fails on an unterminated string or a bad escape and the
        // parser then takes the string's text as tokens, unchecked here and
        // costly to recover from (a 1.8-KB rule: 360 ms, 1,003 errors).
        StringError::Unclosed => format!(
            "{}: this string is not closed on its line; close it",
            position(expr, at)
        ),
        StringError::Escape(esc) => format!(
            "{}: `\\{}` is not an escape CEL knows (\\n, \\t, \\\\, \\\", \\xHH, \\uHHHH, …); write `\\\\` for a backslash",
            position(expr, esc),
            expr[esc + 1..].chars().next().unwrap_or(' ')
        ),
    }
}

/// For a unary `!` or `-` at `at` whose operand does not follow it: the
/// next byte that is not white space (None at the end). The parser visits
/// the operand of a pair (`!!x`, `--x`) twice, and its error recovery makes
/// pairs of operators with junk between (`!,!`, `-)-`): nested, either
/// doubles the work per level (`(!,!(!,!(…` took minutes, found by the
/// `cel` fuzz target). In valid CEL an operand starts with a name, a
/// literal, a bracket or a leading dot, never with an operator.
fn unary_operand(bytes: &[u8], at: usize, previous: Option<u8>) -> Option<Option<u8>> {
    let c = bytes[at];
    let unary = match c {
        // `!=` is a comparison; any other `!` is a negation.
        b'!' => bytes.get(at + 1) != Some(&b'='),
        // After an operand (a name, a number, a closing bracket or quote) a
        // `-` is a subtraction.
        b'-' => !previous.is_some_and(|p| {
            p.is_ascii_alphanumeric() || matches!(p, b'_' | b')' | b']' | b'}' | b'"' | b'\'')
        }),
        _ => false,
    };
    if !unary {
        return None;
    }
    let next = bytes.get(skip_blank(bytes, at + 1)).copied();
    let operand = next.is_some_and(|n| {
        n.is_ascii_alphanumeric() || matches!(n, b'_' | b'.' | b'(' | b'[' | b'{' | b'"' | b'\'')
    });
    (!operand).then_some(next)
}

/// Whether the `(` at `at` follows `.name` where name is a comprehension macro.
fn preceding_macro(bytes: &[u8], at: usize) -> bool {
    let mut start = at;
    while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
        start -= 1;
    }
    let name = &bytes[start..at];
    start > 0 && bytes[start - 1] == b'.' && COMPREHENSIONS.iter().any(|m| m.as_bytes() == name)
}

/// Why a string literal does not lex.
enum StringError {
    /// Not closed (a single-quoted one by the end of its line).
    Unclosed,
    /// An escape sequence CEL's lexer refuses, at this byte (its backslash).
    Escape(usize),
}

/// The index just past the string literal starting at `at` (single, double
/// or triple quoted; escapes checked as CEL's lexer does, except in raw
/// strings). A string the lexer refuses must be refused here: the parser
/// then takes its text as tokens, which this scan has not seen (its
/// brackets, its unary operators).
fn skip_string(bytes: &[u8], at: usize) -> Result<usize, StringError> {
    let q = bytes[at];
    let triple = bytes.get(at..at + 3) == Some(&[q, q, q][..]);
    let raw = raw_prefix(bytes, at);
    let mut i = at + if triple { 3 } else { 1 };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if !raw => {
                i += escape_len(&bytes[i..]).ok_or(StringError::Escape(i))?;
                continue;
            }
            b'\n' | b'\r' if !triple => return Err(StringError::Unclosed),
            b if b == q => {
                if !triple {
                    return Ok(i + 1);
                }
                if bytes.get(i..i + 3) == Some(&[q, q, q][..]) {
                    return Ok(i + 3);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(StringError::Unclosed)
}

/// The index just past the backquoted name (CEL's escaped identifier,
/// `` `a-b.c` ``) starting at `at`. The lexer has no token for a backquote
/// outside one, and the parser's recovery then reads on past it: a quote
/// after a stray backquote is taken by the lexer as the start of a string
/// this scan never sees, or the reverse (2 s and 168 MB for a 0.6-KB rule,
/// found by the `cel` fuzz target).
fn skip_escaped_name(expr: &str, at: usize) -> Result<usize, String> {
    let bytes = expr.as_bytes();
    let allowed =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/' | b' ');
    let len = bytes[at + 1..].iter().take_while(|b| allowed(b)).count();
    let end = at + 1 + len;
    if len > 0 && bytes.get(end) == Some(&b'`') {
        return Ok(end + 1);
    }
    Err(format!(
        "{}: this backquoted name is not closed, or holds more than letters, digits, `_`, `.`, `-`, `/` and spaces; close it or quote the text",
        position(expr, at)
    ))
}

/// The length of the escape sequence `esc` starts with (at its backslash),
/// or None when CEL's grammar has no such escape: a backslash and one of
/// `abfnrtv"'\?` or a backquote, three octal digits (the first 0-3), `x`
/// and two hex digits, `u` and four, `U` and eight.
fn escape_len(esc: &[u8]) -> Option<usize> {
    let hex = |n: usize| {
        esc.get(2..2 + n)
            .is_some_and(|d| d.iter().all(u8::is_ascii_hexdigit))
    };
    let octal = |b: &u8| (b'0'..=b'7').contains(b);
    match *esc.get(1)? {
        b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'"' | b'\'' | b'\\' | b'?' | b'`' => {
            Some(2)
        }
        b'0'..=b'3' if esc.get(2..4).is_some_and(|d| d.iter().all(octal)) => Some(4),
        b'x' | b'X' if hex(2) => Some(4),
        b'u' if hex(4) => Some(6),
        b'U' if hex(8) => Some(10),
        _ => None,
    }
}

/// Whether the quote at `at` opens a raw string (`r'…'`, `rb'…'`, `BR'…'`).
fn raw_prefix(bytes: &[u8], at: usize) -> bool {
    let mut start = at;
    while start > 0 && at - start < 2 && matches!(bytes[start - 1], b'r' | b'R' | b'b' | b'B') {
        start -= 1;
    }
    let prefix = &bytes[start..at];
    let standalone =
        start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
    standalone && prefix.iter().any(|b| matches!(b, b'r' | b'R'))
}

/// `line:column` (1-based) of byte offset `at`, as the CEL parser reports.
fn position(expr: &str, at: usize) -> String {
    let before = &expr[..at.min(expr.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}")
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn nesting_is_bounded_with_position() {
        assert!(check("((true))", 4, 2).is_ok());
        let err = check("(((((true)))))", 4, 2).unwrap_err();
        assert!(err.starts_with("1:5:"), "{err}");
        assert!(check("[[[[[1]]]]]", 4, 2).is_err());
    }

    /// Each expression is refused at its position with a message naming `why`.
    fn refused_at(cases: &[(&str, &str)], why: &str) {
        for (bad, at) in cases {
            let err = check(bad, 24, 2).unwrap_err();
            assert!(
                err.starts_with(&format!("{at}:")) && err.contains(why),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn repeated_unary_operators_are_refused_with_position() {
        for ok in [
            "!x",
            "-1",
            "a - -1",
            "a--1",
            "x != y",
            "!(a != b)",
            "'--' == '!!'",
            "(a)-1",
            "[1]-1",
            "-a - -b",
        ] {
            assert!(check(ok, 24, 2).is_ok(), "{ok}");
        }
        refused_at(
            &[
                ("!!x", "1:1"),
                ("a && ! !b", "1:6"),
                ("--1", "1:1"),
                ("a + - -1", "1:5"),
                ("(--[1])", "1:2"),
            ],
            "repeated unary",
        );
    }

    #[test]
    fn unary_operators_without_an_operand_are_refused_with_position() {
        for ok in [
            "!has(x.y)",
            "-x.y",
            "-.5 < 1.0",
            "![true][0]",
            "!{'a': true}['a']",
            "-(1)",
            "!'a'.startsWith('b')",
            "a-b",
            "a !=b",
        ] {
            assert!(check(ok, 24, 2).is_ok(), "{ok}");
        }
        refused_at(
            &[
                ("!,!x", "1:1"),
                ("(!,!(!,!(x)))", "1:2"),
                ("a && !$!b", "1:6"),
                ("1 + -)-1", "1:5"),
                ("!-x", "1:1"),
                ("-!x", "1:1"),
                ("x == !", "1:6"),
            ],
            "not followed by what it applies to",
        );
    }

    #[test]
    fn unclosed_strings_are_refused_with_position() {
        for ok in [
            "'a' == \"b\"",
            "'''a\nb''' == x",
            r"r'a\' == 'b'",
            r"'a\'' == x",
            "br'x' == b'y'",
        ] {
            assert!(check(ok, 24, 2).is_ok(), "{ok}");
        }
        refused_at(
            &[
                ("x == 'abc", "1:6"),
                ("'a\n' == x", "1:1"),
                ("'''abc", "1:1"),
                (r"'a\' == x", "1:1"),
            ],
            "not closed",
        );
    }

    #[test]
    fn escapes_are_checked_as_the_lexer_does() {
        for ok in [
            r#"'\a\b\f\n\r\t\v\"\'\\\?\`' == x"#,
            r"'\101\x41\X4a\u0041\U0001F600' == x",
            r"'''\n''' == x",
            r"r'\s\d' == x",
            r"R'''\q''' == x",
        ] {
            assert!(check(ok, 24, 2).is_ok(), "{ok}");
        }
        // The slow input the `cel` target found: a string whose bad escape
        // made the lexer give up on it, and the parser take `(q(!…` inside
        // as tokens — brackets and negations this scan had skipped.
        refused_at(
            &[
                (r"'a\sb(q(!x' == y", "1:3"),
                (r"x == '\400'", "1:7"),
                (r"'\x4' == x", "1:2"),
                (r"'\u004' == x", "1:2"),
                (r"'''\q''' == x", "1:4"),
                ("'\\\u{e9}' == x", "1:2"),
            ],
            "is not an escape CEL knows",
        );
        let err = check(r"'\s'", 24, 2).unwrap_err();
        assert!(err.contains(r"`\s` is not an escape"), "{err}");
    }

    #[test]
    fn tokens_outside_strings_and_comments_are_cels() {
        for ok in [
            "a == b && c != d || e <= f && g >= h",
            "x // it's a comment, with `!` and (\n == 'y'",
            "! // why\n x",
            "- // a comment\n 1 > x",
            "a.`b-c/d` == 1",
            "1 // only a comment",
        ] {
            assert!(check(ok, 24, 2).is_ok(), "{ok}");
        }
        refused_at(
            &[("a # b", "1:3"), ("'é' == é", "1:8"), ("x\\y", "1:2")],
            "is not part of CEL",
        );
        refused_at(
            &[
                ("a = b", "1:3"),
                ("a & b", "1:3"),
                ("a | b", "1:3"),
                ("a === b", "1:5"),
            ],
            "alone is not a CEL operator",
        );
        let err = check("a ; b", 24, 2).unwrap_err();
        assert!(err.starts_with("1:3:") && err.contains("`;`"), "{err}");
        let err = check("é", 24, 2).unwrap_err();
        assert!(err.contains(r"`\u{e9}`"), "{err}");
    }

    #[test]
    fn backquoted_names_lex_as_the_grammar_has_them() {
        for ok in ["a.`b-c/d e.f_0` == 1", "{`k`: 1}.`k` > 0"] {
            assert!(check(ok, 24, 2).is_ok(), "{ok}");
        }
        refused_at(
            &[
                ("a.`b", "1:3"),
                ("a.`` == 1", "1:3"),
                ("`'(!(!`", "1:1"),
                ("x && `a\nb` == 1", "1:6"),
                ("`a\nb`", "1:1"),
            ],
            "backquoted name",
        );
    }

    #[test]
    fn brackets_close_their_own_kind() {
        assert!(check("[(a), {b: [c]}] == x", 24, 2).is_ok());
        refused_at(&[("(a]", "1:3"), ("{a: (b})", "1:7")], "does not close the");
        refused_at(&[("a)", "1:2"), ("'(' )", "1:5")], "closes no bracket");
        refused_at(
            &[("(a", "1:1"), ("[(a)", "1:1"), ("x(\n(y)", "1:2")],
            "is not closed",
        );
        // The slow input the `cel` target found after the escapes: junk and
        // a mismatched `}` inside a bracket, repeated (2 s, 1.2 GB).
        assert!(check("(\u{1}}--(x)", 24, 2).is_err());
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert!(check("'((((((' == \"[[[[[[\" && '''(((((('''", 2, 2).is_ok());
        assert!(check(r"'\'(((((' == 'x'", 2, 2).is_ok());
    }

    #[test]
    fn comprehension_depth_is_bounded() {
        let two = "a.all(x, b.exists(y, x == y))";
        assert_eq!(check(two, 32, 2), Ok(2));
        assert_eq!(check("a.b == 'x.all('", 32, 2), Ok(0));
        let three = "a.all(x, b.exists(y, c.map(z, z).size() > 0))";
        let err = check(three, 32, 2).unwrap_err();
        assert!(err.contains("comprehensions nested 3 deep"), "{err}");
        // Sequential comprehensions are not nested.
        assert!(check("a.all(x, x) && b.all(y, y) && c.all(z, z)", 32, 1).is_ok());
        // A function called `map` that is not a method is not a comprehension.
        assert!(check("map(1) && mapx.all(x, x)", 32, 1).is_ok());
    }
}
