//! Faults on a lab cluster node behave as in a real cluster: a node whose
//! kubelet stops turns NotReady within the node-monitor grace period the
//! lab sets (20 s), its Pods are evicted (after the lab's 10 s toleration)
//! and replaced on the other nodes, and the node comes back when its
//! kubelet does. Its own test binary, so no other cluster test runs while a
//! node is down; its tests take turns (SERIAL), each faulting the last node.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, Instant};

use barelb_testsupport::cluster::{Cluster, Fault, cluster};
use barelb_testsupport::lab::output_text;
use barelb_testsupport::unique_name;

/// One fault at a time: every test here faults the same node.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn node_ready(c: &Cluster, node: &str) -> Option<String> {
    let n = c.json(&["get", "node", node]);
    n["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"].as_str().unwrap_or_default().to_string())
}

/// Live (not terminating) Running Pods of the Deployment, by node.
fn pods_by_node(c: &Cluster, ns: &str) -> Vec<String> {
    let pods = c.json(&["get", "pods", "-n", ns, "-l", "app=spread"]);
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
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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

/// Whether `ns` reaches `url` (curl, 2 s).
fn reaches(ns: &str, url: &str) -> bool {
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-sk",
            "-m",
            "2",
            "-o",
            "/dev/null",
            url,
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// The other faults do what they say, and their guards undo them: a cut
/// node is off the LAN; a partitioned node reaches its peers but not the
/// control plane; a frozen node's processes are stopped.
#[test]
fn cut_partition_and_freeze_do_what_they_say_and_are_undone() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster("cluster::cut_partition_and_freeze_do_what_they_say_and_are_undone");
    let (victim, peer) = (c.nodes, 1);
    let ns = c.node_ns(victim);
    let apiserver = std::fs::read_to_string(&c.lab.kubeconfig)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server: ")
                .map(|s| format!("{s}/readyz"))
        })
        .unwrap();
    let peer_kubelet = format!("https://{}:10250/healthz", c.node_ip(peer));
    assert!(
        reaches(&ns, &apiserver),
        "{ns} does not reach {apiserver} to begin with"
    );
    assert!(reaches(&ns, &peer_kubelet));

    let cut = c.inject(victim, Fault::Cut);
    assert!(
        !reaches(&ns, &peer_kubelet),
        "a cut node still reaches the LAN"
    );
    drop(cut);
    wait("the LAN back after uncut", Duration::from_secs(10), || {
        reaches(&ns, &peer_kubelet)
    });

    let partitioned = c.inject(victim, Fault::Partition);
    assert!(
        !reaches(&ns, &apiserver),
        "a partitioned node still reaches the control plane"
    );
    assert!(
        reaches(&ns, &peer_kubelet),
        "a partitioned node lost the LAN too"
    );
    drop(partitioned);
    assert!(
        reaches(&ns, &apiserver),
        "the control plane not back after heal"
    );

    let kubelet_pid = std::fs::read_to_string(
        barelb_testsupport::cluster::cluster_dir()
            .join(format!("nodes/node-{victim}/pids/kubelet")),
    )
    .unwrap();
    let state = || {
        std::fs::read_to_string(format!("/proc/{}/stat", kubelet_pid.trim()))
            .unwrap()
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let frozen = c.inject(victim, Fault::Freeze);
    assert_eq!(state(), "T", "the frozen node's kubelet is not stopped");
    drop(frozen);
    assert_ne!(state(), "T", "the kubelet still stopped after thaw");
    wait(
        "the node Ready after the faults",
        Duration::from_secs(60),
        || node_ready(&c, &format!("node-{victim}")).as_deref() == Some("True"),
    );
}
