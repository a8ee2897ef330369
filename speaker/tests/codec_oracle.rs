//! Our BGP encoder checked by an independent decoder (NetGauze's
//! netgauze-bgp-pkt): every message barelb sends must parse there, consume
//! exactly its bytes, re-encode to the same bytes, and carry the values we
//! meant (read from NetGauze's own serde representation).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use barelb_speaker::bgp::codec::{Attributes, Capability, Message, Open, Update, encode};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use serde_json::Value;

/// Parses `wire` with NetGauze; checks it used every byte and writes the
/// same bytes back; returns its JSON form.
fn oracle(wire: &[u8]) -> Value {
    let mut cur = SliceReader::new(wire);
    let mut ctx = BgpParsingContext::default();
    let parsed = BgpMessage::parse(&mut cur, &mut ctx)
        .unwrap_or_else(|e| panic!("NetGauze refused our bytes {wire:02x?}: {e}"));
    assert!(cur.is_empty(), "NetGauze left {} bytes", cur.remaining());
    let mut back = Vec::new();
    parsed.write(&mut back).unwrap();
    assert_eq!(back, wire, "NetGauze re-encodes differently");
    serde_json::to_value(&parsed).unwrap()
}

/// The JSON of NetGauze's path attribute named `name`.
fn attr<'a>(update: &'a Value, name: &str) -> &'a Value {
    update["Update"]["path_attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["value"].get(name).is_some())
        .unwrap_or_else(|| panic!("no {name} in {update:#}"))
}

#[test]
fn open_with_every_capability_we_send() {
    let o = Open {
        asn: 4_200_000_001,
        hold_time: 9,
        identifier: 0xc612_000a,
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(4_200_000_001),
            Capability::GracefulRestart {
                restarting: false,
                time: 120,
                families: vec![(1, 1, false), (2, 1, true)],
            },
        ],
    };
    let v = oracle(&encode(&Message::Open(o)));
    let open = &v["Open"];
    assert_eq!(open["version"], 4);
    assert_eq!(open["my_as"], 23456, "AS_TRANS in the 2-octet field");
    assert_eq!(open["hold_time"], 9);
    assert_eq!(open["bgp_id"], "198.18.0.10");
    let caps = &open["params"][0]["Capabilities"];
    assert_eq!(
        caps[0]["MultiProtocolExtensions"]["address_type"],
        "Ipv4Unicast"
    );
    assert_eq!(
        caps[1]["MultiProtocolExtensions"]["address_type"],
        "Ipv6Unicast"
    );
    assert_eq!(caps[2], "RouteRefresh");
    assert_eq!(caps[3]["FourOctetAs"]["asn4"], 4_200_000_001u32);
    let gr = &caps[4]["GracefulRestartCapability"];
    assert_eq!(gr["time"], 120);
    assert_eq!(gr["address_families"][1]["address_type"], "Ipv6Unicast");
    assert_eq!(gr["address_families"][1]["forwarding_state"], true);
}

