//! The control channel end to end: the real apiserver, the operator as a
//! process serving barelb.control.v1 (on a Unix socket reached from the
//! node namespaces through a relay), speakers as processes in node
//! namespaces with pod-bound ServiceAccount tokens, and a client namespace
//! that asks ARP who has the Service's address.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::time::{Duration, Instant};

use barelb_testsupport::lab::output_text;
use barelb_testsupport::netlab::{Host, Process, Topology};
use common::Instance;
use serde_json::json;

const RELAY_PORT: &str = "9444";

struct Cluster {
    inst: Instance,
    topo: Topology,
    op: common::Operator,
    _relay: Process,
    dir: std::path::PathBuf,
    op_ns: String,
    ca: std::path::PathBuf,
}

impl Cluster {
    fn node_name(&self, role: &str) -> String {
        format!("{}-{role}", self.inst.id)
    }

    /// A Node object (Ready) and a speaker Pod bound to it; returns a
    /// token for that pod (audience barelb-control).
    fn register_node(&mut self, role: &str) -> std::path::PathBuf {
        let node = self.node_name(role);
        let lab = self.inst.lab.clone();
        let out = lab.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels: {{barelb.io/test: {}}}\n",
            self.inst.id
        ));
        assert!(out.status.success(), "{}", output_text(&out));
        self.inst.guard("node", &node);
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
            "reason": "KubeletReady", "message": "lab", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let out = lab.kubectl(&[
            "patch",
            "node",
            &node,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
        assert!(out.status.success(), "{}", output_text(&out));
        let pod = format!("speaker-{role}");
        let out = lab.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\nspec:\n  nodeName: {node}\n  serviceAccountName: barelb-speaker\n  containers: [{{name: speaker, image: barelb-speaker}}]\n",
            ns = self.op_ns
        ));
        assert!(out.status.success(), "{}", output_text(&out));
        self.token_for(&pod, role)
    }

    fn token_for(&self, pod: &str, tag: &str) -> std::path::PathBuf {
        let out = self.inst.lab.kubectl(&[
            "create",
            "token",
            "barelb-speaker",
            "-n",
            &self.op_ns,
            "--audience",
            "barelb-control",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            pod,
            "--duration",
            "1h",
        ]);
        assert!(out.status.success(), "{}", output_text(&out));
        let path = self.dir.join(format!("token-{tag}"));
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }

    fn speaker(
        &self,
        role: &str,
        node: &str,
        token: &std::path::Path,
    ) -> (Process, std::path::PathBuf) {
        let host = self.topo.host(role);
        let relay = self.topo.host("relay").ipv4;
        let log = self.dir.join(format!("speaker-{role}-{node}.log"));
        let bin = barelb_testsupport::binary("barelb-speaker");
        let p = host
            .ns
            .spawn_logged(
                &[
                    bin.to_str().unwrap(),
                    "run",
                    "--operator",
                    &format!("https://{relay}:{RELAY_PORT}"),
                    "--node",
                    node,
                    "--token-file",
                    token.to_str().unwrap(),
                    "--ca-file",
                    self.ca.to_str().unwrap(),
                    "--interface",
                    &host.ifname,
                    "--announce-interval-ms",
                    "100",
                ],
                &log,
            )
            .unwrap();
        (p, log)
    }
}

