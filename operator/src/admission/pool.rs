//! AddressPools: entries the schema cannot judge (IPv6 range order, entries
//! overlapping each other), overlap with other pools, and edits or deletions
//! that would leave allocated addresses outside every pool — refused with
//! the affected Services unless the pool says `barelb.io/allow-orphan`.

use std::net::IpAddr;

use barelb_api::{AddressPool, annotations};

use super::{Review, View, some_of};
use barelb_core::ipam::IpRange;
use barelb_core::pools::PoolDef;

/// Services listed by name in an orphan denial; the rest are counted.
const LIST_AT_MOST: usize = 10;

/// Reviews an AddressPool create/update (`new` set) or delete (`new` None).
pub fn review_pool(view: &View, new: Option<&AddressPool>, old: Option<&AddressPool>) -> Review {
    if !view.synced {
        return Review::deny(
            "the barelb operator is still loading pools and Services; retry in a few seconds"
                .into(),
        );
    }
    let mut review = Review::allow();
    // Parsed once: the orphan check below asks it about every held address.
    let new_def = new.map(crate::pools::pool_def);
    if let Some(def) = &new_def {
        let name = &def.name;
        if let Some(bad) = def.invalid.first() {
            return Review::deny(format!(
                "AddressPool {name}: invalid address entry: {bad}; write a CIDR (10.0.0.0/24) or a range first-last with first <= last"
            ));
        }
        for (i, a) in def.ranges.iter().enumerate() {
            if let Some(b) = def.ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Review::deny(format!(
                    "AddressPool {name}: entries {} and {} overlap; merge them into one entry",
                    written(def, a),
                    written(def, b)
                ));
            }
        }
        let clashes: Vec<String> = view
            .pools
            .iter()
            .filter(|o| o.name != *name)
            .filter_map(|other| {
                let pairs = barelb_core::pools::overlapping(def, other);
                (!pairs.is_empty()).then(|| {
                    let pairs: Vec<String> = pairs
                        .iter()
                        .map(|(mine, theirs)| {
                            format!("{} overlaps {}", written(def, mine), written(other, theirs))
                        })
                        .collect();
                    format!("{} of AddressPool {}", pairs.join(" and "), other.name)
                })
            })
            .collect();
        if !clashes.is_empty() {
            return Review::deny(format!(
                "AddressPool {name}: {}; pools must not share addresses, change one of them",
                clashes.join("; ")
            ));
        }
        if def.ranges.is_empty() {
            review
                .warnings
                .push(format!("AddressPool {name} has no addresses"));
        }
    }
    if let Some(old) = old {
        let old_def = crate::pools::pool_def(old);
        let still = |ip: &IpAddr| {
            new_def
                .as_ref()
                .is_some_and(|d| d.ranges.iter().any(|r| r.contains(ip)))
        };
        let orphans: Vec<String> = view
            .holders
            .iter()
            .filter(|(ip, _)| {
                view.pool_of(ip).is_some_and(|p| p.name == old_def.name) && !still(ip)
            })
            .flat_map(|(ip, hs)| hs.iter().map(move |h| format!("{} ({ip})", h.key)))
            .collect();
        let allowed = [new, Some(old)].into_iter().flatten().any(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotations::ALLOW_ORPHAN))
                .is_some_and(|v| v == "true")
        });
        if !orphans.is_empty() {
            let n = orphans.len();
            let listed = some_of(orphans, LIST_AT_MOST);
            let what = if new.is_some() {
                "this edit"
            } else {
                "deleting it"
            };
            let line = format!(
                "AddressPool {}: {what} leaves {n} allocated address(es) outside every pool: {listed}",
                old_def.name
            );
            if allowed {
                review
                    .warnings
                    .push(format!("{line}; allowed by {}", annotations::ALLOW_ORPHAN));
            } else {
                return Review::deny(format!(
                    "{line}; move those Services first, or annotate the pool {}=\"true\" to accept it",
                    annotations::ALLOW_ORPHAN
                ));
            }
        }
    }
    review
}

/// The entry of `def` as written in its spec that parses to `range`.
fn written(def: &PoolDef, range: &IpRange) -> String {
    def.entries
        .iter()
        .find(|e| IpRange::parse(e).ok().as_ref() == Some(range))
        .cloned()
        .unwrap_or_else(|| range.to_string())
}
