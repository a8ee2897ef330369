//! The control-channel lab: the operator serving barelb.control.v1 on a
//! Unix socket, a relay namespace that speakers in node namespaces reach
//! over the lab network, Node objects and pod-bound tokens for them, and a
//! client namespace that asks ARP who has an address.

use std::time::{Duration, Instant};

use barelb_testsupport::lab::output_text;
use barelb_testsupport::netlab::{Host, Process, Topology};
use serde_json::json;

use super::{Instance, Operator};

pub const RELAY_PORT: &str = "9444";

/// Where the operator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorAt {
    /// The root namespace (next to the apiserver), its control channel on
    /// a Unix socket that the "relay" namespace forwards to: connections
    /// reach it without their source address.
    Root,
    /// Namespace "operator" on the lab network, its control channel on TCP
    /// there, so it sees each speaker's real address; the apiserver is
    /// relayed into the namespace on the same 127.0.0.1 port.
    Namespace,
}

pub struct Cluster {
    pub topo: Topology,
    pub op: Operator,
    _relays: Vec<Process>,
    _root_relay: Option<RootProcess>,
    pub dir: std::path::PathBuf,
    pub op_ns: String,
    pub ca: std::path::PathBuf,
    /// The operator's metrics endpoint (HOST:PORT on its loopback).
    pub metrics: String,
    /// What speakers dial.
    pub operator_url: String,
    at: OperatorAt,
    /// Flags every operator of this cluster gets besides the control ones.
    extra: Vec<String>,
    /// Dropped last (fields drop in order): after the operator, so its
    /// clean-up of the test's Services is not undone by a live operator.
    pub inst: Instance,
}

/// A process in the root namespace, killed on drop.
struct RootProcess(std::process::Child);

impl Drop for RootProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Cluster {
    /// A new operator on the same socket, namespace and flags as the first.
    pub fn start_operator(&mut self) -> Operator {
        let (metrics, extra) = (self.metrics.clone(), self.extra.clone());
        start_control_operator(
            &mut self.inst,
            &self.topo,
            self.at,
            &self.dir,
            &self.op_ns,
            &metrics,
            &extra,
        )
    }

