//! The leader's decisions for a whole cluster at once, with no I/O: what a
//! newly elected leader would write for every Service, given the pools,
//! policies, Namespaces and Services of an [`Index`]. `kubectl barelb plan`
//! runs it on both sides of a pool-repo change, so its forecast is the
//! operator's own reconcile, not a second implementation of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use barelb_core::request::ServiceKey;
use barelb_policies::Engine;

use super::Settings;
use super::reconcile;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::status::ServiceStatus;

/// One Service's status as it is and as the leader would write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forecast {
    pub observed: ServiceStatus,
    pub desired: ServiceStatus,
}

/// Every Service the leader would touch (those it serves or served), keyed
/// by Service: a rebuild from status, then one reconcile of each, oldest
/// first, exactly as on a leader change.
pub fn simulate(index: &Index, settings: &Settings) -> BTreeMap<ServiceKey, Forecast> {
    let engine = Arc::new(Engine::default());
    let policy = reconcile::policies(index, &engine, settings);
    let mut state = reconcile::rebuild(index, &settings.class, policy);
    let keys: BTreeSet<ServiceKey> = index.services.iter().map(|(k, _)| k.clone()).collect();
    // A private registry: nothing here is exported.
    let metrics = Metrics::new();
    let writes = reconcile::reconcile_keys(&mut state, index, settings, keys, &metrics);
    let mut out: BTreeMap<ServiceKey, Forecast> = BTreeMap::new();
    for (key, svc) in index.services.iter() {
        if !barelb_core::request::qualifies(svc, &settings.class) {
            continue;
        }
        let observed = ServiceStatus::observed(svc);
        out.insert(
            key.clone(),
            Forecast {
                desired: observed.clone(),
                observed,
            },
        );
    }
    for w in writes {
        out.insert(
            w.key,
            Forecast {
                observed: w.observed,
                desired: w.desired,
            },
        );
    }
    out
}
