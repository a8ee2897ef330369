//! Operator churn on the lab (needs `tests/lab up` and a release build of
//! barelb-operator): two replicas share the Lease; SERVICES Services are
//! made first; then for MINUTES Services are created and deleted at RATE
//! per second in all (half each), while the leading replica is SIGKILLed
//! every 5 s and the standby every 7 s, each started again at once. It
//! counts, from the Services' status as the apiserver holds it:
//!
//! - duplicates: an address in two Services' status (none share a key),
//!   checked every 5 s and at the end;
//! - moves: a Service whose address changed while it lived;
//! - unaddressed: Services without an address once all is settled;
//! - convergence: from the last kill until every Service has an address.
//!
//!     scripts/chaos-operator [MINUTES] [SERVICES] [RATE]   (10, 10000, 50)
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test tooling: failing loudly is the point

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use barelb_testsupport::bulk::{self, Spec};
use barelb_testsupport::lab::{FAST_LEASE, lab, lab_dir};
use barelb_testsupport::unique_name;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams};
use support::{Operator, run_kubectl};

/// What the sampler saw.
#[derive(Debug, Default)]
struct Seen {
    /// First address each live Service had.
    first: BTreeMap<String, String>,
    /// Name → (first address, the other seen).
    moved: BTreeMap<String, (String, String)>,
    max_duplicates: usize,
    samples: usize,
}

impl Seen {
    /// Folds one list of every Service in.
    fn sample(&mut self, services: &[Service]) {
        let mut holders: BTreeMap<String, usize> = BTreeMap::new();
        let live: BTreeSet<String> = services
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        for s in services {
            let (Some(name), Some(ip)) = (s.metadata.name.as_ref(), bulk::ingress(s)) else {
                continue;
            };
            let first = self.first.entry(name.clone()).or_insert_with(|| ip.clone());
            if *first != ip {
                self.moved.insert(name.clone(), (first.clone(), ip.clone()));
            }
            *holders.entry(ip).or_default() += 1;
        }
        // A deleted Service's name is not reused: forget it.
        self.first.retain(|n, _| live.contains(n));
        let dups = holders.values().filter(|n| **n > 1).count();
        self.max_duplicates = self.max_duplicates.max(dups);
        self.samples += 1;
    }
}

/// How long a churn request may take. An overloaded lab apiserver can hold
/// a create for its own 5-minute limit (etcd behind, its ClusterIP
/// allocator waiting); such a request is counted as failed, not awaited.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn within(
    limit: Duration,
    f: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {limit:?}")))
}

/// Counts a request the loaded apiserver failed (a dropped connection):
/// the churn goes on; the first few are printed.
fn note_error(errors: &mut usize, e: &anyhow::Error) {
    *errors += 1;
    if *errors <= 3 {
        eprintln!("chaos-operator: a request failed (going on): {e:#}");
    }
}

struct Replicas {
    bin: String,
    id: String,
    started: usize,
    procs: BTreeMap<String, Operator>,
}

impl Replicas {
    /// Starts replica `slot` ("a" or "b") under a new identity.
    fn start(&mut self, slot: &str) -> anyhow::Result<()> {
        self.started += 1;
        let identity = format!("{slot}-{}", self.started);
        let log = std::fs::File::create(
            lab_dir().join(format!("logs/{}-chaos-{identity}.log", self.id)),
        )?;
        let child = Command::new(&self.bin)
            .args([
                "--load-balancer-class",
                &format!("chaos.barelb.io/{}", self.id),
                "--handle-classless=false",
                "--pool-selector",
                &format!("chaos={}", self.id),
                "--webhook=false",
                "--control=false",
                "--namespace",
                &format!("{}-op", self.id),
                "--metrics-addr",
                "127.0.0.1:0",
                "--identity",
                &identity,
            ])
            .args(FAST_LEASE)
            .env("KUBECONFIG", lab_dir().join("kubeconfig"))
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start barelb-operator")?;
        self.procs.insert(slot.to_string(), Operator(child));
        Ok(())
    }

