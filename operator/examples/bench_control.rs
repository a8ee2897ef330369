//! The control channel at scale, in the lab (needs `tests/lab up` and a
//! release barelb-operator):
//!
//!   S Nodes (Ready) with a speaker Pod each and a pod-bound token, an L2
//!   pool and M Services with a ready endpoint each, allocated by the
//!   operator. Then one process opens S speaker streams at once (TLS,
//!   bearer token, Hello) — what a leader change or an operator restart
//!   looks like — and the run reports how long until every stream is
//!   accepted, how long until every speaker holds its full snapshot, the
//!   operator's RSS and CPU, and the time a node loss takes to reach the
//!   speakers that take over its addresses.
//!
//!     scripts/bench-control [S] [M]      (defaults 1000 and 10000)
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // bench code: failing loudly is the point

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use barelb_control::v1::control_client::ControlClient;
use barelb_control::v1::{Ack, Hello, SpeakerMessage, operator_message, speaker_message};
use barelb_testsupport::lab::{lab, lab_dir};
use barelb_testsupport::unique_name;
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Operator, cpu_seconds, rss_kib, run_kubectl, wait_allocated};
use tokio::sync::{Mutex, mpsc};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const CONCURRENCY: usize = 32;
/// Speakers lost one after another after the storm, each timed.
const LOSSES: usize = 5;

/// What one simulated speaker saw.
#[derive(Debug, Default)]
struct Seen {
    /// When its stream was accepted, and when its snapshot arrived.
    accepted: Option<Instant>,
    snapshot: Option<Instant>,
    /// Addresses it was told to announce, from the snapshot and deltas.
    l2: BTreeSet<String>,
    /// When a delta last gave it an address.
    gained: Option<Instant>,
    /// When a message last changed `l2` (the plan is whole at the latest
    /// of these, not when the polling below notices).
    changed: Option<Instant>,
    /// Streams that ended in an error and were opened again, and why
    /// (with the time since the storm began).
    reconnects: usize,
    errors: Vec<(Duration, String)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (s, m) = support::two_counts((1000, 10_000));
    let bin = std::env::var("BARELB_OPERATOR_BIN")
        .context("set BARELB_OPERATOR_BIN to a release barelb-operator")?;
    let lab = lab("bench::control");
    lab.install_crds();
    let client = lab.client().await?;
    let id = unique_name("bc");
    let (ns, op_ns) = (format!("{id}-app"), format!("{id}-op"));
    let class = format!("bench.barelb.io/{id}");
    run_kubectl(&lab, &["create", "namespace", &ns])?;
    run_kubectl(&lab, &["create", "namespace", &op_ns])?;
    run_kubectl(
        &lab,
        &["create", "serviceaccount", "barelb-speaker", "-n", &op_ns],
    )?;
    let pool = format!(
        "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {id}, labels: {{bench: {id}}}}}\nspec: {{addresses: [\"198.18.0.0/15\"], announce: {{mode: L2}}}}\n"
    );
    let out = lab.apply(&pool);
    if !out.status.success() {
        bail!("pool: {}", String::from_utf8_lossy(&out.stderr));
    }

