//! The apiserver-load and BGP rows, measured with the cluster's own nodes
//! and again with SPEAKERS speakers: the real nodes' and, beyond them,
//! hollow nodes' (`barelb_testsupport::hollow`: Node objects kept Ready by
//! the harness, each speaker Pod the DaemonSets place there run as the
//! speaker binary in a namespace on the LAN) — 50 speakers without 50
//! kubelets on two cores.

use std::time::Duration;

use barelb_testsupport::cluster::Cluster;
use barelb_testsupport::hollow::HollowNodes;
use barelb_testsupport::peers::Deployed;

use crate::bgp::{self, BgpFigures};
use crate::load::{self, Load};

/// The Services of the wide BGP window at most: every speaker writes for
/// every Service (MetalLB's ~3.5 requests each), so 1,000 × 50 speakers
/// would take the lab's apiserver tens of minutes.
pub const WIDE_SERVICES: usize = 100;

/// For each installed implementation (with the audit-log mark of its
/// install): its speakers' apiserver load — watches held since the
/// install, requests in one shared idle window, requests while `services`
/// BGP Services came and went — and those Services' BGP figures, with
/// `speakers` speakers announcing.
pub fn apiserver_and_bgp(
    c: &Cluster,
    rt: &tokio::runtime::Runtime,
    installed: &[(Deployed, u64)],
    speakers: usize,
    services: usize,
    idle: Duration,
) -> Vec<(Load, BgpFigures)> {
    let idle_from = load::mark();
    std::thread::sleep(idle);
    let idle_to = load::mark();
    let mut out = Vec::new();
    for (d, since) in installed {
        let busy_from = load::mark();
        let bgp = rt
            .block_on(bgp::measure(c, d, services, speakers))
            .unwrap_or_else(|e| panic!("{} BGP, {speakers} speakers: {e:#}", d.peer.name()));
        std::thread::sleep(Duration::from_secs(2)); // the audit log's batch
        let now = load::mark();
        let l = load::load(
            &load::speaker_requests(d.peer, *since, now),
            &load::speaker_requests(d.peer, idle_from, idle_to),
            idle.as_secs_f64() / 60.0,
            &load::speaker_requests(d.peer, busy_from, now),
            speakers,
        );
        eprintln!(
            "bench-peers: {} apiserver load, {speakers} speakers: {l:?}",
            d.peer.name()
        );
        out.push((l, bgp));
    }
    out
}

/// Hollow nodes added until `speakers` speakers run (each
/// implementation's on every node), their start-up let pass; removed when
/// the returned guard drops. `debug`: barelb's speaker from the debug
/// build (the smoke run's images).
pub fn hollow_speakers(
    c: &Cluster,
    installed: &[(Deployed, u64)],
    speakers: usize,
    settle: Duration,
    debug: bool,
) -> HollowNodes {
    eprintln!(
        "bench-peers: {} hollow nodes, {speakers} speakers each",
        speakers - c.nodes
    );
    let mut hollow = HollowNodes::add(c, speakers);
    for (d, _) in installed {
        hollow.run_speakers(d.peer, debug);
    }
    // Their start-up (each informer's first list, memberlist's join) is
    // not what a running speaker asks: let it pass before the idle window.
    std::thread::sleep(settle);
    hollow
}
