//! barelb installed the way a user installs it, on the lab cluster: the
//! images scripts/images builds imported into every node, then the Helm
//! chart (or the kustomize lab overlay). Its Pods come up Ready, Services get
//! addresses that answer over ARP and through a BGP router, the operator's
//! account can do exactly what it needs, a rolling upgrade of every Pod
//! loses no request and moves no address, and uninstalling leaves nothing
//! but the CRDs. Run by scripts/test on the 3-node cluster (target/cluster).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::sync::Mutex;
use std::time::{Duration, Instant};

use barelb_testsupport::chaos::{dump_logs, unix_seconds};
use barelb_testsupport::cluster::{Cluster, cluster};
use barelb_testsupport::install::*;

/// An install owns cluster-wide objects (barelb-system, the webhook, the
/// ClusterRole): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
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
        (
            op,
            &[
                "list",
                "leases.coordination.k8s.io",
                "-n",
                "kube-node-lease",
            ],
        ),
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
        (
            op,
            &[
                "update",
                "leases.coordination.k8s.io",
                "-n",
                "kube-node-lease",
            ],
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
    // The peer reports its sessions: every node announcing to it established.
    let peer = w.peer.clone().unwrap();
    let ready = |st: &serde_json::Value| st["conditions"][0]["status"] == "True";
    let st = wait_status(&c, "bgppeer", &peer, "Ready", |st| {
        ready(st) && st["establishedNodes"] == st["selectedNodes"] && st["selectedNodes"] != 0
    });
    assert_eq!(st["observedGeneration"], 1, "{st}");
    let n = st["selectedNodes"].as_u64().unwrap();
    assert_eq!(
        st["conditions"][0]["message"],
        format!("{n}/{n} nodes established"),
        "{st}"
    );
    let before = (announced(&c, &w.ns, "web"), announced(&c, &w.ns, "routed"));
    assert!(before.0.contains("ARP"), "{before:?}");

    // Every Pod restarts: the operators (a new template), then one speaker
    // per node, while the client asks both Services every 10 ms.
    let poller = client.poll(&urls, 10);
    let neigh = client.watch_neigh(std::slice::from_ref(&l2));
    std::thread::sleep(Duration::from_secs(1));
    let upgrade = Instant::now();
    helm_upgrade(&c, "0.1.0-next", &[]);
    std::thread::sleep(Duration::from_secs(2));
    let polled = poller.stop();
    eprintln!(
        "upgrade: rolled every Pod in {} ms; {polled:?}",
        upgrade.elapsed().as_millis()
    );
    // The client's entry for the layer-2 address: an upgrade that moves
    // nothing changes it never.
    for (at, ip, mac) in neigh.events() {
        let ms = at.saturating_duration_since(upgrade).as_millis();
        eprintln!("client neighbour {ip}: {mac:?} at +{ms} ms");
    }
    if polled.iter().any(|p| p.failed > 0) {
        // A failed run shows its own timeline: what the speakers and
        // operators logged.
        let began = unix_seconds() - upgrade.elapsed().as_secs_f64();
        eprintln!("upgrade started at unix time {began:.3}");
        dump_logs(&c);
    }
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

    // The router goes away: the peer is not Ready and says which sessions are down.
    drop(router);
    let st = wait_status(&c, "bgppeer", &peer, "NotEstablished", |st| {
        st["conditions"][0]["reason"] == "NotEstablished" && st["establishedNodes"] == 0
    });
    let msg = st["conditions"][0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("0/{n} nodes established; not established: ")),
        "{st}"
    );
    // It comes back: Ready again, every session re-established.
    let _router = c.router(3, 64501, 64500);
    wait_status(&c, "bgppeer", &peer, "Ready again", |st| {
        ready(st) && st["establishedNodes"] == n
    });

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

/// `obj` as `kubectl replace` takes it back: without the server's fields.
fn replaceable(obj: &serde_json::Value) -> serde_json::Value {
    let mut v = obj.clone();
    for field in [
        "resourceVersion",
        "uid",
        "managedFields",
        "creationTimestamp",
    ] {
        v["metadata"].as_object_mut().unwrap().remove(field);
    }
    v
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
    let mut cut = replaceable(&role);
    let rules = cut["rules"].as_array_mut().unwrap();
    let before = rules.len();
    rules.retain(|r| r["resources"] != serde_json::json!(["services/status"]));
    assert_eq!(
        rules.len(),
        before - 1,
        "no services/status rule to take away"
    );
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
    let back = replaceable(&role);
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
