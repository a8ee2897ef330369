//! What the admission webhook decides, as plain Rust over a snapshot of the
//! operator's index: the same pool definitions, readiness rules, request
//! parsing, sharing rules and policy engine the allocator uses, so a claim
//! the webhook admits is one the allocator grants and a claim it refuses is
//! one the allocator would refuse too.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use barelb_policies::Engine;

use crate::index::NamespaceMeta;
use barelb_core::policy::{AllowAll, PolicyCheck};
use barelb_core::pools::PoolDef;
use barelb_core::request::{ClassPolicy, Request};

mod peer;
mod policy;
mod pool;
mod service;
#[cfg(test)]
mod tests;

pub use peer::review_peer;
pub use policy::review_policy;
pub use pool::review_pool;
pub use service::review_service;

/// The index as the webhook sees it, republished whenever it changes.
#[derive(Debug)]
pub struct View {
    pub pools: Vec<PoolDef>,
    pub ready: BTreeMap<String, Result<(), String>>,
    pub policy: Arc<dyn PolicyCheck>,
    pub namespaces: BTreeMap<String, NamespaceMeta>,
    /// Who holds each allocated address (from Service status).
    pub holders: HashMap<IpAddr, Vec<Arc<Request>>>,
    pub class: ClassPolicy,
    pub default_deny_pools: bool,
    /// Compiles policies under review (its own cache: a draft never
    /// replaces the policy in force).
    pub engine: Arc<Engine>,
    /// False until every watch has listed once: until then the webhook
    /// cannot tell an overlap or an orphan, and says so.
    pub synced: bool,
}

impl View {
    /// An empty, unsynced view.
    pub fn empty(engine: Arc<Engine>) -> Self {
        View {
            pools: Vec::new(),
            ready: BTreeMap::new(),
            policy: Arc::new(AllowAll),
            namespaces: BTreeMap::new(),
            holders: HashMap::new(),
            class: ClassPolicy::default(),
            default_deny_pools: false,
            engine,
            synced: false,
        }
    }

    fn pool(&self, name: &str) -> Option<&PoolDef> {
        self.pools.iter().find(|p| p.name == name)
    }

    fn is_ready(&self, name: &str) -> bool {
        matches!(self.ready.get(name), Some(Ok(())))
    }

    /// The pool that owns `ip`: a Ready pool containing it, else any.
    fn pool_of(&self, ip: &IpAddr) -> Option<&PoolDef> {
        let containing = || {
            self.pools
                .iter()
                .filter(|p| p.ranges.iter().any(|r| r.contains(ip)))
        };
        containing()
            .find(|p| self.is_ready(&p.name))
            .or_else(|| containing().next())
    }
}

/// Names sorted, the first `at_most` joined by commas, the rest counted
/// ("a, b and 3 more"): denial and warning lines stay one readable line.
fn some_of(mut names: Vec<String>, at_most: usize) -> String {
    names.sort();
    let n = names.len();
    let mut listed = names
        .into_iter()
        .take(at_most)
        .collect::<Vec<_>>()
        .join(", ");
    if n > at_most {
        listed.push_str(&format!(" and {} more", n - at_most));
    }
    listed
}

/// The webhook's answer for one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// Set when the object is refused: one line naming it and the fix.
    pub denial: Option<String>,
    /// The LoadBalancerPolicy behind a denial, for metrics.
    pub denied_by: Option<String>,
    pub warnings: Vec<String>,
}

impl Review {
    pub fn allow() -> Self {
        Review::default()
    }

    pub fn deny(message: String) -> Self {
        Review {
            denial: Some(message),
            ..Review::default()
        }
    }

    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }
}
