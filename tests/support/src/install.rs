//! barelb installed the way a user installs it, on the lab cluster: images
//! imported into the nodes, the Helm chart or the kustomize overlay, and a
//! workload (pools, a backend, Services) to point a client at. Shared by
//! the install tests and `scripts/bench-upgrade`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test tooling: failing loudly is the point

use std::process::{Command, Output};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::cluster::{Client, Cluster, LanRouter, cluster_dir, is_ready};
use crate::lab::{helm_bin, output_text};
use crate::{repo_root, unique_name};

/// barelb's namespace.
pub const NS: &str = "barelb-system";

/// stdout of a command that must succeed.
pub fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

static IMAGES: Once = Once::new();

/// Builds the images from the binaries `cargo test` built and imports them
/// into every node, also tagged `0.1.0-next` (the "new version" an upgrade
/// rolls to: same content, a new Pod template).
pub fn load_images() {
    load_images_built(&["--debug"]);
}

/// [`load_images`] with `scripts/images ARGS` (none: the release build).
pub fn load_images_built(args: &[&str]) {
    IMAGES.call_once(|| {
        let root = repo_root();
        ok(
            Command::new(root.join("scripts/images"))
                .args(args)
                .output()
                .unwrap(),
            &format!("scripts/images {args:?}"),
        );
        let lab = |args: &[&str]| {
            ok(
                Command::new(root.join("tests/lab"))
                    .args(args)
                    .env("BARELB_LAB_DIR", cluster_dir())
                    .output()
                    .unwrap(),
                &format!("tests/lab {args:?}"),
            )
        };
        let images = root.join("target/images");
        let archive = |n: &str| images.join(format!("{n}.tar")).display().to_string();
        lab(&[
            "load-images",
            &archive("barelb-operator"),
            &archive("barelb-speaker"),
        ]);
        for name in ["barelb-operator", "barelb-speaker"] {
            let src = format!("barelb.io/{name}:0.1.0");
            let dst = format!("barelb.io/{name}:0.1.0-next");
            lab(&["load-images", "--tag", &src, &dst]);
        }
    });
}

/// The kustomize lab overlay, as an absolute path (kubectl runs elsewhere).
pub fn overlay() -> String {
    repo_root()
        .join("deploy/kustomize/overlays/lab")
        .display()
        .to_string()
}

pub fn helm(c: &Cluster, args: &[&str]) -> Output {
    Command::new(helm_bin())
        .arg("--kubeconfig")
        .arg(&c.lab.kubeconfig)
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run helm")
}

