//! Faults on a lab cluster node behave as in a real cluster: a node whose
//! kubelet stops turns NotReady within the node-monitor grace period the
//! lab sets (20 s), its Pods are evicted (after the lab's 10 s toleration)
//! and replaced on the other nodes, and the node comes back when its
//! kubelet does. Its own test binary, so no other cluster test runs while a
//! node is down.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, Instant};

use barelb_testsupport::cluster::{Cluster, Fault, cluster};
use barelb_testsupport::lab::output_text;
use barelb_testsupport::unique_name;
use serde_json::Value;

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = c.lab.kubectl(&all);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        output_text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn node_ready(c: &Cluster, node: &str) -> Option<String> {
    let n = json(c, &["get", "node", node]);
    n["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"].as_str().unwrap_or_default().to_string())
}

/// Live (not terminating) Running Pods of the Deployment, by node.
fn pods_by_node(c: &Cluster, ns: &str) -> Vec<String> {
    let pods = json(c, &["get", "pods", "-n", ns, "-l", "app=spread"]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|p| {
            p["spec"]["nodeName"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn wait(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    start.elapsed()
}

#[test]
fn a_node_whose_kubelet_stops_turns_not_ready_and_its_pods_move() {
    let c = cluster("cluster::a_node_whose_kubelet_stops_turns_not_ready_and_its_pods_move");
    let ns = unique_name("cl-faults");
    let out = c.lab.kubectl(&["create", "namespace", &ns]);
    assert!(out.status.success(), "{}", output_text(&out));
    let _guard = c.lab.delete_on_drop("namespace", &ns, &[]);
    let replicas = 2 * c.nodes;
    let out = c.lab.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: spread, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: spread}}}}
  template:
    metadata: {{labels: {{app: spread}}}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {{matchLabels: {{app: spread}}}}}}
      containers:
      - {{name: backend, image: "barelb.io/lab-backend:1", imagePullPolicy: Never}}
"#
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    let victim = format!("node-{}", c.nodes);
    wait(
        "every Pod Running, some on the victim",
        Duration::from_secs(90),
        || {
            let p = pods_by_node(&c, &ns);
            p.len() == replicas && p.contains(&victim)
        },
    );

    let stopped = c.inject(c.nodes, Fault::StopKubelet);
    let not_ready = wait("the node turns NotReady", Duration::from_secs(45), || {
        node_ready(&c, &victim).as_deref() == Some("Unknown")
            || node_ready(&c, &victim).as_deref() == Some("False")
    });
    eprintln!("{victim} NotReady {not_ready:?} after its kubelet stopped");
    let moved = wait(
        "its Pods replaced on the other nodes",
        Duration::from_secs(90),
        || {
            let p = pods_by_node(&c, &ns);
            p.iter().filter(|n| **n != victim).count() == replicas
        },
    );
    eprintln!("its Pods were replaced {moved:?} later");

    drop(stopped);
    wait("the node Ready again", Duration::from_secs(60), || {
        node_ready(&c, &victim).as_deref() == Some("True")
    });
}
