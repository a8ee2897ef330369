//! Announcement planning, as plain data in and out: which node announces
//! each address (layer 2: exactly one; BGP: every eligible node, to the
//! peers the pool and the peer select).
//!
//! Eligible nodes = speakers connected ∩ Ready ∩ not labelled
//! `node.kubernetes.io/exclude-from-external-load-balancers` ∩ link up ∩
//! the pool's `nodeSelector` ∩ (externalTrafficPolicy Local: nodes with a
//! ready local endpoint; Cluster: at least one ready endpoint anywhere).
//! A layer-2 owner is picked by rendezvous hashing of (unit, node): every
//! planner — another replica, a restarted leader — computes the same owner,
//! owners spread evenly, and a node joining or leaving moves only the
//! addresses it gains or loses. Addresses shared by several Services are
//! one unit, so they always land on the same node. The runner-up is the
//! address's standby: the owner were the owner gone, and the node that
//! takes it over by itself when the operator is away too (speaker
//! `l2::standby`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::selector::LabelSelector;

/// Nodes with this label never announce (the upstream convention).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A node as planning sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    /// Its speaker holds a live stream to the operator.
    pub connected: bool,
    /// Its speaker reports carrier on its announcing interface.
    pub link_up: bool,
}

/// A BGPPeer as planning sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub node_selector: Option<LabelSelector>,
}

/// BGP attributes a pool asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpAttrs {
    pub communities: Vec<String>,
    pub large_communities: Vec<String>,
    pub local_pref: Option<u32>,
    pub aggregation_length: Option<u8>,
    pub aggregation_length_v6: Option<u8>,
}

/// How a pool announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum How {
    L2 {
        node_selector: Option<LabelSelector>,
        interfaces: Vec<String>,
    },
    Bgp {
        node_selector: Option<LabelSelector>,
        peer_selector: Option<LabelSelector>,
        attrs: BgpAttrs,
    },
}

/// Addresses announced together: one Service's, or those shared by several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub ips: BTreeSet<IpAddr>,
    pub how: How,
    /// Some Service of the unit has externalTrafficPolicy Local.
    pub local: bool,
    /// Some Service of the unit has a ready endpoint (anywhere, also
    /// without a node name).
    pub has_ready_endpoints: bool,
    /// Nodes with a ready endpoint of any of the unit's Services.
    pub endpoint_nodes: BTreeSet<String>,
}

/// A layer-2 address's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Owner {
    pub node: String,
    pub interfaces: Vec<String>,
    /// The rendezvous runner-up: who would own it were `node` gone. None:
    /// no other node may announce it.
    pub standby: Option<String>,
}

/// A layer-2 address a node stands by for: its owner and interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyFor {
    pub owner: String,
    pub interfaces: Vec<String>,
}

/// A BGP address's announcers: node → peers it announces to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpAnnouncement {
    pub nodes: BTreeMap<String, Vec<String>>,
    pub attrs: BgpAttrs,
}

impl L2Owner {
    /// What its standby is told.
    fn standing_by(&self) -> StandbyFor {
        StandbyFor {
            owner: self.node.clone(),
            interfaces: self.interfaces.clone(),
        }
    }
}

/// The whole plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub l2: BTreeMap<IpAddr, L2Owner>,
    pub bgp: BTreeMap<IpAddr, BgpAnnouncement>,
}

/// What one node must announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePlan {
    pub l2: BTreeMap<IpAddr, Vec<String>>,
    /// Layer-2 addresses it is the standby for.
    pub l2_standby: BTreeMap<IpAddr, StandbyFor>,
    /// address → (attributes, peers)
    pub bgp: BTreeMap<IpAddr, (BgpAttrs, Vec<String>)>,
}

impl Plan {
    /// The part of the plan `node` carries out.
    pub fn for_node(&self, node: &str) -> NodePlan {
        let mut out = NodePlan::default();
        for (ip, o) in &self.l2 {
            if o.node == node {
                out.l2.insert(*ip, o.interfaces.clone());
            } else if o.standby.as_deref() == Some(node) {
                out.l2_standby.insert(*ip, o.standing_by());
            }
        }
        for (ip, a) in &self.bgp {
            if let Some(peers) = a.nodes.get(node) {
                out.bgp.insert(*ip, (a.attrs.clone(), peers.clone()));
            }
        }
        out
    }

    /// Every node's part in one pass over the plan (what `for_node` gives
    /// for each node, without a scan of the whole plan per node).
    pub fn by_node(&self) -> BTreeMap<String, NodePlan> {
        let mut out: BTreeMap<String, NodePlan> = BTreeMap::new();
        for (ip, o) in &self.l2 {
            out.entry(o.node.clone())
                .or_default()
                .l2
                .insert(*ip, o.interfaces.clone());
            if let Some(standby) = o.standby.as_ref().filter(|s| **s != o.node) {
                out.entry(standby.clone())
                    .or_default()
                    .l2_standby
                    .insert(*ip, o.standing_by());
            }
        }
        for (ip, a) in &self.bgp {
            for (node, peers) in &a.nodes {
                out.entry(node.clone())
                    .or_default()
                    .bgp
                    .insert(*ip, (a.attrs.clone(), peers.clone()));
            }
        }
        out
    }

