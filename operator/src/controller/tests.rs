//! The leader's reconcile decisions without a cluster: an index fed with
//! the watch events a real apiserver would send, and the writes decided.

use std::sync::Arc;

use barelb_core::names::CLEANUP_FINALIZER;
use barelb_core::policy::AllowAll;
use barelb_core::request::FinalizerStep;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::reconcile::{Leading, rebuild, reconcile_keys};
use super::*;
use crate::index::Change;

const CLASS: &str = "test.barelb.io/lb";

fn settings() -> Settings {
    Settings {
        class: ClassPolicy {
            class: CLASS.into(),
            handle_classless: false,
        },
        namespace: "barelb-system".into(),
        pool_selector: String::new(),
        default_deny_pools: false,
        field_manager: "barelb-operator".into(),
        identity: "test".into(),
        write_concurrency: 4,
    }
}

fn service(name: &str, rv: &str, ingress: &[&str], status_manager: Option<&str>) -> Change {
    let ingress: Vec<_> = ingress
        .iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect();
    let managed: Vec<_> = status_manager
        .map(|m| json!({"manager": m, "operation": "Apply", "subresource": "status"}))
        .into_iter()
        .collect();
    Change::Service(Event::Apply(
        serde_json::from_value(json!({
            "metadata": {"namespace": "app", "name": name, "resourceVersion": rv,
                         "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": managed},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": CLASS,
                     "ports": [{"port": 80, "protocol": "TCP"}],
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
            "status": {"loadBalancer": {"ingress": ingress}}
        }))
        .unwrap(),
    ))
}

/// An index holding pool `p` (198.51.100.0/30) and `changes`, synced.
fn index(changes: Vec<Change>) -> Index {
    let mut index = Index::default();
    let mut touched = Touched::default();
    let pool = serde_json::from_value(json!({
        "apiVersion": "barelb.io/v1alpha1", "kind": "AddressPool",
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"addresses": ["198.51.100.0/30"], "announce": {"mode": "L2"}}
    }))
    .unwrap();
    index.apply(
        Change::Pool(Event::Apply(kube::core::DeserializeGuard(Ok(pool)))),
        &mut touched,
    );
    for c in changes {
        index.apply(c, &mut touched);
    }
    index
}

fn leader(index: &Index) -> Leading {
    rebuild(index, &settings().class, Arc::new(AllowAll))
}

fn keys(names: &[&str]) -> BTreeSet<ServiceKey> {
    names
        .iter()
        .map(|n| ServiceKey {
            namespace: "app".into(),
            name: n.to_string(),
        })
        .collect()
}

#[test]
fn a_new_service_gets_one_write_and_its_echo_none() {
    let idx = index(vec![service("a", "10", &[], None)]);
    let mut state = leader(&idx);
    let metrics = Metrics::new();
    let writes = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &metrics);
    assert_eq!(writes.len(), 1);
    let w = &writes[0];
    assert_eq!(
        w.desired.ips,
        ["198.51.100.0".parse::<std::net::IpAddr>().unwrap()]
    );
    // The write went out (resourceVersion 11); the watch still shows 10.
    state.written.insert(w.key.clone(), (w.desired.clone(), 11));
    let again = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &metrics);
    assert!(
        again.is_empty(),
        "rewrote while its own write was on the way back"
    );
}

#[test]
fn a_new_leader_keeps_the_address_in_status() {
    let idx = index(vec![service(
        "a",
        "10",
        &["198.51.100.1"],
        Some("barelb-operator"),
    )]);
    let mut state = leader(&idx);
    let writes = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &Metrics::new());
    // The address came back from status; only the condition and annotation
    // are missing, so one write, keeping 198.51.100.1.
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].desired.ips, writes[0].observed.ips);
}

#[test]
fn a_refused_service_waits_for_its_retry() {
    let idx = index(vec![service("a", "10", &[], None)]);
    let mut state = leader(&idx);
    let key = keys(&["a"]).into_iter().next().unwrap();
    state.backoff.failed(key, Instant::now());
    let writes = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &Metrics::new());
    assert!(
        writes.is_empty(),
        "written again before its backoff ran out"
    );
}

