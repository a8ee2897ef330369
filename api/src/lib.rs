//! barelb's API: the cluster-scoped custom resources of group `barelb.io/v1alpha1`
//! (`AddressPool`, `LoadBalancerPolicy`, `BGPPeer`), the Service annotations and
//! condition types barelb reads and writes, and the load-balancer class it serves.
//!
//! Types and names only: no business logic lives here.

pub mod condition;
pub mod crd;
pub mod peer;
pub mod policy;
pub mod pool;

/// The names barelb shares with users, and the label selector type, live in
/// barelb-core (the decisions read them too); re-exported so the API reads
/// as one crate.
pub use barelb_core::names::*;
pub use barelb_core::selector;

pub use condition::Condition;
pub use peer::{
    BGPPeer, BGPPeerSpec, BGPPeerStatus, BfdSpec, DEFAULT_BFD_INTERVAL_MS, DEFAULT_BFD_MULTIPLIER,
};
pub use policy::{
    LoadBalancerPolicy, LoadBalancerPolicySpec, LoadBalancerPolicyStatus, PolicyAction, PolicyRule,
};
pub use pool::{AddressPool, AddressPoolSpec, AddressPoolStatus, AnnounceMode};
pub use selector::LabelSelector;
