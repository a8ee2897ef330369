//! What the hub publishes about its speakers besides plans: the
//! connected count, each speaker's link and part of the plan, and the BGP
//! sessions — gauges for dashboards and `kubectl barelb status` (only the
//! leader knows them), and the sessions for BGPPeer status.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Core, State};
use crate::metrics::{NodeLabels, PeerStateLabels};

impl Core {
    /// `barelb_control_speakers_connected` and the sessions of speakers
    /// still connected, after every attach and removal.
    pub(super) fn count_connected(&self, s: &mut State) {
        self.metrics
            .speakers_connected
            .set(i64::try_from(s.speakers.len()).unwrap_or(i64::MAX));
        let speakers = &s.speakers;
        s.sessions.retain(|node, _| speakers.contains_key(node));
        self.count_sessions(s);
        self.publish_speakers(s);
    }

    /// The per-speaker gauges, now or (while deferring) at `flush`.
    pub(super) fn publish_speakers(&self, s: &State) {
        if self.defer.get() {
            self.gauges_stale.set(true);
        } else {
            self.gauges_stale.set(false);
            self.write_speaker_gauges(s);
        }
    }

    /// `barelb_control_speaker_link_up` and `…_speaker_addresses`: each
    /// connected speaker's link state and its part of the plan, for
    /// dashboards and `kubectl barelb status` (only the leader knows them).
    fn write_speaker_gauges(&self, s: &State) {
        let mut held: BTreeMap<&str, i64> = BTreeMap::new();
        for o in s.plan.l2.values() {
            *held.entry(o.node.as_str()).or_default() += 1;
        }
        for a in s.plan.bgp.values() {
            for node in a.nodes.keys() {
                *held.entry(node.as_str()).or_default() += 1;
            }
        }
        self.metrics.speaker_link_up.clear();
        self.metrics.speaker_addresses.clear();
        for (node, sp) in &s.speakers {
            let labels = NodeLabels { node: node.clone() };
            self.metrics
                .speaker_link_up
                .get_or_create(&labels)
                .set(i64::from(sp.link_up));
            self.metrics
                .speaker_addresses
                .get_or_create(&labels)
                .set(held.get(node.as_str()).copied().unwrap_or(0));
        }
    }

    /// `barelb_control_bgp_sessions`: nodes per (peer, state).
    pub(super) fn count_sessions(&self, s: &State) {
        self.sessions_tx.send_if_modified(|now| {
            let changed = **now != s.sessions;
            if changed {
                *now = Arc::new(s.sessions.clone());
            }
            changed
        });
        let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for sessions in s.sessions.values() {
            for (peer, state) in sessions {
                *counts.entry((peer, state)).or_default() += 1;
            }
        }
        self.metrics.bgp_sessions.clear();
        for ((peer, state), n) in counts {
            self.metrics
                .bgp_sessions
                .get_or_create(&PeerStateLabels {
                    peer: peer.to_string(),
                    state: state.to_string(),
                })
                .set(n);
        }
    }
}
