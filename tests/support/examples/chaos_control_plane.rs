//! `scripts/chaos-control-plane [MINUTES]`: barelb installed with Helm on
//! the 3-node lab cluster, an L2 and a BGP Service polled every 10 ms by a
//! client on the LAN; then two outages of MINUTES each (5; a quarter of a
//! minute in a smoke run):
//!
//! 1. the control plane (apiserver, etcd, controllers: the lab's one process)
//!    killed, and started again on its state;
//! 2. the operator's Deployment scaled to 0, and back to 2;
//! 3. the same, with the speaker of the node announcing the L2 address
//!    kept from the operator (its node rejects connections to the control
//!    port) until 10 s after the new leader has the other speakers back:
//!    longer than the leader's 5-s settle period, so the leader must wait
//!    for the speaker its Service's Announced condition names.
//!
//! Per outage it prints the requests lost and the longest gap per Service,
//! whether the L2 address's neighbour entry at the client changed, whether
//! either Service's address, announcers or the router's next hops changed,
//! and how long after the end of the outage the operator led again with
//! every speaker connected (counted from the end of the outage: the control
//! plane's start-up or the operator Pods' start included). A control row
//! with nothing stopped comes first. Fails on a lost request or anything
//! moved. The `un-NATed` column says whether a lost L2 request was one whose
//! SYN the announcing node routed without kube-proxy's DNAT (the node then
//! asks the LAN who has the address it announces): a stale conntrack entry,
//! which the harness now prevents (`Cluster::wait_programmed`,
//! docs/reliability.md) — such a loss fails the run like any other.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)] // a chaos binary

use std::time::{Duration, Instant};

use barelb_testsupport::capture::Capture;
use barelb_testsupport::chaos::{
    node_iptables, operator_pods, unix_seconds, wait_driving, wait_leading_with,
};
use barelb_testsupport::cluster::{Cluster, LanRouter, cluster};
use barelb_testsupport::install::*;

#[derive(Clone, Copy, Debug)]
enum Outage {
    /// The control row: the same run with nothing stopped.
    None,
    ControlPlane,
    OperatorScaledToZero,
    OperatorScaledToZeroSpeakerLate,
}

/// How long the late speaker stays away after the leader has the others.
const LATE: Duration = Duration::from_secs(10);

impl Outage {
    fn name(self) -> &'static str {
        match self {
            Outage::None => "none (control row)",
            Outage::ControlPlane => "control plane killed",
            Outage::OperatorScaledToZero => "operator scaled to 0",
            Outage::OperatorScaledToZeroSpeakerLate => "… one speaker 10 s late",
        }
    }

    /// Starts the outage; `announcer`: the node announcing the L2 address.
    fn begin(self, c: &Cluster, announcer: usize) -> Option<ControlPortRejected> {
        match self {
            Outage::None => None,
            Outage::ControlPlane => {
                c.control_plane("stop");
                None
            }
            Outage::OperatorScaledToZero => {
                scale_operator(c, 0);
                wait_no_operator(c);
                None
            }
            Outage::OperatorScaledToZeroSpeakerLate => {
                scale_operator(c, 0);
                wait_no_operator(c);
                Some(ControlPortRejected::new(c, announcer))
            }
        }
    }

    fn end(self, c: &Cluster, late: Option<ControlPortRejected>) {
        match self {
            Outage::None => {}
            Outage::ControlPlane => c.control_plane("start"),
            Outage::OperatorScaledToZero => scale_operator(c, 2),
            Outage::OperatorScaledToZeroSpeakerLate => {
                scale_operator(c, 2);
                wait_leading_with(c, c.nodes - 1, Duration::from_secs(300));
                std::thread::sleep(LATE);
                drop(late);
            }
        }
    }
}

/// Node `i` rejects its own connections to the control port (its speaker's
/// to any operator), until dropped.
struct ControlPortRejected {
    ns: String,
}

impl ControlPortRejected {
    const RULE: [&str; 7] = ["OUTPUT", "-p", "tcp", "--dport", "9444", "-j", "REJECT"];

    fn new(c: &Cluster, i: usize) -> Self {
        let ns = c.node_ns(i);
        node_iptables(&ns, "-I", &Self::RULE);
        ControlPortRejected { ns }
    }
}

impl Drop for ControlPortRejected {
    fn drop(&mut self) {
        node_iptables(&self.ns, "-D", &Self::RULE);
    }
}

/// When (Unix seconds) a node asked the LAN who has `vip`: it was routing a
/// packet for the address without kube-proxy's DNAT.
fn nodes_asking_for(c: &Cluster, arp: &[Vec<String>], vip: &str) -> Vec<f64> {
    let nodes: Vec<String> = (1..=c.nodes).map(|i| c.node_ip(i).to_string()).collect();
    arp.iter()
        .filter(|r| r.len() >= 4 && r[1] == "1" && r[3] == vip && nodes.contains(&r[2]))
        .filter_map(|r| r[0].parse().ok())
        .collect()
}

/// Whether the L2 poll lost exactly one request, and a node asked for the
/// address within a second of sending it (a stale un-NATed flow, above).
fn lost_unnated(p: &barelb_testsupport::cluster::Polled, asked: &[f64]) -> bool {
    let sent = p.last_failed_unix_ms as f64 / 1000.0;
    p.failed == 1 && asked.iter().any(|t| *t >= sent - 0.05 && *t <= sent + 1.0)
}

