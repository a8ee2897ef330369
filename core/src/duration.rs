//! Durations as Kubernetes writes them (`metav1.Duration`, Go's
//! `time.ParseDuration`): a sequence of decimal numbers, each with a unit,
//! such as `90s`, `100ms`, `1m30s`, `1.5h`. The one parser for BGPPeer
//! fields and the operator's flags alike.

use std::time::Duration;

/// A string that is not a duration, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a duration ({why}); write a number and a unit (h, m, s, ms), e.g. 90s, 500ms or 1m30s"
)]
pub struct DurationError {
    pub input: String,
    pub why: &'static str,
}

/// Nanoseconds per unit, longest unit names first so `ms` wins over `m`.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses `s` exactly (no floating point: `0.1s` is 100 ms to the
/// nanosecond). Leading and trailing white space is an error, as in Go.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        input: s.to_string(),
        why,
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(err("expected a number"));
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, next) = after.split_at(unit_len);
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(err(if unit.is_empty() {
                "missing unit"
            } else {
                "unknown unit"
            }));
        };
        total = total
            .checked_add(scaled(int, frac, scale).ok_or_else(|| err("too large"))?)
            .ok_or_else(|| err("too large"))?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("too large"))?;
    // The remainder of a division by 10^9 always fits in u32.
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| err("too large"))?;
    Ok(Duration::new(secs, nanos))
}

/// `int.frac` units of `scale` nanoseconds each, truncated to whole
/// nanoseconds (as Go does); None on overflow. Fraction digits past the
/// 24th are below a nanosecond of any unit and are ignored.
fn scaled(int: &str, frac: &str, scale: u128) -> Option<u128> {
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac = &frac[..frac.len().min(24)];
    let part: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let digits = u32::try_from(frac.len()).ok()?;
    whole
        .checked_mul(scale)?
        .checked_add(part.checked_mul(scale)? / 10u128.pow(digits))
}

/// Like [`parse`], for an optional field with a default.
pub fn parse_or(s: Option<&str>, default: Duration) -> Result<Duration, DurationError> {
    s.map_or(Ok(default), parse)
}

#[cfg(test)]
mod tests;
