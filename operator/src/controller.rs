//! The allocation controller: a thin async shell around [`Allocator`].
//!
//! Every watch feeds one channel; the loop drains it into the [`Index`],
//! then reconciles only what the batch touched (all Services when pools
//! change) and writes back only what differs, with server-side apply and a
//! bounded number of writes in flight. Only the leader allocates; on
//! becoming leader it first rebuilds every allocation from Service status.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use barelb_api::AddressPool;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::admission::view::Publisher;
use crate::index::{Change, Index, Touched};
use crate::metrics::{Metrics, PoolLabels, ReasonLabels, ResultLabels};
use crate::policy::CelPolicies;
use crate::retry::{Backoff, FailureLog};
use crate::status::{ServiceStatus, now_rfc3339, pool_status_patch};
use crate::webhook::SharedView;
use barelb_api::LoadBalancerPolicy;
use barelb_core::allocator::{Allocator, Outcome};
use barelb_core::policy::PolicyCheck;
use barelb_core::request::{self, ClassPolicy, ServiceKey};
use barelb_policies::Engine;

/// How often a failure shared by many Services is logged.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How the controller behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    pub class: ClassPolicy,
    /// The operator's namespace (BGPPeer password Secrets live here).
    pub namespace: String,
    /// Label selector limiting the AddressPools this instance uses ("" = all).
    pub pool_selector: String,
    /// Refuse claims on pools that no LoadBalancerPolicy selects.
    pub default_deny_pools: bool,
    pub field_manager: String,
    pub identity: String,
    /// Writes to the apiserver in flight at once.
    pub write_concurrency: usize,
}

/// One Service write: status, maybe the annotation, and events.
struct Write {
    key: ServiceKey,
    svc: Service,
    desired: ServiceStatus,
    observed: ServiceStatus,
}

/// State that exists only while leading.
struct Leading {
    alloc: Allocator,
    /// What was last written per Service, with the resourceVersion it produced:
    /// a watch event older than that is not a reason to write again.
    written: HashMap<ServiceKey, (ServiceStatus, u64)>,
    pool_written: HashMap<String, Value>,
    /// Per-Service retry delays after refused status writes.
    backoff: Backoff<ServiceKey>,
    /// Refused status writes, summarised once per interval.
    failures: FailureLog,
}

