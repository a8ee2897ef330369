//! What a session advertises, as plain data: the desired table (prefix →
//! attributes the pool asked for) and, per session, the Adj-RIB-Out — what
//! the peer was last told. [`AdjRibOut::sync`] turns the difference into
//! UPDATE messages, grouping prefixes that share attributes and packing
//! each UPDATE up to the 4096-byte limit, so 10,000 /32s are ~15 messages.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::codec::{self, Attributes, Message, Update};

/// Per-prefix attributes chosen by the pool (RFC 1997, RFC 8092, RFC 4271).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttrs {
    pub communities: Vec<u32>,
    pub large_communities: Vec<(u32, u32, u32)>,
    /// Sent on iBGP sessions only (LOCAL_PREF is not sent to external peers).
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
}

/// The prefixes a speaker wants advertised.
pub type Table = BTreeMap<IpNet, RouteAttrs>;

/// Facts about one established session that shape its UPDATEs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    pub my_asn: u32,
    /// Peer AS equals ours.
    pub ibgp: bool,
    /// Next hop for IPv4 prefixes; IPv4 is not advertised without one.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 prefixes; IPv6 is not advertised without one.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// The peer negotiated IPv4 unicast.
    pub ipv4: bool,
    /// The peer negotiated IPv6 unicast (multiprotocol).
    pub ipv6: bool,
}

impl SessionView {
    /// Whether `net` may be advertised on this session.
    pub fn carries(&self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(_) => self.ipv4 && self.next_hop_v4.is_some(),
            IpNet::V6(_) => self.ipv6 && self.next_hop_v6.is_some(),
        }
    }

    fn attributes(&self, a: &RouteAttrs, v6: bool) -> Attributes {
        Attributes {
            origin: Some(0),
            // eBGP: prepend our AS; iBGP: the path is empty (RFC 4271 §5.1.2).
            as_path: if self.ibgp {
                Vec::new()
            } else {
                vec![self.my_asn]
            },
            next_hop: if v6 { None } else { self.next_hop_v4 },
            med: a.med,
            local_pref: if self.ibgp {
                Some(a.local_pref.unwrap_or(DEFAULT_LOCAL_PREF))
            } else {
                None
            },
            communities: a.communities.clone(),
            large_communities: a.large_communities.clone(),
            mp_next_hop: if v6 {
                self.next_hop_v6.map(|g| (g, None))
            } else {
                None
            },
        }
    }
}

/// LOCAL_PREF on iBGP when the pool sets none (the common default).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// Bytes a prefix takes in NLRI or withdrawn routes.
fn prefix_bytes(net: &IpNet) -> usize {
    1 + usize::from(net.prefix_len()).div_ceil(8)
}

/// Room for growth of attribute headers (e.g. MP_REACH switching to the
/// extended length form) that [`codec::encode`] of the empty UPDATE did
/// not count.
const SLACK: usize = 8;

/// What one session has told its peer.
#[derive(Clone, Debug, Default)]
pub struct AdjRibOut {
    sent: BTreeMap<IpNet, RouteAttrs>,
}

impl AdjRibOut {
    /// Forgets everything (the session went down; the peer dropped our routes).
    pub fn clear(&mut self) {
        self.sent.clear();
    }

    /// Prefixes currently advertised, per family (v4, v6).
    pub fn counts(&self) -> (usize, usize) {
        let v4 = self
            .sent
            .keys()
            .filter(|n| matches!(n, IpNet::V4(_)))
            .count();
        (v4, self.sent.len() - v4)
    }

