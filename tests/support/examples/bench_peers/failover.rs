//! L2 failover, measured from the client: Services on the LAN pool, a
//! client host on the LAN watching its neighbour entries for their
//! addresses, a fault on a node that answers for one, and the time until
//! the client's entry names another node (the first gratuitous ARP it
//! took). A poller (a new connection every 10 ms) counts what the client
//! lost meanwhile. The node is chosen by role: one that does not run the
//! deciding controller (barelb's leader, MetalLB's controller), or, for
//! one row, the one that does.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use barelb_testsupport::chaos::{
    ArpCapture, ArpPacket, answer_rounds, longest_double_answer, mac_of, unix_seconds,
};
use barelb_testsupport::cluster::{Client, Cluster, Fault as NodeFault, is_ready};
use barelb_testsupport::install::{address, apply, backend_yaml};
use barelb_testsupport::lab::output_text;
use barelb_testsupport::neigh::NeighWatch;
use barelb_testsupport::peers::{Deployed, LAN_POOL, Peer};
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
    /// The same, on the node running the deciding controller.
    BlackholedControllerNode,
    /// The node's LAN interface goes down.
    InterfaceDown,
    /// Its kubelet stops (the Node goes NotReady after 20 s); the speaker
    /// and the data path keep running.
    KubeletStopped,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::SpeakerKilled,
        Fault::SpeakerHung,
        Fault::Blackholed,
        Fault::BlackholedControllerNode,
        Fault::InterfaceDown,
        Fault::KubeletStopped,
    ];

    /// Its name in BARELB_PEERS_FAULTS.
    pub fn key(self) -> &'static str {
        match self {
            Fault::SpeakerKilled => "killed",
            Fault::SpeakerHung => "hung",
            Fault::Blackholed => "blackholed",
            Fault::BlackholedControllerNode => "controller-node",
            Fault::InterfaceDown => "interface-down",
            Fault::KubeletStopped => "kubelet",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Fault::SpeakerKilled => "speaker killed (kubelet restarts it)",
            Fault::SpeakerHung => "speaker hung (SIGSTOP)",
            Fault::Blackholed => "node silently blackholed",
            Fault::BlackholedControllerNode => {
                "the controller's node silently blackholed (barelb: the leader's)"
            }
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
    /// Runs left out: no address was on a node of the role asked for.
    pub no_candidate: usize,
    /// Runs after which the address did not come back to its node.
    pub not_home: usize,
    /// Repairs after which its addresses were watched: one per run, or,
    /// for the controller's-node fault, one per implementation's turn
    /// (each repair of either side's node can leave both answering twice).
    pub repairs: usize,
    /// Repairs after which two nodes answered for its address: the longest
    /// run of 100-ms rounds (a broadcast ARP request each, every reply
    /// captured on the LAN) in which two did.
    pub split: Vec<Duration>,
}

/// How many Services the target has: enough that each node, the
/// controller's included, almost surely answers for one.
const SERVICES: usize = 20;

/// A backend on every node and SERVICES Services of one implementation
/// from its LAN pool; removed on drop.
pub struct Target {
    c: Cluster,
    ns: String,
    pub vips: Vec<String>,
}

