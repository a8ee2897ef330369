use super::*;
use crate::bgp::codec::UpdateError;

fn cfg() -> Config {
    Config {
        my_asn: 64500,
        peer_asn: 64501,
        router_id: 0xc612_000a,
        hold_time: 9,
        keepalive: None,
        connect_retry: Duration::from_secs(1),
        capabilities: vec![Capability::FourOctetAs(64500)],
    }
}

/// The keepalive timer armed on reaching Established with `cfg`.
fn keepalive_armed(cfg: Config, peer_hold: u16) -> Duration {
    let mut f = Fsm::new(cfg);
    f.handle(Event::Start);
    f.handle(Event::TcpConnected);
    f.handle(Event::Received(peer_open(64501, 1, peer_hold)));
    let out = f.handle(Event::Received(Message::Keepalive));
    out.iter()
        .find_map(|a| match a {
            Action::Arm(Timer::Keepalive, d) => Some(*d),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no keepalive timer: {out:?}"))
}

#[test]
fn keepalive_time_is_used_below_a_third_of_the_hold_time() {
    assert_eq!(keepalive_armed(cfg(), 30), Duration::from_secs(3));
    let with = |ms| Config {
        keepalive: Some(Duration::from_millis(ms)),
        ..cfg()
    };
    assert_eq!(keepalive_armed(with(1000), 30), Duration::from_secs(1));
    assert_eq!(keepalive_armed(with(500), 30), Duration::from_millis(500));
    // Longer than a third of what was negotiated: the third wins.
    assert_eq!(keepalive_armed(with(10_000), 30), Duration::from_secs(3));
    assert_eq!(keepalive_armed(with(2000), 3), Duration::from_secs(1));
}

fn peer_open(asn: u32, id: u32, hold: u16) -> Message {
    Message::Open(Open {
        asn,
        hold_time: hold,
        identifier: id,
        capabilities: vec![Capability::FourOctetAs(asn)],
    })
}

/// Drives a session to Established; returns it.
fn established() -> Fsm {
    let mut f = Fsm::new(cfg());
    f.handle(Event::Start);
    f.handle(Event::TcpConnected);
    f.handle(Event::Received(peer_open(64501, 1, 30)));
    let out = f.handle(Event::Received(Message::Keepalive));
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Up { hold_time: 9, .. })),
        "{out:?}"
    );
    assert_eq!(f.state(), State::Established);
    f
}

#[test]
fn start_connects_and_sends_open() {
    let mut f = Fsm::new(cfg());
    assert_eq!(
        f.handle(Event::Start),
        [Action::Disarm(Timer::ConnectRetry), Action::Connect]
    );
    assert_eq!(f.state(), State::Connect);
    let out = f.handle(Event::TcpConnected);
    assert!(
        matches!(&out[0], Action::Send(Message::Open(o)) if o.asn == 64500 && o.hold_time == 9)
    );
    assert_eq!(out[1], Action::Arm(Timer::Hold, OPEN_SENT_HOLD));
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn failed_connects_retry_from_active() {
    let mut f = Fsm::new(cfg());
    f.handle(Event::Start);
    assert_eq!(
        f.handle(Event::TcpFailed),
        [Action::Arm(Timer::ConnectRetry, Duration::from_secs(1))]
    );
    assert_eq!(f.state(), State::Active);
    assert_eq!(
        f.handle(Event::Expired(Timer::ConnectRetry)),
        [Action::Connect]
    );
    assert_eq!(f.state(), State::Connect);
}

#[test]
fn open_negotiates_the_smaller_hold_time_and_keepalives_follow() {
    let mut f = Fsm::new(cfg());
    f.handle(Event::Start);
    f.handle(Event::TcpConnected);
    let out = f.handle(Event::Received(peer_open(64501, 1, 30)));
    assert_eq!(
        out,
        [
            Action::Send(Message::Keepalive),
            Action::Arm(Timer::Hold, Duration::from_secs(9)),
            Action::Arm(Timer::Keepalive, Duration::from_secs(3)),
        ]
    );
    assert_eq!(f.state(), State::OpenConfirm);
    let mut f = established();
    assert_eq!(
        f.handle(Event::Expired(Timer::Keepalive)),
        [
            Action::Send(Message::Keepalive),
            Action::Arm(Timer::Keepalive, Duration::from_secs(3))
        ]
    );
    assert_eq!(
        f.handle(Event::Received(Message::Keepalive)),
        [Action::Arm(Timer::Hold, Duration::from_secs(9))]
    );
}

#[test]
fn hold_time_zero_means_no_timers() {
    let mut f = Fsm::new(Config {
        hold_time: 0,
        ..cfg()
    });
    f.handle(Event::Start);
    f.handle(Event::TcpConnected);
    let out = f.handle(Event::Received(peer_open(64501, 1, 90)));
    assert!(
        out.contains(&Action::Disarm(Timer::Hold))
            && out.contains(&Action::Disarm(Timer::Keepalive))
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Arm(..))));
}

