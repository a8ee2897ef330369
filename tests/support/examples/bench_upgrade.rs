//! `scripts/bench-upgrade [ROUNDS]`: barelb installed with Helm on the
//! 3-node lab cluster, then ROUNDS rolling upgrades (every operator and
//! speaker Pod restarts) while a client asks an L2 and a BGP Service every
//! 10 ms on a new connection each; then as many with the speakers' hand-over
//! turned off (`speaker.leaveTimeout=0s`, `bgpDrain=0s`: a speaker that
//! stops at once), the reference. Prints the time from `helm install` to both
//! Services answering, and per round the requests lost, the longest time
//! without an answer and whether an address ended on another node.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)] // a benchmark binary

use std::time::{Duration, Instant};

use barelb_testsupport::cluster::cluster;
use barelb_testsupport::install::*;

fn main() {
    let (smoke, rounds) = barelb_testsupport::bench_args(5);
    let c = cluster("bench_upgrade");
    load_images_built(if smoke { &["--debug"] } else { &[] });
    let started = Instant::now();
    let installed = install_with_helm(&c);
    let (_router, w, client, vips) = l2_and_bgp_answering(&c, 104);
    let urls = vips.map(|v| format!("http://{v}/"));
    println!(
        "helm install → both Services answering: {} ms",
        started.elapsed().as_millis()
    );
    let modes: [(&str, &[&str]); 2] = [
        ("barelb (hand-over)", &[]),
        (
            "reference: no hand-over",
            &["speaker.leaveTimeout=0s", "speaker.bgpDrain=0s"],
        ),
    ];
    println!(
        "{:<26} {:>5} {:>9} {:>12} {:>9} {:>12} {:>6} {:>8}",
        "mode", "round", "L2 lost", "L2 gap ms", "BGP lost", "BGP gap ms", "moved", "roll ms"
    );
    let mut round = 0;
    for (name, sets) in modes {
        for r in 1..=rounds {
            round += 1;
            let tag = if round % 2 == 1 {
                "0.1.0-next"
            } else {
                "0.1.0"
            };
            let before = (announced(&c, &w.ns, "web"), announced(&c, &w.ns, "routed"));
            let poller = client.poll(&urls, 10);
            std::thread::sleep(Duration::from_secs(1));
            let t = Instant::now();
            helm_upgrade(&c, tag, sets);
            let roll = t.elapsed().as_millis();
            std::thread::sleep(Duration::from_secs(2));
            let p = poller.stop();
            let after = (announced(&c, &w.ns, "web"), announced(&c, &w.ns, "routed"));
            println!(
                "{name:<26} {r:>5} {:>4}/{:<4} {:>12} {:>4}/{:<4} {:>12} {:>6} {roll:>8}",
                p[0].failed,
                p[0].requests,
                p[0].longest_gap_ms,
                p[1].failed,
                p[1].requests,
                p[1].longest_gap_ms,
                if before == after { "no" } else { "yes" }
            );
        }
    }
    drop(w);
    drop(installed);
}
