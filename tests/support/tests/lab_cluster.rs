//! The lab cluster is a real cluster: Ready nodes with kubelet and
//! containerd, Pods scheduled across them with Pod IPs from each node's
//! CIDR that reach each other, Services routed by kube-proxy, and
//! host-network Pods that live in their node's network namespace.
//! Run by scripts/test once `tests/lab up --nodes 3` is up in target/cluster.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, Instant};

use barelb_testsupport::cluster::{Cluster, cluster, is_ready};
use barelb_testsupport::lab::output_text;
use barelb_testsupport::unique_name;
use serde_json::Value;

/// A namespace of this test's, deleted at the end (also on failure).
fn namespace(c: &Cluster, prefix: &str) -> (String, barelb_testsupport::lab::DeleteOnDrop) {
    let ns = unique_name(prefix);
    let out = c.lab.kubectl(&["create", "namespace", &ns]);
    assert!(out.status.success(), "{}", output_text(&out));
    let guard = c.lab.delete_on_drop("namespace", &ns, &[]);
    (ns, guard)
}

/// Waits until `ns` has `n` Running, Ready Pods labelled `app=LABEL`;
/// returns (name, node, Pod IP) of each.
fn running(c: &Cluster, ns: &str, label: &str, n: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pods = c.json(&["get", "pods", "-n", ns, "-l", &format!("app={label}")]);
        let ready: Vec<(String, String, String)> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .filter(|p| is_ready(p))
            .map(|p| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (
                    s(&p["metadata"]["name"]),
                    s(&p["spec"]["nodeName"]),
                    s(&p["status"]["podIP"]),
                )
            })
            .collect();
        if ready.len() == n {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} Pods of {label} Running in {ns}:\n{}",
            ready.len(),
            output_text(&c.lab.kubectl(&["get", "pods", "-n", ns, "-o", "wide"]))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A Deployment of the test backend, one Pod per node, and a NodePort
/// Service in front of it.
fn backend(c: &Cluster, ns: &str) -> String {
    let yaml = format!(
        r#"apiVersion: apps/v1
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
        ports: [{{containerPort: 8080}}]
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: NODE_NAME, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: {ns}}}
spec:
  type: NodePort
  selector: {{app: backend}}
  ports: [{{port: 80, targetPort: 8080}}]
"#,
        n = c.nodes
    );
    let out = c.lab.apply(&yaml);
    assert!(out.status.success(), "{}", output_text(&out));
    "backend".into()
}

/// `lab-backend ARGS` inside `pod` (the image's only program).
fn exec(c: &Cluster, ns: &str, pod: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["exec", "-n", ns, pod, "--", "/bin/lab-backend"];
    all.extend(args);
    c.lab.kubectl(&all)
}

#[test]
fn nodes_are_ready_with_their_lan_addresses_kubelet_and_containerd() {
    let c = cluster("cluster::nodes_are_ready_with_their_lan_addresses_kubelet_and_containerd");
    let nodes = c.json(&["get", "nodes"]);
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), c.nodes);
    for i in 1..=c.nodes {
        let n = items
            .iter()
            .find(|n| n["metadata"]["name"] == format!("node-{i}"))
            .unwrap_or_else(|| panic!("no node-{i}"));
        let ready = n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(
            ready,
            "node-{i} is not Ready: {}",
            n["status"]["conditions"]
        );
        let internal = n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .map(|a| a["address"].as_str().unwrap().to_string());
        assert_eq!(internal, Some(c.node_ip(i).to_string()));
        let info = &n["status"]["nodeInfo"];
        assert!(
            info["kubeletVersion"]
                .as_str()
                .unwrap()
                .starts_with("v1.34."),
            "{info}"
        );
        assert!(
            info["containerRuntimeVersion"]
                .as_str()
                .unwrap()
                .starts_with("containerd://"),
            "{info}"
        );
        assert_eq!(n["spec"]["podCIDR"], c.pod_cidr(i));
    }
}

