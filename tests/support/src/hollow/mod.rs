//! Hollow nodes (kubemark's word): Node objects with no kubelet behind
//! them, so a benchmark can count what 50 speakers ask of the apiserver on
//! two cores. The harness plays each one's kubelet for the little that
//! matters here: it renews the node's Lease (so the node stays Ready), and
//! it runs the speaker Pods the DaemonSets place there — the speaker binary
//! the image was built from, as a process in a namespace on the LAN at the
//! node's address, with its Pod's arguments and environment and a token
//! bound to its Pod — and reports them Running and Ready.
//!
//! The nodes are cordoned: a DaemonSet places its Pods on a cordoned node,
//! nothing else does, so no workload lands where nothing would run it.
//! Neither load balancer skips a cordoned node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

mod pod;

use pod::{
    config_value, launch, metrics_url, pod_name, report_running, secret_value, spawn,
    speaker_binary, wait_serving,
};

use crate::cluster::{Cluster, lan_host, remove_lan_host};
use crate::install::ok;
use crate::netlab::Process;
use crate::peers::Peer;

/// How often the harness renews a hollow node's Lease (the lab declares a
/// silent node NotReady after 20 s).
const HEARTBEAT: Duration = Duration::from_secs(4);

/// Hollow nodes `hollow-I` (I after the real nodes' numbers, address
/// 198.19.0.(10 + I) as the real ones'), removed with everything they ran
/// on drop.
#[derive(Debug)]
pub struct HollowNodes {
    c: Cluster,
    nodes: Vec<Hollow>,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    /// The neighbour-table ceilings before they were raised, restored on drop.
    neighbours: Vec<(PathBuf, String)>,
    heartbeat: Option<JoinHandle<()>>,
    /// Each speaker started, with its log.
    speakers: Vec<(Process, PathBuf)>,
}

impl HollowNodes {
    /// Adds hollow nodes until the cluster has `total` nodes, and waits
    /// until every one is Ready.
    pub fn add(c: &Cluster, total: usize) -> HollowNodes {
        let dir = c.dir.join("hollow");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("hollow nodes' directory");
        // The struct exists before anything is made, and each thing is
        // recorded as it is made: a panic from here on drops it, which
        // removes what was made so far (namespaces, ceilings, Nodes).
        let mut hollow = HollowNodes {
            c: c.clone(),
            nodes: Vec::new(),
            dir,
            stop: Arc::new(AtomicBool::new(false)),
            heartbeat: None,
            speakers: Vec::new(),
            neighbours: Vec::new(),
        };
        raise_neighbour_ceilings(total, &mut hollow.neighbours);
        for i in c.nodes + 1..=total {
            let host = u8::try_from(10 + i).expect("at most 245 nodes on the /24");
            let ns = lan_host("hollow", host);
            hollow.nodes.push(Hollow {
                name: format!("hollow-{i}"),
                ip: format!("198.19.0.{host}"),
                ns: ns.clone(),
                host,
            });
            // Their speakers reach the operator's Pods (barelb's control
            // channel) as the real nodes do: through the Pods' node.
            for j in 1..=c.nodes {
                let via = c.node_ip(j).to_string();
                let out = Command::new("ip")
                    .args(["-n", &ns, "route", "replace", &c.pod_cidr(j), "via", &via])
                    .output()
                    .expect("run ip route");
                ok(out, "a hollow node's route to a node's Pods");
            }
        }
        let rt = runtime();
        rt.block_on(hollow.register())
            .expect("register hollow nodes");
        let (c2, names, stop) = (c.clone(), hollow.names(), hollow.stop.clone());
        hollow.heartbeat = Some(std::thread::spawn(move || heartbeat(&c2, &names, &stop)));
        hollow.wait_ready_nodes();
        hollow
    }

    fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|h| h.name.clone()).collect()
    }

    /// Creates each Node (cordoned), its status (Ready, its address, room
    /// for Pods) and its Lease.
    async fn register(&self) -> anyhow::Result<()> {
        let client = self.c.lab.client().await?;
        let nodes: Api<Node> = Api::all(client.clone());
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        let now = Timestamp::now().to_string();
        for Hollow { name, ip, .. } in &self.nodes {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                    "barelb.io/hollow": "true"}},
                "spec": {"unschedulable": true},
            }))?;
            nodes.create(&PostParams::default(), &node).await?;
            let room = json!({"cpu": "2", "memory": "4Gi", "pods": "110"});
            let status = json!({"status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "hollow: the benchmark harness stands in for its kubelet",
                    "lastHeartbeatTime": now, "lastTransitionTime": now}],
                "addresses": [{"type": "InternalIP", "address": ip},
                              {"type": "Hostname", "address": name}],
                "capacity": room, "allocatable": room,
            }});
            nodes
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                         "renewTime": MicroTime(Timestamp::now())},
            }))?;
            leases.create(&PostParams::default(), &lease).await?;
        }
        Ok(())
    }

    fn wait_ready_nodes(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let all = self
                .c
                .json(&["get", "nodes", "-l", "barelb.io/hollow=true"]);
            let ready = all["items"]
                .as_array()
                .map_or(0, |ns| ns.iter().filter(|n| untainted_ready(n)).count());
            if ready == self.nodes.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ready} of {} hollow nodes Ready after 120 s",
                self.nodes.len()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Runs `peer`'s speaker Pods on the hollow nodes (`debug`: the debug
    /// build of barelb's speaker, as in the suite's images) and waits until
    /// each answers on its metrics port.
    pub fn run_speakers(&mut self, peer: Peer, debug: bool) {
        let (ns, _, _, label) = peer.objects();
        let pods = self.wait_pods(ns, label);
        let rt = runtime();
        let client = rt.block_on(self.c.lab.client()).expect("a lab client");
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
        // All Running first: MetalLB's speakers join the memberlist at
        // their Pods' addresses, read when each starts.
        for (h, pod) in self.nodes.iter().zip(&pods) {
            rt.block_on(report_running(&pods_api, pod, &h.ip))
                .unwrap_or_else(|e| panic!("{}: report it Running: {e:#}", pod_name(pod)));
        }
        let given = self.given(&rt, &client, peer, ns);
        // One at a time, each serving before the next starts: 47 speakers
        // starting at once on two cores time out reaching the apiserver
        // (MetalLB's then exits, and no kubelet would restart it).
        for (h, pod) in self.nodes.clone().iter().zip(&pods) {
            let dir = self.dir.join(format!("{}-{}", peer.name(), h.name));
            std::fs::create_dir_all(&dir).expect("a hollow speaker's directory");
            let token = self.token(peer, ns, pod_name(pod));
            let (image, mut args, mut env) = launch(pod, &h.ip);
            given.write(&dir, &token, ns, &mut args, &mut env);
            let url = metrics_url(peer, &args, &h.ip);
            let bin = speaker_binary(peer, debug, &image);
            let log = dir.join("log");
            let mut speaker = spawn(&h.ns, &bin, &args, &env, &log);
            wait_serving(&h.ns, &url, &log, &mut speaker);
            self.speakers.push((speaker, log));
        }
    }

    /// Panics naming every hollow speaker that is no longer running (its
    /// log): a figure of N speakers must have had N.
    pub fn assert_running(&mut self) {
        let dead: Vec<String> = self
            .speakers
            .iter_mut()
            .filter_map(|(p, log)| (!p.is_running()).then(|| log.display().to_string()))
            .collect();
        assert!(dead.is_empty(), "hollow speakers stopped: {dead:?}");
    }

    /// What every one of `peer`'s speaker Pods is given alike, read once.
    fn given(
        &self,
        rt: &tokio::runtime::Runtime,
        client: &kube::Client,
        peer: Peer,
        ns: &str,
    ) -> Given {
        match peer {
            Peer::Barelb => Given::Barelb {
                ca: rt
                    .block_on(config_value(client, ns, "barelb-control-ca", "ca.crt"))
                    .expect("barelb's control CA"),
                operators: self.operator_endpoints(ns),
            },
            Peer::MetalLb => Given::MetalLb {
                key: rt
                    .block_on(secret_value(client, ns, "memberlist", "secretkey"))
                    .expect("MetalLB's memberlist key"),
                kubeconfig: serde_yaml::from_str(
                    &std::fs::read_to_string(&self.c.lab.kubeconfig).expect("read the kubeconfig"),
                )
                .expect("the kubeconfig is YAML"),
            },
        }
    }

    /// The speaker Pods `ns`/`label` the DaemonSet placed on the hollow
    /// nodes, in the nodes' order.
    fn wait_pods(&self, ns: &str, label: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let all = self.c.json(&["-n", ns, "get", "pods", "-l", label]);
            let items = all["items"].as_array().cloned().unwrap_or_default();
            let on = |node: &str| {
                items
                    .iter()
                    .find(|p| p["spec"]["nodeName"] == node)
                    .cloned()
            };
            let pods: Vec<Value> = self.nodes.iter().filter_map(|h| on(&h.name)).collect();
            if pods.len() == self.nodes.len() {
                return pods;
            }
            assert!(
                Instant::now() < deadline,
                "{ns}: {} of {} hollow nodes have a speaker Pod after 120 s",
                pods.len(),
                self.nodes.len()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// A token for `peer`'s speaker ServiceAccount bound to `pod`, as the
    /// kubelet projects into the Pod (barelb's with its audience).
    fn token(&self, peer: Peer, ns: &str, pod: &str) -> String {
        let (sa, audience) = match peer {
            Peer::Barelb => ("barelb-speaker", Some("barelb-control")),
            Peer::MetalLb => ("speaker", None),
        };
        let mut args = vec!["-n", ns, "create", "token", sa, "--duration=1h"];
        args.extend(["--bound-object-kind=Pod", "--bound-object-name", pod]);
        if let Some(a) = audience {
            args.extend(["--audience", a]);
        }
        ok(self.c.lab.kubectl(&args), "kubectl create token")
            .trim()
            .to_string()
    }

    /// `--operator` for every operator Pod (only the leader accepts).
    fn operator_endpoints(&self, ns: &str) -> Vec<String> {
        let slices = self.c.json(&[
            "-n",
            ns,
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=barelb-control",
        ]);
        let mut out = Vec::new();
        for s in slices["items"].as_array().into_iter().flatten() {
            let port = s["ports"][0]["port"]
                .as_u64()
                .expect("barelb-control's port");
            for e in s["endpoints"].as_array().into_iter().flatten() {
                for a in e["addresses"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "--operator=https://{}:{port}",
                        a.as_str().unwrap_or("?")
                    ));
                }
            }
        }
        assert!(!out.is_empty(), "barelb-control has no endpoint");
        out
    }
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        for (p, _) in &mut self.speakers {
            p.kill();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        for Hollow { name, ns, host, .. } in &self.nodes {
            let _ = self
                .c
                .lab
                .kubectl(&["delete", "node", name, "--wait=false"]);
            let _ = self.c.lab.kubectl(&[
                "-n",
                "kube-node-lease",
                "delete",
                "lease",
                name,
                "--ignore-not-found",
            ]);
            let field = format!("spec.nodeName={name}");
            // No kubelet confirms these Pods' end: force them gone.
            let _ = self.c.lab.kubectl(&[
                "delete",
                "pods",
                "-A",
                "--field-selector",
                &field,
                "--force",
                "--grace-period=0",
            ]);
            remove_lan_host(ns, *host);
        }
        for (path, was) in &self.neighbours {
            let _ = std::fs::write(path, was);
        }
    }
}

