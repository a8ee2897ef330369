//! BGP session metrics, labelled by peer address (bounded by the BGPPeers
//! a node selects).

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FamilyLabels {
    pub peer: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub peer: String,
    /// `sent` or `received`.
    pub direction: String,
    /// NOTIFICATION error code (RFC 4271 §4.5), e.g. `3` for UPDATE errors.
    pub code: String,
}

/// BGP metrics.
#[derive(Debug)]
pub struct BgpMetrics {
    pub session_up: Family<PeerLabels, Gauge<i64, AtomicI64>>,
    pub session_state: Family<PeerLabels, Gauge<i64, AtomicI64>>,
    pub established: Family<PeerLabels, Counter>,
    pub updates_sent: Family<PeerLabels, Counter>,
    pub updates_received: Family<PeerLabels, Counter>,
    /// Malformed UPDATEs kept off the session (RFC 7606 treat-as-withdraw).
    pub updates_malformed: Family<PeerLabels, Counter>,
    pub prefixes_advertised: Family<FamilyLabels, Gauge<i64, AtomicI64>>,
    pub notifications: Family<NotificationLabels, Counter>,
}

impl BgpMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = BgpMetrics {
            session_up: Family::default(),
            session_state: Family::default(),
            established: Family::default(),
            updates_sent: Family::default(),
            updates_received: Family::default(),
            updates_malformed: Family::default(),
            prefixes_advertised: Family::default(),
            notifications: Family::default(),
        };
        registry.register(
            "bgp_session_up",
            "1 while the BGP session is Established",
            m.session_up.clone(),
        );
        registry.register(
            "bgp_session_state",
            "RFC 4271 state: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
            m.session_state.clone(),
        );
        registry.register(
            "bgp_session_established",
            "Times the session reached Established",
            m.established.clone(),
        );
        registry.register(
            "bgp_updates_sent",
            "UPDATE messages sent",
            m.updates_sent.clone(),
        );
        registry.register(
            "bgp_updates_received",
            "UPDATE messages received",
            m.updates_received.clone(),
        );
        registry.register(
            "bgp_updates_malformed",
            "Malformed UPDATEs treated as withdraw, the session kept (RFC 7606)",
            m.updates_malformed.clone(),
        );
        registry.register(
            "bgp_prefixes_advertised",
            "Prefixes currently advertised to the peer",
            m.prefixes_advertised.clone(),
        );
        registry.register(
            "bgp_notifications",
            "NOTIFICATION messages by direction and error code",
            m.notifications.clone(),
        );
        Arc::new(m)
    }

    pub fn peer(peer: &str) -> PeerLabels {
        PeerLabels {
            peer: peer.to_string(),
        }
    }
}