/// Runs until `shutdown` turns true.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    mut leader: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    view: SharedView,
    hub: Option<Arc<crate::control::Hub>>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Change>(8192);
    spawn_watch(
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
        tx.clone(),
        Change::Service,
    );
    let pool_watch = if settings.pool_selector.is_empty() {
        watcher::Config::default()
    } else {
        watcher::Config::default().labels(&settings.pool_selector)
    };
    spawn_watch(
        watcher(
            Api::<DeserializeGuard<AddressPool>>::all(client.clone()),
            pool_watch,
        ),
        tx.clone(),
        Change::Pool,
    );
    if hub.is_some() {
        spawn_watch(
            watcher(
                Api::<DeserializeGuard<barelb_api::BGPPeer>>::all(client.clone()),
                watcher::Config::default(),
            ),
            tx.clone(),
            Change::Peer,
        );
        // BGPPeer passwords: a Secret created after its peer, or rotated,
        // re-keys the session.
        spawn_watch(
            watcher(
                Api::<Secret>::namespaced(client.clone(), &settings.namespace),
                watcher::Config::default(),
            ),
            tx.clone(),
            Change::Secret,
        );
    }
    spawn_watch(
        watcher(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
        ),
        tx.clone(),
        Change::Namespace,
    );
    spawn_watch(
        watcher(
            Api::<DeserializeGuard<LoadBalancerPolicy>>::all(client.clone()),
            watcher::Config::default(),
        ),
        tx.clone(),
        Change::Policy,
    );
    spawn_watch(
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
        tx.clone(),
        Change::Node,
    );
    spawn_watch(
        watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
        ),
        tx,
        Change::EndpointSlice,
    );
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<ServiceKey>();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "barelb-operator".into(),
            instance: Some(settings.identity.clone()),
        },
    );
    let engine = Arc::new(Engine::default());
    let mut publisher = Publisher::new(
        view,
        settings.class.clone(),
        settings.default_deny_pools,
        engine.clone(),
        metrics.clone(),
    );

    let mut index = Index::default();
    let mut leading: Option<Leading> = None;
    let mut touched = Touched::default();
    let mut plans = hub.as_ref().map(|h| h.plans());
    let mut plan_changed = false;
    let mut peer_configs = std::collections::BTreeMap::new();
    let mut peers_read = false;
    let mut announced: HashMap<ServiceKey, crate::status::announced::Announced> = HashMap::new();
    loop {
        tokio::select! {
            Ok(()) = async {
                match plans.as_mut() {
                    Some(p) => p.changed().await,
                    None => std::future::pending().await,
                }
            } => plan_changed = true,
            change = rx.recv() => {
                let Some(change) = change else { anyhow::bail!("all watches ended") };
                index.apply(change, &mut touched);
                while let Ok(more) = rx.try_recv() {
                    index.apply(more, &mut touched);
                }
            }
            Some(key) = retry_rx.recv() => touched.services.push(key),
            _ = leader.changed() => {}
            _ = shutdown.changed() => return Ok(()),
            _ = sleep_until(publisher.due()) => {}
        }
        if !index.synced() {
            continue;
        }
        publisher.note(&index, &touched);
        publisher.publish_if_due(&index);
        if let Some(hub) = &hub {
            if (touched.peers || !peers_read) && index.secrets.synced() {
                peer_configs = crate::control::inputs::peer_configs(&index, &settings.namespace);
                peers_read = true;
            }
            // Every replica keeps the hub's inputs current, so a new leader
            // plans at once from the same data.
            hub.set_inputs(
                crate::control::hub::Inputs {
                    units: crate::control::inputs::units(&index, &settings.class),
                    nodes: crate::control::inputs::nodes(&index),
                    peers: crate::control::inputs::peers(&index),
                    peer_configs: peer_configs.clone(),
                },
                "cluster-change",
            );
        }
        metrics.set_ready(true);
        if !*leader.borrow() {
            if leading.take().is_some() {
                tracing::info!("no longer leader: stopped allocating");
                metrics.leader.set(0);
            }
            touched = Touched::default();
            continue;
        }
        let started = Instant::now();
        let batch = std::mem::take(&mut touched);
        let fresh = leading.is_none();
        let state = match leading.as_mut() {
            Some(s) => s,
            None => {
                metrics.leader.set(1);
                leading.insert(rebuild(
                    &index,
                    &settings.class,
                    policies(&index, &engine, &settings),
                ))
            }
        };
        let mut keys: BTreeSet<ServiceKey> = batch.services.into_iter().collect();
        if batch.pools {
            state.alloc.set_pools(index.pool_defs());
        }
        if !fresh && (batch.policies || batch.namespaces) {
            state.alloc.set_policy(policies(&index, &engine, &settings));
        }
        if fresh || batch.pools || batch.namespaces || batch.policies {
            keys.extend(index.services.iter().map(|(k, _)| k.clone()));
        }
        let writes = reconcile_keys(state, &index, &settings, keys, &metrics);
        metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        execute(
            &client, &settings, &recorder, &metrics, state, writes, &retry_tx,
        )
        .await;
        write_pools(&client, &settings, &metrics, state, &index).await;
        if let Some(p) = plans.as_mut()
            && std::mem::take(&mut plan_changed)
        {
            let plan = p.borrow_and_update().clone();
            let now = crate::status::announced::compute(&index, &settings.class, &plan);
            crate::status::announced::write(&client, &recorder, &index, now, &mut announced).await;
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn spawn_watch<K, S>(stream: S, tx: mpsc::Sender<Change>, wrap: fn(watcher::Event<K>) -> Change)
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.default_backoff());
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if tx.send(wrap(ev)).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "watch error; retrying with backoff"),
            }
        }
    });
}

/// Whether `manager` wrote the Service's status: only then may this instance
/// clear it when the Service stops qualifying.
fn status_managed_by(svc: &Service, manager: &str) -> bool {
    svc.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(manager) && m.subresource.as_deref() == Some("status")
    })
}

/// The policy check for the allocator, from the current policies and
/// namespace labels.
fn policies(index: &Index, engine: &Arc<Engine>, settings: &Settings) -> Arc<dyn PolicyCheck> {
    Arc::new(CelPolicies::from_index(
        engine.clone(),
        index,
        settings.default_deny_pools,
    ))
}

