use std::collections::BTreeSet;

use barelb_control::v1::operator_message::Msg;

use super::*;
use crate::metrics::PeerStateLabels;
use barelb_core::planner::How;
use std::time::Instant;

pub(super) fn unit(ip: &str) -> Unit {
    Unit {
        ips: [ip.parse().unwrap()].into(),
        how: How::L2 {
            node_selector: None,
            interfaces: vec![],
        },
        local: false,
        has_ready_endpoints: true,
        endpoint_nodes: BTreeSet::new(),
    }
}

pub(super) fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        labels: Default::default(),
        ready: true,
        connected: false,
        link_up: true,
    }
}

pub(super) type Inbox = mpsc::Receiver<Result<OperatorMessage, tonic::Status>>;

pub(super) fn next(rx: &mut Inbox) -> Msg {
    rx.try_recv().expect("a message").unwrap().msg.unwrap()
}

pub(super) fn owned(m: &Msg) -> Vec<String> {
    match m {
        Msg::Snapshot(s) => s.l2.iter().map(|a| a.ip.clone()).collect(),
        Msg::Delta(d) => d.l2_set.iter().map(|a| a.ip.clone()).collect(),
    }
}

#[test]
fn speakers_get_a_snapshot_then_deltas_and_a_dead_speakers_addresses_move() {
    let metrics = Metrics::new();
    let hub = Core::new(metrics.clone(), std::time::Duration::ZERO);
    let units: Vec<Unit> = (1..=20).map(|i| unit(&format!("198.51.100.{i}"))).collect();
    hub.set_inputs(
        Inputs {
            units,
            nodes: vec![node("a"), node("b")],
            ..Inputs::default()
        },
        "test",
    );
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    let ida = hub.attach("a", ta);
    // Alone, a owns everything.
    let first = next(&mut ra);
    assert!(matches!(first, Msg::Snapshot(ref s) if s.generation == 1));
    assert_eq!(owned(&first).len(), 20);
    hub.attach("b", tb);
    let b_snap = next(&mut rb);
    let b_has = owned(&b_snap);
    assert!(!b_has.is_empty() && b_has.len() < 20, "{b_has:?}");
    // a is told to drop exactly what b took.
    let Msg::Delta(d) = next(&mut ra) else {
        panic!("delta expected")
    };
    assert_eq!(d.generation, 2);
    let mut removed = d.l2_remove.clone();
    removed.sort();
    let mut took = b_has.clone();
    took.sort();
    assert_eq!(removed, took);
    // a's stream ends: b gets everything; one failover per moved address.
    hub.detach("a", ida, "stream-ended", Instant::now());
    let Msg::Delta(d) = next(&mut rb) else {
        panic!("delta expected")
    };
    assert_eq!(d.l2_set.len(), 20 - b_has.len());
    // a is gone: b announces what it takes, so clients move at once.
    assert!(d.l2_set.iter().all(|a| !a.quiet));
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(&format!(
            "barelb_failovers_total{{reason=\"stream-ended\"}} {}",
            20 - b_has.len()
        )),
        "{text}"
    );
    // A stale detach (old connection id) changes nothing.
    hub.detach("b", 999, "stream-ended", Instant::now());
    assert!(rb.try_recv().is_err());
}

