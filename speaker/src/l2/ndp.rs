//! IPv6 Neighbor Discovery (RFC 4861): parsing Neighbor Solicitations and
//! Advertisements, and building solicited and unsolicited Advertisements.
//! Bounds-checked throughout; checksums are verified on input.

use std::net::Ipv6Addr;

use super::{ETHERTYPE_IPV6, EthernetHeader, Frame, FrameError, Mac};

const IPV6_HEADER: usize = 40;
const NEXT_HEADER_ICMPV6: u8 = 58;
const TYPE_NS: u8 = 135;
const TYPE_NA: u8 = 136;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// NA flags (first byte after the checksum).
pub const FLAG_ROUTER: u8 = 0x80;
pub const FLAG_SOLICITED: u8 = 0x40;
pub const FLAG_OVERRIDE: u8 = 0x20;

/// All-nodes multicast, where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A Neighbor Solicitation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Solicit {
    pub eth_src: Mac,
    pub src: Ipv6Addr,
    pub target: Ipv6Addr,
    /// The source link-layer address option, if present.
    pub source_mac: Option<Mac>,
}

/// A Neighbor Advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub eth_src: Mac,
    pub target: Ipv6Addr,
    pub flags: u8,
    pub target_mac: Option<Mac>,
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// Parses the IPv6 part of a frame; only ND messages with hop limit 255 and
/// a correct checksum are returned as such.
pub(super) fn parse(eth: EthernetHeader, body: &[u8]) -> Result<Frame, FrameError> {
    let ip = body.get(..IPV6_HEADER).ok_or(FrameError::Truncated {
        need: IPV6_HEADER,
        have: body.len(),
    })?;
    if ip[0] >> 4 != 6 {
        return Err(FrameError::Unsupported("not IPv6"));
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if ip[6] != NEXT_HEADER_ICMPV6 {
        return Ok(Frame::Other);
    }
    let src = addr(&ip[8..24]);
    let dst = addr(&ip[24..40]);
    let need = IPV6_HEADER + payload_len;
    let icmp = body.get(IPV6_HEADER..need).ok_or(FrameError::Truncated {
        need,
        have: body.len(),
    })?;
    match icmp.first() {
        None => {
            return Err(FrameError::Truncated {
                need: IPV6_HEADER + 1,
                have: body.len(),
            });
        }
        Some(&t) if t != TYPE_NS && t != TYPE_NA => return Ok(Frame::Other),
        Some(_) => {}
    }
    if icmp.len() < 24 {
        return Err(FrameError::Truncated {
            need: IPV6_HEADER + 24,
            have: body.len(),
        });
    }
    // RFC 4861 7.1: hop limit 255 and code 0, or the message is dropped.
    if ip[7] != 255 || icmp[1] != 0 {
        return Err(FrameError::Unsupported(
            "ND message with hop limit below 255 or non-zero code",
        ));
    }
    if checksum(&src, &dst, icmp) != 0 {
        return Err(FrameError::Checksum);
    }
    let target = addr(&icmp[8..24]);
    let ll_option = |kind: u8| -> Option<Mac> {
        let mut opts = &icmp[24..];
        while opts.len() >= 8 {
            let len = usize::from(opts[1]) * 8;
            if len == 0 || len > opts.len() {
                return None;
            }
            if opts[0] == kind {
                let mut m = [0u8; 6];
                m.copy_from_slice(&opts[2..8]);
                return Some(Mac(m));
            }
            opts = &opts[len..];
        }
        None
    };
    if icmp[0] == TYPE_NS {
        Ok(Frame::NeighborSolicit(Solicit {
            eth_src: eth.src,
            src,
            target,
            source_mac: ll_option(OPT_SOURCE_LL),
        }))
    } else {
        Ok(Frame::NeighborAdvert(Advert {
            eth_src: eth.src,
            target,
            flags: icmp[4],
            target_mac: ll_option(OPT_TARGET_LL),
        }))
    }
}

/// The one's-complement ICMPv6 checksum over the pseudo-header and `msg`;
/// 0 when `msg` carries a correct checksum.
fn checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for pair in b.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame with a Neighbor Advertisement for `target` at `mac`.
pub fn advert(
    eth_dst: Mac,
    mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    flags: u8,
) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[TYPE_NA, 0, 0, 0, flags, 0, 0, 0]);
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[OPT_TARGET_LL, 1]);
    icmp.extend_from_slice(&mac.0);
    icmp_frame(eth_dst, mac, src, dst, icmp)
}

