//! The control channel end to end: the real apiserver, the operator as a
//! process serving barelb.control.v1 (on a Unix socket reached from the
//! node namespaces through a relay), speakers as processes in node
//! namespaces with pod-bound ServiceAccount tokens, and a client namespace
//! that asks ARP who has the Service's address.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use barelb_testsupport::lab::output_text;
use barelb_testsupport::routers::{BfdTimers, Kind, Neighbor, Router, RouterOptions};
use common::control::{
    Cluster, arp_answers, cluster, l2_pair, neigh_mac, service_with_endpoint,
    two_nodes_and_a_service, wait_until,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_planned_node_alone_answers_and_a_killed_speakers_address_moves() {
    let (mut c, na, nb, mut pa, mut pb) = l2_pair("control-failover").await;
    let vip = service_with_endpoint(&mut c, "web", &na).await;
    let client = c.topo.host("client");
    let macs = [
        c.topo.host("node-a").mac.to_lowercase(),
        c.topo.host("node-b").mac.to_lowercase(),
    ];
    // Exactly one node answers, and keeps being the only one.
    let mut owner = String::new();
    wait_until(
        "an ARP answer for the Service address",
        Duration::from_secs(20),
        || {
            let a = arp_answers(client, &vip);
            if a.len() == 1 && macs.contains(&a[0]) {
                owner = a[0].clone();
                true
            } else {
                false
            }
        },
    );
    for _ in 0..3 {
        assert_eq!(
            arp_answers(client, &vip),
            [owner.clone()],
            "one answer, same node"
        );
    }
    // The client learns the owner (one packet to the VIP fills its neighbour table).
    let _ = client.ns.exec_output(&["ping", "-c1", "-W1", &vip]);
    wait_until("client neighbour entry", Duration::from_secs(5), || {
        neigh_mac(client, &vip).as_deref() == Some(owner.as_str())
    });
    // Kill the owner's speaker: the other node takes over and the client's entry flips.
    let other = macs.iter().find(|m| **m != owner).unwrap().clone();
    let t = Instant::now();
    if owner == macs[0] {
        pa.kill();
    } else {
        pb.kill();
    }
    wait_until(
        "neighbour entry flips to the other node",
        Duration::from_secs(5),
        || neigh_mac(client, &vip).as_deref() == Some(other.as_str()),
    );
    let took = t.elapsed();
    eprintln!("failover (speaker killed → client neighbour entry flipped): {took:?}");
    assert_eq!(arp_answers(client, &vip), [other]);
    let log = c.op.log_text();
    assert!(log.contains("announcement moved"), "{log}");
    // The Service says who announces it now, and one event names the move.
    let new_node = if owner == macs[0] { &nb } else { &na };
    let want = format!("announced by node {new_node} over ARP/NDP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let svc = c.inst.get("web").await;
        let msg = svc
            .status
            .and_then(|s| s.conditions)
            .and_then(|cs| cs.into_iter().find(|c| c.type_ == "barelb.io/Announced"))
            .map(|c| (c.status, c.message));
        if msg == Some(("True".into(), want.clone())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Announced condition: {msg:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let moves: Vec<_> = c
            .inst
            .events("web")
            .into_iter()
            .filter(|(r, _)| r == "AnnouncingNodeChanged")
            .collect();
        if moves.len() == 1 {
            assert_eq!(moves[0].1, want);
            break;
        }
        assert!(moves.len() < 2, "one event per move: {moves:?}");
        assert!(Instant::now() < deadline, "no AnnouncingNodeChanged event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two speakers for one node (a restart overlapping its predecessor, a
/// DaemonSet surge): the later-started keeps the stream, the earlier stops
/// announcing and stays refused (no ping-pong) until the later one goes.
#[tokio::test(flavor = "multi_thread")]
async fn a_later_started_speaker_for_the_same_node_supersedes_the_earlier() {
    let (mut c, na, _nb, _pa, _pb) = l2_pair("control-succession").await;
    let vip = service_with_endpoint(&mut c, "web", &na).await;
    let client = c.topo.host("client");
    let mut owner = String::new();
    wait_until("an ARP answer", Duration::from_secs(20), || {
        let a = arp_answers(client, &vip);
        owner = a.first().cloned().unwrap_or_default();
        a.len() == 1
    });
    let role = if owner == c.topo.host("node-a").mac.to_lowercase() {
        "node-a"
    } else {
        "node-b"
    };
    let node = c.node_name(role);
    let first_log = c.dir.join(format!("speaker-{role}-{node}.log"));
    let token = c.token_for(&format!("speaker-{role}"), "succession");
    let (mut later, later_log) = c.speaker(role, &node, &token);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    wait_until(
        "the earlier speaker steps aside",
        Duration::from_secs(15),
        || read(&first_log).contains("a later-started speaker serves this node"),
    );
    // The earlier asks again every 2 s and is refused each time: the later
    // one's stream is never taken back, and one node keeps answering.
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        assert_eq!(arp_answers(client, &vip), [owner.clone()]);
    }
    assert_eq!(
        read(&later_log).matches("control stream up").count(),
        1,
        "{}",
        read(&later_log)
    );
    assert!(
        c.op.log_text()
            .contains("a later-started speaker connected")
    );
    // The later one goes: the earlier is served again.
    later.kill();
    wait_until(
        "the earlier speaker is served again",
        Duration::from_secs(15),
        || read(&first_log).matches("control stream up").count() >= 2,
    );
    wait_until("one answer", Duration::from_secs(10), || {
        arp_answers(client, &vip).len() == 1
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_another_node_or_no_pod_is_refused() {
    let mut c = cluster("control-auth", &["node-a", "node-b"]).await;
    let ta = c.register_node("node-a");
    let _tb = c.register_node("node-b");
    let nb = c.node_name("node-b");
    // node-a's token presented as node-b.
    let (mut p, log) = c.speaker("node-a", &nb, &ta);
    wait_until(
        "refusal logged by the speaker",
        Duration::from_secs(15),
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("not ")
        },
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("PermissionDenied") || text.contains("permission"),
        "{text}"
    );
    let oplog = c.op.log_text();
    assert!(
        oplog.contains("speaker refused") && oplog.contains("wrong-node"),
        "{oplog}"
    );
    p.kill();
    // Garbage token.
    let bad = c.dir.join("token-bad");
    std::fs::write(&bad, "not-a-token").unwrap();
    let (mut p, _) = c.speaker("node-b", &nb, &bad);
    wait_until("invalid token refused", Duration::from_secs(15), || {
        c.op.log_text().contains("invalid-token")
    });
    p.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silently_cut_node_loses_its_address_and_yields_it() {
    let (c, vip, _owner, other, role, _speakers) =
        two_nodes_and_a_service("control-blackhole").await;
    let client = c.topo.host("client");
    let node = c.topo.host(role);
    let relay = c.topo.host("relay");
    // Cut the owner off from the operator without any signal: both
    // directions to a MAC that does not exist (no RST, no FIN, no carrier loss).
    for (host, peer) in [(node, relay), (relay, node)] {
        host.ns
            .ip(&[
                "neigh",
                "replace",
                &peer.ipv4.to_string(),
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                &host.ifname,
                "nud",
                "permanent",
            ])
            .unwrap();
    }
    let t = Instant::now();
    wait_until(
        "neighbour entry flips to the other node",
        Duration::from_secs(5),
        || neigh_mac(client, &vip).as_deref() == Some(other.as_str()),
    );
    eprintln!(
        "failover (node silently cut off → client entry flipped): {:?}",
        t.elapsed()
    );
    // The cut-off speaker notices its dead stream and yields: no split brain.
    let mut streak = 0;
    wait_until(
        "only the new owner answers",
        Duration::from_secs(15),
        || {
            // arping may stop at the first reply: insist on a run of clean answers.
            streak = if arp_answers(client, &vip) == std::slice::from_ref(&other) {
                streak + 1
            } else {
                0
            };
            streak >= 3
        },
    );
    eprintln!("cut-off owner stopped answering after {:?}", t.elapsed());
    let log = c.op.log_text();
    let node_name = c.node_name(role);
    assert!(
        log.lines()
            .any(|l| l.contains("announcement moved") && l.contains(&format!("from={node_name}"))),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn addresses_keep_answering_while_the_operator_is_down_and_do_not_move_on_its_return() {
    let (mut c, vip, owner, _other, role, _speakers) =
        two_nodes_and_a_service("control-outage").await;
    let client = c.topo.host("client");
    c.op.kill();
    // Fail-static: 60 s without an operator, the owner keeps answering alone.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        assert_eq!(
            arp_answers(client, &vip),
            std::slice::from_ref(&owner),
            "after {:?} without the operator",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_secs(5));
    }
    // A new operator (a new leader) rebuilds the same plan: nothing moves.
    let op2 = c.start_operator();
    let client = c.topo.host("client");
    wait_until("both speakers reconnect", Duration::from_secs(30), || {
        op2.log_text().matches("speaker connected").count() >= 2
    });
    // Each speaker got back what it said it holds; once every speaker is
    // back the new leader settles and sends its own plan: from then on the
    // owner must still answer alone and the Service still name its node.
    wait_until(
        "the new leader settles and plans",
        Duration::from_secs(30),
        || op2.log_text().contains("settled: planning"),
    );
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(
            arp_answers(client, &vip),
            std::slice::from_ref(&owner),
            "after the new leader's plan:\n{}",
            op2.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let want = format!("announced by node {} over ARP/NDP", c.node_name(role));
    let announced = c
        .inst
        .get("web")
        .await
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "barelb.io/Announced"))
        .map(|c| c.message);
    assert_eq!(announced, Some(want));
}

#[tokio::test(flavor = "multi_thread")]
async fn local_traffic_policy_announces_from_the_endpoints_node_and_follows_it() {
    let (c, na, nb, _pa, _pb) = l2_pair("control-local").await;
    let client = c.topo.host("client");
    let (ma, mb) = (
        c.topo.host("node-a").mac.to_lowercase(),
        c.topo.host("node-b").mac.to_lowercase(),
    );
    for (round, (node, mac)) in [(&na, &ma), (&nb, &mb), (&na, &ma)].into_iter().enumerate() {
        if round == 0 {
            c.inst
                .service(
                    "local",
                    json!({"externalTrafficPolicy": "Local"}),
                    json!({}),
                )
                .await;
        }
        let out = c.inst.lab.apply(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: local-1\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: local}}\naddressType: IPv4\nendpoints:\n- addresses: [\"10.244.0.10\"]\n  nodeName: {node}\n  conditions: {{ready: true}}\nports: [{{port: 80, protocol: TCP}}]\n",
            ns = c.inst.ns
        ));
        assert!(out.status.success(), "{}", output_text(&out));
        let vip = c.inst.wait_ips("local", 1).await[0].to_string();
        let mut streak = 0;
        wait_until(
            &format!("only {node} answers (round {round})"),
            Duration::from_secs(20),
            || {
                streak = if arp_answers(client, &vip) == std::slice::from_ref(mac) {
                    streak + 1
                } else {
                    0
                };
                streak >= 2
            },
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interface_going_down_moves_its_addresses() {
    let (c, vip, _owner, other, role, _speakers) =
        two_nodes_and_a_service("control-linkdown").await;
    let client = c.topo.host("client");
    let node = c.topo.host(role);
    let t = Instant::now();
    node.ns.ip(&["link", "set", &node.ifname, "down"]).unwrap();
    wait_until(
        "neighbour entry flips after link down",
        Duration::from_secs(5),
        || neigh_mac(client, &vip).as_deref() == Some(other.as_str()),
    );
    eprintln!(
        "failover (interface down → client entry flipped): {:?}",
        t.elapsed()
    );
    assert_eq!(arp_answers(client, &vip), std::slice::from_ref(&other));
}

/// A BIRD router (AS 64501, `opts`) peering with node-a and node-b (AS
/// 64500), and a BGPPeer for it labelled with the test's id, whose spec
/// gets `spec` as well; returns the router and the nodes' addresses.
fn bird_and_peer(c: &mut Cluster, opts: RouterOptions, spec: &str) -> (Router, [Ipv4Addr; 2]) {
    let id = &c.inst.id;
    let rh_ip = c.topo.host("router").ipv4;
    let node_ips = [c.topo.host("node-a").ipv4, c.topo.host("node-b").ipv4];
    let neighbors = node_ips
        .iter()
        .map(|ip| Neighbor {
            addr: IpAddr::V4(*ip),
            asn: 64500,
            password: None,
        })
        .collect();
    let router =
        Router::start_with(Kind::Bird, c.topo.host("router"), 64501, neighbors, opts).unwrap();
    let peer = format!("{id}-tor");
    let out = c.inst.lab.apply(&format!(
        "apiVersion: barelb.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: {peer}\n  labels: {{barelb.io/test: {id}}}\nspec: {{peerAddress: \"{rh_ip}\", peerASN: 64501, myASN: 64500, {spec}}}\n"
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    c.inst.guard("bgppeer", &peer);
    (router, node_ips)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bgp_pools_address_reaches_bird_from_every_eligible_node() {
    let mut c = cluster("control-bgp", &["node-a", "node-b", "router"]).await;
    let id = c.inst.id.clone();
    let (router, node_ips) = bird_and_peer(
        &mut c,
        RouterOptions::default(),
        "holdTime: 3s, connectRetryTime: 1s",
    );
    c.inst.pool(
        "bgp",
        &format!("{{addresses: [203.0.113.10-203.0.113.20], announce: {{mode: BGP, bgp: {{peerSelector: {{matchLabels: {{barelb.io/test: {id}}}}}, communities: [\"64500:10\"]}}}}}}"),
    );
    let ta = c.register_node("node-a");
    let tb = c.register_node("node-b");
    let (na, nb) = (c.node_name("node-a"), c.node_name("node-b"));
    let (_pa, _) = c.speaker("node-a", &na, &ta);
    let (mut pb, _) = c.speaker("node-b", &nb, &tb);
    let vip = service_with_endpoint(&mut c, "web", &na).await;
    let prefix = format!("{vip}/32");
    let both: Vec<String> = {
        let mut v: Vec<String> = node_ips.iter().map(|ip| ip.to_string()).collect();
        v.sort();
        v
    };
    wait_until(
        "BIRD has the address from both nodes",
        Duration::from_secs(30),
        || router.next_hops(&prefix).unwrap_or_default() == both,
    );
    let r = &router.routes().unwrap()[&prefix];
    assert_eq!(r.as_path, [64500]);
    assert_eq!(r.communities, ["64500:10"]);
    // A node whose speaker dies stops being a next hop (its session drops
    // with it); the other keeps announcing.
    pb.kill();
    let a_only = vec![node_ips[0].to_string()];
    wait_until(
        "BIRD keeps only node-a's path",
        Duration::from_secs(15),
        || router.next_hops(&prefix).unwrap_or_default() == a_only,
    );
}

/// `bfd: {}` on a BGPPeer reaches the speakers through the operator: BIRD
/// runs BFD with each node, and a node whose speaker falls silent (frozen)
/// leaves BIRD's route within BFD's detection time, not the 90 s hold time.
#[tokio::test(flavor = "multi_thread")]
async fn a_bgp_peer_with_bfd_drops_a_silent_nodes_path_at_once() {
    let mut c = cluster("control-bfd", &["node-a", "node-b", "router"]).await;
    let id = c.inst.id.clone();
    let bfd = RouterOptions {
        bfd: Some(BfdTimers {
            interval_ms: 300,
            multiplier: 3,
        }),
        ..RouterOptions::default()
    };
    let (router, node_ips) =
        bird_and_peer(&mut c, bfd, "holdTime: 90s, connectRetryTime: 1s, bfd: {}");
    c.inst.pool(
        "bfd",
        &format!("{{addresses: [203.0.113.30-203.0.113.40], announce: {{mode: BGP, bgp: {{peerSelector: {{matchLabels: {{barelb.io/test: {id}}}}}}}}}}}"),
    );
    let ta = c.register_node("node-a");
    let tb = c.register_node("node-b");
    let (na, nb) = (c.node_name("node-a"), c.node_name("node-b"));
    let (_pa, _) = c.speaker("node-a", &na, &ta);
    let (pb, _) = c.speaker("node-b", &nb, &tb);
    let vip = service_with_endpoint(&mut c, "web", &na).await;
    let prefix = format!("{vip}/32");
    let mut both: Vec<String> = node_ips.iter().map(|ip| ip.to_string()).collect();
    both.sort();
    wait_until(
        "BIRD has the address from both nodes, BFD Up with each",
        Duration::from_secs(30),
        || {
            router.next_hops(&prefix).unwrap_or_default() == both
                && node_ips.iter().all(|ip| {
                    router
                        .bfd_session(IpAddr::V4(*ip))
                        .ok()
                        .flatten()
                        .is_some_and(|v| v.state == "Up")
                })
        },
    );
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pb.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    let silent = Instant::now();
    signal("-STOP");
    let a_only = vec![node_ips[0].to_string()];
    wait_until(
        "BIRD keeps only node-a's path",
        Duration::from_secs(5),
        || router.next_hops(&prefix).unwrap_or_default() == a_only,
    );
    eprintln!(
        "node-b silent → its path gone from BIRD in {} ms (hold time 90 s)",
        silent.elapsed().as_millis()
    );
    signal("-CONT");
}