impl Target {
    pub fn deploy(c: &Cluster, peer: Peer) -> Target {
        let ns = unique_name(&format!("peers-{}", peer.name().to_lowercase()));
        let n = c.nodes;
        let class = peer
            .class()
            .map_or(String::new(), |c| format!("\n  loadBalancerClass: {c}"));
        let mut yaml = backend_yaml(&ns, n, Some("ScheduleAnyway"));
        for k in 0..SERVICES {
            yaml += &format!(
                r#"---
apiVersion: v1
kind: Service
metadata:
  name: web{k}
  namespace: {ns}
  annotations: {{barelb.io/pool: {LAN_POOL}, metallb.io/address-pool: {LAN_POOL}}}
spec:
  type: LoadBalancer{class}
  selector: {{app: backend}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
            );
        }
        apply(c, &yaml);
        let vips = (0..SERVICES)
            .map(|k| address(c, &ns, &format!("web{k}")))
            .collect();
        Target {
            c: c.clone(),
            ns,
            vips,
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

/// One implementation under test: installed, with its Services.
pub struct Side<'a> {
    pub d: &'a Deployed,
    pub target: &'a Target,
}

/// Which node answers for each address.
type Owners = BTreeMap<String, usize>;

/// Runs `fault` `runs` times against every side at once (one fault, each
/// side's address on the faulted node timed on the same clock), except the
/// controller's-node fault, whose node depends on the side: there each run
/// faults one side's controller node after the other's. One Outcome per side.
pub fn measure(
    c: &Cluster,
    sides: &[Side],
    client: &Client,
    fault: Fault,
    runs: usize,
) -> Vec<Outcome> {
    let vips: Vec<String> = sides.iter().flat_map(|s| s.target.vips.clone()).collect();
    let watch = client.watch_neigh(&vips);
    let mut outs = vec![
        Outcome {
            runs,
            ..Outcome::default()
        };
        sides.len()
    ];
    let turns: Vec<Vec<usize>> = if fault == Fault::BlackholedControllerNode {
        (0..sides.len()).map(|i| vec![i]).collect()
    } else {
        vec![(0..sides.len()).collect()]
    };
    let asker = mac_of(&client.ns);
    let mut home: Option<Owners> = None;
    // Owners as the last repair's settling left them (steady already).
    let mut settled: Option<Owners> = None;
    for run in 1..=runs {
        for turn in &turns {
            let owners = match settled.take() {
                Some(o) => o,
                None => settle(c, sides, client, &vips, home.as_ref(), &mut outs),
            };
            home = Some(owners.clone());
            let Some((node, picks)) = choose(sides, turn, &owners, fault) else {
                eprintln!(
                    "bench-peers: {fault:?} run {run}: no node holds an address of each side in that role"
                );
                for &i in turn {
                    outs[i].no_candidate += 1;
                }
                continue;
            };
            let owner_mac = node_mac(node);
            for (_, vip) in &picks {
                refresh_entry(client, &watch, vip, &owner_mac);
            }
            let urls: Vec<String> = picks.iter().map(|(_, v)| format!("http://{v}/")).collect();
            let poller = client.poll(&urls, 10);
            std::thread::sleep(Duration::from_secs(1));
            let t = Instant::now();
            let repairs = inject(c, sides, turn, node, fault);
            let moved: Vec<_> = picks
                .iter()
                .map(|(_, vip)| watch.wait_moved(vip, &owner_mac, t, fault.patience()))
                .collect();
            // The client's view for a moment longer: what the move cost it.
            std::thread::sleep(Duration::from_secs(2));
            let polled = poller.stop();
            let picked: Vec<String> = picks.iter().map(|(_, v)| v.clone()).collect();
            let capture = ArpCapture::start(LAN_NS, &client.ns, &picked);
            let repaired = unix_seconds();
            for r in repairs {
                r.undo();
            }
            settled = Some(settle(c, sides, client, &vips, home.as_ref(), &mut outs));
            let packets = capture.stop();
            for (i, vip) in &picks {
                outs[*i].repairs += 1;
                if let Some(d) = double_answer(&packets, vip, &asker, repaired) {
                    eprintln!(
                        "bench-peers: {} {fault:?} run {run}: after the repair two nodes answered {vip} for {} ms",
                        sides[*i].d.peer.name(),
                        d.as_millis()
                    );
                    outs[*i].split.push(d);
                }
            }
            for (((i, vip), moved), p) in picks.iter().zip(moved).zip(&polled) {
                let (d, out) = (sides[*i].d, &mut outs[*i]);
                out.requests += p.requests;
                out.failed += p.failed;
                out.gaps_ms.push(p.longest_gap_ms);
                eprintln!(
                    "bench-peers: {} {fault:?} run {run}: {vip} on node-{node} → {} (lost {}/{}, longest gap {} ms)",
                    d.peer.name(),
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
            assert_eq!(polled.len(), picks.len(), "one poll result per address");
        }
    }
    outs
}

/// The LAN bridge's namespace in the lab (`tests/kube-lab`).
const LAN_NS: &str = "lc-lan";

/// The longest run of 100-ms rounds after `repaired` (seconds since the
/// epoch) in which two nodes answered `vip`, if any round had two.
fn double_answer(packets: &[ArpPacket], vip: &str, asker: &str, repaired: f64) -> Option<Duration> {
    let rounds: Vec<_> = answer_rounds(packets, vip, asker)
        .into_iter()
        .filter(|(at, _)| *at >= repaired)
        .collect();
    let (longest, doubled) = longest_double_answer(&rounds);
    (doubled > 0).then(|| Duration::from_secs_f64(longest))
}

/// The node to fault and, for each side of `turn`, an address it answers
/// for: a node holding one of each, not running any side's deciding
/// controller — or, for the controller's-node fault, the one that does.
fn choose(
    sides: &[Side],
    turn: &[usize],
    owners: &Owners,
    fault: Fault,
) -> Option<(usize, Vec<(usize, String)>)> {
    let ctrl: Vec<Option<usize>> = turn.iter().map(|&i| sides[i].d.controller_node()).collect();
    let on_ctrl = fault == Fault::BlackholedControllerNode;
    let nodes: BTreeSet<usize> = owners.values().copied().collect();
    nodes.into_iter().find_map(|node| {
        let wrong_role = if on_ctrl {
            !ctrl.iter().all(|c| *c == Some(node))
        } else {
            ctrl.contains(&Some(node))
        };
        if wrong_role {
            return None;
        }
        let picks = turn
            .iter()
            .map(|&i| {
                let vip = sides[i]
                    .target
                    .vips
                    .iter()
                    .find(|v| owners.get(*v) == Some(&node))?;
                Some((i, vip.clone()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some((node, picks))
    })
}

/// Makes the client's entry for `vip` name `mac` (its owner) before a run.
fn refresh_entry(client: &Client, watch: &NeighWatch, vip: &str, mac: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while watch.current(vip).as_deref() != Some(mac) {
        assert!(
            Instant::now() < deadline,
            "the client's entry for {vip} does not name {mac}"
        );
        let _ = Command::new("ip")
            .args(["-n", &client.ns, "neigh", "flush", "to", vip])
            .output();
        let _ = client.get(&format!("http://{vip}/"));
    }
}

/// How a fault is undone.
enum Repair<'a> {
    /// A fresh speaker Pod on the node (no restart back-off carried over).
    ReplaceSpeaker(&'a Deployed, usize),
    Resume(u32),
    Node(barelb_testsupport::cluster::Injected),
}

impl Repair<'_> {
    fn undo(self) {
        match self {
            Repair::ReplaceSpeaker(d, i) => d.replace_speaker(i),
            Repair::Resume(pid) => signal("-CONT", pid),
            Repair::Node(guard) => drop(guard),
        }
    }
}

/// Faults `node`: each side's speaker there (speaker faults), or the node.
fn inject<'a>(
    c: &Cluster,
    sides: &[Side<'a>],
    turn: &[usize],
    node: usize,
    fault: Fault,
) -> Vec<Repair<'a>> {
    let speaker = |d: &Deployed| {
        d.speaker_pid(node)
            .unwrap_or_else(|| panic!("no {} speaker on node-{node}", d.peer.name()))
    };
    match fault {
        Fault::SpeakerKilled => turn
            .iter()
            .map(|&i| {
                let d = sides[i].d;
                signal("-KILL", speaker(d));
                Repair::ReplaceSpeaker(d, node)
            })
            .collect(),
        Fault::SpeakerHung => turn
            .iter()
            .map(|&i| {
                let pid = speaker(sides[i].d);
                signal("-STOP", pid);
                Repair::Resume(pid)
            })
            .collect(),
        Fault::Blackholed | Fault::BlackholedControllerNode => {
            vec![Repair::Node(c.inject(node, NodeFault::Blackhole))]
        }
        Fault::InterfaceDown => vec![Repair::Node(c.inject(node, NodeFault::Cut))],
        Fault::KubeletStopped => vec![Repair::Node(c.inject(node, NodeFault::StopKubelet))],
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

/// Waits until the cluster is whole again and exactly one node answers
/// for each address, steadily (no change of the client's entries for 3 s)
/// and, after a fault, the node it answered from before (`home`: both
/// implementations give an address back to its node once that is healthy;
/// a run must not start while one is still on its way). Past 180 s it takes
/// what it finds and counts the run as `not_home` for every side.
fn settle(
    c: &Cluster,
    sides: &[Side],
    client: &Client,
    vips: &[String],
    home: Option<&Owners>,
    outs: &mut [Outcome],
) -> Owners {
    let start = Instant::now();
    let mut last: Option<Owners> = None;
    let mut steady_since = Instant::now();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the addresses did not settle on one node each in 300 s; the last round's answers (address → MACs): {seen:?}"
        );
        for s in sides {
            s.d.wait_ready();
        }
        if !all_nodes_ready(c) {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let answering = responders(client, vips);
        seen.clone_from(&answering);
        let owners: Option<Owners> = answering
            .iter()
            .map(|(vip, macs)| {
                let mac = (macs.len() == 1).then(|| macs.iter().next())??;
                Some((vip.clone(), mac_node(mac)?))
            })
            .collect();
        if owners != last {
            last = owners.clone();
            steady_since = Instant::now();
        }
        let Some(owners) = owners else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        if steady_since.elapsed() < Duration::from_secs(3) {
            continue;
        }
        match home {
            Some(h) if *h != owners && start.elapsed() < Duration::from_secs(180) => {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Some(h) if *h != owners => {
                eprintln!("bench-peers: addresses did not return home in 180 s");
                for out in outs.iter_mut() {
                    out.not_home += 1;
                }
            }
            _ => {}
        }
        return owners;
    }
}

fn all_nodes_ready(c: &Cluster) -> bool {
    let nodes = c.json(&["get", "nodes"]);
    let ready = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| is_ready(n))
        .count();
    ready == c.nodes
}

/// The MACs that answer an ARP request for each address from the client
/// (arping, 2 requests each, all addresses at once).
fn responders(client: &Client, vips: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let children: Vec<_> = vips
        .iter()
        .map(|vip| {
            let child = Command::new("ip")
                .args([
                    "netns", "exec", &client.ns, "arping", "-c", "2", "-w", "3", "-I", "eth0", vip,
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("run arping");
            (vip.clone(), child)
        })
        .collect();
    children
        .into_iter()
        .map(|(vip, child)| {
            let out = child.wait_with_output().expect("wait for arping");
            let macs = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("reply from"))
                .filter_map(|l| {
                    let start = l.find('[')? + 1;
                    let end = l[start..].find(']')? + start;
                    Some(l[start..end].to_lowercase())
                })
                .collect();
            (vip, macs)
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
