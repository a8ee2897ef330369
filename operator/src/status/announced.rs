//! The `barelb.io/Announced` Service condition and the event that names a
//! new announcing node: written by the leader when the plan changes, under
//! its own field manager (the Allocated condition's writer is untouched),
//! and only when the text changes — one event per move, none per replan.

use std::collections::{BTreeSet, HashMap, HashSet};

use barelb_api::{AnnounceMode, conditions};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};

use crate::events::Events;
use kube::Client;
use serde_json::json;

use crate::index::Index;
use barelb_core::planner::Plan;
use barelb_core::request::{ClassPolicy, ServiceKey, ServiceRecord};

/// Field manager of the Announced condition.
pub const MANAGER: &str = "barelb-operator-announce";

/// What the condition says about one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    pub nodes: BTreeSet<String>,
    pub message: String,
}

/// The Announced state of every Service this instance handles.
pub fn compute(index: &Index, class: &ClassPolicy, plan: &Plan) -> Vec<(ServiceKey, Announced)> {
    let mut out = Vec::new();
    for (key, _, ips, pool) in index.pooled(class) {
        let mode = index.pools.get(&pool).map(|p| p.spec.announce.mode);
        let nodes: BTreeSet<String> = ips.iter().flat_map(|ip| plan.announcers(ip)).collect();
        let message = message(&nodes, mode);
        out.push((key.clone(), Announced { nodes, message }));
    }
    out
}

/// What every handled Service's Announced condition says now (as the
/// index holds it): a new leader starts [`write`]'s memory from it, not from
/// what it wrote in an earlier term — another leader may have changed the
/// conditions since, and one left stale misleads the next new leader about
/// where each address was last announced.
pub fn current(index: &Index, class: &ClassPolicy) -> HashMap<ServiceKey, Announced> {
    let mut out = HashMap::new();
    for (key, svc, _, _) in index.pooled(class) {
        if let Some(c) = condition(svc) {
            let nodes = nodes_in(&c.message).into_iter().collect();
            let message = c.message.clone();
            out.insert(key.clone(), Announced { nodes, message });
        }
    }
    out
}

/// A Service's `barelb.io/Announced` condition, if it has one.
pub fn condition(svc: &ServiceRecord) -> Option<&Condition> {
    svc.condition(conditions::ANNOUNCED)
}

/// The condition's message naming `nodes`; [`nodes_in`] reads it back.
fn message(nodes: &BTreeSet<String>, mode: Option<AnnounceMode>) -> String {
    let list = nodes.iter().cloned().collect::<Vec<_>>().join(", ");
    match (nodes.len(), mode) {
        (0, _) => "not announced: no eligible node has a connected speaker (check the pool's nodeSelector, node readiness and, for externalTrafficPolicy Local, ready endpoints)".to_string(),
        (1, Some(AnnounceMode::L2)) => format!("announced by node {list} over ARP/NDP"),
        (_, Some(AnnounceMode::Bgp)) => format!("announced by nodes {list} over BGP"),
        (_, _) => format!("announced by {list}"),
    }
}

/// The nodes an Announced condition's message names (none for "not
/// announced"): for readers of the condition such as `kubectl barelb`.
pub fn nodes_in(message: &str) -> Vec<String> {
    let Some(rest) = ["announced by nodes ", "announced by node ", "announced by "]
        .iter()
        .find_map(|p| message.strip_prefix(p))
    else {
        return Vec::new();
    };
    let list = rest.split(" over ").next().unwrap_or(rest);
    list.split(", ").map(str::to_string).collect()
}

/// Forgets the Services no longer handled (deleted, or out of barelb's
/// hands): `last` would otherwise keep every Service ever announced — under
/// steady churn, a few hundred bytes a Service for the life of the process.
fn forget_gone(last: &mut HashMap<ServiceKey, Announced>, now: &[(ServiceKey, Announced)]) {
    let current: HashSet<&ServiceKey> = now.iter().map(|(k, _)| k).collect();
    last.retain(|k, _| current.contains(k));
}

/// Writes what changed since `last` (updated in place).
pub async fn write(
    client: &Client,
    events: &Events,
    index: &Index,
    now: Vec<(ServiceKey, Announced)>,
    last: &mut HashMap<ServiceKey, Announced>,
) {
    forget_gone(last, &now);
    for (key, a) in now {
        if last.get(&key) == Some(&a) {
            continue;
        }
        let before = last.insert(key.clone(), a.clone());
        let api: Api<Service> = Api::namespaced(client.clone(), &key.namespace);
        let status = if a.nodes.is_empty() { "False" } else { "True" };
        let reason = if a.nodes.is_empty() {
            "NoEligibleNode"
        } else {
            "Announced"
        };
        let patch = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": key.name, "namespace": key.namespace},
            "status": {"conditions": [{
                "type": conditions::ANNOUNCED,
                "status": status,
                "reason": reason,
                "message": a.message,
                "lastTransitionTime": crate::status::now_rfc3339(),
            }]},
        });
        if let Err(e) = api
            .patch_status(
                &key.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            tracing::warn!(service = %key, error = %e, "could not write the Announced condition");
            last.remove(&key);
            continue;
        }
        // An event only for a change this process saw (not after a restart).
        let Some(before) = before else { continue };
        if before.nodes == a.nodes {
            continue;
        }
        let Some(svc) = index.services.get(&key) else {
            continue;
        };
        let note = if a.nodes.is_empty() {
            "no node announces it now".to_string()
        } else {
            a.message.clone()
        };
        let ev = KubeEvent {
            type_: if a.nodes.is_empty() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: "AnnouncingNodeChanged".into(),
            note: Some(note),
            action: "Announce".into(),
            secondary: None,
        };
        events.publish(ev, crate::events::service_ref(svc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_names_its_nodes_back() {
        let set = |ns: &[&str]| ns.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        for (nodes, mode) in [
            (set(&["node-2"]), Some(AnnounceMode::L2)),
            (set(&["node-1", "node-3"]), Some(AnnounceMode::Bgp)),
            (set(&["node-1"]), Some(AnnounceMode::Bgp)),
            (set(&["node-1", "node-2"]), None),
            (set(&[]), Some(AnnounceMode::L2)),
        ] {
            let m = message(&nodes, mode);
            assert_eq!(
                nodes_in(&m),
                nodes.iter().cloned().collect::<Vec<_>>(),
                "{m}"
            );
        }
    }

    #[test]
    fn services_no_longer_handled_are_forgotten() {
        let key = |n: &str| ServiceKey {
            namespace: "ns".into(),
            name: n.into(),
        };
        let a = Announced {
            nodes: BTreeSet::from(["node-1".to_string()]),
            message: "announced by node node-1 over ARP/NDP".into(),
        };
        let mut last: HashMap<ServiceKey, Announced> = (0..100)
            .map(|i| (key(&format!("churned-{i}")), a.clone()))
            .collect();
        last.insert(key("kept"), a.clone());
        forget_gone(&mut last, &[(key("kept"), a.clone()), (key("new"), a)]);
        assert_eq!(last.keys().collect::<Vec<_>>(), [&key("kept")]);
    }
}
