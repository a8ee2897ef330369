//! A node's plan as barelb.control.v1 messages: the whole of it as a
//! Snapshot, or the change from what the speaker was last sent as a Delta.

use barelb_control::v1::{BgpRoute, Delta, L2Announcement, Snapshot};

use crate::planner::{BgpAttrs, NodePlan};

fn l2(ip: &std::net::IpAddr, interfaces: &[String]) -> L2Announcement {
    L2Announcement {
        ip: ip.to_string(),
        interfaces: interfaces.to_vec(),
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
    }
}

/// Everything `plan` holds.
pub fn snapshot(generation: u64, plan: &NodePlan) -> Snapshot {
    Snapshot {
        generation,
        l2: plan.l2.iter().map(|(ip, i)| l2(ip, i)).collect(),
        bgp_peers: Vec::new(),
        bgp_routes: plan
            .bgp
            .iter()
            .map(|(ip, (a, p))| route(ip, a, p))
            .collect(),
    }
}

/// What changed from `old` to `new`; None when nothing did.
pub fn delta(generation: u64, old: &NodePlan, new: &NodePlan) -> Option<Delta> {
    let mut d = Delta {
        generation,
        ..Delta::default()
    };
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
        && d.bgp_routes_set.is_empty()
        && d.bgp_routes_remove.is_empty();
    (!empty).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(l2: &[&str], bgp: &[&str]) -> NodePlan {
        NodePlan {
            l2: l2.iter().map(|s| (s.parse().unwrap(), vec![])).collect(),
            bgp: bgp
                .iter()
                .map(|s| {
                    (
                        s.parse().unwrap(),
                        (BgpAttrs::default(), vec!["tor".to_string()]),
                    )
                })
                .collect(),
        }
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
        assert!(delta(9, &b, &b).is_none());
    }
}
