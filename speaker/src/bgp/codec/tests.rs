use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const MARK: &str = "ffffffffffffffffffffffffffffffff";

#[test]
fn keepalive_is_byte_exact() {
    let bytes = hex(&format!("{MARK} 0013 04"));
    assert_eq!(encode(&Message::Keepalive), bytes);
    assert_eq!(decode(&bytes).unwrap(), Some((Message::Keepalive, 19)));
}

#[test]
fn open_with_capabilities_is_byte_exact() {
    let open = Open {
        asn: 4_200_000_001,
        hold_time: 90,
        identifier: 0xc612_000a,
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::RouteRefresh,
            Capability::GracefulRestart {
                restarting: false,
                time: 120,
                families: vec![(1, 1, true)],
            },
            Capability::FourOctetAs(4_200_000_001),
        ],
    };
    // 59 bytes: version 4, AS_TRANS, hold 90, id 198.18.0.10, one
    // capabilities parameter of 28 bytes.
    let bytes = hex(&format!(
        "{MARK} 003b 01 04 5ba0 005a c612000a 1e 02 1c
         01 04 0001 00 01  01 04 0002 00 01  02 00  40 06 0078 0001 01 80  41 04 fa56ea01"
    ));
    assert_eq!(encode(&Message::Open(open.clone())), bytes);
    assert_eq!(
        decode(&bytes).unwrap(),
        Some((Message::Open(open), bytes.len()))
    );
}

#[test]
fn notification_and_route_refresh_round_trip() {
    let n = Message::Notification(Notification {
        code: 6,
        subcode: 2,
        data: b"bye".to_vec(),
    });
    let bytes = hex(&format!("{MARK} 0018 03 06 02 627965"));
    assert_eq!(encode(&n), bytes);
    assert_eq!(decode(&bytes).unwrap(), Some((n, 24)));
    let rr = Message::RouteRefresh(RouteRefresh { afi: 2, safi: 1 });
    let bytes = hex(&format!("{MARK} 0017 05 0002 00 01"));
    assert_eq!(encode(&rr), bytes);
    assert_eq!(decode(&bytes).unwrap(), Some((rr, 23)));
}

#[test]
fn partial_input_waits_for_more() {
    let bytes = encode(&Message::Keepalive);
    for cut in 0..bytes.len() {
        assert_eq!(decode(&bytes[..cut]).unwrap(), None, "cut at {cut}");
    }
    let mut two = bytes.clone();
    two.extend_from_slice(&bytes);
    assert_eq!(decode(&two).unwrap(), Some((Message::Keepalive, 19)));
}

/// A NOTIFICATION as (code, subcode, data).
fn wire(n: Notification) -> (u8, u8, Vec<u8>) {
    (n.code, n.subcode, n.data)
}

#[test]
fn header_errors_map_to_their_notifications() {
    let mut bad_marker = encode(&Message::Keepalive);
    bad_marker[3] = 0;
    assert_eq!(
        wire(decode(&bad_marker).unwrap_err().notification()),
        (1, 1, vec![])
    );
    let long_keepalive = hex(&format!("{MARK} 0014 04 00"));
    assert_eq!(
        wire(decode(&long_keepalive).unwrap_err().notification()),
        (1, 2, vec![0x00, 0x14])
    );
    let huge = hex(&format!("{MARK} 1001 02"));
    assert_eq!(
        decode(&huge).unwrap_err(),
        DecodeError::BadMessageLength(4097)
    );
    let bad_type = hex(&format!("{MARK} 0013 09"));
    assert_eq!(
        wire(decode(&bad_type).unwrap_err().notification()),
        (1, 3, vec![9])
    );
}