/// A new leader's first step: every address already in a Service's status
/// is taken back before anything new is allocated, oldest Service first.
fn rebuild(index: &Index, class: &ClassPolicy, policy: Arc<dyn PolicyCheck>) -> Leading {
    let started = Instant::now();
    let mut alloc = Allocator::new(policy);
    alloc.set_pools(index.pool_defs());
    let mut restored: Vec<(request::Request, Vec<std::net::IpAddr>)> = index
        .services
        .values()
        .filter_map(|s| {
            let held = request::held(s, class)?;
            Some((held.request(s), held.ips))
        })
        .collect();
    restored.sort_by(|a, b| (a.0.created, &a.0.key).cmp(&(b.0.created, &b.0.key)));
    for (req, ips) in &restored {
        alloc.restore(req, ips);
    }
    tracing::info!(
        services = restored.len(),
        pools = index.pools.len(),
        millis = started.elapsed().as_millis() as u64,
        "rebuilt allocations from Service status"
    );
    Leading {
        alloc,
        written: HashMap::new(),
        pool_written: HashMap::new(),
        backoff: Backoff::default(),
        failures: FailureLog::new("Service status", FAILURE_LOG_INTERVAL),
    }
}

fn reconcile_keys(
    state: &mut Leading,
    index: &Index,
    settings: &Settings,
    keys: BTreeSet<ServiceKey>,
    metrics: &Metrics,
) -> Vec<Write> {
    let class = &settings.class;
    // Oldest first, so competing claims resolve the same way every time.
    let mut order: Vec<ServiceKey> = keys.into_iter().collect();
    order.sort_by_key(|k| {
        (
            index
                .services
                .get(k)
                .and_then(|s| s.metadata.creation_timestamp.clone())
                .map(|t| t.0),
            k.clone(),
        )
    });
    let mut writes = Vec::new();
    let now = Instant::now();
    let mut queue: std::collections::VecDeque<ServiceKey> = order.into();
    while let Some(key) = queue.pop_front() {
        metrics.reconciles.inc();
        let Some(svc) = index.services.get(&key) else {
            let freed = state.alloc.release(&key);
            metrics.releases.inc_by(freed.len() as u64);
            state.written.remove(&key);
            continue;
        };
        let observed = ServiceStatus::observed(svc);
        let desired = if request::qualifies(svc, class) {
            let outcome = match request::parse(svc) {
                Ok(req) => state.alloc.reconcile(&req),
                Err(e) => state.alloc.invalid(&key, e.0),
            };
            if let Outcome::Allocated { warnings, .. } = &outcome {
                for w in warnings {
                    tracing::warn!(service = %key, warning = %w, "policy warning");
                }
            }
            ServiceStatus::from_outcome(&outcome)
        } else {
            let freed = state.alloc.release(&key);
            metrics.releases.inc_by(freed.len() as u64);
            if observed.condition.is_none() || !status_managed_by(svc, &settings.field_manager) {
                // Never ours (perhaps another barelb instance's), or already cleared.
                state.written.remove(&key);
                continue;
            }
            ServiceStatus::released()
        };
        queue.extend(state.alloc.take_evicted());
        tracing::debug!(service = %key, ?desired, ?observed, "reconciled");
        if desired == observed {
            state.written.remove(&key);
            continue;
        }
        let rv: u64 = svc
            .metadata
            .resource_version
            .as_deref()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if let Some((last, written_rv)) = state.written.get(&key)
            && *last == desired
            && rv < *written_rv
        {
            // Our write is on its way back through the watch.
            continue;
        }
        if !state.backoff.due(&key, now) {
            // Refused lately: its scheduled retry writes it.
            continue;
        }
        writes.push(Write {
            key,
            svc: svc.clone(),
            desired,
            observed,
        });
    }
    writes
}

async fn execute(
    client: &Client,
    settings: &Settings,
    recorder: &Recorder,
    metrics: &Metrics,
    state: &mut Leading,
    writes: Vec<Write>,
    retry: &mpsc::UnboundedSender<ServiceKey>,
) {
    let now = now_rfc3339();
    let results: Vec<(ServiceKey, ServiceStatus, Result<u64, kube::Error>)> =
        futures::stream::iter(writes)
            .map(|w| {
                let now = now.clone();
                async move {
                    let res = write_service(client, settings, recorder, metrics, &w, &now).await;
                    (w.key, w.desired, res)
                }
            })
            .buffer_unordered(settings.write_concurrency.max(1))
            .collect()
            .await;
    for (key, desired, res) in results {
        match res {
            Ok(rv) => {
                state.backoff.succeeded(&key);
                state.written.insert(key, (desired, rv));
            }
            Err(e) => {
                let summary =
                    state
                        .failures
                        .record(&key.to_string(), &e.to_string(), Instant::now());
                if let Some(line) = summary {
                    tracing::warn!(failing = state.backoff.failing() + 1, "{line}");
                }
                state.written.remove(&key);
                let delay = state.backoff.failed(key.clone(), Instant::now());
                let retry = retry.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = retry.send(key);
                });
            }
        }
    }
}

