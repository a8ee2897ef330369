//! The lab cluster: a control plane with real nodes (`tests/lab up --nodes
//! N` in `target/cluster`, or `BARELB_CLUSTER_DIR`), each a network
//! namespace on the lab LAN with containerd, kubelet, CNI and kube-proxy.
//! Tests reach its apiserver through a [`Lab`], inject faults on its nodes,
//! and put client hosts on its LAN.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::lab::{Lab, output_text, record_in};

/// Where `tests/lab up --nodes N` keeps the cluster.
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("BARELB_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target/cluster"))
}

/// The running cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub lab: Lab,
    /// How many nodes it has: `node-1` … `node-N`.
    pub nodes: usize,
    pub(crate) dir: PathBuf,
}

/// A fault on one node (see `tests/lab node`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The kubelet process alone stops.
    StopKubelet,
    /// Every process of the node is stopped with SIGSTOP.
    Freeze,
    /// The node's LAN cable is pulled (link down).
    Cut,
    /// The node's switch port forwards nothing, ARP included, while its
    /// link stays up: the node is silently gone from the LAN.
    Blackhole,
    /// The node cannot reach the control plane (nor it the node); the LAN stays.
    Partition,
}

impl Fault {
    fn verbs(self) -> (&'static str, &'static str) {
        match self {
            Fault::StopKubelet => ("stop-kubelet", "start-kubelet"),
            Fault::Freeze => ("freeze", "thaw"),
            Fault::Cut => ("cut", "uncut"),
            Fault::Blackhole => ("blackhole", "unblackhole"),
            Fault::Partition => ("partition", "heal"),
        }
    }
}

/// The node (`node-I`'s I) a Pod runs on.
pub fn node_index(pod: &serde_json::Value) -> Option<usize> {
    pod["spec"]["nodeName"]
        .as_str()?
        .strip_prefix("node-")?
        .parse()
        .ok()
}

/// The running cluster. Panics with the fix when it is not up: a cluster
/// test fails, never skips. Each call is recorded in the cluster's ledger.
pub fn cluster(test_name: &str) -> Cluster {
    let dir = cluster_dir();
    let lab = Lab::in_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the lab cluster is not up ({e:#}); start it with `BARELB_LAB_DIR={} tests/lab up --nodes 3`",
            dir.display()
        )
    });
    let nodes = std::fs::read_to_string(dir.join("nodes.count"))
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            panic!(
                "{} has no nodes: run `tests/lab up --nodes 3` there",
                dir.display()
            )
        });
    record_in(&dir, test_name);
    Cluster { lab, nodes, dir }
}

