//! L2 failover, measured from the client: a Service on the LAN pool, a
//! client host on the LAN watching its neighbour entry for the address, a
//! fault on whichever node answers for it, and the time until the entry
//! names another node (the first gratuitous ARP the client took). A poller
//! (a new connection every 10 ms) counts what the client lost meanwhile.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use barelb_testsupport::cluster::{Client, Cluster, Fault as NodeFault};
use barelb_testsupport::install::{address, apply};
use barelb_testsupport::lab::output_text;
use barelb_testsupport::neigh::NeighWatch;
use barelb_testsupport::peers::{Deployed, LAN_POOL};
use barelb_testsupport::unique_name;

/// What happens to the node that announces the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Its speaker is SIGKILLed; the kubelet restarts it, as in production.
    SpeakerKilled,
    /// Its speaker is SIGSTOPped (hung) until the address has moved.
    SpeakerHung,
    /// The node's switch port drops everything, ARP included; link up.
    Blackholed,
    /// The node's LAN interface goes down.
    InterfaceDown,
    /// Its kubelet stops (the Node goes NotReady after 20 s); the speaker
    /// and the data path keep running.
    KubeletStopped,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::SpeakerKilled,
        Fault::SpeakerHung,
        Fault::Blackholed,
        Fault::InterfaceDown,
        Fault::KubeletStopped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Fault::SpeakerKilled => "speaker killed (kubelet restarts it)",
            Fault::SpeakerHung => "speaker hung (SIGSTOP)",
            Fault::Blackholed => "node silently blackholed",
            Fault::InterfaceDown => "node's interface down",
            Fault::KubeletStopped => "kubelet stopped (Node NotReady at 20 s)",
        }
    }

    /// How long to wait for the address to move: past it the run counts as
    /// "not moved".
    fn patience(self) -> Duration {
        match self {
            Fault::SpeakerKilled => Duration::from_secs(15),
            Fault::KubeletStopped => Duration::from_secs(60),
            _ => Duration::from_secs(90),
        }
    }
}

/// One fault's runs.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub runs: usize,
    /// Fault → the client's entry names another node, for runs where it did.
    pub moved: Vec<Duration>,
    pub requests: u64,
    pub failed: u64,
    /// Each run's longest time without an answer.
    pub gaps_ms: Vec<u64>,
}

/// A backend on every node and one Service from the LAN pool; removed on drop.
pub struct Target {
    c: Cluster,
    ns: String,
    pub vip: String,
}

impl Target {
    pub fn deploy(c: &Cluster) -> Target {
        let ns = unique_name("peers");
        let n = c.nodes;
        apply(
            c,
            &format!(
                r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: backend, namespace: {ns}}}
spec:
  replicas: {n}
  selector: {{matchLabels: {{app: backend}}}}
  template:
    metadata: {{labels: {{app: backend}}}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: backend}}}}}}
      containers:
      - name: backend
        image: barelb.io/lab-backend:1
        imagePullPolicy: Never
        args: ["--listen=:8080"]
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {ns}
  annotations: {{barelb.io/pool: {LAN_POOL}, metallb.io/address-pool: {LAN_POOL}}}
spec:
  type: LoadBalancer
  selector: {{app: backend}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
            ),
        );
        let vip = address(c, &ns, "web");
        Target {
            c: c.clone(),
            ns,
            vip,
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.c.lab.kubectl(&[
            "delete",
            "namespace",
            &self.ns,
            "--wait=true",
            "--timeout=120s",
        ]);
    }
}

/// Runs `fault` `runs` times against `d` and the `target` Service.
pub fn measure(
    c: &Cluster,
    d: &Deployed,
    client: &Client,
    target: &Target,
    fault: Fault,
    runs: usize,
) -> Outcome {
    let watch = client.watch_neigh(&target.vip);
    let url = format!("http://{}/", target.vip);
    let mut out = Outcome {
        runs,
        ..Outcome::default()
    };
    for run in 1..=runs {
        let owner = settle(c, d, client, &watch, &target.vip);
        let owner_mac = node_mac(owner);
        let poller = client.poll(std::slice::from_ref(&url), 10);
        std::thread::sleep(Duration::from_secs(1));
        let t = Instant::now();
        let repair = inject(c, d, owner, fault);
        let moved = watch.wait_moved(&owner_mac, t, fault.patience());
        // The client's view for a moment longer: what the move cost it.
        std::thread::sleep(Duration::from_secs(2));
        let polled = poller.stop();
        repair.undo(c, d);
        let p = polled.first().cloned().unwrap_or_else(|| {
            panic!(
                "{} {fault:?} run {run}: the poller reported nothing",
                d.peer.name()
            )
        });
        out.requests += p.requests;
        out.failed += p.failed;
        out.gaps_ms.push(p.longest_gap_ms);
        eprintln!(
            "bench-peers: {} {:?} run {run}: node-{owner} → {} (lost {}/{}, longest gap {} ms)",
            d.peer.name(),
            fault,
            moved
                .as_ref()
                .map_or("not moved".to_string(), |(t, mac)| format!(
                    "node-{} in {} ms",
                    mac_node(mac).unwrap_or(0),
                    t.as_millis()
                )),
            p.failed,
            p.requests,
            p.longest_gap_ms
        );
        if let Some((t, _)) = moved {
            out.moved.push(t);
        }
    }
    out
}