#[test]
fn open_errors_map_to_their_notifications() {
    let open = |body: &str| {
        let body = hex(body);
        let mut m = hex(MARK);
        m.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
        m.push(1);
        m.extend_from_slice(&body);
        decode(&m).unwrap_err()
    };
    assert_eq!(
        wire(open("03 fde8 005a c612000a 00").notification()),
        (2, 1, vec![0, 4])
    );
    assert_eq!(
        wire(open("04 fde8 0002 c612000a 00").notification()),
        (2, 6, vec![])
    );
    assert_eq!(
        open("04 fde8 005a 00000000 00"),
        DecodeError::BadIdentifier(0)
    );
    assert_eq!(
        open("04 fde8 005a c612000a 03 01 01 00"),
        DecodeError::UnsupportedOptionalParameter(1)
    );
    // 2-octet AS that disagrees with the 4-octet capability.
    assert_eq!(
        open("04 fde8 005a c612000a 08 02 06 41 04 0000fde9"),
        DecodeError::BadPeerAs(65000)
    );
    // Parameter length past the end.
    assert!(matches!(
        open("04 fde8 005a c612000a 09 02 06 41 04 0000fde8"),
        DecodeError::MalformedOpen(_)
    ));
    // Capability length past its parameter.
    assert_eq!(
        open("04 fde8 005a c612000a 04 02 02 41 04"),
        DecodeError::Truncated
    );
}

fn update_msg(body: &str) -> Vec<u8> {
    let body = hex(body);
    let mut m = hex(MARK);
    m.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    m.push(2);
    m.extend_from_slice(&body);
    m
}

#[test]
fn update_announcing_v4_and_v6_is_byte_exact() {
    let u = Update {
        withdrawn: vec![],
        attributes: Attributes {
            origin: Some(0),
            as_path: vec![4_200_000_001],
            next_hop: Some("198.18.0.10".parse().unwrap()),
            med: None,
            local_pref: Some(200),
            communities: vec![(64500 << 16) | 10],
            large_communities: vec![(64500, 1, 2)],
            mp_next_hop: Some(("2001:db8:18::a".parse().unwrap(), None)),
        },
        announced: vec![
            "203.0.113.7/32".parse().unwrap(),
            "2001:db8:5::7/128".parse().unwrap(),
        ],
        end_of_rib_v6: false,
    };
    let encoded = encode(&Message::Update(u.clone()));
    let (decoded, used) = decode(&encoded).unwrap().unwrap();
    assert_eq!(used, encoded.len());
    assert_eq!(decoded, Message::Update(u));
    // Spot-check the wire: attribute order and flags as RFC 4271 and 8092 want.
    let body = &encoded[HEADER_LEN..];
    assert_eq!(&body[..2], &[0, 0], "no withdrawn routes");
    assert_eq!(
        &body[4..8],
        &[0x40, 1, 1, 0],
        "ORIGIN IGP, well-known transitive"
    );
    assert_eq!(
        &body[8..17],
        &hex("40 02 06 02 01 fa56ea01")[..],
        "AS_PATH, 4-octet"
    );
    assert_eq!(
        &encoded[encoded.len() - 5..],
        &hex("20 cb007107")[..],
        "NLRI 203.0.113.7/32"
    );
}

#[test]
fn withdrawals_of_both_families_round_trip() {
    let u = Update {
        withdrawn: vec![
            "203.0.113.7/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:5::7/128".parse().unwrap(),
        ],
        ..Update::default()
    };
    let encoded = encode(&Message::Update(u.clone()));
    assert_eq!(
        &encoded[HEADER_LEN..HEADER_LEN + 9],
        &hex("0007 20 cb007107 08 0a")[..]
    );
    assert_eq!(decode(&encoded).unwrap().unwrap().0, Message::Update(u));
}

