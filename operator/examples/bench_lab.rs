//! End-to-end benchmark in the lab (needs `tests/lab up` and a release build
//! of barelb-operator):
//!
//!   1. N (then M) new Services pending, operator started: time until all
//!      have an address, next to the time a plain client needs to patch
//!      their status (same concurrency) in the same run; and steady state:
//!      N Services created while the operator leads, next to a plain client
//!      creating them and patching each one's status.
//!   2. The operator's RSS with M allocated Services, and its rebuild time
//!      and time to allocate again after a restart.
//!   3. Tracing off and on (every trace sampled, exported over OTLP to a
//!      real Jaeger on loopback): N more Services each, the operator's time,
//!      CPU seconds and RSS side by side.
//!
//!     scripts/bench-operator [N] [M]      (defaults 2000 and 10000)
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code: failing loudly is the point

#[path = "support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use barelb_testsupport::bulk::each;
use barelb_testsupport::lab::{lab, lab_dir};
use barelb_testsupport::unique_name;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Operator, cpu_seconds, rss_kib, run_kubectl, wait_allocated};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (n, m) = support::two_counts((2000, 10_000));
    let lab = lab("bench::operator");
    lab.install_crds();
    let client = lab.client().await?;
    let id = unique_name("bench");
    let class = format!("bench.barelb.io/{id}");
    let ns = format!("{id}-app");
    let bin = std::env::var("BARELB_OPERATOR_BIN")
        .context("set BARELB_OPERATOR_BIN to a release barelb-operator")?;
    run_kubectl(&lab, &["create", "namespace", &ns])?;
    let pool = format!(
        "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {id}, labels: {{bench: {id}}}}}\nspec: {{addresses: [\"198.18.0.0/15\"], announce: {{mode: L2}}}}\n"
    );
    let out = lab.apply(&pool);
    if !out.status.success() {
        bail!("pool: {}", String::from_utf8_lossy(&out.stderr));
    }
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let start_operator_with =
        |tag: &str, class: &str, otlp: Option<&str>| -> anyhow::Result<Operator> {
            let log = std::fs::File::create(lab_dir().join(format!("logs/{id}-{tag}.log")))?;
            let mut cmd = Command::new(&bin);
            if let Some(endpoint) = otlp {
                cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                    .env("OTEL_TRACES_SAMPLER", "traceidratio")
                    .env("OTEL_TRACES_SAMPLER_ARG", "1.0");
            }
            Ok(Operator(
                cmd.args([
                    "--load-balancer-class",
                    class,
                    "--handle-classless=false",
                    "--pool-selector",
                    &format!("bench={id}"),
                    // Allocation alone: the webhook has its own benchmark.
                    "--webhook=false",
                    "--control=false",
                ])
                .args([
                    "--namespace",
                    &format!("{id}-op"),
                    "--metrics-addr",
                    "127.0.0.1:0",
                    "--lease-duration",
                    "2s",
                    "--retry-period",
                    "500ms",
                ])
                .env("KUBECONFIG", &lab.kubeconfig)
                .stdout(log.try_clone()?)
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()?,
            ))
        };
    let start_operator = |tag: &str| start_operator_with(tag, &class, None);
    std::fs::create_dir_all(lab_dir().join("logs"))?;

    // 1. Pending Services, then the operator; each beside a plain client's
    // status patches of as many Services, in the same run.
    let rate = |count: usize, d: Duration| count as f64 / d.as_secs_f64();
    for (round, count) in [n, m].into_iter().enumerate() {
        if round == 1 {
            {
                // Steady state: the operator already leads (a probe is addressed).
                let op = start_operator("steady")?;
                create_one(&api, "steadyprobe-0", &class).await?;
                wait_allocated(&api, "steadyprobe", 1).await?;
                let t0 = Instant::now();
                create(&api, "steady", n, &class).await?;
                wait_allocated(&api, "steady", n).await?;
                let operator_time = t0.elapsed();
                let cpu = cpu_seconds(op.0.id());
                op.stop();
                let plain = raw_create_and_patch(&api, "steadyraw", n).await?;
                println!(
                    "steady N={n}, created while the operator leads → all addressed: {:.2}s ({:.0} Services/s; operator CPU {cpu:.2}s) | plain client create + status patch each {:.2}s ({:.0}/s) | operator/plain throughput {:.2}",
                    operator_time.as_secs_f64(),
                    rate(n, operator_time),
                    plain.as_secs_f64(),
                    rate(n, plain),
                    plain.as_secs_f64() / operator_time.as_secs_f64(),
                );
            }
            if m <= n {
                break;
            }
        }
        let prefix = format!("cold{round}");
        create(&api, &prefix, count, &class).await?;
        let t0 = Instant::now();
        let op = start_operator(&prefix)?;
        wait_allocated(&api, &prefix, count).await?;
        let operator_time = t0.elapsed();
        let cpu = cpu_seconds(op.0.id());
        op.stop();
        let raw = format!("raw{round}");
        create(&api, &raw, count, "nobody.barelb.io/none").await?;
        let plain = raw_writes(&api, &raw, count).await?;
        println!(
            "pending N={count}, operator started: operator {:.2}s ({:.0} Services/s, process start and leader election included; operator CPU {cpu:.2}s) | plain client status patches {:.2}s ({:.0}/s) | operator/plain throughput {:.2}",
            operator_time.as_secs_f64(),
            rate(count, operator_time),
            plain.as_secs_f64(),
            rate(count, plain),
            plain.as_secs_f64() / operator_time.as_secs_f64(),
        );
    }
    // 2. At least M allocated Services: RSS, then a restart.
    let have = 2 * n + if m > n { m } else { 0 } + 1;
    // At least one: its address means the operator leads and has read every
    // Service (read before that, its RSS is a start-up figure).
    let extra = m.saturating_sub(have).max(1);
    let op = start_operator("2")?;
    create(&api, "more", extra, &class).await?;
    wait_allocated(&api, "more", extra).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(op.0.id());
    let held = have + extra;
    println!(
        "M={m}: operator RSS {:.1} MiB with {held} allocated Services",
        rss as f64 / 1024.0
    );
    drop(op);
    let t0 = Instant::now();
    let _op = start_operator("3")?;
    let probe = format!("probe-{}", m);
    create_one(&api, &probe, &class).await?;
    wait_allocated(&api, "probe", 1).await?;
    let log = std::fs::read_to_string(lab_dir().join(format!("logs/{id}-3.log")))?;
    let rebuild = log
        .lines()
        .find(|l| l.contains("rebuilt allocations"))
        .unwrap_or("")
        .to_string();
    println!(
        "M={m}: after a restart a new Service had its address in {:.2}s (lease expiry included); {}",
        t0.elapsed().as_secs_f64(),
        rebuild
            .split("rebuilt")
            .nth(1)
            .map(|s| format!("rebuilt{s}"))
            .unwrap_or_default()
    );

    // A restarted operator reads every Service twice (its watch, and the
    // consistent read before it leads): its RSS is not the first one's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "M={m}: restarted operator RSS {:.1} MiB with {} allocated Services",
        rss_kib(_op.0.id()) as f64 / 1024.0,
        held + 1
    );
    drop(_op);

    // 3. Tracing off, then on: each run its own class and N new Services,
    // so both start from the same M-Service cluster.
    let jaeger = barelb_testsupport::jaeger::Jaeger::start(
        lab_dir().join(format!("{id}-jaeger")),
        std::net::Ipv4Addr::LOCALHOST.into(),
    );
    let mut figures = Vec::new();
    for (tag, otlp) in [("off", None), ("on", Some(jaeger.otlp.as_str()))] {
        let class = format!("bench.barelb.io/{id}-tracing-{tag}");
        let prefix = format!("tr{tag}");
        create(&api, &prefix, n, &class).await?;
        let t0 = Instant::now();
        let op = start_operator_with(&format!("tracing-{tag}"), &class, otlp)?;
        wait_allocated(&api, &prefix, n).await?;
        let elapsed = t0.elapsed().as_secs_f64();
        // One export interval (5 s) and a little, the same in both runs, so
        // the on-run's CPU includes sending its last batch.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let pid = op.0.id();
        figures.push((tag, elapsed, cpu_seconds(pid), rss_kib(pid)));
        if otlp.is_some() {
            // Spans go out in batches (every 5 s): wait for them before the
            // operator is killed.
            let deadline = Instant::now() + Duration::from_secs(20);
            while jaeger.find("barelb-operator", "reconcile", &[]).is_empty() {
                if Instant::now() > deadline {
                    bail!(
                        "tracing on, yet Jaeger holds no reconcile trace after 20 s: {}",
                        jaeger.log_tail()
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        drop(op);
    }
    let line: Vec<String> = figures
        .iter()
        .map(|(tag, t, cpu, rss)| {
            format!(
                "tracing {tag}: {t:.2}s, CPU {cpu:.2}s, RSS {:.1} MiB",
                *rss as f64 / 1024.0
            )
        })
        .collect();
    if let [(_, t0, c0, r0), (_, t1, c1, r1)] = figures[..] {
        println!(
            "N={n}, M={m}: {} | on/off: time {:.2}, CPU {:.2}, RSS {:.2}",
            line.join(" | "),
            t1 / t0,
            c1 / c0,
            r1 as f64 / r0 as f64,
        );
    }

    run_kubectl(&lab, &["delete", "namespace", &ns, "--wait=false"])?;
    run_kubectl(&lab, &["delete", "addresspool", &id, "--wait=false"])?;
    Ok(())
}

/// The status patch the operator makes for Service `i` (ingress and the
/// Allocated condition), from a plain client.
async fn patch_one(api: &Api<Service>, name: &str, i: usize) -> kube::Result<()> {
    let pp = PatchParams::apply("bench-raw").force();
    let ip = format!("198.19.{}.{}", i / 250, i % 250 + 1);
    let st = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                    "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]},
                               "conditions": [{"type": "barelb.io/Allocated", "status": "True",
                                               "reason": "Allocated", "message": format!("{ip} from AddressPool raw"),
                                               "lastTransitionTime": "2026-01-01T00:00:00Z",
                                               "observedGeneration": 1}]}});
    api.patch_status(name, &pp, &Patch::Apply(st))
        .await
        .map(|_| ())
}