async fn write_service(
    client: &Client,
    settings: &Settings,
    recorder: &Recorder,
    metrics: &Metrics,
    w: &Write,
    now: &str,
) -> Result<u64, kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), &w.key.namespace);
    let pp = PatchParams::apply(&settings.field_manager).force();
    let label = |kind: &str, ok: bool| ResultLabels {
        kind: kind.into(),
        result: if ok { "ok" } else { "error" }.into(),
    };
    // The annotation first: when the status (what users and tests wait on)
    // shows the address, the pool annotation is already there.
    if w.desired.pool != w.observed.pool {
        let res = api
            .patch(
                &w.key.name,
                &pp,
                &Patch::Apply(w.desired.annotation_patch(&w.svc)),
            )
            .await;
        metrics
            .writes
            .get_or_create(&label("service_annotation", res.is_ok()))
            .inc();
        res?;
    }
    let res = api
        .patch_status(
            &w.key.name,
            &pp,
            &Patch::Apply(w.desired.status_patch(&w.svc, now)),
        )
        .await;
    metrics
        .writes
        .get_or_create(&label("service_status", res.is_ok()))
        .inc();
    let updated = res?;
    for ev in w.desired.events(&w.observed) {
        match ev.reason {
            "IPAllocated" => {
                metrics.allocations.inc();
            }
            "AllocationFailed" => {
                let reason = w
                    .desired
                    .condition
                    .as_ref()
                    .map(|c| c.reason.clone())
                    .unwrap_or_default();
                metrics
                    .allocation_failures
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
            }
            _ => {}
        }
        let event = KubeEvent {
            type_: if ev.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: ev.reason.into(),
            note: Some(ev.note),
            action: "Allocate".into(),
            secondary: None,
        };
        // Events go out beside the status path: the address is what users
        // wait for, the event can follow a moment later.
        let (recorder, reference, key) = (recorder.clone(), w.svc.object_ref(&()), w.key.clone());
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::warn!(service = %key, error = %e, "could not publish event");
            }
        });
    }
    Ok(updated
        .metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0))
}

async fn write_pools(
    client: &Client,
    settings: &Settings,
    metrics: &Metrics,
    state: &mut Leading,
    index: &Index,
) {
    let now = now_rfc3339();
    let mut managed = 0i64;
    for (_, ips) in state.alloc.holdings() {
        managed += i64::from(!ips.is_empty());
    }
    metrics.services_managed.set(managed);
    for pool in index.pools.values() {
        let name = pool.metadata.name.clone().unwrap_or_default();
        for (family, total, used) in state.alloc.usage(&name) {
            let labels = PoolLabels {
                pool: name.clone(),
                family: family.k8s_name().into(),
            };
            metrics
                .pool_addresses
                .get_or_create(&labels)
                .set(total as f64);
            metrics
                .pool_addresses_in_use
                .get_or_create(&labels)
                .set(used as f64);
        }
        let Some(patch) = pool_status_patch(pool, &state.alloc, &now) else {
            continue;
        };
        // The status timestamp aside, skip a body already written and not yet seen back.
        let mut cmp = patch.clone();
        cmp["status"]["conditions"][0]["lastTransitionTime"] = Value::Null;
        if state.pool_written.get(&name) == Some(&cmp) {
            continue;
        }
        let api: Api<AddressPool> = Api::all(client.clone());
        let res = api
            .patch_status(
                &name,
                &PatchParams::apply(&settings.field_manager).force(),
                &Patch::Apply(patch),
            )
            .await;
        metrics
            .writes
            .get_or_create(&ResultLabels {
                kind: "pool_status".into(),
                result: if res.is_ok() { "ok" } else { "error" }.into(),
            })
            .inc();
        match res {
            Ok(_) => {
                state.pool_written.insert(name, cmp);
            }
            Err(e) => tracing::warn!(pool = %name, error = %e, "pool status write failed"),
        }
    }
}
