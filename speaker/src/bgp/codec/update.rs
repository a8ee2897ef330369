//! UPDATE (RFC 4271 §4.3): withdrawn IPv4 routes, path attributes, IPv4
//! NLRI; IPv6 through MP_REACH/MP_UNREACH (RFC 4760). AS_PATH is read and
//! written with 4-octet AS numbers (both sides negotiated RFC 6793).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::reader::Reader;
use super::{DecodeError, Handling, UpdateError};

const OPTIONAL: u8 = 0x80;
const TRANSITIVE: u8 = 0x40;
const EXTENDED: u8 = 0x10;

mod code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MED: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const COMMUNITIES: u8 = 8;
    pub const MP_REACH: u8 = 14;
    pub const MP_UNREACH: u8 = 15;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// AS_PATH segment types.
const AS_SET: u8 = 1;
const AS_SEQUENCE: u8 = 2;

/// The attributes barelb sends and reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// 0 IGP, 1 EGP, 2 INCOMPLETE.
    pub origin: Option<u8>,
    /// AS_SEQUENCE segments flattened; AS_SET members are kept in order.
    pub as_path: Vec<u32>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<(u32, u32, u32)>,
    /// IPv6 next hop of MP_REACH (global, and link-local if sent).
    pub mp_next_hop: Option<(Ipv6Addr, Option<Ipv6Addr>)>,
}

/// An UPDATE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<IpNet>,
    pub attributes: Attributes,
    pub announced: Vec<IpNet>,
    /// An MP_UNREACH for IPv6 unicast with no prefixes: the IPv6
    /// End-of-RIB marker (RFC 4724 §2) when nothing else is in the UPDATE.
    pub end_of_rib_v6: bool,
}

/// An error after which the message's NLRI cannot be located or trusted:
/// NOTIFICATION and reconnect.
fn reset(error: UpdateError, what: &'static str) -> DecodeError {
    DecodeError::Update {
        error,
        what,
        handling: Handling::SessionReset,
    }
}

/// An attribute error that leaves the NLRI locatable: treat-as-withdraw
/// (RFC 7606 §2).
fn withdraw(error: UpdateError, what: &'static str) -> DecodeError {
    DecodeError::Update {
        error,
        what,
        handling: Handling::TreatAsWithdraw,
    }
}

/// Reads prefixes in the (length, bytes) encoding of `family` (4 or 6).
fn prefixes(mut r: Reader<'_>, family: u8) -> Result<Vec<IpNet>, DecodeError> {
    let mut out = Vec::new();
    let max = if family == 4 { 32 } else { 128 };
    while r.remaining() > 0 {
        let len = r.u8()?;
        if len > max {
            return Err(reset(
                UpdateError::InvalidNetworkField,
                "prefix length longer than the address",
            ));
        }
        let bytes = r.take(usize::from(len).div_ceil(8)).map_err(|_| {
            reset(
                UpdateError::InvalidNetworkField,
                "prefix runs past its field",
            )
        })?;
        let net = if family == 4 {
            let mut a = [0u8; 4];
            a[..bytes.len()].copy_from_slice(bytes);
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(a), len)
                    .map_err(|_| reset(UpdateError::InvalidNetworkField, "bad prefix"))?,
            )
        } else {
            let mut a = [0u8; 16];
            a[..bytes.len()].copy_from_slice(bytes);
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(a), len)
                    .map_err(|_| reset(UpdateError::InvalidNetworkField, "bad prefix"))?,
            )
        };
        out.push(net.trunc());
    }
    Ok(out)
}

fn put_prefix(out: &mut Vec<u8>, net: &IpNet) {
    let len = net.prefix_len();
    out.push(len);
    let n = usize::from(len).div_ceil(8);
    match net.addr() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
    }
}