#[test]
fn pods_spread_reach_each_other_and_services_route_through_kube_proxy() {
    let c = cluster("cluster::pods_spread_reach_each_other_and_services_route_through_kube_proxy");
    let (ns, _guard) = namespace(&c, "cl-backend");
    backend(&c, &ns);
    let pods = running(&c, &ns, "backend", c.nodes);
    // One per node, each with an address from its node's Pod CIDR.
    for i in 1..=c.nodes {
        let (_, _, ip) = pods
            .iter()
            .find(|p| p.1 == format!("node-{i}"))
            .unwrap_or_else(|| panic!("no Pod on node-{i}: {pods:?}"));
        let prefix = c.pod_cidr(i).trim_end_matches("0/24").to_string();
        assert!(
            ip.starts_with(&prefix),
            "Pod IP {ip} is not in {}",
            c.pod_cidr(i)
        );
    }
    let on = |i: usize| {
        pods.iter()
            .find(|p| p.1 == format!("node-{i}"))
            .unwrap()
            .clone()
    };
    let (first, last) = (on(1), on(c.nodes));

    // Pod to Pod across nodes, by Pod IP.
    let out = exec(
        &c,
        &ns,
        &first.0,
        &["get", &format!("http://{}:8080/", last.2)],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains(&format!("pod={} node={}", last.0, last.1)),
        "{body}"
    );

    // The ClusterIP, from a Pod: kube-proxy picks endpoints on other nodes too.
    let svc = c.json(&["get", "service", "backend", "-n", &ns]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    let mut answered_by = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let out = exec(
            &c,
            &ns,
            &first.0,
            &["get", &format!("http://{cluster_ip}/")],
        );
        assert!(out.status.success(), "{}", output_text(&out));
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        let node = body
            .split("node=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .to_string();
        answered_by.insert(node);
        if answered_by.len() > 1 {
            break;
        }
    }
    assert!(
        answered_by.len() > 1,
        "only {answered_by:?} answered the ClusterIP"
    );

    // The NodePort, from a client on the LAN, through every node.
    let client = c.client(200);
    for i in 1..=c.nodes {
        let url = format!("http://{}:{node_port}/", c.node_ip(i));
        let body = client
            .get(&url)
            .unwrap_or_else(|| panic!("nothing answered {url}"));
        assert!(body.starts_with("pod=backend-"), "{url}: {body}");
    }
}

#[test]
fn a_host_network_pod_lives_in_its_nodes_namespace_and_opens_af_packet_with_net_raw() {
    let c = cluster(
        "cluster::a_host_network_pod_lives_in_its_nodes_namespace_and_opens_af_packet_with_net_raw",
    );
    let (ns, _guard) = namespace(&c, "cl-hostnet");
    let node = c.nodes;
    let pod = |name: &str, caps: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  nodeName: node-{node}
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: probe
    image: barelb.io/lab-backend:1
    imagePullPolicy: Never
    args: [--listen, "127.0.0.1:0"]
    securityContext: {{capabilities: {caps}}}
"#
        )
    };
    for (name, caps) in [
        ("raw", "{drop: [ALL], add: [NET_RAW]}"),
        ("plain", "{drop: [ALL]}"),
    ] {
        let out = c.lab.apply(&pod(name, caps));
        assert!(out.status.success(), "{}", output_text(&out));
        running(&c, &ns, name, 1);
    }
    // Its interfaces are the node's: eth0 with the node's LAN address.
    let out = exec(&c, &ns, "raw", &["interfaces"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let ifaces = String::from_utf8_lossy(&out.stdout);
    let eth0 = ifaces
        .lines()
        .find(|l| l.starts_with("eth0 "))
        .unwrap_or_default();
    assert!(
        eth0.contains(&format!("{}/24", c.node_ip(node))),
        "{ifaces}"
    );
    // NET_RAW opens an AF_PACKET socket on it; without NET_RAW it is refused.
    let out = exec(&c, &ns, "raw", &["packet", "eth0"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = exec(&c, &ns, "plain", &["packet", "eth0"]);
    assert!(
        !out.status.success(),
        "AF_PACKET without NET_RAW: {}",
        output_text(&out)
    );
    assert!(
        output_text(&out).contains("operation not permitted"),
        "{}",
        output_text(&out)
    );
}
