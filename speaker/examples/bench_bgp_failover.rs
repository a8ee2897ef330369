//! `scripts/bench-bgp-failover [RUNS]`: BGP failover through a real router.
//! Three nodes (network namespaces on one LAN) each serve HTTP on one
//! address and announce it with `barelb-speaker bgp`; a router (BIRD, then
//! FRR) installs the ECMP route and forwards a client's requests (a new
//! connection every 10 ms, 1 s timeout) to it. Per router, with BFD
//! (300 ms × 3) and without (hold time 3 s, the least BGP allows but 0):
//!
//! - a node silently blackholed (its switch port detached), RUNS times:
//!   the time until the router's route no longer names it, and until the
//!   client sends its last request that fails;
//! - without BFD: two planned restarts of one speaker (graceful restart)
//!   and two stops with graceful shutdown (2 s drain; a new speaker
//!   follows each), while the client polls: requests lost.
//!
//! Needs root, BARELB_SPEAKER_BIN and BARELB_LAB_BACKEND (the lab backend,
//! tests/kube-lab/cmd/lab-backend; the script builds both).
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)] // a benchmark binary

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use barelb_testsupport::cluster::Poller;
use barelb_testsupport::netlab::{Host, Process, Topology, kernel_next_hops};
use barelb_testsupport::routers::{BfdTimers, Kind, Neighbor, Router, RouterOptions};

const NODE_AS: u32 = 64500;
const ROUTER_AS: u32 = 64501;
const VIP: &str = "198.51.100.80";
const NODES: [&str; 3] = ["node1", "node2", "node3"];

fn env_path(var: &str) -> PathBuf {
    PathBuf::from(std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set")))
}

/// One node: its speaker and its backend.
struct Node {
    speaker: Process,
    _backend: Process,
}

fn speaker(h: &Host, router: &Host, extra: &[&str]) -> Process {
    let bin = env_path("BARELB_SPEAKER_BIN");
    let peer = router.ipv4.to_string();
    let (asn, my) = (ROUTER_AS.to_string(), NODE_AS.to_string());
    let mut args = vec![
        bin.to_str().unwrap(),
        "bgp",
        "--peer",
        &peer,
        "--peer-asn",
        &asn,
        "--my-asn",
        &my,
        "--hold-time",
        "3",
        "--connect-retry",
        "0.5",
        "--announce",
        VIP,
    ];
    args.extend_from_slice(extra);
    let log = barelb_testsupport::lab::lab_dir()
        .join("logs")
        .join(format!("{}-bgp-failover.log", h.ns.name()));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    h.ns.spawn_logged(&args, &log).unwrap()
}

fn node(h: &Host, router: &Host, extra: &[&str]) -> Node {
    h.ns.ip(&["link", "set", "lo", "up"]).unwrap();
    h.ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])
        .unwrap();
    let backend = env_path("BARELB_LAB_BACKEND");
    let listen = format!("--listen={VIP}:80");
    let log = barelb_testsupport::lab::lab_dir()
        .join("logs")
        .join(format!("{}-backend.log", h.ns.name()));
    let b =
        h.ns.spawn_logged(&[backend.to_str().unwrap(), &listen], &log)
            .unwrap();
    Node {
        speaker: speaker(h, router, extra),
        _backend: b,
    }
}

/// The router's next hops for the VIP (its kernel table).
fn next_hops(router: &Host) -> Vec<String> {
    kernel_next_hops(router.ns.name(), VIP)
}