#[test]
fn update_with_both_families_and_every_attribute() {
    let u = Update {
        attributes: Attributes {
            origin: Some(0),
            as_path: vec![4_200_000_001, 64500],
            next_hop: Some("198.18.0.10".parse().unwrap()),
            med: Some(5),
            local_pref: Some(200),
            communities: vec![(64500 << 16) | 10, 0xFFFF_FF01],
            large_communities: vec![(64500, 1, 2)],
            mp_next_hop: Some(("2001:db8:18::a".parse().unwrap(), None)),
        },
        announced: vec![
            "203.0.113.7/32".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
            "2001:db8:5::7/128".parse().unwrap(),
        ],
        ..Update::default()
    };
    let v = oracle(&encode(&Message::Update(u)));
    let nlri: Vec<&str> = v["Update"]["nlri"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["network"].as_str().unwrap())
        .collect();
    assert_eq!(nlri, ["203.0.113.7/32", "198.51.100.0/24"]);
    assert_eq!(attr(&v, "Origin")["value"]["Origin"], "IGP");
    let path = &attr(&v, "AsPath")["value"]["AsPath"]["As4PathSegments"][0];
    assert_eq!(path["segment_type"], "AsSequence");
    assert_eq!(
        path["as_numbers"],
        serde_json::json!([4_200_000_001u32, 64500])
    );
    assert_eq!(
        attr(&v, "NextHop")["value"]["NextHop"]["next_hop"],
        "198.18.0.10"
    );
    let med = attr(&v, "MultiExitDiscriminator");
    assert_eq!(med["value"]["MultiExitDiscriminator"]["metric"], 5);
    assert_eq!(
        (med["optional"].clone(), med["transitive"].clone()),
        (true.into(), false.into())
    );
    let lp = attr(&v, "LocalPreference");
    assert_eq!(lp["value"]["LocalPreference"]["metric"], 200);
    assert_eq!(
        (lp["optional"].clone(), lp["transitive"].clone()),
        (false.into(), true.into())
    );
    let c = attr(&v, "Communities");
    assert_eq!(
        c["value"]["Communities"]["communities"],
        serde_json::json!([(64500u32 << 16) | 10, 0xFFFF_FF01u32])
    );
    assert_eq!(
        (c["optional"].clone(), c["transitive"].clone()),
        (true.into(), true.into())
    );
    let l = &attr(&v, "LargeCommunities")["value"]["LargeCommunities"]["communities"][0];
    assert_eq!(
        (
            l["global_admin"].clone(),
            l["local_data1"].clone(),
            l["local_data2"].clone()
        ),
        (64500.into(), 1.into(), 2.into())
    );
    let mp = &attr(&v, "MpReach")["value"]["MpReach"]["Ipv6Unicast"];
    assert_eq!(mp["next_hop_global"], "2001:db8:18::a");
    assert_eq!(mp["nlri"][0]["network"], "2001:db8:5::7/128");
}

#[test]
fn withdrawals_of_both_families() {
    let u = Update {
        withdrawn: vec![
            "203.0.113.7/32".parse().unwrap(),
            "2001:db8:5::7/128".parse().unwrap(),
        ],
        ..Update::default()
    };
    let v = oracle(&encode(&Message::Update(u)));
    assert_eq!(
        v["Update"]["withdrawn_routes"][0]["network"],
        "203.0.113.7/32"
    );
    let mp = &attr(&v, "MpUnreach")["value"]["MpUnreach"]["Ipv6Unicast"];
    assert_eq!(mp["nlri"][0]["network"], "2001:db8:5::7/128");
}

#[test]
fn end_of_rib_markers_are_recognized() {
    for (msg, family) in [
        (Update::default(), "Ipv4Unicast"),
        (
            Update {
                end_of_rib_v6: true,
                ..Update::default()
            },
            "Ipv6Unicast",
        ),
    ] {
        let wire = encode(&Message::Update(msg));
        oracle(&wire);
        let mut ctx = BgpParsingContext::default();
        let BgpMessage::Update(u) =
            BgpMessage::parse(&mut SliceReader::new(&wire), &mut ctx).unwrap()
        else {
            panic!("not an UPDATE");
        };
        assert_eq!(format!("{:?}", u.end_of_rib()), format!("Some({family})"));
    }
}

#[test]
fn keepalive_notification_and_route_refresh() {
    assert_eq!(oracle(&encode(&Message::Keepalive)), "KeepAlive");
    let mut data = vec![5];
    data.extend_from_slice(b"bye!!");
    let v = oracle(&encode(&Message::Notification(
        barelb_speaker::bgp::codec::Notification {
            code: 6,
            subcode: 2,
            data,
        },
    )));
    assert!(
        v.to_string().contains("AdministrativeShutdown"),
        "Cease/administrative shutdown expected: {v}"
    );
    let v = oracle(&encode(&Message::RouteRefresh(
        barelb_speaker::bgp::codec::RouteRefresh { afi: 2, safi: 1 },
    )));
    assert!(v.to_string().contains("Ipv6Unicast"), "{v}");
}

