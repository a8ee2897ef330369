//! barelb's dashboards and alerts against a real Prometheus (Debian's)
//! scraping barelb installed by Helm on the lab cluster, found through
//! Kubernetes service discovery with deploy/prometheus/scrape-config.yaml.
//! A scripted scenario (allocate, exhaust a pool, a policy denial, an
//! address conflict, a speaker handing over, BGP up
//! and down) leaves every panel's every query with data: a query that
//! returns nothing fails the test with its panel's title. The alert rules
//! load and evaluate; a BGP session down shows as a pending alert. Traces
//! go to a real Jaeger: one Service's allocation is one trace from the
//! operator's reconcile to the announcing speaker's ARP announcement. Run by
//! scripts/test on the 3-node cluster.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use barelb_testsupport::cluster::{Cluster, cluster, cluster_dir};
use barelb_testsupport::install::*;
use barelb_testsupport::jaeger::{Jaeger, Span};
use barelb_testsupport::observability::{Prometheus, dashboards, metric_names};
use barelb_testsupport::{repo_root, unique_name};
use serde_json::{Value, json};

/// A Prometheus scraping every second, barelb's rules loaded, its targets
/// read from `targets.json` (file SD): Debian's Prometheus is built without
/// Kubernetes service discovery, so [`discover`] does what
/// deploy/prometheus/scrape-config.yaml asks of it.
fn prometheus_config(dir: &Path) -> String {
    let rules = repo_root().join("deploy/prometheus/barelb.rules.yaml");
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [rules.display().to_string()],
        "scrape_configs": [{"job_name": "barelb", "file_sd_configs": [{
            "files": [dir.join("targets.json").display().to_string()], "refresh_interval": "1s"}]}],
    });
    serde_yaml::to_string(&config).unwrap()
}

