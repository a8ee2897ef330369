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
        .filter(|s| request::qualifies(&request::ServiceRecord::of(s), class))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Objects;
    use crate::plan::{OperatorFlags, index_of, view_of};
    use crate::snapshot::Snapshot;

    fn objects(team_a_rule: &str) -> Objects {
        let mut o = Objects::default();
        let pools: String = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, t)| {
                format!(
                    "---\napiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: pool-{t}, labels: {{team: {t}}}}}\n\
                     spec: {{addresses: [192.0.2.{}/30], announce: {{mode: L2}}}}\n\
                     ---\napiVersion: barelb.io/v1alpha1\nkind: LoadBalancerPolicy\nmetadata: {{name: policy-{t}}}\n\
                     spec: {{poolSelector: {{matchLabels: {{team: {t}}}}}, rules: [{{name: own, expression: \"{}\"}}]}}\n",
                    i * 4,
                    if *t == "a" {
                        team_a_rule.to_string()
                    } else {
                        format!("namespace.labels.team == '{t}'")
                    }
                )
            })
            .collect();
        o.add_stream(&pools, "pools.yaml").unwrap();
        o
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        for (ns, team) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")] {
            s.namespaces.push(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": ns, "labels": {"team": team}}
                }))
                .unwrap(),
            );
            for i in 0..3 {
                s.services.push(
                    serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("s{i}"), "namespace": ns},
                        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
                    }))
                    .unwrap(),
                );
            }
        }
        s
    }

    #[test]
    fn shared_decisions_give_what_judging_each_side_alone_gives() {
        let flags = OperatorFlags {
            class: barelb_api::LOAD_BALANCER_CLASS.into(),
            handle_classless: true,
            default_deny_pools: false,
        };
        let snap = snapshot();
        let base = index_of(&objects("namespace.labels.team == 'a'"), &snap);
        let head = index_of(&objects("namespace.name == 'a2'"), &snap);
        let unchanged = unchanged_pools(&base, &head);
        assert_eq!(
            unchanged,
            ["pool-b", "pool-c"].map(String::from).into_iter().collect()
        );
        let class = ClassPolicy {
            class: flags.class.clone(),
            handle_classless: true,
        };
        let (denied, allowed) = judged(
            view_of(&base, &flags),
            view_of(&head, &flags),
            unchanged,
            &snap.services,
            &class,
        );
        // Each side on its own, no decision shared.
        let (bv, hv) = (view_of(&base, &flags), view_of(&head, &flags));
        let mut alone = ByNamespace::new();
        for svc in &snap.services {
            let was = admission::review_service(&bv, svc, None).denial;
            if let (None, Some(why)) = (was, admission::review_service(&hv, svc, None).denial) {
                let key = ServiceKey::of(svc);
                alone
                    .entry(key.namespace)
                    .or_default()
                    .push(format!("{}: {why}", key.name));
            }
        }
        assert_eq!(denied, alone);
        assert_eq!(denied.keys().collect::<Vec<_>>(), ["a1"]);
        assert_eq!(denied["a1"].len(), 3);
        assert!(denied["a1"][0].contains("policy-a"), "{denied:?}");
        assert!(allowed.is_empty(), "{allowed:?}");
    }
}