/// Writes what the operator writes, from a plain client with the same
/// concurrency: a status patch per Service.
async fn raw_writes(api: &Api<Service>, prefix: &str, n: usize) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    each(n, |i| async move {
        Ok(patch_one(api, &format!("{prefix}-{i}"), i).await?)
    })
    .await?;
    Ok(t0.elapsed())
}

/// A plain client creating `n` Services and patching each one's status,
/// with the same concurrency: the steady state's reference.
async fn raw_create_and_patch(
    api: &Api<Service>,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    each(n, |i| async move {
        let name = format!("{prefix}-{i}");
        create_one(api, &name, "nobody.barelb.io/none").await?;
        Ok(patch_one(api, &name, i).await?)
    })
    .await?;
    Ok(t0.elapsed())
}

async fn create(api: &Api<Service>, prefix: &str, n: usize, class: &str) -> anyhow::Result<()> {
    each(n, |i| async move {
        create_one(api, &format!("{prefix}-{i}"), class).await
    })
    .await
}

/// Creates Service `name` (PREFIX-I), labelled with its prefix for
/// `wait_allocated`.
async fn create_one(api: &Api<Service>, name: &str, class: &str) -> anyhow::Result<()> {
    let prefix = name.rsplit_once('-').map_or(name, |(p, _)| p);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {support::BENCH_LABEL: prefix}},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": class, "ports": [{"port": 80}], "allocateLoadBalancerNodePorts": false},
    }))?;
    api.create(&PostParams::default(), &svc).await?;
    Ok(())
}
