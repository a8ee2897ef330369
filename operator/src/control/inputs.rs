//! The planner's inputs, read from the index: every Service's addresses
//! come from its `status.loadBalancer.ingress` — what the operator wrote —
//! and its pool is the one that owns them, so any replica (and a new
//! leader) plans the same thing without the allocator.
//! Services sharing an address are merged into one unit.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use std::time::Duration;

use barelb_api::AnnounceMode;
use barelb_core::duration;

use crate::index::Index;
use barelb_core::planner::{BgpAttrs, How, Node, Unit};
use barelb_core::request::{ClassPolicy, ServiceKey};

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
    for (key, svc, ips, pool) in index.pooled(class) {
        if index.pools.get(&pool).is_none() {
            continue;
        }
        let ips: BTreeSet<IpAddr> = ips.into_iter().collect();
        let local = svc
            .load_balancer
            .as_ref()
            .is_some_and(|lb| lb.local_traffic);
        let (ready, nodes) = endpoints.get(key).cloned().unwrap_or_default();
        parts.push(Part {
            ips,
            pool,
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

/// The node each layer-2 address was last announced by, as the Services'
/// Announced conditions (written by the last leader) say: a new leader's
/// settle period waits for those nodes' speakers.
pub fn last_owners(index: &Index, class: &ClassPolicy) -> BTreeMap<IpAddr, String> {
    let mut out = BTreeMap::new();
    for (_, svc, ips, pool) in index.pooled(class) {
        let l2 = index
            .pools
            .get(&pool)
            .is_some_and(|p| p.spec.announce.mode == AnnounceMode::L2);
        let announced = crate::status::announced::condition(svc).filter(|c| c.status == "True");
        let (true, Some(c)) = (l2, announced) else {
            continue;
        };
        if let [node] = crate::status::announced::nodes_in(&c.message).as_slice() {
            out.extend(ips.iter().map(|ip| (*ip, node.clone())));
        }
    }
    out
}

/// Where each node's speaker may connect from.
pub fn node_sources(index: &Index) -> super::auth::NodeSources {
    index
        .nodes
        .iter()
        .map(|(name, n)| (name.clone(), n.sources.clone()))
        .collect()
}

/// Every BGPPeer as planning sees it.
pub fn peers(index: &Index) -> Vec<barelb_core::planner::Peer> {
    index
        .peers
        .iter()
        .map(|(name, p)| barelb_core::planner::Peer {
            name: name.clone(),
            labels: p.metadata.labels.clone().unwrap_or_default(),
            node_selector: p.spec.node_selector.clone(),
        })
        .collect()
}

/// The control-channel form of one BGPPeer, with its TCP-MD5 password
/// (empty: none). Durations are read with the one parser the CRD's pattern
/// promises; the error names the field.
pub fn peer_config(
    name: &str,
    spec: &barelb_api::BGPPeerSpec,
    password: Vec<u8>,
) -> Result<barelb_control::v1::BgpPeer, String> {
    let field = |field: &str, value: Option<&str>, default: Duration| {
        duration::parse_or(value, default).map_err(|e| format!("BGPPeer {name}: spec.{field}: {e}"))
    };
    let hold = field(
        "holdTime",
        spec.hold_time.as_deref(),
        Duration::from_secs(90),
    )?;
    let keepalive = field(
        "keepaliveTime",
        spec.keepalive_time.as_deref(),
        Duration::ZERO,
    )?;
    let retry = field(
        "connectRetryTime",
        spec.connect_retry_time.as_deref(),
        Duration::from_secs(5),
    )?;
    let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    Ok(barelb_control::v1::BgpPeer {
        name: name.to_string(),
        address: spec.peer_address.clone(),
        port: u32::from(spec.peer_port()),
        peer_asn: spec.peer_asn,
        my_asn: spec.my_asn,
        source_address: spec.source_address.clone().unwrap_or_default(),
        // The CRD bounds it to 65535 s; whole seconds on the wire (RFC 4271).
        hold_time: u32::try_from(hold.as_secs()).unwrap_or(u32::MAX),
        keepalive_ms: millis(keepalive),
        connect_retry_ms: millis(retry),
        ebgp_multihop: spec.ebgp_multi_hop.map(u32::from).unwrap_or(0),
        password,
        graceful_restart: if spec.graceful_restart == Some(true) {
            120
        } else {
            0
        },
        bfd: spec
            .bfd
            .as_ref()
            .map(|b| {
                let default = Duration::from_millis(barelb_api::DEFAULT_BFD_INTERVAL_MS);
                Ok::<_, String>(barelb_control::v1::Bfd {
                    min_rx_ms: millis(field("bfd.minRx", b.min_rx.as_deref(), default)?),
                    min_tx_ms: millis(field("bfd.minTx", b.min_tx.as_deref(), default)?),
                    multiplier: u32::from(
                        b.multiplier.unwrap_or(barelb_api::DEFAULT_BFD_MULTIPLIER),
                    ),
                })
            })
            .transpose()?,
    })
}

/// The password of a peer from the operator's Secrets, or why there is
/// none: a peer whose Secret is missing is left out, with the fix.
fn password(
    name: &str,
    spec: &barelb_api::BGPPeerSpec,
    secrets: &crate::index::Store<String, BTreeMap<String, Vec<u8>>>,
    namespace: &str,
) -> Result<Vec<u8>, String> {
    let Some(r) = &spec.password_secret_ref else {
        return Ok(Vec::new());
    };
    let Some(data) = secrets.get(&r.name) else {
        return Err(format!(
            "BGPPeer {name}: passwordSecretRef: Secret {namespace}/{} not found; create it in the operator's namespace or fix passwordSecretRef",
            r.name
        ));
    };
    data.get(&r.key).cloned().ok_or_else(|| {
        format!(
            "BGPPeer {name}: passwordSecretRef: Secret {namespace}/{} has no key {}; add it or fix passwordSecretRef",
            r.name, r.key
        )
    })
}

/// What speakers need to open each BGPPeer's session, from the index (its
/// Secrets included, so a Secret created late or rotated re-keys the
/// session). A peer that cannot be configured is left out and logged.
pub fn peer_configs(
    index: &Index,
    namespace: &str,
) -> BTreeMap<String, barelb_control::v1::BgpPeer> {
    let mut out = BTreeMap::new();
    for (name, p) in index.peers.iter() {
        let config = password(name, &p.spec, &index.secrets, namespace)
            .and_then(|pw| peer_config(name, &p.spec, pw));
        match config {
            Ok(c) => {
                out.insert(name.clone(), c);
            }
            Err(e) => tracing::error!(peer = %name, "{e}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> barelb_api::BGPPeerSpec {
        serde_yaml::from_str(&format!(
            "peerAddress: 192.0.2.1\npeerASN: 64500\nmyASN: 64501\n{yaml}"
        ))
        .unwrap()
    }

    #[test]
    fn durations_reach_the_speaker_as_written() {
        let c = peer_config(
            "p",
            &spec("holdTime: 1m30s\nkeepaliveTime: 10s\nconnectRetryTime: 100ms"),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            (c.hold_time, c.keepalive_ms, c.connect_retry_ms),
            (90, 10_000, 100)
        );
        let c = peer_config("p", &spec("connectRetryTime: 1h\nholdTime: 3s"), Vec::new()).unwrap();
        assert_eq!((c.hold_time, c.connect_retry_ms), (3, 3_600_000));
        let c = peer_config("p", &spec(""), Vec::new()).unwrap();
        assert_eq!(
            (c.hold_time, c.keepalive_ms, c.connect_retry_ms),
            (90, 0, 5000)
        );
    }

    #[test]
    fn bfd_reaches_the_speaker_with_its_defaults_or_as_written() {
        let c = peer_config("p", &spec(""), Vec::new()).unwrap();
        assert_eq!(c.bfd, None, "no bfd: none");
        let c = peer_config("p", &spec("bfd: {}"), Vec::new()).unwrap();
        assert_eq!(
            c.bfd,
            Some(barelb_control::v1::Bfd {
                min_rx_ms: 300,
                min_tx_ms: 300,
                multiplier: 3
            })
        );
        let c = peer_config(
            "p",
            &spec("bfd: {minRx: 50ms, minTx: 1s, multiplier: 5}"),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            c.bfd,
            Some(barelb_control::v1::Bfd {
                min_rx_ms: 50,
                min_tx_ms: 1000,
                multiplier: 5
            })
        );
        let e = peer_config("p", &spec("bfd: {minRx: fast}"), Vec::new()).unwrap_err();
        assert!(e.starts_with("BGPPeer p: spec.bfd.minRx: "), "{e}");
    }

    #[test]
    fn a_bad_duration_is_an_error_naming_the_field() {
        let e = peer_config("p", &spec("holdTime: 90"), Vec::new()).unwrap_err();
        assert!(
            e.starts_with("BGPPeer p: spec.holdTime: \"90\" is not a duration"),
            "{e}"
        );
    }

    /// A BGPPeer whose password Secret arrives after it, then is rotated:
    /// each change marks the peers touched, and the session's key follows.
    #[test]
    fn a_late_or_rotated_password_secret_reaches_the_peer() {
        use crate::index::{Change, Touched};
        use kube::runtime::watcher::Event;
        let mut index = Index::default();
        let mut touched = Touched::default();
        let peer: barelb_api::BGPPeer = serde_json::from_value(serde_json::json!({
            "apiVersion": "barelb.io/v1alpha1", "kind": "BGPPeer",
            "metadata": {"name": "tor"},
            "spec": {"peerAddress": "192.0.2.1", "peerASN": 64500, "myASN": 64501,
                     "passwordSecretRef": {"name": "tor-md5", "key": "password"}}
        }))
        .unwrap();
        index.apply(
            Change::Peer(Event::Apply(kube::core::DeserializeGuard(Ok(peer)))),
            &mut touched,
        );
        assert!(peer_configs(&index, "barelb-system").is_empty());
        let secret = |pw: &str| {
            Change::Secret(Event::Apply(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": "tor-md5", "namespace": "barelb-system"},
                    "stringData": {},
                    "data": {"password": k8s_openapi::ByteString(pw.as_bytes().to_vec())}
                }))
                .unwrap(),
            ))
        };
        for pw in ["first", "rotated"] {
            let mut touched = Touched::default();
            index.apply(secret(pw), &mut touched);
            assert!(touched.peers, "a password Secret change must replan peers");
            let configs = peer_configs(&index, "barelb-system");
            assert_eq!(configs["tor"].password, pw.as_bytes());
        }
        // A Secret no peer names touches nothing.
        let mut touched = Touched::default();
        index.apply(
            Change::Secret(Event::Apply(
                serde_json::from_value(serde_json::json!({"metadata": {"name": "other"}})).unwrap(),
            )),
            &mut touched,
        );
        assert!(!touched.peers);
    }

    /// Each L2 Service's addresses → the one node its Announced condition
    /// names; nothing for a Service not announced or on a BGP pool.
    #[test]
    fn last_owners_are_read_from_the_announced_conditions_of_l2_services() {
        use crate::index::{Change, Touched};
        use kube::runtime::watcher::Event;
        let class = ClassPolicy {
            class: "test.barelb.io/lb".into(),
            handle_classless: false,
        };
        let mut index = Index::default();
        let mut touched = Touched::default();
        for (name, cidr, mode) in [
            ("l2", "198.51.100.0/29", "L2"),
            ("bgp", "203.0.113.0/29", "BGP"),
        ] {
            let pool = serde_json::from_value(serde_json::json!({
                "apiVersion": "barelb.io/v1alpha1", "kind": "AddressPool",
                "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"addresses": [cidr], "announce": {"mode": mode}}
            }))
            .unwrap();
            index.apply(
                Change::Pool(Event::Apply(kube::core::DeserializeGuard(Ok(pool)))),
                &mut touched,
            );
        }
        let service = |name: &str, ips: &[&str], status: &str, message: &str| {
            let ingress: Vec<_> = ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
            Change::Service(Event::Apply(
                serde_json::from_value(serde_json::json!({
                    "metadata": {"namespace": "app", "name": name},
                    "spec": {"type": "LoadBalancer", "loadBalancerClass": "test.barelb.io/lb"},
                    "status": {"loadBalancer": {"ingress": ingress}, "conditions": [{
                        "type": barelb_api::conditions::ANNOUNCED, "status": status,
                        "reason": "Announced", "message": message,
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
                }))
                .unwrap(),
            ))
        };
        for c in [
            service(
                "dual",
                &["198.51.100.1", "198.51.100.2"],
                "True",
                "announced by node n1 over ARP/NDP",
            ),
            service(
                "pending",
                &["198.51.100.3"],
                "False",
                "not announced: no eligible node has a connected speaker",
            ),
            service(
                "routed",
                &["203.0.113.1"],
                "True",
                "announced by nodes n1, n2 over BGP",
            ),
        ] {
            index.apply(c, &mut touched);
        }
        let owners = last_owners(&index, &class);
        let expected: BTreeMap<IpAddr, String> = [
            ("198.51.100.1".parse().unwrap(), "n1".to_string()),
            ("198.51.100.2".parse().unwrap(), "n1".to_string()),
        ]
        .into();
        assert_eq!(owners, expected);
        // What a new leader's condition writer starts from: the same text.
        let current = crate::status::announced::current(&index, &class);
        assert_eq!(current.len(), 3);
        let routed = current
            .values()
            .find(|a| a.message.contains("BGP"))
            .unwrap();
        assert_eq!(routed.nodes.len(), 2);
        assert!(
            current
                .values()
                .any(|a| a.nodes.is_empty() && a.message.starts_with("not announced"))
        );
    }

    /// A Service whose deletion has begun is withdrawn at once; an address
    /// it shares with a live Service stays announced for that one.
    #[test]
    fn a_deleting_service_is_not_planned() {
        use crate::index::{Change, Touched};
        use kube::runtime::watcher::Event;
        let class = ClassPolicy::default();
        let mut index = Index::default();
        let mut touched = Touched::default();
        let pool = serde_json::from_value(serde_json::json!({
            "apiVersion": "barelb.io/v1alpha1", "kind": "AddressPool",
            "metadata": {"name": "bgp", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"addresses": ["203.0.113.0/29"], "announce": {"mode": "BGP"}}
        }))
        .unwrap();
        index.apply(
            Change::Pool(Event::Apply(kube::core::DeserializeGuard(Ok(pool)))),
            &mut touched,
        );
        for (name, ip, deleting) in [
            ("kept", "203.0.113.1", false),
            ("going", "203.0.113.2", true),
            ("shared-going", "203.0.113.3", true),
            ("shared-kept", "203.0.113.3", false),
        ] {
            let deletion = deleting.then_some("2026-01-02T00:00:00Z");
            let svc = serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "app", "name": name, "deletionTimestamp": deletion,
                             "finalizers": ["service.kubernetes.io/load-balancer-cleanup"]},
                "spec": {"type": "LoadBalancer"},
                "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}
            }))
            .unwrap();
            index.apply(Change::Service(Event::Apply(svc)), &mut touched);
        }
        let planned: Vec<String> = units(&index, &class)
            .iter()
            .flat_map(|u| u.ips.iter().map(ToString::to_string))
            .collect();
        assert_eq!(planned, ["203.0.113.1", "203.0.113.3"]);
    }
}
