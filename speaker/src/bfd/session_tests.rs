use std::time::{Duration, Instant};

use super::{Config, Discard, Output, SLOW_TX, Session};
use crate::bfd::codec::{Control, Diag, State, decode, encode};

const MS: Duration = Duration::from_millis(1);

fn config(ms: u64, mult: u8) -> Config {
    Config {
        min_tx: MS * ms as u32,
        min_rx: MS * ms as u32,
        multiplier: mult,
    }
}

/// The packets a tick at `now` sends.
fn sent(s: &mut Session, now: Instant) -> Vec<Control> {
    s.tick(now, 25)
        .into_iter()
        .filter_map(|o| match o {
            Output::Send(c) => Some(c),
            Output::Changed { .. } => None,
        })
        .collect()
}

fn changes(out: &[Output]) -> Vec<(State, State, Diag)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Changed { from, to, diag } => Some((*from, *to, *diag)),
            Output::Send(_) => None,
        })
        .collect()
}

/// Two sessions exchanging every packet they send, through the codec,
/// until both are Up; returns the time reached.
fn bring_up(a: &mut Session, b: &mut Session, mut now: Instant) -> Instant {
    for _ in 0..20 {
        exchange(a, b, now);
        exchange(b, a, now);
        if a.state() == State::Up && b.state() == State::Up {
            return now;
        }
        now += SLOW_TX;
    }
    panic!("not Up: {:?} {:?}", a.state(), b.state());
}

/// `from`'s due packets to `to` (through the codec), and any Final back.
fn exchange(from: &mut Session, to: &mut Session, now: Instant) {
    for p in sent(from, now) {
        let wire = decode(&encode(&p)).unwrap();
        for o in to.receive(&wire, now).unwrap() {
            if let Output::Send(f) = o {
                from.receive(&f, now).unwrap();
            }
        }
    }
}

#[test]
fn three_way_handshake_down_init_up() {
    let t = Instant::now();
    let mut a = Session::new(config(300, 3), 1, t);
    let mut b = Session::new(config(300, 3), 2, t);
    // a's first packet: Down, Your Discriminator 0, and a second between
    // packets while not Up.
    let p = sent(&mut a, t).remove(0);
    assert_eq!((p.state, p.your_discr, p.my_discr), (State::Down, 0, 1));
    assert_eq!(p.desired_min_tx, SLOW_TX);
    let out = b.receive(&p, t).unwrap();
    assert_eq!(changes(&out), [(State::Down, State::Init, Diag::None)]);
    let q = sent(&mut b, t).remove(0);
    assert_eq!((q.state, q.your_discr), (State::Init, 1));
    let out = a.receive(&q, t).unwrap();
    assert_eq!(changes(&out), [(State::Down, State::Up, Diag::None)]);
    let r = sent(&mut a, t + SLOW_TX).remove(0);
    // Up: the configured interval, announced with a Poll.
    assert_eq!((r.state, r.poll), (State::Up, true));
    assert_eq!(r.desired_min_tx, MS * 300);
    let out = b.receive(&r, t + SLOW_TX).unwrap();
    assert_eq!(changes(&out), [(State::Init, State::Up, Diag::None)]);
    // The Poll is answered with a Final (never both bits), which ends a's
    // Poll Sequence.
    let fin = match out.last() {
        Some(Output::Send(f)) => *f,
        other => panic!("{other:?}"),
    };
    assert!(fin.final_ && !fin.poll);
    a.receive(&fin, t + SLOW_TX).unwrap();
    assert!(!sent(&mut a, t + SLOW_TX + MS * 300).remove(0).poll);
}

#[test]
fn negotiated_intervals_and_detection_time() {
    let t = Instant::now();
    let mut a = Session::new(config(300, 3), 1, t);
    let mut b = Session::new(
        Config {
            min_tx: MS * 500,
            min_rx: MS * 200,
            multiplier: 5,
        },
        2,
        t,
    );
    bring_up(&mut a, &mut b, t);
    // a sends at max(300, b's min rx 200) = 300; detects b after b's
    // multiplier 5 × max(a's min rx 300, b's tx 500) = 2.5 s.
    assert_eq!(a.negotiated(), (MS * 300, MS * 2500));
    // b sends at max(500, 300) = 500; detects a after 3 × max(200, 300).
    assert_eq!(b.negotiated(), (MS * 500, MS * 900));
}

#[test]
fn silence_for_the_detection_time_brings_it_down_and_forgets_the_remote() {
    let t = Instant::now();
    let mut a = Session::new(config(300, 3), 1, t);
    let mut b = Session::new(config(300, 3), 2, t);
    let up = bring_up(&mut a, &mut b, t);
    let last = up; // the last packet a took from b
    assert!(changes(&a.tick(last + MS * 899, 0)).is_empty());
    assert_eq!(a.next_deadline().min(last + MS * 900), a.next_deadline());
    let out = a.tick(last + MS * 900, 0);
    assert_eq!(
        changes(&out),
        [(State::Up, State::Down, Diag::ControlDetectionTimeExpired)]
    );
    let p = sent(&mut a, last + MS * 2000).remove(0);
    assert_eq!(
        (p.state, p.your_discr, p.diag),
        (State::Down, 0, Diag::ControlDetectionTimeExpired)
    );
    assert_eq!(p.desired_min_tx, SLOW_TX, "not Up: slow again");
}