pub(super) fn decode(body: &[u8]) -> Result<Update, DecodeError> {
    use UpdateError::*;
    let mut r = Reader::new(body);
    let framing = |what| move |_| reset(MalformedAttributeList, what);
    let wlen = usize::from(r.u16().map_err(framing("no withdrawn routes length"))?);
    let withdrawn = r
        .take(wlen)
        .map_err(framing("withdrawn routes length past the message"))?;
    let alen = usize::from(r.u16().map_err(framing("no path attributes length"))?);
    let attrs = r
        .take(alen)
        .map_err(framing("path attributes length past the message"))?;
    let mut u = Update {
        withdrawn: prefixes(Reader::new(withdrawn), 4)?,
        announced: prefixes(Reader::new(r.rest()), 4)?,
        ..Update::default()
    };
    // RFC 7606: the most severe error decides. A treat-as-withdraw error
    // is remembered and parsing goes on, so a later one that must reset
    // the session still does.
    let mut recoverable: Option<DecodeError> = None;
    let mut a = Reader::new(attrs);
    let mut seen = [false; 256];
    while a.remaining() > 0 {
        let Some((flags, ty, value)) = next_attribute(&mut a) else {
            // §4: an attribute running past the attribute area, or too few
            // bytes left for one; the total length still locates the NLRI.
            recoverable.get_or_insert(withdraw(
                AttributeLengthError,
                "attribute length past the attributes",
            ));
            break;
        };
        if std::mem::replace(&mut seen[usize::from(ty)], true) {
            if ty == code::MP_REACH || ty == code::MP_UNREACH {
                return Err(reset(
                    MalformedAttributeList,
                    "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
                ));
            }
            // §3(g): every repeat of an attribute is discarded.
            continue;
        }
        if let Err(e) = attribute(flags, ty, value, &mut u) {
            if e.handling() == Handling::SessionReset {
                return Err(e);
            }
            recoverable.get_or_insert(e);
        }
    }
    let has_v4_nlri = u.announced.iter().any(|n| matches!(n, IpNet::V4(_)));
    if has_v4_nlri
        && (u.attributes.origin.is_none()
            || !seen[usize::from(code::AS_PATH)]
            || u.attributes.next_hop.is_none())
    {
        // §3(d).
        recoverable.get_or_insert(withdraw(
            MissingWellKnownAttribute,
            "ORIGIN, AS_PATH or NEXT_HOP missing",
        ));
    }
    match recoverable {
        Some(e) => Err(e),
        None => Ok(u),
    }
}

/// The next attribute's (flags, type, value), or None when its header or
/// value runs past the attribute area.
fn next_attribute<'a>(a: &mut Reader<'a>) -> Option<(u8, u8, &'a [u8])> {
    let flags = a.u8().ok()?;
    let ty = a.u8().ok()?;
    let len = if flags & EXTENDED != 0 {
        usize::from(a.u16().ok()?)
    } else {
        usize::from(a.u8().ok()?)
    };
    Some((flags, ty, a.take(len).ok()?))
}

