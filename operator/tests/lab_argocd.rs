//! A pool repo synced by a real Argo CD (v3.2.11's application controller
//! and repo-server, built by `tests/lab build`) into the lab, with the
//! operator and its admission webhook running: the first sync is Synced and
//! Healthy (barelb's Lua health checks judging our kinds) and the pools serve
//! Services; an overlapping pool is refused with our one-line message in
//! the sync result, as are a pool shrunk under an allocated address (the
//! Service named) and a policy that does not compile (rule and position); a fix pushed while the sync retries is applied; and
//! the operator's status writes and restarts cause no OutOfSync.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use barelb_testsupport::argocd::{ArgoCd, GitRepo, sync_messages, synced_healthy};
use common::{Instance, TEST_LABEL, free_local_addr, ip};
use serde_json::json;

fn pool(t: &Instance, name: &str, addresses: &str) -> String {
    format!(
        "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata:\n  name: {id}-{name}\n  labels: {{{TEST_LABEL}: {id}}}\nspec:\n  addresses: [{addresses}]\n  announce: {{mode: L2}}\n",
        id = t.id
    )
}

fn policy(t: &Instance) -> String {
    format!(
        "apiVersion: barelb.io/v1alpha1\nkind: LoadBalancerPolicy\nmetadata:\n  name: {id}-own-namespace\n  labels: {{{TEST_LABEL}: {id}}}\nspec:\n  poolSelector: {{matchLabels: {{{TEST_LABEL}: {id}}}}}\n  rules:\n  - name: test-namespaces-only\n    expression: \"namespace.name.startsWith('{id}')\"\n    message: only this test's namespaces\n",
        id = t.id
    )
}

/// Commits `files`, has Argo CD re-read git, and returns the last sync's
/// messages once one contains `needle` (the refusal the commit must meet).
fn refused(
    argo: &ArgoCd,
    repo: &GitRepo,
    app: &str,
    files: &[(&str, &str)],
    why: &str,
    needle: &str,
) -> Vec<String> {
    repo.commit(files, why);
    argo.refresh(app);
    let st = argo.wait_app(app, &format!("refusing {why:?}"), 90, |st| {
        sync_messages(st).iter().any(|m| m.contains(needle))
    });
    sync_messages(&st)
}

