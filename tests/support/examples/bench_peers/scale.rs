//! The rows that need Services by the thousand, in one namespace per
//! implementation: speaker memory with L2 Services that have endpoints,
//! allocation of N pending Services when the controller starts (beside a
//! plain client patching as many statuses), controller memory at M
//! Services, and controller restarts (addresses moved; time until a
//! Service created during the restart is addressed).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use barelb_testsupport::bulk::{self, Spec};
use barelb_testsupport::cluster::Cluster;
use barelb_testsupport::install::{apply, backend_yaml};
use barelb_testsupport::peers::{BULK_POOL, Deployed, pool_annotations};
use barelb_testsupport::unique_name;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};

/// The sizes (`scripts/bench-peers RUNS N M L2 RESTARTS`).
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub pending: usize,
    pub total: usize,
    pub l2: usize,
    pub restarts: usize,
}

impl Sizes {
    /// Whether any scale row is asked for (all 0: leave them out).
    pub fn any(&self) -> bool {
        self.pending + self.total + self.l2 + self.restarts > 0
    }
}

#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Speakers' RSS (KiB) with `l2` L2 Services: each node's.
    pub speaker_rss_kib: Vec<u64>,
    /// Controller start → `pending` Services addressed.
    pub allocation: Duration,
    /// A plain client's status patches of as many Services.
    pub plain: Duration,
    /// Controller RSS (KiB) with `total` Services (barelb: the larger replica).
    pub controller_rss_kib: u64,
    /// Per restart: addresses that changed, and the time from the restart
    /// to a Service created with it being addressed.
    pub restarts: Vec<(usize, Duration)>,
}

const WITHIN: Duration = Duration::from_secs(900);

pub async fn measure(c: &Cluster, d: &Deployed, sizes: Sizes) -> anyhow::Result<Figures> {
    let ns = unique_name("peers-scale");
    let _gone = NamespaceGuard(c.clone(), ns.clone());
    apply(c, &backend_yaml(&ns, c.nodes, None));
    let api: Api<Service> = Api::namespaced(c.lab.client().await?, &ns);
    let bulk_spec = Spec {
        class: d.peer.class().map(String::from),
        annotations: pool_annotations(BULK_POOL),
        unproxied: true,
        ..Spec::default()
    };
    let mut f = Figures::default();

    // Speakers with L2 Services that have endpoints (MetalLB announces
    // only those): each node's speaker RSS once they are all addressed.
    let l2 = Spec {
        app: Some("backend".into()),
        ..bulk_spec.clone()
    };
    bulk::create(&api, "l2", sizes.l2, &l2).await?;
    bulk::wait_allocated(&api, "l2", sizes.l2, WITHIN).await?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    f.speaker_rss_kib = d.speaker_pids().into_iter().map(bulk::rss_kib).collect();
    eprintln!(
        "bench-peers: {} speaker RSS with {} L2 Services: {:?} KiB",
        d.peer.name(),
        sizes.l2,
        f.speaker_rss_kib
    );

    // N pending, then the controller starts.
    d.scale_controller(0);
    bulk::create(&api, "pending", sizes.pending, &bulk_spec).await?;
    let t = Instant::now();
    d.scale_controller(d.default_replicas());
    bulk::wait_allocated(&api, "pending", sizes.pending, WITHIN).await?;
    f.allocation = t.elapsed();
    d.wait_ready();
    let plain = Spec {
        class: Some("nobody.barelb.io/none".into()),
        unproxied: true,
        ..Spec::default()
    };
    bulk::create(&api, "plain", sizes.pending, &plain).await?;
    f.plain = bulk::plain_patches(&api, "plain", sizes.pending).await?;
    eprintln!(
        "bench-peers: {} {} pending → addressed in {} ms (plain client {} ms)",
        d.peer.name(),
        sizes.pending,
        f.allocation.as_millis(),
        f.plain.as_millis()
    );
    // The plain client's Services go again, so the rows below hold M
    // Services in all (neither implementation serves these, but both
    // controllers see them).
    bulk::delete(&api, "plain", sizes.pending).await?;

    // Up to `total` Services of its own, then its memory.
    let more = sizes.total.saturating_sub(sizes.l2 + sizes.pending);
    bulk::create(&api, "bulk", more, &bulk_spec).await?;
    bulk::wait_allocated(&api, "bulk", more, WITHIN).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    f.controller_rss_kib = d
        .controller_pids()
        .into_iter()
        .map(bulk::rss_kib)
        .max()
        .unwrap_or(0);
    eprintln!(
        "bench-peers: {} controller RSS with {} Services: {} KiB",
        d.peer.name(),
        sizes.total,
        f.controller_rss_kib
    );

    for r in 0..sizes.restarts {
        let before = addressed(&api).await?;
        d.restart_controller();
        let t = Instant::now();
        let prefix = format!("restart{r}");
        create_until_admitted(&api, &prefix, &bulk_spec).await?;
        bulk::wait_allocated(&api, &prefix, 1, WITHIN).await?;
        let new_addressed = t.elapsed();
        d.wait_ready();
        // Time for any reshuffle a new leader makes to show.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = addressed(&api).await?;
        let moved = before
            .iter()
            .filter(|(name, ip)| after.get(*name) != Some(*ip))
            .count();
        eprintln!(
            "bench-peers: {} restart {}: {moved} of {} addresses moved; new Service addressed in {} ms",
            d.peer.name(),
            r + 1,
            before.len(),
            new_addressed.as_millis()
        );
        f.restarts.push((moved, new_addressed));
    }
    Ok(f)
}

/// Creates `PREFIX-0`, retrying while admission refuses it: barelb's
/// webhook (failurePolicy Fail) is away while its operators restart, and a
/// user's create fails the same way, so the wait is part of the figure.
async fn create_until_admitted(
    api: &Api<Service>,
    prefix: &str,
    spec: &Spec,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match bulk::create_one(api, &format!("{prefix}-0"), prefix, spec).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                note_refused(&e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A refused create, said once per second at most (not per retry).
fn note_refused(e: &anyhow::Error) {
    static LAST: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().expect("note lock");
    if last.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
        eprintln!("bench-peers: create refused, retrying: {e:#}");
        *last = Some(Instant::now());
    }
}

/// Name → address of every addressed Service in the namespace.
async fn addressed(api: &Api<Service>) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|s| Some((s.metadata.name.clone()?, bulk::ingress(s)?)))
        .collect())
}

/// Deletes the namespace (and its thousands of Services) on drop, waiting
/// so the next implementation does not share the apiserver with it.
pub struct NamespaceGuard(pub Cluster, pub String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let _ = self.0.lab.kubectl(&[
            "delete",
            "namespace",
            &self.1,
            "--wait=true",
            "--timeout=600s",
        ]);
    }
}
