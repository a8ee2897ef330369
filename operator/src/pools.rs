//! An AddressPool resource read as the core's [`PoolDef`]: ranges parsed,
//! defaults applied.

use barelb_api::AddressPool;
use barelb_core::ipam::IpRange;
use barelb_core::pools::PoolDef;

/// Reads an AddressPool as [`PoolDef`]. Bad entries (which the apiserver's schema
/// should already refuse) are recorded, not fatal.
pub fn pool_def(pool: &AddressPool) -> PoolDef {
    let mut ranges = Vec::new();
    let mut invalid = Vec::new();
    for entry in &pool.spec.addresses {
        match IpRange::parse(entry) {
            Ok(r) => ranges.push(r),
            Err(e) => invalid.push(e.to_string()),
        }
    }
    PoolDef {
        name: pool.metadata.name.clone().unwrap_or_default(),
        ranges,
        entries: pool.spec.addresses.clone(),
        auto_assign: pool.spec.auto_assign(),
        avoid_buggy_ips: pool.spec.avoid_buggy_ips(),
        priority: pool.spec.priority(),
        allow_cross_namespace_sharing: pool.spec.allow_cross_namespace_sharing(),
        labels: pool.metadata.labels.clone().unwrap_or_default(),
        created: pool.metadata.creation_timestamp.as_ref().map(|t| t.0),
        generation: pool.metadata.generation,
        invalid,
    }
}