async fn cluster(test: &str, roles: &[&str]) -> Cluster {
    let mut inst = Instance::new(test).await;
    let mut all = roles.to_vec();
    all.extend(["client", "relay"]);
    let topo = Topology::build(&all).unwrap();
    let dir = barelb_testsupport::lab::lab_dir()
        .join("control")
        .join(&inst.id);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("control.sock");
    let op_ns = format!("{}-op", inst.id);
    let out = inst.lab.kubectl(&["create", "namespace", &op_ns]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = inst
        .lab
        .kubectl(&["create", "serviceaccount", "barelb-speaker", "-n", &op_ns]);
    assert!(out.status.success(), "{}", output_text(&out));
    let op = inst.operator(&[
        "--control-addr",
        &format!("unix:{}", sock.display()),
        "--speaker-service-account",
        &format!("{op_ns}/barelb-speaker"),
    ]);
    // The operator publishes its control CA; speakers trust it.
    let ca = dir.join("ca.crt");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = inst.lab.kubectl(&[
            "get",
            "configmap",
            "barelb-control-ca",
            "-n",
            &op_ns,
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ]);
        if out.status.success() && !out.stdout.is_empty() && sock.exists() {
            std::fs::write(&ca, &out.stdout).unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no control CA / socket:\n{}",
            op.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let relay_host = topo.host("relay");
    let relay = relay_host
        .ns
        .spawn_logged(
            &[
                barelb_testsupport::binary("lab-relay").to_str().unwrap(),
                &format!("{}:{RELAY_PORT}", relay_host.ipv4),
                sock.to_str().unwrap(),
            ],
            &dir.join("relay.log"),
        )
        .unwrap();
    Cluster {
        inst,
        topo,
        op,
        _relay: relay,
        dir,
        op_ns,
        ca,
    }
}

/// MACs that answer ARP for `ip` from `client`.
fn arp_answers(client: &Host, ip: &str) -> Vec<String> {
    let out = client
        .ns
        .exec_output(&["arping", "-c1", "-w1", "-I", &client.ifname, ip])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .to_lowercase()
        .lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
        .collect()
}

fn neigh_mac(client: &Host, ip: &str) -> Option<String> {
    let out = client.ns.ip(&["-j", "neigh", "show", ip]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v.get(0)?["lladdr"].as_str().map(str::to_lowercase)
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {within:?}");
}

/// A Service (no selector) with a ready endpoint on `node`.
async fn service_with_endpoint(c: &mut Cluster, name: &str, node: &str) -> String {
    c.inst.service(name, json!({}), json!({})).await;
    let out = c.inst.lab.apply(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nendpoints:\n- addresses: [\"10.244.0.10\"]\n  nodeName: {node}\n  conditions: {{ready: true}}\nports: [{{port: 80, protocol: TCP}}]\n",
        ns = c.inst.ns
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    c.inst.wait_ips(name, 1).await[0].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_planned_node_alone_answers_and_a_killed_speakers_address_moves() {
    let mut c = cluster("control-failover", &["node-a", "node-b"]).await;
    c.inst.pool(
        "l2",
        "{addresses: [198.18.0.200-198.18.0.220], announce: {mode: L2}}",
    );
    let ta = c.register_node("node-a");
    let tb = c.register_node("node-b");
    let (na, nb) = (c.node_name("node-a"), c.node_name("node-b"));
    let (mut pa, log_a) = c.speaker("node-a", &na, &ta);
    let (mut pb, log_b) = c.speaker("node-b", &nb, &tb);
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
    let _ = (log_a, log_b);
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

/// Two speakers and a Service; returns (cluster, vip, owner MAC, other MAC,
/// owner role, speakers).
async fn two_nodes_and_a_service(
    test: &str,
) -> (Cluster, String, String, String, &'static str, Vec<Process>) {
    let mut c = cluster(test, &["node-a", "node-b"]).await;
    c.inst.pool(
        "l2",
        "{addresses: [198.18.0.200-198.18.0.220], announce: {mode: L2}}",
    );
    let ta = c.register_node("node-a");
    let tb = c.register_node("node-b");
    let (na, nb) = (c.node_name("node-a"), c.node_name("node-b"));
    let (pa, _) = c.speaker("node-a", &na, &ta);
    let (pb, _) = c.speaker("node-b", &nb, &tb);
    let vip = service_with_endpoint(&mut c, "web", &na).await;
    let client = c.topo.host("client");
    let (ma, mb) = (
        c.topo.host("node-a").mac.to_lowercase(),
        c.topo.host("node-b").mac.to_lowercase(),
    );
    let mut owner = String::new();
    wait_until("an ARP answer", Duration::from_secs(20), || {
        let a = arp_answers(client, &vip);
        if a.len() == 1 {
            owner = a[0].clone();
            true
        } else {
            false
        }
    });
    let _ = client.ns.exec_output(&["ping", "-c1", "-W1", &vip]);
    wait_until("client neighbour entry", Duration::from_secs(5), || {
        neigh_mac(client, &vip).as_deref() == Some(owner.as_str())
    });
    let (other, role) = if owner == ma {
        (mb, "node-a")
    } else {
        (ma, "node-b")
    };
    (c, vip, owner, other, role, vec![pa, pb])
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
    let (mut c, vip, owner, _other, _role, _speakers) =
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
    let sock = c.dir.join("control.sock");
    let op_ns = c.op_ns.clone();
    let op2 = c.inst.operator(&[
        "--control-addr",
        &format!("unix:{}", sock.display()),
        "--speaker-service-account",
        &format!("{op_ns}/barelb-speaker"),
    ]);
    wait_until("both speakers reconnect", Duration::from_secs(30), || {
        op2.log_text().matches("speaker connected").count() >= 2
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(arp_answers(client, &vip), std::slice::from_ref(&owner));
    assert!(
        !op2.log_text().contains("announcement moved"),
        "{}",
        op2.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn local_traffic_policy_announces_from_the_endpoints_node_and_follows_it() {
    let mut c = cluster("control-local", &["node-a", "node-b"]).await;
    c.inst.pool(
        "l2",
        "{addresses: [198.18.0.200-198.18.0.220], announce: {mode: L2}}",
    );
    let ta = c.register_node("node-a");
    let tb = c.register_node("node-b");
    let (na, nb) = (c.node_name("node-a"), c.node_name("node-b"));
    let _pa = c.speaker("node-a", &na, &ta);
    let _pb = c.speaker("node-b", &nb, &tb);
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

/// The three faults the failover benchmark times.
#[derive(Clone, Copy, Debug)]
enum Fault {
    SpeakerKilled,
    Blackholed,
    InterfaceDown,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Benchmark (scripts/bench-failover): fault → client neighbour entry
/// flipped, RUNS times per fault; prints p50/p99.
async fn bench_fault(fault: Fault, runs: usize) {
    let (c, vip, owner, other, role, mut speakers) =
        two_nodes_and_a_service(&format!("bench-{fault:?}").to_lowercase()).await;
    let client = c.topo.host("client");
    let node = c.topo.host(role);
    let relay = c.topo.host("relay");
    let idx = if role == "node-a" { 0 } else { 1 };
    let token = c.dir.join(format!("token-{role}"));
    let mut times = Vec::new();
    for run in 0..runs {
        assert_eq!(
            neigh_mac(client, &vip).as_deref(),
            Some(owner.as_str()),
            "run {run}"
        );
        let t = Instant::now();
        match fault {
            Fault::SpeakerKilled => speakers[idx].kill(),
            Fault::Blackholed => {
                for (h, peer) in [(node, relay), (relay, node)] {
                    h.ns.ip(&[
                        "neigh",
                        "replace",
                        &peer.ipv4.to_string(),
                        "lladdr",
                        "02:00:00:00:00:99",
                        "dev",
                        &h.ifname,
                        "nud",
                        "permanent",
                    ])
                    .unwrap();
                }
            }
            Fault::InterfaceDown => {
                node.ns.ip(&["link", "set", &node.ifname, "down"]).unwrap();
            }
        }
        let deadline = t + Duration::from_secs(10);
        while neigh_mac(client, &vip).as_deref() != Some(other.as_str()) {
            assert!(Instant::now() < deadline, "run {run}: no flip");
            std::thread::sleep(Duration::from_millis(2));
        }
        times.push(t.elapsed());
        // Repair; the address comes back to its rendezvous owner.
        match fault {
            Fault::SpeakerKilled => {
                let name = c.node_name(role);
                speakers[idx] = c.speaker(role, &name, &token).0;
            }
            Fault::Blackholed => {
                for (h, peer) in [(node, relay), (relay, node)] {
                    h.ns.ip(&["neigh", "del", &peer.ipv4.to_string(), "dev", &h.ifname])
                        .unwrap();
                }
            }
            Fault::InterfaceDown => {
                node.ns.ip(&["link", "set", &node.ifname, "up"]).unwrap();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while neigh_mac(client, &vip).as_deref() != Some(owner.as_str()) {
            assert!(Instant::now() < deadline, "run {run}: no failback");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the returning node's announcements settle before the next fault.
        std::thread::sleep(Duration::from_millis(1500));
    }
    times.sort();
    println!(
        "BENCH failover {fault:?}: runs {runs}, p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms",
        percentile(&times, 0.5).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0,
    );
}

fn bench_runs() -> usize {
    std::env::var("BARELB_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: scripts/bench-failover"]
async fn bench_failover_speaker_killed() {
    bench_fault(Fault::SpeakerKilled, bench_runs()).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: scripts/bench-failover"]
async fn bench_failover_blackholed() {
    bench_fault(Fault::Blackholed, bench_runs()).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: scripts/bench-failover"]
async fn bench_failover_interface_down() {
    bench_fault(Fault::InterfaceDown, bench_runs()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bgp_pools_address_reaches_bird_from_every_eligible_node() {
    use barelb_testsupport::routers::{Kind, Neighbor, Router};
    let mut c = cluster("control-bgp", &["node-a", "node-b", "router"]).await;
    let id = c.inst.id.clone();
    let rh_ip = c.topo.host("router").ipv4;
    let node_ips = [c.topo.host("node-a").ipv4, c.topo.host("node-b").ipv4];
    let router = Router::start(
        Kind::Bird,
        c.topo.host("router"),
        64501,
        node_ips
            .iter()
            .map(|ip| Neighbor {
                addr: std::net::IpAddr::V4(*ip),
                asn: 64500,
                password: None,
            })
            .collect(),
    )
    .unwrap();
    let peer = format!("{id}-tor");
    let out = c.inst.lab.apply(&format!(
        "apiVersion: barelb.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: {peer}\n  labels: {{barelb.io/test: {id}}}\nspec: {{peerAddress: \"{}\", peerASN: 64501, myASN: 64500, holdTime: 3s, connectRetryTime: 1s}}\n",
        rh_ip
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    c.inst.guard("bgppeer", &peer);
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