/// scrape-config.yaml's discovery, from the metrics Services'
/// EndpointSlices: each endpoint's address and `metrics` port, labelled
/// with the Service's `barelb.io/metrics` (component), the endpoint's node
/// and Pod. Written to `dir/targets.json` (replaced whole).
fn discover(c: &Cluster, dir: &Path) {
    let mut groups = Vec::new();
    for component in ["operator", "speaker"] {
        let service = format!("barelb-{component}-metrics");
        let slices = c.json(&[
            "-n",
            NS,
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={service}"),
        ]);
        for slice in slices["items"].as_array().unwrap() {
            let port = slice["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "metrics")
                .and_then(|p| p["port"].as_u64())
                .unwrap();
            for e in slice["endpoints"].as_array().into_iter().flatten() {
                let addr = e["addresses"][0].as_str().unwrap();
                groups.push(json!({
                    "targets": [format!("{addr}:{port}")],
                    "labels": {"component": component,
                               "node": e["nodeName"].as_str().unwrap_or_default(),
                               "pod": e["targetRef"]["name"].as_str().unwrap_or_default()},
                }));
            }
        }
    }
    let tmp = dir.join("targets.json.tmp");
    std::fs::write(&tmp, serde_json::to_string(&groups).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("targets.json")).unwrap();
}

/// The kubernetes_sd_configs job users get in scrape-config.yaml is what
/// [`discover`] stands in for: it keeps the same Services and port.
fn scrape_config_selects_what_discover_does() {
    let path = repo_root().join("deploy/prometheus/scrape-config.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let cfg: Value = serde_yaml::from_str(&text).unwrap();
    let job = &cfg["scrape_configs"][0];
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "endpointslice");
    let relabel = job["relabel_configs"].as_array().unwrap();
    let keeps: Vec<(&Value, &Value)> = relabel
        .iter()
        .filter(|r| r["action"] == "keep")
        .map(|r| (&r["source_labels"][0], &r["regex"]))
        .collect();
    assert_eq!(
        keeps,
        [
            (
                &json!("__meta_kubernetes_service_label_barelb_io_metrics"),
                &json!("operator|speaker")
            ),
            (
                &json!("__meta_kubernetes_endpointslice_port_name"),
                &json!("metrics")
            ),
        ]
    );
    let targets: BTreeSet<&str> = relabel
        .iter()
        .filter_map(|r| r["target_label"].as_str())
        .collect();
    assert_eq!(targets, BTreeSet::from(["component", "node", "pod"]));
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "not {what} in {secs} s");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The single value of an instant query (NaN when it returns nothing).
fn value(p: &Prometheus, q: &str) -> f64 {
    p.query(q)
        .first()
        .and_then(|s| s["value"][1].as_str()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The node (1-based) named in a Service's Announced condition.
fn announcing_node(c: &Cluster, ns: &str, svc: &str) -> usize {
    let msg = announced(c, ns, svc);
    (1..=c.nodes)
        .find(|i| msg.contains(&format!("node-{i}")))
        .unwrap_or_else(|| panic!("{ns}/{svc}: no announcing node in {msg:?}"))
}

/// The spans of the trace in which `service` was given `address`, once it
/// holds the speaker's announcement too (spans arrive in batches).
///
/// Each process exports its spans in batches of its own (up to 5 s apart),
/// so the speaker's `announce` can reach Jaeger before the operator's
/// `plan` and `send` above it: a trace counts once both have arrived too.
/// If they never do, the last trace seen to reach the announce is returned
/// for `check_allocation_trace` to say what is missing.
fn allocation_trace(jaeger: &Jaeger, service: &str, address: &str) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut announced_incomplete = None;
    loop {
        let mut seen = Vec::new();
        for id in jaeger.find("barelb-operator", "reconcile", &[("service", service)]) {
            let spans = jaeger.trace(&id);
            let announced = spans.iter().any(|s| {
                s.service == "barelb-speaker"
                    && s.operation == "announce"
                    && s.tag("address") == Some(address)
            });
            let has = |op: &str| {
                spans
                    .iter()
                    .any(|s| s.service == "barelb-operator" && s.operation == op)
            };
            if announced && has("plan") && has("send") {
                return spans;
            }
            if announced {
                announced_incomplete = Some(spans.clone());
            }
            seen.push(
                spans
                    .iter()
                    .map(|s| format!("{}:{}{:?}", s.service, s.operation, s.tag("addresses")))
                    .collect::<Vec<_>>(),
            );
        }
        if Instant::now() >= deadline
            && let Some(spans) = announced_incomplete.take()
        {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "no trace of {service} reaches a speaker's announce of {address}; its traces: {seen:?}; services: {:?}",
            jaeger.services(),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One trace, operator to speaker: reconcile (service, addresses, pool) →
/// allocate and status_write, and plan → send → the speaker's announce,
/// each span the child of the one before.
fn check_allocation_trace(spans: &[Span], service: &str, address: &str, pool: &str) {
    let names: Vec<String> = spans
        .iter()
        .map(|s| format!("{}:{}", s.service, s.operation))
        .collect();
    let find = |svc: &str, op: &str, f: &dyn Fn(&Span) -> bool| -> Span {
        spans
            .iter()
            .find(|s| s.service == svc && s.operation == op && f(s))
            .cloned()
            .unwrap_or_else(|| panic!("no {svc} {op} span in the trace: {names:?}"))
    };
    let reconcile = find("barelb-operator", "reconcile", &|s| {
        s.tag("service") == Some(service)
    });
    assert!(
        reconcile
            .tag("addresses")
            .is_some_and(|a| a.split(',').any(|a| a == address)),
        "{:?}",
        reconcile.tags
    );
    assert_eq!(reconcile.tag("pool"), Some(pool), "{:?}", reconcile.tags);
    assert_eq!(reconcile.tag("outcome"), Some("Allocated"));
    assert_eq!(reconcile.parent, None, "reconcile is the trace's root");
    let child_of = |parent: &Span| {
        let id = parent.span_id.clone();
        move |s: &Span| s.parent.as_deref() == Some(id.as_str())
    };
    find("barelb-operator", "allocate", &child_of(&reconcile));
    find("barelb-operator", "status_write", &child_of(&reconcile));
    let plan = find("barelb-operator", "plan", &child_of(&reconcile));
    let send = find("barelb-operator", "send", &child_of(&plan));
    assert!(
        send.tag("addresses")
            .is_some_and(|a| a.split(',').any(|a| a == address)),
        "{:?}",
        send.tags
    );
    let announce = find("barelb-speaker", "announce", &child_of(&send));
    assert_eq!(announce.tag("address"), Some(address));
    assert_eq!(announce.tag("quiet"), Some("false"));
}

/// `kubectl barelb ARGS` (the real binary) against the cluster.
fn kubectl_barelb(c: &Cluster, args: &[&str]) -> String {
    let out = std::process::Command::new(barelb_testsupport::binary("kubectl-barelb"))
        .args(args)
        .args(["--kubeconfig", &c.lab.kubeconfig.display().to_string()])
        .output()
        .unwrap();
    let text = barelb_testsupport::lab::output_text(&out);
    assert!(out.status.success(), "kubectl barelb {args:?}: {text}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `why` explains an addressed Service (its node announces it), one
/// waiting on an exhausted pool, one denied by a policy (named with its
/// rule) and one of another class; `status` shows the pools, the policy,
/// the peer and every node's connected speaker.
fn kubectl_barelb_explains(c: &Cluster, w: &Workload, tiny: &str, other: &str, policy: &str) {
    let why = |ns: &str, svc: &str, what: &str, wanted: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = kubectl_barelb(c, &["why", &format!("svc/{svc}"), "-n", ns]);
            if wanted.iter().all(|w| text.contains(w)) {
                eprintln!("kubectl barelb why svc/{svc} -n {ns}:\n{text}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "why {ns}/{svc} ({what}) lacks {wanted:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let owner = format!("node-{}", announcing_node(c, &w.ns, "web"));
    why(
        &w.ns,
        "web",
        "addressed",
        &[
            &format!("{owner:<24} announces"),
            "Allocated: True Allocated",
        ],
    );
    why(
        &w.ns,
        "tiny-1",
        "waiting",
        &["Allocated: False PoolExhausted", tiny],
    );
    why(
        other,
        "late",
        "denied",
        &[
            "Allocated: False PolicyDenied",
            policy,
            "own-namespace",
            "denied: ",
        ],
    );
    apply(
        c,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: foreign, namespace: {}}}\n\
             spec: {{type: LoadBalancer, loadBalancerClass: example.com/other, allocateLoadBalancerNodePorts: false, ports: [{{port: 80}}]}}\n",
            w.ns
        ),
    );
    why(
        &w.ns,
        "foreign",
        "another class",
        &["not served by barelb: spec.loadBalancerClass example.com/other"],
    );

    let status: Value =
        serde_json::from_str(&kubectl_barelb(c, &["status", "-o", "json"])).unwrap();
    let names = |section: &str| -> Vec<String> {
        status[section]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        names("pools").contains(&format!("{}-l2", w.ns)),
        "{status:#}"
    );
    assert!(names("pools").contains(&tiny.to_string()), "{status:#}");
    assert!(
        names("policies").contains(&policy.to_string()),
        "{status:#}"
    );
    assert!(
        names("peers").contains(w.peer.as_ref().unwrap()),
        "{status:#}"
    );
    let speakers = status["speakers"].as_array().unwrap();
    assert_eq!(speakers.len(), c.nodes, "{status:#}");
    // Streams and links are the leader's word, read through the Pod proxy.
    assert!(
        status["leader"]
            .as_str()
            .unwrap()
            .starts_with("barelb-operator-"),
        "{status:#}"
    );
    for s in speakers {
        assert_eq!(s["columns"]["speaker"], "connected", "{status:#}");
        assert_eq!(s["columns"]["link"], "up", "{status:#}");
    }
    let holder = speakers
        .iter()
        .find(|s| s["name"] == owner.as_str())
        .unwrap();
    assert_ne!(holder["columns"]["addresses"], "0", "{status:#}");
    assert_ne!(holder["columns"]["planned"], "0", "{status:#}");
    eprintln!("{}", kubectl_barelb(c, &["status"]));
}

#[test]
fn a_real_prometheus_and_jaeger_answer_dashboards_alerts_and_traces() {
    let c = cluster("a_real_prometheus_and_jaeger_answer_dashboards_alerts_and_traces");
    // Pods on the nodes reach the control plane's LAN address.
    let jaeger = Jaeger::start(
        cluster_dir().join(unique_name("jaeger")),
        "198.19.0.1".parse().unwrap(),
    );
    let endpoint = format!("tracing.otlpEndpoint={}", jaeger.otlp);
    // The lab's nodes announce on eth0; naming it turns on the link watch.
    let installed =
        install_with_helm_sets(&c, &["speaker.extraArgs[0]=--interface=eth0", &endpoint]);
    scrape_config_selects_what_discover_does();
    let dir = cluster_dir().join(unique_name("prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    discover(&c, &dir);
    let prom = Prometheus::start(dir.clone(), &prometheus_config(&dir));
    let expected = 2 + c.nodes;
    wait("every barelb Pod scraped", 60, || {
        let t = prom.targets();
        t.len() == expected && t.iter().all(|(_, health, _)| health == "up")
    });
    let rules = prom.api("rules");
    let alerting: Vec<&Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r["type"] == "alerting")
        .collect();
    // Every alert in the rules file is loaded (counted from the file, so a new alert needs no edit here).
    let in_file = std::fs::read_to_string(repo_root().join("deploy/prometheus/barelb.rules.yaml"))
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(in_file > 0);
    assert_eq!(alerting.len(), in_file, "{rules}");

    // Allocate: an L2 and a BGP Service (the router is not up yet).
    let w = workload(&c, true);
    let client = c.client(105);
    let vip = address(&c, &w.ns, "web");
    answers(&client, &format!("http://{vip}/"));
    let web = format!("{}/web", w.ns);
    let spans = allocation_trace(&jaeger, &web, &vip);
    check_allocation_trace(&spans, &web, &vip, &format!("{}-l2", w.ns));
    eprintln!(
        "trace of {web}: {} spans, {:?}",
        spans.len(),
        spans
            .iter()
            .map(|s| s.operation.as_str())
            .collect::<Vec<_>>()
    );
    let routed = address(&c, &w.ns, "routed");
    wait("BGP sessions down in Prometheus", 60, || {
        value(&prom, "count(barelb_bgp_session_up == 0)") == c.nodes as f64
    });
    wait("BarelbBGPSessionDown pending", 30, || {
        !prom
            .query(r#"ALERTS{alertname="BarelbBGPSessionDown"}"#)
            .is_empty()
    });
    let router = c.router(3, 64501, 64500);
    client.route_via("203.0.113.80/28", &router);
    answers(&client, &format!("http://{routed}/"));
    wait("BGP sessions up in Prometheus", 60, || {
        value(&prom, "sum(barelb_bgp_session_up)") == c.nodes as f64
    });

    // Exhaust a one-address pool: the second claim fails.
    let tiny = format!("{}-tiny", w.ns);
    // Its Services go first (guards drop in reverse): a pool holding an
    // address is not deleted.
    let tiny_guard = c.lab.delete_on_drop("addresspool", &tiny, &[]).waiting();
    let tiny_services =
        ["tiny-0", "tiny-1"].map(|n| c.lab.delete_on_drop("service", n, &["-n", &w.ns]).waiting());
    apply(
        &c,
        &format!(
            "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {tiny}}}\n\
             spec: {{addresses: [198.19.0.250/32], autoAssign: false, announce: {{mode: L2}}}}\n"
        ),
    );
    // Claims on it are admitted once the operator has seen it.
    wait_status(&c, "addresspool", &tiny, "Ready", |st| {
        st["conditions"][0]["status"] == "True"
    });
    std::thread::sleep(Duration::from_secs(1));
    let mut yaml = String::new();
    for i in 0..2 {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: tiny-{i}, namespace: {ns}, annotations: {{barelb.io/pool: {tiny}}}}}\n\
             spec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, ports: [{{port: 80}}]}}\n",
            ns = w.ns
        );
    }
    apply(&c, &yaml);

    // A policy: Services of the workload's namespace only. Another
    // namespace's claim is denied at admission.
    let policy = format!("{}-own-namespace", w.ns);
    let other = format!("{}-other", w.ns);
    let policy_guard = [
        c.lab
            .delete_on_drop("loadbalancerpolicy", &policy, &[])
            .waiting(),
        c.lab.delete_on_drop("namespace", &other, &[]).waiting(),
    ];
    // Before the policy: a Service of the other namespace waits on the
    // exhausted pool; once the policy is in force its claim is denied.
    apply(
        &c,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {other}}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {{name: late, namespace: {other}, annotations: {{barelb.io/pool: {tiny}}}}}\n\
             spec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, ports: [{{port: 80}}]}}\n"
        ),
    );
    apply(
        &c,
        &format!(
            "apiVersion: barelb.io/v1alpha1\nkind: LoadBalancerPolicy\nmetadata: {{name: {policy}}}\n\
             spec: {{rules: [{{name: own-namespace, expression: \"namespace.name == '{ns}'\", message: only {ns}}}]}}\n",
            ns = w.ns
        ),
    );
    wait("the policy Ready", 60, || {
        c.json(&["get", "loadbalancerpolicy", &policy])["status"]["conditions"][0]["status"]
            == "True"
    });
    let denied = c.lab.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: denied, namespace: {other}, annotations: {{barelb.io/pool: {}-l2}}}}\n\
         spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n",
        w.ns
    ));
    assert!(!denied.status.success(), "the policy let {other} claim");
    kubectl_barelb_explains(&c, &w, &tiny, &other, &policy);

    // A failover: the announcing node's speaker is deleted and hands over.
    let owner = announcing_node(&c, &w.ns, "web");
    let node = format!("spec.nodeName=node-{owner}");
    restart_pods(&c, "barelb-speaker", &["--field-selector", &node]);
    discover(&c, &dir);
    // Another host claims the L2 address: a conflict on the (new) announcing
    // node, whose series live on (a speaker's go with its Pod).
    let ns_exec = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &client.ns])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            barelb_testsupport::lab::output_text(&out)
        );
    };
    ns_exec(&["ip", "addr", "add", &format!("{vip}/32"), "dev", "eth0"]);
    ns_exec(&["arping", "-U", "-c", "2", "-I", "eth0", &vip]);
    ns_exec(&["ip", "addr", "del", &format!("{vip}/32"), "dev", "eth0"]);
    // And asks who has it: requests and replies on the new owner.
    ns_exec(&["arping", "-c", "2", "-w", "3", "-I", "eth0", &vip]);

    // The router shuts its sessions down (a Cease NOTIFICATION each), then
    // takes them up again.
    for i in 1..=c.nodes {
        router.birdc(&["disable", &format!("node{i}")]);
    }
    wait("NOTIFICATIONs received", 60, || {
        value(
            &prom,
            r#"sum(barelb_bgp_notifications_total{direction="received"})"#,
        ) >= 1.0
    });
    for i in 1..=c.nodes {
        router.birdc(&["enable", &format!("node{i}")]);
    }
    wait("every scrape up again", 60, || {
        let t = prom.targets();
        t.len() == expected && t.iter().all(|(_, health, _)| health == "up")
    });
    let counted = || {
        [
            "sum(barelb_failovers_total)",
            "sum(barelb_link_carrier_changes_total)",
            "sum(barelb_l2_conflicts_total)",
        ]
        .map(|q| value(&prom, q))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(counted(), [f, l, c] if f >= 1.0 && l >= 0.0 && c >= 1.0) {
        assert!(
            Instant::now() < deadline,
            "failovers, carrier changes, conflicts: {:?}",
            counted()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));

    // Every query of every panel returns data.
    let mut empty = Vec::new();
    let mut ran = 0;
    for d in dashboards() {
        for (title, q) in d.queries("5m") {
            ran += 1;
            let finite = prom.query(&q).iter().any(|s| {
                s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(f64::is_finite)
            });
            if !finite {
                empty.push(format!("{} / {title}: {q}", d.json["title"]));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "panels with no data:\n{}",
        empty.join("\n")
    );
    eprintln!("{ran} dashboard queries answered with data");

    // Every metric a dashboard or alert names is one Prometheus scraped.
    let scraped: BTreeSet<String> = prom
        .api("label/__name__/values")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    let mut named = metric_names(
        &std::fs::read_to_string(repo_root().join("deploy/prometheus/barelb.rules.yaml")).unwrap(),
    );
    for d in dashboards() {
        named.extend(d.metric_names());
    }
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !scraped.contains(*n) && !scraped.contains(&format!("{n}_bucket")))
        .collect();
    assert!(missing.is_empty(), "named but never scraped: {missing:?}");
    let health: Vec<(String, String)> = prom.api("rules")["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["health"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(health.iter().all(|(_, h)| h == "ok"), "{health:?}");

    drop(prom);
    drop(jaeger);
    drop(router);
    drop(policy_guard);
    drop(tiny_services);
    drop(tiny_guard);
    drop(w);
    drop(installed);
}