#[test]
fn another_instances_status_is_never_cleared() {
    // Class changed away from ours: release, but the status was written by
    // someone else (another barelb instance), so it stays.
    let mut other = service("a", "10", &["198.51.100.1"], Some("barelb-operator@other"));
    if let Change::Service(Event::Apply(s)) = &mut other {
        s.spec.as_mut().unwrap().load_balancer_class = Some("other.example/lb".into());
        s.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({
                "type": "barelb.io/Allocated", "status": "True", "reason": "IPAllocated",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"
            }))
            .unwrap(),
        ]);
    }
    let idx = index(vec![other]);
    let mut state = leader(&idx);
    let writes = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &Metrics::new());
    assert!(writes.is_empty());
}

fn service_object(change: Change) -> Service {
    match change {
        Change::Service(Event::Apply(s)) => s,
        _ => unreachable!("service() makes an Apply"),
    }
}

fn service_record(change: Change) -> ServiceRecord {
    ServiceRecord::of(&service_object(change))
}

#[test]
fn a_consistent_read_before_the_rebuild_keeps_a_status_the_watch_had_not_delivered() {
    // The watch shows `a` unaddressed (10); the last leader wrote .2 (11)
    // just before it died. The read before the rebuild brings 11 in.
    let mut idx = index(vec![service("a", "10", &[], None)]);
    let newer = idx.refresh_services(vec![service_record(service(
        "a",
        "11",
        &["198.51.100.2"],
        Some("barelb-operator"),
    ))]);
    assert_eq!(newer, 1);
    // The watch's late, older event does not undo it; a newer one applies.
    let mut touched = Touched::default();
    idx.apply(service("a", "10", &[], None), &mut touched);
    assert!(touched.services.is_empty());
    let mut state = leader(&idx);
    let writes = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &Metrics::new());
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].desired.ips, writes[0].observed.ips, "moved");
    assert_eq!(writes[0].precondition, 11);
    idx.apply(
        service("a", "12", &["198.51.100.2"], Some("barelb-operator")),
        &mut touched,
    );
    assert_eq!(touched.services.len(), 1);
}

#[test]
fn a_write_refused_as_stale_takes_the_newer_status_once_it_arrives() {
    // This replica gave `a` .0 from a stale view (10); the apiserver refused
    // the write (409): someone gave it .2 at 11.
    let mut idx = index(vec![service("a", "10", &[], None)]);
    let mut state = leader(&idx);
    let metrics = Metrics::new();
    let first = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &metrics);
    assert_eq!(first[0].precondition, 10);
    assert_eq!(first[0].desired.ips[0].to_string(), "198.51.100.0");
    state.resync.insert(first[0].key.clone(), 10);
    // Until the newer version arrives, nothing is written.
    assert!(reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &metrics).is_empty());
    let mut touched = Touched::default();
    idx.apply(
        service("a", "11", &["198.51.100.2"], Some("barelb-operator")),
        &mut touched,
    );
    let writes = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &metrics);
    // It keeps .2 (one write for the condition), and .0 is free again.
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].desired.ips, writes[0].observed.ips);
    assert!(state.resync.is_empty());
    let key = writes[0].key.clone();
    assert_eq!(state.alloc.current(&key).ips[0].to_string(), "198.51.100.2");
}

/// `change` (an Apply of a Service) edited by `f`.
fn edited(change: Change, f: impl FnOnce(&mut Service)) -> Change {
    let mut s = service_object(change);
    f(&mut s);
    Change::Service(Event::Apply(s))
}

/// Service `name` holding `ip` in a status `status_manager` wrote, with its
/// condition and the cleanup finalizer, then edited by `f`.
fn held_with_finalizer(
    name: &str,
    rv: &str,
    ip: &str,
    status_manager: &str,
    f: impl FnOnce(&mut Service),
) -> Change {
    edited(service(name, rv, &[ip], Some(status_manager)), |s| {
        s.metadata.finalizers = Some(vec![CLEANUP_FINALIZER.into()]);
        allocated_condition(s);
        f(s);
    })
}

