//! The L2 announcer against real tools in network namespaces: arping and
//! ndisc6 get exactly one answer from the speaker's MAC for owned addresses
//! and none otherwise; a take-over flips a client's neighbour entry.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, Instant};

use barelb_testsupport::capture::Capture;
use barelb_testsupport::netlab::{Host, Process, Topology};

const VIP4: &str = "198.18.0.100";
const VIP6: &str = "2001:db8:18::100";

/// Starts `barelb-speaker l2 ARGS…` in `host`, logging to
/// target/lab/logs/<netns>-<tag>.log (returned).
fn run_speaker(host: &Host, args: &[&str], tag: &str) -> (Process, std::path::PathBuf) {
    let bin = env!("CARGO_BIN_EXE_barelb-speaker");
    let logs = barelb_testsupport::lab::lab_dir().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join(format!("{}-{tag}.log", host.ns.name()));
    let mut full = vec![bin, "l2"];
    full.extend_from_slice(args);
    let p = host.ns.spawn_logged(&full, &log).expect("spawn speaker");
    (p, log)
}

fn speaker(host: &Host, addresses: &[&str]) -> Process {
    let mut args = vec!["--interface", host.ifname.as_str()];
    for a in addresses {
        args.extend(["--address", a]);
    }
    let (p, _) = run_speaker(host, &args, "speaker");
    // The socket is open within milliseconds; give the first announcement time to go out.
    std::thread::sleep(Duration::from_millis(300));
    p
}

/// arping's replies: (count, replying MACs lower-cased).
fn arping(client: &Host, ip: &str) -> (usize, Vec<String>) {
    let out = client
        .ns
        .exec_output(&["arping", "-c1", "-w2", "-I", &client.ifname, ip])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let macs: Vec<String> = text
        .lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| {
            l.split('[')
                .nth(1)
                .and_then(|r| r.split(']').next())
                .map(str::to_string)
        })
        .collect();
    (macs.len(), macs)
}

/// ndisc6's answer: the target link-layer address, if any.
fn ndisc(client: &Host, ip: &str) -> Option<String> {
    let out = client
        .ns
        .exec_output(&["ndisc6", "-1", "-r1", "-w", "1000", ip, &client.ifname])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    text.lines().find_map(|l| {
        l.strip_prefix("target link-layer address: ")
            .map(|m| m.trim().to_string())
    })
}

