//! A new leader's settle period waiting for the last announcer of each
//! address (`state::settle`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::tests::{Inbox, holding, ips, next, node, owned, sorted, unit};
use super::*;
use barelb_control::v1::operator_message::Msg;
use barelb_core::planner;

/// 13 units over nodes a, b, c: 1..=12 were announced (as the balanced
/// plan puts them), 13 is new (never announced).
fn inputs(c_ready: bool) -> Inputs {
    let mut c = node("c");
    c.ready = c_ready;
    Inputs {
        units: (1..=13).map(|i| unit(&format!("198.51.100.{i}"))).collect(),
        nodes: vec![node("a"), node("b"), c],
        ..Inputs::default()
    }
}

/// Where the balanced plan of 1..=12 puts each address, by node.
fn announced_by() -> BTreeMap<String, BTreeSet<IpAddr>> {
    let units: Vec<Unit> = (1..=12).map(|i| unit(&format!("198.51.100.{i}"))).collect();
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node {
            connected: true,
            ..node(n)
        })
        .collect();
    let plan = planner::plan(&units, &nodes, &[]);
    let mut by = BTreeMap::<String, BTreeSet<IpAddr>>::new();
    for (ip, o) in &plan.l2 {
        by.entry(o.node.clone()).or_default().insert(*ip);
    }
    assert_eq!(by.len(), 3, "each node announces some: {by:?}");
    by
}

/// A new leader told where 1..=12 were announced, its period over, its
/// hard end `max` away; a and b back holding theirs, c not.
fn past_the_period(max: Duration, metrics: &Arc<Metrics>) -> (Core, Inbox, Inbox) {
    let hub = Core::new(
        metrics.clone(),
        SettleTimes {
            period: Duration::from_millis(1),
            max,
        },
    );
    hub.set_inputs(inputs(true), "test");
    let by = announced_by();
    hub.set_last_owners(
        by.iter()
            .flat_map(|(n, ips)| ips.iter().map(move |ip| (*ip, n.clone())))
            .collect(),
    );
    let (ta, ra) = mpsc::channel(OUTBOX);
    let (tb, rb) = mpsc::channel(OUTBOX);
    hub.attach_holding("a", ta, by["a"].clone());
    hub.attach_holding("b", tb, by["b"].clone());
    std::thread::sleep(Duration::from_millis(5));
    hub.settle_deadline();
    (hub, ra, rb)
}

/// Every address a and b were given, in order.
fn given(rx: &mut Inbox) -> Vec<String> {
    let mut all = Vec::new();
    while let Ok(m) = rx.try_recv() {
        all.extend(owned(&m.unwrap().msg.unwrap()));
    }
    all
}

fn strings(ips: &BTreeSet<IpAddr>) -> Vec<String> {
    sorted(ips.iter().map(ToString::to_string).collect())
}

