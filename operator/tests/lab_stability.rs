//! Addresses never move because the operator restarts or the leader changes,
//! and the operator's work per change stays bounded as Services arrive.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code: failing loudly is the point

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use barelb_testsupport::lab::output_text;
use common::{Instance, ips};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, PostParams};
use serde_json::json;

/// Creates `n` Services named `{prefix}-{i}` with up to 32 requests in flight.
async fn create_many(t: &Instance, prefix: &str, n: usize) {
    let api = t.services();
    let class = t.class.clone();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let class = class.clone();
            async move {
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": format!("{prefix}-{i}")},
                    "spec": {"type": "LoadBalancer", "loadBalancerClass": class, "ports": [{"port": 80}],
                             "allocateLoadBalancerNodePorts": false},
                }))
                .unwrap();
                api.create(&PostParams::default(), &svc).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// Waits until every Service in the namespace whose name starts with
/// `prefix` (and there are `n`) has an address; returns name -> addresses.
async fn wait_all(
    t: &Instance,
    prefix: &str,
    n: usize,
    limit: Duration,
) -> BTreeMap<String, Vec<IpAddr>> {
    let deadline = Instant::now() + limit;
    loop {
        let list = t.services().list(&ListParams::default()).await.unwrap();
        let got: BTreeMap<String, Vec<IpAddr>> = list
            .items
            .iter()
            .filter(|s| {
                s.metadata
                    .name
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with(prefix)
            })
            .map(|s| (s.metadata.name.clone().unwrap_or_default(), ips(s)))
            .collect();
        let done = got.values().filter(|v| !v.is_empty()).count();
        if got.len() == n && done == n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {n} {prefix} Services have an address after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn assert_unique(all: &BTreeMap<String, Vec<IpAddr>>) {
    let mut seen = BTreeMap::new();
    for (name, v) in all {
        for ip in v {
            if let Some(other) = seen.insert(*ip, name) {
                panic!("{ip} given to both {other} and {name}");
            }
        }
    }
}

const FAST_LEASE: [&str; 6] = [
    "--lease-duration",
    "3s",
    "--renew-deadline",
    "2s",
    "--retry-period",
    "500ms",
];

#[tokio::test]
async fn restart_with_1000_services_changes_no_address() {
    let mut t = Instance::new("operator::restart_with_1000_services_changes_no_address").await;
    t.pool(
        "big",
        r#"{addresses: ["198.18.0.0/21"], announce: {mode: L2}}"#,
    );
    let mut op = t.operator(&FAST_LEASE);
    create_many(&t, "svc", 1000).await;
    let before = wait_all(&t, "svc", 1000, Duration::from_secs(180)).await;
    assert_unique(&before);

    op.kill();
    let started = Instant::now();
    let op2 = t.operator(&FAST_LEASE);
    // A Service created after the restart is only handled once the new
    // operator has rebuilt every existing allocation.
    t.service(
        "after-restart",
        json!({"allocateLoadBalancerNodePorts": false}),
        json!({}),
    )
    .await;
    let fresh = t.wait_ips("after-restart", 1).await;
    eprintln!(
        "restart: new operator allocating again after {:?}",
        started.elapsed()
    );
    let after = wait_all(&t, "svc", 1000, Duration::from_secs(60)).await;
    let moved: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .collect();
    assert!(
        moved.is_empty(),
        "{} addresses moved after a restart, e.g. {:?}",
        moved.len(),
        moved.first()
    );
    assert!(
        !before.values().flatten().any(|ip| *ip == fresh[0]),
        "{} was handed out twice",
        fresh[0]
    );
    let log = op2.log_text();
    assert!(
        log.contains("rebuilt allocations from Service status services=1000"),
        "operator log:\n{log}"
    );
}

#[tokio::test]
async fn killing_the_leader_moves_no_address() {
    let mut t = Instance::new("operator::killing_the_leader_moves_no_address").await;
    t.pool(
        "p",
        r#"{addresses: ["198.18.8.0/24", "2001:db8:18::/120"], announce: {mode: L2}}"#,
    );
    let mut ops = [t.operator(&FAST_LEASE), t.operator(&FAST_LEASE)];
    create_many(&t, "svc", 20).await;
    let before = wait_all(&t, "svc", 20, Duration::from_secs(60)).await;
    assert_unique(&before);

    let lease_ns = format!("{}-op", t.id);
    let holder = |t: &Instance| {
        let out = t.lab.kubectl(&[
            "get",
            "lease",
            "-n",
            &lease_ns,
            "barelb-operator",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let leader = holder(&t);
    let idx = match leader.rsplit('-').next() {
        Some("1") => 0,
        Some("2") => 1,
        _ => panic!("unexpected lease holder {leader:?}"),
    };
    ops[idx].kill();
    let killed_at = Instant::now();

    create_many(&t, "new", 5).await;
    let new = wait_all(&t, "new", 5, Duration::from_secs(30)).await;
    eprintln!(
        "leader change: new Services allocated {:?} after the kill",
        killed_at.elapsed()
    );
    let now_leader = holder(&t);
    assert_ne!(now_leader, leader, "the standby took the lease");
    let after = wait_all(&t, "svc", 20, Duration::from_secs(10)).await;
    assert_eq!(before, after, "no address moved");
    let mut all = after.clone();
    all.extend(new);
    assert_unique(&all);
    let standby_log = ops[1 - idx].log_text();
    assert!(
        standby_log.contains("rebuilt allocations from Service status services=20"),
        "{standby_log}"
    );
}

/// The `barelb_api_writes_total` series of `kind` and `result` on the
/// operator's metrics endpoint.
fn writes(metrics: &str, kind: &str, result: &str) -> u64 {
    let text = common::http_get(metrics, "/metrics");
    text.lines()
        .find(|l| {
            l.starts_with("barelb_api_writes_total{")
                && l.contains(&format!("kind=\"{kind}\""))
                && l.contains(&format!("result=\"{result}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The apiserver refusing every status write (a ValidatingAdmissionPolicy
/// on services/status): each Service retries with growing delays and the
/// log carries one summary line per interval, not a line per retry.
#[tokio::test(flavor = "multi_thread")]
async fn refused_status_writes_back_off_and_are_logged_once_per_interval() {
    let mut t =
        Instance::new("operator::refused_status_writes_back_off_and_are_logged_once_per_interval")
            .await;
    let name = format!("{}-no-status", t.id);
    let vap = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {{name: {name}}}\nspec:\n  failurePolicy: Fail\n  matchConstraints:\n    resourceRules: [{{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [services/status]}}]\n  validations: [{{expression: 'false', message: refused by the test}}]\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {{name: {name}}}\nspec:\n  policyName: {name}\n  validationActions: [Deny]\n  matchResources:\n    namespaceSelector: {{matchLabels: {{{label}: {id}}}}}\n",
        label = common::TEST_LABEL,
        id = t.id
    );
    let out = t.lab.apply(&vap);
    assert!(out.status.success(), "{}", output_text(&out));
    t.guard("validatingadmissionpolicybinding", &name);
    t.guard("validatingadmissionpolicy", &name);
    // Wait until the policy is in force: our own status write is refused.
    t.service("probe", json!({}), json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = t.lab.kubectl(&[
            "patch",
            "service",
            "probe",
            "-n",
            &t.ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.1"}]}}}"#,
        ]);
        if !out.status.success() && output_text(&out).contains("refused by the test") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the policy never applied: {}",
            output_text(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    t.pool(
        "p",
        "{addresses: [\"198.51.100.0/24\"], announce: {mode: L2}}",
    );
    create_many(&t, "s", 20).await;

    let metrics = common::free_local_addr();
    let op = t.operator_at(&metrics, &[]);
    // Until the first refusal, then 8 s of retries.
    let deadline = Instant::now() + Duration::from_secs(30);
    while writes(&metrics, "service_status", "error") == 0 {
        assert!(
            Instant::now() < deadline,
            "no status write was tried: {}",
            op.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tries = writes(&metrics, "service_status", "error");
    let log = op.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("write(s) failed"))
        .count();
    let old_style = log.lines().filter(|l| l.contains("retrying in 1s")).count();
    // 21 Services: retried after 1, 2 and 4 s (±20 %) — at most 4 tries
    // each in 8 s, where a retry every second made 9.
    assert!(tries <= 21 * 5, "{tries} refused writes in 8 s");
    assert!(
        tries >= 21,
        "{tries} refused writes: not every Service was tried"
    );
    assert_eq!(old_style, 0, "{log}");
    assert!(
        (1..=2).contains(&lines),
        "{lines} summary lines in 8 s (one per 10 s interval expected):\n{log}"
    );
    assert!(log.contains("refused by the test"), "{log}");
}

/// Every watch event used to recompute the planner's inputs from every
/// Service: creating N Services cost time quadratic in N. They are now
/// passed on at most every 50 ms, whatever the rate of events.
#[tokio::test]
async fn the_planners_inputs_are_recomputed_at_most_every_50_ms_while_services_arrive() {
    let mut t = Instance::new("operator::planner_inputs_paced").await;
    t.pool(
        "p",
        r#"{addresses: ["198.18.16.0/22"], announce: {mode: L2}}"#,
    );
    let metrics = common::free_local_addr();
    let started = Instant::now();
    // The control channel on (with no speaker): the hub is fed.
    let _op = t.operator_at(&metrics, &["--control-addr", "127.0.0.1:0"]);
    create_many(&t, "svc", 400).await;
    wait_all(&t, "svc", 400, Duration::from_secs(120)).await;
    let text = common::http_get(&metrics, "/metrics");
    let lived = started.elapsed();
    let count: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("barelb_planner_inputs_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no planner inputs count in:\n{text}"));
    let bound = 1 + lived.as_millis() / 50;
    eprintln!("planner inputs recomputed {count} times in {lived:?} (at most {bound})");
    assert!(count > 0, "the hub was never fed");
    assert!(
        u128::from(count) <= bound,
        "recomputed {count} times in {lived:?}: more than once per 50 ms"
    );
}
