use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(entries: &[&str], avoid: bool) -> PoolIpam {
    PoolIpam::new(
        entries.iter().map(|e| IpRange::parse(e).unwrap()).collect(),
        avoid,
    )
}

#[test]
fn parses_cidrs_and_ranges_and_refuses_bad_entries() {
    let r = IpRange::parse("10.0.10.0/24").unwrap();
    assert_eq!((r.family, r.size()), (Family::V4, 256));
    assert_eq!(IpRange::parse("10.0.10.10-10.0.10.50").unwrap().size(), 41);
    assert_eq!(IpRange::parse("2001:db8::/64").unwrap().size(), 1 << 64);
    assert_eq!(
        IpRange::parse("10.0.10.5/24"),
        Err(RangeError::HostBits("10.0.10.5/24".into()))
    );
    assert!(matches!(
        IpRange::parse("10.0.10.50-10.0.10.10"),
        Err(RangeError::Backwards(_))
    ));
    assert!(matches!(
        IpRange::parse("2001:db8::9-2001:db8::1"),
        Err(RangeError::Backwards(_))
    ));
    assert!(matches!(
        IpRange::parse("10.0.0.1-2001:db8::1"),
        Err(RangeError::MixedFamilies(_))
    ));
    assert!(matches!(
        IpRange::parse("banana"),
        Err(RangeError::Syntax(_))
    ));
    assert!(matches!(
        IpRange::parse("10.0.0.0/33"),
        Err(RangeError::Syntax(_))
    ));
}

#[test]
fn allocates_lowest_free_and_reuses_released() {
    let mut p = pool(&["10.0.0.0/30"], false);
    assert_eq!(p.total(Family::V4), 4);
    let got: Vec<_> = (0..4).map(|_| p.allocate(Family::V4).unwrap()).collect();
    assert_eq!(
        got,
        [
            ip("10.0.0.0"),
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.3")
        ]
    );
    assert_eq!(p.allocate(Family::V4), None);
    assert!(p.release(&ip("10.0.0.2")));
    assert!(!p.release(&ip("10.0.0.2")), "double release");
    assert_eq!(p.allocate(Family::V4), Some(ip("10.0.0.2")));
    assert_eq!(p.allocated(Family::V4), 4);
    assert_eq!(p.allocate(Family::V6), None, "no IPv6 in the pool");
}

#[test]
fn claim_reports_why() {
    let mut p = pool(&["10.0.0.0/24"], true);
    assert_eq!(p.claim(&ip("10.0.0.7")), Ok(()));
    assert_eq!(p.claim(&ip("10.0.0.7")), Err(ClaimError::InUse));
    assert_eq!(p.claim(&ip("10.0.1.7")), Err(ClaimError::NotInPool));
    assert_eq!(p.claim(&ip("10.0.0.255")), Err(ClaimError::Avoided));
    assert_eq!(p.claim(&ip("2001:db8::1")), Err(ClaimError::NotInPool));
}

#[test]
fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
    let mut p = pool(&["10.0.0.250-10.0.1.5"], true);
    // .250-.254 and .1-.5 of the next block: 10 addresses.
    assert_eq!(p.total(Family::V4), 10);
    let got: Vec<_> = std::iter::from_fn(|| p.allocate(Family::V4)).collect();
    assert_eq!(got.len(), 10);
    assert!(
        got.iter()
            .all(|a| !a.to_string().ends_with(".0") && !a.to_string().ends_with(".255"))
    );
    assert!(!p.release(&ip("10.0.0.255")));
}

#[test]
fn overlapping_and_adjacent_entries_count_once() {
    let p = pool(
        &["10.0.0.0/25", "10.0.0.128/25", "10.0.0.10-10.0.0.20"],
        false,
    );
    assert_eq!(p.total(Family::V4), 256);
    assert_eq!(p.fragments(), 1);
}

