//! NOTIFICATION error codes as types (RFC 4271 §4.5 and §6, RFC 4486,
//! RFC 5492, RFC 6793), and decode errors, each tied to the code it is
//! answered with and to how RFC 7606 says to handle it.

use super::Notification;

/// UPDATE Message Error subcodes (RFC 4271 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateError {
    MalformedAttributeList,
    UnrecognizedWellKnownAttribute,
    MissingWellKnownAttribute,
    AttributeFlagsError,
    AttributeLengthError,
    InvalidOrigin,
    InvalidNextHop,
    OptionalAttributeError,
    InvalidNetworkField,
    MalformedAsPath,
}

impl UpdateError {
    fn subcode(self) -> u8 {
        match self {
            UpdateError::MalformedAttributeList => 1,
            UpdateError::UnrecognizedWellKnownAttribute => 2,
            UpdateError::MissingWellKnownAttribute => 3,
            UpdateError::AttributeFlagsError => 4,
            UpdateError::AttributeLengthError => 5,
            UpdateError::InvalidOrigin => 6,
            UpdateError::InvalidNextHop => 8,
            UpdateError::OptionalAttributeError => 9,
            UpdateError::InvalidNetworkField => 10,
            UpdateError::MalformedAsPath => 11,
        }
    }
}

/// The error code (and subcode) of every NOTIFICATION this speaker sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1/1.
    ConnectionNotSynchronized,
    /// 1/2.
    BadMessageLength,
    /// 1/3.
    BadMessageType,
    /// 2/0: an OPEN error with no more specific subcode.
    OpenMessageError,
    /// 2/1.
    UnsupportedVersionNumber,
    /// 2/2.
    BadPeerAs,
    /// 2/3.
    BadBgpIdentifier,
    /// 2/4.
    UnsupportedOptionalParameter,
    /// 2/6.
    UnacceptableHoldTime,
    /// 2/7 (RFC 5492).
    UnsupportedCapability,
    /// 3/subcode.
    Update(UpdateError),
    /// 4/0.
    HoldTimerExpired,
    /// 5/0.
    FiniteStateMachineError,
    /// 6/2 (RFC 4486).
    AdministrativeShutdown,
}

impl ErrorCode {
    /// (code, subcode) on the wire.
    pub fn code_subcode(self) -> (u8, u8) {
        match self {
            ErrorCode::ConnectionNotSynchronized => (1, 1),
            ErrorCode::BadMessageLength => (1, 2),
            ErrorCode::BadMessageType => (1, 3),
            ErrorCode::OpenMessageError => (2, 0),
            ErrorCode::UnsupportedVersionNumber => (2, 1),
            ErrorCode::BadPeerAs => (2, 2),
            ErrorCode::BadBgpIdentifier => (2, 3),
            ErrorCode::UnsupportedOptionalParameter => (2, 4),
            ErrorCode::UnacceptableHoldTime => (2, 6),
            ErrorCode::UnsupportedCapability => (2, 7),
            ErrorCode::Update(e) => (3, e.subcode()),
            ErrorCode::HoldTimerExpired => (4, 0),
            ErrorCode::FiniteStateMachineError => (5, 0),
            ErrorCode::AdministrativeShutdown => (6, 2),
        }
    }

    /// The NOTIFICATION carrying this code and `data`.
    pub fn with(self, data: Vec<u8>) -> Notification {
        let (code, subcode) = self.code_subcode();
        Notification {
            code,
            subcode,
            data,
        }
    }
}

/// What RFC 7606 says to do with a malformed UPDATE. This speaker only
/// announces, so an UPDATE it treats as withdraw (or whose attribute it
/// discards) changes nothing it holds: the session, and every route it
/// advertises, stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handling {
    /// The message cannot be framed or its NLRI located: NOTIFICATION and
    /// reconnect (RFC 4271 §6).
    SessionReset,
    /// The NLRI can be found but the attributes are unusable: its routes
    /// count as withdrawn (RFC 7606 §2).
    TreatAsWithdraw,
}

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
    /// An UPDATE Message Error, with how RFC 7606 handles it.
    #[error("malformed UPDATE: {what}")]
    Update {
        error: UpdateError,
        what: &'static str,
        handling: Handling,
    },
}

impl DecodeError {
    /// The NOTIFICATION to send for this error.
    pub fn notification(&self) -> Notification {
        match self {
            DecodeError::NotSynchronized => ErrorCode::ConnectionNotSynchronized.with(Vec::new()),
            DecodeError::BadMessageLength(len) => {
                ErrorCode::BadMessageLength.with(len.to_be_bytes().to_vec())
            }
            DecodeError::BadMessageType(t) => ErrorCode::BadMessageType.with(vec![*t]),
            // A field overrunning a message whose header length was valid:
            // the message body is malformed; the header error is the closest
            // code that names no particular message type.
            DecodeError::Truncated => ErrorCode::BadMessageLength.with(Vec::new()),
            // Data: the largest version we support.
            DecodeError::UnsupportedVersion(_) => {
                ErrorCode::UnsupportedVersionNumber.with(4u16.to_be_bytes().to_vec())
            }
            DecodeError::BadPeerAs(_) => ErrorCode::BadPeerAs.with(Vec::new()),
            DecodeError::BadIdentifier(_) => ErrorCode::BadBgpIdentifier.with(Vec::new()),
            DecodeError::UnsupportedOptionalParameter(_) => {
                ErrorCode::UnsupportedOptionalParameter.with(Vec::new())
            }
            DecodeError::UnacceptableHoldTime(_) => {
                ErrorCode::UnacceptableHoldTime.with(Vec::new())
            }
            DecodeError::MalformedOpen(_) => ErrorCode::OpenMessageError.with(Vec::new()),
            DecodeError::Update { error, .. } => ErrorCode::Update(*error).with(Vec::new()),
        }
    }

    /// How to handle the error: every error but a recoverable UPDATE one
    /// resets the session.
    pub fn handling(&self) -> Handling {
        match self {
            DecodeError::Update { handling, .. } => *handling,
            _ => Handling::SessionReset,
        }
    }
}
