//! `scripts/bench-peers [RUNS] [N] [M] [L2] [RESTARTS] [BGP]`: barelb and
//! MetalLB v0.15.2 on one lab cluster in one invocation, put through the
//! same faults by the same code on the same clock; prints one table
//! (Markdown) with both columns and the ratio.
//!
//! Both are installed at once (MetalLB with `--lb-class`, barelb serving
//! the class-less Services; see `barelb_testsupport::peers`), then
//! - L2 failover, RUNS times per fault (the controller's node at most 10
//!   times: each is two runs): one fault hits both implementations'
//!   addresses on the node, each timed from the fault to the client's
//!   neighbour entry naming another node, with a client polling each every
//!   10 ms (see `failover` for how the node is chosen), and after the
//!   repair, how long two nodes answered for one address;
//! - the apiserver's view of each one's speakers (`load`): watches held,
//!   requests per minute idle and while BGP Services come and go;
//! - BGP (`bgp`), one at a time: BGP Services (the argument) → every /32 from every
//!   node on the LAN router, and withdrawn when deleted;
//!
//! then, each alone on the cluster (the other removed, so neither caches
//! the other's thousands of Services): speaker RSS with L2 L2-mode
//! Services; N pending Services → all addressed once the controller
//! starts, beside a plain client patching N statuses; controller RSS at M
//! Services; RESTARTS controller restarts (addresses moved; a Service
//! created during the restart → addressed).
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)] // a benchmark binary

mod bgp;
mod failover;
mod load;
mod scale;
mod wide;

use std::time::Duration;

use barelb_testsupport::cluster::cluster;
use barelb_testsupport::install::load_images_built;
use barelb_testsupport::peers::{Deployed, Peer};

use bgp::BgpFigures;
use failover::{Fault, Outcome, Side, Target};
use load::Load;
use scale::{Figures, Sizes};

/// Controller's-node runs at most: each is two runs (one per side's
/// controller node), and barelb's takes a leader election (~20 s).
const CONTROLLER_NODE_RUNS: usize = 10;

/// The idle window of the apiserver-load row.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Results {
    failover: Vec<(Fault, Outcome)>,
    load: Load,
    bgp: BgpFigures,
    /// The apiserver-load and BGP rows again with SPEAKERS speakers.
    wide: Option<(Load, BgpFigures)>,
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
    let bgp_services = arg(6, 1000, 10);
    let speakers = arg(7, 50, 5);
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
    assert!(
        !peers.is_empty(),
        "BARELB_PEERS={only}: names neither barelb nor metallb"
    );
    let mut results: Vec<Results> = peers.iter().map(|_| Results::default()).collect();
    // RUNS=0 and BGP=0: neither the failover nor the apiserver and BGP
    // rows (which need BGP Services to come and go), so no side-by-side
    // install at all.
    if runs > 0 || bgp_services > 0 {
        side_by_side(
            &c,
            &client,
            &rt,
            &peers,
            runs,
            (bgp_services, speakers),
            smoke,
            &mut results,
        );
    }

    // Alone: the rows with thousands of Services (all sizes 0: left out,
    // as when another invocation measures them).
    for (&peer, r) in peers.iter().zip(results.iter_mut()).filter(|_| sizes.any()) {
        eprintln!("bench-peers: {} alone for the scale rows", peer.name());
        let d = peer.install(&c);
        r.scale = rt
            .block_on(scale::measure(&c, &d, sizes))
            .unwrap_or_else(|e| panic!("{}: {e:#}", peer.name()));
    }
    let table = Table {
        nodes: c.nodes,
        sizes,
        bgp_services,
        speakers,
        alone: (peers.len() == 1).then(|| peers[0].name()),
    };
    match results.as_slice() {
        [b, m] => table.print(b, m),
        // Alone: its one column (the second argument is not printed).
        [r] => table.print(r, r),
        _ => unreachable!("one or two implementations"),
    }
}