/// The condition this instance writes for the address in `s`'s status.
fn allocated_condition(s: &mut Service) {
    let status = s.status.as_mut().unwrap();
    let ip = status
        .load_balancer
        .as_ref()
        .unwrap()
        .ingress
        .as_ref()
        .unwrap()[0]
        .ip
        .clone()
        .unwrap();
    status.conditions = Some(vec![
        serde_json::from_value(json!({
            "type": "barelb.io/Allocated", "status": "True", "reason": "Allocated",
            "message": format!("{ip} from AddressPool p"),
            "lastTransitionTime": "2026-01-01T00:00:00Z"
        }))
        .unwrap(),
    ]);
}

#[test]
fn a_served_service_is_given_the_cleanup_finalizer_once() {
    let idx = index(vec![
        service("new", "10", &[], None),
        held_with_finalizer("kept", "11", "198.51.100.1", "barelb-operator", |_| {}),
    ]);
    let mut state = leader(&idx);
    let metrics = Metrics::new();
    let writes = reconcile_keys(
        &mut state,
        &idx,
        &settings(),
        keys(&["new", "kept"]),
        &metrics,
    );
    assert_eq!(writes.len(), 1, "the Service that has it is not written");
    assert_eq!(writes[0].key.name, "new");
    assert_eq!(writes[0].finalizer, FinalizerStep::Add);
    assert_eq!(writes[0].desired.ips[0].to_string(), "198.51.100.0");
}

#[test]
fn a_deleting_service_loses_the_finalizer_and_keeps_its_address_until_gone() {
    let deleting = || {
        held_with_finalizer("old", "10", "198.51.100.0", "barelb-operator", |s| {
            s.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        })
    };
    let mut idx = index(vec![deleting(), service("next", "11", &[], None)]);
    let mut state = leader(&idx);
    let metrics = Metrics::new();
    let writes = reconcile_keys(
        &mut state,
        &idx,
        &settings(),
        keys(&["old", "next"]),
        &metrics,
    );
    let old = writes.iter().find(|w| w.key.name == "old").unwrap();
    assert_eq!(old.finalizer, FinalizerStep::Remove);
    assert_eq!(
        old.desired, old.observed,
        "no status write for a Service going away"
    );
    let next = writes.iter().find(|w| w.key.name == "next").unwrap();
    assert_eq!(
        next.desired.ips[0].to_string(),
        "198.51.100.1",
        "given the address a Terminating Service still shows"
    );
    // Gone: its address is free for the next Service.
    let mut touched = Touched::default();
    idx.apply(
        Change::Service(Event::Delete(service_object(deleting()))),
        &mut touched,
    );
    idx.apply(service("later", "12", &[], None), &mut touched);
    let writes = reconcile_keys(
        &mut state,
        &idx,
        &settings(),
        keys(&["old", "later"]),
        &metrics,
    );
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].desired.ips[0].to_string(), "198.51.100.0");
}

#[test]
fn a_type_change_takes_the_finalizer_off_and_clears_the_status() {
    // The apiserver drops loadBalancerClass with the type: only the status
    // this instance wrote says the Service was ours.
    let cluster_ip = |manager: &str| {
        held_with_finalizer("a", "10", "198.51.100.0", manager, |s| {
            let spec = s.spec.as_mut().unwrap();
            spec.type_ = Some("ClusterIP".into());
            spec.load_balancer_class = None;
        })
    };
    let idx = index(vec![cluster_ip("barelb-operator")]);
    let mut state = leader(&idx);
    let writes = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &Metrics::new());
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].finalizer, FinalizerStep::Remove);
    assert!(writes[0].desired.ips.is_empty());
    // Another load balancer's Service (its status not ours) keeps its finalizer.
    let idx = index(vec![cluster_ip("cloud-controller")]);
    let mut state = leader(&idx);
    let writes = reconcile_keys(&mut state, &idx, &settings(), keys(&["a"]), &Metrics::new());
    assert!(writes.is_empty());
}