fn wait_hops(router: &Host, want: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while next_hops(router).len() != want {
        assert!(
            Instant::now() < deadline,
            "the router's route has {:?}, not {want} next hops",
            next_hops(router)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A run's figures: route gone, last failing request sent (ms after the
/// fault), requests lost of sent.
#[derive(Debug, Default, Clone)]
struct Runs {
    route_gone: Vec<Duration>,
    /// Runs with a failed request only.
    last_failure: Vec<Duration>,
    failed: u64,
    requests: u64,
}

/// Dropped in field order: the processes first, then the namespaces.
struct Lab {
    nodes: Vec<Node>,
    router: Router,
    topo: Topology,
    backend: PathBuf,
}

impl Lab {
    fn start(kind: Kind, bfd: bool) -> Lab {
        let topo = Topology::build(&["router", "client", "node1", "node2", "node3"]).unwrap();
        let rh = topo.host("router");
        let neighbors = NODES
            .iter()
            .map(|n| Neighbor {
                addr: IpAddr::V4(topo.host(n).ipv4),
                asn: NODE_AS,
                password: None,
            })
            .collect();
        let timers = BfdTimers {
            interval_ms: 300,
            multiplier: 3,
        };
        let opts = RouterOptions {
            bfd: bfd.then_some(timers),
            forwarding: true,
            multihop: false,
        };
        let router = Router::start_with(kind, rh, ROUTER_AS, neighbors, opts).unwrap();
        let extra: &[&str] = if bfd { &["--bfd"] } else { &[] };
        let nodes = NODES
            .iter()
            .map(|n| node(topo.host(n), rh, extra))
            .collect();
        let client = topo.host("client");
        client
            .ns
            .ip(&[
                "route",
                "add",
                &format!("{VIP}/32"),
                "via",
                &rh.ipv4.to_string(),
            ])
            .unwrap();
        wait_hops(rh, 3, Duration::from_secs(30));
        Lab {
            nodes,
            router,
            topo,
            backend: env_path("BARELB_LAB_BACKEND"),
        }
    }

    /// Waits until the route has all 3 next hops, every BFD session is Up
    /// at the router (BIRD tears down a BGP session that came up before its
    /// BFD did), and that has held for 3 s.
    fn steady(&self) {
        let rh = self.topo.host("router");
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut since = Instant::now();
        loop {
            let bfd_up = self.router.bfd.is_none()
                || NODES.iter().all(|n| {
                    let ip = IpAddr::V4(self.topo.host(n).ipv4);
                    self.router
                        .bfd_session(ip)
                        .ok()
                        .flatten()
                        .is_some_and(|v| v.state == "Up")
                });
            if next_hops(rh).len() != 3 || !bfd_up {
                since = Instant::now();
            } else if since.elapsed() >= Duration::from_secs(3) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not steady in 90 s: {:?}",
                next_hops(rh)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn poller(&self) -> Poller {
        Poller::start(
            self.topo.host("client").ns.name(),
            &self.backend,
            &[format!("http://{VIP}/")],
            10,
            Duration::from_secs(1),
        )
    }

    /// Blackholes node1 `runs` times.
    fn blackholes(&self, runs: usize, label: &str) -> Runs {
        let rh = self.topo.host("router");
        let victim = self.topo.host("node1").ipv4.to_string();
        let port = "p2"; // node1 is the third host built
        let mut out = Runs::default();
        for run in 1..=runs {
            self.steady();
            let poller = self.poller();
            std::thread::sleep(Duration::from_secs(1));
            let (t, t_ms) = (Instant::now(), unix_ms());
            self.topo
                .lan
                .ip(&["link", "set", port, "nomaster"])
                .unwrap();
            while next_hops(rh).contains(&victim) {
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "{label}: route kept node1"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let gone = t.elapsed();
            std::thread::sleep(Duration::from_secs(2));
            let p = poller.stop().remove(0);
            self.topo
                .lan
                .ip(&["link", "set", port, "master", "br0"])
                .unwrap();
            // Runs where nothing failed have no last failure.
            let last = (p.failed > 0)
                .then(|| Duration::from_millis(p.last_failed_unix_ms.saturating_sub(t_ms)));
            eprintln!(
                "bench-bgp-failover: {label} run {run}: route gone in {} ms; last failing request sent at {} ms; lost {}/{}",
                gone.as_millis(),
                last.map_or("–".into(), |d| d.as_millis().to_string()),
                p.failed,
                p.requests
            );
            out.route_gone.push(gone);
            out.last_failure.extend(last);
            out.failed += p.failed;
            out.requests += p.requests;
        }
        out
    }

    /// node1's speaker stops (SIGTERM) and a new one starts with `extra`;
    /// with `measure`, while the client polls: (lost, sent).
    fn replace_speaker(&mut self, extra: &[&str], measure: bool) -> (u64, u64) {
        self.steady();
        let rh = self.topo.host("router");
        let poller = measure.then(|| self.poller());
        std::thread::sleep(Duration::from_secs(1));
        self.nodes[0].speaker.terminate();
        let h = self.topo.host("node1");
        self.nodes[0].speaker = speaker(h, rh, extra);
        wait_hops(rh, 3, Duration::from_secs(60));
        std::thread::sleep(Duration::from_secs(2));
        poller.map_or((0, 0), |p| {
            let p = p.stop().remove(0);
            (p.failed, p.requests)
        })
    }

    /// Requests lost over 2 planned restarts with graceful restart, then 2
    /// stops with graceful shutdown (each speaker replaced by one with the
    /// same setting, so the one that stops has it).
    fn planned(&mut self) -> ((u64, u64), (u64, u64)) {
        let sum = |a: (u64, u64), b: (u64, u64)| (a.0 + b.0, a.1 + b.1);
        let gr = ["--graceful-restart", "10"];
        self.replace_speaker(&gr, false);
        let restarts = sum(
            self.replace_speaker(&gr, true),
            self.replace_speaker(&gr, true),
        );
        let gs = ["--graceful-shutdown", "2"];
        self.replace_speaker(&gs, false);
        let stops = sum(
            self.replace_speaker(&gs, true),
            self.replace_speaker(&gs, true),
        );
        (restarts, stops)
    }
}

fn p(v: &[Duration], q: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s.get(((s.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{}", d.as_millis())
}

fn main() {
    let smoke = std::env::var("BARELB_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(if smoke { 1 } else { 20 });
    let mut rows = Vec::new();
    for kind in [Kind::Bird, Kind::Frr] {
        for bfd in [true, false] {
            let label = format!(
                "{} {}",
                kind.name(),
                if bfd {
                    "BFD 300 ms × 3"
                } else {
                    "no BFD, hold 3 s"
                }
            );
            let mut lab = Lab::start(kind, bfd);
            let r = lab.blackholes(runs, &label);
            // Planned restart and stop, on the lab without BFD (a stopping
            // speaker's BFD goes silent too; how routers take that with
            // graceful restart is their setting, see docs/benchmarks.md).
            let planned = (!bfd).then(|| lab.planned());
            rows.push((label, r, planned));
        }
    }
    println!("\nBGP failover through a router, 3 nodes (ECMP), {runs} runs per row\n");
    println!(
        "| router, detection | node blackholed → route without it p50 / p99 / max (ms) | → client's last failing request sent p50 / p99 / max (ms; runs with one) | requests lost | 2 planned restarts (graceful restart): lost | 2 stops (graceful shutdown, 2 s drain): lost |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, r, planned) in rows {
        let (gr, gs) = planned.map_or(("–".into(), "–".into()), |((l, s), (gl, gsent))| {
            (format!("{l} of {s}"), format!("{gl} of {gsent}"))
        });
        println!(
            "| {label} | {} / {} / {} | {} / {} / {} ({}/{runs}) | {} of {} | {gr} | {gs} |",
            ms(p(&r.route_gone, 0.5)),
            ms(p(&r.route_gone, 0.99)),
            ms(p(&r.route_gone, 1.0)),
            ms(p(&r.last_failure, 0.5)),
            ms(p(&r.last_failure, 0.99)),
            ms(p(&r.last_failure, 1.0)),
            r.last_failure.len(),
            r.failed,
            r.requests
        );
    }
}