#[test]
fn the_remote_going_down_or_admin_down_brings_it_down() {
    let t = Instant::now();
    for remote in [State::Down, State::AdminDown] {
        let mut a = Session::new(config(300, 3), 1, t);
        let mut b = Session::new(config(300, 3), 2, t);
        let now = bring_up(&mut a, &mut b, t);
        let mut p = sent(&mut b, now + SLOW_TX).remove(0);
        p.state = remote;
        let out = a.receive(&p, now + SLOW_TX).unwrap();
        assert_eq!(
            changes(&out),
            [(State::Up, State::Down, Diag::NeighborSignaledSessionDown)]
        );
    }
}

#[test]
fn admin_down_is_sent_and_ignores_what_arrives_until_enabled() {
    let t = Instant::now();
    let mut a = Session::new(config(300, 3), 1, t);
    let mut b = Session::new(config(300, 3), 2, t);
    let now = bring_up(&mut a, &mut b, t);
    let out = a.set_admin_down(true, now);
    assert_eq!(
        changes(&out),
        [(State::Up, State::AdminDown, Diag::AdministrativelyDown)]
    );
    let p = sent(&mut a, now).remove(0);
    assert_eq!(p.state, State::AdminDown);
    let out = b.receive(&p, now).unwrap();
    assert_eq!(
        changes(&out),
        [(State::Up, State::Down, Diag::NeighborSignaledSessionDown)]
    );
    let q = sent(&mut b, now + SLOW_TX).remove(0);
    assert_eq!(a.receive(&q, now + SLOW_TX), Err(Discard::AdminDown));
    // No detection while administratively down.
    assert!(changes(&a.tick(now + SLOW_TX * 60, 0)).is_empty());
    a.set_admin_down(false, now + SLOW_TX * 60);
    assert_eq!(a.state(), State::Down);
    bring_up(&mut a, &mut b, now + SLOW_TX * 61);
}

#[test]
fn packets_for_another_session_or_without_a_discriminator_are_discarded() {
    let t = Instant::now();
    let mut a = Session::new(config(300, 3), 7, t);
    let mut b = Session::new(config(300, 3), 8, t);
    let now = bring_up(&mut a, &mut b, t);
    let mut p = b.packet(false);
    p.your_discr = 99;
    assert_eq!(a.receive(&p, now), Err(Discard::WrongDiscr(99)));
    p.your_discr = 0;
    assert_eq!(a.receive(&p, now), Err(Discard::ZeroYourDiscr(State::Up)));
    assert_eq!(a.state(), State::Up, "discarded packets change nothing");
}

#[test]
fn transmission_is_jittered_within_75_to_100_percent() {
    // Down (no detection timer): the interval is the slow second.
    let t = Instant::now();
    for (rand, percent) in [(0, 75), (25, 100), (51, 100), (13, 88)] {
        let mut a = Session::new(config(300, 3), 1, t);
        assert_eq!(sent_with(&mut a, t, rand), 1);
        assert_eq!(
            a.next_deadline() - t,
            SLOW_TX * percent / 100,
            "rand {rand}"
        );
    }
    // With a multiplier of 1, at most 90 %.
    let mut one = Session::new(config(300, 1), 3, t);
    sent_with(&mut one, t, 15);
    assert_eq!(one.next_deadline() - t, SLOW_TX * 90 / 100);
}

fn sent_with(s: &mut Session, now: Instant, rand: u32) -> usize {
    s.tick(now, rand)
        .iter()
        .filter(|o| matches!(o, Output::Send(_)))
        .count()
}

#[test]
fn a_slower_interval_waits_for_the_poll_sequence_to_end() {
    let t = Instant::now();
    let mut a = Session::new(config(300, 3), 1, t);
    let mut b = Session::new(config(300, 3), 2, t);
    let now = bring_up(&mut a, &mut b, t);
    a.set_config(config(1000, 3), now);
    let p = sent(&mut a, now).remove(0);
    assert!(p.poll);
    assert_eq!(p.desired_min_tx, MS * 1000, "the new value is advertised");
    assert_eq!(a.negotiated().0, MS * 300, "but not used before the Final");
    let out = b.receive(&p, now).unwrap();
    let Some(Output::Send(fin)) = out.last() else {
        panic!("{out:?}")
    };
    a.receive(fin, now).unwrap();
    assert_eq!(a.negotiated().0, MS * 1000);
}