#[test]
fn update_errors_map_to_their_notifications_and_rfc_7606_handling() {
    use Handling::{SessionReset as Reset, TreatAsWithdraw as Withdraw};
    let err = |body: &str| {
        let e = decode(&update_msg(body)).unwrap_err();
        let n = e.notification();
        (n.code, n.subcode, e.handling())
    };
    // Withdrawn length past the message: Malformed Attribute List; the
    // NLRI cannot be found.
    assert_eq!(err("0010 0000"), (3, 1, Reset));
    // ORIGIN 7: Invalid ORIGIN.
    assert_eq!(err("0000 0004 40 01 01 07"), (3, 6, Withdraw));
    // ORIGIN of length 2: Attribute Length Error.
    assert_eq!(err("0000 0005 40 01 02 0000"), (3, 5, Withdraw));
    // ORIGIN flagged optional: Attribute Flags Error.
    assert_eq!(err("0000 0004 c0 01 01 00"), (3, 4, Withdraw));
    // Unknown well-known attribute 99.
    assert_eq!(err("0000 0004 40 63 01 00"), (3, 2, Withdraw));
    // NLRI without NEXT_HOP: Missing Well-known Attribute.
    assert_eq!(
        err("0000 0007 40 01 01 00 40 02 00 20 cb007107"),
        (3, 3, Withdraw)
    );
    // AS_PATH segment claiming 2 ASNs with 1 present: Malformed AS_PATH.
    assert_eq!(err("0000 0009 40 02 06 02 02 fa56ea01"), (3, 11, Withdraw));
    // Prefix length 33: Invalid Network Field; the NLRI cannot be read.
    assert_eq!(err("0000 0000 21 cb007107"), (3, 10, Reset));
    // NEXT_HOP 0.0.0.0: Invalid NEXT_HOP.
    assert_eq!(err("0000 0007 40 03 04 00000000"), (3, 8, Withdraw));
    // An attribute running past the attribute area (RFC 7606 §4).
    assert_eq!(err("0000 0004 40 01 09 00"), (3, 5, Withdraw));
    // MP_REACH with a 5-byte IPv6 next hop: its NLRI cannot be located.
    assert_eq!(
        err("0000 000e 80 0e 0b 0002 01 05 0000000000 00 00"),
        (3, 9, Reset)
    );
    // A recoverable error first, one that must reset later: the worse wins.
    assert_eq!(
        err("0000 0012 40 01 01 07 80 0e 0b 0002 01 05 0000000000 00 00"),
        (3, 9, Reset)
    );
    // An unknown optional attribute is ignored.
    assert!(decode(&update_msg("0000 0004 c0 63 01 00")).is_ok());
}

#[test]
fn a_repeated_attribute_is_discarded_but_a_repeated_mp_attribute_resets() {
    // ORIGIN IGP, then ORIGIN INCOMPLETE: the first stands (RFC 7606 §3(g)).
    let Message::Update(u) = decode(&update_msg("0000 0008 40 01 01 00 40 01 01 02"))
        .unwrap()
        .unwrap()
        .0
    else {
        panic!("an UPDATE")
    };
    assert_eq!(u.attributes.origin, Some(0));
    let twice = "0000 000e 80 0f 03 0002 01 80 0f 03 0002 01";
    let e = decode(&update_msg(twice)).unwrap_err();
    assert_eq!(e.handling(), Handling::SessionReset);
}

#[test]
fn the_stream_goes_on_after_a_message_treated_as_withdraw() {
    let mut wire = update_msg("0000 0004 40 01 01 07");
    let first = wire.len();
    wire.extend(encode(&Message::Keepalive));
    let (bad, used) = decode_framed(&wire).unwrap().unwrap();
    assert_eq!(bad.unwrap_err().handling(), Handling::TreatAsWithdraw);
    assert_eq!(used, first);
    let (next, _) = decode_framed(&wire[used..]).unwrap().unwrap();
    assert_eq!(next.unwrap(), Message::Keepalive);
}

#[test]
fn end_of_rib_markers_are_byte_exact() {
    // IPv4: an UPDATE with nothing in it (RFC 4724 §2).
    assert_eq!(
        encode(&Message::Update(Update::default())),
        [&[0xff; 16][..], &hex("0017 02 0000 0000")[..]].concat()
    );
    // IPv6: only an empty MP_UNREACH for AFI 2 / SAFI 1.
    let eor6 = Message::Update(Update {
        end_of_rib_v6: true,
        ..Update::default()
    });
    let wire = encode(&eor6);
    assert_eq!(
        wire,
        [
            &[0xff; 16][..],
            &hex("001d 02 0000 0006 800f03 0002 01")[..]
        ]
        .concat()
    );
    assert_eq!(decode(&wire).unwrap().unwrap().0, eor6);
}
