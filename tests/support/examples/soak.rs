//! `scripts/soak [MINUTES] [RATE]`: barelb installed with Helm on the
//! 3-node lab cluster and left to run MINUTES (60; 2 in a smoke run) under
//! mixed churn, its processes sampled every 10 s:
//!
//! - each tick (a second, or as long as kubectl takes) RATE (2) Services
//!   created and as many deleted (a population of 60, L2 and BGP by turns,
//!   from pools of their own), so addresses are allocated, announced,
//!   withdrawn and reused all along;
//! - their backend scaled between 2 and 3 Pods every 30 ticks (endpoints
//!   change, and with them `externalTrafficPolicy`-aware plans);
//! - their L2 pool relabelled every 60 ticks (the operator recomputes pools);
//! - an L2 and a BGP Service polled every 100 ms by a client on the LAN.
//!
//! Every 10 s the RSS and open file descriptors of each barelb-operator
//! and barelb-speaker process are read from /proc. Prints per process the
//! first and last quarter's median and the least-squares slope per hour
//! after a warm-up (the first fifth), and fails when a process restarted,
//! a request was lost, or a figure grows: RSS up by more than 5 % (and at
//! least 2 MiB) with a rising slope, or more than 2 file descriptors.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)] // a soak binary

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use barelb_testsupport::bulk::{pids_named, rss_kib};
use barelb_testsupport::chaos::wait_driving;
use barelb_testsupport::cluster::{Cluster, cluster};
use barelb_testsupport::install::*;
use barelb_testsupport::trend::Series;

/// Services kept alive by the churn.
const POPULATION: usize = 60;
/// Samples before this fraction of the run are warm-up.
const WARMUP: f64 = 0.2;

/// One process's figures.
#[derive(Default)]
struct Sampled {
    what: String,
    rss_kib: Series,
    fds: Series,
}

fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Samples every barelb process every 10 s until `stop`; keyed by PID.
fn sample(stop: &AtomicBool, began: Instant) -> BTreeMap<u32, Sampled> {
    let mut all: BTreeMap<u32, Sampled> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let at = began.elapsed().as_secs_f64();
        for what in ["barelb-operator", "barelb-speaker"] {
            for pid in pids_named(what) {
                let (rss, Some(fds)) = (rss_kib(pid), fd_count(pid)) else {
                    continue;
                };
                let s = all.entry(pid).or_default();
                s.what = what.to_string();
                s.rss_kib.push(at, rss as f64);
                s.fds.push(at, fds as f64);
            }
        }
        let next = Duration::from_secs(10);
        let until = Instant::now() + next;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    all
}

fn soak_pools(ns: &str) -> String {
    format!(
        "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {ns}-soak-l2}}\n\
         spec: {{addresses: [198.19.0.150-198.19.0.199], autoAssign: false, announce: {{mode: L2}}}}\n---\n\
         apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {ns}-soak-bgp}}\n\
         spec: {{addresses: [203.0.113.128/25], autoAssign: false, announce: {{mode: BGP, bgp: {{peerSelector: {{matchLabels: {{rack: {ns}}}}}}}}}}}\n"
    )
}

fn service(ns: &str, i: usize) -> String {
    let pool = if i.is_multiple_of(2) {
        "soak-l2"
    } else {
        "soak-bgp"
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: soak-{i}, namespace: {ns}, annotations: {{barelb.io/pool: {ns}-{pool}}}}}\n\
         spec: {{type: LoadBalancer, selector: {{app: soak-backend}}, ports: [{{port: 80, targetPort: 8080}}]}}\n---\n"
    )
}

/// The churned Services' own backend (scaling the polled Services' backend
/// would count Kubernetes' own endpoint churn — connections to a removed Pod
/// time out — as barelb's lost requests).
fn soak_backend(ns: &str) -> String {
    backend_yaml(ns, 2, None)
        .replace("name: backend", "name: soak-backend")
        .replace("app: backend", "app: soak-backend")
}

