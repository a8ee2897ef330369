//! Who owns each layer-2 address as a plan changes hands: what a new
//! leader adopts from the speakers, who answers now, and which moves can
//! be made quietly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::State;
use super::settle::Awaited;
use barelb_core::planner::{self, How, Node, Plan, Unit};

/// A plan made while a new leader settles, adopted to what speakers said
/// they hold: a layer-2 address stays with its claimant while that speaker
/// is connected and may serve it; one whose claimant has gone (or cannot
/// serve it) goes where the plan puts it, at once — a failover during a
/// leader change is as fast as any; one nobody claimed waits for the
/// settle period (`period_over`), its holder may still be reconnecting,
/// and after it for as long as its last announcer is awaited (`settle`) —
/// unless that node's kubelet has fallen silent: then it goes at once.
pub(super) fn adopt(plan: &mut Plan, s: &State, nodes: &[Node], period_over: bool) {
    let may_serve = |u: &Unit, name: &str| {
        s.speakers.get(name).is_some_and(|sp| !sp.leaving)
            && nodes
                .iter()
                .find(|n| n.name == name)
                .is_some_and(|n| planner::eligibility(u, n).is_ok())
    };
    let awaited = Awaited::of(s);
    for u in &s.inputs.units {
        if !matches!(u.how, How::L2 { .. }) {
            continue;
        }
        for ip in &u.ips {
            match s.claimed.get(ip) {
                Some(holder) if may_serve(u, holder) => {
                    if let Some(owner) = plan.l2.get_mut(ip) {
                        owner.node.clone_from(holder);
                    }
                }
                Some(_) => {}
                None if period_over && !awaited.address(s, ip) => {}
                // Its last announcer's kubelet has fallen silent: nobody
                // answers for it, so waiting out the period gains nothing.
                None if awaited.gone(s, ip) => {}
                None => {
                    plan.l2.remove(ip);
                }
            }
        }
    }
}

/// A speaker that reconnects to a settled leader holding addresses
/// another connected node owns (a standby took them over while the leader
/// and the owner's node were cut off together, and both came back before
/// the Lease was lost): each owner is sent those addresses again, so it
/// announces them again and clients that followed the standby return at
/// once (the reconnecting speaker is told to let them go). Returns how
/// many.
pub(super) fn reannounce_held_elsewhere(
    s: &mut State,
    node: &str,
    holding: &BTreeSet<IpAddr>,
) -> usize {
    if !s.settled {
        return 0;
    }
    let elsewhere: Vec<(String, IpAddr)> = holding
        .iter()
        .filter_map(|ip| {
            let owner = &s.plan.l2.get(ip)?.node;
            (owner != node).then(|| (owner.clone(), *ip))
        })
        .collect();
    let mut count = 0;
    for (owner, ip) in elsewhere {
        if let Some(sp) = s.speakers.get_mut(&owner) {
            sp.reannounce.insert(ip);
            count += 1;
        }
    }
    count
}

/// Who answers for each layer-2 address now: the current plan's owner or,
/// for an address a new leader has not planned yet, the speaker that said
/// it holds it when it connected.
pub(super) fn current_owners(s: &State) -> BTreeMap<IpAddr, &str> {
    let mut owners: BTreeMap<IpAddr, &str> = s
        .speakers
        .iter()
        .flat_map(|(node, sp)| sp.holding.iter().map(move |ip| (*ip, node.as_str())))
        .collect();
    owners.extend(s.plan.l2.iter().map(|(ip, a)| (*ip, a.node.as_str())));
    owners
}

/// Layer-2 addresses `plan` moves away from a node that can still serve
/// them — its speaker connected, its link up, the Node Ready and, for
/// `externalTrafficPolicy: Local`, a ready endpoint of its own — as when a
/// speaker leaves or a node returns. That node keeps forwarding what
/// clients send it, so the new owner takes over quietly (see
/// `L2Announcement.quiet`). The old node is the current owner
/// (`current_owners`), so a new leader's first plan, made while a speaker
/// is leaving, moves its addresses quietly too.
pub(super) fn quiet_moves(
    s: &State,
    owners: &BTreeMap<IpAddr, &str>,
    plan: &Plan,
) -> BTreeSet<IpAddr> {
    let alive = |node: &str| {
        s.speakers.get(node).is_some_and(|sp| sp.link_up)
            && s.inputs.nodes.iter().any(|n| n.name == node && n.ready)
    };
    // Moves away from a live node, then (one pass over the units) those
    // whose old node serves the Service.
    let moved: BTreeMap<IpAddr, &str> = plan
        .l2
        .iter()
        .filter_map(|(ip, new)| {
            let old = *owners.get(ip)?;
            (old != new.node && alive(old)).then_some((*ip, old))
        })
        .collect();
    if moved.is_empty() {
        return BTreeSet::new();
    }
    let mut quiet = BTreeSet::new();
    for u in &s.inputs.units {
        for ip in &u.ips {
            if let Some(old) = moved.get(ip)
                && (!u.local || u.endpoint_nodes.contains(*old))
            {
                quiet.insert(*ip);
            }
        }
    }
    quiet
}