/// Both installed at once: the failover rows (one fault, both timed), the
/// apiserver-load rows and, one after the other, the BGP rows (`bgp`:
/// Services; speakers for the wide rows, none when not above the nodes).
#[allow(clippy::too_many_arguments)] // one call, from main
fn side_by_side(
    c: &barelb_testsupport::cluster::Cluster,
    client: &barelb_testsupport::cluster::Client,
    rt: &tokio::runtime::Runtime,
    peers: &[Peer],
    runs: usize,
    (bgp_services, speakers): (usize, usize),
    smoke: bool,
    results: &mut [Results],
) {
    let mut installed: Vec<(Deployed, u64)> = Vec::new();
    for &peer in peers {
        eprintln!("bench-peers: installing {}", peer.name());
        let mark = load::mark();
        installed.push((peer.install(c), mark));
    }
    {
        let targets: Vec<Target> = peers.iter().map(|&p| Target::deploy(c, p)).collect();
        let sides: Vec<Side> = installed
            .iter()
            .zip(&targets)
            .map(|((d, _), target)| Side { d, target })
            .collect();
        // A smoke run (scripts/test) checks the harness with two faults;
        // BARELB_PEERS_FAULTS (keys, comma-separated) picks some.
        let picked = std::env::var("BARELB_PEERS_FAULTS").unwrap_or_default();
        let faults: Vec<Fault> = if !picked.is_empty() {
            let keys: Vec<&str> = picked.split(',').map(str::trim).collect();
            let f: Vec<Fault> = Fault::ALL
                .into_iter()
                .filter(|f| keys.contains(&f.key()))
                .collect();
            let known: Vec<&str> = Fault::ALL.iter().map(|f| f.key()).collect();
            assert_eq!(
                f.len(),
                keys.len(),
                "BARELB_PEERS_FAULTS={picked}: each must be one of {known:?}"
            );
            f
        } else if smoke {
            vec![Fault::SpeakerHung, Fault::Blackholed]
        } else {
            Fault::ALL.to_vec()
        };
        // RUNS=0: no failover rows (a run of the other rows alone).
        for f in faults.into_iter().filter(|_| runs > 0) {
            let n = match f {
                Fault::BlackholedControllerNode => runs.min(CONTROLLER_NODE_RUNS),
                _ => runs,
            };
            let outs = failover::measure(c, &sides, client, f, n);
            for (r, o) in results.iter_mut().zip(outs) {
                r.failover.push((f, o));
            }
        }
    }
    if bgp_services == 0 {
        return; // the apiserver and BGP rows left out (BGP=0)
    }
    let idle = if smoke { Duration::from_secs(5) } else { IDLE };
    let rows = wide::apiserver_and_bgp(c, rt, &installed, c.nodes, bgp_services, idle);
    for (r, (load, bgp)) in results.iter_mut().zip(rows) {
        (r.load, r.bgp) = (load, bgp);
    }
    if speakers > c.nodes {
        let services = bgp_services.min(wide::WIDE_SERVICES);
        let mut hollow = wide::hollow_speakers(c, &installed, speakers, idle, smoke);
        let rows = wide::apiserver_and_bgp(c, rt, &installed, speakers, services, idle);
        hollow.assert_running();
        drop(hollow);
        for (r, row) in results.iter_mut().zip(rows) {
            r.wide = Some(row);
        }
    }
}

struct Table {
    nodes: usize,
    sizes: Sizes,
    bgp_services: usize,
    /// Speakers of the wide rows (real and hollow nodes').
    speakers: usize,
    /// A partial run (`BARELB_PEERS`): the one implementation measured,
    /// printed in a column of its own (no second column, no ratio).
    alone: Option<&'static str>,
}

impl Table {
    /// One row: barelb's cell, MetalLB's and the ratio — or, alone, the
    /// one measured (passed as `b`).
    fn row(&self, label: &str, b: String, m: String, ratio: String) {
        match self.alone {
            Some(_) => println!("| {label} | {b} |"),
            None => println!("| {label} | {b} | {m} | {ratio} |"),
        }
    }

    fn print(&self, b: &Results, m: &Results) {
        let (nodes, sizes) = (self.nodes, self.sizes);
        match self.alone {
            Some(name) => {
                println!(
                    "\n{name} alone (BARELB_PEERS: a partial run), lab cluster of {nodes} nodes\n"
                );
                println!("| row | {name} |");
                println!("|---|---|");
            }
            None => {
                println!(
                    "\nbarelb vs MetalLB v0.15.2 (memberlist on, defaults), lab cluster of {nodes} nodes\n"
                );
                println!("| row | barelb | MetalLB | MetalLB ÷ barelb |");
                println!("|---|---|---|---|");
            }
        }
        let none = String::new;
        for ((fault, ob), (_, om)) in b.failover.iter().zip(&m.failover) {
            self.row(
                &format!(
                    "L2 failover, {}: client entry moved p50 / p99 / max (runs moved)",
                    fault.label()
                ),
                moved(ob),
                moved(om),
                ratio(p(&om.moved, 0.5), p(&ob.moved, 0.5)),
            );
            self.row(
                "… client polling every 10 ms: requests lost; longest gap p50 / max",
                lost(ob),
                lost(om),
                none(),
            );
            self.row(
                "… after the repair, two nodes answering the address (100-ms ARP rounds): repairs; longest run p50 / max",
                split(ob),
                split(om),
                none(),
            );
        }
        let what = format!("{nodes} nodes");
        let services = self.bgp_services;
        if services > 0 {
            self.print_load(&what, services, (&b.load, &b.bgp), (&m.load, &m.bgp));
        }
        if let (Some((lb, bb)), Some((lm, bm))) = (&b.wide, &m.wide) {
            let what = format!(
                "{} speakers: {nodes} nodes, {} hollow",
                self.speakers,
                self.speakers - nodes
            );
            let services = services.min(wide::WIDE_SERVICES);
            self.print_load(&what, services, (lb, bb), (lm, bm));
        }
        if sizes.any() {
            self.print_scale(&b.scale, &m.scale);
        }
    }

