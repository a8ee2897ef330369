use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use barelb_api::{AddressPool, BGPPeer, LoadBalancerPolicy};
use k8s_openapi::api::core::v1::Service;
use serde_json::json;

use barelb_core::pools::{PoolDef, readiness};
use barelb_core::request::{self, ServiceRecord};
use barelb_policies::Engine;

use super::*;
use crate::index::NamespaceMeta;
use crate::policy::CelPolicies;

fn pool(name: &str, addresses: &[&str], labels: serde_json::Value) -> AddressPool {
    serde_json::from_value(json!({
        "apiVersion": "barelb.io/v1alpha1", "kind": "AddressPool",
        "metadata": {"name": name, "labels": labels, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"addresses": addresses, "announce": {"mode": "L2"}}
    }))
    .unwrap()
}

fn svc(ns: &str, name: &str, annotations: serde_json::Value, ip: Option<&str>) -> Service {
    let ingress = ip.map(|ip| json!([{"ip": ip}])).unwrap_or(json!([]));
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
        "status": {"loadBalancer": {"ingress": ingress}}
    }))
    .unwrap()
}

fn team_policy() -> LoadBalancerPolicy {
    serde_json::from_value(json!({
        "apiVersion": "barelb.io/v1alpha1", "kind": "LoadBalancerPolicy",
        "metadata": {"name": "team-match", "generation": 1},
        "spec": {"poolSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
                 "rules": [{"name": "team", "expression": "'team' in namespace.labels && namespace.labels['team'] == pool.labels['team']",
                            "message": "namespace team must match the pool's team; use your team's pool"}]}
    }))
    .unwrap()
}

/// Pools `web` (team=web, 10.1.0.0/24) and `open` (10.2.0.0/24); namespaces
/// `web` (team=web) and `db` (team=db); web/holder holds 10.1.0.5.
fn view() -> View {
    let engine = Arc::new(Engine::default());
    let pools = [
        pool("web", &["10.1.0.0/24"], json!({"team": "web"})),
        pool("open", &["10.2.0.0/24"], json!({})),
    ];
    let defs: Vec<PoolDef> = pools.iter().map(crate::pools::pool_def).collect();
    let mut namespaces = BTreeMap::new();
    for (ns, team) in [("web", "web"), ("db", "db")] {
        namespaces.insert(
            ns.to_string(),
            NamespaceMeta {
                labels: [("team".to_string(), team.to_string())].into(),
                annotations: BTreeMap::new(),
            },
        );
    }
    let p = team_policy();
    let policy = Arc::new(CelPolicies::new(
        engine.clone(),
        &[&p],
        namespaces.clone(),
        false,
    ));
    let holder = svc("web", "holder", json!({}), Some("10.1.0.5"));
    let mut holders = HashMap::new();
    holders.insert(
        "10.1.0.5".parse().unwrap(),
        vec![Arc::new(request::parse(&holder).unwrap())],
    );
    View {
        ready: readiness(&defs),
        pools: defs,
        policy,
        namespaces,
        holders,
        class: Default::default(),
        default_deny_pools: false,
        engine,
        synced: true,
    }
}

#[test]
fn services_are_checked_against_policy_by_every_route() {
    let v = view();
    // Named pool, explicit IP, loadBalancerIP: all refused for the db team.
    let named = svc("db", "a", json!({"barelb.io/pool": "web"}), None);
    let r = review_service(&v, &named, None);
    assert_eq!(
        r.denial.as_deref(),
        Some(
            "Service db/a: namespace db may not use AddressPool web: LoadBalancerPolicy team-match rule team: namespace team must match the pool's team; use your team's pool"
        )
    );
    assert_eq!(r.denied_by.as_deref(), Some("team-match"));
    let by_ip = svc("db", "b", json!({"barelb.io/ips": "10.1.0.9"}), None);
    assert!(!review_service(&v, &by_ip, None).allowed());
    let mut lb_ip = svc("db", "c", json!({}), None);
    lb_ip.spec.as_mut().unwrap().load_balancer_ip = Some("10.1.0.9".into());
    assert!(!review_service(&v, &lb_ip, None).allowed());
    // The owning team may; automatic requests fall through to the open pool.
    let web = svc("web", "d", json!({"barelb.io/pool": "web"}), None);
    assert!(review_service(&v, &web, None).allowed());
    assert!(review_service(&v, &svc("db", "e", json!({}), None), None).allowed());
}

