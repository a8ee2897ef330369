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

/// Every BGPPeer as planning sees it.
pub fn peers(index: &Index) -> Vec<crate::planner::Peer> {
    index
        .peers
        .iter()
        .map(|(name, p)| crate::planner::Peer {
            name: name.clone(),
            labels: p.metadata.labels.clone().unwrap_or_default(),
            node_selector: p.spec.node_selector.clone(),
        })
        .collect()
}

fn seconds(s: &Option<String>, default: u64) -> u64 {
    s.as_deref()
        .and_then(|d| {
            let d = d.trim();
            let (num, mul) = if let Some(ms) = d.strip_suffix("ms") {
                (ms, 0.001)
            } else if let Some(m) = d.strip_suffix('m') {
                (m, 60.0)
            } else {
                (d.strip_suffix('s').unwrap_or(d), 1.0)
            };
            num.parse::<f64>().ok().map(|n| (n * mul) as u64)
        })
        .unwrap_or(default)
}

/// What speakers need to open each BGPPeer's session; the TCP-MD5
/// password is read from the referenced Secret in `namespace` (never a
/// plaintext field). A peer whose Secret cannot be read is left out, and
/// logged with the fix.
pub async fn peer_configs(
    client: &kube::Client,
    namespace: &str,
    index: &Index,
) -> BTreeMap<String, barelb_control::v1::BgpPeer> {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let mut out = BTreeMap::new();
    for (name, p) in index.peers.iter() {
        let spec = &p.spec;
        let mut password = Vec::new();
        if let Some(r) = &spec.password_secret_ref {
            match secrets.get_opt(&r.name).await {
                Ok(Some(s)) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => password = v.0.clone(),
                    None => {
                        tracing::error!(peer = %name, secret = %r.name, key = %r.key, "BGPPeer password: the Secret has no such key; add it or fix passwordSecretRef");
                        continue;
                    }
                },
                Ok(None) => {
                    tracing::error!(peer = %name, secret = %r.name, namespace, "BGPPeer password: Secret not found in the operator's namespace; create it or fix passwordSecretRef");
                    continue;
                }
                Err(e) => {
                    tracing::error!(peer = %name, error = %e, "BGPPeer password: cannot read the Secret");
                    continue;
                }
            }
        }
        out.insert(
            name.clone(),
            barelb_control::v1::BgpPeer {
                name: name.clone(),
                address: spec.peer_address.clone(),
                port: u32::from(spec.peer_port()),
                peer_asn: spec.peer_asn,
                my_asn: spec.my_asn,
                source_address: spec.source_address.clone().unwrap_or_default(),
                hold_time: u32::try_from(seconds(&spec.hold_time, 90)).unwrap_or(90),
                connect_retry_ms: u32::try_from(seconds(&spec.connect_retry_time, 5) * 1000)
                    .unwrap_or(5000),
                ebgp_multihop: spec.ebgp_multi_hop.map(u32::from).unwrap_or(0),
                password,
                graceful_restart: if spec.graceful_restart == Some(true) {
                    120
                } else {
                    0
                },
            },
        );
    }
    out
}