    /// The operator's metrics (OpenMetrics text; "" while it does not answer).
    pub fn scrape(&self) -> String {
        match self.at {
            OperatorAt::Root => super::http_get(&self.metrics, "/metrics"),
            OperatorAt::Namespace => {
                let url = format!("http://{}/metrics", self.metrics);
                let out = self
                    .topo
                    .host("operator")
                    .ns
                    .exec_output(&["curl", "-s", "--max-time", "5", &url])
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        }
    }

    /// A rolling restart: the operator is stopped (SIGTERM) and a new one
    /// started, which leads at once; returns when `speakers` speakers have
    /// reconnected to it.
    pub fn restart_operator(&mut self, speakers: usize) {
        self.op.terminate();
        self.op = self.start_operator();
        let op = &self.op;
        wait_until(
            "the speakers reconnect to the new operator",
            Duration::from_secs(30),
            || op.log_text().matches("speaker connected").count() >= speakers,
        );
    }

    pub fn node_name(&self, role: &str) -> String {
        format!("{}-{role}", self.inst.id)
    }

    /// A Node object (Ready) and a speaker Pod bound to it; returns a
    /// token for that pod (audience barelb-control).
    pub fn register_node(&mut self, role: &str) -> std::path::PathBuf {
        let node = self.node_name(role);
        let lab = self.inst.lab.clone();
        let out = lab.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels: {{barelb.io/test: {}}}\n",
            self.inst.id
        ));
        assert!(out.status.success(), "{}", output_text(&out));
        self.inst.guard("node", &node);
        // Its address on the lab network, as a kubelet would report it.
        let address = self.topo.host(role).ipv4.to_string();
        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
            "reason": "KubeletReady", "message": "lab", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "addresses": [{"type": "InternalIP", "address": address}]}});
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
        let op_ns = self.op_ns.clone();
        self.inst.guard_pod(&op_ns, &pod);
        self.token_for(&pod, role)
    }

    pub fn token_for(&self, pod: &str, tag: &str) -> std::path::PathBuf {
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

    pub fn speaker(
        &self,
        role: &str,
        node: &str,
        token: &std::path::Path,
    ) -> (Process, std::path::PathBuf) {
        self.speaker_with_ca(role, node, token, &self.ca)
    }

    /// [`Cluster::speaker`] trusting `ca` (a rogue without the real CA).
    pub fn speaker_with_ca(
        &self,
        role: &str,
        node: &str,
        token: &std::path::Path,
        ca: &std::path::Path,
    ) -> (Process, std::path::PathBuf) {
        let host = self.topo.host(role);
        // A second speaker for one node (succession tests) logs beside the first.
        let log = (1..)
            .map(|n| match n {
                1 => self.dir.join(format!("speaker-{role}-{node}.log")),
                n => self.dir.join(format!("speaker-{role}-{node}-{n}.log")),
            })
            .find(|p| !p.exists())
            .unwrap();
        let bin = barelb_testsupport::binary("barelb-speaker");
        let p = host
            .ns
            .spawn_logged(
                &[
                    bin.to_str().unwrap(),
                    "run",
                    "--operator",
                    &self.operator_url,
                    "--node",
                    node,
                    "--token-file",
                    token.to_str().unwrap(),
                    "--ca-file",
                    ca.to_str().unwrap(),
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

/// An operator serving the control channel where `at` says.
fn start_control_operator(
    inst: &mut Instance,
    topo: &Topology,
    at: OperatorAt,
    dir: &std::path::Path,
    op_ns: &str,
    metrics: &str,
    extra: &[String],
) -> Operator {
    let listen = match at {
        OperatorAt::Root => format!("unix:{}", dir.join("control.sock").display()),
        OperatorAt::Namespace => format!("{}:{RELAY_PORT}", topo.host("operator").ipv4),
    };
    let mut args = vec![
        "--control-addr".to_string(),
        listen,
        "--speaker-service-account".to_string(),
        format!("{op_ns}/barelb-speaker"),
    ];
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match at {
        OperatorAt::Root => inst.operator_at(metrics, &args),
        OperatorAt::Namespace => inst.operator_in(&topo.host("operator").ns, metrics, &args),
    }
}

pub async fn cluster(test: &str, roles: &[&str]) -> Cluster {
    cluster_with(test, roles, &[]).await
}

/// [`cluster`], its operators started with `extra` flags as well.
pub async fn cluster_with(test: &str, roles: &[&str], extra: &[&str]) -> Cluster {
    build(test, roles, extra, OperatorAt::Root).await
}

/// [`cluster_with`], the operator in namespace "operator" on the lab
/// network: it sees each speaker's real source address.
pub async fn cluster_in_namespace(test: &str, roles: &[&str], extra: &[&str]) -> Cluster {
    build(test, roles, extra, OperatorAt::Namespace).await
}

/// The apiserver's loopback port, from the lab's kubeconfig.
fn apiserver_port(inst: &Instance) -> String {
    let text = std::fs::read_to_string(&inst.lab.kubeconfig).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: https://127.0.0.1:"))
        .expect("the lab kubeconfig names https://127.0.0.1:PORT")
        .trim()
        .to_string()
}

/// Relays the apiserver into the "operator" namespace at the same
/// 127.0.0.1 port: one relay in the root namespace from a Unix socket,
/// one in the namespace to it.
fn relay_apiserver(
    inst: &Instance,
    topo: &Topology,
    dir: &std::path::Path,
) -> (RootProcess, Process) {
    let port = apiserver_port(inst);
    let sock = dir.join("apiserver.sock");
    let bin = barelb_testsupport::binary("lab-relay");
    let log = std::fs::File::create(dir.join("relay-apiserver-root.log")).unwrap();
    let root = std::process::Command::new(&bin)
        .args([
            format!("unix:{}", sock.display()),
            format!("127.0.0.1:{port}"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let root = RootProcess(root);
    wait_until(
        "the apiserver relay's socket",
        Duration::from_secs(10),
        || sock.exists(),
    );
    let inner = topo
        .host("operator")
        .ns
        .spawn_logged(
            &[
                bin.to_str().unwrap(),
                &format!("127.0.0.1:{port}"),
                &format!("unix:{}", sock.display()),
            ],
            &dir.join("relay-apiserver-ns.log"),
        )
        .unwrap();
    (root, inner)
}

async fn build(test: &str, roles: &[&str], extra: &[&str], at: OperatorAt) -> Cluster {
    let mut inst = Instance::new(test).await;
    let mut all = roles.to_vec();
    all.extend([
        "client",
        match at {
            OperatorAt::Root => "relay",
            OperatorAt::Namespace => "operator",
        },
    ]);
    let topo = Topology::build(&all).unwrap();
    let dir = barelb_testsupport::lab::lab_dir()
        .join("control")
        .join(&inst.id);
    std::fs::create_dir_all(&dir).unwrap();
    let op_ns = format!("{}-op", inst.id);
    let out = inst.lab.kubectl(&["create", "namespace", &op_ns]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = inst
        .lab
        .kubectl(&["create", "serviceaccount", "barelb-speaker", "-n", &op_ns]);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut relays = Vec::new();
    let mut root_relay = None;
    let (metrics, operator_url) = match at {
        OperatorAt::Root => (
            super::free_local_addr(),
            format!("https://{}:{RELAY_PORT}", topo.host("relay").ipv4),
        ),
        OperatorAt::Namespace => {
            let (root, inner) = relay_apiserver(&inst, &topo, &dir);
            root_relay = Some(root);
            relays.push(inner);
            (
                "127.0.0.1:9090".to_string(),
                format!("https://{}:{RELAY_PORT}", topo.host("operator").ipv4),
            )
        }
    };
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let op = start_control_operator(&mut inst, &topo, at, &dir, &op_ns, &metrics, &extra);
    // The operator publishes its control CA; speakers trust it.
    let ca = dir.join("ca.crt");
    let sock = dir.join("control.sock");
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
        let listening = at == OperatorAt::Namespace || sock.exists();
        if out.status.success() && !out.stdout.is_empty() && listening {
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
    if at == OperatorAt::Root {
        let relay_host = topo.host("relay");
        relays.push(
            relay_host
                .ns
                .spawn_logged(
                    &[
                        barelb_testsupport::binary("lab-relay").to_str().unwrap(),
                        &format!("{}:{RELAY_PORT}", relay_host.ipv4),
                        &format!("unix:{}", sock.display()),
                    ],
                    &dir.join("relay.log"),
                )
                .unwrap(),
        );
    }
    Cluster {
        inst,
        topo,
        op,
        _relays: relays,
        _root_relay: root_relay,
        dir,
        op_ns,
        ca,
        metrics,
        operator_url,
        at,
        extra,
    }
}

/// MACs that answer ARP for `ip` from `client`.
pub fn arp_answers(client: &Host, ip: &str) -> Vec<String> {
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

pub fn neigh_mac(client: &Host, ip: &str) -> Option<String> {
    let out = client.ns.ip(&["-j", "neigh", "show", ip]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v.get(0)?["lladdr"].as_str().map(str::to_lowercase)
}

pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
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
pub async fn service_with_endpoint(c: &mut Cluster, name: &str, node: &str) -> String {
    c.inst.service(name, json!({}), json!({})).await;
    let out = c.inst.lab.apply(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nendpoints:\n- addresses: [\"10.244.0.10\"]\n  nodeName: {node}\n  conditions: {{ready: true}}\nports: [{{port: 80, protocol: TCP}}]\n",
        ns = c.inst.ns
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    c.inst.wait_ips(name, 1).await[0].to_string()
}

/// A cluster with an L2 pool and two registered nodes with running
/// speakers: (cluster, node-a's name, node-b's name, speakers).
pub async fn l2_pair(test: &str) -> (Cluster, String, String, Process, Process) {
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
    (c, na, nb, pa, pb)
}

/// Two speakers and a Service; returns (cluster, vip, owner MAC, other MAC,
/// owner role, speakers).
pub async fn two_nodes_and_a_service(
    test: &str,
) -> (Cluster, String, String, String, &'static str, Vec<Process>) {
    let (mut c, na, _nb, pa, pb) = l2_pair(test).await;
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
