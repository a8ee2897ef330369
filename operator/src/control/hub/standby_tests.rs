//! Standbys: every layer-2 address's runner-up is told it stands by, and
//! is where the address goes when its owner does (speaker `l2::standby`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use super::tests::{Inbox, holding, next, node, unit};
use super::*;
use barelb_control::v1::operator_message::Msg;

/// A hub with no settle period, addresses 198.51.100.1..=`units` (one
/// Service each) and `nodes`.
fn planned(units: u8, nodes: &[&str]) -> Core {
    let hub = Core::new(Metrics::new(), std::time::Duration::ZERO);
    hub.set_inputs(
        Inputs {
            units: (1..=units)
                .map(|i| unit(&format!("198.51.100.{i}")))
                .collect(),
            nodes: nodes.iter().map(|n| node(n)).collect(),
            ..Inputs::default()
        },
        "test",
    );
    hub
}

#[test]
fn each_address_s_standby_is_told_and_is_where_it_goes_when_its_owner_does() {
    let hub = planned(30, &["a", "b", "c"]);
    let mut inbox = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for n in ["a", "b", "c"] {
        let (tx, rx) = mpsc::channel(OUTBOX);
        ids.insert(n, hub.attach(n, tx));
        inbox.insert(n, rx);
    }
    // What each is told last, after every speaker is back.
    let mut owns: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut stands: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for (n, rx) in &mut inbox {
        while let Ok(m) = rx.try_recv() {
            let (o, s) = (owns.entry(n).or_default(), stands.entry(n).or_default());
            match m.unwrap().msg.unwrap() {
                Msg::Snapshot(x) => {
                    o.extend(x.l2.into_iter().map(|a| a.ip));
                    s.extend(x.l2_standby.into_iter().map(|a| (a.ip, a.owner)));
                }
                Msg::Delta(d) => {
                    o.retain(|ip| !d.l2_remove.contains(ip));
                    o.extend(d.l2_set.into_iter().map(|a| a.ip));
                    s.retain(|ip, _| !d.l2_standby_remove.contains(ip));
                    s.extend(d.l2_standby_set.into_iter().map(|a| (a.ip, a.owner)));
                }
            }
        }
    }
    for (n, s) in &stands {
        for (ip, owner) in s {
            assert_ne!(owner, n);
            assert!(
                owns[owner.as_str()].contains(ip),
                "{n} stands by for {ip} of {owner}"
            );
        }
    }
    let total: usize = stands.values().map(BTreeMap::len).sum();
    assert_eq!(total, 30, "every address has one standby");
    // a goes: each of its addresses goes to its standby.
    hub.detach("a", ids["a"], "stream-ended", Instant::now());
    for n in ["b", "c"] {
        let rx = inbox.get_mut(n).unwrap();
        let gained: BTreeSet<String> = match next(rx) {
            Msg::Delta(d) => d.l2_set.into_iter().map(|a| a.ip).collect(),
            Msg::Snapshot(_) => panic!("delta expected"),
        };
        let expected: BTreeSet<String> = stands[n]
            .iter()
            .filter(|(_, o)| *o == "a")
            .map(|(ip, _)| ip.clone())
            .collect();
        assert_eq!(gained, expected, "{n}");
    }
}

#[test]
fn a_standby_that_took_an_address_over_gives_it_back_and_its_owner_announces_again() {
    let hub = planned(1, &["a", "b"]);
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    hub.attach("a", ta);
    hub.attach("b", tb);
    let owner = |rx: &mut Inbox| {
        let mut last = None;
        while let Ok(m) = rx.try_recv() {
            last = Some(m.unwrap().msg.unwrap());
        }
        last
    };
    let (la, lb) = (owner(&mut ra), owner(&mut rb));
    // One of them owns it, the other stands by.
    let (owner_rx, standby, standby_id) = match (&la, &lb) {
        (Some(Msg::Snapshot(s)), _) if s.l2.len() == 1 => (&mut ra, "b", 2),
        _ => (&mut rb, "a", 1),
    };
    // The standby's stream drops and it comes back holding the address.
    hub.detach(standby, standby_id, "stream-ended", Instant::now());
    let (tx, mut rx) = mpsc::channel(OUTBOX);
    hub.attach_holding(standby, tx, holding(1..=1));
    let Msg::Snapshot(snap) = next(&mut rx) else {
        panic!("snapshot expected")
    };
    assert!(snap.l2.is_empty(), "the standby lets it go");
    assert_eq!(snap.l2_standby.len(), 1, "and stands by again");
    let Msg::Delta(d) = next(owner_rx) else {
        panic!("delta expected")
    };
    assert_eq!(d.l2_set.len(), 1, "the owner is given it again");
    assert!(!d.l2_set[0].quiet, "and announces it");
}

#[test]
fn the_owner_gives_back_what_it_kept_meanwhile_while_announcing_again_what_it_owns() {
    let hub = planned(20, &["a", "b"]);
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    hub.attach("a", ta);
    let idb = hub.attach("b", tb);
    while ra.try_recv().is_ok() {}
    let Msg::Snapshot(sb) = next(&mut rb) else {
        panic!("snapshot expected")
    };
    let b_own: BTreeSet<String> = sb.l2.iter().map(|x| x.ip.clone()).collect();
    let a_own: BTreeSet<String> = sb.l2_standby.iter().map(|x| x.ip.clone()).collect();
    // b is cut off: a gets everything meanwhile; b took one of a's over.
    hub.detach("b", idb, "stream-ended", Instant::now());
    while ra.try_recv().is_ok() {}
    let taken = a_own.iter().next().unwrap().clone();
    let mut held: BTreeSet<IpAddr> = b_own.iter().map(|ip| ip.parse().unwrap()).collect();
    held.insert(taken.parse().unwrap());
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    hub.attach_holding("b", tb, held);
    let Msg::Delta(d) = next(&mut ra) else {
        panic!("delta expected")
    };
    let removed: BTreeSet<String> = d.l2_remove.iter().cloned().collect();
    assert_eq!(removed, b_own, "a lets b's own go");
    let again: Vec<&str> = d.l2_set.iter().map(|x| x.ip.as_str()).collect();
    assert_eq!(
        again,
        [taken.as_str()],
        "and announces again the one b held"
    );
    assert!(!d.l2_set[0].quiet);
    let Msg::Snapshot(sb) = next(&mut rb) else {
        panic!("snapshot expected")
    };
    let back: BTreeSet<String> = sb.l2.iter().map(|x| x.ip.clone()).collect();
    assert_eq!(back, b_own);
}