#[test]
fn a_full_table_as_the_session_sends_it() {
    use barelb_speaker::bgp::routes::{AdjRibOut, RouteAttrs, SessionView, Table};
    let mut table = Table::new();
    for i in 0..3000u32 {
        let v4 = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let v6 = std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) + u128::from(i));
        let attrs = RouteAttrs {
            communities: vec![i % 3],
            ..RouteAttrs::default()
        };
        table.insert(std::net::IpAddr::V4(v4).into(), attrs.clone());
        table.insert(std::net::IpAddr::V6(v6).into(), attrs);
    }
    let view = SessionView {
        my_asn: 64500,
        ibgp: true,
        next_hop_v4: Some("198.18.0.10".parse().unwrap()),
        next_hop_v6: Some("2001:db8:18::a".parse().unwrap()),
        ipv4: true,
        ipv6: true,
    };
    let mut adj = AdjRibOut::default();
    // Prefixes NetGauze finds in `list` (IPv4) and in the `mp` attribute (IPv6).
    let count = |msgs: Vec<Message>, list: &str, mp: &str| -> usize {
        msgs.iter()
            .map(|m| {
                let v = oracle(&encode(m));
                let v6 = v["Update"]["path_attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find_map(|a| a["value"].get(mp))
                    .map_or(0, |a| a["Ipv6Unicast"]["nlri"].as_array().unwrap().len());
                v["Update"][list].as_array().unwrap().len() + v6
            })
            .sum()
    };
    assert_eq!(count(adj.sync(&table, &view), "nlri", "MpReach"), 6000);
    assert_eq!(
        count(
            adj.sync(&Table::new(), &view),
            "withdrawn_routes",
            "MpUnreach"
        ),
        6000
    );
}

/// The other direction: NetGauze writes, we read.
#[test]
fn we_decode_what_netgauze_encodes() {
    let json = serde_json::json!({"Update": {
        "withdrawn_routes": [{"network": "192.0.2.0/24", "path_id": null}],
        "nlri": [{"network": "203.0.113.9/32", "path_id": null}],
        "path_attributes": [
            {"extended_length": false, "optional": false, "partial": false, "transitive": true,
             "value": {"Origin": "Incomplete"}},
            {"extended_length": false, "optional": false, "partial": false, "transitive": true,
             "value": {"AsPath": {"As4PathSegments": [
                 {"segment_type": "AsSequence", "as_numbers": [64501, 4200000002u32]}]}}},
            {"extended_length": false, "optional": false, "partial": false, "transitive": true,
             "value": {"NextHop": {"next_hop": "198.18.0.11"}}},
            {"extended_length": false, "optional": true, "partial": false, "transitive": true,
             "value": {"Communities": {"communities": [4227072011u32]}}},
            {"extended_length": true, "optional": true, "partial": false, "transitive": false,
             "value": {"MpReach": {"Ipv6Unicast": {
                 "next_hop_global": "2001:db8:18::b", "next_hop_local": "fe80::b",
                 "nlri": [{"network": "2001:db8:6::/48", "path_id": null}]}}}},
        ]
    }});
    let msg: BgpMessage = serde_json::from_value(json).unwrap();
    let mut wire = Vec::new();
    msg.write(&mut wire).unwrap();
    let (ours, used) = barelb_speaker::bgp::codec::decode(&wire).unwrap().unwrap();
    assert_eq!(used, wire.len());
    let Message::Update(u) = ours else {
        panic!("{ours:?}")
    };
    assert_eq!(u.withdrawn, ["192.0.2.0/24".parse().unwrap()]);
    assert_eq!(
        u.announced,
        [
            "203.0.113.9/32".parse().unwrap(),
            "2001:db8:6::/48".parse().unwrap()
        ]
    );
    assert_eq!(u.attributes.origin, Some(2));
    assert_eq!(u.attributes.as_path, [64501, 4_200_000_002]);
    assert_eq!(u.attributes.next_hop, Some("198.18.0.11".parse().unwrap()));
    assert_eq!(u.attributes.communities, [4_227_072_011]);
    assert_eq!(
        u.attributes.mp_next_hop,
        Some((
            "2001:db8:18::b".parse().unwrap(),
            Some("fe80::b".parse().unwrap())
        ))
    );
}
