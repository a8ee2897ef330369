//! Every Service's claim judged as the webhook judges a create of it,
//! under the base side's policies and the head side's: those newly refused
//! and newly allowed, by namespace.
//!
//! That is one CEL evaluation per (Service, candidate pool) per side, the
//! bulk of `plan`'s time. A pool whose definition and governing policies
//! are the same on both sides gets the same verdict on both, so the head
//! side reuses the base side's ([`Memo`]); and the Services are split over
//! the machine's cores.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use barelb_core::policy::{Claim, Decision, PolicyCheck};
use barelb_core::request::{self, ClassPolicy, ServiceKey};
use barelb_operator::admission::{self, View};
use barelb_operator::index::Index;
use k8s_openapi::api::core::v1::Service;

pub type ByNamespace = BTreeMap<String, Vec<String>>;

/// Pools that are the same on both sides, governed by the same policies
/// (same names, same specs): a claim on one is judged alike on both.
pub fn unchanged_pools(base: &Index, head: &Index) -> BTreeSet<String> {
    let governing = |index: &Index, labels: &BTreeMap<String, String>| -> Vec<String> {
        index
            .policies
            .values()
            .filter(|p| {
                p.spec
                    .pool_selector
                    .clone()
                    .unwrap_or_default()
                    .matches(labels)
            })
            .map(|p| serde_json::to_string(&(&p.metadata.name, &p.spec)).unwrap_or_default())
            .collect()
    };
    let head_pools = head.pool_defs();
    base.pool_defs()
        .into_iter()
        .filter(|b| {
            head_pools
                .iter()
                .any(|h| h == b && governing(base, &b.labels) == governing(head, &h.labels))
        })
        .map(|p| p.name)
        .collect()
}

/// (Service, pool, automatic, addresses): what a policy decision depends
/// on besides the pool's definition and policies.
type ClaimKey = (ServiceKey, String, bool, Vec<IpAddr>);

/// A policy check that remembers (base side) or reuses (head side) the
/// decisions on pools in `unchanged`.
struct Memo {
    inner: Arc<dyn PolicyCheck>,
    record: bool,
    unchanged: Arc<BTreeSet<String>>,
    seen: Arc<Mutex<HashMap<ClaimKey, Decision>>>,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("record", &self.record)
            .finish()
    }
}

impl PolicyCheck for Memo {
    fn check(&self, claim: &Claim<'_>) -> Decision {
        if !self.unchanged.contains(&claim.pool.name) {
            return self.inner.check(claim);
        }
        let key = (
            claim.request.key.clone(),
            claim.pool.name.clone(),
            claim.automatic,
            claim.ips.to_vec(),
        );
        let lock = || self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !self.record
            && let Some(d) = lock().remove(&key)
        {
            return d;
        }
        let d = self.inner.check(claim);
        if self.record {
            lock().insert(key, d.clone());
        }
        d
    }
}

/// Judges every Service of ours in `services` in the `base` and the
/// `head` view; `unchanged` from [`unchanged_pools`].
pub fn judged(
    base: View,
    head: View,
    unchanged: BTreeSet<String>,
    services: &[Service],
    class: &ClassPolicy,
) -> (ByNamespace, ByNamespace) {
    let unchanged = Arc::new(unchanged);
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let memo = |view: View, record: bool| View {
        policy: Arc::new(Memo {
            inner: view.policy.clone(),
            record,
            unchanged: unchanged.clone(),
            seen: seen.clone(),
        }),
        ..view
    };
    let (base, head) = (memo(base, true), memo(head, false));
    let ours: Vec<&Service> = services
        .iter()
        .filter(|s| request::qualifies(s, class))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = ours.len().div_ceil(threads).max(1);
    let changes: Vec<(ServiceKey, Option<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = ours
            .chunks(chunk)
            .map(|part| {
                let (base, head) = (&base, &head);
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|svc| {
                            // Base first: the head side reuses its decisions.
                            let was = admission::review_service(base, svc, None).denial;
                            let now = admission::review_service(head, svc, None).denial;
                            match (was, now) {
                                (None, Some(why)) => Some((ServiceKey::of(svc), Some(why))),
                                (Some(_), None) => Some((ServiceKey::of(svc), None)),
                                _ => None,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let (mut denied, mut allowed) = (ByNamespace::new(), ByNamespace::new());
    for (key, why) in changes {
        match why {
            Some(why) => denied
                .entry(key.namespace)
                .or_default()
                .push(format!("{}: {why}", key.name)),
            None => allowed.entry(key.namespace).or_default().push(key.name),
        }
    }
    for names in denied.values_mut().chain(allowed.values_mut()) {
        names.sort();
    }
    (denied, allowed)
}
