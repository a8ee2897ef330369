//! The speaker's Prometheus metrics (prefix `barelb_`), one registry for
//! layer 2, BGP and BFD, served on `/metrics`.

mod bfd;
mod bgp;
mod l2;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::registry::Registry;

pub use bfd::{BfdMetrics, ChangeLabels, DiscardLabels};
pub use bgp::{BgpMetrics, FamilyLabels, NotificationLabels, PeerLabels};
pub use l2::{AddressLabels, InterfaceLabels, L2Metrics};

/// Every metric the speaker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub l2: Arc<L2Metrics>,
    pub bgp: Arc<BgpMetrics>,
    pub bfd: Arc<BfdMetrics>,
    /// `/readyz`: the first Snapshot from the operator was applied (and
    /// stays so: a speaker keeps its job through an operator outage). A
    /// rolling update of the DaemonSet waits for it before the next node.
    pub ready: Arc<AtomicBool>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("barelb");
        let l2 = L2Metrics::register(&mut registry);
        let bgp = BgpMetrics::register(&mut registry);
        let bfd = BfdMetrics::register(&mut registry);
        Arc::new(Metrics {
            registry,
            l2,
            bgp,
            bfd,
            ready: Arc::new(AtomicBool::new(false)),
        })
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
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr`.
pub async fn serve(addr: SocketAddr, m: Arc<Metrics>) -> anyhow::Result<()> {
    barelb_runtime::serve_metrics(addr, m).await
}
