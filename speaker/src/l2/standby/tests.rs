use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// node-a owns .1 and .2, node-b owns .3 (and an IPv6 address).
fn standbys() -> BTreeMap<IpAddr, Standing> {
    let s = |owner: &str| Standing {
        owner: owner.into(),
        interfaces: vec![],
    };
    [
        (ip("198.51.100.1"), s("node-a")),
        (ip("198.51.100.2"), s("node-a")),
        (ip("198.51.100.3"), s("node-b")),
        (ip("2001:db8::3"), s("node-b")),
    ]
    .into()
}

/// Probes every `FAST_PROBE` from `t0` to `t0 + until`, node-b answering
/// each, the LAN heard throughout; returns the takeovers seen.
fn run(w: &mut Watch, t0: Instant, until: Duration, answer_a: bool) -> BTreeSet<IpAddr> {
    let sb = standbys();
    let mut taken = BTreeSet::new();
    let mut t = t0;
    while t <= t0 + until {
        for p in w.probes(&sb, t) {
            if p == ip("198.51.100.3") || answer_a {
                w.answered(&p, &sb, t + Duration::from_millis(2));
            }
        }
        taken.extend(w.takeovers(&sb, t + Duration::from_millis(5)));
        t += FAST_PROBE;
    }
    taken
}

#[test]
fn nothing_is_probed_or_taken_while_connected() {
    let mut w = Watch::default();
    let now = Instant::now();
    assert!(w.probes(&standbys(), now).is_empty());
    w.heard_lan(now);
    assert!(
        w.takeovers(&standbys(), now + Duration::from_secs(60))
            .is_empty()
    );
}

#[test]
fn one_probe_per_owner_at_its_pace() {
    let mut w = Watch::default();
    let t0 = Instant::now();
    w.away(t0);
    assert_eq!(
        w.probes(&standbys(), t0),
        [ip("198.51.100.1"), ip("198.51.100.3")]
    );
    assert!(w.probes(&standbys(), t0 + FAST_PROBE / 2).is_empty());
    assert_eq!(w.probes(&standbys(), t0 + FAST_PROBE).len(), 2);
    let late = t0 + FAST_FOR;
    assert_eq!(w.probes(&standbys(), late).len(), 2);
    assert!(w.probes(&standbys(), late + FAST_PROBE).is_empty());
    assert_eq!(w.probes(&standbys(), late + SLOW_PROBE).len(), 2);
}

#[test]
fn a_silent_owner_s_addresses_are_taken_once_the_others_answer() {
    let mut w = Watch::default();
    let t0 = Instant::now();
    w.away(t0);
    let taken = run(&mut w, t0, Duration::from_secs(3), false);
    assert_eq!(taken, [ip("198.51.100.1"), ip("198.51.100.2")].into());
    // Within about SILENCE of the loss, not sooner.
    let mut w = Watch::default();
    w.away(t0);
    assert!(run(&mut w, t0, SILENCE - FAST_PROBE, false).is_empty());
}

#[test]
fn owners_that_answer_keep_their_addresses() {
    let mut w = Watch::default();
    let t0 = Instant::now();
    w.away(t0);
    assert!(run(&mut w, t0, Duration::from_secs(60), true).is_empty());
}

#[test]
fn a_standby_that_hears_nobody_takes_nothing() {
    // Cut off itself (its own node blackholed): every owner is silent,
    // and so is the rest of the LAN.
    let sb = standbys();
    let mut w = Watch::default();
    let t0 = Instant::now();
    w.away(t0);
    let mut t = t0;
    while t < t0 + Duration::from_secs(10) {
        w.probes(&sb, t);
        assert!(w.takeovers(&sb, t).is_empty());
        t += FAST_PROBE;
    }
    // Other hosts heard again, but long ago: still nothing.
    w.heard_lan(t0);
    assert!(w.takeovers(&sb, t).is_empty());
    // Heard now: the silent owners' addresses go.
    w.heard_lan(t);
    assert_eq!(w.takeovers(&sb, t).len(), 4);
}

#[test]
fn a_reconnect_forgets_what_was_heard_and_counted() {
    let sb = standbys();
    let mut w = Watch::default();
    let t0 = Instant::now();
    w.away(t0);
    for i in 0..5 {
        w.probes(&sb, t0 + FAST_PROBE * i);
    }
    w.connected();
    assert!(!w.is_away());
    let t1 = t0 + Duration::from_secs(2);
    w.away(t1);
    w.heard_lan(t1);
    assert!(
        w.takeovers(&sb, t1).is_empty(),
        "the silence counts from the new loss"
    );
}
