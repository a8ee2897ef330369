//! The planner's inputs, read from the index: every Service's addresses
//! come from its `status.loadBalancer.ingress` and its pool from the
//! `barelb.io/allocated-pool` annotation — what the operator wrote, so any
//! replica (and a new leader) plans the same thing without the allocator.
//! Services sharing an address are merged into one unit.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use barelb_api::{AnnounceMode, annotations};

use crate::index::Index;
use crate::planner::{BgpAttrs, How, Node, Unit};
use crate::request::{ClassPolicy, ServiceKey, ingress_ips, qualifies};

/// One Service's contribution before merging.
struct Part {
    ips: BTreeSet<IpAddr>,
    pool: String,
    local: bool,
    ready: bool,
    nodes: BTreeSet<String>,
}

fn how(index: &Index, pool: &str) -> Option<How> {
    let p = index.pools.get(&pool.to_string())?;
    let a = &p.spec.announce;
    Some(match a.mode {
        AnnounceMode::L2 => {
            let l2 = a.l2.clone().unwrap_or_default();
            How::L2 {
                node_selector: l2.node_selector,
                interfaces: l2.interfaces.unwrap_or_default(),
            }
        }
        AnnounceMode::Bgp => {
            let b = a.bgp.clone().unwrap_or_default();
            How::Bgp {
                node_selector: b.node_selector,
                peer_selector: b.peer_selector,
                attrs: BgpAttrs {
                    communities: b.communities.unwrap_or_default(),
                    large_communities: b.large_communities.unwrap_or_default(),
                    local_pref: b.local_pref,
                    aggregation_length: b.aggregation_length,
                    aggregation_length_v6: b.aggregation_length_v6,
                },
            }
        }
    })
}

/// The units to announce, sorted by their addresses: only Services this
/// instance handles (its class) on pools it sees (its pool selector) —
/// another instance's Service may hold the same address in its own network.
pub fn units(index: &Index, class: &ClassPolicy) -> Vec<Unit> {
    // Endpoints per Service.
    let mut endpoints: BTreeMap<&ServiceKey, (usize, BTreeSet<String>)> = BTreeMap::new();
    for s in index.endpoint_slices.values() {
        let e = endpoints.entry(&s.service).or_default();
        e.0 += s.ready;
        e.1.extend(s.ready_nodes.iter().cloned());
    }
    let mut parts: Vec<Part> = Vec::new();
    for (key, svc) in index.services.iter() {
        if !qualifies(svc, class) {
            continue;
        }
        let ips: BTreeSet<IpAddr> = ingress_ips(svc).into_iter().collect();
        let Some(pool) = svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::ALLOCATED_POOL))
            .filter(|p| index.pools.get(*p).is_some())
        else {
            continue;
        };
        if ips.is_empty() {
            continue;
        }
        let local = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_traffic_policy.as_deref())
            == Some("Local");
        let (ready, nodes) = endpoints.get(key).cloned().unwrap_or_default();
        parts.push(Part {
            ips,
            pool: pool.clone(),
            local,
            ready: ready > 0,
            nodes,
        });
    }
    // Merge parts that share an address (sharing keys put several Services
    // on one IP; they must be announced from one place): union-find over
    // parts, joined through an address → first part map.
    let mut parent: Vec<usize> = (0..parts.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for (i, p) in parts.iter().enumerate() {
        for ip in &p.ips {
            if let Some(&j) = first.get(ip) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a] = b;
            } else {
                first.insert(*ip, i);
            }
        }
    }
    let mut groups: BTreeMap<usize, Part> = BTreeMap::new();
    for (i, p) in parts.into_iter().enumerate() {
        let r = root(&mut parent, i);
        match groups.get_mut(&r) {
            Some(acc) => {
                acc.ips.extend(p.ips);
                acc.local |= p.local;
                acc.ready |= p.ready;
                acc.nodes.extend(p.nodes);
            }
            None => {
                groups.insert(r, p);
            }
        }
    }
    let merged = groups.into_values();
    let mut out: Vec<Unit> = merged
        .into_iter()
        .filter_map(|p| {
            Some(Unit {
                how: how(index, &p.pool)?,
                ips: p.ips,
                local: p.local,
                has_ready_endpoints: p.ready,
                endpoint_nodes: p.nodes,
            })
        })
        .collect();
    out.sort_by(|a, b| a.ips.cmp(&b.ips));
    out
}

/// Every node with its labels and readiness; `connected` and `link_up`
/// come from the control channel.
pub fn nodes(index: &Index) -> Vec<Node> {
    index
        .nodes
        .iter()
        .map(|(name, n)| Node {
            name: name.clone(),
            labels: n.labels.clone(),
            ready: n.ready,
            connected: false,
            link_up: true,
        })
        .collect()
}