/// What a speaker Pod of one implementation mounts or finds in a Pod, the
/// same for every one of them (its token aside).
enum Given {
    /// The control channel's CA; the operators' endpoints (no Service
    /// address without kube-proxy).
    Barelb { ca: String, operators: Vec<String> },
    /// The memberlist key; the lab's kubeconfig (its server and CA).
    MetalLb {
        key: Vec<u8>,
        kubeconfig: serde_yaml::Value,
    },
}

impl Given {
    /// Writes what the Pod mounts, with `token`, to `dir`, and adds what
    /// points the speaker there to its arguments or environment (later
    /// environment entries win).
    fn write(
        &self,
        dir: &Path,
        token: &str,
        ns: &str,
        args: &mut Vec<String>,
        env: &mut Vec<(String, String)>,
    ) {
        let path = |p: &str| dir.join(p).display().to_string();
        match self {
            Given::Barelb { ca, operators } => {
                std::fs::write(dir.join("token"), token).expect("write the token");
                std::fs::write(dir.join("ca.crt"), ca).expect("write the CA");
                args.push(format!("--token-file={}", path("token")));
                args.push(format!("--ca-file={}", path("ca.crt")));
                args.extend(operators.iter().cloned());
            }
            Given::MetalLb { key, kubeconfig } => {
                // The lab's kubeconfig with the Pod's token as its user.
                let mut config = kubeconfig.clone();
                let mut user = serde_yaml::Mapping::new();
                user.insert("token".into(), token.into());
                config["users"][0]["user"] = user.into();
                let text = serde_yaml::to_string(&config).expect("a kubeconfig");
                std::fs::write(dir.join("kubeconfig"), text).expect("write the kubeconfig");
                // Not given: the ConfigMap `metallb-excludel2` the DaemonSet
                // mounts at /etc/metallb, a path the speaker fixes. Without it
                // the speaker excludes no interface from layer-2 announcing;
                // a hollow node has only `lo` and `eth0`, and the hollow rows
                // announce by BGP only, so nothing measured depends on it.
                std::fs::create_dir_all(dir.join("ml")).expect("memberlist key dir");
                std::fs::write(dir.join("ml/secretkey"), key).expect("write the key");
                env.extend([
                    ("METALLB_ML_SECRET_KEY_PATH".into(), path("ml")),
                    ("KUBECONFIG".into(), path("kubeconfig")),
                    // In a Pod it reads its ServiceAccount's namespace file.
                    ("METALLB_NAMESPACE".into(), ns.into()),
                ]);
            }
        }
    }
}

