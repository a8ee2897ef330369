//! The BGP session state machine (RFC 4271 §8) as plain Rust without I/O:
//! the driver feeds [`Event`]s and carries out the returned [`Action`]s
//! (connect, send, close, arm or stop a timer, report the session up or
//! down). Only the active side is modelled — barelb always dials its
//! routers — so connection collision reduces to refusing a second
//! connection while one is past Connect.

use std::time::Duration;

use super::codec::{Capability, DecodeError, ErrorCode, Handling, Message, Notification, Open};

/// RFC 4271 session states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    /// The RFC 4271 name, as reported to the operator.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

/// Timers the driver keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
}

/// What happens to a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Start,
    Stop,
    TcpConnected,
    TcpFailed,
    Received(Message),
    /// A message from the peer could not be decoded.
    Malformed(DecodeError),
    Expired(Timer),
    /// The peer's BFD session went Down: the path is gone, so the session
    /// ends now rather than at the hold timer (RFC 5882 §4.3).
    BfdDown,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Connect,
    Send(Message),
    /// Close the TCP connection.
    Close,
    Arm(Timer, Duration),
    Disarm(Timer),
    /// The session reached Established with this negotiated hold time.
    Up {
        hold_time: u16,
        peer: Open,
    },
    /// The session left Established (or failed to get there), and why.
    Down(DownReason),
    /// A malformed UPDATE RFC 7606 treats as withdraw: this speaker
    /// installs no routes, so nothing changes; the driver logs and counts it.
    Discarded(DecodeError),
}

/// Why a session left Established, or never reached it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DownReason {
    #[error("stopped")]
    Stopped,
    #[error("connection lost")]
    ConnectionLost,
    #[error("peer sent a malformed message: {0}")]
    Malformed(DecodeError),
    #[error("hold timer expired")]
    HoldTimerExpired,
    #[error("BFD session down")]
    BfdDown,
    #[error("peer sent NOTIFICATION {code}/{subcode}")]
    PeerNotification { code: u8, subcode: u8 },
    #[error("peer AS {got} is not the configured {want}")]
    WrongPeerAs { got: u32, want: u32 },
    #[error("peer does not support 4-octet AS numbers (RFC 6793)")]
    NoFourOctetAs,
    #[error("peer uses our BGP identifier")]
    SameIdentifier,
    #[error("unexpected message in state {0:?}")]
    UnexpectedMessage(State),
}

/// Session parameters.
#[derive(Clone, Debug)]
pub struct Config {
    pub my_asn: u32,
    pub peer_asn: u32,
    pub router_id: u32,
    /// Proposed hold time in seconds (0 or ≥ 3).
    pub hold_time: u16,
    /// Keepalive interval; None: a third of the negotiated hold time. Never
    /// more than that third, whatever the peer negotiated down to.
    pub keepalive: Option<Duration>,
    pub connect_retry: Duration,
    pub capabilities: Vec<Capability>,
}

/// One session's state machine.
#[derive(Debug)]
pub struct Fsm {
    cfg: Config,
    state: State,
    /// Negotiated hold time (seconds).
    hold: u16,
    /// The peer's OPEN, until the session is Established.
    pending_peer: Option<Open>,
}

/// A large hold time for OpenSent (RFC 4271 suggests 4 minutes).
const OPEN_SENT_HOLD: Duration = Duration::from_secs(240);

