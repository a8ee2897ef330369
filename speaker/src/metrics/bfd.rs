//! BFD session metrics, labelled by peer address (bounded by the BGPPeers
//! a node selects), and discarded packets by reason (a fixed set).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::PeerLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    pub peer: String,
    /// The state entered: `AdminDown`, `Down`, `Init`, `Up`.
    pub to: String,
    /// Its diagnostic, e.g. `detection time expired`.
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscardLabels {
    /// Which check refused it, e.g. `ttl`, `unknown_discriminator`.
    pub reason: String,
}

/// BFD metrics.
#[derive(Debug)]
pub struct BfdMetrics {
    pub state: Family<PeerLabels, Gauge<i64, AtomicI64>>,
    pub changes: Family<ChangeLabels, Counter>,
    pub detect_time: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    pub discarded: Family<DiscardLabels, Counter>,
}

impl BfdMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = BfdMetrics {
            state: Family::default(),
            changes: Family::default(),
            detect_time: Family::default(),
            discarded: Family::default(),
        };
        registry.register(
            "bfd_session_state",
            "RFC 5880 state: 0 AdminDown, 1 Down, 2 Init, 3 Up",
            m.state.clone(),
        );
        registry.register(
            "bfd_session_changes",
            "BFD state changes by state entered and cause",
            m.changes.clone(),
        );
        registry.register(
            "bfd_detect_time_seconds",
            "Time without a packet from the peer after which its session goes Down",
            m.detect_time.clone(),
        );
        registry.register(
            "bfd_packets_discarded",
            "Received BFD packets discarded, by the check that refused them",
            m.discarded.clone(),
        );
        Arc::new(m)
    }
}
