//! Names that Services, pools and users share with barelb.

/// API group of every barelb resource.
pub const GROUP: &str = "barelb.io";
/// API version of every barelb resource.
pub const VERSION: &str = "v1alpha1";

/// `spec.loadBalancerClass` that selects barelb. Class-less Services are handled
/// too unless the operator runs with `--handle-classless=false`.
pub const LOAD_BALANCER_CLASS: &str = "barelb.io/lb";

/// The finalizer a load balancer keeps on each Service it serves, so the
/// Service is gone only once its address is released (Kubernetes' own name,
/// the one cloud providers' load balancers use and its e2e suite checks).
pub const CLEANUP_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";

/// kubectl's copy of the last object it applied: an annotation as large as
/// the object, never read by barelb nor shown to policies.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Service annotations a user writes to shape the request.
pub mod annotations {
    /// Take the address from this AddressPool.
    pub const POOL: &str = "barelb.io/pool";
    /// Explicit addresses, at most one per family: `IP[,IP]`.
    pub const IPS: &str = "barelb.io/ips";
    /// Services with the same key may share an address.
    pub const SHARING_KEY: &str = "barelb.io/sharing-key";
    /// On an AddressPool: allow an edit that leaves allocated addresses outside it.
    pub const ALLOW_ORPHAN: &str = "barelb.io/allow-orphan";
}

/// Condition types barelb writes.
pub mod conditions {
    /// Service: whether its addresses are allocated (and from where, or why not).
    pub const ALLOCATED: &str = "barelb.io/Allocated";
    /// Service: which node(s) announce its addresses, and how.
    pub const ANNOUNCED: &str = "barelb.io/Announced";
    /// barelb resources: whether the object is in force.
    pub const READY: &str = "Ready";
}

/// Node label that takes a node out of every announcement.
pub const EXCLUDE_FROM_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