#[test]
fn a_link_down_moves_addresses_away_and_back() {
    let metrics = Metrics::new();
    let hub = Core::new(metrics.clone(), std::time::Duration::ZERO);
    hub.set_inputs(
        Inputs {
            units: vec![unit("198.51.100.1")],
            nodes: vec![node("a"), node("b")],
            ..Inputs::default()
        },
        "test",
    );
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    let ida = hub.attach("a", ta);
    let idb = hub.attach("b", tb);
    while ra.try_recv().is_ok() {}
    while rb.try_recv().is_ok() {}
    let owner = hub.plans().borrow().l2[&"198.51.100.1".parse().unwrap()]
        .node
        .clone();
    let (id, rx_other) = if owner == "a" {
        (ida, &mut rb)
    } else {
        (idb, &mut ra)
    };
    let gauge = |name: &str, node: &str| {
        let text = metrics.encode().unwrap();
        let line = format!("barelb_control_speaker_{name}{{node=\"{node}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line).map(str::to_string))
            .unwrap_or_else(|| panic!("{line} in {text}"))
    };
    assert_eq!(gauge("link_up", &owner), "1");
    assert_eq!(gauge("addresses", &owner), "1");
    hub.link(&owner, id, false);
    assert_eq!(owned(&next(rx_other)), ["198.51.100.1"]);
    assert_ne!(
        hub.plans().borrow().l2[&"198.51.100.1".parse().unwrap()].node,
        owner
    );
    assert_eq!(gauge("link_up", &owner), "0");
    assert_eq!(gauge("addresses", &owner), "0");
    hub.detach(&owner, id, "stream-ended", Instant::now());
    assert!(
        !metrics
            .encode()
            .unwrap()
            .contains(&format!("node=\"{owner}\"")),
        "a gone speaker's series go with it"
    );
}

pub(super) fn ips(range: std::ops::RangeInclusive<u8>) -> Vec<String> {
    range.map(|i| format!("198.51.100.{i}")).collect()
}

pub(super) fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A new leader with a long settle period, 12 addresses and nodes a, b, c.
fn settling_hub(metrics: &Arc<Metrics>) -> Core {
    let hub = Core::new(metrics.clone(), std::time::Duration::from_secs(3600));
    hub.set_inputs(
        Inputs {
            units: (1..=12).map(|i| unit(&format!("198.51.100.{i}"))).collect(),
            nodes: vec![node("a"), node("b"), node("c")],
            ..Inputs::default()
        },
        "test",
    );
    hub
}

pub(super) fn holding(range: std::ops::RangeInclusive<u8>) -> BTreeSet<IpAddr> {
    ips(range).iter().map(|ip| ip.parse().unwrap()).collect()
}

#[test]
fn a_new_leader_keeps_each_address_where_it_is_and_moves_nothing_unclaimed_before_settling() {
    let metrics = Metrics::new();
    let hub = settling_hub(&metrics);
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    // Each gets back at once, quietly, exactly what it said it holds; 11
    // and 12 (claimed by nobody yet) wait, as a alone would take them all.
    hub.attach_holding("a", ta, holding(1..=5));
    let Msg::Snapshot(sa) = next(&mut ra) else {
        panic!("snapshot expected")
    };
    assert_eq!(
        sa.l2.iter().map(|x| x.ip.clone()).collect::<Vec<_>>(),
        sorted(ips(1..=5))
    );
    assert!(sa.l2.iter().all(|x| x.quiet));
    hub.attach_holding("b", tb, holding(6..=10));
    assert_eq!(sorted(owned(&next(&mut rb))), sorted(ips(6..=10)));
    // a learns only which of b's addresses it stands by for.
    let Msg::Delta(d) = next(&mut ra) else {
        panic!("delta expected")
    };
    assert!(d.l2_set.is_empty() && d.l2_remove.is_empty());
    assert!(d.l2_standby_set.iter().all(|s| s.owner == "b"));
    assert!(ra.try_recv().is_err(), "a is told nothing more");
    assert!(
        !metrics
            .encode()
            .unwrap()
            .contains("barelb_failovers_total{")
    );
}

#[test]
fn a_failover_while_a_new_leader_settles_is_as_fast_as_any() {
    let metrics = Metrics::new();
    let hub = settling_hub(&metrics);
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    hub.attach_holding("a", ta, holding(1..=5));
    let idb = hub.attach_holding("b", tb, holding(6..=10));
    while ra.try_recv().is_ok() {}
    while rb.try_recv().is_ok() {}
    // b's node dies before c is back: a takes b's addresses now, announced.
    hub.detach("b", idb, "stream-ended", Instant::now());
    let Msg::Delta(d) = next(&mut ra) else {
        panic!("delta expected")
    };
    assert_eq!(
        sorted(d.l2_set.iter().map(|x| x.ip.clone()).collect()),
        sorted(ips(6..=10))
    );
    assert!(d.l2_set.iter().all(|x| !x.quiet));
    assert!(
        metrics
            .encode()
            .unwrap()
            .contains("barelb_failovers_total{reason=\"stream-ended\"} 5")
    );
}

#[test]
fn a_new_leader_settles_as_soon_as_every_ready_nodes_speaker_is_back() {
    let metrics = Metrics::new();
    let hub = settling_hub(&metrics);
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    let (tc, mut rc) = mpsc::channel(OUTBOX);
    hub.attach("a", ta);
    hub.attach("b", tb);
    // Nothing was claimed: nothing is handed out yet.
    assert!(owned(&next(&mut ra)).is_empty() && owned(&next(&mut rb)).is_empty());
    hub.attach("c", tc);
    // All three are back: the full plan goes out without waiting an hour.
    let mut all: Vec<String> = owned(&next(&mut rc));
    for rx in [&mut ra, &mut rb] {
        while let Ok(m) = rx.try_recv() {
            all.extend(owned(&m.unwrap().msg.unwrap()));
        }
    }
    assert_eq!(sorted(all), sorted(ips(1..=12)));
    assert_eq!(hub.plans().borrow().l2.len(), 12);
}

#[test]
fn a_new_leader_does_not_wait_for_nodes_excluded_from_load_balancers() {
    let hub = Core::new(Metrics::new(), std::time::Duration::from_secs(3600));
    let mut control_plane = node("cp");
    control_plane
        .labels
        .insert(barelb_core::planner::EXCLUDE_LABEL.into(), String::new());
    hub.set_inputs(
        Inputs {
            units: (1..=4).map(|i| unit(&format!("198.51.100.{i}"))).collect(),
            nodes: vec![node("a"), control_plane],
            ..Inputs::default()
        },
        "test",
    );
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    hub.attach("a", ta);
    // The excluded node runs no speaker: a alone is everyone, so the plan
    // goes out now rather than after the hour.
    assert_eq!(sorted(owned(&next(&mut ra))), sorted(ips(1..=4)));
    assert_eq!(hub.plans().borrow().l2.len(), 4);
}

#[test]
fn after_settling_a_lost_speaker_still_fails_over() {
    let hub = Core::new(Metrics::new(), std::time::Duration::from_secs(60));
    hub.set_inputs(
        Inputs {
            units: vec![unit("198.51.100.1")],
            nodes: vec![node("a"), node("b")],
            ..Inputs::default()
        },
        "test",
    );
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    let ida = hub.attach("a", ta);
    let idb = hub.attach("b", tb);
    while ra.try_recv().is_ok() {}
    while rb.try_recv().is_ok() {}
    let owner = hub.plans().borrow().l2[&"198.51.100.1".parse().unwrap()]
        .node
        .clone();
    let (lost_id, rx) = if owner == "a" {
        (ida, &mut rb)
    } else {
        (idb, &mut ra)
    };
    hub.detach(&owner, lost_id, "stream-ended", Instant::now());
    assert_eq!(owned(&next(rx)), ["198.51.100.1"]);
}

#[test]
fn a_speaker_dropped_for_being_slow_is_no_longer_counted_as_connected() {
    let metrics = Metrics::new();
    let hub = Core::new(metrics.clone(), std::time::Duration::ZERO);
    let inputs = |n: u8| Inputs {
        units: (1..=n).map(|i| unit(&format!("198.51.100.{i}"))).collect(),
        nodes: vec![node("fast"), node("slow")],
        ..Inputs::default()
    };
    hub.set_inputs(inputs(4), "test");
    let (fast_tx, mut fast_rx) = mpsc::channel(OUTBOX);
    // Room for its snapshot only: the next message finds the outbox full.
    let (slow_tx, _slow_rx) = mpsc::channel(1);
    hub.attach("fast", fast_tx);
    hub.attach("slow", slow_tx);
    assert_eq!(metrics.speakers_connected.get(), 2);
    for n in 5..=12 {
        hub.set_inputs(inputs(n), "test");
        while fast_rx.try_recv().is_ok() {}
    }
    assert_eq!(metrics.speakers_connected.get(), 1);
}

#[test]
fn reported_bgp_sessions_are_counted_per_peer_and_state_while_connected() {
    let metrics = Metrics::new();
    let hub = Core::new(metrics.clone(), std::time::Duration::ZERO);
    let (ta, _ra) = mpsc::channel(OUTBOX);
    let (tb, _rb) = mpsc::channel(OUTBOX);
    let a = hub.attach("a", ta);
    let b = hub.attach("b", tb);
    let sessions = |states: &[(&str, &str)]| {
        states
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    };
    hub.sessions(
        "a",
        a,
        sessions(&[("tor", "Established"), ("edge", "Active")]),
    );
    hub.sessions("b", b, sessions(&[("tor", "Established")]));
    let gauge = |peer: &str, state: &str| {
        metrics
            .bgp_sessions
            .get_or_create(&PeerStateLabels {
                peer: peer.into(),
                state: state.into(),
            })
            .get()
    };
    assert_eq!(gauge("tor", "Established"), 2);
    assert_eq!(gauge("edge", "Active"), 1);
    // A stale stream's report is ignored; a gone speaker's sessions go.
    hub.sessions("a", a + 100, sessions(&[]));
    assert_eq!(gauge("edge", "Active"), 1);
    hub.detach("a", a, "stream-ended", Instant::now());
    assert_eq!(gauge("tor", "Established"), 1);
    assert!(!metrics.encode().unwrap().contains("peer=\"edge\""));
}

#[test]
fn a_leaving_speaker_lets_go_only_after_the_next_owner_applied_its_addresses() {
    let metrics = Metrics::new();
    let hub = Core::new(metrics.clone(), std::time::Duration::ZERO);
    let units: Vec<Unit> = (1..=20).map(|i| unit(&format!("198.51.100.{i}"))).collect();
    hub.set_inputs(
        Inputs {
            units,
            nodes: vec![node("a"), node("b")],
            ..Inputs::default()
        },
        "test",
    );
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    let ida = hub.attach("a", ta);
    let idb = hub.attach("b", tb);
    let mut a_has: BTreeSet<String> = owned(&next(&mut ra)).into_iter().collect();
    let Msg::Delta(d) = next(&mut ra) else {
        panic!("delta expected")
    };
    for ip in &d.l2_remove {
        a_has.remove(ip);
    }
    assert!(!a_has.is_empty());
    let _ = next(&mut rb);
    hub.ack("a", ida, 2, "");
    hub.ack("b", idb, 1, "");

    hub.leaving("a", ida);
    // b takes over first; a hears nothing yet and keeps answering.
    let Msg::Delta(d) = next(&mut rb) else {
        panic!("delta expected")
    };
    let took: BTreeSet<String> = d.l2_set.iter().map(|a| a.ip.clone()).collect();
    assert_eq!(took, a_has);
    // a's node still forwards: b takes over without gratuitous announcements.
    assert!(d.l2_set.iter().all(|a| a.quiet), "{:?}", d.l2_set);
    assert!(ra.try_recv().is_err(), "a was released before b applied");
    // A second Leaving (after a reconnect) changes nothing.
    hub.leaving("a", ida);
    assert!(rb.try_recv().is_err());
    // b applied: now a drops everything.
    hub.ack("b", idb, d.generation, "");
    let Msg::Delta(d) = next(&mut ra) else {
        panic!("delta expected")
    };
    assert!(d.l2_set.is_empty());
    let removed: BTreeSet<String> = d.l2_remove.iter().cloned().collect();
    assert_eq!(removed, a_has);
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(&format!(
            "barelb_failovers_total{{reason=\"speaker-leaving\"}} {}",
            a_has.len()
        )),
        "{text}"
    );
}