/// The Pods, Ready: every operator replica and one speaker per node.
pub fn wait_ready(c: &Cluster, operators: usize) {
    for what in ["deployment/barelb-operator", "daemonset/barelb-speaker"] {
        let out = c
            .lab
            .kubectl(&["-n", NS, "rollout", "status", what, "--timeout=180s"]);
        assert!(
            out.status.success(),
            "rollout of {what}: {}\n{}",
            output_text(&out),
            not_ready_pods(c)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pods = c.json(&["-n", NS, "get", "pods"]);
        let ready = |prefix: &str| {
            pods["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["metadata"]["name"].as_str().unwrap().starts_with(prefix))
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| is_ready(p))
                .count()
        };
        if ready("barelb-operator-") == operators && ready("barelb-speaker-") == c.nodes {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all Ready:\n{}",
            output_text(&c.lab.kubectl(&["-n", NS, "get", "pods", "-o", "wide"]))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Deletes barelb's Pods named `app` (`barelb-operator`, `barelb-speaker`;
/// `extra` narrows them, e.g. a field selector) — a restart that leaves
/// the workload's spec alone — and waits until all are Ready again.
pub fn restart_pods(c: &Cluster, app: &str, extra: &[&str]) {
    let label = format!("app.kubernetes.io/name={app}");
    let mut args = vec!["-n", NS, "delete", "pod", "-l", &label, "--wait=false"];
    args.extend(extra);
    ok(c.lab.kubectl(&args), &format!("delete the {app} Pods"));
    wait_ready(c, 2);
}

/// The Pods, the operators' last log lines (also from before a restart) and
/// those of Pods not Ready (failure messages).
fn not_ready_pods(c: &Cluster) -> String {
    let mut text = output_text(&c.lab.kubectl(&["-n", NS, "get", "pods", "-o", "wide"]));
    let pods = c.json(&["-n", NS, "get", "pods"]);
    for p in pods["items"].as_array().into_iter().flatten() {
        let ready = is_ready(p);
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        if name.starts_with("barelb-operator-") {
            text += &format!("\n--- {name}:\n");
            text += &output_text(&c.lab.kubectl(&["-n", NS, "logs", name, "--tail=15"]));
            if p["status"]["containerStatuses"][0]["restartCount"].as_u64() > Some(0) {
                text += &format!("\n--- {name} (before its restart):\n");
                text += &output_text(&c.lab.kubectl(&[
                    "-n",
                    NS,
                    "logs",
                    name,
                    "--previous",
                    "--tail=30",
                ]));
            }
        }
        if !ready {
            text += &format!("\n--- {name} (not Ready):\n");
            text += &output_text(&c.lab.kubectl(&["-n", NS, "logs", name, "--tail=30"]));
        }
    }
    text
}

/// How barelb was installed, and its removal on drop (also on failure).
#[derive(Debug)]
pub enum Installed {
    Helm(Cluster),
    Kustomize(Cluster),
    /// The chart, synced by Argo CD: deleted as `helm template` renders it
    /// (without the CRDs, which stay as after `helm uninstall`).
    ArgoCd(Cluster),
}

impl Installed {
    pub fn cluster(&self) -> &Cluster {
        match self {
            Installed::Helm(c) | Installed::Kustomize(c) | Installed::ArgoCd(c) => c,
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        match self {
            Installed::Helm(c) => {
                let _ = helm(
                    c,
                    &["uninstall", "barelb", "-n", NS, "--wait", "--timeout=120s"],
                );
            }
            Installed::Kustomize(c) => {
                // The install's objects, not the CRDs (they carry no such
                // label): deleting a CRD deletes every pool (docs/install.md).
                let _ = c.lab.kubectl(&[
                    "delete",
                    "-k",
                    &overlay(),
                    "-l",
                    "app.kubernetes.io/part-of=barelb",
                    "--ignore-not-found",
                    "--wait=true",
                    "--timeout=120s",
                ]);
            }
            Installed::ArgoCd(c) => {
                let rendered = helm(c, &["template", "barelb", "deploy/helm/barelb", "-n", NS]);
                let _ = c.lab.kubectl_stdin(
                    &[
                        "delete",
                        "-f",
                        "-",
                        "--ignore-not-found",
                        "--wait=true",
                        "--timeout=120s",
                    ],
                    Some(&String::from_utf8_lossy(&rendered.stdout)),
                );
            }
        }
        let c = self.cluster();
        let _ = c.lab.kubectl(&[
            "delete",
            "namespace",
            NS,
            "--ignore-not-found",
            "--timeout=120s",
        ]);
    }
}

/// Nothing the install made is left; the CRDs (and so the pools) stay.
pub fn check_uninstalled(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<String> = [
            ("clusterrole", "barelb-operator", ""),
            ("clusterrolebinding", "barelb-operator", ""),
            ("validatingwebhookconfiguration", "barelb", ""),
            ("deployment", "barelb-operator", NS),
            ("daemonset", "barelb-speaker", NS),
            ("service", "barelb-control", NS),
        ]
        .iter()
        .filter(|(kind, name, ns)| {
            let mut args = vec!["get", kind, name];
            if !ns.is_empty() {
                args.extend(["-n", ns]);
            }
            c.lab.kubectl(&args).status.success()
        })
        .map(|(kind, name, _)| format!("{kind}/{name}"))
        .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left after uninstall: {left:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    for crd in [
        "addresspools.barelb.io",
        "loadbalancerpolicies.barelb.io",
        "bgppeers.barelb.io",
    ] {
        ok(
            c.lab.kubectl(&["get", "crd", crd]),
            &format!("CRD {crd} kept"),
        );
    }
}

pub fn install_with_helm(c: &Cluster) -> Installed {
    install_with_helm_sets(c, &[])
}

/// [`install_with_helm`] with more `--set KEY=VALUE`s.
pub fn install_with_helm_sets(c: &Cluster, sets: &[&str]) -> Installed {
    load_images();
    let mut args = helm_install_args();
    for s in sets {
        args.extend(["--set", s]);
    }
    ok(helm(c, &args), "helm install");
    let installed = Installed::Helm(c.clone());
    wait_ready(c, 2);
    installed
}

/// `helm install` of the chart in the repository with the lab's images.
fn helm_install_args() -> Vec<&'static str> {
    vec![
        "install",
        "barelb",
        "deploy/helm/barelb",
        "-n",
        NS,
        "--create-namespace",
        "--set",
        "image.operator.pullPolicy=Never",
        "--set",
        "image.speaker.pullPolicy=Never",
        "--wait",
        "--timeout=180s",
    ]
}

/// `helm upgrade --reuse-values` to image tag `tag` with `sets` more
/// (`KEY=VALUE`), waiting for every Pod to be Ready again.
pub fn helm_upgrade(c: &Cluster, tag: &str, sets: &[&str]) {
    let op = format!("image.operator.tag={tag}");
    let sp = format!("image.speaker.tag={tag}");
    let mut args = vec![
        "upgrade",
        "barelb",
        "deploy/helm/barelb",
        "-n",
        NS,
        "--reuse-values",
        "--set",
        &op,
        "--set",
        &sp,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    args.extend(["--wait", "--timeout=300s"]);
    ok(helm(c, &args), "helm upgrade");
    wait_ready(c, 2);
}

/// The test's pools, router peer, backend and Services; removed on drop.
#[derive(Debug)]
pub struct Workload {
    c: Cluster,
    pub ns: String,
    pools: Vec<String>,
    /// The BGPPeer (with `bgp`).
    pub peer: Option<String>,
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.c.lab.kubectl(&[
            "delete",
            "namespace",
            &self.ns,
            "--wait=true",
            "--timeout=60s",
        ]);
        for p in &self.pools {
            let _ = self
                .c
                .lab
                .kubectl(&["delete", "addresspool", p, "--ignore-not-found"]);
        }
        if let Some(p) = &self.peer {
            let _ = self
                .c
                .lab
                .kubectl(&["delete", "bgppeer", p, "--ignore-not-found"]);
        }
    }
}

/// The `.status` of the cluster-scoped `kind/name` once `pred` holds;
/// panics after 60 s with the last one seen.
pub fn wait_status(
    c: &Cluster,
    kind: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = c.json(&["get", kind, name])["status"].clone();
        if pred(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{kind}/{name}: not {what} in 60 s; status: {st}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn apply(c: &Cluster, yaml: &str) {
    let out = c.lab.apply(yaml);
    // A refusal by the webhook's transport (not by barelb's rules) needs
    // barelb's side: which replica, restarted or not, and what it logged.
    assert!(
        out.status.success(),
        "kubectl apply: {}\n{}",
        output_text(&out),
        not_ready_pods(c)
    );
}

/// A backend Deployment (one Pod per node) in a new namespace, and an L2
/// Service from a pool of 198.19.0.230-239; with `bgp`, also a BGP Service
/// from 203.0.113.80/28 announced to a router at 198.19.0.3.
pub fn workload(c: &Cluster, bgp: bool) -> Workload {
    let w = Workload::named(c, &unique_name("inst"), bgp);
    apply(c, &w.pools_yaml());
    w.deploy_apps();
    w
}

impl Workload {
    /// The workload of namespace `ns`: nothing is created yet.
    pub fn named(c: &Cluster, ns: &str, bgp: bool) -> Workload {
        let mut w = Workload {
            c: c.clone(),
            ns: ns.to_string(),
            pools: vec![format!("{ns}-l2")],
            peer: None,
        };
        if bgp {
            w.pools.push(format!("{ns}-bgp"));
            w.peer = Some(format!("{ns}-tor"));
        }
        w
    }

    /// Its pools and peer, as a pool repo holds them (cluster-scoped,
    /// applied by kubectl or synced by Argo CD).
    pub fn pools_yaml(&self) -> String {
        let ns = &self.ns;
        let mut yaml = format!(
            "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {}}}\n\
             spec: {{addresses: [198.19.0.230-198.19.0.239], announce: {{mode: L2}}}}\n",
            self.pools[0]
        );
        if let Some(peer) = &self.peer {
            yaml += &format!(
                "---\napiVersion: barelb.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: {peer}, labels: {{rack: {ns}}}}}\n\
                 spec: {{peerAddress: 198.19.0.3, peerASN: 64501, myASN: 64500, holdTime: 9s, connectRetryTime: 1s, gracefulRestart: true}}\n\
                 ---\napiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {ns}-bgp}}\n\
                 spec: {{addresses: [203.0.113.80/28], autoAssign: false, announce: {{mode: BGP, bgp: {{peerSelector: {{matchLabels: {{rack: {ns}}}}}}}}}}}\n"
            );
        }
        yaml
    }

    /// The namespace, the backend and the Services (an app team's part).
    pub fn deploy_apps(&self) {
        let (ns, n, l2) = (&self.ns, self.c.nodes, &self.pools[0]);
        let mut yaml = backend_yaml(ns, n, Some("DoNotSchedule"));
        yaml += &format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}, annotations: {{barelb.io/pool: {l2}}}}}
spec:
  type: LoadBalancer
  selector: {{app: backend}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
        );
        if self.peer.is_some() {
            yaml += &format!(
                r#"---
apiVersion: v1
kind: Service
metadata: {{name: routed, namespace: {ns}, annotations: {{barelb.io/pool: {ns}-bgp}}}}
spec:
  type: LoadBalancer
  selector: {{app: backend}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
            );
        }
        apply(&self.c, &yaml);
    }
}

/// A namespace `ns` and the lab's test backend in it (`app: backend`,
/// `replicas` Pods answering on :8080, ready once they answer), spread over
/// the nodes by `spread` (a `whenUnsatisfiable`; None: wherever the
/// scheduler puts them).
pub fn backend_yaml(ns: &str, replicas: usize, spread: Option<&str>) -> String {
    let spread = spread.map_or(String::new(), |when| {
        format!(
            "      topologySpreadConstraints:\n      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: {when}, labelSelector: {{matchLabels: {{app: backend}}}}}}\n"
        )
    });
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: backend, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: backend}}}}
  template:
    metadata: {{labels: {{app: backend}}}}
    spec:
      terminationGracePeriodSeconds: 1
{spread}      containers:
      - name: backend
        image: barelb.io/lab-backend:1
        imagePullPolicy: Never
        args: ["--listen=:8080"]
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: NODE_NAME, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
"#
    )
}

