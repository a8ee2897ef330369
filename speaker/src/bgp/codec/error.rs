//! Decode errors, one per NOTIFICATION code/subcode (RFC 4271 §6, RFC 5492).

/// Why a received message cannot be used, and what to tell the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message header marker is not all ones")]
    NotSynchronized,
    #[error("bad message length {0}")]
    BadMessageLength(u16),
    #[error("bad message type {0}")]
    BadMessageType(u8),
    #[error("a field runs past the end of the message")]
    Truncated,
    #[error("unsupported BGP version {0}")]
    UnsupportedVersion(u8),
    #[error("bad peer AS {0}")]
    BadPeerAs(u32),
    #[error("bad BGP identifier {0:#010x}")]
    BadIdentifier(u32),
    #[error("unsupported optional parameter {0}")]
    UnsupportedOptionalParameter(u8),
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    #[error("malformed OPEN: {0}")]
    MalformedOpen(&'static str),
    /// UPDATE Message Error (code 3) with its subcode.
    #[error("malformed UPDATE: {what}")]
    Update { subcode: u8, what: &'static str },
}

impl DecodeError {
    /// The NOTIFICATION to send for this error: (code, subcode, data).
    pub fn notification(&self) -> (u8, u8, Vec<u8>) {
        match self {
            DecodeError::NotSynchronized => (1, 1, Vec::new()),
            DecodeError::BadMessageLength(len) => (1, 2, len.to_be_bytes().to_vec()),
            DecodeError::BadMessageType(t) => (1, 3, vec![*t]),
            // A field overrunning a message whose header length was valid:
            // the message body is malformed; the header error is the closest
            // code that names no particular message type.
            DecodeError::Truncated => (1, 2, Vec::new()),
            // Data: the largest version we support.
            DecodeError::UnsupportedVersion(_) => (2, 1, 4u16.to_be_bytes().to_vec()),
            DecodeError::BadPeerAs(_) => (2, 2, Vec::new()),
            DecodeError::BadIdentifier(_) => (2, 3, Vec::new()),
            DecodeError::UnsupportedOptionalParameter(_) => (2, 4, Vec::new()),
            DecodeError::UnacceptableHoldTime(_) => (2, 6, Vec::new()),
            DecodeError::MalformedOpen(_) => (2, 0, Vec::new()),
            DecodeError::Update { subcode, .. } => (3, *subcode, Vec::new()),
        }
    }
}
