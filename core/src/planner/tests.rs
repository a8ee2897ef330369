use super::*;

fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ready: true,
        connected: true,
        link_up: true,
    }
}

fn nodes(n: usize) -> Vec<Node> {
    (0..n).map(|i| node(&format!("node-{i}"), &[])).collect()
}

fn l2_unit(ips: &[&str], endpoints: &[&str], local: bool) -> Unit {
    Unit {
        ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        how: How::L2 {
            node_selector: None,
            interfaces: vec![],
        },
        local,
        has_ready_endpoints: !endpoints.is_empty(),
        endpoint_nodes: endpoints.iter().map(|s| s.to_string()).collect(),
    }
}

fn many(n: u32) -> Vec<Unit> {
    (0..n)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0xc633_6400 + i).to_string();
            l2_unit(&[&ip], &["node-0"], false)
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn every_l2_address_has_exactly_one_owner_and_owners_are_balanced() {
    let units = many(1000);
    let p = plan(&units, &nodes(5), &[]);
    assert_eq!(p.l2.len(), 1000);
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for o in p.l2.values() {
        *per.entry(o.node.as_str()).or_default() += 1;
    }
    assert_eq!(per.len(), 5);
    for (n, c) in per {
        assert!((150..=250).contains(&c), "{n} owns {c} of 1000");
    }
}

#[test]
fn a_node_leaving_moves_only_its_addresses_and_joining_takes_only_what_it_gains() {
    let units = many(1000);
    let five = nodes(5);
    let before = plan(&units, &five, &[]);
    let mut four = five.clone();
    four[2].connected = false;
    let after = plan(&units, &four, &[]);
    for (ip, o) in &before.l2 {
        if o.node != "node-2" {
            assert_eq!(after.l2[ip].node, o.node, "{ip} moved without cause");
        } else {
            assert_ne!(after.l2[ip].node, "node-2");
        }
    }
    let mut six = five.clone();
    six.push(node("node-5", &[]));
    let grown = plan(&units, &six, &[]);
    let mut gained = 0;
    for (ip, o) in &before.l2 {
        if grown.l2[ip].node != o.node {
            assert_eq!(grown.l2[ip].node, "node-5", "{ip} moved between old nodes");
            gained += 1;
        }
    }
    assert!((100..=250).contains(&gained), "node-5 gained {gained}");
}

#[test]
fn the_plan_does_not_depend_on_input_order() {
    let units = many(200);
    let mut ns = nodes(4);
    let a = plan(&units, &ns, &[]);
    ns.reverse();
    let mut rev = units.clone();
    rev.reverse();
    assert_eq!(plan(&rev, &ns, &[]), a);
}

#[test]
fn shared_addresses_move_as_one_unit() {
    let u = l2_unit(&["198.51.100.1", "2001:db8::1"], &["node-0"], false);
    let p = plan(&[u], &nodes(7), &[]);
    assert_eq!(
        p.l2[&ip("198.51.100.1")].node,
        p.l2[&ip("2001:db8::1")].node
    );
}

#[test]
fn ineligible_nodes_never_announce() {
    let mut ns = nodes(4);
    ns[0].ready = false;
    ns[1].link_up = false;
    ns[2].labels.insert(EXCLUDE_LABEL.into(), String::new());
    let p = plan(&many(50), &ns, &[]);
    assert!(p.l2.values().all(|o| o.node == "node-3"));
    ns[3].connected = false;
    assert!(plan(&many(50), &ns, &[]).l2.is_empty());
}

#[test]
fn local_policy_announces_only_from_nodes_with_endpoints() {
    let u = l2_unit(&["198.51.100.9"], &["node-4", "node-6"], true);
    let p = plan(std::slice::from_ref(&u), &nodes(8), &[]);
    let owner = &p.l2[&ip("198.51.100.9")].node;
    assert!(owner == "node-4" || owner == "node-6", "{owner}");
    // Moving the endpoints moves the announcement.
    let moved = Unit {
        endpoint_nodes: ["node-1".to_string()].into(),
        ..u
    };
    assert_eq!(
        plan(&[moved], &nodes(8), &[]).l2[&ip("198.51.100.9")].node,
        "node-1"
    );
}

#[test]
fn no_ready_endpoint_means_no_announcement() {
    let u = l2_unit(&["198.51.100.9"], &[], false);
    assert!(plan(&[u], &nodes(3), &[]).l2.is_empty());
}

