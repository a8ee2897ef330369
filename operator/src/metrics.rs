//! Prometheus metrics (prefix `barelb_`) and the HTTP endpoint that serves
//! them with liveness and readiness.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
    pub family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerStateLabels {
    pub peer: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// A TLS listener: `control` or `webhook`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub pool_addresses: MetricFamily<PoolLabels, Gauge<f64, AtomicU64>>,
    pub pool_addresses_in_use: MetricFamily<PoolLabels, Gauge<f64, AtomicU64>>,
    pub allocations: Counter,
    pub releases: Counter,
    pub allocation_failures: MetricFamily<ReasonLabels, Counter>,
    pub reconciles: Counter,
    pub reconcile_duration: Histogram,
    /// Recomputations of the planner's inputs from the index.
    pub planner_inputs_duration: Histogram,
    pub writes: MetricFamily<ResultLabels, Counter>,
    pub leader: Gauge,
    pub services_managed: Gauge,
    /// Admission reviews by kind and result (allowed, warned, denied, error).
    pub admission_requests: MetricFamily<ResultLabels, Counter>,
    pub admission_duration: MetricFamily<KindLabels, Histogram>,
    /// Admission denials by the LoadBalancerPolicy that made them.
    pub policy_denials: MetricFamily<PolicyLabels, Counter>,
    pub policy_evaluation_duration: Histogram,
    /// 1 while a LoadBalancerPolicy compiles, 0 while it does not (leader only).
    pub policy_ready: MetricFamily<PolicyLabels, Gauge>,
    /// Nodes whose Ready condition is True: a speaker is expected on each.
    pub nodes_ready: Gauge,
    /// Speakers with a live control stream.
    pub speakers_connected: Gauge,
    /// Per connected speaker: 1 while its links are up, 0 while one is down.
    pub speaker_link_up: MetricFamily<NodeLabels, Gauge>,
    /// Per connected speaker: addresses the current plan has it announce.
    pub speaker_addresses: MetricFamily<NodeLabels, Gauge>,
    /// Speakers' BGP sessions by peer and RFC 4271 state, as they report them.
    pub bgp_sessions: MetricFamily<PeerStateLabels, Gauge>,
    /// Announcements moved to another node, by cause (stream-ended, link-down, node, endpoints, …).
    pub failovers: MetricFamily<ReasonLabels, Counter>,
    /// Fault detected → new owner told.
    pub failover_duration: Histogram,
    /// Control messages by kind (snapshot, delta, ack, report, hello).
    pub control_messages: MetricFamily<KindLabels, Counter>,
    /// Message sent → speaker's Ack.
    pub control_apply_duration: Histogram,
    /// Speakers refused, by reason.
    pub control_refused: MetricFamily<ReasonLabels, Counter>,
    pub serving_cert_expiry: MetricFamily<ListenerLabels, Gauge>,
    pub tls_handshake_failures: MetricFamily<ListenerLabels, Counter>,
    ready: AtomicBool,
}

