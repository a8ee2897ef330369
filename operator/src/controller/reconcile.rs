//! The leader's decisions, with no I/O: rebuild every allocation from
//! Service status, then reconcile the Services a batch touched into the
//! writes that would bring their status in line (nothing is written here).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use barelb_core::allocator::{Allocator, Outcome};
use barelb_core::policy::PolicyCheck;
use barelb_core::request::{self, ClassPolicy, FinalizerStep, Request, ServiceKey, ServiceRecord};
use barelb_policies::Engine;
use serde_json::Value;

use super::Settings;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::policy::CelPolicies;
use crate::retry::{Backoff, FailureLog};
use crate::status::ServiceStatus;

/// How often a failure shared by many Services is logged.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One Service write: status, the cleanup finalizer, and events.
pub(super) struct Write {
    pub key: ServiceKey,
    pub svc: ServiceRecord,
    pub desired: ServiceStatus,
    pub observed: ServiceStatus,
    /// The cleanup finalizer's step: added after the status, taken off
    /// before it is cleared (so a failed removal is retried while the
    /// status still shows the Service was ours).
    pub finalizer: FinalizerStep,
    /// The Service's `reconcile` span; the write is its `status_write`.
    pub span: tracing::Span,
    /// The resourceVersion the write was computed from: the apiserver
    /// refuses it (409) if the Service changed since, e.g. a status a
    /// deposed leader wrote that this one has not seen yet.
    pub precondition: u64,
}

/// State that exists only while leading.
pub(super) struct Leading {
    pub alloc: Allocator,
    /// What was last written per Service, with the resourceVersion it produced:
    /// a watch event older than that is not a reason to write again.
    pub written: HashMap<ServiceKey, (ServiceStatus, u64)>,
    pub pool_written: HashMap<String, Value>,
    /// LoadBalancerPolicy and BGPPeer status bodies written ("Kind/name"),
    /// timestamps aside, not yet seen back.
    pub status_written: HashMap<String, Value>,
    /// Per-Service retry delays after refused status writes.
    pub backoff: Backoff<ServiceKey>,
    /// Refused status writes, summarised once per interval.
    pub failures: FailureLog,
    /// Services whose write met a newer version (409), with the
    /// resourceVersion refused: once the watch delivers a newer one, their
    /// allocation is taken again from its status, which then wins over this
    /// replica's memory.
    pub resync: HashMap<ServiceKey, u64>,
}

/// The policy check for the allocator, from the current policies and
/// namespace labels.
pub(super) fn policies(
    index: &Index,
    engine: &Arc<Engine>,
    settings: &Settings,
) -> Arc<dyn PolicyCheck> {
    Arc::new(CelPolicies::from_index(
        engine.clone(),
        index,
        settings.default_deny_pools,
    ))
}

/// A new leader's first step: every address already in a Service's status
/// is taken back before anything new is allocated, oldest Service first.
pub(super) fn rebuild(index: &Index, class: &ClassPolicy, policy: Arc<dyn PolicyCheck>) -> Leading {
    let started = Instant::now();
    let mut alloc = Allocator::new(policy);
    alloc.set_pools(index.pool_defs());
    let mut restored: Vec<(Arc<Request>, Vec<std::net::IpAddr>)> = index
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
        status_written: HashMap::new(),
        backoff: Backoff::default(),
        failures: FailureLog::new("Service status", FAILURE_LOG_INTERVAL),
        resync: HashMap::new(),
    }
}

