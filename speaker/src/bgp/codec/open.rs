//! OPEN (RFC 4271 §4.2) with capabilities (RFC 5492): multiprotocol
//! (RFC 4760), route refresh (RFC 2918), graceful restart (RFC 4724) and
//! 4-octet AS numbers (RFC 6793).

use super::DecodeError;
use super::reader::Reader;

/// The 2-octet AS placeholder a 4-octet speaker puts in `my_as`.
pub const AS_TRANS: u16 = 23456;

const PARAM_CAPABILITIES: u8 = 2;

/// One capability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    Multiprotocol {
        afi: u16,
        safi: u8,
    },
    RouteRefresh,
    GracefulRestart {
        restarting: bool,
        time: u16,
        /// (AFI, SAFI, forwarding state preserved)
        families: Vec<(u16, u8, bool)>,
    },
    FourOctetAs(u32),
    /// Anything else, kept as received.
    Unknown {
        code: u8,
        value: Vec<u8>,
    },
}

/// An OPEN message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// The sender's AS (the 4-octet value when the capability carries it).
    pub asn: u32,
    pub hold_time: u16,
    pub identifier: u32,
    pub capabilities: Vec<Capability>,
}

pub(super) fn decode(body: &[u8]) -> Result<Open, DecodeError> {
    let mut r = Reader::new(body);
    let version = r.u8()?;
    if version != 4 {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let my_as = r.u16()?;
    let hold_time = r.u16()?;
    if hold_time == 1 || hold_time == 2 {
        return Err(DecodeError::UnacceptableHoldTime(hold_time));
    }
    let identifier = r.u32()?;
    if identifier == 0 {
        return Err(DecodeError::BadIdentifier(identifier));
    }
    let params_len = usize::from(r.u8()?);
    if params_len != r.remaining() {
        return Err(DecodeError::MalformedOpen(
            "optional parameters length does not match the message",
        ));
    }
    let mut params = Reader::new(r.take(params_len)?);
    let mut capabilities = Vec::new();
    while params.remaining() > 0 {
        let ty = params.u8()?;
        let len = usize::from(params.u8()?);
        let value = params.take(len)?;
        if ty != PARAM_CAPABILITIES {
            return Err(DecodeError::UnsupportedOptionalParameter(ty));
        }
        let mut caps = Reader::new(value);
        while caps.remaining() > 0 {
            let code = caps.u8()?;
            let len = usize::from(caps.u8()?);
            capabilities.push(capability(code, caps.take(len)?)?);
        }
    }
    let four = capabilities.iter().find_map(|c| match c {
        Capability::FourOctetAs(a) => Some(*a),
        _ => None,
    });
    let asn = match four {
        Some(a) if my_as != AS_TRANS && u32::from(my_as) != a => {
            return Err(DecodeError::BadPeerAs(u32::from(my_as)));
        }
        Some(a) => a,
        None => u32::from(my_as),
    };
    if asn == 0 {
        return Err(DecodeError::BadPeerAs(0));
    }
    Ok(Open {
        asn,
        hold_time,
        identifier,
        capabilities,
    })
}

fn capability(code: u8, value: &[u8]) -> Result<Capability, DecodeError> {
    let mut r = Reader::new(value);
    let bad = |what| DecodeError::MalformedOpen(what);
    Ok(match code {
        1 => {
            if value.len() != 4 {
                return Err(bad("multiprotocol capability is not 4 bytes"));
            }
            let afi = r.u16()?;
            let _reserved = r.u8()?;
            Capability::Multiprotocol { afi, safi: r.u8()? }
        }
        2 => {
            if !value.is_empty() {
                return Err(bad("route refresh capability has a value"));
            }
            Capability::RouteRefresh
        }
        64 => {
            if value.len() < 2 || !(value.len() - 2).is_multiple_of(4) {
                return Err(bad("graceful restart capability has a bad length"));
            }
            let word = r.u16()?;
            let mut families = Vec::new();
            while r.remaining() > 0 {
                let afi = r.u16()?;
                let safi = r.u8()?;
                families.push((afi, safi, r.u8()? & 0x80 != 0));
            }
            Capability::GracefulRestart {
                restarting: word & 0x8000 != 0,
                time: word & 0x0fff,
                families,
            }
        }
        65 => {
            if value.len() != 4 {
                return Err(bad("4-octet AS capability is not 4 bytes"));
            }
            Capability::FourOctetAs(r.u32()?)
        }
        code => Capability::Unknown {
            code,
            value: value.to_vec(),
        },
    })
}

pub(super) fn encode(o: &Open) -> Vec<u8> {
    let mut caps = Vec::new();
    for c in &o.capabilities {
        let (code, value): (u8, Vec<u8>) = match c {
            Capability::Multiprotocol { afi, safi } => {
                let mut v = afi.to_be_bytes().to_vec();
                v.extend_from_slice(&[0, *safi]);
                (1, v)
            }
            Capability::RouteRefresh => (2, Vec::new()),
            Capability::GracefulRestart {
                restarting,
                time,
                families,
            } => {
                let word = (time & 0x0fff) | if *restarting { 0x8000 } else { 0 };
                let mut v = word.to_be_bytes().to_vec();
                for (afi, safi, fwd) in families {
                    v.extend_from_slice(&afi.to_be_bytes());
                    v.extend_from_slice(&[*safi, if *fwd { 0x80 } else { 0 }]);
                }
                (64, v)
            }
            Capability::FourOctetAs(a) => (65, a.to_be_bytes().to_vec()),
            Capability::Unknown { code, value } => (*code, value.clone()),
        };
        caps.push(code);
        // Capability values we build are a few bytes; Unknown ones were
        // received in a one-byte length field.
        caps.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
        caps.extend_from_slice(&value);
    }
    let my_as = u16::try_from(o.asn).unwrap_or(AS_TRANS);
    let mut b = vec![4];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&o.hold_time.to_be_bytes());
    b.extend_from_slice(&o.identifier.to_be_bytes());
    if caps.is_empty() {
        b.push(0);
    } else {
        // One parameter holding all capabilities (RFC 5492 allows either).
        let len = u8::try_from(caps.len()).unwrap_or(u8::MAX);
        b.push(len.saturating_add(2));
        b.push(PARAM_CAPABILITIES);
        b.push(len);
        b.extend_from_slice(&caps);
    }
    b
}
