//! The speaker against a misbehaving peer. No router sends broken UPDATEs on
//! purpose, so the peer here is a hand-written one on loopback: it speaks
//! enough BGP (raw bytes, not our encoder) to reach Established, then sends
//! a malformed message. A message that cannot be framed, or whose NLRI
//! cannot be located, gets the NOTIFICATION RFC 4271 §6 names, a log line
//! and a reconnect; an UPDATE whose attributes alone are bad is treated as
//! withdraw (RFC 7606) — the session and the speaker's announcement stay.
//! On SIGTERM it closes the session with Cease / administrative shutdown.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const MARKER: [u8; 16] = [0xff; 16];

fn message(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = MARKER.to_vec();
    m.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

/// OPEN from AS 64501, hold 9, id 192.0.2.2, with 4-octet AS and IPv4/IPv6 unicast.
fn peer_open() -> Vec<u8> {
    let caps = [
        2, 6, 1, 4, 0, 1, 0, 1, // MP IPv4 unicast
        2, 6, 1, 4, 0, 2, 0, 1, // MP IPv6 unicast
        2, 6, 65, 4, 0, 0, 0xfb, 0xf5, // 4-octet AS 64501
    ];
    let mut body = vec![
        4,
        0xfb,
        0xf5,
        0,
        9,
        192,
        0,
        2,
        2,
        u8::try_from(caps.len()).unwrap(),
    ];
    body.extend_from_slice(&caps);
    message(1, &body)
}

/// Reads one whole message: (type, body). None when the connection closed.
fn read_msg(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 19];
    s.read_exact(&mut head).ok()?;
    assert_eq!(head[..16], MARKER);
    let len = usize::from(u16::from_be_bytes([head[16], head[17]]));
    let mut body = vec![0u8; len - 19];
    s.read_exact(&mut body).ok()?;
    Some((head[18], body))
}

struct Speaker {
    child: Child,
    log: PathBuf,
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn speaker(port: u16) -> Speaker {
    let dir = barelb_testsupport::lab::lab_dir().join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!(
        "{}.log",
        barelb_testsupport::unique_name("bgp-errors")
    ));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_barelb-speaker"))
        .args([
            "bgp",
            "--peer",
            "127.0.0.1",
            "--peer-port",
            &port.to_string(),
            "--peer-asn",
            "64501",
            "--my-asn",
            "64500",
            "--router-id",
            "192.0.2.1",
            "--hold-time",
            "9",
            "--connect-retry",
            "0.2",
            "--announce",
            "198.51.100.7",
        ])
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Speaker { child, log }
}

/// Accepts the speaker's connection and brings the session to Established;
/// returns the stream after the speaker's first UPDATE (its announcement).
fn establish(listener: &TcpListener) -> TcpStream {
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ty, open) = read_msg(&mut s).expect("the speaker's OPEN");
    assert_eq!(ty, 1);
    assert_eq!(open[0], 4, "BGP version");
    s.write_all(&peer_open()).unwrap();
    s.write_all(&message(4, &[])).unwrap();
    let (ty, _) = read_msg(&mut s).expect("the speaker's KEEPALIVE");
    assert_eq!(ty, 4);
    loop {
        let (ty, _) = read_msg(&mut s).expect("the speaker's UPDATE");
        if ty == 2 {
            return s;
        }
    }
}

/// Sends `bad` on an established session; returns the NOTIFICATION's
/// (code, subcode) and checks the speaker then closes the connection.
fn notification_for(s: &mut TcpStream, bad: &[u8]) -> (u8, u8) {
    s.write_all(bad).unwrap();
    loop {
        match read_msg(s) {
            Some((3, body)) => {
                assert!(
                    read_msg(s).is_none(),
                    "connection stays open after NOTIFICATION"
                );
                return (body[0], body[1]);
            }
            Some(_) => {}
            None => panic!("connection closed without a NOTIFICATION"),
        }
    }
}

const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH_64501: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfb, 0xf5];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 198, 18, 0, 11];
const NLRI: [u8; 5] = [32, 203, 0, 113, 9];