/// Reads one attribute into `u`. Errors carry RFC 7606's handling: the
/// multiprotocol attributes (which hold NLRI) reset the session, the others
/// are treat-as-withdraw.
fn attribute(flags: u8, ty: u8, value: &[u8], u: &mut Update) -> Result<(), DecodeError> {
    use UpdateError::*;
    let well_known = matches!(
        ty,
        code::ORIGIN | code::AS_PATH | code::NEXT_HOP | code::LOCAL_PREF
    );
    if well_known && flags & OPTIONAL != 0 {
        // §3(c).
        return Err(withdraw(
            AttributeFlagsError,
            "well-known attribute flagged optional",
        ));
    }
    let mut v = Reader::new(value);
    let exact = |n: usize| {
        if value.len() == n {
            Ok(())
        } else {
            Err(withdraw(
                AttributeLengthError,
                "attribute has the wrong length",
            ))
        }
    };
    let at = &mut u.attributes;
    match ty {
        code::ORIGIN => {
            exact(1)?;
            let o = v.u8()?;
            if o > 2 {
                return Err(withdraw(
                    InvalidOrigin,
                    "ORIGIN is not IGP, EGP or INCOMPLETE",
                ));
            }
            at.origin = Some(o);
        }
        code::AS_PATH => {
            let bad = |what| move |_| withdraw(MalformedAsPath, what);
            while v.remaining() > 0 {
                let seg = v.u8().map_err(bad("truncated segment"))?;
                let n = usize::from(v.u8().map_err(bad("truncated segment"))?);
                if seg != AS_SET && seg != AS_SEQUENCE {
                    return Err(withdraw(MalformedAsPath, "unknown AS_PATH segment type"));
                }
                for _ in 0..n {
                    at.as_path
                        .push(v.u32().map_err(bad("segment runs past AS_PATH"))?);
                }
            }
        }
        code::NEXT_HOP => {
            exact(4)?;
            let nh = Ipv4Addr::from(v.u32()?);
            if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                return Err(withdraw(
                    InvalidNextHop,
                    "NEXT_HOP is not a unicast address",
                ));
            }
            at.next_hop = Some(nh);
        }
        code::MED => {
            exact(4)?;
            at.med = Some(v.u32()?);
        }
        code::LOCAL_PREF => {
            exact(4)?;
            at.local_pref = Some(v.u32()?);
        }
        code::COMMUNITIES => {
            if !value.len().is_multiple_of(4) {
                return Err(withdraw(
                    OptionalAttributeError,
                    "COMMUNITIES is not a multiple of 4 bytes",
                ));
            }
            while v.remaining() > 0 {
                at.communities.push(v.u32()?);
            }
        }
        code::LARGE_COMMUNITIES => {
            if !value.len().is_multiple_of(12) {
                return Err(withdraw(
                    OptionalAttributeError,
                    "LARGE_COMMUNITIES is not a multiple of 12 bytes",
                ));
            }
            while v.remaining() > 0 {
                at.large_communities.push((v.u32()?, v.u32()?, v.u32()?));
            }
        }
        code::MP_REACH => mp_reach(v, u)?,
        code::MP_UNREACH => {
            let (afi, _safi) = (v.u16()?, v.u8()?);
            if afi == 2 {
                let w = prefixes(v, 6)?;
                u.end_of_rib_v6 = w.is_empty();
                u.withdrawn.extend(w);
            }
        }
        // Unknown to RFC 4271 as well-known, yet the NLRI is still where
        // the lengths say: RFC 7606 §2 prefers treat-as-withdraw.
        _ if flags & OPTIONAL == 0 => {
            return Err(withdraw(
                UnrecognizedWellKnownAttribute,
                "unrecognized well-known attribute",
            ));
        }
        // Optional attributes we do not use are ignored (RFC 4271 §5).
        _ => {}
    }
    Ok(())
}

/// MP_REACH_NLRI: its next hop precedes the NLRI, so a bad next-hop length
/// leaves the NLRI unlocatable and resets the session (RFC 7606 §7.11).
fn mp_reach(mut v: Reader<'_>, u: &mut Update) -> Result<(), DecodeError> {
    let bad = |what| reset(UpdateError::OptionalAttributeError, what);
    let (afi, _safi) = (v.u16()?, v.u8()?);
    let nh_len = usize::from(v.u8()?);
    let nh = v
        .take(nh_len)
        .map_err(|_| bad("MP_REACH next hop past the attribute"))?;
    let _reserved = v.u8()?;
    if afi == 2 {
        let addr = |b: &[u8]| <[u8; 16]>::try_from(b).map(Ipv6Addr::from);
        u.attributes.mp_next_hop = match nh_len {
            16 => Some((addr(nh).map_err(|_| bad("bad next hop"))?, None)),
            32 => Some((
                addr(&nh[..16]).map_err(|_| bad("bad next hop"))?,
                Some(addr(&nh[16..]).map_err(|_| bad("bad next hop"))?),
            )),
            _ => return Err(bad("IPv6 next hop is not 16 or 32 bytes")),
        };
        u.announced.extend(prefixes(v, 6)?);
    }
    Ok(())
}

