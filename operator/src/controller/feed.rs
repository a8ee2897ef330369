//! Keeps the control hub's inputs current from the index, on one schedule
//! shared by the controller's loop and the leader's writes.
//!
//! Passing changes on recomputes the planner's inputs from every Service
//! (milliseconds at 10,000), so it is paced: at most every [`FEED_EVERY`],
//! and never more than a fifth of the time ([`FEED_SHARE`]). Unpaced, each
//! watch event did it once, so creating 10,000 Services cost time
//! quadratic in their number.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Settings;
use crate::control::{Hub, inputs};
use crate::index::{Index, Touched};
use crate::metrics::Metrics;

/// How often changes are passed on at most: often enough that an address
/// is announced (or withdrawn) without waiting for the rest of a batch's
/// writes.
const FEED_EVERY: Duration = Duration::from_millis(50);

/// The interval between passings-on, in multiples of the last one's
/// duration: keeps them to a fifth of the time at most.
const FEED_SHARE: u32 = 5;

/// When changes noted are passed on: the decision, without the passing on.
#[derive(Debug)]
pub(super) struct Schedule {
    /// Something was noted and not passed on yet.
    pending: bool,
    /// The earliest the next passing-on may be.
    next: Instant,
}

impl Schedule {
    /// Pending from the start: the first passing-on needs no change.
    pub fn new(now: Instant) -> Self {
        Schedule {
            pending: true,
            next: now,
        }
    }

    /// Something changed.
    pub fn note(&mut self) {
        self.pending = true;
    }

    /// When the next passing-on is due; None while nothing is pending.
    pub fn due(&self) -> Option<Instant> {
        self.pending.then_some(self.next)
    }

    /// A passing-on ran from `started` to `finished`.
    pub fn fed(&mut self, started: Instant, finished: Instant) {
        self.pending = false;
        self.next = finished + FEED_EVERY.max((finished - started) * FEED_SHARE);
    }
}

/// The hub's inputs as last passed on, and what is noted since. Every
/// replica keeps them, so a new leader plans at once from the same data.
pub(super) struct HubFeed {
    pub hub: Option<Arc<Hub>>,
    /// The hub's BGPPeer configurations, re-read when peers or their Secrets change.
    pub peer_configs: BTreeMap<String, barelb_control::v1::BgpPeer>,
    peers_read: bool,
    /// `barelb_nodes_ready` has been set once.
    nodes_counted: bool,
    /// The hub has had the nodes' addresses once.
    sources_published: bool,
    /// Nodes, or peers and their Secrets, changed since the last passing-on.
    nodes_changed: bool,
    peers_changed: bool,
    schedule: Schedule,
}

impl HubFeed {
    pub fn new(hub: Option<Arc<Hub>>) -> Self {
        HubFeed {
            hub,
            peer_configs: BTreeMap::new(),
            peers_read: false,
            nodes_counted: false,
            sources_published: false,
            nodes_changed: false,
            peers_changed: false,
            schedule: Schedule::new(Instant::now()),
        }
    }

    /// Notes what `touched` says changed (call once per change absorbed:
    /// `touched` accumulates until the leader reconciles it).
    pub fn note(&mut self, touched: &Touched) {
        if touched.is_empty() {
            return;
        }
        self.nodes_changed |= touched.nodes;
        self.peers_changed |= touched.peers;
        self.schedule.note();
    }

    /// When what is noted is next due to be passed on.
    pub fn due(&self) -> Option<Instant> {
        self.schedule.due()
    }

    /// Passes on what is noted, if it is due; returns when it next is.
    pub fn feed_if_due(
        &mut self,
        index: &Index,
        settings: &Settings,
        metrics: &Metrics,
    ) -> Option<Instant> {
        let started = Instant::now();
        if self.due().is_some_and(|at| at <= started) {
            self.feed(index, settings, metrics);
            self.schedule.fed(started, Instant::now());
        }
        self.due()
    }

    fn feed(&mut self, index: &Index, settings: &Settings, metrics: &Metrics) {
        let (nodes_changed, peers_changed) = (self.nodes_changed, self.peers_changed);
        self.nodes_changed = false;
        self.peers_changed = false;
        if nodes_changed || !self.nodes_counted {
            // Counted when Nodes change, not on every batch.
            let ready = index.nodes.iter().filter(|(_, n)| n.ready).count();
            metrics
                .nodes_ready
                .set(i64::try_from(ready).unwrap_or(i64::MAX));
            self.nodes_counted = true;
        }
        let Some(hub) = &self.hub else { return };
        if index.nodes.synced() && (nodes_changed || !self.sources_published) {
            hub.set_node_sources(inputs::node_sources(index));
            self.sources_published = true;
        }
        if (peers_changed || !self.peers_read) && index.secrets.synced() {
            self.peer_configs = inputs::peer_configs(index, &settings.namespace);
            self.peers_read = true;
        }
        if !self.peers_read {
            // Without the peers' Secrets a plan would send sessions without
            // their passwords; the hub sends nothing before its first inputs
            // (the Secrets' first complete read is noted as a peer change).
            return;
        }
        let started = Instant::now();
        let inputs = crate::control::hub::Inputs {
            units: inputs::units(index, &settings.class),
            nodes: inputs::nodes(index),
            peers: inputs::peers(index),
            peer_configs: self.peer_configs.clone(),
        };
        metrics
            .planner_inputs_duration
            .observe(started.elapsed().as_secs_f64());
        hub.set_inputs(inputs, "cluster-change");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_passed_on_at_once_then_paced() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert_eq!(s.due(), Some(t0), "the first passing-on needs no change");
        s.fed(t0, t0 + Duration::from_millis(2));
        assert_eq!(s.due(), None, "nothing noted since");
        s.note();
        s.note();
        assert_eq!(s.due(), Some(t0 + Duration::from_millis(52)));
        // A slow one (30 ms) spaces the next by five times its duration.
        let t1 = t0 + Duration::from_millis(60);
        s.fed(t1, t1 + Duration::from_millis(30));
        s.note();
        assert_eq!(s.due(), Some(t1 + Duration::from_millis(30 + 150)));
    }
}
