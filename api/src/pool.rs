//! `AddressPool`: where addresses come from and how they are announced.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::{Condition, conditions_schema};
use crate::selector::LabelSelector;

/// Priority of a pool that does not set one; lower wins.
pub const DEFAULT_PRIORITY: i32 = 100;

/// A set of addresses barelb may hand to LoadBalancer Services, and how the
/// nodes make the network deliver traffic for them.
///
/// Defaults (applied when the operator reads the spec, never written back, so
/// GitOps diffs stay clean): `autoAssign: true`, `avoidBuggyIPs: false`,
/// `priority: 100`, `allowCrossNamespaceSharing: false`.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "barelb.io",
    version = "v1alpha1",
    kind = "AddressPool",
    status = "AddressPoolStatus",
    shortname = "pool",
    shortname = "pools",
    category = "barelb",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.announce.mode"}"#,
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses"}"#,
    printcolumn = r#"{"name":"Allocated","type":"string","description":"allocated/total per family","jsonPath":".status.usage"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AddressPoolSpec {
    /// CIDRs (`10.0.10.0/24`, `2001:db8:1::/64`) or inclusive ranges
    /// (`10.0.10.10-10.0.10.50`). IPv4 and IPv6 may be mixed.
    #[schemars(length(min = 1, max = 64), inner(length(max = 100)))]
    #[x_kube(
        validation = Rule::new("self.all(a, isCIDR(a) || (a.split('-').size() == 2 && isIP(a.split('-')[0]) && isIP(a.split('-')[1])))")
            .message("every entry must be a CIDR such as 10.0.10.0/24 or a range such as 10.0.10.10-10.0.10.50"),
        validation = Rule::new("self.all(a, !isCIDR(a) || cidr(a).ip() == cidr(a).masked().ip())")
            .message("a CIDR must not have host bits set: write the network address, e.g. 10.0.10.0/24 rather than 10.0.10.5/24"),
        validation = Rule::new("self.all(a, isCIDR(a) || a.split('-').size() != 2 || !isIP(a.split('-')[0]) || !isIP(a.split('-')[1]) || ip(a.split('-')[0]).family() == ip(a.split('-')[1]).family())")
            .message("a range must start and end in the same IP family"),
        validation = Rule::new("self.all(a, isCIDR(a) || a.split('-').size() != 2 || !isIP(a.split('-')[0]) || !isIP(a.split('-')[1]) || ip(a.split('-')[0]).family() != 4 || ip(a.split('-')[1]).family() != 4 || ((int(a.split('-')[0].split('.')[0]) * 256 + int(a.split('-')[0].split('.')[1])) * 256 + int(a.split('-')[0].split('.')[2])) * 256 + int(a.split('-')[0].split('.')[3]) <= ((int(a.split('-')[1].split('.')[0]) * 256 + int(a.split('-')[1].split('.')[1])) * 256 + int(a.split('-')[1].split('.')[2])) * 256 + int(a.split('-')[1].split('.')[3]))")
            .message("a range must not start after it ends: write the lower address first, e.g. 10.0.10.10-10.0.10.50"),
    )]
    pub addresses: Vec<String>,

    /// If false, only Services that name this pool or one of its addresses get
    /// addresses from it. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_assign: Option<bool>,

    /// Never hand out IPv4 addresses ending in .0 or .255. Default false.
    #[serde(
        default,
        rename = "avoidBuggyIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub avoid_buggy_ips: Option<bool>,

    /// Order among auto-assign pools a Service may use; lower wins, ties by
    /// name. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub priority: Option<i32>,

    /// Let Services in different namespaces share an address (same sharing
    /// key). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_cross_namespace_sharing: Option<bool>,

    /// How the addresses are announced.
    pub announce: Announce,
}

/// How a pool's addresses reach the network.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.mode == 'L2' || !has(self.l2)").message("announce.l2 is only allowed with mode L2"),
    validation = Rule::new("self.mode == 'BGP' || !has(self.bgp)").message("announce.bgp is only allowed with mode BGP"),
)]
pub struct Announce {
    /// `L2` (one node answers ARP/NDP for each address) or `BGP` (nodes
    /// advertise routes to their peers).
    pub mode: AnnounceMode,
    /// Layer-2 settings; only with mode L2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<L2Announce>,
    /// BGP settings; only with mode BGP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<BgpAnnounce>,
}