    let t = Instant::now();
    let node_name = |i: usize| format!("{id}-n{i}");
    let tokens = nodes_pods_tokens(&client, &op_ns, &id, s).await?;
    println!(
        "set-up: {s} Nodes, speaker Pods and tokens in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    services(&client, &ns, &class, &id, m, s).await?;
    println!(
        "set-up: {m} Services with an EndpointSlice each in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let port = free_port()?;
    std::fs::create_dir_all(lab_dir().join("logs"))?;
    let log = std::fs::File::create(lab_dir().join(format!("logs/{id}-operator.log")))?;
    let op = Operator(
        Command::new(&bin)
            .args(["--load-balancer-class", &class, "--handle-classless=false"])
            .args(["--pool-selector", &format!("bench={id}")])
            .args(["--namespace", &op_ns, "--metrics-addr", "127.0.0.1:0"])
            .args([
                "--webhook=false",
                "--control-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .args([
                "--speaker-service-account",
                &format!("{op_ns}/barelb-speaker"),
            ])
            .args(["--lease-duration", "2s", "--retry-period", "500ms"])
            .env("KUBECONFIG", &lab.kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?,
    );
    let services_api: Api<Service> = Api::namespaced(client.clone(), &ns);
    wait_allocated(&services_api, "svc", m).await?;
    let ca = ca_pem(&lab, &op_ns).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = op.0.id();
    let (rss0, cpu0) = (rss_kib(pid), cpu_seconds(pid));
    println!(
        "operator with {m} allocated Services, no speaker: RSS {:.1} MiB",
        rss0 as f64 / 1024.0
    );

    // S streams at once.
    let seen: Arc<Vec<Mutex<Seen>>> = Arc::new((0..s).map(|_| Mutex::default()).collect());
    let mut kill = Vec::new();
    let t0 = Instant::now();
    let wall0 = std::time::SystemTime::now();
    for (i, token) in tokens.into_iter().enumerate() {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        kill.push(Some(stop_tx));
        let (seen, ca, node) = (seen.clone(), ca.clone(), node_name(i));
        tokio::spawn(async move {
            let mut stop = stop_rx;
            // Like a real speaker: a lost stream is opened again.
            while let Err(e) = speaker(port, &ca, &node, &token, &seen[i], &mut stop).await {
                let mut x = seen[i].lock().await;
                x.reconnects += 1;
                x.errors.push((t0.elapsed(), format!("{e:#}")));
                drop(x);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let (accepted, snapshots) = loop {
        let (mut a, mut sn) = (Vec::new(), Vec::new());
        for x in seen.iter() {
            let x = x.lock().await;
            a.extend(x.accepted);
            sn.extend(x.snapshot);
        }
        if sn.len() == s {
            break (a, sn);
        }
        if Instant::now() > deadline {
            bail!("{} of {s} accepted, {} snapshots", a.len(), sn.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let last_accept = accepted.iter().max().unwrap().duration_since(t0);
    let first_snap = snapshots.iter().min().unwrap().duration_since(t0);
    // Every stream has its first message (at once: a new leader gives each
    // speaker back what it holds). The plan is whole once every address is
    // told to exactly one speaker.
    let placed = loop {
        let mut owners: BTreeMap<String, usize> = BTreeMap::new();
        let mut twice = None;
        for (i, x) in seen.iter().enumerate() {
            for ip in &x.lock().await.l2 {
                if let Some(prev) = owners.insert(ip.clone(), i) {
                    twice = Some(format!(
                        "{ip} told to both {} and {}",
                        node_name(prev),
                        node_name(i)
                    ));
                }
            }
        }
        if owners.len() == m && twice.is_none() {
            let mut last = t0;
            for x in seen.iter() {
                last = last.max(x.lock().await.changed.unwrap_or(t0));
            }
            break last.duration_since(t0);
        }
        if Instant::now() > deadline {
            bail!(
                "speakers hold {} of {m} addresses{}",
                owners.len(),
                twice.map(|t| format!("; {t}")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (rss1, cpu1) = (rss_kib(pid), cpu_seconds(pid));
    let mut reconnects = 0;
    let mut why: BTreeMap<String, (usize, Duration)> = BTreeMap::new();
    for x in seen.iter() {
        let x = x.lock().await;
        reconnects += x.reconnects;
        for (at, e) in &x.errors {
            let w = why.entry(e.clone()).or_insert((0, *at));
            w.0 += 1;
        }
    }
    println!("streams lost and opened again during the storm: {reconnects}");
    for (e, (n, at)) in &why {
        println!("  {n} × {e} (first at {:.2}s)", at.as_secs_f64());
    }
    println!(
        "{s} speakers connecting at once: all accepted (TLS + TokenReview + pod check) in {:.2}s; first message from {:.2}s; every address told to exactly one speaker at {:.2}s: full resync {:.0} ms after the last stream was accepted",
        last_accept.as_secs_f64(),
        first_snap.as_secs_f64(),
        placed.as_secs_f64(),
        (placed.saturating_sub(last_accept)).as_secs_f64() * 1000.0
    );
    // The operator logs when its settle period ended (every Ready node's
    // speaker back): from then, the settled plan reaches every speaker.
    let oplog = std::fs::read_to_string(lab_dir().join(format!("logs/{id}-operator.log")))?;
    let settled = oplog
        .lines()
        .find(|l| l.contains("settled: planning"))
        .and_then(|l| since(wall0, l))
        .context("the operator logged no end of its settle period")?;
    println!(
        "settle period ended (operator log) at {:.2}s: full resync (settled plan → every speaker has it) {:.0} ms",
        settled.as_secs_f64(),
        placed.saturating_sub(settled).as_secs_f64() * 1000.0
    );
    println!(
        "operator with {s} speakers and {m} addresses: RSS {:.1} MiB (+{:.1}), CPU {:.2}s during the connect storm and resync",
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / 1024.0,
        cpu1 - cpu0
    );

    // Nodes' streams end, one at a time: how long until each one's
    // addresses reach their new owners.
    let mut took = Vec::new();
    for victim in 0..LOSSES.min(s - 1) {
        let lost: BTreeSet<String> = seen[victim].lock().await.l2.clone();
        let cpu_before = cpu_seconds(pid);
        let t_kill = Instant::now();
        kill[victim].take().unwrap().send(()).ok();
        let deadline = Instant::now() + Duration::from_secs(60);
        let moved = loop {
            let mut got = BTreeMap::new();
            for (i, x) in seen.iter().enumerate().skip(victim + 1) {
                let x = x.lock().await;
                for ip in x.l2.intersection(&lost) {
                    got.insert(ip.clone(), (i, x.gained));
                }
            }
            if got.len() == lost.len() {
                break got;
            }
            if Instant::now() > deadline {
                bail!("{} of {} addresses moved", got.len(), lost.len());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let last = moved
            .values()
            .filter_map(|(_, t)| *t)
            .max()
            .map(|t| t.duration_since(t_kill))
            .unwrap_or_default();
        println!(
            "speaker {} of {s} gone: its {} addresses reached {} new owners in {:.0} ms (operator CPU {:.3}s for the replan)",
            victim + 1,
            lost.len(),
            moved
                .values()
                .map(|(i, _)| i)
                .collect::<BTreeSet<_>>()
                .len(),
            last.as_secs_f64() * 1000.0,
            cpu_seconds(pid) - cpu_before
        );
        took.push(last);
        // Quiet again (Announced conditions written) before the next.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    took.sort();
    println!(
        "node loss → new owners told: median {:.0} ms, max {:.0} ms over {} losses",
        took[took.len() / 2].as_secs_f64() * 1000.0,
        took.last().unwrap().as_secs_f64() * 1000.0,
        took.len()
    );

    drop(kill);
    drop(op);
    for args in [
        // No kubelet confirms pod deletion in the lab: force it, or the
        // namespace stays Terminating.
        vec![
            "delete",
            "pods",
            "--all",
            "-n",
            &op_ns,
            "--force",
            "--grace-period=0",
        ],
        vec!["delete", "namespace", &ns, "--wait=false"],
        vec!["delete", "namespace", &op_ns, "--wait=false"],
        vec!["delete", "addresspool", &id, "--wait=false"],
        vec![
            "delete",
            "nodes",
            "-l",
            &format!("bench={id}"),
            "--wait=false",
        ],
    ] {
        run_kubectl(&lab, &args)?;
    }
    Ok(())
}

/// How long after `wall0` a log line (starting with an RFC 3339 UTC time,
/// as the operator writes them) was written. Within one UTC day: enough
/// for a run of minutes.
fn since(wall0: std::time::SystemTime, line: &str) -> Option<Duration> {
    let time = line.get(11..26)?; // "HH:MM:SS.ffffff" of "YYYY-MM-DDTHH:MM:SS.ffffffZ"
    let mut parts = time.split(':');
    let (h, m, sec): (f64, f64, f64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    let at = h * 3600.0 + m * 60.0 + sec;
    let unix = wall0
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let start = unix % 86_400.0;
    (at >= start).then(|| Duration::from_secs_f64(at - start))
}

/// One simulated speaker: connect, Hello, then ack everything and keep
/// what it was told until `stop` fires (the stream then ends).
async fn speaker(
    port: u16,
    ca: &str,
    node: &str,
    token: &str,
    seen: &Mutex<Seen>,
    stop: &mut tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("barelb-control");
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut client = ControlClient::new(channel);
    let (tx, rx) = mpsc::channel::<SpeakerMessage>(16);
    let msg = |m| SpeakerMessage { msg: Some(m) };
    tx.send(msg(speaker_message::Msg::Hello(Hello {
        node: node.into(),
        protocol: barelb_control::PROTOCOL,
        version: "bench".into(),
        ..Default::default()
    })))
    .await?;
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let mut inbound = client.session(req).await?.into_inner();
    seen.lock().await.accepted = Some(Instant::now());
    loop {
        let m = tokio::select! {
            m = inbound.message() => m?,
            _ = &mut *stop => return Ok(()),
        };
        let Some(m) = m else { return Ok(()) };
        let now = Instant::now();
        let generation = {
            let mut x = seen.lock().await;
            match m.msg {
                Some(operator_message::Msg::Snapshot(sn)) => {
                    x.l2 = sn.l2.into_iter().map(|a| a.ip).collect();
                    x.snapshot.get_or_insert(now);
                    x.changed = Some(now);
                    sn.generation
                }
                Some(operator_message::Msg::Delta(d)) => {
                    for ip in &d.l2_remove {
                        x.l2.remove(ip);
                    }
                    if !d.l2_set.is_empty() {
                        x.gained = Some(now);
                    }
                    if !(d.l2_set.is_empty() && d.l2_remove.is_empty()) {
                        x.changed = Some(now);
                    }
                    x.l2.extend(d.l2_set.into_iter().map(|a| a.ip));
                    d.generation
                }
                None => continue,
            }
        };
        tx.send(msg(speaker_message::Msg::Ack(Ack {
            generation,
            error: String::new(),
        })))
        .await?;
    }
}

/// S Ready Nodes, a speaker Pod bound to each, and a token per Pod.
async fn nodes_pods_tokens(
    client: &kube::Client,
    op_ns: &str,
    bench: &str,
    s: usize,
) -> anyhow::Result<Vec<String>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), op_ns);
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), op_ns);
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(0..s)
        .map(|i| {
            let (nodes, pods, sas) = (&nodes, &pods, &sas);
            async move {
                let name = format!("{bench}-n{i}");
                let node: Node = serde_json::from_value(
                    json!({"metadata": {"name": name, "labels": {"bench": bench}}}),
                )?;
                nodes.create(&PostParams::default(), &node).await?;
                let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                    "reason": "KubeletReady", "message": "bench",
                    "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
                nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(ready))
                    .await?;
                let pod_name = format!("speaker-{i}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": pod_name},
                    "spec": {"nodeName": name, "serviceAccountName": "barelb-speaker",
                             "containers": [{"name": "speaker", "image": "barelb-speaker"}]}}))?;
                let pod = pods.create(&PostParams::default(), &pod).await?;
                let req: TokenRequest = serde_json::from_value(json!({"spec": {
                    "audiences": [barelb_control::TOKEN_AUDIENCE], "expirationSeconds": 3600,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod_name,
                                       "uid": pod.metadata.uid}}}))?;
                let tr: TokenRequest = sas
                    .create_subresource(
                        "token",
                        "barelb-speaker",
                        &PostParams::default(),
                        &req,
                    )
                    .await?;
                tr.status.map(|s| s.token).context("no token in TokenRequest")
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// M Services, each with an EndpointSlice on node i % S.
async fn services(
    client: &kube::Client,
    ns: &str,
    class: &str,
    bench: &str,
    m: usize,
    s: usize,
) -> anyhow::Result<()> {
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..m)
        .map(|i| {
            let (svcs, slices) = (&svcs, &slices);
            async move {
                let name = format!("svc-{i}");
                let svc: Service = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {support::BENCH_LABEL: "svc"}},
                    "spec": {"type": "LoadBalancer", "loadBalancerClass": class,
                             "ports": [{"port": 80}], "allocateLoadBalancerNodePorts": false}}))?;
                svcs.create(&PostParams::default(), &svc).await?;
                let slice: EndpointSlice = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["10.244.0.10"], "nodeName": format!("{bench}-n{}", i % s),
                                   "conditions": {"ready": true}}],
                    "ports": [{"port": 80, "protocol": "TCP"}]}))?;
                slices.create(&PostParams::default(), &slice).await?;
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn ca_pem(lab: &barelb_testsupport::lab::Lab, op_ns: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = lab.kubectl(&[
            "get",
            "configmap",
            "barelb-control-ca",
            "-n",
            op_ns,
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ]);
        if out.status.success() && !out.stdout.is_empty() {
            return Ok(String::from_utf8(out.stdout)?);
        }
        if Instant::now() > deadline {
            bail!("the operator published no control CA");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
