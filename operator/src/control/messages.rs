//! A node's plan as barelb.control.v1 messages: the whole of it as a
//! Snapshot, or the change from what the speaker was last sent as a Delta.

use std::collections::BTreeMap;

use barelb_control::v1::{BgpPeer, BgpRoute, Delta, L2Announcement, L2Standby, Snapshot};

use barelb_core::planner::{BgpAttrs, NodePlan, StandbyFor};

/// Everything one speaker is told: its plan and the BGP peers its routes use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeView {
    pub plan: NodePlan,
    pub peers: BTreeMap<String, BgpPeer>,
}

impl NodeView {
    /// The node's plan with the configs of the peers it needs (routes to a
    /// peer without a usable config are dropped).
    pub fn new(mut plan: NodePlan, configs: &BTreeMap<String, BgpPeer>) -> Self {
        let mut peers = BTreeMap::new();
        for (_, names) in plan.bgp.values_mut() {
            names.retain(|n| configs.contains_key(n));
            for n in names.iter() {
                if let Some(c) = configs.get(n) {
                    peers.insert(n.clone(), c.clone());
                }
            }
        }
        plan.bgp.retain(|_, (_, names)| !names.is_empty());
        NodeView { plan, peers }
    }
}

fn l2(ip: &std::net::IpAddr, interfaces: &[String]) -> L2Announcement {
    L2Announcement {
        ip: ip.to_string(),
        interfaces: interfaces.to_vec(),
        // Decided by the hub, which knows whether the previous owner is alive.
        quiet: false,
        // Set by the hub for a traced change.
        trace_context: Default::default(),
    }
}

fn standby(ip: &std::net::IpAddr, s: &StandbyFor) -> L2Standby {
    L2Standby {
        ip: ip.to_string(),
        interfaces: s.interfaces.clone(),
        owner: s.owner.clone(),
    }
}

fn route(ip: &std::net::IpAddr, attrs: &BgpAttrs, peers: &[String]) -> BgpRoute {
    BgpRoute {
        ip: ip.to_string(),
        peers: peers.to_vec(),
        communities: attrs.communities.clone(),
        large_communities: attrs.large_communities.clone(),
        local_pref: attrs.local_pref,
        aggregation_length: if ip.is_ipv4() {
            attrs.aggregation_length.map(u32::from)
        } else {
            attrs.aggregation_length_v6.map(u32::from)
        },
        trace_context: Default::default(),
    }
}

/// Everything `view` holds.
pub fn snapshot(generation: u64, view: &NodeView) -> Snapshot {
    let plan = &view.plan;
    Snapshot {
        generation,
        l2: plan.l2.iter().map(|(ip, i)| l2(ip, i)).collect(),
        bgp_peers: view.peers.values().cloned().collect(),
        bgp_routes: plan
            .bgp
            .iter()
            .map(|(ip, (a, p))| route(ip, a, p))
            .collect(),
        trace_context: Default::default(),
        l2_standby: plan
            .l2_standby
            .iter()
            .map(|(ip, s)| standby(ip, s))
            .collect(),
    }
}

/// What changed from `old` to `new`; None when nothing did.
pub fn delta(generation: u64, old_view: &NodeView, new_view: &NodeView) -> Option<Delta> {
    let (old, new) = (&old_view.plan, &new_view.plan);
    let mut d = Delta {
        generation,
        ..Delta::default()
    };
    for (name, c) in &new_view.peers {
        if old_view.peers.get(name) != Some(c) {
            d.bgp_peers_set.push(c.clone());
        }
    }
    for name in old_view.peers.keys() {
        if !new_view.peers.contains_key(name) {
            d.bgp_peers_remove.push(name.clone());
        }
    }
    for (ip, i) in &new.l2 {
        if old.l2.get(ip) != Some(i) {
            d.l2_set.push(l2(ip, i));
        }
    }
    for ip in old.l2.keys() {
        if !new.l2.contains_key(ip) {
            d.l2_remove.push(ip.to_string());
        }
    }
    for (ip, s) in &new.l2_standby {
        if old.l2_standby.get(ip) != Some(s) {
            d.l2_standby_set.push(standby(ip, s));
        }
    }
    for ip in old.l2_standby.keys() {
        if !new.l2_standby.contains_key(ip) {
            d.l2_standby_remove.push(ip.to_string());
        }
    }
    for (ip, (a, p)) in &new.bgp {
        if old.bgp.get(ip) != Some(&(a.clone(), p.clone())) {
            d.bgp_routes_set.push(route(ip, a, p));
        }
    }
    for ip in old.bgp.keys() {
        if !new.bgp.contains_key(ip) {
            d.bgp_routes_remove.push(ip.to_string());
        }
    }
    let empty = d.l2_set.is_empty()
        && d.l2_remove.is_empty()
        && d.l2_standby_set.is_empty()
        && d.l2_standby_remove.is_empty()
        && d.bgp_peers_set.is_empty()
        && d.bgp_peers_remove.is_empty()
        && d.bgp_routes_set.is_empty()
        && d.bgp_routes_remove.is_empty();
    (!empty).then_some(d)
}

