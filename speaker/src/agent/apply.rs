//! One operator message (Snapshot or Delta) applied to the announcers.
//!
//! Its `apply` span continues the operator's trace (the message's
//! `trace_context`: the replan's cause); each address it gives this node is
//! announced in an `announce` span (layer 2) or an `advertise` span (BGP)
//! below it — or, when the address carries a trace of its own (the
//! Service's allocation), in that trace, so a Service change reads as one
//! trace from the operator's reconcile to here.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use barelb_control::v1::{BgpRoute, L2Announcement, L2Standby, operator_message};
use barelb_runtime::TraceContext;

use super::bgp::Bgp;
use super::l2::L2;
use super::{Recent, both, ip};
use crate::l2::standby::Standing;

/// What the operator is told back.
#[derive(Debug)]
pub(super) struct Applied {
    pub generation: u64,
    /// Everything applied, or what could not be, in one line.
    pub result: Result<(), String>,
}

/// The announcers' state `apply` works on.
pub(super) struct Target<'a> {
    pub l2: &'a mut L2,
    pub bgp: &'a mut Bgp,
    pub recent: &'a mut Recent,
    /// False while leaving: BGP stays as the drain left it.
    pub follow_bgp: bool,
    /// Set by the first Snapshot (`/readyz`).
    pub ready: &'a AtomicBool,
}

/// Applies `msg` and announces at once what it (re)assigns: after a
/// reconnect the operator may have moved an address away and back.
pub(super) fn apply(msg: operator_message::Msg, t: Target<'_>) -> Applied {
    let (generation, kind, headers) = match &msg {
        operator_message::Msg::Snapshot(s) => (s.generation, "snapshot", &s.trace_context),
        operator_message::Msg::Delta(d) => (d.generation, "delta", &d.trace_context),
    };
    let span = tracing::info_span!("apply", generation, kind);
    if let Some(parent) = TraceContext::from_headers(headers) {
        parent.adopt(&span);
    }
    let _applying = span.enter();
    let Target {
        l2,
        bgp,
        recent,
        follow_bgp,
        ready,
    } = t;
    let (l2_set, routes, standbys) = match msg {
        operator_message::Msg::Snapshot(s) => {
            l2.clear();
            l2.clear_standbys();
            if follow_bgp {
                bgp.clear();
                for p in s.bgp_peers {
                    bgp.set_peer(p);
                }
            }
            ready.store(true, Ordering::Relaxed);
            (s.l2, s.bgp_routes, s.l2_standby)
        }
        operator_message::Msg::Delta(d) => {
            for addr in d.l2_remove.iter().filter_map(|r| ip(r)) {
                l2.remove(&addr);
            }
            for addr in d.l2_standby_remove.iter().filter_map(|r| ip(r)) {
                l2.remove_standby(&addr);
            }
            if follow_bgp {
                for n in &d.bgp_peers_remove {
                    bgp.remove_peer(n);
                }
                for p in d.bgp_peers_set {
                    bgp.set_peer(p);
                }
                for r in &d.bgp_routes_remove {
                    bgp.remove_route(r);
                }
            }
            (d.l2_set, d.bgp_routes_set, d.l2_standby_set)
        }
    };
    let announced = set_l2(l2, recent, l2_set);
    stand_by(l2, standbys);
    if follow_bgp {
        for r in routes {
            advertise(bgp, r);
        }
    }
    let result = both(l2.apply(), if follow_bgp { bgp.apply() } else { Ok(()) });
    for (addr, span) in announced {
        span.in_scope(|| l2.kick(&addr));
    }
    Applied { generation, result }
}

/// Owns each address of `set`; returns those to announce now, each with
/// its `announce` span (a quiet take-over announces nothing).
fn set_l2(
    l2: &mut L2,
    recent: &mut Recent,
    set: Vec<L2Announcement>,
) -> Vec<(IpAddr, tracing::Span)> {
    let mut announce = Vec::new();
    for a in set {
        let Some(addr) = ip(&a.ip) else { continue };
        let span = tracing::info_span!("announce", address = %addr, mode = "l2", quiet = a.quiet);
        in_own_trace(&span, &a.trace_context);
        // The operator gives it (back): old claims no longer count.
        recent.remove(&addr);
        let quiet = a.quiet;
        span.in_scope(|| l2.set(addr, a.interfaces, quiet));
        if !quiet {
            announce.push((addr, span));
        }
    }
    announce
}

/// Stands by for each address of `set` (one it owns is skipped).
fn stand_by(l2: &mut L2, set: Vec<L2Standby>) {
    for s in set {
        let Some(addr) = ip(&s.ip) else { continue };
        l2.set_standby(
            addr,
            Standing {
                owner: s.owner,
                interfaces: s.interfaces,
            },
        );
    }
}

fn advertise(bgp: &mut Bgp, r: BgpRoute) {
    let span = tracing::info_span!(
        "advertise",
        address = %r.ip,
        mode = "bgp",
        peers = r.peers.join(",").as_str()
    );
    in_own_trace(&span, &r.trace_context);
    let _advertising = span.entered();
    bgp.set_route(r);
}

/// Moves `span` into the trace an address carries, if it carries one.
fn in_own_trace(span: &tracing::Span, headers: &std::collections::HashMap<String, String>) {
    if let Some(t) = TraceContext::from_headers(headers) {
        t.adopt(span);
    }
}