fn neigh_mac(client: &Host, ip: &str) -> Option<String> {
    let out = client.ns.ip(&["-j", "neigh", "show", ip]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v.get(0)
        .and_then(|e| e["lladdr"].as_str())
        .map(str::to_lowercase)
}

#[test]
fn answers_only_for_owned_addresses_with_its_own_mac() {
    let topo = Topology::build(&["node", "client"]).unwrap();
    let (node, client) = (topo.host("node"), topo.host("client"));
    let mut sp = speaker(node, &[VIP4, VIP6]);

    let (n, macs) = arping(client, VIP4);
    assert_eq!(n, 1, "exactly one ARP answer");
    assert_eq!(macs, std::slice::from_ref(&node.mac));
    assert_eq!(ndisc(client, VIP6), Some(node.mac.clone()));
    assert_eq!(
        arping(client, "198.18.0.101").0,
        0,
        "no answer for an address not announced"
    );
    assert_eq!(ndisc(client, "2001:db8:18::101"), None);

    sp.kill();
    assert_eq!(arping(client, VIP4).0, 0, "no answer after release");
    assert_eq!(ndisc(client, VIP6), None);
}

#[test]
fn take_over_flips_the_clients_neighbour_entry() {
    let topo = Topology::build(&["a", "b", "client"]).unwrap();
    let (a, b, client) = (topo.host("a"), topo.host("b"), topo.host("client"));
    let mut first = speaker(a, &[VIP4, VIP6]);
    // Pre-populate the client's entries (gratuitous ARP / unsolicited NA only update existing ones).
    let _ = client.ns.exec_output(&["ping", "-c1", "-W1", VIP4]);
    let _ = client.ns.exec_output(&["ping", "-6", "-c1", "-W1", VIP6]);
    assert_eq!(neigh_mac(client, VIP4), Some(a.mac.clone()));
    assert_eq!(neigh_mac(client, VIP6), Some(a.mac.clone()));

    first.kill();
    let _second = speaker(b, &[VIP4, VIP6]);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (m4, m6) = (neigh_mac(client, VIP4), neigh_mac(client, VIP6));
        if m4.as_deref() == Some(&b.mac) && m6.as_deref() == Some(&b.mac) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "client still has {m4:?} / {m6:?}, want {}",
            b.mac
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_owner_is_noticed_as_a_conflict() {
    let topo = Topology::build(&["a", "b", "client"]).unwrap();
    let (a, b) = (topo.host("a"), topo.host("b"));
    let mut first = speaker(a, &[VIP4, VIP6]);
    let _second = speaker(b, &[VIP4, VIP6]);
    std::thread::sleep(Duration::from_millis(500));
    first.terminate();
    let log = std::fs::read_to_string(
        barelb_testsupport::lab::lab_dir().join(format!("logs/{}-speaker.log", a.ns.name())),
    )
    .unwrap();
    let stop = log
        .lines()
        .find(|l| l.contains("stopped"))
        .unwrap_or_default()
        .to_string();
    assert!(
        log.contains("another host claims an address") && log.contains(&b.mac),
        "{log}"
    );
    let conflicts: u64 = stop
        .split("conflicts: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(conflicts >= 2, "both families seen as conflicts: {stop}");
}

#[test]
fn malformed_frames_do_not_stop_the_speaker() {
    let topo = Topology::build(&["node", "client"]).unwrap();
    let (node, client) = (topo.host("node"), topo.host("client"));
    let mut sp = speaker(node, &[VIP4]);
    // Truncated ARP and a junk IPv6/ICMPv6 frame, sent raw from the client.
    let script = "import socket,sys\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind((sys.argv[1],0))\n\
b=b'\\xff'*6+bytes.fromhex('024200000001')\n\
for n in range(0,28):\n  s.send(b+b'\\x08\\x06'+bytes(range(n)))\n\
s.send(b+b'\\x86\\xdd'+b'\\x60'+b'\\x00'*5+b'\\x3a\\xff'+b'\\x00'*32+b'\\x87')\n\
s.send(b+b'\\x86\\xdd'+b'\\x60\\x00\\x00\\x00\\xff\\xff\\x3a\\xff'+b'\\x00'*40)\n";
    client
        .ns
        .exec(&["python3", "-c", script, &client.ifname])
        .expect("send junk");
    std::thread::sleep(Duration::from_millis(200));
    assert!(sp.is_running(), "speaker died on malformed input");
    assert_eq!(arping(client, VIP4).0, 1, "still answering");
}

/// tshark in `host`'s namespace with a capture filter, printing `fields`:
/// started and capturing before `during` runs, stopped once `done` holds
/// for the rows (or 15 s pass) and one more second has shown nothing extra
/// arrives.
fn capture(
    host: &Host,
    filter: &str,
    fields: &[&str],
    done: impl Fn(&[Vec<String>]) -> bool,
    during: impl FnOnce(),
) -> Vec<Vec<String>> {
    let tshark = Capture::start(host.ns.name(), &host.ifname, filter, fields).unwrap();
    during();
    tshark.wait_until(Duration::from_secs(15), done);
    std::thread::sleep(Duration::from_secs(1));
    tshark.stop()
}

fn gratuitous(rows: &[Vec<String>]) -> Vec<&Vec<String>> {
    rows.iter()
        .filter(|r| r.first().map(String::as_str) == Some("1"))
        .collect()
}

#[test]
fn take_over_announcements_have_the_right_fields() {
    let topo = Topology::build(&["node", "client"]).unwrap();
    let (node, client) = (topo.host("node"), topo.host("client"));
    let mut sp = None;
    let arp = capture(
        client,
        "arp",
        &[
            "arp.isgratuitous",
            "arp.opcode",
            "arp.src.hw_mac",
            "arp.src.proto_ipv4",
            "eth.dst",
        ],
        |rows| gratuitous(rows).len() >= 6,
        || {
            sp = Some(speaker(node, &[VIP4]));
        },
    );
    drop(sp);
    let gratuitous = gratuitous(&arp);
    // Default: 3 rounds of request + reply.
    assert_eq!(gratuitous.len(), 6, "{arp:?}");
    for r in &gratuitous {
        assert_eq!(r[2], node.mac);
        assert_eq!(r[3], VIP4);
        assert_eq!(r[4], "ff:ff:ff:ff:ff:ff");
    }
    assert!(
        gratuitous.iter().any(|r| r[1] == "1") && gratuitous.iter().any(|r| r[1] == "2"),
        "both forms: {arp:?}"
    );

    let mut sp = None;
    let na = capture(
        client,
        "icmp6 and ip6[40]==136",
        &[
            "icmpv6.nd.na.flag.o",
            "icmpv6.nd.na.flag.s",
            "ipv6.hlim",
            "ipv6.dst",
            "icmpv6.nd.na.target_address",
            "icmpv6.opt.linkaddr",
        ],
        |rows| rows.len() >= 3,
        || sp = Some(speaker(node, &[VIP6])),
    );
    drop(sp);
    assert_eq!(na.len(), 3, "{na:?}");
    for r in &na {
        let flag = |v: &str| v == "1" || v == "True" || v == "true";
        assert!(
            flag(&r[0]) && !flag(&r[1]),
            "Override set, Solicited clear: {r:?}"
        );
        assert_eq!(
            (r[2].as_str(), r[3].as_str(), r[4].as_str()),
            ("255", "ff02::1", VIP6)
        );
        assert_eq!(r[5], node.mac);
    }
}

fn scrape(host: &Host) -> String {
    let out = host
        .ns
        .exec_output(&["curl", "-s", "http://127.0.0.1:9465/metrics"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn metrics_count_per_address_and_carrier_loss_is_seen() {
    let topo = Topology::build(&["node", "client"]).unwrap();
    let (node, client) = (topo.host("node"), topo.host("client"));
    let (_sp, log) = run_speaker(
        node,
        &[
            "--interface",
            "eth0",
            "--address",
            VIP4,
            "--metrics-addr",
            "127.0.0.1:9465",
        ],
        "metrics-speaker",
    );
    // All three announcement rounds (0, 0.5 and 1 s after start) go out
    // before the one request, so the counts below are exact.
    let all_rounds = format!("barelb_l2_gratuitous_total{{address=\"{VIP4}\"}} 6");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !scrape(node).lines().any(|l| l == all_rounds) {
        assert!(Instant::now() < deadline, "no {all_rounds:?} within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(arping(client, VIP4).0, 1);
    let m = scrape(node);
    for line in [
        format!("barelb_l2_replies_total{{address=\"{VIP4}\"}} 1"),
        format!("barelb_l2_requests_total{{address=\"{VIP4}\"}} 1"),
        format!("barelb_l2_gratuitous_total{{address=\"{VIP4}\"}} 6"),
        "barelb_link_up{interface=\"eth0\"} 1".to_string(),
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    // The lan side of the node's veth goes down: the node loses carrier.
    topo.lan.ip(&["link", "set", "p0", "down"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = scrape(node);
        if m.lines()
            .any(|l| l == "barelb_link_up{interface=\"eth0\"} 0")
        {
            assert!(
                m.contains("barelb_link_carrier_changes_total{interface=\"eth0\"} 1"),
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "carrier loss not seen:\n{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("carrier lost")
    );
}

#[test]
fn without_interface_it_picks_the_one_whose_subnet_holds_the_address() {
    let topo = Topology::build(&["node", "client"]).unwrap();
    let (node, client) = (topo.host("node"), topo.host("client"));
    let (_sp, _log) = run_speaker(node, &["--address", VIP4], "auto-speaker");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(arping(client, VIP4), (1, vec![node.mac.clone()]));

    // No subnet holds it and the namespace has no default route: refused, with the fix.
    let bin = env!("CARGO_BIN_EXE_barelb-speaker");
    let out = node
        .ns
        .exec_output(&[bin, "l2", "--address", "192.0.2.1"])
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no interface to announce 192.0.2.1 on: name one with --interface"),
        "{err}"
    );
}