#[test]
fn a_new_leaders_snapshot_gives_back_quietly_what_a_speaker_already_holds() {
    let hub = Core::new(Metrics::new(), std::time::Duration::ZERO);
    hub.set_inputs(
        Inputs {
            units: vec![unit("198.51.100.1"), unit("198.51.100.2")],
            nodes: vec![node("a")],
            ..Inputs::default()
        },
        "test",
    );
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let held: BTreeSet<IpAddr> = ["198.51.100.1".parse().unwrap()].into();
    let ida = hub.attach_holding("a", ta, held);
    let Msg::Snapshot(s) = next(&mut ra) else {
        panic!("snapshot expected")
    };
    let quiet: Vec<(String, bool)> = s.l2.iter().map(|a| (a.ip.clone(), a.quiet)).collect();
    assert_eq!(
        quiet,
        [
            ("198.51.100.1".to_string(), true),
            ("198.51.100.2".to_string(), false)
        ]
    );
    // Later gains are announced: what it held counts for the first message only.
    hub.set_inputs(
        Inputs {
            units: vec![
                unit("198.51.100.1"),
                unit("198.51.100.2"),
                unit("198.51.100.3"),
            ],
            nodes: vec![node("a")],
            ..Inputs::default()
        },
        "test",
    );
    let Msg::Delta(d) = next(&mut ra) else {
        panic!("delta expected")
    };
    assert!(d.l2_set.iter().all(|a| !a.quiet));
    let _ = ida;
}