#[test]
fn wrong_peer_as_or_identifier_is_refused_with_the_open_error() {
    let mut f = Fsm::new(cfg());
    f.handle(Event::Start);
    f.handle(Event::TcpConnected);
    let out = f.handle(Event::Received(peer_open(65000, 1, 30)));
    assert!(
        matches!(&out[0], Action::Send(Message::Notification(n)) if (n.code, n.subcode) == (2, 2))
    );
    assert!(out.contains(&Action::Close));
    assert_eq!(f.state(), State::Idle);
    let mut f = Fsm::new(cfg());
    f.handle(Event::Start);
    f.handle(Event::TcpConnected);
    let out = f.handle(Event::Received(peer_open(64501, 0xc612_000a, 30)));
    assert!(
        matches!(&out[0], Action::Send(Message::Notification(n)) if (n.code, n.subcode) == (2, 3))
    );
}

#[test]
fn hold_timer_expiry_notifies_closes_and_retries() {
    let mut f = established();
    let out = f.handle(Event::Expired(Timer::Hold));
    assert!(matches!(&out[0], Action::Send(Message::Notification(n)) if n.code == 4));
    assert!(out.contains(&Action::Close));
    assert!(out.contains(&Action::Down(DownReason::HoldTimerExpired)));
    assert!(out.contains(&Action::Arm(Timer::ConnectRetry, Duration::from_secs(1))));
    assert_eq!(f.state(), State::Idle);
    // The retry starts over.
    assert_eq!(
        f.handle(Event::Expired(Timer::ConnectRetry))[1],
        Action::Connect
    );
}

#[test]
fn a_malformed_message_that_must_reset_gets_its_notification() {
    let mut f = established();
    let bad = DecodeError::Update {
        error: UpdateError::InvalidNetworkField,
        what: "bad prefix",
        handling: Handling::SessionReset,
    };
    let out = f.handle(Event::Malformed(bad.clone()));
    assert!(
        matches!(&out[0], Action::Send(Message::Notification(n)) if (n.code, n.subcode) == (3, 10))
    );
    assert!(out.contains(&Action::Down(DownReason::Malformed(bad))));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn an_update_treated_as_withdraw_keeps_the_session() {
    let mut f = established();
    let bad = DecodeError::Update {
        error: UpdateError::InvalidOrigin,
        what: "bad origin",
        handling: Handling::TreatAsWithdraw,
    };
    let out = f.handle(Event::Malformed(bad.clone()));
    assert_eq!(
        out,
        [
            Action::Discarded(bad),
            Action::Arm(Timer::Hold, Duration::from_secs(9))
        ]
    );
    assert_eq!(f.state(), State::Established);
}

#[test]
fn unexpected_messages_are_fsm_errors_and_notifications_end_the_session() {
    let mut f = Fsm::new(cfg());
    f.handle(Event::Start);
    f.handle(Event::TcpConnected);
    let out = f.handle(Event::Received(Message::Keepalive));
    assert!(matches!(&out[0], Action::Send(Message::Notification(n)) if n.code == 5));
    let mut f = established();
    let out = f.handle(Event::Received(Message::Notification(Notification {
        code: 6,
        subcode: 4,
        data: vec![],
    })));
    assert!(
        !out.iter().any(|a| matches!(a, Action::Send(_))),
        "never answer a NOTIFICATION"
    );
    assert!(out.contains(&Action::Down(DownReason::PeerNotification {
        code: 6,
        subcode: 4
    })));
}

#[test]
fn stop_sends_cease_and_does_not_retry() {
    let mut f = established();
    let out = f.handle(Event::Stop);
    assert!(
        matches!(&out[0], Action::Send(Message::Notification(n)) if (n.code, n.subcode) == (6, 2))
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Arm(..))));
    assert_eq!(f.state(), State::Idle);
    // Idle ignores everything but Start.
    assert!(f.handle(Event::Expired(Timer::Hold)).is_empty());
    // Stopping before the connection is up sends nothing.
    let mut g = Fsm::new(cfg());
    g.handle(Event::Start);
    assert!(
        !g.handle(Event::Stop)
            .iter()
            .any(|a| matches!(a, Action::Send(_)))
    );
}

#[test]
fn a_peer_without_four_octet_as_is_refused_with_unsupported_capability() {
    let mut f = Fsm::new(cfg());
    f.handle(Event::Start);
    f.handle(Event::TcpConnected);
    let out = f.handle(Event::Received(Message::Open(Open {
        asn: 64501,
        hold_time: 30,
        identifier: 1,
        capabilities: vec![],
    })));
    assert!(
        matches!(&out[0], Action::Send(Message::Notification(n)) if n.code == 2 && n.subcode == 7),
        "{out:?}"
    );
    assert_eq!(f.state(), State::Idle);
}