    /// Nodes announcing `ip` (one for layer 2).
    pub fn announcers(&self, ip: &IpAddr) -> Vec<String> {
        if let Some(o) = self.l2.get(ip) {
            return vec![o.node.clone()];
        }
        self.bgp
            .get(ip)
            .map(|a| a.nodes.keys().cloned().collect())
            .unwrap_or_default()
    }
}

fn selected(sel: &Option<LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    sel.as_ref().is_none_or(|s| s.matches(labels))
}

/// 64-bit FNV-1a with a final avalanche (splitmix64's), fixed across
/// processes and versions: every replica must compute the same owners.
pub fn rendezvous_score(unit_key: &str, node: &str) -> u64 {
    score_from(unit_prefix(unit_key), node)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV state after the unit's key and the separator: hashed once per unit,
/// not once per (unit, node).
fn unit_prefix(unit_key: &str) -> u64 {
    unit_key.bytes().chain([0u8]).fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

fn score_from(prefix: u64, node: &str) -> u64 {
    let mut h = node
        .bytes()
        .fold(prefix, |h, b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME));
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The unit's identity for hashing: its addresses, sorted, comma-joined.
fn unit_key(u: &Unit) -> String {
    u.ips
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a node may not announce a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ineligible {
    /// Its speaker holds no stream to the operator.
    NotConnected,
    NotReady,
    /// Its speaker reports no carrier on its interface.
    LinkDown,
    /// Labelled node.kubernetes.io/exclude-from-external-load-balancers.
    Excluded,
    /// The pool's nodeSelector does not select it.
    NotSelected,
    /// externalTrafficPolicy Local and no ready endpoint of its own.
    NoLocalEndpoint,
}

impl Ineligible {
    /// One line for people.
    pub fn explain(self) -> &'static str {
        match self {
            Ineligible::NotConnected => "its speaker is not connected to the operator",
            Ineligible::NotReady => "the Node is not Ready",
            Ineligible::LinkDown => "its speaker reports the link down",
            Ineligible::Excluded => {
                "labelled node.kubernetes.io/exclude-from-external-load-balancers"
            }
            Ineligible::NotSelected => "the pool's nodeSelector does not select it",
            Ineligible::NoLocalEndpoint => {
                "externalTrafficPolicy: Local and no ready endpoint on this node"
            }
        }
    }
}

/// Whether `n` may announce at all (any unit).
fn node_eligibility(n: &Node) -> Result<(), Ineligible> {
    if !n.connected {
        Err(Ineligible::NotConnected)
    } else if !n.ready {
        Err(Ineligible::NotReady)
    } else if !n.link_up {
        Err(Ineligible::LinkDown)
    } else if n.labels.contains_key(EXCLUDE_LABEL) {
        Err(Ineligible::Excluded)
    } else {
        Ok(())
    }
}

/// Whether `n` could announce anything once its speaker is connected:
/// Ready and not excluded from load balancers (kubeadm labels its
/// control-plane nodes so, and a speaker DaemonSet often skips them). What
/// a new leader waits for before it plans (`Core::settles_now`).
pub fn awaited(n: &Node) -> bool {
    n.ready && !n.labels.contains_key(EXCLUDE_LABEL)
}

/// Whether `n` may announce `u`, or the first reason it may not: the one
/// rule the planner and `kubectl barelb why` both apply.
pub fn eligibility(u: &Unit, n: &Node) -> Result<(), Ineligible> {
    node_eligibility(n)?;
    unit_eligibility(u, n)
}

fn unit_eligibility(u: &Unit, n: &Node) -> Result<(), Ineligible> {
    let node_selector = match &u.how {
        How::L2 { node_selector, .. } | How::Bgp { node_selector, .. } => node_selector,
    };
    if !selected(node_selector, &n.labels) {
        Err(Ineligible::NotSelected)
    } else if u.local && !u.endpoint_nodes.contains(&n.name) {
        Err(Ineligible::NoLocalEndpoint)
    } else {
        Ok(())
    }
}

fn base_eligible(n: &Node) -> bool {
    node_eligibility(n).is_ok()
}

/// Whether a node that is eligible at all may announce this unit.
fn eligible_for(u: &Unit, n: &Node) -> bool {
    unit_eligibility(u, n).is_ok()
}

/// The rendezvous winner among `names` (highest score, then name) and
/// the runner-up. A name given twice counts once.
fn best_two<'a>(
    prefix: u64,
    names: impl Iterator<Item = &'a str>,
) -> (Option<&'a str>, Option<&'a str>) {
    let mut top: [Option<(u64, &str)>; 2] = [None, None];
    for name in names {
        let c = Some((score_from(prefix, name), name));
        if c == top[0] || c == top[1] {
            continue;
        }
        if c > top[0] {
            top[1] = top[0];
            top[0] = c;
        } else if c > top[1] {
            top[1] = c;
        }
    }
    (top[0].map(|c| c.1), top[1].map(|c| c.1))
}

fn names<'a>(nodes: impl Iterator<Item = &'a Node>) -> impl Iterator<Item = &'a str> {
    nodes.map(|n| n.name.as_str())
}

