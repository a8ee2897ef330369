//! Address management for one pool: ordered sets of free intervals per IP
//! family. Allocation takes the lowest free address; claim, allocate and
//! release are O(log n) in the number of free intervals. Plain Rust: no
//! Kubernetes, no async.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn index(self) -> usize {
        match self {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }

    /// Kubernetes' name for the family (`IPv4` / `IPv6`).
    pub fn k8s_name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

fn from_u128(family: Family, n: u128) -> IpAddr {
    match family {
        // Values of the V4 set come from u32s, so the conversion cannot fail;
        // fall back to 0.0.0.0 rather than panic.
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or_default())),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// One inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    pub family: Family,
    pub first: u128,
    pub last: u128,
}

/// Why an `addresses` entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{0:?} is neither a CIDR (10.0.10.0/24) nor a range (10.0.10.10-10.0.10.50)")]
    Syntax(String),
    #[error("{0:?} has host bits set; write the network address")]
    HostBits(String),
    #[error("{0:?} mixes IPv4 and IPv6")]
    MixedFamilies(String),
    #[error("{0:?} starts after it ends; write the lower address first")]
    Backwards(String),
}

impl IpRange {
    /// Parses a CIDR or an inclusive `first-last` range.
    pub fn parse(entry: &str) -> Result<Self, RangeError> {
        let entry_err = || RangeError::Syntax(entry.to_string());
        if let Some((first, last)) = entry.split_once('-') {
            let first = IpAddr::from_str(first.trim()).map_err(|_| entry_err())?;
            let last = IpAddr::from_str(last.trim()).map_err(|_| entry_err())?;
            if Family::of(&first) != Family::of(&last) {
                return Err(RangeError::MixedFamilies(entry.to_string()));
            }
            let (first_n, last_n) = (to_u128(&first), to_u128(&last));
            if first_n > last_n {
                return Err(RangeError::Backwards(entry.to_string()));
            }
            return Ok(IpRange {
                family: Family::of(&first),
                first: first_n,
                last: last_n,
            });
        }
        let net = ipnet::IpNet::from_str(entry.trim()).map_err(|_| entry_err())?;
        if net.network() != net.addr() {
            return Err(RangeError::HostBits(entry.to_string()));
        }
        Ok(IpRange {
            family: Family::of(&net.network()),
            first: to_u128(&net.network()),
            last: to_u128(&net.broadcast()),
        })
    }

    /// Number of addresses in the range.
    pub fn size(&self) -> u128 {
        // A full IPv6 range (::/0) has 2^128 addresses; saturate.
        (self.last - self.first).saturating_add(1)
    }

    /// Whether the ranges share an address.
    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.family == other.family && self.first <= other.last && other.first <= self.last
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let n = to_u128(ip);
        Family::of(ip) == self.family && self.first <= n && n <= self.last
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            from_u128(self.family, self.first),
            from_u128(self.family, self.last)
        )
    }
}

/// Disjoint, non-adjacent inclusive intervals, keyed by start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct IntervalSet {
    map: BTreeMap<u128, u128>,
}

impl IntervalSet {
    fn lowest(&self) -> Option<u128> {
        self.map.first_key_value().map(|(s, _)| *s)
    }

    fn contains(&self, x: u128) -> bool {
        self.map
            .range(..=x)
            .next_back()
            .is_some_and(|(_, e)| x <= *e)
    }

    /// Removes `x`; false if it was not in the set.
    fn remove(&mut self, x: u128) -> bool {
        let Some((&start, &end)) = self.map.range(..=x).next_back() else {
            return false;
        };
        if x > end {
            return false;
        }
        self.map.remove(&start);
        if start < x {
            self.map.insert(start, x - 1);
        }
        if x < end {
            self.map.insert(x + 1, end);
        }
        true
    }

    /// Inserts `x`, merging with neighbours; false if it was already there.
    fn insert(&mut self, x: u128) -> bool {
        if self.contains(x) {
            return false;
        }
        let mut start = x;
        let mut end = x;
        if let Some((&s, &e)) = self.map.range(..x).next_back()
            && e.checked_add(1) == Some(x)
        {
            self.map.remove(&s);
            start = s;
        }
        if let Some(next) = x.checked_add(1)
            && let Some(e) = self.map.remove(&next)
        {
            end = e;
        }
        self.map.insert(start, end);
        true
    }

    /// Adds a whole range that is disjoint from the set.
    fn insert_range(&mut self, first: u128, last: u128) {
        self.map.insert(first, last);
    }

    fn intervals(&self) -> usize {
        self.map.len()
    }
}

/// Why an address cannot be claimed from a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("not in the pool")]
    NotInPool,
    #[error("already allocated")]
    InUse,
    #[error("ends in .0 or .255 and the pool sets avoidBuggyIPs")]
    Avoided,
}