fn latency_histogram() -> Histogram {
    // 10 µs .. ~2.6 s
    Histogram::new(exponential_buckets(0.000_01, 2.0, 19))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("barelb");
        let m = Metrics {
            pool_addresses: MetricFamily::default(),
            pool_addresses_in_use: MetricFamily::default(),
            allocations: Counter::default(),
            releases: Counter::default(),
            allocation_failures: MetricFamily::default(),
            reconciles: Counter::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.000_01, 4.0, 12)),
            planner_inputs_duration: Histogram::new(exponential_buckets(0.000_01, 4.0, 12)),
            writes: MetricFamily::default(),
            leader: Gauge::default(),
            services_managed: Gauge::default(),
            admission_requests: MetricFamily::default(),
            admission_duration: MetricFamily::new_with_constructor(latency_histogram),
            policy_denials: MetricFamily::default(),
            policy_evaluation_duration: latency_histogram(),
            policy_ready: MetricFamily::default(),
            nodes_ready: Gauge::default(),
            speakers_connected: Gauge::default(),
            bgp_sessions: MetricFamily::default(),
            failovers: MetricFamily::default(),
            failover_duration: latency_histogram(),
            control_messages: MetricFamily::default(),
            control_apply_duration: latency_histogram(),
            control_refused: MetricFamily::default(),
            serving_cert_expiry: MetricFamily::default(),
            tls_handshake_failures: MetricFamily::default(),
            speaker_link_up: MetricFamily::default(),
            speaker_addresses: MetricFamily::default(),
            ready: AtomicBool::new(false),
            registry: Registry::default(),
        };
        registry.register(
            "pool_addresses",
            "Addresses a pool can hand out, by family",
            m.pool_addresses.clone(),
        );
        registry.register(
            "pool_addresses_in_use",
            "Addresses of a pool allocated to Services, by family",
            m.pool_addresses_in_use.clone(),
        );
        registry.register(
            "allocations",
            "Addresses allocated to Services",
            m.allocations.clone(),
        );
        registry.register(
            "releases",
            "Addresses released by Services",
            m.releases.clone(),
        );
        registry.register(
            "allocation_failures",
            "Allocation failures by reason",
            m.allocation_failures.clone(),
        );
        registry.register(
            "reconciles",
            "Service reconciliations",
            m.reconciles.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time to reconcile one batch of changes",
            prometheus_client::registry::Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        registry.register_with_unit(
            "planner_inputs_duration",
            "Time to recompute the planner's inputs from every Service (once per passing-on of cluster changes, at most every 50 ms)",
            prometheus_client::registry::Unit::Seconds,
            m.planner_inputs_duration.clone(),
        );
        registry.register(
            "api_writes",
            "Writes to the Kubernetes API by kind and result",
            m.writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        registry.register(
            "services_managed",
            "Services barelb manages",
            m.services_managed.clone(),
        );
        registry.register(
            "admission_requests",
            "Admission reviews by kind and result",
            m.admission_requests.clone(),
        );
        registry.register_with_unit(
            "admission_duration",
            "Time to answer one admission review, by kind",
            prometheus_client::registry::Unit::Seconds,
            m.admission_duration.clone(),
        );
        registry.register(
            "policy_denials",
            "Admission denials by LoadBalancerPolicy",
            m.policy_denials.clone(),
        );
        registry.register_with_unit(
            "policy_evaluation_duration",
            "Time to evaluate the policies for one claim",
            prometheus_client::registry::Unit::Seconds,
            m.policy_evaluation_duration.clone(),
        );
        registry.register(
            "policy_ready",
            "1 while the LoadBalancerPolicy compiles, 0 while it does not (written by the leader)",
            m.policy_ready.clone(),
        );
        registry.register(
            "nodes_ready",
            "Nodes whose Ready condition is True",
            m.nodes_ready.clone(),
        );
        registry.register(
            "control_speakers_connected",
            "Speakers with a live control stream",
            m.speakers_connected.clone(),
        );
        registry.register(
            "control_speaker_link_up",
            "Per connected speaker: 1 while its links are up, 0 while one is down (leader only)",
            m.speaker_link_up.clone(),
        );
        registry.register(
            "control_speaker_addresses",
            "Per connected speaker: addresses the current plan has it announce (leader only)",
            m.speaker_addresses.clone(),
        );
        registry.register(
            "control_bgp_sessions",
            "Speakers' BGP sessions by peer and state, as reported over the control channel",
            m.bgp_sessions.clone(),
        );
        registry.register(
            "failovers",
            "Announcements moved to another node, by cause",
            m.failovers.clone(),
        );
        registry.register_with_unit(
            "failover_duration",
            "From detecting a fault to telling the new owner",
            prometheus_client::registry::Unit::Seconds,
            m.failover_duration.clone(),
        );
        registry.register(
            "control_messages",
            "Control-channel messages by kind",
            m.control_messages.clone(),
        );
        registry.register_with_unit(
            "control_apply_duration",
            "From sending a snapshot or delta to the speaker's Ack",
            prometheus_client::registry::Unit::Seconds,
            m.control_apply_duration.clone(),
        );
        registry.register(
            "control_refused",
            "Speakers refused, by reason",
            m.control_refused.clone(),
        );
        registry.register(
            "serving_certificate_expiry_timestamp_seconds",
            "When the certificate each TLS listener serves expires, as Unix time (renewed at two thirds of its life)",
            m.serving_cert_expiry.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out, by listener",
            m.tls_handshake_failures.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Counts one write to the Kubernetes API (`barelb_api_writes_total`).
    pub fn count_write(&self, kind: &str, ok: bool) {
        self.count_write_result(kind, if ok { "ok" } else { "error" });
    }

    /// A write by result: `ok`, `error`, or `conflict` (refused because the
    /// object changed since it was read; retried from the newer version).
    pub fn count_write_result(&self, kind: &str, result: &str) {
        self.writes
            .get_or_create(&ResultLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Drops the series only the leader keeps current (pools, policies),
    /// so a replica that stopped leading reports no stale values.
    pub fn forget_leader_series(&self) {
        self.pool_addresses.clear();
        self.pool_addresses_in_use.clear();
        self.policy_ready.clear();
    }

    /// Marks the operator ready (watches synced; leader or standing by).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        barelb_runtime::encode(&self.registry)
    }
}

impl barelb_runtime::Exposition for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
    /// Watches synced; leader or standing by.
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, m: Arc<Metrics>) -> anyhow::Result<()> {
    barelb_runtime::serve_metrics(addr, m).await
}
