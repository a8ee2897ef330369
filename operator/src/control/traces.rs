//! Traces through the hub.
//!
//! Every replan is a `replan` span (its cause: a failover, a speaker
//! joining, a cluster change), and each message it sends a `send` span whose
//! W3C context travels in the message, so the speaker's `apply` continues
//! it. An address the controller allocated while tracing waits here for the
//! plan that first places it on a node: that plan gets a `plan` span inside the
//! allocation's own trace, and each message carrying the address a `send`
//! span below it, whose context travels on the address itself — so a
//! Service change is one trace from its reconcile to the speaker's
//! announcement, however many Services one plan places. Nothing is kept or
//! made beyond the bare spans when the operator does not trace.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use barelb_control::v1::operator_message;
use barelb_core::planner::Plan;
use barelb_runtime::TraceContext;
use barelb_runtime::otel::headers_of;

/// An allocation whose address never reaches a plan (no eligible node, a
/// Service deleted at once) is forgotten after this long.
const TTL: Duration = Duration::from_secs(60);
/// At most this many wait at once (a burst beyond it is not traced past
/// the reconcile).
const MAX: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct PendingTraces {
    by_ip: BTreeMap<IpAddr, (TraceContext, Instant)>,
}

impl PendingTraces {
    /// `ips` were allocated in the trace `t`.
    pub fn note(&mut self, ips: &[IpAddr], t: &TraceContext, now: Instant) {
        self.by_ip
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < TTL);
        for ip in ips {
            if self.by_ip.len() >= MAX && !self.by_ip.contains_key(ip) {
                return;
            }
            self.by_ip.insert(*ip, (t.clone(), now));
        }
    }

    /// Takes the traces of the addresses `plan` places (announces from
    /// some node), each with its addresses. An address not placed yet (no
    /// ready endpoint so far, say) keeps waiting.
    pub fn take_placed(&mut self, plan: &Plan) -> Vec<(TraceContext, BTreeSet<IpAddr>)> {
        let mut out: Vec<(TraceContext, BTreeSet<IpAddr>)> = Vec::new();
        if self.by_ip.is_empty() {
            return out;
        }
        for ip in plan.l2.keys().chain(plan.bgp.keys()) {
            let Some((t, _)) = self.by_ip.remove(ip) else {
                continue;
            };
            match out.iter_mut().find(|(o, _)| *o == t) {
                Some((_, ips)) => {
                    ips.insert(*ip);
                }
                None => out.push((t, BTreeSet::from([*ip]))),
            }
        }
        out
    }
}

/// One traced allocation in the plan being made: its `plan` span.
#[derive(Debug)]
pub(super) struct Traced {
    span: tracing::Span,
    ips: BTreeSet<IpAddr>,
}

/// A `plan` span in the trace of each traced allocation `plan` places.
pub(super) fn placed(pending: &mut PendingTraces, plan: &Plan, cause: &str) -> Vec<Traced> {
    pending
        .take_placed(plan)
        .into_iter()
        .map(|(t, ips)| {
            let span = tracing::info_span!(
                parent: None,
                "plan",
                cause,
                addresses = join(ips.iter()).as_str()
            );
            t.adopt(&span);
            Traced { span, ips }
        })
        .collect()
}

