//! Admission latency benchmark in the lab (needs `tests/lab up` and a
//! release barelb-operator in BARELB_OPERATOR_BIN):
//!
//! Service creates at a steady RATE per second from a loopback load
//! generator, for SECONDS each, in three namespaces of one run:
//!
//! - `none`: no admission policy at all (the apiserver's own cost);
//! - `vap`: the team-match rule as a ValidatingAdmissionPolicy with the
//!   pool's name and team written into the expression (the in-process
//!   anchor; a CRD as paramKind hung every Service create in the lab);
//! - `hook`: the same rule enforced by barelb's webhook (CEL engine, HTTPS
//!   round trip from the apiserver).
//!
//! Every create claims the same pool by annotation and is allowed, so all
//! three do the same work but for the check. REPS repetitions (default 3),
//! the three configurations in a rotated order each time so none always
//! runs on the busiest apiserver; each repetition prints p50/p99 of the
//! client-observed create latency per configuration, the webhook/VAP
//! ratios and the webhook's p50 over no policy, then the spread. Then it
//! finds the highest rate the no-policy baseline sustains without queueing
//! (STEP seconds per step) and compares the three there too.
//!
//!     scripts/bench-webhook [RATE] [SECONDS] [REPS] [STEP]   (defaults 50, 30, 3, 10)
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // bench code: failing loudly is the point

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use barelb_testsupport::lab::{Lab, lab, lab_dir};
use barelb_testsupport::unique_name;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio::sync::Mutex;

use support::{Operator, run_kubectl as kubectl};

