//! Failover benchmark (run by `scripts/bench-failover`, not by the test
//! suite): fault → client neighbour entry flipped, BARELB_BENCH_RUNS times
//! per fault; prints p50/p99. See docs/benchmarks.md.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // bench code

mod common;

use std::time::{Duration, Instant};

use common::control::{neigh_mac, two_nodes_and_a_service};

/// The faults the failover benchmark times.
#[derive(Clone, Copy, Debug)]
enum Fault {
    SpeakerKilled,
    Blackholed,
    InterfaceDown,
    /// A rolling restart of the operator, then 1 s after the speakers are
    /// back with the new leader the announcing node is blackholed.
    RestartThenBlackholed,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Benchmark (scripts/bench-failover): fault → client neighbour entry
/// flipped, RUNS times per fault; prints p50/p99.
async fn bench_fault(fault: Fault, runs: usize) {
    let (mut c, vip, owner, other, role, mut speakers) =
        two_nodes_and_a_service(&format!("bench-{fault:?}").to_lowercase()).await;
    let idx = if role == "node-a" { 0 } else { 1 };
    let token = c.dir.join(format!("token-{role}"));
    let mut times = Vec::new();
    for run in 0..runs {
        if let Fault::RestartThenBlackholed = fault {
            c.restart_operator(2);
            std::thread::sleep(Duration::from_secs(1));
        }
        let client = c.topo.host("client");
        let node = c.topo.host(role);
        let relay = c.topo.host("relay");
        assert_eq!(
            neigh_mac(client, &vip).as_deref(),
            Some(owner.as_str()),
            "run {run}"
        );
        let t = Instant::now();
        match fault {
            Fault::SpeakerKilled => speakers[idx].kill(),
            Fault::Blackholed | Fault::RestartThenBlackholed => {
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
            Fault::Blackholed | Fault::RestartThenBlackholed => {
                for (h, peer) in [(node, relay), (relay, node)] {
                    h.ns.ip(&["neigh", "del", &peer.ipv4.to_string(), "dev", &h.ifname])
                        .unwrap();
                }
            }
            Fault::InterfaceDown => {
                node.ns.ip(&["link", "set", &node.ifname, "up"]).unwrap();
            }
        }
        // The owner takes it back quietly (the other node still forwards):
        // the client moves when it next asks, so ask until the owner answers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while neigh_mac(client, &vip).as_deref() != Some(owner.as_str()) {
            assert!(Instant::now() < deadline, "run {run}: no failback");
            let _ = client.ns.ip(&["neigh", "del", &vip, "dev", &client.ifname]);
            let _ = client.ns.exec(&["ping", "-c1", "-W1", &vip]);
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
async fn bench_failover_speaker_killed() {
    bench_fault(Fault::SpeakerKilled, bench_runs()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_failover_blackholed() {
    bench_fault(Fault::Blackholed, bench_runs()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_failover_interface_down() {
    bench_fault(Fault::InterfaceDown, bench_runs()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_failover_restart_then_blackholed() {
    bench_fault(Fault::RestartThenBlackholed, bench_runs()).await;
}
