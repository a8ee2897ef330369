//! The leader's writes: Service status (one write per Service, and its
//! cleanup finalizer once the batch's statuses are written), the events
//! that go with a change (queued, see `events`), and AddressPool status,
//! with a bounded number of writes in flight and per-Service backoff on
//! refusals.

use barelb_api::AddressPool;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use serde_json::Value;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::Settings;
use super::reconcile::{Leading, Write};
use crate::events::Events;
use crate::index::{Change, Index, resource_version};
use crate::metrics::{Metrics, PoolLabels, ReasonLabels};
use crate::status::{now_rfc3339, pool_status_patch};
use barelb_core::names::CLEANUP_FINALIZER;
use barelb_core::request::{FinalizerStep, ServiceKey};
use serde_json::json;

/// What every write needs.
#[derive(Clone, Copy)]
pub(super) struct Context<'a> {
    pub client: &'a Client,
    pub settings: &'a Settings,
    pub events: &'a Events,
    pub metrics: &'a Metrics,
}

/// What happens while writes are in flight (see [`execute`]).
// Made and consumed at once, never stored: boxing the event would only add
// an allocation per event.
#[allow(clippy::large_enum_variant)]
pub(super) enum InFlight {
    /// A watch event, to absorb.
    Change(Change),
    /// What absorbed events changed is due to be passed on (the planner's
    /// inputs, on the schedule of `feed`).
    Feed,
}

/// Carries out `writes` (at most `write_concurrency` at once); a refused
/// one is retried through `retry` after its backoff. While they are in
/// flight, watch events keep arriving from `incoming` into `on`: a
/// batch of 10,000 writes takes many seconds, and a watch that is not read
/// meanwhile backs up into the apiserver (whose echoes of these very writes
/// would otherwise fill the channel and stall every watch); and what they
/// change is passed on meanwhile ([`InFlight::Feed`], when `on` last said
/// it is due), so that a deleted
/// Service is withdrawn, and an addressed one announced, without waiting
/// for the other writes.
///
/// Statuses first: the cleanup finalizer a newly addressed Service still
/// needs is added once every status of the batch is written, so 2,000
/// pending Services are addressed at the rate of one write each, not two.
/// Until then the Service is barelb's as its status says, and a deletion
/// meanwhile is seen through the watch.
pub(super) async fn execute(
    ctx: &Context<'_>,
    state: &mut Leading,
    writes: Vec<Write>,
    retry: &mpsc::UnboundedSender<ServiceKey>,
    incoming: &mut mpsc::Receiver<Change>,
    mut on: impl FnMut(InFlight) -> Option<Instant>,
) {
    let _busy = (!writes.is_empty()).then(|| ctx.events.busy());
    // Changes noted before the batch and not yet passed on keep their time
    // (passed on now if it has come): else they would wait for the next
    // change absorbed during the writes, or for the batch's end.
    let feed_at = on(InFlight::Feed);
    let mut io = Io {
        retry,
        incoming,
        on: &mut on,
        watching: true,
        feed_at,
    };
    let statuses = writes.into_iter().map(|w| (w, Part::Status)).collect();
    let owing = run(ctx, state, statuses, &mut io).await;
    let finalizers = owing.into_iter().map(|w| (w, Part::AddFinalizer)).collect();
    run(ctx, state, finalizers, &mut io).await;
}

/// Which of a [`Write`]'s requests one job makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Its status (the finalizer taken off first when due, or added when
    /// no status is to be written): all but a finalizer a newly written
    /// status still owes.
    Status,
    /// The cleanup finalizer its written status owes.
    AddFinalizer,
}

impl Part {
    /// Whether `w`, its status written by this part, still owes the
    /// finalizer.
    fn owes_finalizer(self, w: &Write) -> bool {
        self == Part::Status && w.finalizer == FinalizerStep::Add && w.desired != w.observed
    }
}

/// What [`run`] listens to and reports to while its writes are in flight,
/// kept across [`execute`]'s rounds: changes absorbed as one round ends are
/// passed on in the next when due.
struct Io<'a, F> {
    retry: &'a mpsc::UnboundedSender<ServiceKey>,
    incoming: &'a mut mpsc::Receiver<Change>,
    on: &'a mut F,
    /// Whether `incoming` is still open.
    watching: bool,
    /// When absorbed changes are next passed on; None: none waiting.
    feed_at: Option<Instant>,
}

