//! The speaker's Prometheus metrics (prefix `barelb_`). Per-address series
//! exist only for addresses the node owns, so the label set stays bounded;
//! a released address's series are removed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AddressLabels {
    pub address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabels {
    pub interface: String,
}

/// Layer-2 metrics.
#[derive(Debug)]
pub struct L2Metrics {
    registry: Registry,
    pub requests: Family<AddressLabels, Counter>,
    pub replies: Family<AddressLabels, Counter>,
    pub gratuitous: Family<AddressLabels, Counter>,
    pub conflicts: Family<AddressLabels, Counter>,
    pub malformed: Counter,
    pub link_up: Family<InterfaceLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub carrier_changes: Family<InterfaceLabels, Counter<u64, AtomicU64>>,
}

impl L2Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("barelb");
        let m = L2Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            replies: Family::default(),
            gratuitous: Family::default(),
            conflicts: Family::default(),
            malformed: Counter::default(),
            link_up: Family::default(),
            carrier_changes: Family::default(),
        };
        registry.register(
            "l2_requests",
            "ARP requests and neighbor solicitations for an owned address",
            m.requests.clone(),
        );
        registry.register(
            "l2_replies",
            "ARP replies and neighbor advertisements sent",
            m.replies.clone(),
        );
        registry.register(
            "l2_gratuitous",
            "Gratuitous ARPs and unsolicited neighbor advertisements sent",
            m.gratuitous.clone(),
        );
        registry.register(
            "l2_conflicts",
            "Frames in which another MAC claimed an owned address",
            m.conflicts.clone(),
        );
        registry.register(
            "l2_malformed_frames",
            "Frames that could not be parsed",
            m.malformed.clone(),
        );
        registry.register(
            "link_up",
            "1 while the announcing interface has carrier",
            m.link_up.clone(),
        );
        registry.register(
            "link_carrier_changes",
            "Carrier gained or lost on the announcing interface",
            m.carrier_changes.clone(),
        );
        Arc::new(L2Metrics { registry, ..m })
    }

    /// Drops the series of an address the node no longer owns.
    pub fn forget(&self, ip: &IpAddr) {
        let l = AddressLabels {
            address: ip.to_string(),
        };
        for f in [
            &self.requests,
            &self.replies,
            &self.gratuitous,
            &self.conflicts,
        ] {
            f.remove(&l);
        }
    }

    pub fn addr(ip: &IpAddr) -> AddressLabels {
        AddressLabels {
            address: ip.to_string(),
        }
    }
}

async fn metrics(State(m): State<Arc<L2Metrics>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &m.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serves `/metrics` and `/healthz` on `addr`.
pub async fn serve(addr: SocketAddr, m: Arc<L2Metrics>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(m);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