/// The node (`node-I`'s I) an Announced condition's message names.
fn announcer(message: &str) -> usize {
    message
        .split("node-")
        .nth(1)
        .and_then(|rest| rest.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("no node-I in {message:?}"))
}

/// Waits until every operator Pod is gone (a stopping one still serves).
fn wait_no_operator(c: &Cluster) {
    let t = Instant::now();
    loop {
        if operator_pods(c).is_some_and(|pods| pods.is_empty()) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "operator Pods still there 90 s after scaling to 0"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn scale_operator(c: &Cluster, replicas: usize) {
    let r = format!("--replicas={replicas}");
    ok(
        c.lab
            .kubectl(&["-n", NS, "scale", "deployment/barelb-operator", &r]),
        "kubectl scale",
    );
}

/// What must not change across an outage: each Service's address and
/// announcers, and the router's next hops for the BGP address.
#[derive(Debug, PartialEq, Eq)]
struct Placement {
    addresses: Vec<String>,
    announcers: Vec<String>,
    next_hops: Vec<String>,
}

fn placement(c: &Cluster, ns: &str, router: &LanRouter, bgp_vip: &str) -> Placement {
    let services = ["web", "routed"];
    Placement {
        addresses: services.iter().map(|s| address(c, ns, s)).collect(),
        announcers: services.iter().map(|s| announced(c, ns, s)).collect(),
        next_hops: router.next_hops(&format!("{bgp_vip}/32")),
    }
}

/// When each URL last lost a request, in seconds after the outage began.
fn last_losses(p: &[barelb_testsupport::cluster::Polled], began: f64) -> String {
    p.iter()
        .map(|p| {
            if p.failed == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", p.last_failed_unix_ms as f64 / 1000.0 - began)
            }
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

fn main() {
    let smoke = std::env::var("BARELB_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let minutes: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(if smoke { 0.25 } else { 5.0 });
    let outage = Duration::from_secs_f64(minutes * 60.0);
    let c = cluster("chaos_control_plane");
    load_images_built(if smoke { &["--debug"] } else { &[] });
    let installed = install_with_helm(&c);
    let (router, w, client, vips) = l2_and_bgp_answering(&c, 104);
    let urls: Vec<String> = vips.iter().map(|v| format!("http://{v}/")).collect();
    wait_driving(&c, Duration::from_secs(60));
    println!(
        "{:<22} {:>7} {:>12} {:>9} {:>9} {:>12} {:>9} {:>8} {:>6} {:>12}  last loss (s after the start)",
        "outage",
        "minutes",
        "L2 lost",
        "un-NATed",
        "L2 gap ms",
        "BGP lost",
        "BGP gap ms",
        "ARP flip",
        "moved",
        "recovered ms"
    );
    let mut failed = Vec::new();
    for o in [
        Outage::None,
        Outage::ControlPlane,
        Outage::OperatorScaledToZero,
        Outage::OperatorScaledToZeroSpeakerLate,
    ] {
        let before = placement(&c, &w.ns, &router, &vips[1]);
        let l2_announcer = announcer(&before.announcers[0]);
        let neigh = client.watch_neigh(&vips[..1]);
        let mac = neigh.current(&vips[0]).unwrap_or_default();
        let arp_fields = [
            "frame.time_epoch",
            "arp.opcode",
            "arp.src.proto_ipv4",
            "arp.dst.proto_ipv4",
        ];
        let arp = Capture::start("lc-lan", "br0", "arp", &arp_fields).expect("start tshark");
        let poller = client.poll(&urls, 10);
        std::thread::sleep(Duration::from_secs(2));
        let since = Instant::now();
        let began = unix_seconds();
        let late = o.begin(&c, l2_announcer);
        std::thread::sleep(outage);
        // Recovery counts from the end of the outage: the control plane's
        // own start-up, or the operator Pods' scheduling and start, included.
        let ended = Instant::now();
        o.end(&c, late);
        wait_driving(&c, Duration::from_secs(300));
        let recovered = ended.elapsed();
        // Long enough for anything the returning operator would move to move.
        std::thread::sleep(Duration::from_secs(10));
        let p = poller.stop();
        let asked = nodes_asking_for(&c, &arp.stop(), &vips[0]);
        let unnated = u64::from(lost_unnated(&p[0], &asked));
        let flipped = neigh
            .wait_moved(&vips[0], &mac, since, Duration::ZERO)
            .is_some();
        let after = placement(&c, &w.ns, &router, &vips[1]);
        let moved = before != after;
        println!(
            "{:<22} {minutes:>7} {:>5}/{:<6} {unnated:>9} {:>9} {:>5}/{:<6} {:>9} {:>8} {:>6} {:>12}  {}",
            o.name(),
            p[0].failed,
            p[0].requests,
            p[0].longest_gap_ms,
            p[1].failed,
            p[1].requests,
            p[1].longest_gap_ms,
            if flipped { "yes" } else { "no" },
            if moved { "yes" } else { "no" },
            recovered.as_millis(),
            last_losses(&p, began)
        );
        if p[0].failed > 0 || p[1].failed > 0 {
            failed.push(format!(
                "{}: requests lost ({}, {})",
                o.name(),
                p[0].first_error,
                p[1].first_error
            ));
        }
        if moved || flipped {
            failed.push(format!(
                "{}: moved\n before {before:?}\n after  {after:?}",
                o.name()
            ));
        }
    }
    drop(w);
    drop(installed);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
