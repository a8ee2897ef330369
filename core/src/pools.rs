//! AddressPools as the allocator and the webhook see them: parsed ranges,
//! defaults applied (the operator reads them from the AddressPool
//! resource), and which pools are in force when two overlap (the older one
//! wins).

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::ipam::IpRange;

/// A pool's settings with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolDef {
    pub name: String,
    pub ranges: Vec<IpRange>,
    /// `spec.addresses` as written (what policies see as `pool.addresses`).
    pub entries: Vec<String>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    pub priority: i32,
    pub allow_cross_namespace_sharing: bool,
    pub labels: BTreeMap<String, String>,
    pub created: Option<Timestamp>,
    pub generation: Option<i64>,
    /// Entries that could not be parsed: the pool is not Ready while any exist.
    pub invalid: Vec<String>,
}

/// Every pair of `mine`'s and `theirs`' ranges that share an address, in
/// `mine`'s order: each overlap, of each family, is named.
pub fn overlapping(mine: &PoolDef, theirs: &PoolDef) -> Vec<(IpRange, IpRange)> {
    mine.ranges
        .iter()
        .flat_map(|r| {
            theirs
                .ranges
                .iter()
                .filter(|o| o.overlaps(r))
                .map(|o| (*r, *o))
        })
        .collect()
}

/// The pool that owns an address, among `containing` — the pools whose
/// ranges contain it, each with whether it is Ready: the first Ready one,
/// else the first. The one rule for the allocator, the webhook and
/// planning (a Service's pool is never recorded apart from its address).
pub fn owner<'a>(containing: impl IntoIterator<Item = (&'a str, bool)>) -> Option<&'a str> {
    let mut fallback = None;
    for (name, ready) in containing {
        if ready {
            return Some(name);
        }
        fallback.get_or_insert(name);
    }
    fallback
}

/// For each pool, `Ok` if it is in force, or why not: a bad entry, or an
/// overlap with an older pool (by creation time, then name), named.
pub fn readiness(defs: &[PoolDef]) -> BTreeMap<String, Result<(), String>> {
    let mut order: Vec<&PoolDef> = defs.iter().collect();
    order.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let mut out = BTreeMap::new();
    let mut in_force: Vec<&PoolDef> = Vec::new();
    for def in order {
        if let Some(bad) = def.invalid.first() {
            out.insert(
                def.name.clone(),
                Err(format!("invalid address entry: {bad}")),
            );
            continue;
        }
        let clash = in_force.iter().find_map(|other| {
            let pairs = overlapping(def, other);
            (!pairs.is_empty()).then(|| (other.name.clone(), pairs))
        });
        match clash {
            Some((other, pairs)) => {
                let pairs: Vec<String> = pairs
                    .iter()
                    .map(|(mine, theirs)| format!("{mine} overlap {theirs}"))
                    .collect();
                out.insert(
                    def.name.clone(),
                    Err(format!(
                        "addresses {} of AddressPool {other}, which is older; remove the overlap",
                        pairs.join(" and ")
                    )),
                );
            }
            None => {
                out.insert(def.name.clone(), Ok(()));
                in_force.push(def);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::IpRange;

    fn def(name: &str, entries: &[&str], created: i64) -> PoolDef {
        let mut ranges = Vec::new();
        let mut invalid = Vec::new();
        for e in entries {
            match IpRange::parse(e) {
                Ok(r) => ranges.push(r),
                Err(err) => invalid.push(err.to_string()),
            }
        }
        PoolDef {
            name: name.into(),
            ranges,
            entries: entries.iter().map(|e| e.to_string()).collect(),
            auto_assign: true,
            avoid_buggy_ips: false,
            priority: 100,
            allow_cross_namespace_sharing: false,
            labels: BTreeMap::new(),
            created: Timestamp::from_second(created).ok(),
            generation: Some(1),
            invalid,
        }
    }

    #[test]
    fn backwards_ipv6_range_makes_the_pool_not_ready() {
        // The apiserver's CEL cannot order IPv6 addresses; the operator must.
        let r = readiness(&[def("v6", &["2001:db8::9-2001:db8::1"], 1)]);
        let why = r["v6"].clone().unwrap_err();
        assert!(why.contains("starts after it ends"), "{why}");
    }

    #[test]
    fn the_older_of_two_overlapping_pools_stays_in_force() {
        let r = readiness(&[
            def("b-new", &["10.0.0.128/25"], 2),
            def("a-old", &["10.0.0.0/24"], 1),
        ]);
        assert!(r["a-old"].is_ok());
        assert!(
            r["b-new"]
                .as_ref()
                .unwrap_err()
                .contains("AddressPool a-old")
        );
    }
}