/// One hollow node: its Node's name, its address (198.19.0.`host`) and its
/// namespace on the LAN.
#[derive(Clone, Debug)]
struct Hollow {
    name: String,
    ip: String,
    ns: String,
    host: u8,
}

/// Raises the kernel's neighbour-table ceilings (`gc_thresh1..3`, IPv4 and
/// IPv6) for `nodes` nodes' full mesh; records each raised one's former
/// value in `former` as it goes, so a failure part-way restores the rest.
/// Why: the table is one for every namespace on the machine, its default
/// ceiling 1,024 entries. 50 speakers that all talk to each other (MetalLB's
/// memberlist) need ~2,500 — each machine of a real cluster has its own —
/// and past the ceiling a namespace cannot resolve even the apiserver's
/// address: a MetalLB speaker failed to start with "no route to host" or a
/// 30-s dial timeout (`/proc/net/stat/arp_cache`: 7,041 `table_fulls`).
fn raise_neighbour_ceilings(nodes: usize, former: &mut Vec<(PathBuf, String)>) {
    let need = nodes * nodes * 4;
    for family in ["ipv4", "ipv6"] {
        for (name, share) in [("gc_thresh1", 8), ("gc_thresh2", 2), ("gc_thresh3", 1)] {
            let path = PathBuf::from(format!("/proc/sys/net/{family}/neigh/default/{name}"));
            let Ok(was) = std::fs::read_to_string(&path) else {
                continue;
            };
            let want = need / share;
            if was.trim().parse::<usize>().is_ok_and(|v| v < want) {
                std::fs::write(&path, want.to_string())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                former.push((path, was.trim().to_string()));
            }
        }
    }
}

/// A runtime for the few kube-rs calls (the benchmark's is busy elsewhere).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Renews every hollow node's Lease each HEARTBEAT until `stop`.
fn heartbeat(c: &Cluster, names: &[String], stop: &AtomicBool) {
    let rt = runtime();
    let Ok(client) = rt.block_on(c.lab.client()) else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    while !stop.load(Ordering::Relaxed) {
        let patch = Patch::Merge(json!({"spec": {"renewTime": MicroTime(Timestamp::now())}}));
        let params = PatchParams::default();
        for name in names {
            if let Err(e) = rt.block_on(leases.patch(name, &params, &patch)) {
                eprintln!("hollow: renew {name}'s Lease: {e}");
            }
        }
        let until = Instant::now() + HEARTBEAT;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Ready, and no longer tainted not-ready (the node controller's taint
/// goes a moment after the first Ready).
fn untainted_ready(node: &Value) -> bool {
    let tainted = node["spec"]["taints"].as_array().is_some_and(|ts| {
        ts.iter()
            .any(|t| t["key"].as_str().is_some_and(|k| k.ends_with("not-ready")))
    });
    crate::cluster::is_ready(node) && !tainted
}
