//! Which pools a Service may draw new addresses from, and in what order.
//! One decision, called by the admission webhook and the allocator alike,
//! so a claim the webhook admits is one the allocator will try to grant.

use crate::ipam::Family;
use crate::pools::PoolDef;
use crate::request::Request;

/// Why a pool is passed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unfit {
    /// Not in force (an overlap or a bad entry), with the reason.
    NotReady(String),
    /// Serves none of some family the Service requires.
    MissingFamily,
}

/// The families a pool must serve for `req`, among the `missing` ones:
/// every one of them for SingleStack and RequireDualStack, the first
/// (primary) family only for PreferDualStack.
pub fn required_families(req: &Request, missing: &[Family]) -> Vec<Family> {
    missing
        .iter()
        .copied()
        .filter(|f| req.require_all_families || Some(f) == req.families.first())
        .collect()
}

/// Whether `pool`, whose readiness is `ready`, can serve `required` now.
pub fn fitness(
    pool: &PoolDef,
    ready: &Result<(), String>,
    required: &[Family],
) -> Result<(), Unfit> {
    if let Err(why) = ready {
        return Err(Unfit::NotReady(why.clone()));
    }
    if required
        .iter()
        .all(|f| pool.ranges.iter().any(|r| r.family == *f))
    {
        Ok(())
    } else {
        Err(Unfit::MissingFamily)
    }
}

/// The auto-assign pools in the order a Service without a named pool or
/// address tries them: priority (lower first), then name.
pub fn auto_assign_order<'a>(pools: impl IntoIterator<Item = &'a PoolDef>) -> Vec<&'a PoolDef> {
    let mut order: Vec<&PoolDef> = pools.into_iter().filter(|p| p.auto_assign).collect();
    order.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    order
}
