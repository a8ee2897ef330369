//! BGP messages on the wire. Every read is bounds-checked through
//! [`reader::Reader`]; every decode error is a [`DecodeError`] that maps to
//! the NOTIFICATION ([`ErrorCode`], data) RFC 4271 §6 prescribes, and to
//! the [`Handling`] RFC 7606 gives a malformed UPDATE.

mod error;
mod open;
mod reader;
#[cfg(test)]
mod tests;
mod update;

pub use error::{DecodeError, ErrorCode, Handling, UpdateError};
pub use open::{AS_TRANS, Capability, Open};
pub use update::{Attributes, Update};

use reader::Reader;

/// Fixed header: 16-byte marker, 2-byte length, 1-byte type.
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 8654).
pub const MAX_LEN: usize = 4096;

const MARKER: [u8; 16] = [0xff; 16];

/// Message types.
pub mod kind {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// A NOTIFICATION (RFC 4271 §4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// A ROUTE-REFRESH request (RFC 2918) for one address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: u16,
    pub safi: u8,
}

/// One BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// Decodes one message from the front of `buf`, strictly: any error is
/// returned. `Ok(None)`: not all of it has arrived yet. `Ok(Some((msg,
/// used)))`: `used` bytes were consumed.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, DecodeError> {
    match decode_framed(buf)? {
        None => Ok(None),
        Some((msg, used)) => Ok(Some((msg?, used))),
    }
}

/// One framed message: its content, or why the content cannot be used.
pub type Framed = Result<Message, DecodeError>;

/// Decodes one message from the front of `buf`, keeping framing apart from
/// content: the outer error means the stream cannot be read on (the header
/// is bad); `Some((Err(e), used))` is a message of `used` bytes whose
/// content is malformed, after which the stream continues if `e`'s
/// [`Handling`] allows.
pub fn decode_framed(buf: &[u8]) -> Result<Option<(Framed, usize)>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut r = Reader::new(buf);
    let marker = r.take(16)?;
    if marker != MARKER {
        return Err(DecodeError::NotSynchronized);
    }
    let len = r.u16()?;
    let ty = r.u8()?;
    let min = match ty {
        kind::OPEN => 29,
        kind::UPDATE => 23,
        kind::NOTIFICATION => 21,
        kind::KEEPALIVE => 19,
        kind::ROUTE_REFRESH => 23,
        other => return Err(DecodeError::BadMessageType(other)),
    };
    let bad_len = usize::from(len) < min
        || usize::from(len) > MAX_LEN
        || (ty == kind::KEEPALIVE && len != 19)
        || (ty == kind::ROUTE_REFRESH && len != 23);
    if bad_len {
        return Err(DecodeError::BadMessageLength(len));
    }
    let len = usize::from(len);
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[HEADER_LEN..len];
    Ok(Some((body_of(ty, body), len)))
}

/// The message of type `ty` (already checked) in `body`.
fn body_of(ty: u8, body: &[u8]) -> Result<Message, DecodeError> {
    Ok(match ty {
        kind::OPEN => Message::Open(open::decode(body)?),
        kind::UPDATE => Message::Update(update::decode(body)?),
        kind::NOTIFICATION => {
            let mut r = Reader::new(body);
            Message::Notification(Notification {
                code: r.u8()?,
                subcode: r.u8()?,
                data: r.rest().to_vec(),
            })
        }
        kind::KEEPALIVE => Message::Keepalive,
        _ => {
            let mut r = Reader::new(body);
            let afi = r.u16()?;
            let _reserved = r.u8()?;
            Message::RouteRefresh(RouteRefresh { afi, safi: r.u8()? })
        }
    })
}

/// Encodes `msg`, header included.
pub fn encode(msg: &Message) -> Vec<u8> {
    let (ty, body) = match msg {
        Message::Open(o) => (kind::OPEN, open::encode(o)),
        Message::Update(u) => (kind::UPDATE, update::encode(u)),
        Message::Notification(n) => {
            let mut b = vec![n.code, n.subcode];
            b.extend_from_slice(&n.data);
            (kind::NOTIFICATION, b)
        }
        Message::Keepalive => (kind::KEEPALIVE, Vec::new()),
        Message::RouteRefresh(rr) => {
            let mut b = rr.afi.to_be_bytes().to_vec();
            b.extend_from_slice(&[0, rr.safi]);
            (kind::ROUTE_REFRESH, b)
        }
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MARKER);
    // Callers keep bodies under MAX_LEN; saturate rather than wrap if not.
    let len = u16::try_from(HEADER_LEN + body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(ty);
    out.extend_from_slice(&body);
    out
}