#[test]
fn ipv6_slash_64_works() {
    let mut p = pool(&["2001:db8:1::/64", "198.51.100.0/31"], false);
    assert_eq!(p.total(Family::V6), 1 << 64);
    assert_eq!(display_count(p.total(Family::V6)), "2^64");
    assert_eq!(p.allocate(Family::V6), Some(ip("2001:db8:1::")));
    assert_eq!(p.allocate(Family::V6), Some(ip("2001:db8:1::1")));
    p.claim(&ip("2001:db8:1::ffff:ffff:ffff:ffff")).unwrap();
    assert_eq!(p.allocated(Family::V6), 3);
    assert_eq!(p.allocate(Family::V4), Some(ip("198.51.100.0")));
}

#[test]
fn interval_set_merges_on_insert() {
    let mut s = IntervalSet::default();
    s.insert_range(0, 9);
    for x in [3, 4, 5] {
        assert!(s.remove(x));
    }
    assert_eq!(s.intervals(), 2);
    assert!(s.insert(4));
    assert_eq!(s.intervals(), 3);
    assert!(s.insert(3) && s.insert(5));
    assert_eq!(s.intervals(), 1);
    assert!(!s.insert(5));
    assert!(!s.remove(u128::MAX));
    let mut edge = IntervalSet::default();
    assert!(edge.insert(u128::MAX));
    assert!(edge.insert(u128::MAX - 1));
    assert_eq!(edge.intervals(), 1);
}

fn ranges_strategy() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((0u32..2000, 0u32..300), 1..5)
}

proptest! {
    /// Every address handed out is in the pool, none twice, and the counts
    /// agree with what was handed out.
    #[test]
    fn never_a_duplicate_never_outside(ranges in ranges_strategy(), avoid in any::<bool>(), ops in prop::collection::vec(any::<(bool, u16)>(), 0..400)) {
        let base = u32::from(Ipv4Addr::new(10, 1, 0, 0));
        let ranges: Vec<IpRange> = ranges.iter().map(|&(start, len)| IpRange {
            family: Family::V4,
            first: u128::from(base + start),
            last: u128::from(base + start + len),
        }).collect();
        let mut p = PoolIpam::new(ranges.clone(), avoid);
        let mut held: Vec<IpAddr> = Vec::new();
        let mut seen = HashSet::new();
        for (alloc, pick) in ops {
            if alloc || held.is_empty() {
                match p.allocate(Family::V4) {
                    Some(a) => {
                        prop_assert!(ranges.iter().any(|r| r.contains(&a)), "{a} outside the pool");
                        prop_assert!(seen.insert(a), "{a} handed out twice");
                        if avoid {
                            let last = match a { IpAddr::V4(v) => v.octets()[3], IpAddr::V6(_) => 1 };
                            prop_assert!(last != 0 && last != 255);
                        }
                        held.push(a);
                    }
                    None => prop_assert_eq!(p.allocated(Family::V4), p.total(Family::V4)),
                }
            } else {
                let a = held.swap_remove(usize::from(pick) % held.len());
                prop_assert!(p.release(&a));
                seen.remove(&a);
            }
            prop_assert_eq!(p.allocated(Family::V4), held.len() as u128);
        }
    }

    /// Releasing then allocating gives the same address back when it is the
    /// lowest free one, and claim/release round-trip.
    #[test]
    fn release_allocate_round_trips(n in 1usize..200) {
        let mut p = pool(&["2001:db8::/120", "10.9.0.0/24"], false);
        let got: Vec<IpAddr> = (0..n).map(|_| p.allocate(Family::V6).unwrap()).collect();
        let victim = got[n / 2];
        prop_assert!(p.release(&victim));
        prop_assert_eq!(p.allocate(Family::V6), Some(victim));
        prop_assert!(p.release(&victim));
        prop_assert_eq!(p.claim(&victim), Ok(()));
        prop_assert_eq!(p.claim(&victim), Err(ClaimError::InUse));
        prop_assert_eq!(p.allocated(Family::V6), n as u128);
    }
}