#[test]
fn past_its_period_a_new_leader_keeps_waiting_for_a_ready_nodes_speaker_it_last_heard_announce() {
    let metrics = Metrics::new();
    let (hub, mut ra, mut rb) = past_the_period(Duration::from_secs(3600), &metrics);
    let by = announced_by();
    let mut got = given(&mut ra);
    got.extend(given(&mut rb));
    // a and b have their own back and, the period over, the new address;
    // c's stay with c (still answering, fail-static), not a or b.
    let mut expected: Vec<String> = strings(&by["a"]);
    expected.extend(strings(&by["b"]));
    expected.push("198.51.100.13".into());
    assert_eq!(sorted(got), sorted(expected));
    assert_eq!(hub.plans().borrow().l2.len(), 0, "still settling");
    // c is back holding its addresses: settled, none of them moved. (The
    // new address may move to c, quietly, as the plan balances.)
    let (tc, mut rc) = mpsc::channel(OUTBOX);
    hub.attach_holding("c", tc, by["c"].clone());
    let Msg::Snapshot(sc) = next(&mut rc) else {
        panic!("snapshot expected")
    };
    assert!(sc.l2.iter().all(|a| a.quiet));
    let back: Vec<String> = sc
        .l2
        .iter()
        .map(|a| a.ip.clone())
        .filter(|ip| ip != "198.51.100.13")
        .collect();
    assert_eq!(sorted(back), strings(&by["c"]));
    assert_eq!(hub.plans().borrow().l2.len(), 13);
    let moved: f64 = metrics
        .encode()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("barelb_failovers_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(moved <= 1.0, "only the new address may move: {moved}");
}

#[test]
fn a_new_leader_stops_waiting_for_an_absent_speaker_at_its_hard_end() {
    let metrics = Metrics::new();
    let (hub, mut ra, mut rb) = past_the_period(Duration::from_millis(2), &metrics);
    // The hard end passed too (5 ms > 2 ms): c's addresses go to a and b,
    // announced (nobody answers for them if c's speaker is really gone).
    let mut got = given(&mut ra);
    got.extend(given(&mut rb));
    assert_eq!(sorted(got), sorted(ips(1..=13)));
    assert_eq!(hub.plans().borrow().l2.len(), 13);
}

#[test]
fn a_new_leader_stops_waiting_for_a_speaker_whose_node_is_no_longer_ready() {
    let metrics = Metrics::new();
    let (hub, mut ra, mut rb) = past_the_period(Duration::from_secs(3600), &metrics);
    given(&mut ra);
    given(&mut rb);
    hub.set_inputs(inputs(false), "node-not-ready");
    let by = announced_by();
    let mut got = given(&mut ra);
    got.extend(given(&mut rb));
    assert_eq!(sorted(got), strings(&by["c"]));
    assert_eq!(hub.plans().borrow().l2.len(), 13);
}

#[test]
fn within_its_period_a_new_leader_hands_out_nothing_unclaimed() {
    // The period (an hour) has not passed: 13, new, waits like the rest.
    let hub = Core::new(
        Metrics::new(),
        SettleTimes {
            period: Duration::from_secs(3600),
            max: Duration::from_secs(7200),
        },
    );
    hub.set_inputs(inputs(true), "test");
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    hub.attach_holding("a", ta, holding(1..=2));
    hub.settle_deadline();
    assert_eq!(sorted(given(&mut ra)), sorted(ips(1..=2)));
}

#[test]
fn after_every_speaker_went_the_leader_waits_for_each_addresss_last_announcer() {
    // Same leader, all streams lost at once (the control Service broken
    // for every node): its own last plan says who announced what.
    let metrics = Metrics::new();
    let hub = Core::new(
        metrics.clone(),
        SettleTimes {
            period: Duration::from_millis(1),
            max: Duration::from_secs(3600),
        },
    );
    hub.set_inputs(inputs(true), "test");
    let mut ids = BTreeMap::new();
    let mut inboxes = BTreeMap::new();
    for n in ["a", "b", "c"] {
        let (tx, rx) = mpsc::channel(OUTBOX);
        ids.insert(n, hub.attach(n, tx));
        inboxes.insert(n, rx);
    }
    let plan = hub.plans().borrow().clone();
    assert_eq!(plan.l2.len(), 13);
    let on_c: Vec<String> = sorted(
        plan.l2
            .iter()
            .filter(|(_, o)| o.node == "c")
            .map(|(ip, _)| ip.to_string())
            .collect(),
    );
    assert!(!on_c.is_empty());
    // As the hub's thread takes them: in one batch, one replan.
    hub.defer();
    for (n, id) in &ids {
        hub.detach(n, *id, "stream-ended", Instant::now());
    }
    hub.flush();
    // a and b come back holding nothing (say, restarted); c does not.
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    hub.attach("a", ta);
    hub.attach("b", tb);
    std::thread::sleep(Duration::from_millis(5));
    hub.settle_deadline();
    let mut got = given(&mut ra);
    got.extend(given(&mut rb));
    let expected: Vec<String> = ips(1..=13)
        .into_iter()
        .filter(|ip| !on_c.contains(ip))
        .collect();
    assert_eq!(sorted(got), sorted(expected));
}

fn heartbeats(of: &[(&str, i64)]) -> BTreeMap<String, Heartbeat> {
    of.iter()
        .map(|(n, ms)| {
            let h = Heartbeat {
                renewed_ms: *ms,
                duration_s: 40,
            };
            (n.to_string(), h)
        })
        .collect()
}

#[test]
fn a_new_leader_stops_waiting_for_a_ready_node_whose_kubelet_fell_silent() {
    // c's node vanished without a word (the leader's own node, say): it is
    // Ready for 40–50 s more, but its kubelet stopped renewing its Lease.
    let metrics = Metrics::new();
    let (hub, mut ra, mut rb) = past_the_period(Duration::from_secs(3600), &metrics);
    given(&mut ra);
    given(&mut rb);
    let awaited = hub.awaited_owners();
    assert_eq!(**awaited.borrow(), BTreeSet::from(["c".to_string()]));
    // Renewing, c still counts: nothing more is handed out.
    hub.set_heartbeats(
        &heartbeats(&[("a", 100_000), ("b", 99_000), ("c", 95_000)]),
        0,
    );
    assert!(given(&mut ra).is_empty() && given(&mut rb).is_empty());
    // 17 s behind the others: its addresses go to a and b, and the period ends.
    hub.set_heartbeats(
        &heartbeats(&[("a", 112_000), ("b", 111_000), ("c", 95_000)]),
        0,
    );
    let mut got = given(&mut ra);
    got.extend(given(&mut rb));
    assert_eq!(sorted(got), strings(&announced_by()["c"]));
    assert_eq!(hub.plans().borrow().l2.len(), 13);
    assert!(awaited.borrow().is_empty(), "settled: no heartbeat matters");
}

#[test]
fn when_every_kubelet_is_equally_late_a_new_leader_keeps_waiting() {
    // After an apiserver outage every Lease is old: nobody is silent.
    let metrics = Metrics::new();
    let (hub, mut ra, mut rb) = past_the_period(Duration::from_secs(3600), &metrics);
    given(&mut ra);
    given(&mut rb);
    hub.set_heartbeats(&heartbeats(&[("a", 1_000), ("b", 2_000), ("c", 3_000)]), 0);
    assert!(given(&mut ra).is_empty() && given(&mut rb).is_empty());
    assert_eq!(hub.plans().borrow().l2.len(), 0, "still settling");
}

#[test]
fn within_its_period_a_new_leader_plans_at_once_what_a_silent_kubelets_node_announced() {
    let hub = Core::new(
        Metrics::new(),
        SettleTimes {
            period: Duration::from_secs(3600),
            max: Duration::from_secs(7200),
        },
    );
    hub.set_inputs(inputs(true), "test");
    let by = announced_by();
    hub.set_last_owners(
        by.iter()
            .flat_map(|(n, ips)| ips.iter().map(move |ip| (*ip, n.clone())))
            .collect(),
    );
    let (ta, mut ra) = mpsc::channel(OUTBOX);
    let (tb, mut rb) = mpsc::channel(OUTBOX);
    hub.attach_holding("a", ta, by["a"].clone());
    hub.attach_holding("b", tb, by["b"].clone());
    let mut got = given(&mut ra);
    got.extend(given(&mut rb));
    let mut held = strings(&by["a"]);
    held.extend(strings(&by["b"]));
    assert_eq!(sorted(got), sorted(held.clone()), "c's and 13 wait");
    hub.set_heartbeats(
        &heartbeats(&[("a", 112_000), ("b", 111_000), ("c", 95_000)]),
        0,
    );
    let mut got = given(&mut ra);
    got.extend(given(&mut rb));
    assert_eq!(
        sorted(got),
        strings(&by["c"]),
        "c's at once; 13 still waits"
    );
}