/// Carries out one round of [`execute`]'s writes; returns those whose
/// written status owes its finalizer.
async fn run<F: FnMut(InFlight) -> Option<Instant>>(
    ctx: &Context<'_>,
    state: &mut Leading,
    jobs: Vec<(Write, Part)>,
    io: &mut Io<'_, F>,
) -> Vec<Write> {
    let Context {
        client,
        settings,
        events,
        metrics,
    } = *ctx;
    let now = now_rfc3339();
    let mut owing = Vec::new();
    let mut results = std::pin::pin!(
        futures::stream::iter(jobs)
            .map(|(w, part)| {
                let now = now.clone();
                let span = tracing::info_span!(parent: &w.span, "status_write");
                async move {
                    let res =
                        write_service(client, settings, events, metrics, &w, part, &now).await;
                    (w, part, res)
                }
                .instrument(span)
            })
            .buffer_unordered(settings.write_concurrency.max(1))
    );
    loop {
        let (w, part, res) = tokio::select! {
            r = results.next() => match r {
                Some(r) => r,
                None => return owing,
            },
            change = io.incoming.recv(), if io.watching => {
                match change {
                    Some(change) => io.feed_at = (io.on)(InFlight::Change(change)),
                    // The main loop sees the end on its next receive.
                    None => io.watching = false,
                }
                continue;
            }
            () = super::sleep_until(io.feed_at) => {
                io.feed_at = (io.on)(InFlight::Feed);
                continue;
            }
        };
        let key = w.key.clone();
        match res {
            Ok(rv) => {
                state.backoff.succeeded(&key);
                state.written.insert(key, (w.desired.clone(), rv));
                if part.owes_finalizer(&w) {
                    owing.push(w);
                }
            }
            Err(e) if is_conflict(&e) => {
                // Someone wrote the Service since this replica last saw it
                // (a deposed leader's late write, most likely): its status
                // wins, taken again when the watch delivers it.
                tracing::info!(service = %key, "status changed since it was read; taking it again");
                state.written.remove(&key);
                state.resync.insert(key, w.precondition);
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
                let retry = io.retry.clone();
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
    events: &Events,
    metrics: &Metrics,
    w: &Write,
    part: Part,
    now: &str,
) -> Result<u64, kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), &w.key.namespace);
    if part == Part::AddFinalizer {
        return write_finalizer(&api, settings, metrics, events, w).await;
    }
    let mut rv = w.precondition;
    if w.finalizer == FinalizerStep::Remove {
        rv = write_finalizer(&api, settings, metrics, events, w).await?;
    }
    if w.desired != w.observed {
        // From what the removal left, if it came first.
        rv = write_status(&api, settings, metrics, events, w, rv, now).await?;
    } else if w.finalizer == FinalizerStep::Add {
        // Nothing else to write: the finalizer alone, at once.
        rv = write_finalizer(&api, settings, metrics, events, w).await?;
    }
    Ok(rv)
}

/// The Service's status, refused (409) unless the Service is still at
/// `precondition` (0: any); the events of the change once it is written.
async fn write_status(
    api: &Api<Service>,
    settings: &Settings,
    metrics: &Metrics,
    events: &Events,
    w: &Write,
    precondition: u64,
    now: &str,
) -> Result<u64, kube::Error> {
    let pp = PatchParams::apply(&settings.field_manager).force();
    let mut body = w.desired.status_patch(&w.svc, now);
    if precondition > 0 {
        body["metadata"]["resourceVersion"] = precondition.to_string().into();
    }
    let res = api
        .patch_status(&w.key.name, &pp, &Patch::Apply(body))
        .await;
    count(metrics, "service_status", &res);
    report_forbidden(events, w, &res);
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
        events.publish(event, crate::events::service_ref(&w.svc));
    }
    Ok(resource_version(&updated))
}

/// Adds or takes off the cleanup finalizer. A strategic merge patch
/// touches that one entry of the list, whoever else keeps finalizers
/// there, and never creates a Service that is gone (404); the apiserver
/// itself refuses a new finalizer on a Service being deleted.
async fn write_finalizer(
    api: &Api<Service>,
    settings: &Settings,
    metrics: &Metrics,
    events: &Events,
    w: &Write,
) -> Result<u64, kube::Error> {
    let body = match w.finalizer {
        FinalizerStep::Add => json!({"metadata": {"finalizers": [CLEANUP_FINALIZER]}}),
        FinalizerStep::Remove => {
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [CLEANUP_FINALIZER]}})
        }
        FinalizerStep::Keep => return Ok(w.precondition),
    };
    let pp = PatchParams {
        field_manager: Some(settings.field_manager.clone()),
        ..PatchParams::default()
    };
    let res = api.patch(&w.key.name, &pp, &Patch::Strategic(body)).await;
    count(metrics, "service_finalizer", &res);
    report_forbidden(events, w, &res);
    Ok(resource_version(&res?))
}

fn count<T>(metrics: &Metrics, kind: &str, res: &Result<T, kube::Error>) {
    let result = match res {
        Ok(_) => "ok",
        Err(e) if is_conflict(e) => "conflict",
        Err(_) => "error",
    };
    metrics.count_write_result(kind, result);
}

/// The apiserver refused a write made from a stale view (409 Conflict).
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(e) if e.code == 409)
}

/// A write the apiserver refused for want of a right: said on the Service
/// itself (as a Warning event, which the operator may still create), since
/// its status cannot say it. A Service stuck at `<pending>` then explains
/// itself in `kubectl describe`.
fn report_forbidden<T>(events: &Events, w: &Write, res: &Result<T, kube::Error>) {
    let Err(kube::Error::Api(e)) = res else {
        return;
    };
    if e.code != 403 {
        return;
    }
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: "WriteForbidden".into(),
        note: Some(format!(
            "barelb-operator may not write this Service: {}; restore the operator's ClusterRole (deploy/helm/barelb or deploy/kustomize/base)",
            e.message
        )),
        action: "Allocate".into(),
        secondary: None,
    };
    events.publish(event, crate::events::service_ref(&w.svc));
}

/// AddressPool status and the pool metrics, written when they changed.
pub(super) async fn write_pools(ctx: &Context<'_>, state: &mut Leading, index: &Index) {
    let Context {
        client,
        settings,
        metrics,
        ..
    } = *ctx;
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
        metrics.count_write("pool_status", res.is_ok());
        match res {
            Ok(_) => {
                state.pool_written.insert(name, cmp);
            }
            Err(e) => tracing::warn!(pool = %name, error = %e, "pool status write failed"),
        }
    }
}
