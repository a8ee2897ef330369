//! Status of LoadBalancerPolicies and BGPPeers: `observedGeneration` and a
//! `Ready` condition (what `kubectl get` and Argo CD's health checks read),
//! with a policy's rule and pool counts and a peer's established/selected
//! nodes. Pure functions from state to server-side-apply bodies, None when
//! the object already shows it.

use std::collections::{BTreeMap, BTreeSet};

use barelb_api::{BGPPeer, LoadBalancerPolicy, conditions};
use barelb_core::planner::Plan;
use serde_json::{Value, json};

/// A `Ready` condition without its timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// A policy's Ready: whether every rule compiled (else the compile error,
/// which names the rule and position), and how many pools it selects.
pub fn policy_ready(compiled: &Result<usize, String>, pools_selected: usize) -> Ready {
    match compiled {
        Ok(rules) => Ready {
            status: "True",
            reason: "Compiled",
            message: format!(
                "{rules} rule{} compiled; selects {pools_selected} AddressPool{}",
                plural(*rules),
                plural(pools_selected)
            ),
        },
        Err(e) => Ready {
            status: "False",
            reason: "CompileFailed",
            message: format!("{e}; claims on the pools it selects are refused until it compiles"),
        },
    }
}

/// The status body for `policy`, or None when it already shows it.
pub fn policy_status_patch(
    policy: &LoadBalancerPolicy,
    compiled: &Result<usize, String>,
    pools_selected: usize,
    now: &str,
) -> Option<Value> {
    let mut fields = json!({ "poolsSelected": pools_selected });
    if let Ok(rules) = compiled {
        fields["ruleCount"] = json!(rules);
    }
    status_patch(
        "LoadBalancerPolicy",
        &policy.metadata,
        serde_json::to_value(&policy.status).unwrap_or(Value::Null),
        fields,
        &policy_ready(compiled, pools_selected),
        now,
    )
}

/// The nodes the plan has peer with `peer` (they announce a route to it),
/// and those of them whose session is Established.
pub fn peer_nodes(
    plan: &Plan,
    sessions: &BTreeMap<String, BTreeMap<String, String>>,
    peer: &str,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let selected: BTreeSet<String> = plan
        .bgp
        .values()
        .flat_map(|a| a.nodes.iter())
        .filter(|(_, peers)| peers.iter().any(|p| p == peer))
        .map(|(node, _)| node.clone())
        .collect();
    let established = selected
        .iter()
        .filter(|n| {
            sessions
                .get(*n)
                .and_then(|s| s.get(peer))
                .is_some_and(|st| st == "Established")
        })
        .cloned()
        .collect();
    (selected, established)
}

/// A peer's Ready: every node that announces to it has its session
/// Established (the others are named with their state).
pub fn peer_ready(
    configured: bool,
    selected: &BTreeSet<String>,
    established: &BTreeSet<String>,
    sessions: &BTreeMap<String, BTreeMap<String, String>>,
    peer: &str,
) -> Ready {
    let count = format!("{}/{} nodes established", established.len(), selected.len());
    if !configured {
        return Ready {
            status: "False",
            reason: "InvalidConfig",
            message: "its settings cannot be used (the password Secret is missing or has no such key; see the operator log)".into(),
        };
    }
    if selected.is_empty() {
        return Ready {
            status: "True",
            reason: "Idle",
            message: "no node announces a route to this peer yet".into(),
        };
    }
    if established.len() == selected.len() {
        return Ready {
            status: "True",
            reason: "Established",
            message: count,
        };
    }
    let down: Vec<String> = selected
        .difference(established)
        .map(|n| {
            let state = sessions
                .get(n)
                .and_then(|s| s.get(peer))
                .map_or("no session", String::as_str);
            format!("{n} ({state})")
        })
        .collect();
    Ready {
        status: "False",
        reason: "NotEstablished",
        message: format!("{count}; not established: {}", down.join(", ")),
    }
}

/// The status body for `peer`, or None when it already shows it.
pub fn peer_status_patch(
    peer: &BGPPeer,
    selected: usize,
    established: usize,
    ready: &Ready,
    now: &str,
) -> Option<Value> {
    let fields = json!({
        "selectedNodes": selected,
        "establishedNodes": established,
        "established": format!("{established}/{selected}"),
    });
    status_patch(
        "BGPPeer",
        &peer.metadata,
        serde_json::to_value(&peer.status).unwrap_or(Value::Null),
        fields,
        ready,
        now,
    )
}

