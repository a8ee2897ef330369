//! A scan of an expression's shape before it reaches the CEL parser. The
//! parser recurses once per nesting level and overflows a thread's stack on
//! deeply nested input (a stack overflow aborts the process; `catch_unwind`
//! cannot contain it), and nested comprehensions multiply evaluation work.
//! Both are refused here, with the position of the offending token.

/// The macros that iterate over a list or map.
const COMPREHENSIONS: [&str; 6] = [
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "transformList",
];

/// Checks bracket nesting and comprehension nesting against the limits;
/// returns the deepest comprehension nesting seen (0: none).
pub(crate) fn check(
    expr: &str,
    max_nesting: usize,
    max_comprehensions: usize,
) -> Result<usize, String> {
    let bytes = expr.as_bytes();
    // One entry per open bracket: whether it opened a comprehension.
    let mut open: Vec<bool> = Vec::new();
    let mut comprehensions = 0usize;
    let mut deepest = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' | b'\'' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => {
                let is_comp = c == b'(' && preceding_macro(bytes, i);
                if is_comp {
                    comprehensions += 1;
                    deepest = deepest.max(comprehensions);
                    if comprehensions > max_comprehensions {
                        return Err(format!(
                            "{}: comprehensions nested {comprehensions} deep; the limit is {max_comprehensions} (each level multiplies the work)",
                            position(expr, i)
                        ));
                    }
                }
                open.push(is_comp);
                if open.len() > max_nesting {
                    return Err(format!(
                        "{}: brackets nested {} deep; the limit is {max_nesting}",
                        position(expr, i),
                        open.len()
                    ));
                }
            }
            b')' | b']' | b'}' => {
                let closed_comprehension = open.pop() == Some(true);
                comprehensions -= usize::from(closed_comprehension);
            }
            _ => {}
        }
        i += 1;
    }
    Ok(deepest)
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

/// Returns the index just past the string literal starting at `at`
/// (single, double or triple quoted; backslash escapes).
fn skip_string(bytes: &[u8], at: usize) -> usize {
    let q = bytes[at];
    let triple = bytes.get(at..at + 3) == Some(&[q, q, q][..]);
    let mut i = at + if triple { 3 } else { 1 };
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == q {
            if !triple {
                return i + 1;
            }
            if bytes.get(i..i + 3) == Some(&[q, q, q][..]) {
                return i + 3;
            }
        }
        i += 1;
    }
    bytes.len()
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
