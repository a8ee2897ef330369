use std::time::Duration;

use proptest::prelude::*;

use super::parse;

#[test]
fn kubernetes_spellings() {
    let ms = Duration::from_millis;
    for (s, want) in [
        ("100ms", ms(100)),
        ("90s", ms(90_000)),
        ("1m30s", ms(90_000)),
        ("1h", ms(3_600_000)),
        ("1.5h", ms(5_400_000)),
        ("0.1s", ms(100)),
        ("0s", Duration::ZERO),
        ("0", Duration::ZERO),
        ("2h45m10.5s", ms(9_910_500)),
        ("1500us", ms(1) + Duration::from_micros(500)),
        ("7ns", Duration::from_nanos(7)),
        (".5s", ms(500)),
    ] {
        assert_eq!(parse(s), Ok(want), "{s}");
    }
}

#[test]
fn refusals_name_the_input_and_the_fix() {
    for s in [
        "", "15 ", " 15s", "15", "1x", "s", "-1s", "1.s5", "1h 2m", "..5s",
    ] {
        let e = parse(s).expect_err(s);
        let line = e.to_string();
        assert!(line.contains(&format!("{s:?}")), "{line}");
        assert!(line.contains("e.g. 90s"), "{line}");
    }
    assert!(parse("99999999999999999999999h").is_err());
}

/// The CRD's duration pattern, read from the generated BGPPeer CRD: what
/// the apiserver lets through is what this parser must read.
fn crd_pattern() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds/bgppeers.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("pattern:") && l.contains("ms"))
        .unwrap();
    let pattern = line.split_once("pattern:").unwrap().1.trim();
    // A generated string is whole by construction: drop the anchors.
    pattern
        .trim_start_matches('^')
        .trim_end_matches('$')
        .to_string()
}

/// An independent reading of a pattern-shaped string, term by term as an
/// exact decimal, in nanoseconds; None past u128.
fn reference_ns(s: &str) -> Option<u128> {
    let mut total_ns: u128 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let ns_per_unit: u128 = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1_000_000
            }
            'm' => 60_000_000_000,
            'h' => 3_600_000_000_000,
            _ => 1_000_000_000,
        };
        let (int, frac) = num.split_once('.').unwrap_or((&num, ""));
        let frac = &frac[..frac.len().min(24)];
        let digits = u32::try_from(frac.len()).unwrap();
        let int: u128 = int.parse().ok()?;
        let frac_value: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().unwrap()
        };
        total_ns = total_ns
            .checked_add(int.checked_mul(ns_per_unit)?)?
            .checked_add(frac_value * ns_per_unit / 10u128.pow(digits))?;
        num.clear();
    }
    Some(total_ns)
}

proptest! {
    #[test]
    fn every_string_the_crd_admits_parses_to_its_value(
        s in proptest::string::string_regex(&crd_pattern()).unwrap()
            .prop_filter("the CRD's maxLength", |s| s.len() <= 32)
    ) {
        let want = reference_ns(&s);
        // The pattern alone admits values past what a Duration holds (the
        // fields' CEL rules bound them); those are refused as too large.
        if want.is_none_or(|ns| ns / 1_000_000_000 > u128::from(u64::MAX)) {
            let e = parse(&s).unwrap_err();
            prop_assert_eq!(e.why, "too large");
        } else {
            let got = parse(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(Some(got.as_nanos()), want, "{}", s);
        }
    }

    #[test]
    fn milliseconds_and_seconds_read_back(ms in 0u64..10_000_000) {
        prop_assert_eq!(parse(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
        let secs = format!("{}.{:03}s", ms / 1000, ms % 1000);
        prop_assert_eq!(parse(&secs), Ok(Duration::from_millis(ms)));
    }
}
