//! barelb installed the way a user installs it, on the lab cluster: the
//! images scripts/images builds imported into every node, then the Helm
//! chart (or the kustomize lab overlay). Its Pods come up Ready, Services get
//! addresses that answer over ARP and through a BGP router, the operator's
//! account can do exactly what it needs, a rolling upgrade of every Pod
//! loses no request and moves no address, and uninstalling leaves nothing
//! but the CRDs. Run by scripts/test on the 3-node cluster (target/cluster).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::process::{Command, Output};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use barelb_testsupport::cluster::{Cluster, cluster, cluster_dir};
use barelb_testsupport::lab::{helm_bin, output_text};
use barelb_testsupport::{repo_root, unique_name};

/// An install owns cluster-wide objects (barelb-system, the webhook, the
/// ClusterRole): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static IMAGES: Once = Once::new();
const NS: &str = "barelb-system";

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Builds the images from the binaries `cargo test` built and imports them
/// into every node, also tagged `0.1.0-next` (the "new version" an upgrade
/// rolls to: same content, a new Pod template).
fn load_images() {
    IMAGES.call_once(|| {
        let root = repo_root();
        ok(
            Command::new(root.join("scripts/images"))
                .arg("--debug")
                .output()
                .unwrap(),
            "scripts/images --debug",
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
fn overlay() -> String {
    repo_root()
        .join("deploy/kustomize/overlays/lab")
        .display()
        .to_string()
}

fn helm(c: &Cluster, args: &[&str]) -> Output {
    Command::new(helm_bin())
        .arg("--kubeconfig")
        .arg(&c.lab.kubeconfig)
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run helm")
}

/// The Pods, Ready: every operator replica and one speaker per node.
fn wait_ready(c: &Cluster, operators: usize) {
    for what in ["deployment/barelb-operator", "daemonset/barelb-speaker"] {
        ok(
            c.lab
                .kubectl(&["-n", NS, "rollout", "status", what, "--timeout=180s"]),
            &format!("rollout of {what}"),
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
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
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

/// How barelb was installed, and its removal on drop (also on failure).
enum Installed {
    Helm(Cluster),
    Kustomize(Cluster),
}

impl Installed {
    fn cluster(&self) -> &Cluster {
        match self {
            Installed::Helm(c) | Installed::Kustomize(c) => c,
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

fn install_with_helm(c: &Cluster) -> Installed {
    load_images();
    ok(
        helm(
            c,
            &[
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
            ],
        ),
        "helm install",
    );
    let installed = Installed::Helm(c.clone());
    wait_ready(c, 2);
    installed
}

/// The test's pools, router peer, backend and Services; removed on drop.
struct Workload {
    c: Cluster,
    ns: String,
    pools: Vec<String>,
    peer: Option<String>,
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

fn apply(c: &Cluster, yaml: &str) {
    ok(c.lab.apply(yaml), "kubectl apply");
}

/// A backend Deployment (one Pod per node) in a new namespace, and an L2
/// Service from a pool of 198.19.0.230-239; with `bgp`, also a BGP Service
/// from 203.0.113.80/28 announced to a router at 198.19.0.3.
fn workload(c: &Cluster, bgp: bool) -> Workload {
    let ns = unique_name("inst");
    let l2 = format!("{ns}-l2");
    let mut w = Workload {
        c: c.clone(),
        ns: ns.clone(),
        pools: vec![l2.clone()],
        peer: None,
    };
    apply(
        c,
        &format!(
            "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {l2}}}\n\
             spec: {{addresses: [198.19.0.230-198.19.0.239], announce: {{mode: L2}}}}\n"
        ),
    );
    if bgp {
        let (pool, peer) = (format!("{ns}-bgp"), format!("{ns}-tor"));
        w.pools.push(pool.clone());
        w.peer = Some(peer.clone());
        apply(
            c,
            &format!(
                "apiVersion: barelb.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: {peer}, labels: {{rack: {ns}}}}}\n\
                 spec: {{peerAddress: 198.19.0.3, peerASN: 64501, myASN: 64500, holdTime: 9s, connectRetryTime: 1s, gracefulRestart: true}}\n\
                 ---\napiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {pool}}}\n\
                 spec: {{addresses: [203.0.113.80/28], autoAssign: false, announce: {{mode: BGP, bgp: {{peerSelector: {{matchLabels: {{rack: {ns}}}}}}}}}}}\n"
            ),
        );
    }
    let n = c.nodes;
    let mut yaml = format!(
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
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: NODE_NAME, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
        readinessProbe: {{httpGet: {{path: /, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}, annotations: {{barelb.io/pool: {l2}}}}}
spec:
  type: LoadBalancer
  selector: {{app: backend}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
    );
    if bgp {
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
    apply(c, &yaml);
    w
}

/// The Service's first ingress address, once it has one.
fn address(c: &Cluster, ns: &str, svc: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = c.json(&["-n", ns, "get", "service", svc]);
        if let Some(ip) = s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str() {
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
fn announced(c: &Cluster, ns: &str, svc: &str) -> String {
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
fn answers(client: &barelb_testsupport::cluster::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(url).is_none() {
        assert!(Instant::now() < deadline, "{url} does not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kubectl auth can-i` as `account` (namespace/name).
fn can_i(c: &Cluster, account: &str, args: &[&str]) -> bool {
    let (ns, name) = account.split_once('/').unwrap();
    let who = format!("--as=system:serviceaccount:{ns}:{name}");
    let mut all = vec!["auth", "can-i", who.as_str()];
    all.extend(args);
    let out = c.lab.kubectl(&all);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

fn check_rbac(c: &Cluster) {
    let op = "barelb-system/barelb-operator";
    let sp = "barelb-system/barelb-speaker";
    let allowed: &[(&str, &[&str])] = &[
        (
            op,
            &["patch", "services", "--subresource=status", "-n", "default"],
        ),
        (op, &["patch", "services", "-n", "default"]),
        (op, &["watch", "services", "-A"]),
        (op, &["watch", "nodes"]),
        (op, &["watch", "endpointslices.discovery.k8s.io", "-A"]),
        (op, &["watch", "addresspools.barelb.io"]),
        (
            op,
            &["patch", "addresspools.barelb.io", "--subresource=status"],
        ),
        (op, &["patch", "bgppeers.barelb.io", "--subresource=status"]),
        (op, &["create", "events.events.k8s.io", "-n", "default"]),
        (op, &["create", "tokenreviews.authentication.k8s.io"]),
        (op, &["patch", "validatingwebhookconfigurations/barelb"]),
        (op, &["get", "clusterroles/barelb-operator"]),
        (op, &["update", "leases.coordination.k8s.io", "-n", NS]),
        (op, &["watch", "secrets", "-n", NS]),
        (op, &["create", "secrets", "-n", NS]),
        (op, &["patch", "configmaps/barelb-control-ca", "-n", NS]),
        (op, &["get", "pods", "-n", NS]),
    ];
    let forbidden: &[(&str, &[&str])] = &[
        (op, &["get", "secrets", "-n", "default"]),
        (op, &["list", "secrets", "-A"]),
        (op, &["create", "pods/exec", "-n", NS]),
        (op, &["patch", "nodes"]),
        (op, &["delete", "services", "-n", "default"]),
        (op, &["update", "services", "-n", "default"]),
        (
            op,
            &["patch", "validatingwebhookconfigurations/someone-elses"],
        ),
        (op, &["get", "clusterroles/cluster-admin"]),
        (
            op,
            &["update", "leases.coordination.k8s.io", "-n", "kube-system"],
        ),
        (op, &["get", "pods", "-n", "default"]),
        (op, &["create", "addresspools.barelb.io"]),
        (op, &["patch", "configmaps/kube-root-ca.crt", "-n", NS]),
        (sp, &["get", "services", "-n", "default"]),
        (sp, &["get", "pods", "-n", NS]),
        (sp, &["list", "nodes"]),
        (sp, &["create", "tokenreviews.authentication.k8s.io"]),
        (
            sp,
            &["patch", "services", "--subresource=status", "-n", "default"],
        ),
        (
            op,
            &[
                "update",
                "services",
                "--subresource=status",
                "-n",
                "default",
            ],
        ),
        (op, &["patch", "nodes", "--subresource=status"]),
        (sp, &["get", "configmaps", "-n", NS]),
    ];
    for (who, args) in allowed {
        assert!(can_i(c, who, args), "{who} should be allowed {args:?}");
    }
    for (who, args) in forbidden {
        assert!(!can_i(c, who, args), "{who} must not be allowed {args:?}");
    }
}

/// Nothing the install made is left; the CRDs (and so the pools) stay.
fn check_uninstalled(c: &Cluster) {
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

#[test]
fn helm_install_serves_l2_and_bgp_upgrades_without_a_lost_request_and_uninstalls_clean() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster(
        "helm_install_serves_l2_and_bgp_upgrades_without_a_lost_request_and_uninstalls_clean",
    );
    load_images();
    let started = Instant::now();
    let installed = install_with_helm(&c);
    let router = c.router(3, 64501, 64500);
    let w = workload(&c, true);
    let client = c.client(102);
    client.route_via("203.0.113.80/28", &router);
    let (l2, routed) = (address(&c, &w.ns, "web"), address(&c, &w.ns, "routed"));
    let urls = [format!("http://{l2}/"), format!("http://{routed}/")];
    for u in &urls {
        answers(&client, u);
    }
    eprintln!(
        "install: helm install to both Services answering in {} ms",
        started.elapsed().as_millis()
    );
    check_rbac(&c);
    let before = (announced(&c, &w.ns, "web"), announced(&c, &w.ns, "routed"));
    assert!(before.0.contains("ARP"), "{before:?}");

    // Every Pod restarts: the operators (a new template), then one speaker
    // per node, while the client asks both Services every 10 ms.
    let poller = client.poll(&urls, 10);
    std::thread::sleep(Duration::from_secs(1));
    let upgrade = Instant::now();
    ok(
        helm(
            &c,
            &[
                "upgrade",
                "barelb",
                "deploy/helm/barelb",
                "-n",
                NS,
                "--reuse-values",
                "--set",
                "image.operator.tag=0.1.0-next",
                "--set",
                "image.speaker.tag=0.1.0-next",
                "--wait",
                "--timeout=300s",
            ],
        ),
        "helm upgrade",
    );
    wait_ready(&c, 2);
    std::thread::sleep(Duration::from_secs(2));
    let polled = poller.stop();
    eprintln!(
        "upgrade: rolled every Pod in {} ms; {polled:?}",
        upgrade.elapsed().as_millis()
    );
    assert_eq!(polled.len(), 2, "{polled:?}");
    for p in &polled {
        assert!(p.requests > 100, "{p:?}");
        assert_eq!(p.failed, 0, "requests lost during the upgrade: {p:?}");
    }
    let images = c.json(&["-n", NS, "get", "pods"]);
    for p in images["items"].as_array().unwrap() {
        let image = p["spec"]["containers"][0]["image"].as_str().unwrap();
        assert!(image.ends_with(":0.1.0-next"), "{image} was not rolled");
    }
    let after = (announced(&c, &w.ns, "web"), announced(&c, &w.ns, "routed"));
    assert_eq!(before, after, "the upgrade moved an address");

    drop(w);
    drop(installed);
    check_uninstalled(&c);
}

#[test]
fn the_kustomize_lab_overlay_installs_the_same_and_deletes_clean() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster("the_kustomize_lab_overlay_installs_the_same_and_deletes_clean");
    load_images();
    ok(
        c.lab.kubectl(&["apply", "-k", &overlay()]),
        "kubectl apply -k",
    );
    let installed = Installed::Kustomize(c.clone());
    wait_ready(&c, 2);
    let w = workload(&c, false);
    let client = c.client(103);
    let ip = address(&c, &w.ns, "web");
    answers(&client, &format!("http://{ip}/"));
    drop(w);
    drop(installed);
    check_uninstalled(&c);
}

/// With one right taken from the operator, the Service it cannot write
/// says why (a Warning event naming the right) and gets its address once
/// the right is back.
#[test]
fn a_missing_right_is_reported_on_the_service_and_recovers_when_restored() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let c = cluster("a_missing_right_is_reported_on_the_service_and_recovers_when_restored");
    let installed = install_with_helm(&c);
    let role = c.json(&["get", "clusterrole", "barelb-operator"]);
    let mut cut = role.clone();
    let rules = cut["rules"].as_array_mut().unwrap();
    let before = rules.len();
    rules.retain(|r| r["resources"] != serde_json::json!(["services/status"]));
    assert_eq!(
        rules.len(),
        before - 1,
        "no services/status rule to take away"
    );
    for field in [
        "resourceVersion",
        "uid",
        "managedFields",
        "creationTimestamp",
    ] {
        cut["metadata"].as_object_mut().unwrap().remove(field);
    }
    ok(
        c.lab
            .kubectl_stdin(&["replace", "-f", "-"], Some(&cut.to_string())),
        "cut the rule",
    );
    let w = workload(&c, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    let note = loop {
        let events = c.json(&["-n", &w.ns, "get", "events.events.k8s.io"]);
        let found = events["items"].as_array().unwrap().iter().find_map(|e| {
            (e["reason"] == "WriteForbidden")
                .then(|| e["note"].as_str().unwrap_or_default().to_string())
        });
        if let Some(n) = found {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no WriteForbidden event on the Service"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        note.contains("services/status") && note.contains("ClusterRole"),
        "{note}"
    );
    // The right comes back (as `helm upgrade` would restore it).
    let mut back = role.clone();
    for field in [
        "resourceVersion",
        "uid",
        "managedFields",
        "creationTimestamp",
    ] {
        back["metadata"].as_object_mut().unwrap().remove(field);
    }
    ok(
        c.lab
            .kubectl_stdin(&["replace", "-f", "-"], Some(&back.to_string())),
        "restore the rule",
    );
    let ip = address(&c, &w.ns, "web");
    assert!(ip.starts_with("198.19.0.23"), "{ip}");
    drop(w);
    drop(installed);
}