#[test]
fn a_speaker_leaving_while_a_new_leader_settles_hands_over_quietly() {
    // A leader change while a speaker is stopping (a rolling upgrade of
    // both); c is not back, so the leader is still settling.
    let hub = Core::new(Metrics::new(), std::time::Duration::from_secs(3600));
    hub.set_inputs(
        Inputs {
            units: vec![unit("198.51.100.1")],
            nodes: vec![node("a"), node("b"), node("c")],
            ..Inputs::default()
        },
        "test",
    );
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    let held: BTreeSet<IpAddr> = ["198.51.100.1".parse().unwrap()].into();
    let ida = hub.attach_holding("a", ta, held);
    assert_eq!(owned(&next(&mut ra)), ["198.51.100.1"]);
    let idb = hub.attach("b", tb);
    assert!(owned(&next(&mut rb)).is_empty());
    hub.leaving("a", ida);
    let Msg::Delta(d) = next(&mut rb) else {
        panic!("delta expected")
    };
    // a still answers and its node forwards: b takes over without announcing.
    let got: Vec<(String, bool)> = d.l2_set.iter().map(|a| (a.ip.clone(), a.quiet)).collect();
    assert_eq!(got, [("198.51.100.1".to_string(), true)]);
    assert!(ra.try_recv().is_err(), "a was released before b applied");
    hub.ack("b", idb, d.generation, "");
    let Msg::Delta(d) = next(&mut ra) else {
        panic!("delta expected")
    };
    assert_eq!(d.l2_remove, ["198.51.100.1"]);
}