fn put_attr(out: &mut Vec<u8>, flags: u8, ty: u8, value: &[u8]) {
    if value.len() > 255 {
        out.push(flags | EXTENDED);
        out.push(ty);
        out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
    } else {
        out.push(flags);
        out.push(ty);
        out.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    }
    out.extend_from_slice(value);
}

pub(super) fn encode(u: &Update) -> Vec<u8> {
    let (w4, w6): (Vec<&IpNet>, Vec<&IpNet>) =
        u.withdrawn.iter().partition(|n| matches!(n, IpNet::V4(_)));
    let (a4, a6): (Vec<&IpNet>, Vec<&IpNet>) =
        u.announced.iter().partition(|n| matches!(n, IpNet::V4(_)));
    let at = &u.attributes;
    let mut attrs = Vec::new();
    if let Some(o) = at.origin {
        put_attr(&mut attrs, TRANSITIVE, code::ORIGIN, &[o]);
    }
    if at.origin.is_some() || !at.as_path.is_empty() {
        let mut path = Vec::new();
        for chunk in at.as_path.chunks(255) {
            path.push(AS_SEQUENCE);
            path.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
            for asn in chunk {
                path.extend_from_slice(&asn.to_be_bytes());
            }
        }
        put_attr(&mut attrs, TRANSITIVE, code::AS_PATH, &path);
    }
    if let Some(nh) = at.next_hop {
        put_attr(&mut attrs, TRANSITIVE, code::NEXT_HOP, &nh.octets());
    }
    if let Some(med) = at.med {
        put_attr(&mut attrs, OPTIONAL, code::MED, &med.to_be_bytes());
    }
    if let Some(lp) = at.local_pref {
        put_attr(&mut attrs, TRANSITIVE, code::LOCAL_PREF, &lp.to_be_bytes());
    }
    if !at.communities.is_empty() {
        let v: Vec<u8> = at
            .communities
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        put_attr(&mut attrs, OPTIONAL | TRANSITIVE, code::COMMUNITIES, &v);
    }
    if !a6.is_empty() || at.mp_next_hop.is_some() {
        let mut v = vec![0, 2, 1];
        match at.mp_next_hop {
            Some((g, Some(ll))) => {
                v.push(32);
                v.extend_from_slice(&g.octets());
                v.extend_from_slice(&ll.octets());
            }
            Some((g, None)) => {
                v.push(16);
                v.extend_from_slice(&g.octets());
            }
            None => {
                v.push(16);
                v.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
            }
        }
        v.push(0);
        for n in &a6 {
            put_prefix(&mut v, n);
        }
        put_attr(&mut attrs, OPTIONAL, code::MP_REACH, &v);
    }
    if !w6.is_empty() || u.end_of_rib_v6 {
        let mut v = vec![0, 2, 1];
        for n in &w6 {
            put_prefix(&mut v, n);
        }
        put_attr(&mut attrs, OPTIONAL, code::MP_UNREACH, &v);
    }
    if !at.large_communities.is_empty() {
        let v: Vec<u8> = at
            .large_communities
            .iter()
            .flat_map(|(a, b, c)| [a.to_be_bytes(), b.to_be_bytes(), c.to_be_bytes()].concat())
            .collect();
        put_attr(
            &mut attrs,
            OPTIONAL | TRANSITIVE,
            code::LARGE_COMMUNITIES,
            &v,
        );
    }
    let mut withdrawn = Vec::new();
    for n in &w4 {
        put_prefix(&mut withdrawn, n);
    }
    let mut out = Vec::new();
    out.extend_from_slice(
        &u16::try_from(withdrawn.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&withdrawn);
    out.extend_from_slice(&u16::try_from(attrs.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&attrs);
    for n in &a4 {
        put_prefix(&mut out, n);
    }
    out
}