/// The churn: RATE Services a second in, as many out; the backend scaled
/// every 30 ticks; the L2 pool relabelled every 60. A tick lasts a second,
/// or longer when kubectl takes longer. Returns the Services created and
/// the ticks.
fn churn(c: &Cluster, ns: &str, rate: usize, for_: Duration) -> (usize, u64) {
    let mut live: VecDeque<usize> = VecDeque::new();
    let mut next = 0usize;
    let start = Instant::now();
    let mut tick = start;
    let mut second = 0u64;
    while start.elapsed() < for_ {
        let yaml: String = (next..next + rate).map(|i| service(ns, i)).collect();
        ok(c.lab.apply(&yaml), "kubectl apply (churn)");
        live.extend(next..next + rate);
        next += rate;
        if live.len() > POPULATION {
            let gone: Vec<String> = (0..rate)
                .filter_map(|_| live.pop_front())
                .map(|i| format!("soak-{i}"))
                .collect();
            let mut args = vec!["-n", ns, "delete", "service", "--wait=false"];
            args.extend(gone.iter().map(String::as_str));
            ok(c.lab.kubectl(&args), "kubectl delete (churn)");
        }
        second += 1;
        if second.is_multiple_of(30) {
            let replicas = format!(
                "--replicas={}",
                if second.is_multiple_of(60) { 3 } else { 2 }
            );
            ok(
                c.lab
                    .kubectl(&["-n", ns, "scale", "deployment/soak-backend", &replicas]),
                "kubectl scale",
            );
        }
        if second.is_multiple_of(60) {
            let label = format!("soak-round={second}");
            let pool = format!("addresspool/{ns}-soak-l2");
            ok(
                c.lab.kubectl(&["label", "--overwrite", &pool, &label]),
                "kubectl label",
            );
        }
        tick += Duration::from_secs(1);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
    (next, second)
}

fn main() {
    let smoke = std::env::var("BARELB_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let arg = |n: usize| std::env::args().nth(n).and_then(|a| a.parse::<f64>().ok());
    let minutes = arg(1).unwrap_or(if smoke { 2.0 } else { 60.0 });
    let rate = arg(2).unwrap_or(2.0) as usize;
    let c = cluster("soak");
    load_images_built(if smoke { &["--debug"] } else { &[] });
    let installed = install_with_helm(&c);
    let (router, w, client, vips) = l2_and_bgp_answering(&c, 106);
    apply(&c, &soak_pools(&w.ns));
    apply(&c, &soak_backend(&w.ns));
    wait_driving(&c, Duration::from_secs(60));
    let urls: Vec<String> = vips.iter().map(|v| format!("http://{v}/")).collect();
    let poller = client.poll(&urls, 100);
    let stop = Arc::new(AtomicBool::new(false));
    let began = Instant::now();
    let sampler = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || sample(&stop, began)
    });
    let (created, ticks) = churn(&c, &w.ns, rate, Duration::from_secs_f64(minutes * 60.0));
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler.join().expect("sampler");
    let polled = poller.stop();
    println!(
        "{minutes} min, {ticks} ticks: {created} Services created and {} deleted ({rate} each way a tick, {POPULATION} alive), their backend scaled every 30 ticks, their pool relabelled every 60; samples every 10 s, trend after the first {:.0} %",
        created.saturating_sub(POPULATION),
        WARMUP * 100.0
    );
    println!(
        "{:<16} {:>8} {:>11} {:>11} {:>12} {:>6} {:>6} {:>9}",
        "process", "pid", "RSS MiB q1", "RSS MiB q4", "MiB/hour", "fd q1", "fd q4", "fd/hour"
    );
    let mut failed = Vec::new();
    let longest = sampled
        .values()
        .map(|s| s.rss_kib.samples.len())
        .max()
        .unwrap_or(0);
    for (pid, s) in &sampled {
        // A process that came or went during the run restarted (or was
        // replaced): its series is short.
        if s.rss_kib.samples.len() + 2 < longest {
            failed.push(format!(
                "{} {pid}: sampled {} times of {longest} (restarted?)",
                s.what,
                s.rss_kib.samples.len()
            ));
            continue;
        }
        let (Some(rss), Some(fds)) = (s.rss_kib.trend(WARMUP), s.fds.trend(WARMUP)) else {
            failed.push(format!("{} {pid}: too few samples", s.what));
            continue;
        };
        println!(
            "{:<16} {pid:>8} {:>11.1} {:>11.1} {:>12.2} {:>6.0} {:>6.0} {:>9.2}",
            s.what,
            rss.first / 1024.0,
            rss.last / 1024.0,
            rss.per_hour / 1024.0,
            fds.first,
            fds.last,
            fds.per_hour
        );
        if rss.grows((rss.first * 0.05).max(2048.0)) {
            failed.push(format!("{} {pid}: RSS grows ({rss:?})", s.what));
        }
        if fds.grows(2.0) {
            failed.push(format!("{} {pid}: file descriptors grow ({fds:?})", s.what));
        }
    }
    for p in &polled {
        println!(
            "{}: {} requests, {} failed, longest gap {} ms",
            p.url, p.requests, p.failed, p.longest_gap_ms
        );
        if p.failed > 0 {
            failed.push(format!("{}: {} requests failed", p.url, p.failed));
        }
    }
    if sampled
        .values()
        .filter(|s| s.what == "barelb-speaker")
        .count()
        < c.nodes
    {
        failed.push("not every speaker was sampled".into());
    }
    drop(client);
    drop(w);
    drop(router);
    drop(installed);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