#[test]
fn node_selector_limits_layer_2_owners() {
    let mut ns = nodes(4);
    ns[3].labels.insert("edge".into(), "true".into());
    let mut u = l2_unit(&["198.51.100.9"], &["node-0"], false);
    u.how = How::L2 {
        node_selector: Some(LabelSelector {
            match_labels: Some([("edge".to_string(), "true".to_string())].into()),
            match_expressions: None,
        }),
        interfaces: vec!["eth1".into()],
    };
    let p = plan(&[u], &ns, &[]);
    assert_eq!(
        p.l2[&ip("198.51.100.9")],
        L2Owner {
            node: "node-3".into(),
            interfaces: vec!["eth1".into()],
            standby: None,
        }
    );
    assert_eq!(p.for_node("node-3").l2.len(), 1);
    assert!(p.for_node("node-0").l2.is_empty());
}

#[test]
fn the_standby_is_the_owner_were_the_owner_gone() {
    let units = many(200);
    let ns = nodes(5);
    let p = plan(&units, &ns, &[]);
    let mut standing_by = BTreeMap::<String, usize>::new();
    for (ip, o) in &p.l2 {
        let standby = o.standby.clone().expect("five nodes: a runner-up");
        assert_ne!(standby, o.node);
        let without: Vec<Node> = ns.iter().filter(|n| n.name != o.node).cloned().collect();
        assert_eq!(plan(&units, &without, &[]).l2[ip].node, standby);
        *standing_by.entry(standby).or_default() += 1;
    }
    assert_eq!(standing_by.len(), 5, "standbys spread over every node");
    let only = plan(&units, &nodes(1), &[]);
    assert!(
        only.l2.values().all(|o| o.standby.is_none()),
        "nobody else may"
    );
}

#[test]
fn a_node_is_told_what_it_stands_by_for() {
    let unit = l2_unit(&["198.51.100.9"], &["node-0"], false);
    let p2 = plan(&[unit], &nodes(3), &[]);
    let o = &p2.l2[&ip("198.51.100.9")];
    let standby = o.standby.clone().unwrap();
    let part = p2.for_node(&standby);
    assert!(part.l2.is_empty());
    assert_eq!(part.l2_standby[&ip("198.51.100.9")].owner, o.node);
    assert!(p2.for_node(&o.node).l2_standby.is_empty());
}

#[test]
fn bgp_announces_from_every_eligible_node_to_the_selected_peers() {
    let mut ns = nodes(3);
    ns[0].labels.insert("rack".into(), "a".into());
    ns[1].labels.insert("rack".into(), "b".into());
    let sel = |k: &str, v: &str| {
        Some(LabelSelector {
            match_labels: Some([(k.to_string(), v.to_string())].into()),
            match_expressions: None,
        })
    };
    let peers = vec![
        Peer {
            name: "tor-a".into(),
            labels: [("role".to_string(), "tor".to_string())].into(),
            node_selector: sel("rack", "a"),
        },
        Peer {
            name: "tor-b".into(),
            labels: [("role".to_string(), "tor".to_string())].into(),
            node_selector: sel("rack", "b"),
        },
        Peer {
            name: "lab".into(),
            labels: BTreeMap::new(),
            node_selector: None,
        },
    ];
    let u = Unit {
        how: How::Bgp {
            node_selector: None,
            peer_selector: sel("role", "tor"),
            attrs: BgpAttrs {
                communities: vec!["64500:10".into()],
                ..BgpAttrs::default()
            },
        },
        ..l2_unit(&["198.51.100.20"], &["node-2"], false)
    };
    let p = plan(std::slice::from_ref(&u), &ns, &peers);
    let a = &p.bgp[&ip("198.51.100.20")];
    // node-2 is in no rack: no selected peer wants it.
    assert_eq!(
        a.nodes,
        BTreeMap::from([
            ("node-0".to_string(), vec!["tor-a".to_string()]),
            ("node-1".to_string(), vec!["tor-b".to_string()]),
        ])
    );
    assert_eq!(p.announcers(&ip("198.51.100.20")), ["node-0", "node-1"]);
    // Local: only the endpoint's node.
    let local = Unit { local: true, ..u };
    let p = plan(&[local], &ns, &peers);
    assert!(p.bgp.is_empty(), "node-2 has the endpoint but no peer");
}

