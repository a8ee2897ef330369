//! The speaker's Prometheus metrics (prefix `barelb_`), one registry for
//! layer 2 and BGP, served on `/metrics`.

mod bgp;
mod l2;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

pub use bgp::{BgpMetrics, FamilyLabels, NotificationLabels, PeerLabels};
pub use l2::{AddressLabels, InterfaceLabels, L2Metrics};

/// Every metric the speaker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub l2: Arc<L2Metrics>,
    pub bgp: Arc<BgpMetrics>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("barelb");
        let l2 = L2Metrics::register(&mut registry);
        let bgp = BgpMetrics::register(&mut registry);
        Arc::new(Metrics { registry, l2, bgp })
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.encode() {
        Ok(body) => (
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
pub async fn serve(addr: SocketAddr, m: Arc<Metrics>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(m);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