/// How a fault is undone.
enum Repair {
    /// A fresh speaker Pod on the node (no restart back-off carried over).
    ReplaceSpeaker(usize),
    Resume(u32),
    Node(barelb_testsupport::cluster::Injected),
}

impl Repair {
    fn undo(self, _c: &Cluster, d: &Deployed) {
        match self {
            Repair::ReplaceSpeaker(i) => d.replace_speaker(i),
            Repair::Resume(pid) => signal("-CONT", pid),
            Repair::Node(guard) => drop(guard),
        }
    }
}

fn inject(c: &Cluster, d: &Deployed, node: usize, fault: Fault) -> Repair {
    let speaker = || {
        d.speaker_pid(node)
            .unwrap_or_else(|| panic!("no {} speaker on node-{node}", d.peer.name()))
    };
    match fault {
        Fault::SpeakerKilled => {
            signal("-KILL", speaker());
            Repair::ReplaceSpeaker(node)
        }
        Fault::SpeakerHung => {
            let pid = speaker();
            signal("-STOP", pid);
            Repair::Resume(pid)
        }
        Fault::Blackholed => Repair::Node(c.inject(node, NodeFault::Blackhole)),
        Fault::InterfaceDown => Repair::Node(c.inject(node, NodeFault::Cut)),
        Fault::KubeletStopped => Repair::Node(c.inject(node, NodeFault::StopKubelet)),
    }
}

fn signal(sig: &str, pid: u32) {
    let out = Command::new("kill")
        .args([sig, &pid.to_string()])
        .output()
        .expect("run kill");
    assert!(
        out.status.success(),
        "kill {sig} {pid}: {}",
        output_text(&out)
    );
}

/// Waits until the cluster is whole again and exactly one node answers for
/// `vip`, steadily (no change of the client's entry for 3 s); returns it.
fn settle(c: &Cluster, d: &Deployed, client: &Client, watch: &NeighWatch, vip: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(
            Instant::now() < deadline,
            "{}: {vip} did not settle on one node in 240 s",
            d.peer.name()
        );
        d.wait_ready();
        if !all_nodes_ready(c) {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        if watch
            .last_change()
            .is_some_and(|t| t.elapsed() < Duration::from_secs(3))
        {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let answering = responders(client, vip);
        let current = watch.current();
        match (answering.len(), current) {
            (1, Some(mac)) if answering.contains(&mac) => {
                if let Some(i) = mac_node(&mac) {
                    return i;
                }
            }
            (1, _) => {
                // The entry names no one (or someone else): ask afresh.
                let _ = Command::new("ip")
                    .args(["-n", &client.ns, "neigh", "flush", "to", vip])
                    .output();
                let _ = client.get(&format!("http://{vip}/"));
            }
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

fn all_nodes_ready(c: &Cluster) -> bool {
    let nodes = c.json(&["get", "nodes"]);
    let ready = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|x| x["type"] == "Ready" && x["status"] == "True")
            })
        })
        .count();
    ready == c.nodes
}

/// The MACs that answer an ARP request for `vip` from the client (arping,
/// 3 requests).
fn responders(client: &Client, vip: &str) -> BTreeSet<String> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &client.ns, "arping", "-c", "3", "-w", "4", "-I", "eth0", vip,
        ])
        .output()
        .expect("run arping");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l[start..].find(']')? + start;
            Some(l[start..end].to_lowercase())
        })
        .collect()
}

/// The lab's node MACs: 02:b1:00:00:00:<10+I>.
fn node_mac(i: usize) -> String {
    format!("02:b1:00:00:00:{:02x}", 10 + i)
}

fn mac_node(mac: &str) -> Option<usize> {
    let last = mac.strip_prefix("02:b1:00:00:00:")?;
    usize::from_str_radix(last, 16).ok()?.checked_sub(10)
}