/// `fields` plus `observedGeneration` and the Ready condition, as an SSA
/// body; None when `current` already has all of it. The condition keeps
/// its `lastTransitionTime` while its status is unchanged.
fn status_patch(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    current: Value,
    fields: Value,
    ready: &Ready,
    now: &str,
) -> Option<Value> {
    let generation = meta.generation;
    let current_cond = current["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == conditions::READY))
        .cloned()
        .unwrap_or(Value::Null);
    let time = match current_cond["lastTransitionTime"].as_str() {
        Some(t) if current_cond["status"] == ready.status => t.to_string(),
        _ => now.to_string(),
    };
    let mut st = fields;
    st["observedGeneration"] = json!(generation);
    st["conditions"] = json!([{
        "type": conditions::READY, "status": ready.status, "reason": ready.reason,
        "message": barelb_core::text::one_line(&ready.message), "lastTransitionTime": time, "observedGeneration": generation,
    }]);
    if current == st {
        return None;
    }
    Some(json!({
        "apiVersion": "barelb.io/v1alpha1", "kind": kind,
        "metadata": {"name": meta.name.clone().unwrap_or_default()},
        "status": st,
    }))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(generation: i64, status: Option<Value>) -> LoadBalancerPolicy {
        serde_json::from_value(json!({
            "apiVersion": "barelb.io/v1alpha1", "kind": "LoadBalancerPolicy",
            "metadata": {"name": "tenants", "generation": generation},
            "spec": {"rules": []},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_policy_that_compiles_is_ready_and_is_written_once() {
        let p = policy(3, None);
        let body = policy_status_patch(&p, &Ok(2), 1, "T1").unwrap();
        let st = &body["status"];
        assert_eq!(st["observedGeneration"], 3);
        assert_eq!(st["ruleCount"], 2);
        assert_eq!(st["poolsSelected"], 1);
        assert_eq!(st["conditions"][0]["status"], "True");
        assert_eq!(
            st["conditions"][0]["message"],
            "2 rules compiled; selects 1 AddressPool"
        );
        // Once the object shows it, nothing more is written.
        let p = policy(3, Some(st.clone()));
        assert_eq!(policy_status_patch(&p, &Ok(2), 1, "T2"), None);
        // A new generation is written, keeping the transition time.
        let p = policy(4, Some(st.clone()));
        let body = policy_status_patch(&p, &Ok(2), 1, "T3").unwrap();
        assert_eq!(body["status"]["conditions"][0]["lastTransitionTime"], "T1");
    }

    #[test]
    fn a_policy_that_does_not_compile_is_not_ready_and_says_why() {
        let err = "LoadBalancerPolicy tenants rule only-shop: 1:5: Syntax error".to_string();
        let body = policy_status_patch(&policy(1, None), &Err(err), 2, "T").unwrap();
        let c = &body["status"]["conditions"][0];
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "CompileFailed");
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("rule only-shop: 1:5: Syntax error")
        );
        assert!(body["status"].get("ruleCount").is_none());
    }

    fn sessions(pairs: &[(&str, &str)]) -> BTreeMap<String, BTreeMap<String, String>> {
        pairs
            .iter()
            .map(|(n, st)| (n.to_string(), [("edge".to_string(), st.to_string())].into()))
            .collect()
    }

    #[test]
    fn a_peer_is_ready_only_when_every_announcing_node_is_established() {
        let selected: BTreeSet<String> = ["n1", "n2", "n3"].map(String::from).into();
        let s = sessions(&[("n1", "Established"), ("n2", "Active")]);
        let est: BTreeSet<String> = ["n1".to_string()].into();
        let r = peer_ready(true, &selected, &est, &s, "edge");
        assert_eq!((r.status, r.reason), ("False", "NotEstablished"));
        assert_eq!(
            r.message,
            "1/3 nodes established; not established: n2 (Active), n3 (no session)"
        );
        let r = peer_ready(true, &selected, &selected, &s, "edge");
        assert_eq!(
            (r.status, r.message.as_str()),
            ("True", "3/3 nodes established")
        );
        let none = BTreeSet::new();
        assert_eq!(peer_ready(true, &none, &none, &s, "edge").reason, "Idle");
        assert_eq!(
            peer_ready(false, &selected, &selected, &s, "edge").status,
            "False"
        );
    }
}
