//! The speaker's command-line modes. Each runs until SIGTERM or Ctrl-C.

pub mod bgp;
pub mod l2;
pub mod run;

pub use barelb_runtime::Shutdown;

/// A duration flag: `500ms`, `20s` or `2m` (barelb-core's parser would
/// bring k8s-openapi into the speaker, which must have no Kubernetes API).
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: want a whole number and a unit, e.g. 500ms, 20s, 2m"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{s:?}: the unit must be ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    #[test]
    fn durations_parse_with_their_unit_and_refuse_the_rest() {
        assert_eq!(super::duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(super::duration("20s").unwrap().as_secs(), 20);
        assert_eq!(super::duration("2m").unwrap().as_secs(), 120);
        assert_eq!(super::duration("0s").unwrap().as_secs(), 0);
        for bad in ["", "20", "s", "1h", "-1s", "1.5s"] {
            assert!(super::duration(bad).is_err(), "{bad}");
        }
    }
}
