//! Allocation against the real apiserver of the lab: a real operator
//! process per test, real Services, status read back through the API.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code: failing loudly is the point

mod common;

use std::sync::{Arc, Mutex};

use barelb_core::request::ServiceRecord;
use common::{Instance, allocated, free_local_addr, http_get, ip, ips};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

#[tokio::test]
async fn allocates_releases_and_respects_the_class() {
    let mut t = Instance::new("operator::allocates_releases_and_respects_the_class").await;
    let pool = t.pool(
        "main",
        r#"{addresses: ["198.51.100.10-198.51.100.12"], announce: {mode: L2}}"#,
    );
    let metrics_addr = free_local_addr();
    let op = t.operator_at(&metrics_addr, &[]);

    t.service("first", json!({}), json!({})).await;
    assert_eq!(t.wait_ips("first", 1).await, [ip("198.51.100.10")]);
    let svc = t.get("first").await;
    // One write per Service: the condition names the pool; no annotation.
    assert!(
        svc.metadata
            .annotations
            .iter()
            .flatten()
            .all(|(k, _)| !k.starts_with("barelb.io/")),
        "{:?}",
        svc.metadata
    );
    let condition = svc
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "barelb.io/Allocated"))
        .unwrap();
    assert_eq!(
        condition.message,
        format!("198.51.100.10 from AddressPool {pool}")
    );
    let ingress = &svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0];
    assert_eq!(ingress.ip_mode.as_deref(), Some("VIP"));
    // The cleanup finalizer: a load balancer's mark on what it serves.
    t.wait_for("first", "the cleanup finalizer", has_cleanup_finalizer)
        .await;

    // Another class and a class-less Service are not ours (--handle-classless=false).
    t.service(
        "other",
        json!({"loadBalancerClass": "someone.else/lb"}),
        json!({}),
    )
    .await;
    let classless: Service = serde_json::from_value(json!({
        "metadata": {"name": "classless"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
    }))
    .unwrap();
    t.services()
        .create(&Default::default(), &classless)
        .await
        .unwrap();
    t.service("second", json!({}), json!({})).await;
    assert_eq!(t.wait_ips("second", 1).await, [ip("198.51.100.11")]);
    for name in ["other", "classless"] {
        let s = t.get(name).await;
        assert!(
            ips(&s).is_empty() && allocated(&s).is_none() && !has_cleanup_finalizer(&s),
            "{name} touched: {:?} {:?}",
            s.metadata.finalizers,
            s.status
        );
    }
    let st = t
        .wait_pool(&pool, "2 allocated", |s| s["ipv4"]["allocated"] == "2")
        .await;
    assert_eq!(st["ipv4"]["total"], "3");
    assert_eq!(st["usage"], "2/3");
    assert_eq!(st["conditions"][0]["status"], "True");

    // Deleting frees the address: the next Service gets the lowest free
    // one. The operator takes its finalizer off, so the Service goes.
    t.delete_service("first").await;
    t.wait_gone("first").await;
    t.wait_pool(&pool, "1 allocated", |s| s["ipv4"]["allocated"] == "1")
        .await;
    t.service("third", json!({}), json!({})).await;
    assert_eq!(t.wait_ips("third", 1).await, [ip("198.51.100.10")]);

    // A Service that stops qualifying is released and its status cleared.
    let patch = json!({"spec": {"type": "ClusterIP", "loadBalancerClass": null, "allocateLoadBalancerNodePorts": null, "externalTrafficPolicy": null}});
    t.services()
        .patch(
            "second",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
        .unwrap();
    t.wait_for("second", "release", |s| {
        ips(s).is_empty() && allocated(s).is_none() && !has_cleanup_finalizer(s)
    })
    .await;
    t.wait_pool(&pool, "1 allocated", |s| s["ipv4"]["allocated"] == "1")
        .await;

    let reasons: Vec<String> = t
        .wait_events("third", 1)
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(reasons, ["IPAllocated"], "one event per change");

    let metrics = http_get(&metrics_addr, "/metrics");
    for line in [
        format!("barelb_pool_addresses{{pool=\"{pool}\",family=\"IPv4\"}} 3.0"),
        format!("barelb_pool_addresses_in_use{{pool=\"{pool}\",family=\"IPv4\"}} 1.0"),
        "barelb_leader 1".to_string(),
        "barelb_allocations_total 3".to_string(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    assert!(
        metrics.contains("barelb_reconcile_duration_seconds_count"),
        "{metrics}"
    );
    assert!(metrics.contains("barelb_releases_total 2"), "{metrics}");
    assert_eq!(http_get(&metrics_addr, "/readyz"), "");

    // Deleted while no operator runs: the Service waits, Terminating and
    // still holding its address, until an operator releases it.
    drop(op);
    t.delete_service("third").await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let waiting = t.get("third").await;
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(ips(&waiting), [ip("198.51.100.10")]);
    let _op = t.operator(&[]);
    t.wait_gone("third").await;
    t.wait_pool(&pool, "none allocated", |s| s["ipv4"]["allocated"] == "0")
        .await;
}

#[tokio::test]
async fn named_pools_explicit_ips_and_bad_annotations() {
    let mut t = Instance::new("operator::named_pools_explicit_ips_and_bad_annotations").await;
    let auto = t.pool(
        "auto",
        r#"{addresses: ["198.51.100.0/28"], announce: {mode: L2}}"#,
    );
    let manual = t.pool(
        "manual",
        r#"{addresses: ["203.0.113.0/28"], autoAssign: false, priority: 1, announce: {mode: L2}}"#,
    );
    let _op = t.operator(&[]);

    t.service("auto", json!({}), json!({})).await;
    assert_eq!(
        t.wait_ips("auto", 1).await,
        [ip("198.51.100.0")],
        "autoAssign: false pools are skipped"
    );
    t.service("named", json!({}), json!({"barelb.io/pool": manual}))
        .await;
    assert_eq!(t.wait_ips("named", 1).await, [ip("203.0.113.0")]);
    t.service(
        "explicit",
        json!({}),
        json!({"barelb.io/ips": "203.0.113.9"}),
    )
    .await;
    assert_eq!(t.wait_ips("explicit", 1).await, [ip("203.0.113.9")]);
    t.service("lbip", json!({"loadBalancerIP": "198.51.100.7"}), json!({}))
        .await;
    assert_eq!(t.wait_ips("lbip", 1).await, [ip("198.51.100.7")]);

    // Bad requests: a clear reason, nothing allocated, nobody else affected.
    let bad = [
        (
            "notip",
            json!({"barelb.io/ips": "banana"}),
            "InvalidRequest",
            "not an IP address",
        ),
        (
            "twov4",
            json!({"barelb.io/ips": "198.51.100.3,198.51.100.4"}),
            "InvalidRequest",
            "two IPv4",
        ),
        (
            "nopool",
            json!({"barelb.io/ips": "192.0.2.1"}),
            "InvalidRequest",
            "in no AddressPool",
        ),
        (
            "unknown",
            json!({"barelb.io/pool": "does-not-exist"}),
            "InvalidRequest",
            "does not exist",
        ),
        (
            "taken",
            json!({"barelb.io/ips": "203.0.113.9"}),
            "IPInUse",
            "used by",
        ),
    ];
    for (name, ann, _, _) in &bad {
        t.service(name, json!({}), ann.clone()).await;
    }
    for (name, _, reason, words) in &bad {
        let msg = t.wait_reason(name, reason).await;
        assert!(msg.contains(words), "{name}: {msg}");
        assert!(!msg.contains('\n'));
        assert!(ips(&t.get(name).await).is_empty(), "{name} got an address");
        let evs = t.wait_events(name, 1).await;
        assert!(
            evs.iter()
                .any(|(r, m)| r == "AllocationFailed" && m.contains(reason)),
            "{name}: {evs:?}"
        );
    }
    assert_eq!(ips(&t.get("explicit").await), [ip("203.0.113.9")]);

    // A Service with an address that then gets a malformed annotation keeps it.
    let patch = json!({"metadata": {"annotations": {"barelb.io/ips": "not-an-ip"}}});
    t.services()
        .patch("auto", &Default::default(), &kube::api::Patch::Merge(patch))
        .await
        .unwrap();
    t.wait_reason("auto", "InvalidRequest").await;
    assert_eq!(ips(&t.get("auto").await), [ip("198.51.100.0")]);
    let st = t
        .wait_pool(&auto, "3 allocated", |s| s["ipv4"]["allocated"] == "2")
        .await;
    assert_eq!(st["conditions"][0]["status"], "True");
}

#[tokio::test]
async fn sharing_allowed_and_refused() {
    let mut t = Instance::new("operator::sharing_allowed_and_refused").await;
    t.pool(
        "p",
        r#"{addresses: ["198.51.100.0/28"], announce: {mode: L2}}"#,
    );
    let _op = t.operator(&[]);
    let key = json!({"barelb.io/sharing-key": "edge"});
    t.service("http", json!({"ports": [{"port": 80}]}), key.clone())
        .await;
    let shared = t.wait_ips("http", 1).await;
    t.service(
        "dns",
        json!({"ports": [{"port": 53, "protocol": "UDP"}]}),
        key.clone(),
    )
    .await;
    assert_eq!(
        t.wait_ips("dns", 1).await,
        shared,
        "same key, distinct ports: shared"
    );

    t.service("clash", json!({"ports": [{"port": 80}]}), key.clone())
        .await;
    let msg = t.wait_reason("clash", "IPInUse").await;
    assert!(msg.contains("80/TCP"), "{msg}");
    t.service(
        "local",
        json!({"ports": [{"port": 443}], "externalTrafficPolicy": "Local"}),
        key.clone(),
    )
    .await;
    let msg = t.wait_reason("local", "IPInUse").await;
    assert!(msg.contains("externalTrafficPolicy"), "{msg}");
    let explicit = json!({"barelb.io/ips": shared[0].to_string()});
    t.service("nokey", json!({"ports": [{"port": 8080}]}), explicit)
        .await;
    t.wait_reason("nokey", "IPInUse").await;

    // Without a key a Service gets its own address.
    t.service("alone", json!({}), json!({})).await;
    assert_ne!(t.wait_ips("alone", 1).await, shared);
}

#[tokio::test]
async fn dual_stack_single_prefer_and_require() {
    let mut t = Instance::new("operator::dual_stack_single_prefer_and_require").await;
    let v4 = t.pool(
        "v4",
        r#"{addresses: ["198.51.100.0/30"], priority: 1, announce: {mode: L2}}"#,
    );
    let _op = t.operator(&[]);

    t.service(
        "single6",
        json!({"ipFamilies": ["IPv6"], "ipFamilyPolicy": "SingleStack"}),
        json!({}),
    )
    .await;
    t.wait_reason("single6", "NoEligiblePool").await;
    t.service(
        "require",
        json!({"ipFamilyPolicy": "RequireDualStack"}),
        json!({}),
    )
    .await;
    t.wait_reason("require", "NoEligiblePool").await;
    t.service(
        "prefer",
        json!({"ipFamilyPolicy": "PreferDualStack"}),
        json!({}),
    )
    .await;
    assert_eq!(t.wait_ips("prefer", 1).await, [ip("198.51.100.0")]);
    let msg = t.wait_reason("prefer", "PartiallyAllocated").await;
    assert!(msg.contains("IPv6"), "{msg}");

    // The pool gains IPv6: the preferred family is filled from the same pool,
    // the waiting Services get theirs, and no IPv4 address moves.
    let out = t.lab.kubectl(&[
        "patch",
        "addresspool",
        &v4,
        "--type=merge",
        "-p",
        r#"{"spec":{"addresses":["198.51.100.0/30","2001:db8:7::/64"]}}"#,
    ]);
    assert!(out.status.success());
    // Which Service gets which of the three lowest IPv6 addresses depends on
    // creation order (second precision, then name); the set does not.
    let single6 = t.wait_ips("single6", 1).await;
    let require = t.wait_ips("require", 2).await;
    let prefer = t.wait_ips("prefer", 2).await;
    assert_eq!(
        prefer[0],
        ip("198.51.100.0"),
        "the IPv4 address did not move"
    );
    assert_eq!(require[0], ip("198.51.100.1"));
    let mut v6 = vec![single6[0], require[1], prefer[1]];
    v6.sort();
    assert_eq!(
        v6,
        [ip("2001:db8:7::"), ip("2001:db8:7::1"), ip("2001:db8:7::2")]
    );
    let st = t
        .wait_pool(&v4, "v6 counted", |s| s["ipv6"]["allocated"] == "3")
        .await;
    assert_eq!(st["ipv6"]["total"], "18446744073709551616");
    assert_eq!(st["usage"], "2/4 3/2^64");
}

#[tokio::test]
async fn a_batch_pending_at_start_is_addressed_before_any_finalizer_is_added() {
    let mut t = Instance::new("operator::a_batch_pending_at_start").await;
    t.pool(
        "batch",
        r#"{addresses: ["198.51.100.32/27"], announce: {mode: L2}}"#,
    );
    let names: Vec<String> = (0..12).map(|i| format!("pending-{i}")).collect();
    for name in &names {
        t.service(name, json!({}), json!({})).await;
    }
    // Every version of the Services, in the apiserver's order.
    let versions = watch_versions(t.services());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while versions.lock().unwrap().len() < names.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch's first list"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Two writes in flight: with a Service's status and finalizer written
    // one after the other, the first finalizer would come long before the
    // last status.
    let _op = t.operator(&["--write-concurrency=2"]);
    let mut seen = std::collections::BTreeSet::new();
    for name in &names {
        let got = t.wait_ips(name, 1).await;
        assert!(seen.insert(got[0]), "{name}: {got:?} given twice");
    }
    for name in &names {
        t.wait_for(name, "the cleanup finalizer", has_cleanup_finalizer)
            .await;
    }
    let versions = versions.lock().unwrap().clone();
    let first = |pred: &dyn Fn(&Service) -> bool| -> Vec<usize> {
        names
            .iter()
            .map(|n| {
                let at = versions
                    .iter()
                    .position(|s| s.metadata.name.as_ref() == Some(n) && pred(s));
                at.unwrap_or_else(|| panic!("{n}: never seen so"))
            })
            .collect()
    };
    let addressed = first(&|s| !ips(s).is_empty());
    let finalized = first(&|s| has_cleanup_finalizer(s));
    assert!(
        addressed.iter().max() < finalized.iter().min(),
        "a finalizer was added before every status was written: addressed at {addressed:?}, finalizers at {finalized:?} (watch event numbers)"
    );
}

/// Every Service version `api`'s watch delivers, in order, from now on.
fn watch_versions(api: kube::Api<Service>) -> Arc<Mutex<Vec<Service>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = seen.clone();
    let mut events = Box::pin(watcher(api, watcher::Config::default()).applied_objects());
    tokio::spawn(async move {
        while let Some(Ok(svc)) = events.next().await {
            into.lock().unwrap().push(svc);
        }
    });
    seen
}

#[tokio::test]
async fn exhaustion_then_room_freed() {
    let mut t = Instance::new("operator::exhaustion_then_room_freed").await;
    t.pool(
        "tiny",
        r#"{addresses: ["198.51.100.5-198.51.100.6"], announce: {mode: L2}}"#,
    );
    let _op = t.operator(&[]);
    for name in ["a", "b"] {
        t.service(name, json!({}), json!({})).await;
        t.wait_ips(name, 1).await;
    }
    t.service("c", json!({}), json!({})).await;
    let msg = t.wait_reason("c", "PoolExhausted").await;
    assert!(msg.contains("no free IPv4"), "{msg}");
    let freed = ips(&t.get("a").await);
    t.delete_service("a").await;
    assert_eq!(t.wait_ips("c", 1).await, freed);
}

#[tokio::test]
async fn pool_edits_keep_addresses_and_overlaps_are_reported() {
    let mut t =
        Instance::new("operator::pool_edits_keep_addresses_and_overlaps_are_reported").await;
    let pool = t.pool(
        "p",
        r#"{addresses: ["198.51.100.0/28"], announce: {mode: L2}}"#,
    );
    let _op = t.operator(&[]);
    t.service("low", json!({}), json!({"barelb.io/ips": "198.51.100.2"}))
        .await;
    t.service("high", json!({}), json!({"barelb.io/ips": "198.51.100.12"}))
        .await;
    t.wait_ips("low", 1).await;
    t.wait_ips("high", 1).await;

    // Shrink the pool past "high": it keeps its address and says so.
    let out = t.lab.kubectl(&[
        "patch",
        "addresspool",
        &pool,
        "--type=merge",
        "-p",
        r#"{"spec":{"addresses":["198.51.100.0/29"]}}"#,
    ]);
    assert!(out.status.success());
    let msg = t.wait_reason("high", "OutsidePool").await;
    assert!(
        msg.contains("198.51.100.12") && msg.contains("outside every AddressPool"),
        "{msg}"
    );
    assert_eq!(ips(&t.get("high").await), [ip("198.51.100.12")]);
    assert_eq!(ips(&t.get("low").await), [ip("198.51.100.2")]);
    t.wait_pool(&pool, "1 allocated of 8", |s| s["usage"] == "1/8")
        .await;

    // An overlapping newer pool is not Ready and names the older one.
    // Creation times have one-second resolution and ties go by name (where
    // "...-newer" sorts first): make sure the newer pool is a second younger.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let newer = t.pool(
        "newer",
        r#"{addresses: ["198.51.100.4/30"], priority: 1, announce: {mode: L2}}"#,
    );
    let st = t
        .wait_pool(&newer, "Ready=False", |s| {
            s["conditions"][0]["status"] == "False"
        })
        .await;
    let msg = st["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains(&pool) && msg.contains("overlap"), "{msg}");
    t.service("next", json!({}), json!({})).await;
    assert_eq!(
        t.wait_ips("next", 1).await,
        [ip("198.51.100.0")],
        "the not-Ready pool is not used"
    );
}

#[tokio::test]
async fn policies_decide_which_namespaces_may_claim_a_pool() {
    let mut t = Instance::new("operator::policies_decide_which_namespaces_may_claim_a_pool").await;
    let pool = t.pool(
        "teams",
        r#"{addresses: ["198.51.100.0/29"], announce: {mode: L2}}"#,
    );
    let out = t.lab.kubectl(&["label", "addresspool", &pool, "team=web"]);
    assert!(out.status.success());
    let policy = format!("{}-team", t.id);
    let yaml = format!(
        r#"apiVersion: barelb.io/v1alpha1
kind: LoadBalancerPolicy
metadata: {{name: {policy}}}
spec:
  poolSelector: {{matchLabels: {{barelb.io/test: {id}}}}}
  rules:
  - name: team-matches
    expression: "'team' in namespace.labels && namespace.labels['team'] == pool.labels['team']"
    message: "the namespace's team label must match the pool's team"
"#,
        id = t.id
    );
    let out = t.lab.apply(&yaml);
    assert!(
        out.status.success(),
        "{}",
        barelb_testsupport::lab::output_text(&out)
    );
    let _policy = t.lab.delete_on_drop("loadbalancerpolicy", &policy, &[]);
    let metrics_addr = free_local_addr();
    let _op = t.operator_at(&metrics_addr, &[]);
    // The policy says it is in force, for `kubectl get` and Argo CD.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        let out = t.lab.kubectl(&[
            "get",
            "loadbalancerpolicy",
            &policy,
            "-o",
            "jsonpath={.status}",
        ]);
        let st: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        if st["conditions"][0]["status"] == "True" || std::time::Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status["observedGeneration"], 1, "{status}");
    assert_eq!(status["ruleCount"], 1, "{status}");
    assert_eq!(status["poolsSelected"], 1, "{status}");
    assert_eq!(
        status["conditions"][0]["message"], "1 rule compiled; selects 1 AddressPool",
        "{status}"
    );

    t.service("web", json!({}), json!({})).await;
    let msg = t.wait_reason("web", "PolicyDenied").await;
    assert!(
        msg.contains(&format!("LoadBalancerPolicy {policy} rule team-matches"))
            && msg.contains(&t.ns)
            && msg.contains(&pool),
        "{msg}"
    );
    assert!(ips(&t.get("web").await).is_empty());
    let evs = t.wait_events("web", 1).await;
    assert!(
        evs.iter()
            .any(|(r, m)| r == "AllocationFailed" && m.contains("PolicyDenied")),
        "{evs:?}"
    );

    // The namespace gains the right label: the claim is allowed now.
    let out = t.lab.kubectl(&["label", "namespace", &t.ns, "team=web"]);
    assert!(out.status.success());
    assert_eq!(t.wait_ips("web", 1).await, [ip("198.51.100.0")]);

    // barelb_policy_ready: 1 while it compiles; a policy that does not
    // (no webhook here to refuse it) shows 0, which BarelbPolicyNotCompiling reads.
    let ready = |name: &str| format!("barelb_policy_ready{{policy=\"{name}\"}}");
    let metrics = http_get(&metrics_addr, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("{} 1", ready(&policy))),
        "{metrics}"
    );
    let broken = format!("{}-broken", t.id);
    let out = t.lab.apply(&format!(
        "apiVersion: barelb.io/v1alpha1\nkind: LoadBalancerPolicy\nmetadata: {{name: {broken}}}\n\
         spec: {{poolSelector: {{matchLabels: {{barelb.io/test: {id}}}}}, rules: [{{name: half, expression: \"namespace.name ==\"}}]}}\n",
        id = t.id
    ));
    assert!(
        out.status.success(),
        "{}",
        barelb_testsupport::lab::output_text(&out)
    );
    let _broken = t.lab.delete_on_drop("loadbalancerpolicy", &broken, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let metrics = http_get(&metrics_addr, "/metrics");
        if metrics
            .lines()
            .any(|l| l == format!("{} 0", ready(&broken)))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {} 0 in\n{metrics}",
            ready(&broken)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(http_get(&metrics_addr, "/metrics").contains("barelb_nodes_ready "));
}

#[tokio::test]
async fn with_log_format_json_every_log_line_is_one_object_with_its_fields() {
    let mut t = Instance::new(
        "operator::with_log_format_json_every_log_line_is_one_object_with_its_fields",
    )
    .await;
    t.pool(
        "web",
        "{addresses: [198.51.100.200/30], announce: {mode: L2}}",
    );
    let op = t.operator(&["--log-format", "json"]);
    t.service("web", json!({}), json!({})).await;
    t.wait_ips("web", 1).await;
    let log = op.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "no log at all");
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
    }
    let rebuilt = lines
        .iter()
        .find(|l| l["fields"]["message"] == "rebuilt allocations from Service status")
        .unwrap_or_else(|| panic!("no rebuild line in:\n{log}"));
    assert!(rebuilt["fields"]["pools"].is_u64(), "{rebuilt}");
    drop(op);
}

/// Whether `svc` carries barelb's cleanup finalizer, as the operator reads it.
fn has_cleanup_finalizer(svc: &Service) -> bool {
    ServiceRecord::of(svc).cleanup_finalizer
}