/// Waits (up to 5 s) for the hub's thread to put a message in `rx`.
fn arrives(rx: &mut Inbox) -> Msg {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match rx.try_recv() {
            Ok(m) => return m.unwrap().msg.unwrap(),
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("nothing arrived: {e}"),
        }
    }
}

/// Waits (up to 5 s) until the hub's settled plan satisfies `f`.
fn plan_until(hub: &Hub, what: &str, f: impl Fn(&Plan) -> bool) {
    let plans = hub.plans();
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while !f(&plans.borrow()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", plans.borrow());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_hubs_thread_carries_out_commands_in_order() {
    let hub = Hub::new(Metrics::new(), std::time::Duration::ZERO).unwrap();
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    hub.set_inputs(
        Inputs {
            units: (1..=20).map(|i| unit(&format!("198.51.100.{i}"))).collect(),
            nodes: vec![node("a"), node("b")],
            ..Inputs::default()
        },
        "test",
    );
    let ida = hub.attach("a", ta, Arrival::default());
    let idb = hub.attach("b", tb, Arrival::default());
    assert_ne!(ida, idb);
    assert!(matches!(arrives(&mut ra), Msg::Snapshot(_)));
    assert!(matches!(arrives(&mut rb), Msg::Snapshot(_)));
    plan_until(&hub, "20 addresses over both nodes", |p| {
        p.l2.len() == 20
            && ["a", "b"]
                .iter()
                .all(|n| p.l2.values().any(|o| o.node == *n))
    });
    // A lost stream: b is told to take a's addresses, and the plan says so.
    hub.detach("a", ida, "stream-ended", Instant::now());
    plan_until(&hub, "everything on b", |p| {
        p.l2.len() == 20 && p.l2.values().all(|o| o.node == "b")
    });
    let mut last = None;
    while let Ok(m) = rb.try_recv() {
        last = Some(m.unwrap().msg.unwrap());
    }
    assert!(
        matches!(last, Some(Msg::Delta(ref d)) if !d.l2_set.is_empty()),
        "{last:?}"
    );
}

/// A hub planning one layer-2 address on node `a` (the succession tests).
fn one_address_on_node_a() -> Core {
    let hub = Core::new(Metrics::new(), std::time::Duration::ZERO);
    hub.set_inputs(
        Inputs {
            units: vec![unit("198.51.100.1")],
            nodes: vec![node("a")],
            ..Inputs::default()
        },
        "test",
    );
    hub
}

/// A speaker holding nothing whose process started at `ms`.
fn started(ms: u64) -> Arrival {
    Arrival {
        holding: BTreeSet::new(),
        started_ms: ms,
    }
}

#[test]
fn of_two_speakers_for_one_node_the_later_started_keeps_the_stream() {
    let hub = one_address_on_node_a();
    let superseded = |rx: &mut Inbox| {
        while let Ok(m) = rx.try_recv() {
            if let Err(s) = m {
                return s.code() == tonic::Code::Aborted && s.message().starts_with("superseded");
            }
        }
        false
    };
    let (t1, mut r1) = mpsc::channel(OUTBOX);
    hub.attach_as("a", 1, t1, started(1_000));
    assert_eq!(owned(&next(&mut r1)), ["198.51.100.1"]);
    // A restart overlapping its predecessor: the new process takes over.
    // Make before break: the earlier one is told only once the later one
    // has applied what it was sent, so the node always answers.
    let (t2, mut r2) = mpsc::channel(OUTBOX);
    hub.attach_as("a", 2, t2, started(2_000));
    let first = next(&mut r2);
    assert_eq!(owned(&first), ["198.51.100.1"]);
    assert!(!superseded(&mut r1), "not before the later one applied");
    let Msg::Snapshot(snap) = first else {
        panic!("a Snapshot first")
    };
    hub.ack("a", 2, snap.generation, "");
    assert!(superseded(&mut r1), "the earlier-started is told");
    // The earlier one asking again is refused; the later keeps its stream.
    let (t1b, mut r1b) = mpsc::channel(OUTBOX);
    hub.attach_as("a", 3, t1b, started(1_000));
    assert!(superseded(&mut r1b));
    assert!(r2.try_recv().is_err(), "nothing changes for the later one");
    hub.detach("a", 3, "stream-ended", Instant::now());
    // The same process reconnecting is no succession; once the later one
    // is gone, the earlier is served again.
    let (t2b, mut r2b) = mpsc::channel(OUTBOX);
    hub.attach_as("a", 4, t2b, started(2_000));
    assert!(!superseded(&mut r2));
    assert_eq!(owned(&next(&mut r2b)), ["198.51.100.1"]);
    hub.detach("a", 4, "stream-lost", Instant::now());
    let (t1c, mut r1c) = mpsc::channel(OUTBOX);
    hub.attach_as("a", 5, t1c, started(1_000));
    assert_eq!(owned(&next(&mut r1c)), ["198.51.100.1"]);
}

#[test]
fn a_successor_gone_before_it_applied_leaves_its_predecessor_to_reconnect() {
    let hub = one_address_on_node_a();
    let (t1, mut r1) = mpsc::channel(OUTBOX);
    hub.attach_as("a", 1, t1, started(1_000));
    assert_eq!(owned(&next(&mut r1)), ["198.51.100.1"]);
    let (t2, mut r2) = mpsc::channel(OUTBOX);
    hub.attach_as("a", 2, t2, started(2_000));
    assert_eq!(owned(&next(&mut r2)), ["198.51.100.1"]);
    // The later one dies before it acked: the earlier's stream ends without
    // a word (its outbox dropped), so it keeps answering and reconnects.
    hub.detach("a", 2, "stream-lost", Instant::now());
    assert!(matches!(
        r1.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
    let (t1b, mut r1b) = mpsc::channel(OUTBOX);
    hub.attach_as(
        "a",
        3,
        t1b,
        Arrival {
            holding: BTreeSet::from(["198.51.100.1".parse().unwrap()]),
            started_ms: 1_000,
        },
    );
    assert_eq!(owned(&next(&mut r1b)), ["198.51.100.1"]);
}
