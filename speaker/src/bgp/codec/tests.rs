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

#[test]
fn header_errors_map_to_their_notifications() {
    let mut bad_marker = encode(&Message::Keepalive);
    bad_marker[3] = 0;
    assert_eq!(
        decode(&bad_marker).unwrap_err().notification(),
        (1, 1, vec![])
    );
    let long_keepalive = hex(&format!("{MARK} 0014 04 00"));
    assert_eq!(
        decode(&long_keepalive).unwrap_err().notification(),
        (1, 2, vec![0x00, 0x14])
    );
    let huge = hex(&format!("{MARK} 1001 02"));
    assert_eq!(
        decode(&huge).unwrap_err(),
        DecodeError::BadMessageLength(4097)
    );
    let bad_type = hex(&format!("{MARK} 0013 09"));
    assert_eq!(
        decode(&bad_type).unwrap_err().notification(),
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
        open("03 fde8 005a c612000a 00").notification(),
        (2, 1, vec![0, 4])
    );
    assert_eq!(
        open("04 fde8 0002 c612000a 00").notification(),
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