/// Announcement mode of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AnnounceMode {
    L2,
    #[serde(rename = "BGP")]
    Bgp,
}

/// Layer-2 announcement settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct L2Announce {
    /// Interfaces to answer on. Unset: the interface whose subnet holds the
    /// address, else the default-route interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 15), regex(pattern = r"^[^/\s:]+$"))
    )]
    pub interfaces: Option<Vec<String>>,
    /// Nodes that may announce. Unset: every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
}

/// BGP announcement settings.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpAnnounce {
    /// BGPPeers (by label) that nodes advertise this pool to. Unset: all peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<LabelSelector>,
    /// Nodes that may advertise. Unset: every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// Standard communities, `ASN:VALUE` (each 0-65535) or a well-known name
    /// (`no-export`, `no-advertise`, `no-export-subconfed`, `no-peer`, `blackhole`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        inner(
            length(max = 19),
            regex(
                pattern = r"^([0-9]{1,5}:[0-9]{1,5}|no-export|no-advertise|no-export-subconfed|no-peer|blackhole)$"
            )
        )
    )]
    #[x_kube(validation = Rule::new("self.all(c, !c.matches('^[0-9]+:[0-9]+$') || (int(c.split(':')[0]) <= 65535 && int(c.split(':')[1]) <= 65535))")
        .message("each part of a community must be 0-65535, e.g. 64500:100"))]
    pub communities: Option<Vec<String>>,
    /// Large communities, `GLOBAL:LOCAL1:LOCAL2` (each 0-4294967295).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        inner(
            length(max = 32),
            regex(pattern = r"^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$")
        )
    )]
    #[x_kube(validation = Rule::new("self.all(c, int(c.split(':')[0]) <= 4294967295 && int(c.split(':')[1]) <= 4294967295 && int(c.split(':')[2]) <= 4294967295)")
        .message("each part of a large community must be 0-4294967295, e.g. 64500:1:2"))]
    pub large_communities: Option<Vec<String>>,
    /// LOCAL_PREF sent on iBGP sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Advertise IPv4 addresses aggregated to this prefix length (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub aggregation_length: Option<u8>,
    /// Advertise IPv6 addresses aggregated to this prefix length (default 128).
    #[serde(
        default,
        rename = "aggregationLengthV6",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 128))]
    pub aggregation_length_v6: Option<u8>,
}

/// Capacity of one address family in a pool. Counts are strings: an IPv6 /64
/// holds 2^64 addresses, more than a JSON integer carries safely.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FamilyCapacity {
    /// Addresses the pool can hand out (after `avoidBuggyIPs`).
    pub total: String,
    /// Addresses currently allocated to Services.
    pub allocated: String,
}

/// Observed state of an AddressPool, written only by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressPoolStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// IPv4 capacity, if the pool has IPv4 addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<FamilyCapacity>,
    /// IPv6 capacity, if the pool has IPv6 addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<FamilyCapacity>,
    /// `allocated/total` per family, for display, e.g. `3/254` or `3/254 0/2^64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    /// `Ready`: True when the pool is in force; False on a terminal problem
    /// such as an overlap with another pool (named in the message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

impl AddressPoolSpec {
    /// `autoAssign` with its default applied.
    pub fn auto_assign(&self) -> bool {
        self.auto_assign.unwrap_or(true)
    }
    /// `avoidBuggyIPs` with its default applied.
    pub fn avoid_buggy_ips(&self) -> bool {
        self.avoid_buggy_ips.unwrap_or(false)
    }
    /// `priority` with its default applied.
    pub fn priority(&self) -> i32 {
        self.priority.unwrap_or(DEFAULT_PRIORITY)
    }
    /// `allowCrossNamespaceSharing` with its default applied.
    pub fn allow_cross_namespace_sharing(&self) -> bool {
        self.allow_cross_namespace_sharing.unwrap_or(false)
    }
}