pub(super) fn reconcile_keys(
    state: &mut Leading,
    index: &Index,
    settings: &Settings,
    keys: BTreeSet<ServiceKey>,
    metrics: &Metrics,
) -> Vec<Write> {
    let class = &settings.class;
    // Oldest first, so competing claims resolve the same way every time.
    let mut order: Vec<ServiceKey> = keys.into_iter().collect();
    order.sort_by_key(|k| (index.services.get(k).and_then(|s| s.created), k.clone()));
    let mut writes = Vec::new();
    let now = Instant::now();
    let mut queue: VecDeque<ServiceKey> = order.into();
    while let Some(key) = queue.pop_front() {
        metrics.reconciles.inc();
        let Some(svc) = index.services.get(&key) else {
            let freed = state.alloc.release(&key);
            metrics.releases.inc_by(freed.len() as u64);
            state.written.remove(&key);
            state.resync.remove(&key);
            state.backoff.forget(&key);
            continue;
        };
        if let Some(&refused) = state.resync.get(&key) {
            if svc.resource_version <= refused {
                // The newer version is on its way through the watch.
                continue;
            }
            state.resync.remove(&key);
            resync(state, svc, class);
        }
        let observed = ServiceStatus::observed(svc);
        // Only a status this instance wrote is one it may clear when the
        // Service stops qualifying.
        let served = svc.status_managed_by(&settings.field_manager);
        let finalizer = request::finalizer_step(svc, class, served);
        // A span only for Services barelb serves or served: the others
        // (every Service in the cluster, on a new leader) are no one's trace.
        let (desired, span) = if request::qualifies(svc, class) {
            let span = reconcile_span(&key);
            let outcome = span.in_scope(|| {
                // The allocator's choice, policies included (their spans nest here).
                let _allocating = tracing::info_span!("allocate").entered();
                let outcome = match svc.request() {
                    Some(Ok(req)) => state.alloc.reconcile(req),
                    Some(Err(e)) => state.alloc.invalid(&key, e.0.clone()),
                    // Unreachable: a qualifying Service is a LoadBalancer.
                    None => state
                        .alloc
                        .invalid(&key, "the Service is not a LoadBalancer".into()),
                };
                if let Outcome::Allocated { warnings, .. } = &outcome {
                    for w in warnings {
                        tracing::warn!(service = %key, warning = %w, "policy warning");
                    }
                }
                outcome
            });
            (ServiceStatus::from_outcome(&outcome), span)
        } else {
            let deleting = svc.deleting;
            if !deleting {
                // A deleting Service keeps its addresses until it is gone
                // (`request::held`), released by the branch above.
                let freed = state.alloc.release(&key);
                metrics.releases.inc_by(freed.len() as u64);
            }
            if deleting || observed.condition.is_none() || !served {
                // Never ours (perhaps another barelb instance's), already
                // cleared, or going away with its status: at most the
                // finalizer to take off.
                if finalizer != FinalizerStep::Remove {
                    state.written.remove(&key);
                    continue;
                }
                (observed.clone(), reconcile_span(&key))
            } else {
                (ServiceStatus::released(), reconcile_span(&key))
            }
        };
        queue.extend(state.alloc.take_evicted());
        record_decision(&span, &desired);
        tracing::debug!(service = %key, ?desired, ?observed, "reconciled");
        if desired == observed && finalizer == FinalizerStep::Keep {
            state.written.remove(&key);
            continue;
        }
        let rv = svc.resource_version;
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
        let precondition = rv.max(state.written.get(&key).map_or(0, |(_, w)| *w));
        writes.push(Write {
            key,
            svc: svc.clone(),
            desired,
            observed,
            finalizer,
            span,
            precondition,
        });
    }
    writes
}

/// Takes `svc`'s allocation again from its status, as a new leader does:
/// the status it was refused against is newer than this replica's memory.
fn resync(state: &mut Leading, svc: &ServiceRecord, class: &ClassPolicy) {
    let key = &svc.key;
    state.alloc.release(key);
    state.written.remove(key);
    if let Some(held) = request::held(svc, class) {
        state.alloc.restore(&held.request(svc), &held.ips);
    }
}

/// One Service's reconcile: the root of its trace.
fn reconcile_span(key: &ServiceKey) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        service = %key,
        outcome = tracing::field::Empty,
        addresses = tracing::field::Empty,
        pool = tracing::field::Empty,
    )
}

/// What was decided, as the span's attributes (the same names as the logs').
fn record_decision(span: &tracing::Span, desired: &ServiceStatus) {
    if span.is_disabled() {
        return;
    }
    if let Some(c) = &desired.condition {
        span.record("outcome", c.reason.as_str());
    }
    if !desired.ips.is_empty() {
        let ips: Vec<String> = desired.ips.iter().map(ToString::to_string).collect();
        span.record("addresses", ips.join(",").as_str());
    }
    if let Some(p) = &desired.pool {
        span.record("pool", p.as_str());
    }
}