/// Stamps `msg` with the trace contexts of its `send` spans: the message's
/// own (a child of the current span, usually `replan`), and, on each
/// address of a traced allocation, one in that allocation's trace. Returns
/// the message's span.
pub(super) fn stamp(
    msg: &mut operator_message::Msg,
    node: &str,
    generation: u64,
    traced: &[Traced],
) -> tracing::Span {
    let kind = match msg {
        operator_message::Msg::Snapshot(_) => "snapshot",
        operator_message::Msg::Delta(_) => "delta",
    };
    let span = tracing::info_span!(
        "send",
        node,
        generation,
        kind,
        addresses = tracing::field::Empty
    );
    let headers = headers_of(&span);
    if headers.is_empty() {
        return span;
    }
    let (l2, bgp, own) = match msg {
        operator_message::Msg::Snapshot(s) => (&mut s.l2, &mut s.bgp_routes, &mut s.trace_context),
        operator_message::Msg::Delta(d) => {
            (&mut d.l2_set, &mut d.bgp_routes_set, &mut d.trace_context)
        }
    };
    *own = headers;
    let gained = |ip: &String| ip.parse::<IpAddr>().ok();
    span.record(
        "addresses",
        join(l2.iter().map(|a| &a.ip).chain(bgp.iter().map(|r| &r.ip))).as_str(),
    );
    for t in traced {
        let carried: Vec<IpAddr> = l2
            .iter()
            .map(|a| &a.ip)
            .chain(bgp.iter().map(|r| &r.ip))
            .filter_map(gained)
            .filter(|ip| t.ips.contains(ip))
            .collect();
        if carried.is_empty() {
            continue;
        }
        let send = tracing::info_span!(
            parent: &t.span,
            "send",
            node,
            generation,
            kind,
            addresses = join(carried.iter()).as_str()
        );
        let headers = headers_of(&send);
        let mine = |ip: &String| gained(ip).is_some_and(|ip| t.ips.contains(&ip));
        for a in l2.iter_mut().filter(|a| mine(&a.ip)) {
            a.trace_context = headers.clone();
        }
        for r in bgp.iter_mut().filter(|r| mine(&r.ip)) {
            r.trace_context = headers.clone();
        }
    }
    span
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn ctx(n: u8) -> TraceContext {
        let headers = HashMap::from([(
            "traceparent".to_string(),
            format!("00-4bf92f3577b34da6a3ce929d0e0e47{n:02x}-00f067aa0ba902b7-01"),
        )]);
        TraceContext::from_headers(&headers).unwrap()
    }

    /// A plan placing `ips` on node-1 (layer 2).
    fn plan(ips: &[&str]) -> Plan {
        let owner = barelb_core::planner::L2Owner {
            node: "node-1".into(),
            interfaces: vec![],
            standby: None,
        };
        Plan {
            l2: ips
                .iter()
                .map(|s| (s.parse().unwrap(), owner.clone()))
                .collect(),
            ..Plan::default()
        }
    }

    #[test]
    fn a_placed_address_hands_its_trace_over_once() {
        let mut p = PendingTraces::default();
        let t0 = Instant::now();
        let a: IpAddr = "198.19.0.100".parse().unwrap();
        let b: IpAddr = "2001:db8:19::100".parse().unwrap();
        p.note(&[a, b], &ctx(1), t0);
        p.note(
            &["198.19.0.101".parse().unwrap()],
            &ctx(2),
            t0 + Duration::from_secs(1),
        );
        // A plan without the addresses takes nothing.
        assert!(p.take_placed(&plan(&["198.19.0.7"])).is_empty());
        // Both families of one Service: one trace, with both addresses.
        let got = p.take_placed(&plan(&["198.19.0.101", "198.19.0.100", "2001:db8:19::100"]));
        let c = "198.19.0.101".parse().unwrap();
        assert_eq!(
            got,
            vec![
                (ctx(1), BTreeSet::from([a, b])),
                (ctx(2), BTreeSet::from([c]))
            ]
        );
        assert!(p.take_placed(&plan(&["198.19.0.100"])).is_empty());
    }

    #[test]
    fn old_and_excess_entries_are_dropped() {
        let mut p = PendingTraces::default();
        let t0 = Instant::now();
        p.note(&["198.19.0.100".parse().unwrap()], &ctx(1), t0);
        p.note(&["198.19.0.101".parse().unwrap()], &ctx(2), t0 + TTL);
        let got = p.take_placed(&plan(&["198.19.0.100", "198.19.0.101"]));
        let ips: Vec<IpAddr> = got
            .iter()
            .flat_map(|(_, ips)| ips.iter().copied())
            .collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, ctx(2));
        assert_eq!(ips, ["198.19.0.101".parse::<IpAddr>().unwrap()]);

        let many: Vec<IpAddr> = (0..MAX as u32 + 10)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .collect();
        p.note(&many, &ctx(3), t0);
        assert_eq!(p.by_ip.len(), MAX);
    }
}
