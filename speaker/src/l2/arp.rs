//! ARP over Ethernet (RFC 826): parsing requests and building replies and
//! gratuitous announcements. Every read is bounds-checked; a short or
//! foreign frame is an error value, never a panic.

use std::net::Ipv4Addr;

use super::{ETHERTYPE_ARP, EthernetHeader, FrameError, Mac};

/// ARP operation codes.
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// Length of an ARP body for Ethernet/IPv4.
pub const ARP_LEN: usize = 28;

/// An Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpPacket {
    pub op: u16,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    /// Parses the ARP body of an Ethernet frame (after the 14-byte header).
    pub fn parse(body: &[u8]) -> Result<Self, FrameError> {
        let b = body.get(..ARP_LEN).ok_or(FrameError::Truncated {
            need: ARP_LEN,
            have: body.len(),
        })?;
        let htype = u16::from_be_bytes([b[0], b[1]]);
        let ptype = u16::from_be_bytes([b[2], b[3]]);
        if htype != 1 || ptype != 0x0800 || b[4] != 6 || b[5] != 4 {
            return Err(FrameError::Unsupported("ARP for other than Ethernet/IPv4"));
        }
        Ok(ArpPacket {
            op: u16::from_be_bytes([b[6], b[7]]),
            sender_mac: Mac([b[8], b[9], b[10], b[11], b[12], b[13]]),
            sender_ip: Ipv4Addr::new(b[14], b[15], b[16], b[17]),
            target_mac: Mac([b[18], b[19], b[20], b[21], b[22], b[23]]),
            target_ip: Ipv4Addr::new(b[24], b[25], b[26], b[27]),
        })
    }

    /// Writes the 28-byte body.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&0x0800u16.to_be_bytes());
        out.extend_from_slice(&[6, 4]);
        out.extend_from_slice(&self.op.to_be_bytes());
        out.extend_from_slice(&self.sender_mac.0);
        out.extend_from_slice(&self.sender_ip.octets());
        out.extend_from_slice(&self.target_mac.0);
        out.extend_from_slice(&self.target_ip.octets());
    }
}

/// A whole Ethernet frame carrying `arp`.
pub fn frame(dst: Mac, src: Mac, arp: &ArpPacket) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + ARP_LEN);
    EthernetHeader {
        dst,
        src,
        ethertype: ETHERTYPE_ARP,
    }
    .write(&mut out);
    arp.write(&mut out);
    out
}

/// The reply `mac` sends to `request` for an address it owns.
pub fn reply(request: &ArpPacket, mac: Mac) -> Vec<u8> {
    let arp = ArpPacket {
        op: OP_REPLY,
        sender_mac: mac,
        sender_ip: request.target_ip,
        target_mac: request.sender_mac,
        target_ip: request.sender_ip,
    };
    frame(request.sender_mac, mac, &arp)
}