impl Cluster {
    /// `kubectl ARGS -o json`, parsed; panics with kubectl's output on failure.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.lab.kubectl(&all);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            output_text(&out)
        );
        serde_json::from_slice(&out.stdout).expect("kubectl printed JSON")
    }

    /// Kills node `i` outright: its cable pulled and every one of its
    /// processes (kubelet, kube-proxy, containerd, its Pods) SIGKILLed. Not
    /// undone: only a new cluster brings the node back.
    pub fn kill_node(&self, i: usize) {
        self.node_verb(i, "kill");
    }

    /// Node `i`'s address on the LAN (its InternalIP).
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, 0, 10 + u8::try_from(i).unwrap_or(0))
    }

    /// Node `i`'s network namespace.
    pub fn node_ns(&self, i: usize) -> String {
        format!("lc-node-{i}")
    }

    /// Node `i`'s Pod CIDR.
    pub fn pod_cidr(&self, i: usize) -> String {
        format!("198.18.{}.0/24", 128 + i)
    }

    /// Injects `fault` on node `i`; it is undone when the guard drops (also
    /// when the test fails).
    pub fn inject(&self, i: usize, fault: Fault) -> Injected {
        self.node_verb(i, fault.verbs().0);
        Injected {
            cluster: self.clone(),
            node: i,
            fault,
        }
    }

    fn node_verb(&self, i: usize, verb: &str) {
        self.lab_verb(&["node", &i.to_string(), verb]);
    }

    /// `tests/lab control-plane VERB`: `stop` kills the control plane
    /// (apiserver, etcd, controllers) as a crash would; `start` brings it
    /// back on its state, keys and ports.
    pub fn control_plane(&self, verb: &str) {
        self.lab_verb(&["control-plane", verb]);
    }

    /// `tests/lab ARGS` on this cluster; panics with its output on failure.
    fn lab_verb(&self, args: &[&str]) {
        let out = Command::new(crate::repo_root().join("tests/lab"))
            .args(args)
            .env("BARELB_LAB_DIR", &self.dir)
            .output()
            .expect("run tests/lab");
        assert!(
            out.status.success(),
            "tests/lab {}: {}",
            args.join(" "),
            output_text(&out)
        );
    }

    /// A host on the cluster's LAN (its own network namespace, address
    /// 198.19.0.`host`), removed on drop: a client outside every node.
    /// It starts with no history on the nodes: their connection tracking
    /// forgets every flow of an earlier host with that address (see
    /// [`Cluster::wait_programmed`] for what a stale one does).
    pub fn client(&self, host: u8) -> Client {
        let ns = lan_host("client", host);
        let ip = format!("198.19.0.{host}");
        for i in 1..=self.nodes {
            // Exit status 1 when there is nothing to delete.
            let _ = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.node_ns(i),
                    "conntrack",
                    "-D",
                    "-s",
                    &ip,
                ])
                .output();
        }
        Client { ns, host }
    }

    /// Waits until every node's kube-proxy routes `ip` (a LoadBalancer
    /// address): its nat table has a rule for it. Why before the first
    /// request: barelb announces an address as soon as it is allocated, and
    /// kube-proxy programs it up to a sync period later. A SYN that reaches a
    /// node before then is routed as plain traffic for an on-link address
    /// (the node asks the LAN who has it) and leaves a conntrack entry
    /// without DNAT; until it expires (120 s) a later connection from the
    /// same client port matches it and hangs, however long after the rules
    /// arrived — a lost request in a test that polls long enough for the
    /// client's ports to come round again.
    pub fn wait_programmed(&self, ip: &str) {
        let (save, rule) = if ip.contains(':') {
            ("ip6tables-save", format!("-d {ip}/128 "))
        } else {
            ("iptables-save", format!("-d {ip}/32 "))
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 1..=self.nodes {
            loop {
                let out = Command::new("ip")
                    .args(["netns", "exec", &self.node_ns(i), save, "-t", "nat"])
                    .output()
                    .expect("run iptables-save");
                if String::from_utf8_lossy(&out.stdout).contains(&rule) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node-{i}'s kube-proxy has no rule for {ip} after 60 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// A BIRD router on the LAN at 198.19.0.`host` (AS `asn`) with an eBGP
    /// session to every node (AS `node_asn`), installing what it learns in
    /// its kernel table with ECMP and forwarding: clients that route through
    /// it reach BGP-announced addresses. It honours GRACEFUL_SHUTDOWN (RFC
    /// 8326: such a path gets LOCAL_PREF 0, so it leaves the ECMP set while
    /// other nodes' paths remain). Stopped (by PID) on drop.
    pub fn router(&self, host: u8, asn: u32, node_asn: u32) -> LanRouter {
        self.router_to(host, asn, node_asn, self.nodes)
    }

    /// [`Cluster::router`] with a session to each of the first `nodes`
    /// node addresses (hollow nodes' too: `crate::hollow`).
    pub fn router_to(&self, host: u8, asn: u32, node_asn: u32, nodes: usize) -> LanRouter {
        let ns = lan_host("router", host);
        let dir = self.dir.join(format!("router-{host}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("router directory");
        let ip = format!("198.19.0.{host}");
        let mut conf = format!(
            "router id {ip};\nlog \"{}/bird.log\" all;\nprotocol device {{}}\n\
             protocol kernel {{ ipv4 {{ export where source = RTS_BGP; }}; merge paths on; }}\n\
             filter peers_in {{ if net.len != 32 then reject; \
             if (65535, 0) ~ bgp_community then bgp_local_pref = 0; accept; }}\n",
            dir.display()
        );
        for i in 1..=nodes {
            conf += &format!(
                "protocol bgp node{i} {{\n  local {ip} as {asn};\n  neighbor {} as {node_asn};\n  \
                 hold time 9; keepalive time 3; connect retry time 1; error wait time 1, 5;\n  \
                 ipv4 {{ import filter peers_in; export none; }};\n}}\n",
                self.node_ip(i)
            );
        }
        std::fs::write(dir.join("bird.conf"), conf).expect("write bird.conf");
        let router = LanRouter {
            ns: ns.clone(),
            dir: dir.clone(),
            ip,
            host,
        };
        ns_run(
            &ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.eth0.send_redirects=0",
            ],
        );
        let d = dir.display();
        ns_run(
            &ns,
            &[
                "bird",
                "-c",
                &format!("{d}/bird.conf"),
                "-s",
                &format!("{d}/bird.ctl"),
                "-P",
                &format!("{d}/bird.pid"),
            ],
        );
        router
    }
}

/// Whether an object's `Ready` condition (a Node's, a Pod's) is True.
pub fn is_ready(obj: &serde_json::Value) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// `ip netns exec NS ARGS`, which must succeed.
fn ns_run(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("run ip netns exec");
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        output_text(&out)
    );
}

/// A namespace `lc-ROLE-HOST` on the cluster's LAN with address
/// 198.19.0.`host` (any stale one of that name is replaced).
pub(crate) fn lan_host(role: &str, host: u8) -> String {
    let ns = format!("lc-{role}-{host}");
    let run = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("run ip");
        if !out.status.success() {
            // What was made so far goes too: the caller never gets the name.
            remove_lan_host(&ns, host);
            panic!("ip {args:?}: {}", output_text(&out));
        }
    };
    let lan_if = format!("h{host}");
    remove_lan_host(&ns, host);
    run(&["netns", "add", &ns]);
    run(&[
        "link", "add", &lan_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ]);
    run(&["link", "set", &lan_if, "netns", "lc-lan"]);
    run(&[
        "-n", "lc-lan", "link", "set", &lan_if, "master", "br0", "up",
    ]);
    run(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("198.19.0.{host}/24"),
        "dev",
        "eth0",
    ]);
    run(&["-n", &ns, "link", "set", "eth0", "up"]);
    run(&["-n", &ns, "link", "set", "lo", "up"]);
    ns
}

/// Removes the namespace `lan_host` made and its leg on the LAN. The leg
/// is deleted first, and at once: deleting a namespace frees its veth
/// only when the kernel gets round to it (seconds on a loaded machine),
/// and a test started meanwhile could not add a leg of the same name.
pub(crate) fn remove_lan_host(ns: &str, host: u8) {
    let leg = format!("h{host}");
    let _ = Command::new("ip")
        .args(["-n", "lc-lan", "link", "del", &leg])
        .output();
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

/// A BIRD router on the cluster's LAN.
#[derive(Debug)]
pub struct LanRouter {
    pub ns: String,
    pub ip: String,
    host: u8,
    dir: PathBuf,
}

impl LanRouter {
    /// `birdc ARGS` against it.
    pub fn birdc(&self, args: &[&str]) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(self.dir.join("bird.ctl"))
            .args(args)
            .output()
            .expect("run birdc");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The next hops of `prefix` in its kernel table (empty: no route).
    pub fn next_hops(&self, prefix: &str) -> Vec<String> {
        crate::netlab::kernel_next_hops(&self.ns, prefix)
    }
}

impl Drop for LanRouter {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("bird.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).output();
        }
        remove_lan_host(&self.ns, self.host);
    }
}

/// A fault in force until dropped.
#[derive(Debug)]
pub struct Injected {
    cluster: Cluster,
    node: usize,
    fault: Fault,
}

impl Drop for Injected {
    fn drop(&mut self) {
        self.cluster.node_verb(self.node, self.fault.verbs().1);
    }
}

/// A client host on the cluster's LAN.
#[derive(Debug)]
pub struct Client {
    pub ns: String,
    host: u8,
}

impl Client {
    /// Routes `prefix` through `router` (BGP-announced addresses).
    pub fn route_via(&self, prefix: &str, router: &LanRouter) {
        let out = Command::new("ip")
            .args([
                "-n", &self.ns, "route", "replace", prefix, "via", &router.ip,
            ])
            .output()
            .expect("run ip route");
        assert!(
            out.status.success(),
            "route {prefix}: {}",
            output_text(&out)
        );
    }

    /// Starts the lab backend's poller in the client's namespace: a GET of
    /// every URL each `every_ms` on a new connection, until [`Poller::stop`].
    /// A request counts as failed when refused, reset, or unanswered for 3 s:
    /// one retransmitted SYN (1 s) is a gap the client recovers from, seen
    /// in `longest_gap_ms`, not a lost request.
    pub fn poll(&self, urls: &[String], every_ms: u64) -> Poller {
        let bin = cluster_dir().join("images/lab-backend");
        Poller::start(&self.ns, &bin, urls, every_ms, Duration::from_secs(3))
    }

    /// Watches the client's neighbour entries for `ips` (`ip monitor
    /// neigh`): every change is seen when the kernel makes it, no polling.
    pub fn watch_neigh(&self, ips: &[String]) -> crate::neigh::NeighWatch {
        crate::neigh::NeighWatch::start(&self.ns, ips)
    }

    /// `curl` from the client: the body, or None when nothing answered in 3 s.
    pub fn get(&self, url: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-s", "-m", "3", url])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// What a poller saw of one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    pub url: String,
    pub requests: u64,
    pub failed: u64,
    pub longest_gap_ms: u64,
    /// When the last failed request was sent (Unix ms; 0: none failed).
    pub last_failed_unix_ms: u64,
    /// `node-I:count` for each node that answered.
    pub nodes: Vec<String>,
    pub first_error: String,
}

/// A running `lab-backend poll`, stopped (SIGINT) on [`Poller::stop`] or drop.
#[derive(Debug)]
pub struct Poller {
    child: Option<std::process::Child>,
}

impl Poller {
    /// Stops it and reads its tallies, one per URL.
    pub fn stop(mut self) -> Vec<Polled> {
        let Some(child) = self.child.take() else {
            return Vec::new();
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .output();
        let out = child.wait_with_output().expect("wait for the poller");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().filter_map(parse_polled).collect()
    }
}

fn parse_polled(line: &str) -> Option<Polled> {
    let field = |k: &str| -> Option<&str> {
        let start = line.find(&format!("{k}="))? + k.len() + 1;
        let rest = &line[start..];
        Some(rest.split(' ').next().unwrap_or_default())
    };
    let num = |k: &str| field(k).and_then(|v| v.parse().ok());
    Some(Polled {
        url: field("url")?.to_string(),
        requests: num("requests")?,
        failed: num("failed")?,
        longest_gap_ms: num("longest_gap_ms")?,
        last_failed_unix_ms: num("last_failed_unix_ms").unwrap_or(0),
        nodes: field("nodes")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        first_error: line
            .split_once("first_error=")
            .map(|(_, e)| e.trim_matches('"').to_string())
            .unwrap_or_default(),
    })
}

impl Poller {
    /// `bin poll` (the lab backend) in namespace `ns`: a GET of every URL
    /// each `every_ms` on a new connection, failing after `timeout`.
    pub fn start(
        ns: &str,
        bin: &std::path::Path,
        urls: &[String],
        every_ms: u64,
        timeout: Duration,
    ) -> Poller {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin)
            .args([
                "poll",
                &format!("--every={every_ms}ms"),
                &format!("--timeout={}ms", timeout.as_millis()),
            ])
            .args(urls)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Poller { child: Some(child) }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        remove_lan_host(&self.ns, self.host);
    }
}