impl Fsm {
    pub fn new(cfg: Config) -> Self {
        Fsm {
            cfg,
            state: State::Idle,
            hold: 0,
            pending_peer: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    fn open(&self) -> Message {
        Message::Open(Open {
            asn: self.cfg.my_asn,
            hold_time: self.cfg.hold_time,
            identifier: self.cfg.router_id,
            capabilities: self.cfg.capabilities.clone(),
        })
    }

    /// Drops the session: notify the peer (if connected), close, go Idle,
    /// and retry after the connect-retry time.
    fn fail(&mut self, notify: Option<Notification>, why: DownReason) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(n) = notify {
            out.push(Action::Send(Message::Notification(n)));
        }
        out.push(Action::Close);
        out.extend([
            Action::Disarm(Timer::Hold),
            Action::Disarm(Timer::Keepalive),
        ]);
        out.push(Action::Down(why));
        out.push(Action::Arm(Timer::ConnectRetry, self.cfg.connect_retry));
        self.state = State::Idle;
        out
    }

    /// Feeds one event; returns the actions to carry out.
    pub fn handle(&mut self, ev: Event) -> Vec<Action> {
        use State::*;
        match (self.state, ev) {
            (Idle, Event::Start) | (Idle, Event::Expired(Timer::ConnectRetry)) => {
                self.state = Connect;
                vec![Action::Disarm(Timer::ConnectRetry), Action::Connect]
            }
            (Idle, _) => Vec::new(),
            (_, Event::Stop) => {
                let connected = !matches!(self.state, Connect | Active);
                let mut out = self.fail(
                    connected.then(|| ErrorCode::AdministrativeShutdown.with(Vec::new())),
                    DownReason::Stopped,
                );
                // A stop is final: no retry.
                out.retain(|a| !matches!(a, Action::Arm(Timer::ConnectRetry, _)));
                out.push(Action::Disarm(Timer::ConnectRetry));
                out
            }
            (Connect | Active, Event::TcpConnected) => {
                self.state = OpenSent;
                vec![
                    Action::Send(self.open()),
                    Action::Arm(Timer::Hold, OPEN_SENT_HOLD),
                ]
            }
            (Connect | Active, Event::TcpFailed) => {
                self.state = Active;
                vec![Action::Arm(Timer::ConnectRetry, self.cfg.connect_retry)]
            }
            (Active, Event::Expired(Timer::ConnectRetry)) => {
                self.state = Connect;
                vec![Action::Connect]
            }
            (Connect | Active, _) => Vec::new(),
            (_, Event::TcpFailed) => self.fail(None, DownReason::ConnectionLost),
            // No NOTIFICATION: the path it would take is what failed.
            (_, Event::BfdDown) => self.fail(None, DownReason::BfdDown),
            (Established, Event::Malformed(e)) if e.handling() != Handling::SessionReset => {
                // RFC 7606: the session and everything we advertise stay; the
                // message still shows the peer is alive.
                let mut out = vec![Action::Discarded(e)];
                out.extend(self.restart_hold());
                out
            }
            (_, Event::Malformed(e)) => {
                let notify = e.notification();
                self.fail(Some(notify), DownReason::Malformed(e))
            }
            (_, Event::Expired(Timer::Hold)) => self.fail(
                Some(ErrorCode::HoldTimerExpired.with(Vec::new())),
                DownReason::HoldTimerExpired,
            ),
            (_, Event::Received(Message::Notification(n))) => {
                let why = DownReason::PeerNotification {
                    code: n.code,
                    subcode: n.subcode,
                };
                self.fail(None, why)
            }
            (OpenSent, Event::Received(Message::Open(peer))) => {
                if peer.asn != self.cfg.peer_asn {
                    return self.fail(
                        Some(ErrorCode::BadPeerAs.with(Vec::new())),
                        DownReason::WrongPeerAs {
                            got: peer.asn,
                            want: self.cfg.peer_asn,
                        },
                    );
                }
                if !peer
                    .capabilities
                    .iter()
                    .any(|c| matches!(c, Capability::FourOctetAs(_)))
                {
                    // Our AS_PATHs are 4-octet only (RFC 6793); every router
                    // barelb targets supports it.
                    // Data: the capability we require (code 65, length 4).
                    return self.fail(
                        Some(ErrorCode::UnsupportedCapability.with(vec![65, 4, 0, 0, 0, 0])),
                        DownReason::NoFourOctetAs,
                    );
                }
                if peer.identifier == self.cfg.router_id {
                    return self.fail(
                        Some(ErrorCode::BadBgpIdentifier.with(Vec::new())),
                        DownReason::SameIdentifier,
                    );
                }
                self.hold = self.cfg.hold_time.min(peer.hold_time);
                self.state = OpenConfirm;
                let mut out = vec![Action::Send(Message::Keepalive)];
                out.extend(self.arm_hold_and_keepalive());
                self.pending_peer = Some(peer);
                out
            }
            (OpenConfirm, Event::Received(Message::Keepalive)) => {
                self.state = Established;
                let mut out = self.arm_hold_and_keepalive();
                if let Some(peer) = self.pending_peer.take() {
                    out.push(Action::Up {
                        hold_time: self.hold,
                        peer,
                    });
                }
                out
            }
            (OpenConfirm | Established, Event::Expired(Timer::Keepalive)) => {
                let mut out = vec![Action::Send(Message::Keepalive)];
                if self.hold > 0 {
                    out.push(Action::Arm(Timer::Keepalive, self.keepalive()));
                }
                out
            }
            (
                Established,
                Event::Received(Message::Keepalive | Message::Update(_) | Message::RouteRefresh(_)),
            ) => self.restart_hold(),
            (_, Event::Received(_)) => self.fail(
                Some(ErrorCode::FiniteStateMachineError.with(Vec::new())),
                DownReason::UnexpectedMessage(self.state),
            ),
            (_, Event::Start | Event::TcpConnected | Event::Expired(_)) => Vec::new(),
        }
    }

    /// A message from the peer restarts the hold timer (when there is one).
    fn restart_hold(&self) -> Vec<Action> {
        if self.hold > 0 {
            vec![Action::Arm(
                Timer::Hold,
                Duration::from_secs(u64::from(self.hold)),
            )]
        } else {
            Vec::new()
        }
    }

    fn keepalive(&self) -> Duration {
        let third = Duration::from_secs(u64::from(self.hold / 3).max(1));
        self.cfg
            .keepalive
            .map_or(third, |k| k.clamp(Duration::from_millis(100), third))
    }

    fn arm_hold_and_keepalive(&self) -> Vec<Action> {
        if self.hold == 0 {
            // Hold time 0: no keepalives, no hold timer (RFC 4271 §4.4).
            return vec![
                Action::Disarm(Timer::Hold),
                Action::Disarm(Timer::Keepalive),
            ];
        }
        vec![
            Action::Arm(Timer::Hold, Duration::from_secs(u64::from(self.hold))),
            Action::Arm(Timer::Keepalive, self.keepalive()),
        ]
    }
}

#[cfg(test)]
mod tests;