    /// The UPDATEs that bring the peer from what it was told to `desired`;
    /// records them as sent.
    pub fn sync(&mut self, desired: &Table, view: &SessionView) -> Vec<Message> {
        let mut withdraw: Vec<IpNet> = Vec::new();
        for net in self.sent.keys() {
            if !desired.contains_key(net) || !view.carries(net) {
                withdraw.push(*net);
            }
        }
        // Group changed prefixes by (family, attributes): one group, one
        // set of UPDATEs.
        let mut groups: BTreeMap<(bool, &RouteAttrs), Vec<IpNet>> = BTreeMap::new();
        for (net, attrs) in desired {
            if view.carries(net) && self.sent.get(net) != Some(attrs) {
                groups
                    .entry((matches!(net, IpNet::V6(_)), attrs))
                    .or_default()
                    .push(*net);
            }
        }
        let mut out = Vec::new();
        for net in &withdraw {
            self.sent.remove(net);
        }
        pack(
            &mut out,
            &withdraw,
            Attributes::default(),
            Placement::Withdrawn,
        );
        for ((v6, attrs), nets) in groups {
            pack(
                &mut out,
                &nets,
                view.attributes(attrs, v6),
                Placement::Announced,
            );
            for net in nets {
                self.sent.insert(net, attrs.clone());
            }
        }
        out
    }
}

/// The End-of-RIB markers (RFC 4724 §2) for the families a session carries.
pub fn end_of_rib(view: &SessionView) -> Vec<Message> {
    let mut out = Vec::new();
    if view.ipv4 {
        out.push(Message::Update(Update::default()));
    }
    if view.ipv6 {
        // An MP_UNREACH for IPv6 unicast with no prefixes.
        out.push(Message::Update(Update {
            end_of_rib_v6: true,
            ..Update::default()
        }));
    }
    out
}

enum Placement {
    Withdrawn,
    Announced,
}

/// Splits `nets` over as few UPDATEs as fit in [`codec::MAX_LEN`]; v4 and
/// v6 are packed separately (v6 travels inside MP attributes).
fn pack(out: &mut Vec<Message>, nets: &[IpNet], attrs: Attributes, place: Placement) {
    for v6 in [false, true] {
        let family: Vec<IpNet> = nets
            .iter()
            .filter(|n| matches!(n, IpNet::V6(_)) == v6)
            .copied()
            .collect();
        if family.is_empty() {
            continue;
        }
        let empty = Message::Update(Update {
            attributes: attrs.clone(),
            ..Update::default()
        });
        // The MP attribute's own header (afi, safi, next hop) appears only
        // once there is a v6 prefix; count it with a single-prefix message.
        let base = codec::encode(&empty).len() + if v6 { 24 + 16 } else { 0 } + SLACK;
        let mut batch: Vec<IpNet> = Vec::new();
        let mut size = base;
        for net in family {
            let n = prefix_bytes(&net);
            if size + n > codec::MAX_LEN && !batch.is_empty() {
                out.push(message(std::mem::take(&mut batch), &attrs, &place));
                size = base;
            }
            size += n;
            batch.push(net);
        }
        if !batch.is_empty() {
            out.push(message(batch, &attrs, &place));
        }
    }
}

fn message(nets: Vec<IpNet>, attrs: &Attributes, place: &Placement) -> Message {
    Message::Update(match place {
        Placement::Withdrawn => Update {
            withdrawn: nets,
            ..Update::default()
        },
        Placement::Announced => Update {
            attributes: attrs.clone(),
            announced: nets,
            ..Update::default()
        },
    })
}

/// A host route for `ip` (/32 or /128), or its covering prefix of
/// `aggregate` bits when the pool aggregates.
pub fn prefix_for(ip: IpAddr, aggregate: Option<u8>) -> Option<IpNet> {
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = aggregate.unwrap_or(max);
    IpNet::new(ip, len).ok().map(|n| n.trunc())
}

/// The GRACEFUL_SHUTDOWN community (RFC 8326 §6).
pub const GRACEFUL_SHUTDOWN: u32 = 0xFFFF_0000;

/// The table a speaker that is about to stop advertises (RFC 8326): every
/// route marked GRACEFUL_SHUTDOWN, and LOCAL_PREF 0 where it is sent
/// (iBGP), so routers that honour it move traffic to other paths before
/// this one is withdrawn.
pub fn graceful_shutdown(table: &Table) -> Table {
    table
        .iter()
        .map(|(net, attrs)| {
            let mut a = attrs.clone();
            if !a.communities.contains(&GRACEFUL_SHUTDOWN) {
                a.communities.push(GRACEFUL_SHUTDOWN);
            }
            a.local_pref = Some(0);
            (*net, a)
        })
        .collect()
}

#[cfg(test)]
mod tests;