#[test]
fn a_namespace_not_seen_yet_is_never_judged_by_empty_labels() {
    let v = view();
    // A policy selects `web`: refused until the namespace is known.
    let r = review_service(
        &v,
        &svc("new", "a", json!({"barelb.io/pool": "web"}), None),
        None,
    );
    assert_eq!(
        r.denial.as_deref(),
        Some(
            "Service new/a: namespace new is not known to barelb yet, so the policies on AddressPool web cannot be checked; retry in a moment"
        )
    );
    // No policy selects `open`: nothing to judge, allowed.
    let open = svc("new", "b", json!({"barelb.io/pool": "open"}), None);
    assert!(review_service(&v, &open, None).allowed());
}

#[test]
fn requests_the_allocator_would_refuse_are_refused() {
    let v = view();
    let missing = svc("web", "a", json!({"barelb.io/pool": "nope"}), None);
    assert!(
        review_service(&v, &missing, None)
            .denial
            .unwrap()
            .contains("AddressPool nope (annotation barelb.io/pool) does not exist")
    );
    let outside = svc("web", "b", json!({"barelb.io/ips": "192.0.2.1"}), None);
    assert!(
        review_service(&v, &outside, None)
            .denial
            .unwrap()
            .contains("is in no AddressPool")
    );
    let taken = svc("web", "c", json!({"barelb.io/ips": "10.1.0.5"}), None);
    assert!(
        review_service(&v, &taken, None)
            .denial
            .unwrap()
            .contains("held by Service web/holder")
    );
    let bad = svc("web", "d", json!({"barelb.io/ips": "not-an-ip"}), None);
    assert!(
        review_service(&v, &bad, None)
            .denial
            .unwrap()
            .starts_with("Service web/d:")
    );
    // Not our class: not our business.
    let mut other = svc("db", "e", json!({"barelb.io/pool": "web"}), None);
    other.spec.as_mut().unwrap().load_balancer_class = Some("example.com/other".into());
    assert!(review_service(&v, &other, None).allowed());
}

#[test]
fn an_update_that_keeps_the_claim_is_not_relitigated() {
    let v = view();
    let old = svc(
        "db",
        "a",
        json!({"barelb.io/pool": "web"}),
        Some("10.1.0.7"),
    );
    let mut new = old.clone();
    new.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].name = Some("http".into());
    assert!(review_service(&v, &new, Some(&old)).allowed());
}

#[test]
fn pools_overlap_and_orphans() {
    let v = view();
    let clash = pool("new", &["10.1.0.128/25"], json!({}));
    assert_eq!(
        review_pool(&v, Some(&clash), None).denial.as_deref(),
        Some(
            "AddressPool new: 10.1.0.128/25 overlaps 10.1.0.0/24 of AddressPool web; pools must not share addresses, change one of them"
        )
    );
    // Every overlap is named, of each family and each pool.
    let mut dual = view();
    dual.pools.push(crate::pools::pool_def(&pool(
        "dual",
        &["10.3.0.0/24", "2001:db8::/64"],
        json!({}),
    )));
    let both = pool(
        "both",
        &["10.3.0.8/29", "2001:db8::100-2001:db8::1ff", "10.2.0.0/28"],
        json!({}),
    );
    assert_eq!(
        review_pool(&dual, Some(&both), None).denial.as_deref(),
        Some(
            "AddressPool both: 10.2.0.0/28 overlaps 10.2.0.0/24 of AddressPool open; 10.3.0.8/29 overlaps 10.3.0.0/24 and 2001:db8::100-2001:db8::1ff overlaps 2001:db8::/64 of AddressPool dual; pools must not share addresses, change one of them"
        )
    );
    let backwards = pool("v6", &["2001:db8::9-2001:db8::1"], json!({}));
    assert!(
        review_pool(&v, Some(&backwards), None)
            .denial
            .unwrap()
            .contains("invalid address entry")
    );
    let old = pool("web", &["10.1.0.0/24"], json!({"team": "web"}));
    let shrunk = pool("web", &["10.1.0.128/25"], json!({"team": "web"}));
    let r = review_pool(&v, Some(&shrunk), Some(&old));
    assert!(
        r.denial
            .as_deref()
            .unwrap()
            .contains("web/holder (10.1.0.5)"),
        "{r:?}"
    );
    let mut allowed = shrunk.clone();
    allowed.metadata.annotations =
        Some([("barelb.io/allow-orphan".to_string(), "true".to_string())].into());
    let r = review_pool(&v, Some(&allowed), Some(&old));
    assert!(r.allowed() && r.warnings[0].contains("web/holder"), "{r:?}");
    // Deleting it orphans too; growing it does not.
    assert!(!review_pool(&v, None, Some(&old)).allowed());
    let grown = pool("web", &["10.1.0.0/23"], json!({"team": "web"}));
    assert!(review_pool(&v, Some(&grown), Some(&old)).allowed());
}