fn update(attrs: &[&[u8]], nlri: &[u8]) -> Vec<u8> {
    let a: Vec<u8> = attrs.concat();
    let mut body = vec![0, 0];
    body.extend_from_slice(&u16::try_from(a.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&a);
    body.extend_from_slice(nlri);
    message(2, &body)
}

#[test]
fn malformed_messages_get_their_notification_and_the_speaker_reconnects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sp = speaker(port);
    let cases: Vec<(&str, Vec<u8>, (u8, u8))> = vec![
        (
            "prefix length 33",
            update(
                &[&ORIGIN_IGP, &AS_PATH_64501, &NEXT_HOP],
                &[33, 1, 2, 3, 4, 5],
            ),
            (3, 10),
        ),
        (
            // RFC 4271 §6.3: total attribute length past the message.
            "attributes length past the message",
            message(2, &[0, 0, 0, 50, 0x40, 1, 1, 0]),
            (3, 1),
        ),
        ("unknown message type 9", message(9, &[0; 4]), (1, 3)),
        (
            "message length 5000",
            {
                let mut m = message(2, &[0, 0, 0, 0]);
                m[16..18].copy_from_slice(&5000u16.to_be_bytes());
                m
            },
            (1, 2),
        ),
    ];
    for (what, bad, want) in &cases {
        let mut s = establish(&listener);
        assert_eq!(notification_for(&mut s, bad), *want, "{what}");
        assert!(
            sp.child.try_wait().unwrap().is_none(),
            "speaker exited after {what}"
        );
    }
    // It reconnected after every one of them, and says why it dropped each.
    let _s = establish(&listener);
    let log = std::fs::read_to_string(&sp.log).unwrap();
    assert_eq!(
        log.matches("answering with NOTIFICATION and reconnecting")
            .count(),
        cases.len(),
        "{log}"
    );
    let _ = sp.child.kill();
}

/// UPDATEs whose attributes are malformed but whose NLRI can be located:
/// treated as withdraw, so the session stays up, the speaker withdraws
/// nothing and keeps its keepalives going.
#[test]
fn malformed_attributes_are_treated_as_withdraw_and_the_session_stays() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sp = speaker(port);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "missing NEXT_HOP",
            update(&[&ORIGIN_IGP, &AS_PATH_64501], &NLRI),
        ),
        (
            "ORIGIN flagged optional",
            update(&[&[0xc0, 1, 1, 0], &AS_PATH_64501, &NEXT_HOP], &NLRI),
        ),
        (
            "ORIGIN value 7",
            update(&[&[0x40, 1, 1, 7], &AS_PATH_64501, &NEXT_HOP], &NLRI),
        ),
        (
            // RFC 7606 §3(g): the repeat is discarded.
            "ORIGIN twice",
            update(
                &[&ORIGIN_IGP, &ORIGIN_IGP, &AS_PATH_64501, &NEXT_HOP],
                &NLRI,
            ),
        ),
        (
            // RFC 7606 §4: an attribute running past the attribute area.
            "ORIGIN claiming 9 bytes",
            update(&[&[0x40, 1, 9, 0]], &[]),
        ),
        (
            "COMMUNITIES of 3 bytes",
            update(
                &[
                    &ORIGIN_IGP,
                    &AS_PATH_64501,
                    &NEXT_HOP,
                    &[0xc0, 8, 3, 0, 0, 1],
                ],
                &NLRI,
            ),
        ),
    ];
    let mut s = establish(&listener);
    for (_, bad) in &cases {
        s.write_all(bad).unwrap();
    }
    // Hold time 9 s, so keepalives every 3 s: two of them, and nothing else
    // (no NOTIFICATION, no UPDATE withdrawing the announcement).
    for _ in 0..2 {
        match read_msg(&mut s) {
            Some((4, _)) => {}
            other => panic!(
                "expected a KEEPALIVE on a kept session, got {other:?}; log:\n{}",
                std::fs::read_to_string(&sp.log).unwrap_or_default()
            ),
        }
    }
    let log = std::fs::read_to_string(&sp.log).unwrap();
    // Each is logged but the repeated ORIGIN, whose repeat is simply dropped.
    assert_eq!(
        log.matches("treated as withdraw (RFC 7606)").count(),
        cases.len() - 1,
        "{log}"
    );
    assert!(!log.contains("answering with NOTIFICATION"), "{log}");
}

#[test]
fn sigterm_closes_the_session_with_cease() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sp = speaker(port);
    let mut s = establish(&listener);
    let ok = Command::new("kill")
        .args(["-TERM", &sp.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    loop {
        match read_msg(&mut s) {
            Some((3, body)) => {
                assert_eq!(
                    (body[0], body[1]),
                    (6, 2),
                    "Cease / administrative shutdown"
                );
                break;
            }
            Some(_) => {}
            None => panic!(
                "closed without Cease; the speaker {:?}; log:\n{}",
                sp.child.wait(),
                std::fs::read_to_string(&sp.log).unwrap_or_default()
            ),
        }
    }
    let status = sp.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn bad_arguments_are_one_line_errors() {
    for (args, want) in [
        (vec!["--community", "70000:1"], "community \"70000:1\""),
        (vec!["--hold-time", "2"], "--hold-time 2"),
        (
            vec!["--announce", "nope"],
            "neither an address nor a prefix",
        ),
    ] {
        let mut full = vec![
            "bgp",
            "--peer",
            "127.0.0.1",
            "--peer-asn",
            "64501",
            "--my-asn",
            "64500",
            "--router-id",
            "192.0.2.1",
        ];
        full.extend(args);
        let out = Command::new(env!("CARGO_BIN_EXE_barelb-speaker"))
            .args(&full)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{full:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