#[test]
fn by_node_gives_every_node_what_for_node_gives_it() {
    let mut units = many(200);
    units.push(Unit {
        how: How::Bgp {
            node_selector: None,
            peer_selector: None,
            attrs: BgpAttrs::default(),
        },
        ..l2_unit(&["203.0.113.1", "2001:db8::1"], &["node-1"], false)
    });
    let peers = [Peer {
        name: "tor".into(),
        labels: BTreeMap::new(),
        node_selector: None,
    }];
    let ns = nodes(7);
    let p = plan(&units, &ns, &peers);
    let parts = p.by_node();
    for n in &ns {
        let part = parts.get(&n.name).cloned().unwrap_or_default();
        assert_eq!(part, p.for_node(&n.name), "{}", n.name);
        assert_eq!(part.bgp.len(), 2, "{}", n.name);
    }
    assert!(parts.keys().all(|k| ns.iter().any(|n| &n.name == k)));
}

#[test]
fn rendezvous_scores_are_fixed_across_versions() {
    // Replicas and restarts must agree on owners; a changed hash function
    // would move every address on upgrade. Pinned values catch that.
    assert_eq!(
        rendezvous_score("198.51.100.1", "node-a"),
        0x7743_ecd0_5ec5_bae1
    );
    assert_eq!(
        rendezvous_score("198.51.100.1", "node-b"),
        0x3607_f5d4_fb1c_c31f
    );
}

mod incremental {
    use super::*;
    use proptest::prelude::*;

    fn edge() -> Option<LabelSelector> {
        Some(LabelSelector {
            match_labels: Some([("edge".to_string(), "true".to_string())].into()),
            match_expressions: None,
        })
    }

    prop_compose! {
        fn arb_unit(nodes: usize)(
            i in 0u32..10_000, bgp in any::<bool>(), selective in any::<bool>(),
            local in any::<bool>(), ready in prop::bool::weighted(0.9),
            eps in prop::collection::btree_set(0..nodes, 0..3),
        ) -> Unit {
            let ip = std::net::Ipv4Addr::from(0xc633_0000 + i).to_string();
            let endpoints: Vec<String> = eps.iter().map(|e| format!("node-{e}")).collect();
            let refs: Vec<&str> = endpoints.iter().map(String::as_str).collect();
            let mut u = l2_unit(&[&ip], &refs, local);
            u.has_ready_endpoints = ready;
            let node_selector = if selective { edge() } else { None };
            u.how = if bgp {
                How::Bgp { node_selector, peer_selector: None, attrs: BgpAttrs::default() }
            } else {
                How::L2 { node_selector, interfaces: vec![] }
            };
            u
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Replanning after connect/disconnect/link/Ready changes gives
        /// exactly the full plan, step after step.
        #[test]
        fn replanning_node_changes_equals_planning_from_scratch(
            edges in prop::collection::vec(any::<bool>(), 6),
            units in prop::collection::vec(arb_unit(6), 1..40),
            steps in prop::collection::vec((0usize..6, 0u8..3), 1..12),
        ) {
            // Units' addresses are disjoint (announce.rs merges Services
            // that share one into a single unit).
            let mut taken = BTreeSet::new();
            let units: Vec<Unit> =
                units.into_iter().filter(|u| u.ips.iter().all(|ip| taken.insert(*ip))).collect();
            let peers = [Peer { name: "tor".into(), labels: BTreeMap::new(), node_selector: None }];
            let mut ns: Vec<Node> = (0..6)
                .map(|i| {
                    let labels: &[(&str, &str)] = if edges[i] { &[("edge", "true")] } else { &[] };
                    node(&format!("node-{i}"), labels)
                })
                .collect();
            let mut prev = plan(&units, &ns, &peers);
            for (i, what) in steps {
                let before = ns.clone();
                match what {
                    0 => ns[i].connected = !ns[i].connected,
                    1 => ns[i].link_up = !ns[i].link_up,
                    _ => ns[i].ready = !ns[i].ready,
                }
                let next = replan_nodes(&prev, &before, &units, &ns, &peers);
                prop_assert_eq!(&next, &plan(&units, &ns, &peers));
                prev = next;
            }
        }
    }

    #[test]
    fn a_label_change_falls_back_to_a_full_plan() {
        let units = many(100);
        let before = nodes(3);
        let prev = plan(&units, &before, &[]);
        let mut after = before.clone();
        after[1].labels.insert(EXCLUDE_LABEL.into(), String::new());
        assert_eq!(
            replan_nodes(&prev, &before, &units, &after, &[]),
            plan(&units, &after, &[])
        );
    }
}
