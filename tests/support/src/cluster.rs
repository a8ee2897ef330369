//! The lab cluster: a control plane with real nodes (`tests/lab up --nodes
//! N` in `target/cluster`, or `BARELB_CLUSTER_DIR`), each a network
//! namespace on the lab LAN with containerd, kubelet, CNI and kube-proxy.
//! Tests reach its apiserver through a [`Lab`], inject faults on its nodes,
//! and put client hosts on its LAN.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

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
    dir: PathBuf,
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
    /// The node cannot reach the control plane (nor it the node); the LAN stays.
    Partition,
}

impl Fault {
    fn verbs(self) -> (&'static str, &'static str) {
        match self {
            Fault::StopKubelet => ("stop-kubelet", "start-kubelet"),
            Fault::Freeze => ("freeze", "thaw"),
            Fault::Cut => ("cut", "uncut"),
            Fault::Partition => ("partition", "heal"),
        }
    }
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
        let out = Command::new(crate::repo_root().join("tests/lab"))
            .args(["node", &i.to_string(), verb])
            .env("BARELB_LAB_DIR", &self.dir)
            .output()
            .expect("run tests/lab node");
        assert!(
            out.status.success(),
            "tests/lab node {i} {verb}: {}",
            output_text(&out)
        );
    }

    /// A host on the cluster's LAN (its own network namespace, address
    /// 198.19.0.`host`), removed on drop: a client outside every node.
    pub fn client(&self, host: u8) -> Client {
        let ns = format!("lc-client-{host}");
        let run = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {}", output_text(&out));
        };
        let lan_if = format!("c{host}");
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        run(&["netns", "add", &ns]);
        let client = Client { ns: ns.clone() };
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
        client
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
}

impl Client {
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

impl Drop for Client {
    fn drop(&mut self) {
        // Deleting the namespace removes its veth and the peer on the LAN.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
