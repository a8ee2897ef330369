//! `kubectl barelb why svc/NAME`: one Service explained with the operator's
//! own decisions — whether its class is served, its request as the
//! allocator parses it, each candidate pool in the allocator's order with
//! its fitness and the policies' verdict, what it holds, and which node
//! announces it and why each other node does not.

use std::fmt::Write as _;

use barelb_core::candidates::{self, Unfit};
use barelb_core::planner::{self, Ineligible};
use barelb_core::policy::{Claim, Decision};
use barelb_core::request::{self, ClassPolicy, ServiceKey, ServiceRecord};
use barelb_operator::control::inputs;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::plan::{OperatorFlags, view_of};

#[derive(Clone, Debug, Serialize)]
pub struct Why {
    pub service: String,
    /// Why barelb does not serve it, when it does not.
    pub not_served: Option<String>,
    /// The request as the allocator parses it, or why it cannot.
    pub request: Result<RequestView, String>,
    pub pools: Vec<PoolVerdict>,
    pub addresses: Vec<String>,
    pub allocated: Option<String>,
    pub nodes: Vec<NodeVerdict>,
    pub announced: Option<String>,
    pub events: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    pub pool: Option<String>,
    pub ips: Vec<String>,
    pub sharing_key: Option<String>,
    pub families: Vec<String>,
    pub external_traffic_policy: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PoolVerdict {
    pub pool: String,
    /// "candidate", or why it is not one.
    pub fit: String,
    /// The policies' verdict on this claim ("allowed", or the refusal,
    /// which names the policy and rule).
    pub policy: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeVerdict {
    pub node: String,
    /// "announces", "eligible", or why not.
    pub verdict: String,
}

/// Why barelb does not serve `svc`, or None when it does.
fn not_served(svc: &ServiceRecord, class: &ClassPolicy) -> Option<String> {
    if request::qualifies(svc, class) {
        return None;
    }
    let Some(lb) = &svc.load_balancer else {
        return Some("its spec.type is not LoadBalancer".into());
    };
    Some(if svc.deleting {
        "it is being deleted".into()
    } else {
        match &lb.class {
            Some(c) => format!(
                "spec.loadBalancerClass {c} is not the operator's ({}): another controller serves it",
                class.class
            ),
            None => {
                "it names no loadBalancerClass and the operator runs with --handle-classless=false"
                    .into()
            }
        }
    })
}

/// Explains Service `key` of `cluster`.
pub fn why(
    cluster: &Cluster,
    key: &ServiceKey,
    flags: &OperatorFlags,
    events: Vec<String>,
) -> anyhow::Result<Why> {
    let svc = cluster
        .index
        .services
        .get(key)
        .ok_or_else(|| anyhow::anyhow!("service {key} not found"))?;
    let view = view_of(&cluster.index, flags);
    let not_served = not_served(svc, &view.class);
    let parsed = match svc.request() {
        Some(Ok(r)) => Ok(r.as_ref()),
        Some(Err(e)) => Err(e.0.clone()),
        None => Err("not a LoadBalancer".to_string()),
    };
    let request = parsed.as_ref().map(|r| RequestView {
        pool: r.pool.clone(),
        ips: r.ips.iter().map(ToString::to_string).collect(),
        sharing_key: r.sharing_key.clone(),
        families: r
            .families
            .iter()
            .map(|f| f.k8s_name().to_string())
            .collect(),
        external_traffic_policy: r.external_traffic_policy.clone(),
    });
    let held = svc.ingress.clone();
    let pools = match (&parsed, &not_served) {
        (Ok(req), None) => pool_verdicts(&view, req, &held),
        _ => Vec::new(),
    };
    let condition = |t: &str| {
        svc.condition(t)
            .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
    };
    // Who announces is the operator's word (it alone knows which speakers
    // hold a stream); the planner's rule explains the rest.
    let actual: Option<Vec<String>> = svc
        .condition(barelb_api::conditions::ANNOUNCED)
        .map(|c| barelb_operator::status::announced::nodes_in(&c.message));
    let nodes = if not_served.is_none() && !held.is_empty() {
        node_verdicts(cluster, &view.class, &held, actual.as_deref())
    } else {
        Vec::new()
    };
    Ok(Why {
        service: key.to_string(),
        not_served,
        request: request.map_err(Clone::clone),
        pools,
        addresses: held.iter().map(ToString::to_string).collect(),
        allocated: condition(barelb_api::conditions::ALLOCATED),
        nodes,
        announced: condition(barelb_api::conditions::ANNOUNCED),
        events,
    })
}

/// Every pool in the allocator's order of preference for this request,
/// with its fitness and the policies' verdict on the claim.
fn pool_verdicts(
    view: &barelb_operator::admission::View,
    req: &request::Request,
    held: &[std::net::IpAddr],
) -> Vec<PoolVerdict> {
    let automatic = req.pool.is_none() && req.ips.is_empty();
    let anchored = held.iter().find_map(|ip| {
        view.pools
            .iter()
            .find(|p| p.ranges.iter().any(|r| r.contains(ip)))
    });
    let not_candidate = match (&req.pool, anchored) {
        (Some(name), _) => format!("not a candidate: the Service names AddressPool {name}"),
        (None, Some(p)) => format!(
            "not a candidate: the Service keeps its address from AddressPool {}",
            p.name
        ),
        (None, None) if !req.ips.is_empty() => {
            "not a candidate: does not contain the requested addresses".into()
        }
        (None, None) => "not a candidate: autoAssign false (name it with barelb.io/pool)".into(),
    };
    let order: Vec<&barelb_core::pools::PoolDef> = match (&req.pool, anchored) {
        (Some(name), _) => view.pools.iter().filter(|p| &p.name == name).collect(),
        (None, Some(p)) => vec![p],
        (None, None) if !req.ips.is_empty() => view
            .pools
            .iter()
            .filter(|p| {
                req.ips
                    .iter()
                    .any(|ip| p.ranges.iter().any(|r| r.contains(ip)))
            })
            .collect(),
        (None, None) => candidates::auto_assign_order(view.pools.iter()),
    };
    let required = candidates::required_families(req, &req.families);
    let mut out: Vec<PoolVerdict> = order
        .into_iter()
        .map(|def| {
            let ready = view.ready.get(&def.name).cloned().unwrap_or(Ok(()));
            let fit = match candidates::fitness(def, &ready, &required) {
                Ok(()) => "candidate".to_string(),
                Err(Unfit::NotReady(why)) => format!("not Ready: {why}"),
                Err(Unfit::MissingFamily) => "lacks a required address family".to_string(),
            };
            let claim = Claim {
                request: req,
                pool: def,
                automatic,
                ips: &req.ips,
            };
            let policy = match view.policy.check(&claim) {
                Decision::Allow => "allowed".to_string(),
                Decision::Warn(w) => format!("allowed with a warning: {w}"),
                Decision::Deny(d) => format!("denied: {}", d.message),
            };
            PoolVerdict {
                pool: def.name.clone(),
                fit,
                policy,
            }
        })
        .collect();
    // Pools this request can never use, for completeness.
    for def in &view.pools {
        if !out.iter().any(|v| v.pool == def.name) {
            out.push(PoolVerdict {
                pool: def.name.clone(),
                fit: not_candidate.clone(),
                policy: String::new(),
            });
        }
    }
    out
}

/// Each node's verdict for the unit holding `held`, by the planner's own
/// rule: the node(s) the operator says announce it (`actual`, from the
/// Announced condition; else the planner's pick from what the API shows),
/// and why each other node does not.
fn node_verdicts(
    cluster: &Cluster,
    class: &ClassPolicy,
    held: &[std::net::IpAddr],
    actual: Option<&[String]>,
) -> Vec<NodeVerdict> {
    let units = inputs::units(&cluster.index, class);
    let Some(unit) = units
        .iter()
        .find(|u| held.iter().any(|ip| u.ips.contains(ip)))
    else {
        return Vec::new();
    };
    let nodes: Vec<planner::Node> = inputs::nodes(&cluster.index)
        .into_iter()
        .map(|n| {
            // The leader's word on streams and links; without it, a Ready
            // speaker Pod (it turns Ready once connected) stands for both.
            let (connected, link_up) = match &cluster.leader {
                Ok(l) => l
                    .streams
                    .get(&n.name)
                    .map_or((false, true), |s| (true, s.link_up)),
                Err(_) => (
                    cluster.speakers.get(&n.name).copied().unwrap_or(false),
                    true,
                ),
            };
            planner::Node {
                connected,
                link_up,
                ..n
            }
        })
        .collect();
    let plan = planner::plan(
        std::slice::from_ref(unit),
        &nodes,
        &inputs::peers(&cluster.index),
    );
    let forecast: Vec<&str> = held
        .iter()
        .flat_map(|ip| {
            plan.l2
                .get(ip)
                .map(|o| vec![o.node.as_str()])
                .or_else(|| {
                    plan.bgp
                        .get(ip)
                        .map(|b| b.nodes.keys().map(String::as_str).collect())
                })
                .unwrap_or_default()
        })
        .collect();
    let announcing: Vec<&str> = match actual {
        Some(a) => a.iter().map(String::as_str).collect(),
        None => forecast.clone(),
    };
    let mut nodes = nodes;
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
        .iter()
        .map(|n| NodeVerdict {
            node: n.name.clone(),
            verdict: if announcing.contains(&n.name.as_str()) {
                "announces".into()
            } else {
                match planner::eligibility(unit, n) {
                    Ok(()) if !unit.has_ready_endpoints => {
                        "eligible, but the Service has no ready endpoint".into()
                    }
                    Ok(()) if forecast.contains(&n.name.as_str()) => {
                        "eligible as the API shows it, but the operator does not announce from it: its speaker has no stream to the operator, or reports its link down".into()
                    }
                    Ok(()) => "eligible (another node won the hash)".into(),
                    Err(Ineligible::NotConnected) if cluster.leader.is_ok() => {
                        "its speaker has no stream to the leading operator".into()
                    }
                    Err(Ineligible::NotConnected) => {
                        "its speaker Pod is not Ready (not connected to the operator)".into()
                    }
                    Err(e) => e.explain().to_string(),
                }
            },
        })
        .collect()
}

/// `w` for people.
pub fn text(w: &Why) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Service {}", w.service);
    if let Some(n) = &w.not_served {
        let _ = writeln!(s, "  not served by barelb: {n}");
    }
    match &w.request {
        Ok(r) => {
            let _ = writeln!(
                s,
                "  request: families {}, pool {}, addresses {}, sharing key {}, externalTrafficPolicy {}",
                r.families.join("+"),
                r.pool.as_deref().unwrap_or("(any auto-assign pool)"),
                if r.ips.is_empty() {
                    "(any)".to_string()
                } else {
                    r.ips.join(",")
                },
                r.sharing_key.as_deref().unwrap_or("(none)"),
                r.external_traffic_policy
            );
        }
        Err(e) => {
            let _ = writeln!(s, "  request: invalid: {e}");
        }
    }
    if !w.pools.is_empty() {
        let _ = writeln!(s, "  pools, in the allocator's order:");
        for p in &w.pools {
            let policy = if p.policy.is_empty() {
                String::new()
            } else {
                format!("; policy: {}", p.policy)
            };
            let _ = writeln!(s, "    {:<24} {}{policy}", p.pool, p.fit);
        }
    }
    let _ = writeln!(
        s,
        "  addresses: {}",
        if w.addresses.is_empty() {
            "none".to_string()
        } else {
            w.addresses.join(", ")
        }
    );
    if let Some(a) = &w.allocated {
        let _ = writeln!(s, "  Allocated: {a}");
    }
    if let Some(a) = &w.announced {
        let _ = writeln!(s, "  Announced: {a}");
    }
    if !w.nodes.is_empty() {
        let _ = writeln!(s, "  nodes:");
        for n in &w.nodes {
            let _ = writeln!(s, "    {:<24} {}", n.node, n.verdict);
        }
    }
    if !w.events.is_empty() {
        let _ = writeln!(s, "  events:");
        for e in &w.events {
            let _ = writeln!(s, "    {e}");
        }
    }
    s
}