#[test]
fn policies_compile_and_warn_about_existing_services() {
    let v = view();
    let mut broken = team_policy();
    broken.spec.rules[0].expression = "namespace.labels['team'] ==".into();
    let d = review_policy(&v, &broken).denial.unwrap();
    assert!(
        d.starts_with("LoadBalancerPolicy team-match rule team:") && d.contains("1:"),
        "{d}"
    );
    let mut strict = team_policy();
    strict.spec.rules[0].expression = "namespace.name == 'nobody'".into();
    let r = review_policy(&v, &strict);
    assert!(r.allowed());
    assert!(
        r.warnings[0].contains("would deny 1 Service(s)") && r.warnings[0].contains("web/holder")
    );
}

#[test]
fn peers_sanity() {
    let peer = |spec: serde_json::Value| -> BGPPeer {
        serde_json::from_value(
            json!({"apiVersion": "barelb.io/v1alpha1", "kind": "BGPPeer",
            "metadata": {"name": "r1"}, "spec": spec}),
        )
        .unwrap()
    };
    assert!(
        review_peer(&peer(
            json!({"peerAddress": "192.0.2.1", "peerASN": 64500, "myASN": 64501})
        ))
        .allowed()
    );
    let lo = review_peer(&peer(
        json!({"peerAddress": "127.0.0.1", "peerASN": 64500, "myASN": 64501}),
    ));
    assert!(
        lo.denial
            .unwrap()
            .starts_with("BGPPeer r1: peerAddress 127.0.0.1 cannot be a router")
    );
    let ibgp = peer(
        json!({"peerAddress": "192.0.2.1", "peerASN": 64500, "myASN": 64500, "ebgpMultiHop": 2}),
    );
    assert!(!review_peer(&ibgp).allowed());
    let secret = peer(
        json!({"peerAddress": "192.0.2.1", "peerASN": 64500, "myASN": 64501,
        "passwordSecretRef": {"name": "Bad_Name", "key": "password"}}),
    );
    assert!(
        review_peer(&secret)
            .denial
            .unwrap()
            .contains("passwordSecretRef")
    );
    let bfd = |b: serde_json::Value| {
        review_peer(&peer(
            json!({"peerAddress": "192.0.2.1", "peerASN": 64500, "myASN": 64501, "bfd": b}),
        ))
    };
    assert!(bfd(json!({})).allowed());
    assert!(bfd(json!({"minRx": "100ms", "minTx": "1s", "multiplier": 5})).allowed());
    assert_eq!(
        bfd(json!({"echo": true})).denial.unwrap(),
        "BGPPeer r1: bfd.echo is not supported; leave it out or set it to false"
    );
    // The operator's own reading of the durations decides (one function).
    let slow = bfd(json!({"minRx": "soon"})).denial.unwrap();
    assert!(
        slow.starts_with("BGPPeer r1: spec.bfd.minRx: \"soon\" is not a duration"),
        "{slow}"
    );
}

mod webhook_and_allocator_agree {
    //! The webhook and the allocator judge the same claim the same way:
    //! random pools (families, auto-assign, priority, a policy refusing
    //! some) and random requests.
    use proptest::prelude::*;

    use super::*;
    use barelb_core::allocator::{Allocator, FailureReason, Outcome};
    use barelb_core::ipam::{Family, IpRange};
    use barelb_core::policy::{Claim, Decision, PolicyCheck};
    use barelb_core::request::Request;

