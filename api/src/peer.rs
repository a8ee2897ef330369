//! `BGPPeer`: a router that nodes peer with.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::{Condition, conditions_schema};
use crate::selector::LabelSelector;

/// Default TCP port of a BGP peer.
pub const DEFAULT_PEER_PORT: u16 = 179;
/// Default hold time, in seconds (RFC 4271's suggestion).
pub const DEFAULT_HOLD_TIME_SECS: u64 = 90;

/// Go-style duration as the apiserver's CEL `duration()` reads it.
const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$";

/// A BGP router that selected nodes open sessions with. Its labels are what
/// an AddressPool's `announce.bgp.peerSelector` matches.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "barelb.io",
    version = "v1alpha1",
    kind = "BGPPeer",
    status = "BGPPeerStatus",
    shortname = "bgppeer",
    shortname = "peer",
    category = "barelb",
    printcolumn = r#"{"name":"Peer","type":"string","jsonPath":".spec.peerAddress"}"#,
    printcolumn = r#"{"name":"Peer ASN","type":"integer","jsonPath":".spec.peerASN"}"#,
    printcolumn = r#"{"name":"My ASN","type":"integer","jsonPath":".spec.myASN"}"#,
    printcolumn = r#"{"name":"Established","type":"string","description":"nodes established/selected","jsonPath":".status.established"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("!has(self.sourceAddress) || !isIP(self.sourceAddress) || !isIP(self.peerAddress) || ip(self.sourceAddress).family() == ip(self.peerAddress).family()")
        .message("sourceAddress must be in the same IP family as peerAddress")
        .field_path(".sourceAddress"),
    validation = Rule::new("!has(self.keepaliveTime) || (has(self.holdTime) && duration(self.holdTime) == duration('0s')) || duration(self.keepaliveTime) < (has(self.holdTime) ? duration(self.holdTime) : duration('90s'))")
        .message("keepaliveTime must be shorter than holdTime (default 90s)")
        .field_path(".keepaliveTime"),
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// The router's address.
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("peerAddress must be an IPv4 or IPv6 address"))]
    pub peer_address: String,
    /// The router's AS number, 1-4294967295.
    #[serde(rename = "peerASN")]
    #[schemars(range(min = 1, max = 4_294_967_295_u32))]
    pub peer_asn: u32,
    /// The AS number nodes use towards this router, 1-4294967295.
    #[serde(rename = "myASN")]
    #[schemars(range(min = 1, max = 4_294_967_295_u32))]
    pub my_asn: u32,
    /// The router's TCP port. Default 179.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub peer_port: Option<u16>,
    /// Local address to connect from. Unset: chosen by the node's routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("sourceAddress must be an IPv4 or IPv6 address"))]
    pub source_address: Option<String>,
    /// Hold time: `0s` (no keepalives) or at least `3s`, at most `65535s`. Default 90s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) == duration('0s') || (duration(self) >= duration('3s') && duration(self) <= duration('65535s'))")
        .message("holdTime must be 0s or between 3s and 65535s (RFC 4271), e.g. 90s"))]
    pub hold_time: Option<String>,
    /// Keepalive interval. Default: a third of the hold time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("keepaliveTime must be at least 1s"))]
    pub keepalive_time: Option<String>,
    /// Wait between connection attempts. Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('100ms') && duration(self) <= duration('1h')")
        .message("connectRetryTime must be between 100ms and 1h"))]
    pub connect_retry_time: Option<String>,
    /// IP TTL for an eBGP peer more than one hop away (1-255). Unset: 1 (directly connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 255))]
    pub ebgp_multi_hop: Option<u8>,
    /// TCP-MD5 password, from a Secret in the operator's namespace. There is
    /// deliberately no plaintext password field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Advertise the graceful-restart capability (RFC 4724). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<bool>,
    /// Nodes that peer with this router. Unset: every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// BFD (RFC 5880) with this router: a silent node's routes leave it
    /// within minRx × multiplier (0.9 s by default) instead of the hold
    /// time. Single hop, or multihop (RFC 5883) with `ebgpMultiHop` > 1.
    /// Unset: no BFD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdSpec>,
}

/// Default BFD intervals, in milliseconds, and detection multiplier.
pub const DEFAULT_BFD_INTERVAL_MS: u64 = 300;
pub const DEFAULT_BFD_MULTIPLIER: u8 = 3;

/// BFD timers (asynchronous mode; no echo, no demand mode).
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BfdSpec {
    /// Shortest interval between the router's packets this node accepts
    /// (RFC 5880 Required Min RX Interval). Default 300ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10ms') && duration(self) <= duration('60s')")
        .message("bfd.minRx must be between 10ms and 60s, e.g. 300ms"))]
    pub min_rx: Option<String>,
    /// Shortest interval at which this node sends (Desired Min TX
    /// Interval; the router may ask for slower). Default 300ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10ms') && duration(self) <= duration('60s')")
        .message("bfd.minTx must be between 10ms and 60s, e.g. 300ms"))]
    pub min_tx: Option<String>,
    /// Packets missed before the session is declared down, 1-255. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 255))]
    pub multiplier: Option<u8>,
    /// The echo function is not offered: false or unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self").message("bfd.echo is not supported; leave it out or set it to false"))]
    pub echo: Option<bool>,
}

/// A key in a Secret in the operator's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Observed state of a BGPPeer, written only by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Nodes selected to peer with this router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_nodes: Option<i32>,
    /// Selected nodes whose session is Established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_nodes: Option<i32>,
    /// `established/selected`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established: Option<String>,
    /// `Ready`: True when the peer's settings are in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

impl BGPPeerSpec {
    /// `peerPort` with its default applied.
    pub fn peer_port(&self) -> u16 {
        self.peer_port.unwrap_or(DEFAULT_PEER_PORT)
    }
}