#[tokio::test]
async fn argo_cd_syncs_the_pool_repo_shows_refusals_and_applies_a_fix_while_retrying() {
    let mut t = Instance::new(
        "operator::argo_cd_syncs_the_pool_repo_shows_refusals_and_applies_a_fix_while_retrying",
    )
    .await;
    let (mut op, _hook) = t.webhook_operator(&free_local_addr(), &[]);
    t.wait_webhook();
    let argo = ArgoCd::start(&t.lab);
    let repo = argo.repo("pool-repo");
    repo.commit(
        &[
            ("env/pools.yaml", &pool(&t, "web", "198.51.100.64/29")),
            ("env/policy.yaml", &policy(&t)),
        ],
        "pools and a policy",
    );
    for name in ["web", "more"] {
        t.guard("addresspool", &format!("{}-{name}", t.id));
    }
    t.guard("loadbalancerpolicy", &format!("{}-own-namespace", t.id));
    let app = "pools";
    argo.application(
        app,
        json!({
            "project": "default",
            "source": {"repoURL": repo.url, "targetRevision": "main", "path": "env"},
            "destination": {"server": "https://kubernetes.default.svc"},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "retry": {"refresh": true, "limit": 10,
                          "backoff": {"duration": "5s", "factor": 2, "maxDuration": "20s"}},
            },
        }),
    );
    let started = Instant::now();
    let st = argo.wait_app(app, "Synced and Healthy", 120, synced_healthy);
    eprintln!(
        "first sync: Synced/Healthy in {} ms",
        started.elapsed().as_millis()
    );
    let kinds: Vec<(String, String)> = st["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or_default().to_string(),
                r["health"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("AddressPool".into(), "Healthy".into()))
            && kinds.contains(&("LoadBalancerPolicy".into(), "Healthy".into())),
        "{kinds:?}"
    );
    t.service("web", json!({}), json!({})).await;
    assert_eq!(t.wait_ips("web", 1).await, [ip("198.51.100.64")]);

    // A pool overlapping the first, of both families: refused, our message
    // in the sync result.
    let msgs = refused(
        &argo,
        &repo,
        app,
        &[("env/more.yaml", &pool(&t, "more", "198.51.100.68/30"))],
        "an overlapping pool",
        "denied the request",
    );
    let want = format!(
        "admission webhook \"addresspools.barelb.io\" denied the request: AddressPool {id}-more: 198.51.100.68/30 overlaps 198.51.100.64/29 of AddressPool {id}-web; pools must not share addresses, change one of them",
        id = t.id
    );
    assert!(msgs.iter().any(|m| m.contains(&want)), "{msgs:?}");

    // The fix goes in while the sync retries: applied at the next retry.
    let fixed = Instant::now();
    repo.commit(
        &[("env/more.yaml", &pool(&t, "more", "198.51.100.72/30"))],
        "move the new pool",
    );
    argo.wait_app(app, "Synced and Healthy after the fix", 60, |st| {
        synced_healthy(st)
            && st["resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["name"] == format!("{}-more", t.id)))
    });
    eprintln!(
        "fix pushed while retrying: Synced/Healthy in {} ms",
        fixed.elapsed().as_millis()
    );
    // A Service naming the new pool: from the push to an address from it.
    let pool_more = format!("{}-more", t.id);
    t.service("from-more", json!({}), json!({"barelb.io/pool": pool_more}))
        .await;
    assert_eq!(t.wait_ips("from-more", 1).await, [ip("198.51.100.72")]);
    eprintln!(
        "fix pushed → its pool in force → a Service addressed from it in {} ms",
        fixed.elapsed().as_millis()
    );

    // Shrinking a pool under an allocated address: refused, naming the Service.
    let msgs = refused(
        &argo,
        &repo,
        app,
        &[("env/pools.yaml", &pool(&t, "web", "198.51.100.66/31"))],
        "shrink the web pool",
        "outside every pool",
    );
    assert!(
        msgs.iter().any(|m| m.contains("addresspools.barelb.io")
            && m.contains(&format!("{}/web (198.51.100.64)", t.ns))),
        "{msgs:?}"
    );
    repo.commit(
        &[("env/pools.yaml", &pool(&t, "web", "198.51.100.64/29"))],
        "put the web pool back",
    );
    argo.wait_app(app, "Synced after putting the pool back", 60, |st| {
        synced_healthy(st) && !sync_messages(st).iter().any(|m| m.contains("denied"))
    });

    // A policy that does not compile: refused with the rule and position.
    let bad = format!(
        "apiVersion: barelb.io/v1alpha1\nkind: LoadBalancerPolicy\nmetadata:\n  name: {id}-broken\n  labels: {{{TEST_LABEL}: {id}}}\nspec:\n  rules:\n  - name: half-written\n    expression: \"namespace.name ==\"\n",
        id = t.id
    );
    let msgs = refused(
        &argo,
        &repo,
        app,
        &[("env/broken.yaml", &bad)],
        "a policy that does not compile",
        "loadbalancerpolicies.barelb.io",
    );
    let prefix = format!(
        "admission webhook \"loadbalancerpolicies.barelb.io\" denied the request: LoadBalancerPolicy {}-broken rule half-written: ",
        t.id
    );
    assert!(
        msgs.iter().any(|m| m.contains(&format!("{prefix}1:"))),
        "{msgs:?}"
    );
    repo.commit(&[("env/broken.yaml", "")], "revert the broken policy");
    argo.wait_app(app, "Synced after the revert", 60, |st| {
        synced_healthy(st) && !sync_messages(st).iter().any(|m| m.contains("denied"))
    });

    // Allocations and an operator restart write status only: still Synced.
    for i in 0..5 {
        t.service(&format!("more-{i}"), json!({}), json!({})).await;
    }
    drop(op);
    op = t.webhook_operator(&free_local_addr(), &[]).0;
    t.wait_ips("more-4", 1).await;
    argo.refresh(app);
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        let st = argo.app_status(app);
        assert_eq!(st["sync"]["status"], "Synced", "diff noise: {st}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("Argo CD resident memory (MiB): {:?}", argo.rss_mib());
    drop(op);
}
