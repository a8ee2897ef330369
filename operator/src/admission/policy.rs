//! LoadBalancerPolicies: every rule must compile (errors name the rule and
//! the position); a policy that would refuse Services already holding
//! addresses is admitted with a warning that lists them — they keep their
//! addresses, but new claims like theirs will be refused.

use std::collections::BTreeSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use barelb_api::LoadBalancerPolicy;

use super::{Review, View, some_of};
use barelb_policies::PolicySource;

use crate::policy::CelPolicies;
use barelb_core::policy::{Claim, Decision, PolicyCheck};

/// Services evaluated for the warning; past this the warning says so.
const CHECK_AT_MOST: usize = 2000;
const LIST_AT_MOST: usize = 10;

pub fn review_policy(view: &View, policy: &LoadBalancerPolicy) -> Review {
    // Drafts are compiled under a content hash, not metadata.generation: a
    // dry-run and a real apply of different text may carry the same
    // generation, and must not share a cache entry.
    let mut src = PolicySource::from_resource(policy);
    src.generation = content_hash(policy);
    let name = src.name.clone();
    let compiled = match view.engine.compile(&src) {
        Ok(c) => c,
        Err(e) => return Review::deny(format!("{e}; fix the expression")),
    };
    let selector = policy.spec.pool_selector.clone().unwrap_or_default();
    let single = CelPolicies::from_compiled(
        view.engine.clone(),
        vec![(name.clone(), selector.clone(), Ok(compiled))],
        view.namespaces.clone(),
        false,
    );
    let mut seen = BTreeSet::new();
    let mut denied = Vec::new();
    let mut checked = 0usize;
    for (ip, holders) in &view.holders {
        let Some(pool) = view.pool_of(ip) else {
            continue;
        };
        if !selector.matches(&pool.labels) {
            continue;
        }
        for req in holders {
            if !seen.insert(req.key.clone()) {
                continue;
            }
            if checked == CHECK_AT_MOST {
                break;
            }
            checked += 1;
            let claim = Claim {
                request: req,
                pool,
                automatic: req.pool.is_none() && req.ips.is_empty(),
                ips: &req.ips,
            };
            if let Decision::Deny(_) = single.check(&claim) {
                denied.push(req.key.to_string());
            }
        }
    }
    let mut review = Review::allow();
    if !denied.is_empty() {
        let n = denied.len();
        let listed = some_of(denied, LIST_AT_MOST);
        review.warnings.push(format!(
            "LoadBalancerPolicy {name} would deny {n} Service(s) that already hold addresses (they keep them; new claims like theirs will be refused): {listed}"
        ));
    }
    if seen.len() > CHECK_AT_MOST {
        review.warnings.push(format!(
            "LoadBalancerPolicy {name}: only the first {CHECK_AT_MOST} Services holding addresses were checked"
        ));
    }
    review
}

fn content_hash(policy: &LoadBalancerPolicy) -> i64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(&policy.spec)
        .unwrap_or_default()
        .hash(&mut h);
    // A hash, reinterpreted: only equality matters.
    h.finish() as i64
}
