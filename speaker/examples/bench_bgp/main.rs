//! BGP convergence and memory, side by side with gobgpd (run through
//! `scripts/bench-bgp`, which builds barelb-speaker in release mode):
//!
//! - A BIRD router peers with barelb-speaker (AS 64500) and with gobgpd
//!   (AS 64502) in their own namespaces. Per round: barelb announces N /32s
//!   (announce file + SIGHUP) and we time until BIRD holds all N; then it
//!   withdraws them (empty file + SIGHUP) until BIRD holds none. Then the
//!   same with gobgpd as announcer: the same N paths streamed into its
//!   global RIB over its gRPC API (see `gobgp.rs`), then deleted.
//! - The speaker also peers with a second BIRD, so the RSS printed is with
//!   N prefixes on 2 sessions; gobgpd's RSS with N prefixes on 1 session is
//!   printed beside it.
//!
//! Usage: bench_bgp [N=10000] [ROUNDS=5]; needs root and BARELB_SPEAKER_BIN.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // bench harness

mod gobgp;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use barelb_testsupport::netlab::Topology;
use barelb_testsupport::routers::{Kind, Neighbor, Router};

const OURS_AS: u32 = 64500;
const GOBGP_AS: u32 = 64502;
const BIRD_AS: u32 = 65000;
const BIRD2_AS: u32 = 65001;

fn prefixes(n: u32) -> Vec<Ipv4Addr> {
    // 100.64.0.0/10 (shared address space): 4 M host addresses, lab-only here.
    (0..n).map(|i| Ipv4Addr::from(0x6440_0000 + i)).collect()
}

fn wait_count(router: &Router, want: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        if router.route_count()? == want {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("BIRD never reached {want} routes");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn hup(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "SIGHUP to the speaker failed");
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `bench_bgp gobgp-add N NEXT_HOP` / `bench_bgp gobgp-del`, run by the
/// benchmark inside gobgpd's namespace (its API listens on that loopback).
fn gobgp_mode(args: &[String]) -> anyhow::Result<bool> {
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    match args.first().map(String::as_str) {
        Some("gobgp-add") => {
            let n: u32 = args.get(1).context("N")?.parse()?;
            let nh: Ipv4Addr = args.get(2).context("NEXT_HOP")?.parse()?;
            rt()?.block_on(gobgp::add(&prefixes(n), nh))?;
            Ok(true)
        }
        Some("gobgp-del") => {
            rt()?.block_on(gobgp::delete_all())?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if gobgp_mode(&argv)? {
        return Ok(());
    }
    let mut args = argv.into_iter();
    let n: u32 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let bin = std::env::var("BARELB_SPEAKER_BIN")
        .context("set BARELB_SPEAKER_BIN to a release barelb-speaker")?;

    let topo = Topology::build(&["bird", "bird2", "ours", "gobgp"])?;
    let (bh, b2h, ours, gh) = (
        topo.host("bird"),
        topo.host("bird2"),
        topo.host("ours"),
        topo.host("gobgp"),
    );
    let neighbor = |addr: Ipv4Addr, asn| Neighbor {
        addr: IpAddr::V4(addr),
        asn,
        password: None,
    };
    let bird = Router::start(
        Kind::Bird,
        bh,
        BIRD_AS,
        vec![neighbor(ours.ipv4, OURS_AS), neighbor(gh.ipv4, GOBGP_AS)],
    )?;
    let bird2 = Router::start(
        Kind::Bird,
        b2h,
        BIRD2_AS,
        vec![neighbor(ours.ipv4, OURS_AS)],
    )?;
    let gobgp = Router::start(Kind::Gobgp, gh, GOBGP_AS, vec![neighbor(bh.ipv4, BIRD_AS)])?;

    let dir = barelb_testsupport::lab::lab_dir().join("bench-bgp");
    std::fs::create_dir_all(&dir)?;
    let announce = dir.join("announce.txt");
    std::fs::write(&announce, "")?;
    let list = prefixes(n);
    let text: String = list.iter().map(|p| format!("{p}\n")).collect();
    let me = std::env::current_exe()?.display().to_string();
    let (n_arg, nh_arg) = (n.to_string(), gh.ipv4.to_string());

    let (p1, p2, file) = (
        bh.ipv4.to_string(),
        b2h.ipv4.to_string(),
        announce.display().to_string(),
    );
    let speaker = ours.ns.spawn_logged(
        &[
            &bin,
            "bgp",
            "--peer",
            &p1,
            "--peer",
            &p2,
            "--peer-asn",
            &BIRD_AS.to_string(),
            "--peer-asn",
            &BIRD2_AS.to_string(),
            "--my-asn",
            &OURS_AS.to_string(),
            "--connect-retry",
            "1",
            "--announce-file",
            &file,
        ],
        &dir.join("speaker.log"),
    )?;
    let pid = speaker.pid();
    for (r, who) in [(&bird, ours.ipv4), (&bird2, ours.ipv4), (&bird, gh.ipv4)] {
        r.wait_established(IpAddr::V4(who), Duration::from_secs(30))?;
    }
    let rss_idle = rss_kib(pid);

    let (mut oa, mut ow, mut ga, mut gw) = (vec![], vec![], vec![], vec![]);
    let (mut rss_ours, mut rss_gobgp) = (0, 0);
    let usize_n = usize::try_from(n)?;
    for round in 0..rounds {
        std::fs::write(&announce, &text)?;
        let t = Instant::now();
        hup(pid);
        wait_count(&bird, usize_n)?;
        oa.push(t.elapsed());
        if round == 0 {
            wait_count(&bird2, usize_n)?;
            rss_ours = rss_kib(pid);
        }
        std::fs::write(&announce, "")?;
        let t = Instant::now();
        hup(pid);
        wait_count(&bird, 0)?;
        ow.push(t.elapsed());

        let t = Instant::now();
        gh.ns.exec(&[&me, "gobgp-add", &n_arg, &nh_arg])?;
        wait_count(&bird, usize_n)?;
        ga.push(t.elapsed());
        if round == 0 {
            rss_gobgp = gobgp.pid().map(rss_kib).unwrap_or(0);
        }
        let t = Instant::now();
        gh.ns.exec(&[&me, "gobgp-del"])?;
        wait_count(&bird, 0)?;
        gw.push(t.elapsed());
        eprintln!(
            "round {round}: barelb announce {:.0} ms, withdraw {:.0} ms; gobgpd announce {:.0} ms, withdraw {:.0} ms",
            ms(oa[round]),
            ms(ow[round]),
            ms(ga[round]),
            ms(gw[round])
        );
    }
    let (oa, ow, ga, gw) = (
        median(&mut oa),
        median(&mut ow),
        median(&mut ga),
        median(&mut gw),
    );
    println!("BGP convergence to BIRD, {n} /32 prefixes, median of {rounds} rounds:");
    println!(
        "  announce: barelb-speaker {:.0} ms, gobgpd {:.0} ms, barelb/gobgpd {:.2}",
        ms(oa),
        ms(ga),
        oa.as_secs_f64() / ga.as_secs_f64()
    );
    println!(
        "  withdraw: barelb-speaker {:.0} ms, gobgpd {:.0} ms, barelb/gobgpd {:.2}",
        ms(ow),
        ms(gw),
        ow.as_secs_f64() / gw.as_secs_f64()
    );
    println!(
        "RSS: barelb-speaker {:.1} MiB with {n} prefixes on 2 sessions ({:.1} MiB idle); gobgpd {:.1} MiB with {n} on 1 session",
        rss_ours as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        rss_gobgp as f64 / 1024.0
    );
    Ok(())
}
