//! `scripts/bench-peers [RUNS] [N] [M] [L2] [RESTARTS]`: barelb and MetalLB
//! v0.15.2 on one lab cluster, one after the other in one invocation, put
//! through the same faults by the same code on the same clock; prints one
//! table (Markdown) with both columns and the ratio.
//!
//! Per implementation: installed as its users install it (see
//! `barelb_testsupport::peers`), then
//! - L2 failover, RUNS times per fault (the kubelet one at most 5 times:
//!   each run waits for NotReady), timed from the fault to the client's
//!   neighbour entry naming another node, with a client polling every 10 ms
//!   (see `failover` for how the node is chosen);
//! - speaker RSS with L2 L2-mode Services that have endpoints;
//! - N pending Services → all addressed once the controller starts, beside
//!   a plain client patching N statuses;
//! - controller RSS at M Services, then RESTARTS controller restarts
//!   (addresses moved; a Service created during the restart → addressed);
//!
//! then removed before the other starts.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)] // a benchmark binary

mod failover;
mod scale;

use std::time::Duration;

use barelb_testsupport::cluster::cluster;
use barelb_testsupport::install::load_images_built;
use barelb_testsupport::peers::Peer;

use failover::{Fault, Outcome, Target};
use scale::{Figures, Sizes};

/// Kubelet-stopped runs at most: each waits 20 s for NotReady and up to 60 s.
const KUBELET_RUNS: usize = 5;

struct Results {
    failover: Vec<(Fault, Outcome)>,
    scale: Figures,
}

fn main() {
    let smoke = std::env::var("BARELB_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let arg = |i: usize, full: usize, small: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(if smoke { small } else { full })
    };
    let runs = arg(1, 30, 1);
    let sizes = Sizes {
        pending: arg(2, 2000, 20),
        total: arg(3, 10_000, 60),
        l2: arg(4, 1000, 10),
        restarts: arg(5, 5, 1),
    };
    let c = cluster("bench_peers");
    load_images_built(if smoke { &["--debug"] } else { &[] });
    let client = c.client(105);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    // BARELB_PEERS=barelb or =metallb measures one (a partial run: its
    // column alone, no ratio).
    let only = std::env::var("BARELB_PEERS")
        .unwrap_or_default()
        .to_lowercase();
    let peers: Vec<Peer> = Peer::ALL
        .into_iter()
        .filter(|p| only.is_empty() || p.name().to_lowercase() == only)
        .collect();
    let mut results = Vec::new();
    for peer in peers {
        eprintln!("bench-peers: installing {}", peer.name());
        let d = peer.install(&c);
        let target = Target::deploy(&c);
        // A smoke run (scripts/test) checks the harness with two faults.
        let faults: &[Fault] = if smoke {
            &[Fault::SpeakerHung, Fault::Blackholed]
        } else {
            &Fault::ALL
        };
        let failover = faults
            .iter()
            .map(|&f| {
                let n = if f == Fault::KubeletStopped {
                    runs.min(KUBELET_RUNS)
                } else {
                    runs
                };
                (f, failover::measure(&c, &d, &client, &target, f, n))
            })
            .collect();
        drop(target);
        let scale = rt
            .block_on(scale::measure(&c, &d, sizes))
            .unwrap_or_else(|e| panic!("{}: {e:#}", peer.name()));
        results.push((peer, Results { failover, scale }));
        drop(d);
    }
    match results.as_slice() {
        [(_, b), (_, m)] => print_table(c.nodes, sizes, b, m),
        [(peer, r)] => {
            println!("\n{} alone (BARELB_PEERS): a partial run", peer.name());
            print_table(c.nodes, sizes, r, r);
        }
        _ => panic!("BARELB_PEERS={only}: names neither barelb nor metallb"),
    }
}

