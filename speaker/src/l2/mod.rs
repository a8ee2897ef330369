//! Layer-2 announcements: answering ARP (IPv4) and Neighbor Solicitations
//! (IPv6) for the addresses this node owns, and announcing take-overs.
//!
//! `arp` and `ndp` are plain codecs over byte slices; `socket` is the raw
//! AF_PACKET socket; `announcer` ties them together on one interface.

pub mod announcer;
pub mod arp;
pub mod ndp;
pub mod socket;
pub mod standby;

use std::fmt;
use std::str::FromStr;

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const ZERO: Mac = Mac([0; 6]);
    pub const BROADCAST: Mac = Mac([0xff; 6]);
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = FrameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.trim().split(':');
        for byte in &mut out {
            let p = parts
                .next()
                .ok_or(FrameError::Unsupported("MAC address needs six parts"))?;
            *byte = u8::from_str_radix(p, 16)
                .map_err(|_| FrameError::Unsupported("MAC address part is not hex"))?;
        }
        if parts.next().is_some() {
            return Err(FrameError::Unsupported(
                "MAC address has more than six parts",
            ));
        }
        Ok(Mac(out))
    }
}

/// Why a frame was not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    #[error("bad ICMPv6 checksum")]
    Checksum,
}

/// The 14-byte Ethernet II header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetHeader {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
}

impl EthernetHeader {
    pub const LEN: usize = 14;

    pub fn parse(frame: &[u8]) -> Result<(Self, &[u8]), FrameError> {
        let h = frame.get(..Self::LEN).ok_or(FrameError::Truncated {
            need: Self::LEN,
            have: frame.len(),
        })?;
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&h[0..6]);
        src.copy_from_slice(&h[6..12]);
        let ethertype = u16::from_be_bytes([h[12], h[13]]);
        Ok((
            EthernetHeader {
                dst: Mac(dst),
                src: Mac(src),
                ethertype,
            },
            &frame[Self::LEN..],
        ))
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.dst.0);
        out.extend_from_slice(&self.src.0);
        out.extend_from_slice(&self.ethertype.to_be_bytes());
    }
}

/// A received frame, as far as the announcer cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Arp(arp::ArpPacket),
    NeighborSolicit(ndp::Solicit),
    NeighborAdvert(ndp::Advert),
    /// Anything else: ignored.
    Other,
}

impl Frame {
    /// Parses a whole Ethernet frame.
    pub fn parse(frame: &[u8]) -> Result<Self, FrameError> {
        let (eth, body) = EthernetHeader::parse(frame)?;
        match eth.ethertype {
            ETHERTYPE_ARP => Ok(Frame::Arp(arp::ArpPacket::parse(body)?)),
            ETHERTYPE_IPV6 => ndp::parse(eth, body),
            _ => Ok(Frame::Other),
        }
    }
}
