//! BFD Control packets on the wire (RFC 5880 §4.1), with the reception
//! checks of §6.8.6 that need no session: a packet failing one is a
//! [`DecodeError`] naming the rule, so the driver can count why it was
//! discarded. Authentication is not offered, so a packet asking for it is
//! discarded too (§6.8.6: "A bit set and no authentication in use").

use std::time::Duration;

/// The mandatory section's length; without authentication, the whole packet.
pub const LEN: usize = 24;

/// The session states (§4.1 "Sta").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    AdminDown,
    Down,
    Init,
    Up,
}

impl State {
    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    fn from_bits(b: u8) -> State {
        match b & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

/// Why the local system last changed state (§4.1 "Diag"; the values this
/// speaker sends, and any other kept as its number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Diag {
    None,
    ControlDetectionTimeExpired,
    NeighborSignaledSessionDown,
    AdministrativelyDown,
    Other(u8),
}

impl Diag {
    fn bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::NeighborSignaledSessionDown => 3,
            Diag::AdministrativelyDown => 7,
            Diag::Other(n) => n & 0x1f,
        }
    }

    fn from_bits(b: u8) -> Diag {
        match b & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            3 => Diag::NeighborSignaledSessionDown,
            7 => Diag::AdministrativelyDown,
            n => Diag::Other(n),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Diag::None => "none",
            Diag::ControlDetectionTimeExpired => "detection time expired",
            Diag::NeighborSignaledSessionDown => "neighbor signaled down",
            Diag::AdministrativelyDown => "administratively down",
            Diag::Other(_) => "other",
        }
    }
}

/// One Control packet (no authentication section: never sent, and a
/// received one is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub diag: Diag,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    /// Control Plane Independent: false, BFD runs in the speaker process.
    pub cpi: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discr: u32,
    pub your_discr: u32,
    /// Intervals travel in microseconds (32 bits: at most ~71 minutes).
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub required_min_echo_rx: Duration,
}

/// A packet discarded by the reception checks of RFC 5880 §6.8.6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than a BFD Control packet ({0} bytes)")]
    Short(usize),
    #[error("version {0}, not 1")]
    Version(u8),
    #[error("Length field {field} outside 24..={received} bytes received")]
    Length { field: usize, received: usize },
    #[error("Detect Mult is zero")]
    ZeroDetectMult,
    #[error("Multipoint bit set")]
    Multipoint,
    #[error("My Discriminator is zero")]
    ZeroMyDiscr,
    #[error("asks for authentication, which is not in use")]
    Authentication,
}

impl DecodeError {
    /// A short label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            DecodeError::Short(_) => "short",
            DecodeError::Version(_) => "version",
            DecodeError::Length { .. } => "length",
            DecodeError::ZeroDetectMult => "zero_detect_mult",
            DecodeError::Multipoint => "multipoint",
            DecodeError::ZeroMyDiscr => "zero_my_discriminator",
            DecodeError::Authentication => "authentication",
        }
    }
}