/// An Ethernet frame with the ICMPv6 message `icmp` (checksum filled in
/// here), hop limit 255 as neighbour discovery requires.
fn icmp_frame(eth_dst: Mac, mac: Mac, src: Ipv6Addr, dst: Ipv6Addr, mut icmp: Vec<u8>) -> Vec<u8> {
    let sum = checksum(&src, &dst, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut out = Vec::with_capacity(14 + IPV6_HEADER + icmp.len());
    EthernetHeader {
        dst: eth_dst,
        src: mac,
        ethertype: ETHERTYPE_IPV6,
    }
    .write(&mut out);
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&u16::try_from(icmp.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&[NEXT_HEADER_ICMPV6, 255]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&icmp);
    out
}

/// A Neighbor Solicitation for `target` from the unspecified address, as
/// duplicate address detection sends one (RFC 4862), to the target's
/// solicited-node group: a standby's probe. No cache learns from it; an
/// owner answers with an advertisement to all nodes (`answer`).
pub fn probe(target: Ipv6Addr, mac: Mac) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
    ]);
    let mut icmp = Vec::with_capacity(24);
    icmp.extend_from_slice(&[TYPE_NS, 0, 0, 0, 0, 0, 0, 0]);
    icmp.extend_from_slice(&t);
    icmp_frame(
        Mac([0x33, 0x33, 0xff, t[13], t[14], t[15]]),
        mac,
        Ipv6Addr::UNSPECIFIED,
        group,
        icmp,
    )
}

/// The answer to `ns` for an address this node owns: solicited and
/// override, unicast back; to all nodes, unsolicited, when the solicitation
/// came from the unspecified address (duplicate address detection).
pub fn answer(ns: &Solicit, mac: Mac) -> Vec<u8> {
    if ns.src.is_unspecified() {
        return unsolicited(ns.target, mac);
    }
    let eth_dst = ns.source_mac.unwrap_or(ns.eth_src);
    advert(
        eth_dst,
        mac,
        ns.target,
        ns.src,
        ns.target,
        FLAG_SOLICITED | FLAG_OVERRIDE,
    )
}