/// Gratuitous ARP for `ip` at `mac`, in both forms hosts honour: a broadcast
/// request and a broadcast reply, each with sender and target address `ip`.
pub fn gratuitous(ip: Ipv4Addr, mac: Mac) -> [Vec<u8>; 2] {
    let request = ArpPacket {
        op: OP_REQUEST,
        sender_mac: mac,
        sender_ip: ip,
        target_mac: Mac::ZERO,
        target_ip: ip,
    };
    let reply = ArpPacket {
        op: OP_REPLY,
        sender_mac: mac,
        sender_ip: ip,
        target_mac: mac,
        target_ip: ip,
    };
    [
        frame(Mac::BROADCAST, mac, &request),
        frame(Mac::BROADCAST, mac, &reply),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::Frame;

    // A request "who has 198.18.0.100? tell 198.18.0.12" from 02:42:b1:00:00:0c,
    // as arping sends it.
    const REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0xb1, 0x00, 0x00, 0x0c, 0x08,
        0x06, // ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype ptype hlen plen op=request
        0x02, 0x42, 0xb1, 0x00, 0x00, 0x0c, 198, 18, 0, 12, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 198, 18, 0, 100, // target
    ];

    /// Captured on a lab veth: `arping -c1 -I ca 198.18.0.100` (iputils
    /// 20221126) from 02:42:b1:00:00:0c / 198.18.0.12. Note the broadcast
    /// target MAC iputils puts in the request.
    const CAPTURED_ARPING: &str =
        "ffffffffffff0242b100000c080600010800060400010242b100000cc612000cffffffffffffc6120064";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn parses_a_captured_arping_request() {
        let Ok(Frame::Arp(arp)) = Frame::parse(&unhex(CAPTURED_ARPING)) else {
            panic!("not ARP")
        };
        assert_eq!(arp.op, OP_REQUEST);
        assert_eq!(arp.sender_mac, Mac([0x02, 0x42, 0xb1, 0, 0, 0x0c]));
        assert_eq!(arp.sender_ip, Ipv4Addr::new(198, 18, 0, 12));
        assert_eq!(arp.target_mac, Mac::BROADCAST);
        assert_eq!(arp.target_ip, Ipv4Addr::new(198, 18, 0, 100));
        // The reply goes back to the asker, from us, about the asked address.
        let me = Mac([0x02, 0x42, 0xb1, 0, 0, 0x0a]);
        let expected = unhex(
            "0242b100000c0242b100000a080600010800060400020242b100000ac61200640242b100000cc612000c",
        );
        assert_eq!(reply(&arp, me), expected);
    }

    #[test]
    fn parses_a_request_byte_for_byte() {
        let Ok(Frame::Arp(arp)) = Frame::parse(&REQUEST) else {
            panic!("not ARP")
        };
        assert_eq!(arp.op, OP_REQUEST);
        assert_eq!(arp.sender_mac, Mac([0x02, 0x42, 0xb1, 0, 0, 0x0c]));
        assert_eq!(arp.sender_ip, Ipv4Addr::new(198, 18, 0, 12));
        assert_eq!(arp.target_ip, Ipv4Addr::new(198, 18, 0, 100));
    }

    #[test]
    fn reply_is_exact() {
        let Ok(Frame::Arp(req)) = Frame::parse(&REQUEST) else {
            panic!("not ARP")
        };
        let me = Mac([0x02, 0x42, 0xb1, 0, 0, 0x0a]);
        let expected: [u8; 42] = [
            0x02, 0x42, 0xb1, 0x00, 0x00, 0x0c, 0x02, 0x42, 0xb1, 0x00, 0x00, 0x0a, 0x08,
            0x06, //
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, //
            0x02, 0x42, 0xb1, 0x00, 0x00, 0x0a, 198, 18, 0, 100, //
            0x02, 0x42, 0xb1, 0x00, 0x00, 0x0c, 198, 18, 0, 12,
        ];
        assert_eq!(reply(&req, me), expected);
    }

    #[test]
    fn gratuitous_forms() {
        let me = Mac([2, 0, 0, 0, 0, 1]);
        let ip = Ipv4Addr::new(198, 18, 0, 100);
        for (i, f) in gratuitous(ip, me).iter().enumerate() {
            let Ok(Frame::Arp(a)) = Frame::parse(f) else {
                panic!("not ARP")
            };
            assert_eq!(&f[..6], &[0xff; 6]);
            assert_eq!((a.sender_ip, a.target_ip, a.sender_mac), (ip, ip, me));
            assert_eq!(a.op, if i == 0 { OP_REQUEST } else { OP_REPLY });
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for n in 0..REQUEST.len() {
            assert!(Frame::parse(&REQUEST[..n]).is_err(), "{n} bytes parsed");
        }
        let mut wrong = REQUEST;
        wrong[16] = 0x86; // ptype IPv6
        assert!(Frame::parse(&wrong).is_err());
    }
}
