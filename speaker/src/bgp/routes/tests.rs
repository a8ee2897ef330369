use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::bgp::codec::{decode, encode};

fn view(ibgp: bool) -> SessionView {
    SessionView {
        my_asn: 64500,
        ibgp,
        next_hop_v4: Some("198.18.0.10".parse().unwrap()),
        next_hop_v6: Some("2001:db8:18::a".parse().unwrap()),
        ipv4: true,
        ipv6: true,
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn updates(msgs: &[Message]) -> Vec<&Update> {
    msgs.iter()
        .map(|m| match m {
            Message::Update(u) => u,
            other => panic!("not an UPDATE: {other:?}"),
        })
        .collect()
}

#[test]
fn ebgp_prepends_our_as_and_omits_local_pref() {
    let mut table = Table::new();
    let attrs = RouteAttrs {
        communities: vec![(64500 << 16) | 7],
        large_communities: vec![(64500, 1, 2)],
        local_pref: Some(300),
        med: Some(5),
    };
    table.insert(net("203.0.113.7/32"), attrs.clone());
    table.insert(net("2001:db8:5::7/128"), attrs);
    let mut adj = AdjRibOut::default();
    let out = adj.sync(&table, &view(false));
    let u = updates(&out);
    assert_eq!(u.len(), 2, "one per family");
    assert_eq!(u[0].announced, [net("203.0.113.7/32")]);
    assert_eq!(u[0].attributes.as_path, [64500]);
    assert_eq!(u[0].attributes.local_pref, None);
    assert_eq!(u[0].attributes.med, Some(5));
    assert_eq!(
        u[0].attributes.next_hop,
        Some("198.18.0.10".parse().unwrap())
    );
    assert_eq!(u[1].announced, [net("2001:db8:5::7/128")]);
    assert_eq!(u[1].attributes.next_hop, None);
    assert_eq!(
        u[1].attributes.mp_next_hop,
        Some(("2001:db8:18::a".parse().unwrap(), None))
    );
    assert_eq!(adj.counts(), (1, 1));
    // Nothing changed: nothing to send.
    assert!(adj.sync(&table, &view(false)).is_empty());
}

#[test]
fn ibgp_sends_an_empty_path_and_a_local_pref() {
    let mut table = Table::new();
    table.insert(net("203.0.113.7/32"), RouteAttrs::default());
    table.insert(
        net("203.0.113.8/32"),
        RouteAttrs {
            local_pref: Some(250),
            ..RouteAttrs::default()
        },
    );
    let out = AdjRibOut::default().sync(&table, &view(true));
    let prefs: Vec<_> = updates(&out)
        .iter()
        .map(|u| {
            assert!(u.attributes.as_path.is_empty());
            u.attributes.local_pref
        })
        .collect();
    assert_eq!(prefs, [Some(DEFAULT_LOCAL_PREF), Some(250)]);
}

#[test]
fn removals_and_attribute_changes_become_withdrawals_and_replacements() {
    let mut table = Table::new();
    table.insert(net("203.0.113.7/32"), RouteAttrs::default());
    table.insert(net("203.0.113.8/32"), RouteAttrs::default());
    table.insert(net("2001:db8:5::7/128"), RouteAttrs::default());
    let mut adj = AdjRibOut::default();
    adj.sync(&table, &view(false));
    table.remove(&net("203.0.113.7/32"));
    table.remove(&net("2001:db8:5::7/128"));
    table.insert(
        net("203.0.113.8/32"),
        RouteAttrs {
            communities: vec![1],
            ..RouteAttrs::default()
        },
    );
    let out = adj.sync(&table, &view(false));
    let u = updates(&out);
    // Withdrawals first (one message per family), then the re-announcement
    // with the new attributes (an implicit replacement, RFC 4271 §3.1).
    assert_eq!(u[0].withdrawn, [net("203.0.113.7/32")]);
    assert_eq!(u[1].withdrawn, [net("2001:db8:5::7/128")]);
    assert_eq!(u[2].announced, [net("203.0.113.8/32")]);
    assert_eq!(u[2].attributes.communities, [1]);
    assert_eq!(adj.counts(), (1, 0));
}

#[test]
fn a_family_without_next_hop_or_capability_is_not_sent() {
    let mut table = Table::new();
    table.insert(net("203.0.113.7/32"), RouteAttrs::default());
    table.insert(net("2001:db8:5::7/128"), RouteAttrs::default());
    let v = SessionView {
        next_hop_v6: None,
        ..view(false)
    };
    let mut adj = AdjRibOut::default();
    let out = adj.sync(&table, &v);
    assert_eq!(updates(&out)[0].announced, [net("203.0.113.7/32")]);
    assert_eq!(out.len(), 1);
    let v = SessionView {
        ipv4: false,
        ..view(false)
    };
    // The family went away: its prefixes are withdrawn, the other one sent.
    let out = adj.sync(&table, &v);
    assert_eq!(updates(&out)[0].withdrawn, [net("203.0.113.7/32")]);
    assert_eq!(updates(&out)[1].announced, [net("2001:db8:5::7/128")]);
}

#[test]
fn ten_thousand_host_routes_pack_into_full_messages() {
    let mut table = Table::new();
    for i in 0..10_000u32 {
        let ip = Ipv4Addr::from(0x0a00_0000 + i);
        table.insert(IpNet::from(IpAddr::V4(ip)), RouteAttrs::default());
        let ip6 = Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + u128::from(i));
        table.insert(IpNet::from(IpAddr::V6(ip6)), RouteAttrs::default());
    }
    let mut adj = AdjRibOut::default();
    let out = adj.sync(&table, &view(false));
    let mut seen = 0;
    for m in &out {
        let wire = encode(m);
        assert!(wire.len() <= codec::MAX_LEN, "{} bytes", wire.len());
        let (back, used) = decode(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        let Message::Update(u) = back else { panic!() };
        seen += u.announced.len();
    }
    assert_eq!(seen, 20_000);
    // 5 bytes per /32 and 17 per /128 in ≤ 4096-byte messages: close to the minimum.
    assert!(out.len() <= 13 + 43 + 2, "{} messages", out.len());
    let withdrawals = adj.sync(&Table::new(), &view(false));
    let n: usize = updates(&withdrawals)
        .iter()
        .map(|u| u.withdrawn.len())
        .sum();
    assert_eq!(n, 20_000);
    for m in &withdrawals {
        assert!(encode(m).len() <= codec::MAX_LEN);
    }
    assert_eq!(adj.counts(), (0, 0));
}

#[test]
fn end_of_rib_per_carried_family() {
    let out = end_of_rib(&view(false));
    assert_eq!(out.len(), 2);
    let out = end_of_rib(&SessionView {
        ipv6: false,
        ..view(false)
    });
    assert_eq!(out, [Message::Update(Update::default())]);
}

#[test]
fn host_routes_and_aggregates() {
    assert_eq!(
        prefix_for("203.0.113.7".parse().unwrap(), None),
        Some(net("203.0.113.7/32"))
    );
    assert_eq!(
        prefix_for("203.0.113.7".parse().unwrap(), Some(24)),
        Some(net("203.0.113.0/24"))
    );
    assert_eq!(
        prefix_for("2001:db8:5::7".parse().unwrap(), Some(64)),
        Some(net("2001:db8:5::/64"))
    );
    assert_eq!(prefix_for("203.0.113.7".parse().unwrap(), Some(33)), None);
}

#[test]
fn graceful_shutdown_marks_every_route_once_and_zeroes_local_pref() {
    let mut t = Table::new();
    t.insert(
        net("203.0.113.7/32"),
        RouteAttrs {
            communities: vec![100, GRACEFUL_SHUTDOWN],
            local_pref: Some(200),
            ..RouteAttrs::default()
        },
    );
    t.insert(net("2001:db8:5::7/128"), RouteAttrs::default());
    let g = graceful_shutdown(&t);
    assert_eq!(g.len(), 2);
    for a in g.values() {
        assert_eq!(
            a.communities
                .iter()
                .filter(|c| **c == GRACEFUL_SHUTDOWN)
                .count(),
            1
        );
        assert_eq!(a.local_pref, Some(0));
    }
    assert_eq!(g[&net("203.0.113.7/32")].communities[0], 100);
    // On the wire to an eBGP peer: the community, no LOCAL_PREF.
    let mut adj = AdjRibOut::default();
    let msgs = adj.sync(&g, &view(false));
    let u = updates(&msgs);
    assert!(
        u.iter()
            .all(|u| { u.attributes.communities.contains(&GRACEFUL_SHUTDOWN) })
    );
    assert!(u.iter().all(|u| u.attributes.local_pref.is_none()));
}