/// `delta` (generation `generation`; None: nothing changed) plus, for
/// each address of `again` the speaker held and keeps, the address given
/// again so that it announces it again.
pub fn again(
    generation: u64,
    delta: Option<Delta>,
    old_view: &NodeView,
    new_view: &NodeView,
    again: &std::collections::BTreeSet<std::net::IpAddr>,
) -> Option<Delta> {
    let kept: Vec<L2Announcement> = again
        .iter()
        .filter(|ip| old_view.plan.l2.contains_key(ip))
        .filter_map(|ip| new_view.plan.l2.get(ip).map(|i| l2(ip, i)))
        .collect();
    if kept.is_empty() {
        return delta;
    }
    let mut d = delta.unwrap_or_else(|| Delta {
        generation,
        ..Delta::default()
    });
    for a in kept {
        if !d.l2_set.iter().any(|x| x.ip == a.ip) {
            d.l2_set.push(a);
        }
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(l2: &[&str], bgp: &[&str]) -> NodeView {
        let configs: BTreeMap<String, BgpPeer> = [(
            "tor".to_string(),
            BgpPeer {
                name: "tor".into(),
                ..BgpPeer::default()
            },
        )]
        .into();
        NodeView::new(
            NodePlan {
                l2: l2.iter().map(|s| (s.parse().unwrap(), vec![])).collect(),
                l2_standby: BTreeMap::new(),
                bgp: bgp
                    .iter()
                    .map(|s| {
                        (
                            s.parse().unwrap(),
                            (BgpAttrs::default(), vec!["tor".to_string()]),
                        )
                    })
                    .collect(),
            },
            &configs,
        )
    }

    #[test]
    fn snapshots_carry_everything() {
        let s = snapshot(
            7,
            &plan(&["198.51.100.1", "2001:db8::1"], &["198.51.100.9"]),
        );
        assert_eq!(s.generation, 7);
        assert_eq!(s.l2.len(), 2);
        assert_eq!(s.bgp_routes[0].peers, ["tor"]);
        assert_eq!(s.bgp_peers[0].name, "tor");
    }

    #[test]
    fn deltas_carry_only_changes() {
        let a = plan(&["198.51.100.1", "198.51.100.2"], &["198.51.100.9"]);
        let b = plan(&["198.51.100.2", "198.51.100.3"], &[]);
        let d = delta(8, &a, &b).unwrap();
        assert_eq!(d.generation, 8);
        assert_eq!(d.l2_set[0].ip, "198.51.100.3");
        assert_eq!(d.l2_set.len(), 1);
        assert_eq!(d.l2_remove, ["198.51.100.1"]);
        assert_eq!(d.bgp_routes_remove, ["198.51.100.9"]);
        assert_eq!(d.bgp_peers_remove, ["tor"], "no route uses it any more");
        assert!(delta(9, &b, &b).is_none());
    }

    #[test]
    fn an_address_kept_is_given_again_only_when_asked_and_still_held() {
        let a = plan(&["198.51.100.1", "198.51.100.2"], &[]);
        let b = plan(&["198.51.100.1"], &[]);
        let asked: std::collections::BTreeSet<std::net::IpAddr> = [
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        ]
        .into();
        let d = again(5, delta(5, &a, &b), &a, &b, &asked).unwrap();
        assert_eq!(d.l2_remove, ["198.51.100.2"], "what goes still goes");
        assert_eq!(d.l2_set.len(), 1);
        assert_eq!(d.l2_set[0].ip, "198.51.100.1");
        assert!(again(6, None, &b, &b, &Default::default()).is_none());
        let d = again(6, None, &b, &b, &asked).unwrap();
        assert_eq!((d.generation, d.l2_set.len()), (6, 1));
    }

    #[test]
    fn standbys_travel_in_snapshots_and_deltas() {
        let owner = |o: &str| StandbyFor {
            owner: o.into(),
            interfaces: vec![],
        };
        let mut a = plan(&["198.51.100.1"], &[]);
        a.plan
            .l2_standby
            .insert("198.51.100.7".parse().unwrap(), owner("node-2"));
        let s = snapshot(1, &a);
        assert_eq!(s.l2_standby[0].ip, "198.51.100.7");
        assert_eq!(s.l2_standby[0].owner, "node-2");
        let mut b = a.clone();
        b.plan
            .l2_standby
            .insert("198.51.100.7".parse().unwrap(), owner("node-3"));
        b.plan
            .l2_standby
            .insert("198.51.100.8".parse().unwrap(), owner("node-3"));
        let d = delta(2, &a, &b).unwrap();
        assert_eq!(d.l2_standby_set.len(), 2, "a new owner and a new address");
        assert!(d.l2_set.is_empty() && d.l2_remove.is_empty());
        let d = delta(3, &b, &plan(&["198.51.100.1"], &[])).unwrap();
        assert_eq!(d.l2_standby_remove, ["198.51.100.7", "198.51.100.8"]);
    }
}