/// An unsolicited advertisement (Override set, Solicited clear, hop limit
/// 255, to ff02::1): how a new owner tells every neighbour at once.
pub fn unsolicited(target: Ipv6Addr, mac: Mac) -> Vec<u8> {
    advert(
        Mac([0x33, 0x33, 0, 0, 0, 1]),
        mac,
        target,
        ALL_NODES,
        target,
        FLAG_OVERRIDE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solicitation(src: Ipv6Addr, target: Ipv6Addr, from: Mac) -> Vec<u8> {
        // Built the way ndisc6 sends one: to the solicited-node group, with a
        // source link-layer option, hop limit 255, correct checksum.
        let t = target.octets();
        let group = Ipv6Addr::from([
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
        ]);
        let mut icmp = vec![TYPE_NS, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&t);
        icmp.extend_from_slice(&[OPT_SOURCE_LL, 1]);
        icmp.extend_from_slice(&from.0);
        let sum = checksum(&src, &group, &icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut f = Vec::new();
        EthernetHeader {
            dst: Mac([0x33, 0x33, 0xff, t[13], t[14], t[15]]),
            src: from,
            ethertype: ETHERTYPE_IPV6,
        }
        .write(&mut f);
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, icmp.len() as u8, NEXT_HEADER_ICMPV6, 255]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&group.octets());
        f.extend_from_slice(&icmp);
        f
    }

    const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 0x100);
    const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 0x0c);
    const CLIENT_MAC: Mac = Mac([2, 0x42, 0xb1, 0, 0, 0x0c]);
    const ME: Mac = Mac([2, 0x42, 0xb1, 0, 0, 0x0a]);

    /// Captured on a lab veth: `ndisc6 -1 -r1 2001:db8:18::100 ca` (ndisc6
    /// 1.0.5) from 02:42:b1:00:00:0c, sourced from its link-local address.
    const CAPTURED_NDISC6: &str = "3333ff0001000242b100000c86dd600d880100203afffe800000000000000042b1fffe00000cff0200000000000000000001ff0001008700e7af0000000020010db800180000000000000000010001010242b100000c";

    #[test]
    fn parses_a_captured_ndisc6_solicitation_and_answers_it() {
        let bytes: Vec<u8> = (0..CAPTURED_NDISC6.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&CAPTURED_NDISC6[i..i + 2], 16).unwrap())
            .collect();
        let Ok(Frame::NeighborSolicit(ns)) = Frame::parse(&bytes) else {
            panic!("not NS")
        };
        let link_local: Ipv6Addr = "fe80::42:b1ff:fe00:c".parse().unwrap();
        assert_eq!(
            (ns.src, ns.target, ns.source_mac),
            (link_local, VIP, Some(CLIENT_MAC))
        );
        let na = answer(&ns, ME);
        let Ok(Frame::NeighborAdvert(adv)) = Frame::parse(&na) else {
            panic!("answer is not a valid NA")
        };
        assert_eq!(&na[..6], &CLIENT_MAC.0);
        assert_eq!(
            &na[14 + 24..14 + 40],
            &link_local.octets(),
            "unicast back to the asker"
        );
        assert_eq!(
            (adv.target, adv.flags, adv.target_mac),
            (VIP, FLAG_SOLICITED | FLAG_OVERRIDE, Some(ME))
        );
    }

    #[test]
    fn parses_a_solicitation() {
        let f = solicitation(CLIENT, VIP, CLIENT_MAC);
        let Ok(Frame::NeighborSolicit(ns)) = Frame::parse(&f) else {
            panic!("not NS")
        };
        assert_eq!(
            (ns.src, ns.target, ns.source_mac),
            (CLIENT, VIP, Some(CLIENT_MAC))
        );
    }

    #[test]
    fn answer_is_a_valid_solicited_override_advert() {
        let Ok(Frame::NeighborSolicit(ns)) = Frame::parse(&solicitation(CLIENT, VIP, CLIENT_MAC))
        else {
            panic!()
        };
        let na = answer(&ns, ME);
        assert_eq!(&na[..6], &CLIENT_MAC.0);
        assert_eq!(na[14 + 7], 255, "hop limit");
        let Ok(Frame::NeighborAdvert(adv)) = Frame::parse(&na) else {
            panic!("not NA: {na:?}")
        };
        assert_eq!(adv.target, VIP);
        assert_eq!(adv.flags, FLAG_SOLICITED | FLAG_OVERRIDE);
        assert_eq!(adv.target_mac, Some(ME));
    }

    #[test]
    fn unsolicited_goes_to_all_nodes_with_override_only() {
        let na = unsolicited(VIP, ME);
        assert_eq!(&na[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&na[14 + 24..14 + 40], &ALL_NODES.octets());
        let Ok(Frame::NeighborAdvert(adv)) = Frame::parse(&na) else {
            panic!()
        };
        assert_eq!(adv.flags, FLAG_OVERRIDE);
    }

    #[test]
    fn damaged_solicitations_are_errors() {
        let good = solicitation(CLIENT, VIP, CLIENT_MAC);
        for n in 0..good.len() {
            assert!(
                !matches!(Frame::parse(&good[..n]), Ok(Frame::NeighborSolicit(_))),
                "{n} bytes accepted"
            );
        }
        let mut bad_sum = good.clone();
        *bad_sum.last_mut().unwrap() ^= 1;
        assert_eq!(Frame::parse(&bad_sum), Err(FrameError::Checksum));
        let mut low_hop = good.clone();
        low_hop[14 + 7] = 64;
        assert!(Frame::parse(&low_hop).is_err());
        let mut zero_opt = good;
        let n = zero_opt.len();
        zero_opt[n - 7] = 0; // option length 0 must not loop forever
        assert!(
            Frame::parse(&zero_opt).is_err(),
            "checksum now wrong, still no hang"
        );
    }

    #[test]
    fn a_probe_is_a_solicitation_from_nowhere_answered_to_all_nodes() {
        let me = Mac([2, 0, 0, 0, 0, 1]);
        let target: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let f = probe(target, me);
        let Ok(Frame::NeighborSolicit(ns)) = Frame::parse(&f) else {
            panic!("not a solicitation: {:?}", Frame::parse(&f))
        };
        assert!(ns.src.is_unspecified());
        assert_eq!((ns.target, ns.eth_src, ns.source_mac), (target, me, None));
        let owner = Mac([2, 0, 0, 0, 0, 2]);
        let Ok(Frame::NeighborAdvert(na)) = Frame::parse(&answer(&ns, owner)) else {
            panic!("not an advertisement")
        };
        assert_eq!((na.target, na.eth_src), (target, owner));
    }
}