fn apply(lab: &Lab, yaml: &str) -> anyhow::Result<()> {
    let out = lab.apply(yaml);
    if !out.status.success() {
        bail!("apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (rate, seconds) = support::two_counts((50, 30));
    let (rate, seconds) = (u64::try_from(rate)?, u64::try_from(seconds)?);
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (reps, ceiling_seconds) = (usize::try_from(arg(3, 3))?, arg(4, 10));
    let lab = lab("bench::webhook");
    lab.install_crds();
    let client = lab.client().await?;
    let bin = std::env::var("BARELB_OPERATOR_BIN")
        .context("set BARELB_OPERATOR_BIN to a release barelb-operator")?;
    let id = unique_name("bw");
    let class = format!("bench.barelb.io/{id}");
    let pool = format!("{id}-pool");
    apply(
        &lab,
        &format!(
            "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {pool}, labels: {{bench: {id}, team: web}}}}\nspec: {{addresses: [\"10.128.0.0/14\"], announce: {{mode: L2}}}}\n"
        ),
    )?;
    apply(
        &lab,
        &format!(
            "apiVersion: barelb.io/v1alpha1\nkind: LoadBalancerPolicy\nmetadata: {{name: {id}-team, labels: {{bench: {id}}}}}\nspec:\n  poolSelector: {{matchLabels: {{bench: {id}}}}}\n  rules:\n  - name: team\n    expression: \"'team' in namespace.labels && namespace.labels['team'] == pool.labels['team']\"\n"
        ),
    )?;
    let namespaces = ["none", "vap", "hook"].map(|k| format!("{id}-{k}"));
    for ns in &namespaces {
        kubectl(&lab, &["create", "namespace", ns])?;
        kubectl(
            &lab,
            &[
                "label",
                "namespace",
                ns,
                "team=web",
                &format!("bench-{id}={ns}"),
            ],
        )?;
    }
    // The anchor: the same rule in the apiserver's own CEL.
    apply(
        &lab,
        &format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {id}-team}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["services"]}}
  validations:
  - expression: "!has(object.metadata.annotations) || !('barelb.io/pool' in object.metadata.annotations) || object.metadata.annotations['barelb.io/pool'] != '{pool}' || ('team' in namespaceObject.metadata.labels && namespaceObject.metadata.labels['team'] == 'web')"
    message: namespace team must match the pool's team
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {id}-team}}
spec:
  policyName: {id}-team
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {{matchLabels: {{bench-{id}: {vap}}}}}
"#,
            vap = namespaces[1]
        ),
    )?;
    let hook_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    std::fs::create_dir_all(lab_dir().join("logs"))?;
    let log = std::fs::File::create(lab_dir().join(format!("logs/{id}-operator.log")))?;
    let _op = Operator(
        Command::new(&bin)
            .args(["--load-balancer-class", &class, "--handle-classless=false"])
            .args(["--pool-selector", &format!("bench={id}")])
            .args([
                "--namespace",
                &format!("{id}-op"),
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(["--webhook-addr", &hook_port.to_string()])
            .args(["--webhook-url", &format!("https://{hook_port}")])
            .args(["--webhook-config-name", &format!("{id}-hook")])
            .args([
                "--webhook-namespace-selector",
                &format!("bench-{id}={}", namespaces[2]),
            ])
            .args(["--webhook-object-selector", &format!("bench={id}")])
            .env("KUBECONFIG", &lab.kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?,
    );
    // Wait until the webhook answers (a dry run naming a missing pool is refused).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let probe = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: probe, namespace: {}, annotations: {{barelb.io/pool: missing}}}}\nspec: {{type: LoadBalancer, loadBalancerClass: {class}, ports: [{{port: 80}}]}}\n",
            namespaces[2]
        );
        let out = lab.apply_args(&probe, &["--dry-run=server"]);
        if String::from_utf8_lossy(&out.stderr).contains("does not exist") {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "webhook never answered: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Warm up connections and caches once per configuration.
    for ns in &namespaces {
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        run(&api, &class, &pool, "warm", rate, 2).await?;
        empty(&api).await?;
    }
    let apis = namespaces
        .clone()
        .map(|ns| Api::<Service>::namespaced(client.clone(), &ns));
    let at = |rate| Load {
        apis: &apis,
        class: &class,
        pool: &pool,
        rate,
    };
    let base = at(rate).compare(seconds, reps).await?;
    // The highest rate the no-policy baseline sustains without queueing,
    // and the same comparison there.
    // A smoke run checks that the search works in two steps.
    let smoke = std::env::var("BARELB_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let steps = if smoke { 2 } else { usize::MAX };
    let top = at(rate).ceiling(base, ceiling_seconds, steps).await?;
    if top > rate {
        at(top).compare(seconds.min(ceiling_seconds), reps).await?;
    }
    // Clean up (the operator is killed on drop; the webhook config first).
    let _ = lab.kubectl(&[
        "delete",
        "validatingwebhookconfiguration",
        &format!("{id}-hook"),
    ]);
    let _ = lab.kubectl(&[
        "delete",
        "validatingadmissionpolicybinding",
        &format!("{id}-team"),
    ]);
    let _ = lab.kubectl(&["delete", "validatingadmissionpolicy", &format!("{id}-team")]);
    for ns in &namespaces {
        let _ = lab.kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
    let _ = lab.kubectl(&["delete", "namespace", &format!("{id}-op"), "--wait=false"]);
    let _ = lab.kubectl(&["delete", "loadbalancerpolicy", &format!("{id}-team")]);
    let _ = lab.kubectl(&["delete", "addresspool", &pool, "--wait=false"]);
    Ok(())
}

/// The three configurations, loaded at one rate.
struct Load<'a> {
    apis: &'a [Api<Service>; 3],
    class: &'a str,
    pool: &'a str,
    rate: u64,
}

const KINDS: [&str; 3] = ["none", "vap", "hook"];

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

impl Load<'_> {
    /// `reps` repetitions of `seconds` at this rate per configuration, in
    /// a rotated order; prints each and the spread. Returns the no-policy
    /// baseline's p50 and p99 (ms) over all repetitions.
    async fn compare(&self, seconds: u64, reps: usize) -> anyhow::Result<(f64, f64)> {
        let rate = self.rate;
        let mut ratios = Vec::new();
        let mut baseline = Vec::new();
        for rep in 0..reps {
            let mut results: [Vec<f64>; 3] = Default::default();
            for k in 0..3 {
                let which = (rep + k) % 3;
                let api = &self.apis[which];
                results[which] = run(
                    api,
                    self.class,
                    self.pool,
                    &format!("r{rate}-{rep}"),
                    rate,
                    seconds,
                )
                .await?;
                // Service creates slow down in this lab as Services pile up:
                // every configuration starts from an empty namespace.
                empty(api).await?;
            }
            for (kind, lat) in KINDS.iter().zip(&results) {
                println!(
                    "{rate}/s rep {}: {kind:>4}: {} creates: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                    rep + 1,
                    lat.len(),
                    pct(lat, 0.5),
                    pct(lat, 0.99),
                    lat.last().copied().unwrap_or(0.0)
                );
            }
            let [none, vap, hook] = &results;
            baseline.extend_from_slice(none);
            let r = (
                pct(hook, 0.5) / pct(vap, 0.5),
                pct(hook, 0.99) / pct(vap, 0.99),
                pct(hook, 0.5) - pct(none, 0.5),
            );
            println!(
                "{rate}/s rep {}: webhook / ValidatingAdmissionPolicy: p50 ratio {:.2}, p99 ratio {:.2}; webhook p50 over no policy {:+.2} ms",
                rep + 1,
                r.0,
                r.1,
                r.2
            );
            ratios.push(r);
        }
        let spread = |f: fn(&(f64, f64, f64)) -> f64| {
            let v: Vec<f64> = ratios.iter().map(f).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.2}–{hi:.2}")
        };
        println!(
            "at {rate}/s, over {reps} repetitions of {} creates each: webhook/VAP p50 {}, p99 {}; webhook p50 over no policy {} ms",
            rate * seconds,
            spread(|r| r.0),
            spread(|r| r.1),
            spread(|r| r.2)
        );
        baseline.sort_by(f64::total_cmp);
        Ok((pct(&baseline, 0.5), pct(&baseline, 0.99)))
    }

    /// Steps the no-policy baseline's rate up by a quarter each time,
    /// `seconds` per step, until it queues: fewer than 95 % of the offered
    /// creates per second complete, the median latency grows by half over
    /// `base` (p50, p99 at the first rate), or the p99 doubles. Returns the
    /// last rate that did none of these (after at most `steps` steps).
    async fn ceiling(&self, base: (f64, f64), seconds: u64, steps: usize) -> anyhow::Result<u64> {
        const MAX: u64 = 5_000;
        let api = &self.apis[0];
        let mut best = self.rate;
        for _ in 0..steps {
            if best >= MAX {
                break;
            }
            let rate = (best * 5 / 4).max(best + 1);
            let t = Instant::now();
            let lat = run(
                api,
                self.class,
                self.pool,
                &format!("c{rate}"),
                rate,
                seconds,
            )
            .await?;
            let achieved = lat.len() as f64 / t.elapsed().as_secs_f64();
            empty(api).await?;
            let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
            let queues = achieved < 0.95 * rate as f64 || p50 > 1.5 * base.0 || p99 > 2.0 * base.1;
            println!(
                "no policy at {rate}/s offered: {achieved:.0}/s completed, p50 {p50:.2} ms, p99 {p99:.2} ms{}",
                if queues { ": queueing" } else { "" }
            );
            if queues {
                break;
            }
            best = rate;
        }
        println!("highest rate without queueing, no policy: {best}/s");
        Ok(best)
    }
}

fn api_ns(api: &Api<Service>) -> String {
    api.resource_url().to_string()
}

/// Deletes every Service in `api`'s namespace and waits until they are gone.
async fn empty(api: &Api<Service>) -> anyhow::Result<()> {
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !api
        .list(&ListParams::default().limit(1))
        .await?
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("Services in {} not deleted in 5 min", api_ns(api));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Creates Services at `rate`/s for `seconds`; returns sorted latencies in ms.
async fn run(
    api: &Api<Service>,
    class: &str,
    pool: &str,
    prefix: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Vec<f64>> {
    let lat = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for i in 0..rate * seconds {
        tick.tick().await;
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": format!("{prefix}-{i}"), "annotations": {"barelb.io/pool": pool}},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": class, "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}
        }))?;
        let api = api.clone();
        let lat = lat.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = api.create(&PostParams::default(), &svc).await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            lat.lock().await.push(ms);
            match r {
                // The client retried a create the apiserver had already done.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                other => other.map(|_| ()),
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await? {
            bail!("a create in {} failed: {e}", api_ns(api));
        }
    }
    let mut v = std::mem::take(&mut *lat.lock().await);
    v.sort_by(f64::total_cmp);
    Ok(v)
}