    /// The apiserver-load and BGP rows of one window (`what`: its
    /// speakers), barelb's and MetalLB's figures.
    fn print_load(
        &self,
        what: &str,
        services: usize,
        (lb, bb): (&Load, &BgpFigures),
        (lm, bm): (&Load, &BgpFigures),
    ) {
        let none = String::new;
        self.row(
            &format!("apiserver: watches held per speaker ({what}; speakers seen)"),
            format!("{:.1} ({})", lb.watches, lb.speakers),
            format!("{:.1} ({})", lm.watches, lm.speakers),
            none(),
        );
        self.row(
            &format!("apiserver: requests per speaker per minute, idle (watches aside; {what})"),
            format!("{:.1}", lb.idle_per_min),
            format!("{:.1}", lm.idle_per_min),
            none(),
        );
        self.row(
            &format!(
                "apiserver: requests per speaker while {services} BGP Services came and went ({what})"
            ),
            format!("{:.0}", lb.busy),
            format!("{:.0}", lm.busy),
            none(),
        );
        self.row(
            "… by verb and resource, all speakers",
            verbs(lb),
            verbs(lm),
            none(),
        );
        self.row(
            &format!(
                "BGP: {services} Services → the router has each /32 from every speaker ({what})"
            ),
            secs(bb.announced),
            secs(bm.announced),
            ratio(Some(bm.announced), Some(bb.announced)),
        );
        self.row(
            "BGP: … deleted → the router has none",
            secs(bb.withdrawn),
            secs(bm.withdrawn),
            ratio(Some(bm.withdrawn), Some(bb.withdrawn)),
        );
    }

    fn print_scale(&self, sb: &Figures, sm: &Figures) {
        let sizes = self.sizes;
        self.row(
            &format!("speaker RSS with {} L2 Services (nodes' min–max)", sizes.l2),
            rss_range(&sb.speaker_rss_kib),
            rss_range(&sm.speaker_rss_kib),
            ratio_f(max_kib(&sm.speaker_rss_kib), max_kib(&sb.speaker_rss_kib)),
        );
        // A size of 0 measured nothing: its rows would print zeros.
        if sizes.pending > 0 {
            self.row(
                &format!(
                    "{} pending Services → all addressed, controller start included (plain client's {} status patches, same run)",
                    sizes.pending, sizes.pending
                ),
                alloc(sb),
                alloc(sm),
                ratio(Some(sm.allocation), Some(sb.allocation)),
            );
        }
        if sizes.total > 0 {
            self.row(
                &format!(
                    "controller RSS with {} Services (barelb: the larger of 2 replicas)",
                    sizes.total
                ),
                mib(sb.controller_rss_kib),
                mib(sm.controller_rss_kib),
                ratio_f(sm.controller_rss_kib as f64, sb.controller_rss_kib as f64),
            );
        }
        if sizes.restarts == 0 {
            return;
        }
        self.row(
            &format!(
                "controller restarted ×{} with {} Services: addresses moved",
                sizes.restarts, sizes.total
            ),
            restarts_moved(sb),
            restarts_moved(sm),
            String::new(),
        );
        let new = |f: &Figures| -> Vec<Duration> {
            let mut v: Vec<Duration> = f.restarts.iter().map(|r| r.1).collect();
            v.sort();
            v
        };
        self.row(
            "… a Service created with the restart → addressed, p50 / max",
            p50_max(&new(sb)),
            p50_max(&new(sm)),
            ratio(p(&new(sm), 0.5), p(&new(sb), 0.5)),
        );
    }
}

fn verbs(l: &Load) -> String {
    if l.busy_by_verb.is_empty() {
        return "none".into();
    }
    let each: Vec<String> = l
        .busy_by_verb
        .iter()
        .map(|(v, n)| format!("{v} {n}"))
        .collect();
    each.join(", ")
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn split(o: &Outcome) -> String {
    format!(
        "{}/{}; {} / {} ms",
        o.split.len(),
        o.repairs,
        ms(p(&o.split, 0.5)),
        ms(o.split.iter().max().copied())
    )
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