const POLL: u8 = 0x20;
const FINAL: u8 = 0x10;
const CPI: u8 = 0x08;
const AUTH: u8 = 0x04;
const DEMAND: u8 = 0x02;
const MULTIPOINT: u8 = 0x01;

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn word(buf: &[u8], at: usize) -> u32 {
    // Callers check buf.len() >= LEN first; every `at` is ≤ LEN − 4.
    let b = buf.get(at..at + 4).unwrap_or(&[0; 4]);
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Encodes `c` (24 bytes: no authentication section).
pub fn encode(c: &Control) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    out[0] = (1 << 5) | c.diag.bits();
    let mut flags = c.state.bits() << 6;
    for (set, bit) in [
        (c.poll, POLL),
        (c.final_, FINAL),
        (c.cpi, CPI),
        (c.demand, DEMAND),
    ] {
        if set {
            flags |= bit;
        }
    }
    out[1] = flags;
    out[2] = c.detect_mult;
    out[3] = LEN as u8; // 24 fits a byte
    for (at, v) in [
        (4, c.my_discr),
        (8, c.your_discr),
        (12, micros(c.desired_min_tx)),
        (16, micros(c.required_min_rx)),
        (20, micros(c.required_min_echo_rx)),
    ] {
        out[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Decodes one Control packet (a whole UDP payload), applying the
/// session-independent checks of §6.8.6 in its order.
pub fn decode(buf: &[u8]) -> Result<Control, DecodeError> {
    if buf.len() < LEN {
        return Err(DecodeError::Short(buf.len()));
    }
    let version = buf[0] >> 5;
    if version != 1 {
        return Err(DecodeError::Version(version));
    }
    let flags = buf[1];
    let length = usize::from(buf[3]);
    let min = if flags & AUTH != 0 { LEN + 2 } else { LEN };
    if length < min || length > buf.len() {
        return Err(DecodeError::Length {
            field: length,
            received: buf.len(),
        });
    }
    if buf[2] == 0 {
        return Err(DecodeError::ZeroDetectMult);
    }
    if flags & MULTIPOINT != 0 {
        return Err(DecodeError::Multipoint);
    }
    let my_discr = word(buf, 4);
    if my_discr == 0 {
        return Err(DecodeError::ZeroMyDiscr);
    }
    if flags & AUTH != 0 {
        return Err(DecodeError::Authentication);
    }
    let us = |at| Duration::from_micros(u64::from(word(buf, at)));
    Ok(Control {
        diag: Diag::from_bits(buf[0]),
        state: State::from_bits(flags >> 6),
        poll: flags & POLL != 0,
        final_: flags & FINAL != 0,
        cpi: flags & CPI != 0,
        demand: flags & DEMAND != 0,
        detect_mult: buf[2],
        my_discr,
        your_discr: word(buf, 8),
        desired_min_tx: us(12),
        required_min_rx: us(16),
        required_min_echo_rx: us(20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Control {
        Control {
            diag: Diag::None,
            state: State::Up,
            poll: true,
            final_: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 0x0102_0304,
            your_discr: 0x0a0b_0c0d,
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            required_min_echo_rx: Duration::ZERO,
        }
    }

    #[test]
    fn encodes_byte_exact() {
        // Version 1, diag 0 | Up (3<<6) + Poll | mult 3 | len 24 | discrs |
        // 300000 µs = 0x000493e0 twice | echo 0.
        let want: [u8; 24] = [
            0x20, 0xe0, 3, 24, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0, 4, 0x93, 0xe0, 0, 4, 0x93,
            0xe0, 0, 0, 0, 0,
        ];
        assert_eq!(encode(&up()), want);
        assert_eq!(decode(&want), Ok(up()));
    }

    #[test]
    fn decodes_a_down_packet_with_a_diag_and_final() {
        let mut b = encode(&up());
        b[0] = 0x20 | 1; // detection time expired
        b[1] = (1 << 6) | FINAL;
        let c = decode(&b).unwrap();
        assert_eq!(c.state, State::Down);
        assert_eq!(c.diag, Diag::ControlDetectionTimeExpired);
        assert!(c.final_ && !c.poll);
    }

    #[test]
    fn accepts_trailing_bytes_past_the_length_field() {
        let mut b = encode(&up()).to_vec();
        b.extend_from_slice(&[0xff; 8]);
        assert_eq!(decode(&b), Ok(up()));
    }

    #[test]
    fn every_reception_check_discards_with_its_reason() {
        let good = encode(&up());
        let bad = |f: &dyn Fn(&mut [u8; 24])| {
            let mut b = good;
            f(&mut b);
            decode(&b).unwrap_err()
        };
        assert_eq!(decode(&good[..23]), Err(DecodeError::Short(23)));
        assert_eq!(bad(&|b| b[0] = 0x40), DecodeError::Version(2));
        assert_eq!(
            bad(&|b| b[3] = 23),
            DecodeError::Length {
                field: 23,
                received: 24
            }
        );
        assert_eq!(
            bad(&|b| b[3] = 25),
            DecodeError::Length {
                field: 25,
                received: 24
            }
        );
        assert_eq!(bad(&|b| b[2] = 0), DecodeError::ZeroDetectMult);
        assert_eq!(bad(&|b| b[1] |= MULTIPOINT), DecodeError::Multipoint);
        assert_eq!(bad(&|b| b[4..8].fill(0)), DecodeError::ZeroMyDiscr);
        // With the A bit the minimum length is 26.
        let mut auth = good.to_vec();
        auth[1] |= AUTH;
        assert!(matches!(
            decode(&auth),
            Err(DecodeError::Length { field: 24, .. })
        ));
        auth[3] = 26;
        auth.extend_from_slice(&[1, 2]);
        assert_eq!(decode(&auth), Err(DecodeError::Authentication));
    }

    #[test]
    fn intervals_beyond_32_bits_of_microseconds_saturate() {
        let mut c = up();
        c.desired_min_tx = Duration::from_secs(10_000);
        assert_eq!(
            decode(&encode(&c)).unwrap().desired_min_tx,
            Duration::from_micros(u64::from(u32::MAX))
        );
    }
}
