//! barelb installed through a real Argo CD (v3.2.11, built by `tests/lab
//! build`) on the lab cluster, from scratch (no CRDs): the example
//! app-of-apps in gitops-examples/argocd syncs the chart (wave 0) and then
//! the pool repo (wave 1, retrying while the webhook starts). Argo CD judges
//! the BGPPeer Degraded while its router is down and Healthy once it is
//! back, and 1,000 allocations across several operator restarts leave every
//! Application Synced. Run by scripts/test on the 3-node cluster, after
//! lab_install (which leaves the CRDs this test deletes first).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, Instant};

use barelb_testsupport::argocd::{ArgoCd, health_of, synced_healthy};
use barelb_testsupport::cluster::{Cluster, cluster};
use barelb_testsupport::install::*;
use barelb_testsupport::{repo_root, unique_name};
use serde_json::{Value, json};

/// The Applications: the parent and the example's two children.
const APPS: [&str; 3] = ["barelb-apps", "barelb-chart", "barelb-pools"];
/// Services allocated from the bulk pool, and how many per operator restart.
const BULK: usize = 1000;
const BATCH: usize = 250;

/// gitops-examples/argocd/app-of-apps.yaml as a user adapts it: repoURLs
/// pointing at their forks, Argo CD's namespace, and (the lab imports its
/// images into the nodes) no image pulls.
fn app_of_apps(argo: &ArgoCd, chart_url: &str, pools_url: &str) -> String {
    let path = repo_root().join("gitops-examples/argocd/app-of-apps.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut docs = Vec::new();
    for doc in text.split("\n---\n") {
        let mut app: Value = serde_yaml::from_str(doc).unwrap();
        app["metadata"]["namespace"] = json!(argo.ns);
        let source = &mut app["spec"]["source"];
        if source["path"] == "deploy/helm/barelb" {
            source["repoURL"] = json!(chart_url);
            source["helm"]["valuesObject"]["image"] = json!({
                "operator": {"pullPolicy": "Never"},
                "speaker": {"pullPolicy": "Never"},
            });
        } else {
            source["repoURL"] = json!(pools_url);
        }
        docs.push(serde_yaml::to_string(&app).unwrap());
    }
    docs.join("---\n")
}

/// Panics when any Application is not Synced (diff noise).
fn assert_synced(argo: &ArgoCd) {
    for app in APPS {
        let st = argo.app_status(app);
        assert_eq!(st["sync"]["status"], "Synced", "{app}: diff noise: {st}");
    }
}

/// `n` Services from pool `pool`, numbered from `from`, as one YAML stream.
fn bulk_services(ns: &str, pool: &str, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: bulk-{i}, namespace: {ns}, labels: {{bulk: \"1\"}}, annotations: {{barelb.io/pool: {pool}}}}}\n\
                 spec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, ports: [{{port: 80}}]}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn bulk_addressed(c: &Cluster, ns: &str) -> usize {
    let list = c.json(&["-n", ns, "get", "services", "-l", "bulk=1"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string())
        .count()
}

#[test]
fn argo_cd_installs_barelb_then_its_pools_from_scratch_and_stays_synced() {
    let c = cluster("argo_cd_installs_barelb_then_its_pools_from_scratch_and_stays_synced");
    load_images();
    // From scratch: the earlier installs kept the CRDs; the chart brings them.
    ok(
        c.lab.kubectl(&[
            "delete",
            "crd",
            "addresspools.barelb.io",
            "loadbalancerpolicies.barelb.io",
            "bgppeers.barelb.io",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=60s",
        ]),
        "delete barelb's CRDs",
    );
    // Declared first, removed last (after Argo CD stops and the pools go).
    let installed = Installed::ArgoCd(c.clone());
    let w = Workload::named(&c, &unique_name("argo"), true);
    let bulk = format!("{}-bulk", w.ns);
    let _bulk_pool = c.lab.delete_on_drop("addresspool", &bulk, &[]);
    let argo = ArgoCd::start(&c.lab);

    let chart = argo.repo("barelb");
    chart.add_tree(
        &repo_root().join("deploy/helm/barelb"),
        "deploy/helm/barelb",
    );
    chart.commit(&[], "barelb's chart");
    let pools = argo.repo("pool-repo");
    let bulk_pool = format!(
        "---\napiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {bulk}}}\n\
         spec: {{addresses: [198.18.4.0/22], autoAssign: false, announce: {{mode: L2}}}}\n"
    );
    pools.commit(
        &[(
            "environments/lab/pools.yaml",
            &(w.pools_yaml() + &bulk_pool),
        )],
        "the lab's pools and router",
    );
    let apps = argo.repo("apps");
    apps.commit(
        &[(
            "apps/barelb.yaml",
            &app_of_apps(&argo, &chart.url, &pools.url),
        )],
        "barelb, then its pools",
    );
    let started = Instant::now();
    argo.application(
        APPS[0],
        json!({
            "project": "default",
            "source": {"repoURL": apps.url, "targetRevision": "main", "path": "apps"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": argo.ns},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
        }),
    );
    for app in APPS {
        argo.wait_app(app, "Synced and Healthy", 300, synced_healthy);
        eprintln!(
            "app-of-apps: {app} Synced/Healthy at {} ms",
            started.elapsed().as_millis()
        );
    }
    wait_ready(&c, 2);

    // An app team's Services get addresses from the synced pools.
    w.deploy_apps();
    let client = c.client(104);
    let l2 = address(&c, &w.ns, "web");
    answers(&client, &format!("http://{l2}/"));
    let routed = address(&c, &w.ns, "routed");

    // The router is not there yet: Argo CD shows the peer Degraded, saying so.
    let peer = w.peer.clone().unwrap();
    let n = c.nodes;
    let st = argo.wait_app(APPS[2], "Degraded (peer down)", 90, |st| {
        health_of(st, "BGPPeer", &peer).0 == "Degraded"
    });
    let (_, msg) = health_of(&st, "BGPPeer", &peer);
    assert!(
        msg.starts_with(&format!("0/{n} nodes established; not established: ")),
        "{msg}"
    );
    assert_eq!(st["health"]["status"], "Degraded", "{st}");
    assert_eq!(st["sync"]["status"], "Synced", "{st}");
    // It comes up: Healthy, every session established, the route answers.
    let router = c.router(3, 64501, 64500);
    client.route_via("203.0.113.80/28", &router);
    let st = argo.wait_app(APPS[2], "Healthy (peer up)", 90, synced_healthy);
    assert_eq!(
        health_of(&st, "BGPPeer", &peer),
        ("Healthy".to_string(), format!("{n}/{n} nodes established")),
        "{st}"
    );
    answers(&client, &format!("http://{routed}/"));

    // 1,000 allocations (status writes to a git-owned pool) and an operator
    // restart after every 250: nothing goes OutOfSync.
    let churn = Instant::now();
    for from in (0..BULK).step_by(BATCH) {
        apply(&c, &bulk_services(&w.ns, &bulk, from, BATCH));
        assert_synced(&argo);
        restart_pods(&c, "barelb-operator", &[]);
        assert_synced(&argo);
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while bulk_addressed(&c, &w.ns) < BULK {
        assert!(
            Instant::now() < deadline,
            "{} of {BULK} Services addressed",
            bulk_addressed(&c, &w.ns)
        );
        assert_synced(&argo);
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "{BULK} allocations and {} operator restarts in {} ms",
        BULK / BATCH,
        churn.elapsed().as_millis()
    );
    for app in APPS {
        argo.refresh(app);
    }
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        assert_synced(&argo);
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_status(
        &c,
        "addresspool",
        &bulk,
        "counting every allocation",
        |st| st["ipv4"]["allocated"] == BULK.to_string().as_str(),
    );
    assert_synced(&argo);
    eprintln!("Argo CD resident memory (MiB): {:?}", argo.rss_mib());

    drop(argo);
    drop(router);
    drop(w);
    drop(installed);
    check_uninstalled(&c);
}