    /// SIGKILLs the replica holding (`leader`) or not holding the Lease,
    /// and starts it again.
    fn kill(&mut self, leader_identity: Option<&str>, leader: bool) -> anyhow::Result<()> {
        let slot = match leader_identity.and_then(|h| h.split('-').next()) {
            Some(holder) if leader => holder.to_string(),
            Some(holder) => if holder == "a" { "b" } else { "a" }.to_string(),
            None => "a".to_string(),
        };
        drop(self.procs.remove(&slot)); // SIGKILL on drop
        self.start(&slot)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let minutes = args.first().copied().unwrap_or(10.0);
    let services = args.get(1).copied().unwrap_or(10_000.0) as usize;
    let rate = args.get(2).copied().unwrap_or(50.0).max(2.0);
    let lab = lab("chaos::operator");
    lab.install_crds();
    let client = lab.client().await?;
    let id = unique_name("chaos");
    let ns = format!("{id}-app");
    run_kubectl(&lab, &["create", "namespace", &ns])?;
    let out = lab.apply(&format!(
        "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {id}, labels: {{chaos: {id}}}}}\nspec: {{addresses: [\"100.64.0.0/15\"], announce: {{mode: L2}}}}\n"
    ));
    if !out.status.success() {
        bail!("pool: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut replicas = Replicas {
        bin: std::env::var("BARELB_OPERATOR_BIN").context("set BARELB_OPERATOR_BIN")?,
        id: id.clone(),
        started: 0,
        procs: BTreeMap::new(),
    };
    replicas.start("a")?;
    replicas.start("b")?;
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let spec = Spec {
        class: Some(format!("chaos.barelb.io/{id}")),
        ..Spec::default()
    };
    let t0 = Instant::now();
    bulk::create(&api, "svc", services, &spec).await?;
    support::wait_allocated(&api, "svc", services).await?;
    eprintln!(
        "chaos-operator: {services} Services addressed in {:?}",
        t0.elapsed()
    );

    let mut seen = Seen::default();
    seen.sample(&api.list(&ListParams::default()).await?.items);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &format!("{id}-op"));
    let holder = || async {
        leases
            .get_opt("barelb-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let until = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let every = Duration::from_secs_f64(2.0 / rate);
    let (mut created, mut deleted, mut kills) = (0usize, 0usize, 0usize);
    let mut next_op = Instant::now();
    let (mut next_leader_kill, mut next_standby_kill) = (
        Instant::now() + Duration::from_secs(5),
        Instant::now() + Duration::from_secs(7),
    );
    let mut next_sample = Instant::now() + Duration::from_secs(5);
    let mut last_kill = Instant::now();
    let mut alive: Vec<String> = (0..services).map(|i| format!("svc-{i}")).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut ops: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();
    let mut errors = 0usize;
    while Instant::now() < until {
        let now = Instant::now();
        if now >= next_leader_kill || now >= next_standby_kill {
            let leader = now >= next_leader_kill;
            replicas.kill(holder().await.as_deref(), leader)?;
            kills += 1;
            last_kill = Instant::now();
            if leader {
                next_leader_kill += Duration::from_secs(5);
            } else {
                next_standby_kill += Duration::from_secs(7);
            }
        }
        if now >= next_sample {
            // A list the loaded apiserver drops is skipped, not fatal.
            match api.list(&ListParams::default()).await {
                Ok(list) => seen.sample(&list.items),
                Err(e) => note_error(&mut errors, &e.into()),
            }
            next_sample += Duration::from_secs(5);
        }
        while now >= next_op {
            // One create and one delete (of a random live Service, never
            // the one just made), each in a task of its own so that a slow
            // answer does not lower the rate.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let victim = alive.swap_remove((rng % alive.len() as u64) as usize);
            let name = format!("churn-{created}");
            alive.push(name.clone());
            let (api_c, spec_c) = (api.clone(), spec.clone());
            ops.spawn(within(REQUEST_TIMEOUT, async move {
                bulk::create_one(&api_c, &name, "churn", &spec_c).await
            }));
            let api_d = api.clone();
            ops.spawn(within(REQUEST_TIMEOUT, async move {
                match api_d.delete(&victim, &DeleteParams::default()).await {
                    // Made so recently its create is still on the way.
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    r => r.map(|_| ()).map_err(Into::into),
                }
            }));
            created += 1;
            deleted += 1;
            next_op += every;
        }
        while let Some(done) = ops.try_join_next() {
            if let Err(e) = done? {
                note_error(&mut errors, &e);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while let Some(done) = ops.join_next().await {
        if let Err(e) = done? {
            note_error(&mut errors, &e);
        }
    }
    eprintln!(
        "chaos-operator: {minutes} min of churn: {created} created, {deleted} deleted, {kills} operators SIGKILLed"
    );
    // Settle: every live Service addressed.
    let deadline = Instant::now() + Duration::from_secs(300);
    let unaddressed = loop {
        let list = api.list(&ListParams::default()).await?;
        let missing = list
            .items
            .iter()
            .filter(|s| bulk::ingress(s).is_none())
            .count();
        seen.sample(&list.items);
        if missing == 0 || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let converged = last_kill.elapsed();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| churn | {minutes} min, {rate}/s ({created} created, {deleted} deleted) over {services} Services |"
    );
    println!("| operators SIGKILLed (leader every 5 s, standby every 7 s) | {kills} |");
    println!("| status samples (every 5 s) | {} |", seen.samples);
    println!("| client requests the apiserver failed (transient, not retried) | {errors} |");
    println!(
        "| duplicate addresses (most at once) | {} |",
        seen.max_duplicates
    );
    println!(
        "| live Services whose address changed | {} |",
        seen.moved.len()
    );
    println!("| Services left unaddressed | {unaddressed} |");
    println!(
        "| convergence after the last kill | {:.1} s |",
        converged.as_secs_f64()
    );
    let _ = run_kubectl(&lab, &["delete", "namespace", &ns, "--wait=false"]);
    let _ = run_kubectl(&lab, &["delete", "addresspool", &id, "--wait=false"]);
    for (name, (first, then)) in seen.moved.iter().take(10) {
        eprintln!("chaos-operator: {name} moved from {first} to {then}");
    }
    if seen.max_duplicates > 0 || !seen.moved.is_empty() || unaddressed > 0 {
        bail!("chaos-operator: duplicates, moves or unaddressed Services (above)");
    }
    Ok(())
}
