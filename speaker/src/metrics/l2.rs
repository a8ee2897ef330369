//! Layer-2 metrics. Per-address series exist only for addresses the node
//! owns, so the label set stays bounded; a released address's series are
//! removed.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

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
    pub requests: Family<AddressLabels, Counter>,
    pub replies: Family<AddressLabels, Counter>,
    pub gratuitous: Family<AddressLabels, Counter>,
    pub conflicts: Family<AddressLabels, Counter>,
    pub malformed: Counter,
    /// Addresses this node answers for (summed over its interfaces).
    pub addresses: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub link_up: Family<InterfaceLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    pub carrier_changes: Family<InterfaceLabels, Counter<u64, AtomicU64>>,
    /// Addresses this node took over as a standby (`l2::standby`).
    pub standby_takeovers: Counter,
}

impl L2Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = L2Metrics {
            requests: Family::default(),
            replies: Family::default(),
            gratuitous: Family::default(),
            conflicts: Family::default(),
            malformed: Counter::default(),
            addresses: Gauge::default(),
            link_up: Family::default(),
            carrier_changes: Family::default(),
            standby_takeovers: Counter::default(),
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
            "l2_addresses",
            "Addresses this node answers ARP and NDP requests for",
            m.addresses.clone(),
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
        registry.register(
            "l2_standby_takeovers",
            "Addresses taken over from a silent owner while the operator was unreachable",
            m.standby_takeovers.clone(),
        );
        Arc::new(m)
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