fn place_l2(out: &mut Plan, u: &Unit, (owner, standby): (Option<&str>, Option<&str>)) {
    let Some(owner) = owner else {
        return;
    };
    let How::L2 { interfaces, .. } = &u.how else {
        return;
    };
    for ip in &u.ips {
        out.l2.insert(
            *ip,
            L2Owner {
                node: owner.to_string(),
                interfaces: interfaces.clone(),
                standby: standby.map(str::to_string),
            },
        );
    }
}

fn place_bgp<'a>(
    out: &mut Plan,
    u: &Unit,
    eligible: impl Iterator<Item = &'a Node>,
    peers: &[Peer],
) {
    let How::Bgp {
        peer_selector,
        attrs,
        ..
    } = &u.how
    else {
        return;
    };
    let mut by_node = BTreeMap::new();
    for n in eligible {
        let chosen: Vec<String> = peers
            .iter()
            .filter(|p| selected(peer_selector, &p.labels))
            .filter(|p| selected(&p.node_selector, &n.labels))
            .map(|p| p.name.clone())
            .collect();
        if !chosen.is_empty() {
            by_node.insert(n.name.clone(), chosen);
        }
    }
    if by_node.is_empty() {
        return;
    }
    for ip in &u.ips {
        out.bgp.insert(
            *ip,
            BgpAnnouncement {
                nodes: by_node.clone(),
                attrs: attrs.clone(),
            },
        );
    }
}

/// Plans every unit.
pub fn plan(units: &[Unit], nodes: &[Node], peers: &[Peer]) -> Plan {
    let mut out = Plan::default();
    let base: Vec<&Node> = nodes.iter().filter(|n| base_eligible(n)).collect();
    // A unit without a ready endpoint: nothing would answer behind the
    // address, so nobody announces it.
    for u in units.iter().filter(|u| u.has_ready_endpoints) {
        let eligible = base.iter().copied().filter(|n| eligible_for(u, n));
        match &u.how {
            How::L2 { .. } => {
                place_l2(
                    &mut out,
                    u,
                    best_two(unit_prefix(&unit_key(u)), names(eligible)),
                );
            }
            How::Bgp { .. } => place_bgp(&mut out, u, eligible, peers),
        }
    }
    out
}

/// The plan after only whether nodes may announce at all changed
/// (connected, link, Ready) since `prev = plan(units, before, peers)`:
/// equal to `plan(units, after, peers)`, without hashing every (unit, node)
/// pair again. Rendezvous hashing makes this exact: a layer-2 owner and
/// standby that stay eligible keep their places unless a node that just
/// became eligible outscores them; only the units whose owner or standby
/// left are hashed against every node. That keeps a node loss (and each speaker of a reconnect storm)
/// cheap with thousands of nodes. Falls back to `plan` when node names or
/// labels differ. Units' addresses must be disjoint, as the hub's are.
pub fn replan_nodes(
    prev: &Plan,
    before: &[Node],
    units: &[Unit],
    after: &[Node],
    peers: &[Peer],
) -> Plan {
    let was: BTreeMap<&str, &Node> = before.iter().map(|n| (n.name.as_str(), n)).collect();
    if before.len() != after.len()
        || after.iter().any(|n| {
            was.get(n.name.as_str())
                .is_none_or(|b| b.labels != n.labels)
        })
    {
        return plan(units, after, peers);
    }
    let base: Vec<&Node> = after.iter().filter(|n| base_eligible(n)).collect();
    let came: Vec<&Node> = base
        .iter()
        .copied()
        .filter(|n| !was.get(n.name.as_str()).is_some_and(|b| base_eligible(b)))
        .collect();
    let stays: BTreeSet<&str> = base.iter().map(|n| n.name.as_str()).collect();
    let mut out = Plan::default();
    for u in units.iter().filter(|u| u.has_ready_endpoints) {
        match &u.how {
            How::L2 { .. } => {
                let prefix = unit_prefix(&unit_key(u));
                let had = u.ips.first().and_then(|ip| prev.l2.get(ip));
                let newcomers = names(came.iter().copied().filter(|n| eligible_for(u, n)));
                let top = match had {
                    // Owner and standby still eligible (units and labels are
                    // unchanged): only a newcomer can beat them.
                    Some(o)
                        if stays.contains(o.node.as_str())
                            && o.standby.as_deref().is_none_or(|s| stays.contains(s)) =>
                    {
                        let held = std::iter::once(o.node.as_str()).chain(o.standby.as_deref());
                        best_two(prefix, held.chain(newcomers))
                    }
                    // Its owner or standby left: every eligible node competes.
                    Some(_) => best_two(
                        prefix,
                        names(base.iter().copied().filter(|n| eligible_for(u, n))),
                    ),
                    // Nobody could announce it before: only newcomers can now.
                    None => best_two(prefix, newcomers),
                };
                place_l2(&mut out, u, top);
            }
            How::Bgp { .. } => {
                place_bgp(
                    &mut out,
                    u,
                    base.iter().copied().filter(|n| eligible_for(u, n)),
                    peers,
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