/// The [`workload`] with its BGP Service reached through a BIRD router at
/// 198.19.0.3 and a client at 198.19.0.`client_host` routed through it, once
/// both Services answer the client: the router, the workload, the client
/// and the addresses of `web` (L2) and `routed` (BGP). Returned apart so the
/// caller decides what is torn down first.
pub fn l2_and_bgp_answering(
    c: &Cluster,
    client_host: u8,
) -> (LanRouter, Workload, Client, [String; 2]) {
    let router = c.router(3, 64501, 64500);
    let w = workload(c, true);
    let client = c.client(client_host);
    client.route_via("203.0.113.80/28", &router);
    let vips = [address(c, &w.ns, "web"), address(c, &w.ns, "routed")];
    for v in &vips {
        answers(&client, &format!("http://{v}/"));
    }
    (router, w, client, vips)
}

/// The operator Pod that holds the leader Lease (its identity is its name).
pub fn leader_pod(c: &Cluster) -> Option<serde_json::Value> {
    let lease = c.json(&["-n", NS, "get", "lease", "barelb-operator"]);
    let holder = lease["spec"]["holderIdentity"].as_str()?.to_string();
    Some(c.json(&["-n", NS, "get", "pod", &holder]))
}

/// The Service's first ingress address, once it has one and every node's
/// kube-proxy routes it ([`Cluster::wait_programmed`]).
pub fn address(c: &Cluster, ns: &str, svc: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = c.json(&["-n", ns, "get", "service", svc]);
        if let Some(ip) = s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str() {
            c.wait_programmed(ip);
            return ip.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{svc} got no address: {}",
            s["status"]
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The Service's `barelb.io/Announced` message (which nodes announce it).
pub fn announced(c: &Cluster, ns: &str, svc: &str) -> String {
    let s = c.json(&["-n", ns, "get", "service", svc]);
    s["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "barelb.io/Announced" && c["status"] == "True")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Waits until `client` gets an answer from `url`.
pub fn answers(client: &Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(url).is_none() {
        assert!(Instant::now() < deadline, "{url} does not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
}