fn print_table(nodes: usize, sizes: Sizes, b: &Results, m: &Results) {
    println!(
        "\nbarelb vs MetalLB v0.15.2 (memberlist on, defaults), lab cluster of {nodes} nodes\n"
    );
    println!("| row | barelb | MetalLB | MetalLB ÷ barelb |");
    println!("|---|---|---|---|");
    for ((fault, ob), (_, om)) in b.failover.iter().zip(&m.failover) {
        println!(
            "| L2 failover, {}: client entry moved p50 / p99 / max (runs moved) | {} | {} | {} |",
            fault.label(),
            moved(ob),
            moved(om),
            ratio(p(&om.moved, 0.5), p(&ob.moved, 0.5))
        );
        println!(
            "| … client polling every 10 ms: requests lost; longest gap p50 / max | {} | {} | |",
            lost(ob),
            lost(om)
        );
    }
    let (sb, sm) = (&b.scale, &m.scale);
    println!(
        "| speaker RSS with {} L2 Services (nodes' min–max) | {} | {} | {} |",
        sizes.l2,
        rss_range(&sb.speaker_rss_kib),
        rss_range(&sm.speaker_rss_kib),
        ratio_f(max_kib(&sm.speaker_rss_kib), max_kib(&sb.speaker_rss_kib))
    );
    println!(
        "| {} pending Services → all addressed, controller start included (plain client's {} status patches, same run) | {} | {} | {} |",
        sizes.pending,
        sizes.pending,
        alloc(sb),
        alloc(sm),
        ratio(Some(sm.allocation), Some(sb.allocation))
    );
    println!(
        "| controller RSS with {} Services (barelb: the larger of 2 replicas) | {} | {} | {} |",
        sizes.total,
        mib(sb.controller_rss_kib),
        mib(sm.controller_rss_kib),
        ratio_f(sm.controller_rss_kib as f64, sb.controller_rss_kib as f64)
    );
    println!(
        "| controller restarted ×{} with {} Services: addresses moved | {} | {} | |",
        sizes.restarts,
        sizes.total,
        restarts_moved(sb),
        restarts_moved(sm)
    );
    let new = |f: &Figures| -> Vec<Duration> {
        let mut v: Vec<Duration> = f.restarts.iter().map(|r| r.1).collect();
        v.sort();
        v
    };
    println!(
        "| … a Service created with the restart → addressed, p50 / max | {} | {} | {} |",
        p50_max(&new(sb)),
        p50_max(&new(sm)),
        ratio(p(&new(sm), 0.5), p(&new(sb), 0.5))
    );
}

/// The `q` quantile of sorted-or-not durations (nearest rank).
fn p(v: &[Duration], q: f64) -> Option<Duration> {
    let mut s = v.to_vec();
    s.sort();
    let i = ((s.len() as f64 - 1.0) * q).round() as usize;
    s.get(i).copied()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{}", d.as_millis()))
}

fn moved(o: &Outcome) -> String {
    let mut notes = String::new();
    if o.no_candidate > 0 {
        notes += &format!("; {} runs found no address on such a node", o.no_candidate);
    }
    if o.not_home > 0 {
        notes += &format!("; {} runs did not return home in 180 s", o.not_home);
    }
    format!(
        "{} / {} / {} ms ({}/{}{notes})",
        ms(p(&o.moved, 0.5)),
        ms(p(&o.moved, 0.99)),
        ms(o.moved.iter().max().copied()),
        o.moved.len(),
        o.runs - o.no_candidate
    )
}

fn lost(o: &Outcome) -> String {
    let mut g = o.gaps_ms.clone();
    g.sort_unstable();
    let mid = g.get(g.len().saturating_sub(1) / 2).copied().unwrap_or(0);
    format!(
        "{} of {}; {} / {} ms",
        o.failed,
        o.requests,
        mid,
        g.last().copied().unwrap_or(0)
    )
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64()),
        _ => "–".into(),
    }
}

fn ratio_f(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.1}×", a / b)
    } else {
        "–".into()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn max_kib(v: &[u64]) -> f64 {
    v.iter().max().copied().unwrap_or(0) as f64
}

fn rss_range(v: &[u64]) -> String {
    let lo = v.iter().min().copied().unwrap_or(0);
    let hi = v.iter().max().copied().unwrap_or(0);
    format!(
        "{}–{:.0} MiB",
        mib(lo).trim_end_matches(" MiB"),
        hi as f64 / 1024.0
    )
}

fn alloc(f: &Figures) -> String {
    format!(
        "{:.2} s (plain {:.2} s: {:.2} of its rate)",
        f.allocation.as_secs_f64(),
        f.plain.as_secs_f64(),
        f.plain.as_secs_f64() / f.allocation.as_secs_f64()
    )
}

fn restarts_moved(f: &Figures) -> String {
    let each: Vec<String> = f.restarts.iter().map(|r| r.0.to_string()).collect();
    format!(
        "{} ({})",
        f.restarts.iter().map(|r| r.0).sum::<usize>(),
        each.join(", ")
    )
}

fn p50_max(v: &[Duration]) -> String {
    format!("{} / {} ms", ms(p(v, 0.5)), ms(v.iter().max().copied()))
}
