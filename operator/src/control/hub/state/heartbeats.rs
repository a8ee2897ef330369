//! Whether a node is alive, by its kubelet's heartbeat: the Lease it renews
//! in `kube-node-lease` every quarter of the Lease's duration (10 s by
//! default). A new leader waits past its settle period only for the speaker
//! of a node whose kubelet still renews: a Ready node whose kubelet has
//! stopped is most likely gone, and it turns NotReady only after the node
//! monitor's grace period (40–50 s by default) — too long for its addresses
//! to wait.

use std::collections::BTreeMap;

/// One node's Lease, as its kubelet last wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// `spec.renewTime`, ms since the epoch (the kubelet's clock).
    pub renewed_ms: i64,
    /// `spec.leaseDurationSeconds`.
    pub duration_s: u32,
}

/// Every node's heartbeat (node name → its Lease), as last read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeats(pub BTreeMap<String, Heartbeat>);

/// Allowed beyond a renewal interval: apiserver latency. Small, as the two
/// mistakes differ: a live kubelet taken for silent costs, at worst, one
/// address moved away and back during a leader change; a dead one taken
/// for alive leaves its addresses unanswered.
const SLACK_MS: i64 = 2_000;

impl Heartbeats {
    /// Whether `node`'s kubelet has missed a renewal while another node's
    /// has not. Renewals are compared with the newest one read, not with
    /// this replica's clock: after an apiserver outage every heartbeat is
    /// old and none is silent, and the operator's clock skew does not
    /// count. A node whose Lease was not read is not silent (nothing is
    /// known of it).
    pub fn silent(&self, node: &str) -> bool {
        let Some(h) = self.0.get(node) else {
            return false;
        };
        let newest = self
            .0
            .values()
            .map(|h| h.renewed_ms)
            .max()
            .unwrap_or(h.renewed_ms);
        let interval_ms = i64::from(h.duration_s.max(1)) * 1000 / 4;
        newest.saturating_sub(h.renewed_ms) > interval_ms + SLACK_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beats(of: &[(&str, i64)]) -> Heartbeats {
        Heartbeats(
            of.iter()
                .map(|(n, t)| {
                    let h = Heartbeat {
                        renewed_ms: *t,
                        duration_s: 40,
                    };
                    (n.to_string(), h)
                })
                .collect(),
        )
    }

    #[test]
    fn a_kubelet_that_missed_its_renewals_while_others_renewed_is_silent() {
        // 40-s leases: renewed every 10 s, silent past 12 s behind.
        let h = beats(&[("a", 100_000), ("b", 92_000), ("c", 87_000)]);
        assert!(!h.silent("a"));
        assert!(!h.silent("b"));
        assert!(h.silent("c"), "13 s behind a");
        assert!(
            !beats(&[("a", 100_000), ("c", 88_000)]).silent("c"),
            "12 s: not yet"
        );
    }

    #[test]
    fn when_every_heartbeat_is_old_none_is_silent() {
        // An apiserver outage stopped every renewal: all equally old.
        let h = beats(&[("a", 1_000), ("b", 2_000), ("c", 3_000)]);
        assert!(["a", "b", "c"].iter().all(|n| !h.silent(n)));
    }

    #[test]
    fn a_node_whose_lease_was_not_read_is_not_silent() {
        assert!(!beats(&[("a", 100_000)]).silent("b"));
        assert!(!Heartbeats::default().silent("a"));
    }

    #[test]
    fn the_interval_follows_the_lease_duration() {
        // A 120-s lease is renewed every 30 s: 20 s behind is on time.
        let mut h = beats(&[("a", 100_000), ("c", 80_000)]);
        if let Some(c) = h.0.get_mut("c") {
            c.duration_s = 120;
        }
        assert!(!h.silent("c"));
    }
}