/// The addresses of one pool and which of them are free.
#[derive(Clone, Debug)]
pub struct PoolIpam {
    ranges: Vec<IpRange>,
    free: [IntervalSet; 2],
    total: [u128; 2],
    allocated: [u128; 2],
    avoid_buggy_ips: bool,
}

impl PoolIpam {
    /// A pool over `ranges`, all free. With `avoid_buggy_ips`, IPv4 addresses
    /// ending in .0 or .255 are never handed out (and not counted).
    pub fn new(ranges: Vec<IpRange>, avoid_buggy_ips: bool) -> Self {
        let mut free = [IntervalSet::default(), IntervalSet::default()];
        let mut total = [0u128; 2];
        let mut sorted = ranges.clone();
        sorted.sort();
        // Merge overlapping and adjacent entries so each address counts once.
        let mut merged: Vec<IpRange> = Vec::new();
        for r in sorted {
            match merged.last_mut() {
                Some(m) if m.family == r.family && r.first <= m.last.saturating_add(1) => {
                    m.last = m.last.max(r.last);
                }
                _ => merged.push(r),
            }
        }
        for r in merged {
            let i = r.family.index();
            let pieces = if r.family == Family::V4 && avoid_buggy_ips {
                split_buggy_v4(r.first, r.last)
            } else {
                vec![(r.first, r.last)]
            };
            for (a, b) in pieces {
                free[i].insert_range(a, b);
                total[i] = total[i].saturating_add((b - a).saturating_add(1));
            }
        }
        PoolIpam {
            ranges,
            free,
            total,
            allocated: [0; 2],
            avoid_buggy_ips,
        }
    }

    /// The ranges the pool was built from.
    pub fn ranges(&self) -> &[IpRange] {
        &self.ranges
    }

    /// Whether `ip` is one of the pool's addresses (free or not). Buggy
    /// addresses of an `avoidBuggyIPs` pool are inside the pool's ranges and
    /// count as contained, so an explicit request for one is refused as such.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether the pool has any address of `family`.
    pub fn has_family(&self, family: Family) -> bool {
        self.total[family.index()] > 0
    }

    /// Takes the lowest free address of `family`.
    pub fn allocate(&mut self, family: Family) -> Option<IpAddr> {
        let set = &mut self.free[family.index()];
        let n = set.lowest()?;
        set.remove(n);
        self.allocated[family.index()] += 1;
        Some(from_u128(family, n))
    }

    /// Takes a specific address.
    pub fn claim(&mut self, ip: &IpAddr) -> Result<(), ClaimError> {
        let family = Family::of(ip);
        if !self.contains(ip) {
            return Err(ClaimError::NotInPool);
        }
        if self.is_avoided(ip) {
            return Err(ClaimError::Avoided);
        }
        if self.free[family.index()].remove(to_u128(ip)) {
            self.allocated[family.index()] += 1;
            Ok(())
        } else {
            Err(ClaimError::InUse)
        }
    }

    /// Whether `ip` could be claimed now.
    pub fn is_free(&self, ip: &IpAddr) -> bool {
        self.free[Family::of(ip).index()].contains(to_u128(ip))
    }

    /// Returns an allocated address to the free set; false if it was not
    /// allocated from this pool.
    pub fn release(&mut self, ip: &IpAddr) -> bool {
        if !self.contains(ip) || self.is_avoided(ip) {
            return false;
        }
        let i = Family::of(ip).index();
        if self.free[i].insert(to_u128(ip)) {
            self.allocated[i] -= 1;
            true
        } else {
            false
        }
    }

    fn is_avoided(&self, ip: &IpAddr) -> bool {
        matches!(ip, IpAddr::V4(v4) if self.avoid_buggy_ips && matches!(v4.octets()[3], 0 | 255))
    }

    /// Addresses of `family` the pool can hand out in all.
    pub fn total(&self, family: Family) -> u128 {
        self.total[family.index()]
    }

    /// Addresses of `family` currently allocated.
    pub fn allocated(&self, family: Family) -> u128 {
        self.allocated[family.index()]
    }

    /// Number of free intervals (the `n` of the O(log n) bounds).
    pub fn fragments(&self) -> usize {
        self.free.iter().map(IntervalSet::intervals).sum()
    }
}

/// Splits an IPv4 interval into pieces that skip every x.x.x.0 and x.x.x.255.
fn split_buggy_v4(first: u128, last: u128) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    let mut block = first & !0xff;
    while block <= last {
        let a = first.max(block + 1);
        let b = last.min(block + 254);
        if a <= b {
            out.push((a, b));
        }
        block += 256;
    }
    out
}

/// `n` for display: exact below 2^20, else as a power of two when it is one
/// (`2^64`), else exact.
pub fn display_count(n: u128) -> String {
    if n >= 1 << 20 && n.is_power_of_two() {
        format!("2^{}", n.trailing_zeros())
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests;
