//! L2 benchmarks in network namespaces (root; a release build of the speaker):
//!
//! - move latency: from starting the new owner's speaker until the client's
//!   (pre-populated) neighbour entry shows the new MAC, seen through
//!   `ip monitor neigh`; p50/p99 over N moves, IPv4 and IPv6. Includes the
//!   new process's start-up, so it overstates the announcer's own latency.
//! - ARP replies per second one speaker sustains against a raw-socket flood.
//! - RSS with 1,000 owned addresses.
//!
//!     scripts/bench-speaker [MOVES]       (default 50)
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // benchmark tool: fail loudly

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use barelb_testsupport::netlab::{Host, Process, Topology};

const VIP4: &str = "198.18.0.100";
const VIP6: &str = "2001:db8:18::100";

fn bin() -> String {
    std::env::var("BARELB_SPEAKER_BIN").expect("set BARELB_SPEAKER_BIN to a release barelb-speaker")
}

fn speaker(host: &Host, addrs: &[String]) -> Process {
    let bin = bin();
    let mut args = vec![bin.as_str(), "l2", "--interface", "eth0"];
    for a in addrs {
        args.extend(["--address", a.as_str()]);
    }
    host.ns
        .spawn_logged(&args, std::path::Path::new("/dev/null"))
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let moves: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let topo = Topology::build(&["a", "b", "client"]).unwrap();
    let (a, b, client) = (topo.host("a"), topo.host("b"), topo.host("client"));
    let vips = vec![VIP4.to_string(), VIP6.to_string()];

    // Every neighbour change the client's kernel makes, timestamped on arrival.
    let mut monitor = client
        .ns
        .command("ip")
        .args(["monitor", "neigh"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let out = monitor.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line.to_lowercase()));
        }
    });

    let mut owner = speaker(a, &vips);
    std::thread::sleep(Duration::from_millis(300));
    let _ = client.ns.exec_output(&["ping", "-c1", "-W1", VIP4]);
    let _ = client.ns.exec_output(&["ping", "-6", "-c1", "-W1", VIP6]);
    let (mut lat4, mut lat6) = (Vec::new(), Vec::new());
    for i in 0..moves {
        let next = if i % 2 == 0 { b } else { a };
        owner.kill();
        while rx.try_recv().is_ok() {}
        let t0 = Instant::now();
        owner = speaker(next, &vips);
        let (mut d4, mut d6) = (None, None);
        while d4.is_none() || d6.is_none() {
            let (at, line) = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("neighbour entry did not flip within 5 s");
            if line.contains(&next.mac) {
                if line.starts_with(&format!("{VIP4} ")) {
                    d4.get_or_insert(at - t0);
                }
                if line.starts_with(&format!("{VIP6} ")) {
                    d6.get_or_insert(at - t0);
                }
            }
        }
        lat4.push(d4.unwrap());
        lat6.push(d6.unwrap());
        // Let the repeats finish so the next move starts from quiet.
        std::thread::sleep(Duration::from_millis(50));
    }
    owner.kill();
    let _ = monitor.kill();
    let _ = monitor.wait();
    lat4.sort();
    lat6.sort();
    for (fam, l) in [("IPv4", &lat4), ("IPv6", &lat6)] {
        println!(
            "move latency {fam} over {moves} moves: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(l, 0.5).as_secs_f64() * 1e3,
            percentile(l, 0.99).as_secs_f64() * 1e3,
            l.last().unwrap().as_secs_f64() * 1e3
        );
    }

    // ARP replies per second.
    let _sp = speaker(a, &[VIP4.to_string()]);
    std::thread::sleep(Duration::from_millis(300));
    let flood = r#"
import socket, sys, time
ifn, vip, me, target, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)); s.bind((ifn, 0x0806)); s.setblocking(False)
mac = bytes.fromhex(me.replace(':', '')); tmac = bytes.fromhex(target.replace(':', ''))
ip = socket.inet_aton('198.18.0.12'); v = socket.inet_aton(vip)
req = b'\xff'*6 + mac + b'\x08\x06' + b'\x00\x01\x08\x00\x06\x04\x00\x01' + mac + ip + b'\x00'*6 + v
got = 0
def drain():
    global got
    try:
        while True:
            d = s.recv(64)
            if d[6:12] == tmac and d[20:22] == b'\x00\x02': got += 1
    except BlockingIOError: pass
t0 = time.time()
for i in range(n):
    s.send(req)
    if i % 64 == 0: drain()
end = time.time() + 1.0
while time.time() < end: drain()
el = time.time() - t0 - 1.0
print(n, got, el)
"#;
    let n = 200_000;
    let out = client
        .ns
        .exec(&[
            "python3",
            "-c",
            flood,
            "eth0",
            VIP4,
            &client.mac,
            &a.mac,
            &n.to_string(),
        ])
        .unwrap();
    let parts: Vec<f64> = out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    println!(
        "ARP: {} requests sent in {:.2} s, {} replies ({:.0} replies/s; {:.1}% answered)",
        parts[0],
        parts[2],
        parts[1],
        parts[1] / parts[2],
        100.0 * parts[1] / parts[0]
    );

    // RSS with 1,000 owned addresses.
    let many: Vec<String> = (0..1000)
        .map(|i| format!("198.18.{}.{}", 10 + i / 250, 1 + i % 250))
        .collect();
    let big = speaker(b, &many);
    std::thread::sleep(Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", big.pid())).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ?")
        .to_string();
    println!(
        "speaker with 1000 owned addresses: {}",
        rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
}