    /// Refuses claims on the pools it names.
    #[derive(Debug)]
    struct Refuses(Vec<String>);

    impl PolicyCheck for Refuses {
        fn check(&self, claim: &Claim<'_>) -> Decision {
            if self.0.contains(&claim.pool.name) {
                Decision::deny(format!("no {}", claim.pool.name))
            } else {
                Decision::Allow
            }
        }
    }

    #[derive(Clone, Debug)]
    struct PoolSpec {
        v4: bool,
        v6: bool,
        auto_assign: bool,
        priority: i32,
        refused: bool,
    }

    fn pool_spec() -> impl Strategy<Value = PoolSpec> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0..3i32,
            any::<bool>(),
        )
            .prop_map(|(v4, v6, auto_assign, priority, refused)| PoolSpec {
                v4: v4 || !v6,
                v6,
                auto_assign,
                priority,
                refused,
            })
    }

    fn def(i: usize, p: &PoolSpec) -> PoolDef {
        let mut entries = Vec::new();
        if p.v4 {
            entries.push(format!("10.{i}.0.0/24"));
        }
        if p.v6 {
            entries.push(format!("fd00:{i}::/120"));
        }
        PoolDef {
            name: format!("pool-{i}"),
            ranges: entries.iter().map(|e| IpRange::parse(e).unwrap()).collect(),
            entries,
            auto_assign: p.auto_assign,
            avoid_buggy_ips: false,
            priority: p.priority,
            allow_cross_namespace_sharing: false,
            labels: BTreeMap::new(),
            created: None,
            generation: Some(1),
            invalid: Vec::new(),
        }
    }

    fn request(families: Vec<Family>, require_all: bool, pool: Option<String>) -> Request {
        // The rest as a request that asks for nothing in particular.
        Request {
            require_all_families: require_all || families.len() == 1,
            families,
            pool,
            ..request::minimal(&ServiceRecord::of(&svc("app", "svc", json!({}), None)), &[])
        }
    }

    fn families() -> impl Strategy<Value = Vec<Family>> {
        prop_oneof![
            Just(vec![Family::V4]),
            Just(vec![Family::V6]),
            Just(vec![Family::V4, Family::V6]),
            Just(vec![Family::V6, Family::V4]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn same_verdict(
            specs in proptest::collection::vec(pool_spec(), 0..5),
            families in families(),
            require_all in any::<bool>(),
            named in proptest::option::of(0..5usize),
        ) {
            let defs: Vec<PoolDef> = specs.iter().enumerate().map(|(i, p)| def(i, p)).collect();
            let refused: Vec<String> = specs.iter().enumerate()
                .filter(|(_, p)| p.refused).map(|(i, _)| format!("pool-{i}")).collect();
            let policy: Arc<dyn PolicyCheck> = Arc::new(Refuses(refused));
            let pool = named.filter(|i| *i < defs.len()).map(|i| format!("pool-{i}"));
            let req = request(families, require_all, pool);

            let mut view = View::empty(Arc::new(Engine::default()));
            view.ready = readiness(&defs);
            view.pools = defs.clone();
            view.policy = policy.clone();
            view.synced = true;
            let mut review = Review::allow();
            let verdict = match &req.pool {
                Some(name) => service::check(&view, &req, view.pool(name).unwrap(), false, &mut review),
                None => service::automatic(&view, &req, &mut review),
            };

            let mut alloc = Allocator::new(policy);
            alloc.set_pools(defs);
            let outcome = alloc.reconcile(&req);
            let allocator_refused = matches!(
                outcome,
                Outcome::Failed { reason: FailureReason::PolicyDenied, .. }
            );
            // What policy refuses in the allocator, the webhook refused at
            // apply time; what the webhook refuses, the allocator never grants.
            if allocator_refused {
                prop_assert!(verdict.is_err(), "webhook admitted {:?}; allocator {:?}", req, outcome);
            }
            if verdict.is_err() {
                prop_assert!(matches!(outcome, Outcome::Failed { .. }), "webhook {:?}, allocator {:?}", verdict, outcome);
            }
        }
    }
}
