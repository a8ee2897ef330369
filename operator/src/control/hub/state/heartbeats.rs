//! Whether a node is alive, by its kubelet's heartbeat: the Lease it renews
//! in `kube-node-lease` every quarter of the Lease's duration (10 s by
//! default). A new leader waits for the speaker of a node whose kubelet
//! still renews; one whose kubelet has stopped is most likely gone, and it
//! turns NotReady only after the node monitor's grace period (40–50 s by
//! default) — too long for its addresses to wait.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// One node's Lease, as its kubelet last wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// `spec.renewTime`, ms since the epoch (the kubelet's clock).
    pub renewed_ms: i64,
    /// `spec.leaseDurationSeconds`.
    pub duration_s: u32,
}

/// Allowed beyond a renewal interval: the kubelet's jitter (4 %) and
/// apiserver latency. Small, as the two mistakes differ: a live kubelet
/// taken for silent costs, at worst, one address moved away and back during
/// a leader change; a dead one taken for alive leaves its addresses
/// unanswered. A kubelet cut off with the leader's node is still found
/// silent before the standby takes the Lease (15 s).
const SLACK_MS: i64 = 3_000;

/// How far this replica's wall clock may be ahead of the kubelets' and a
/// live kubelet still not count as silent: clocks in a cluster agree to
/// well within this (certificate and token checks rely on it too).
const SKEW_MS: i64 = 2_000;

/// The nodes' heartbeats as last read, and which kubelets were silent then.
#[derive(Clone, Debug, Default)]
pub struct Heartbeats {
    silent: BTreeSet<String>,
    /// The newest renewal read, and when this replica first read it: the
    /// kubelets' time is now at least that renewal plus the time since —
    /// their clock, advanced by ours, so skew between the two never counts.
    newest: Option<(i64, Instant)>,
}

impl Heartbeats {
    /// Takes the Leases read at `now` (`wall_ms`: this replica's clock
    /// then, ms since the epoch). A kubelet is silent when, by the kubelets'
    /// time, its last renewal is more than a renewal interval (plus slack)
    /// old while another's is not: after an apiserver outage every renewal
    /// is old and none is silent. The kubelets' time is the newest renewal
    /// read, advanced by this replica's monotonic clock since, or this
    /// replica's wall clock less [`SKEW_MS`] if later (so that a kubelet gone
    /// before the first read is silent at once). A node whose Lease was not
    /// read is not silent (nothing is known of it).
    pub fn update(&mut self, beats: &BTreeMap<String, Heartbeat>, now: Instant, wall_ms: i64) {
        let Some(newest) = beats.values().map(|h| h.renewed_ms).max() else {
            *self = Heartbeats::default();
            return;
        };
        let seen = match self.newest {
            Some((ms, at)) if ms == newest => at,
            _ => now,
        };
        self.newest = Some((newest, seen));
        let elapsed =
            i64::try_from(now.saturating_duration_since(seen).as_millis()).unwrap_or(i64::MAX);
        let kubelets_now = newest
            .saturating_add(elapsed)
            .max(wall_ms.saturating_sub(SKEW_MS));
        let late = |h: &Heartbeat| {
            let interval_ms = i64::from(h.duration_s.max(1)) * 1000 / 4;
            kubelets_now.saturating_sub(h.renewed_ms) > interval_ms + SLACK_MS
        };
        self.silent = if beats.values().all(late) {
            BTreeSet::new()
        } else {
            beats
                .iter()
                .filter(|(_, h)| late(h))
                .map(|(n, _)| n.clone())
                .collect()
        };
    }

    /// Whether `node`'s kubelet was silent at the last [`Heartbeats::update`].
    pub fn silent(&self, node: &str) -> bool {
        self.silent.contains(node)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn beats(of: &[(&str, i64)]) -> BTreeMap<String, Heartbeat> {
        of.iter()
            .map(|(n, t)| {
                let h = Heartbeat {
                    renewed_ms: *t,
                    duration_s: 40,
                };
                (n.to_string(), h)
            })
            .collect()
    }

    fn read(of: &[(&str, i64)]) -> Heartbeats {
        let mut h = Heartbeats::default();
        h.update(&beats(of), Instant::now(), 0);
        h
    }

    #[test]
    fn a_kubelet_that_missed_its_renewals_while_others_renewed_is_silent() {
        // 40-s leases: renewed every 10 s, silent past 13 s behind.
        let h = read(&[("a", 100_000), ("b", 92_000), ("c", 86_000)]);
        assert!(!h.silent("a"));
        assert!(!h.silent("b"));
        assert!(h.silent("c"), "14 s behind a");
        assert!(
            !read(&[("a", 100_000), ("c", 87_000)]).silent("c"),
            "13 s: not yet"
        );
    }

    #[test]
    fn time_passing_without_a_renewal_makes_a_kubelet_silent() {
        // Read once, a and c renewed 6 s apart; read again 7 s later with no
        // new renewal from c (a renewed again): c is 16 s behind a's time.
        let t0 = Instant::now();
        let mut h = Heartbeats::default();
        h.update(&beats(&[("a", 100_000), ("c", 94_000)]), t0, 0);
        assert!(!h.silent("c"));
        h.update(
            &beats(&[("a", 100_000), ("c", 94_000)]),
            t0 + Duration::from_secs(5),
            0,
        );
        assert!(!h.silent("c"), "11 s: not yet");
        h.update(
            &beats(&[("a", 110_000), ("c", 94_000)]),
            t0 + Duration::from_secs(7),
            0,
        );
        assert!(h.silent("c"), "16 s behind a's new renewal");
        // Neither renewed, but our clock says a's last renewal is 4 s old
        // and c's 14 s by the kubelets' time: c is silent, a is not.
        let mut h = Heartbeats::default();
        h.update(&beats(&[("a", 100_000), ("c", 90_000)]), t0, 0);
        h.update(
            &beats(&[("a", 100_000), ("c", 90_000)]),
            t0 + Duration::from_secs(4),
            0,
        );
        assert!(h.silent("c") && !h.silent("a"));
    }

    #[test]
    fn a_kubelet_gone_before_the_first_read_is_silent_by_the_wall_clock() {
        // The newest renewal read is 9 s old by this replica's clock: c's,
        // 14 s old, is silent at once (16 s less the skew allowed).
        let mut h = Heartbeats::default();
        h.update(
            &beats(&[("a", 100_000), ("b", 107_000), ("c", 102_000)]),
            Instant::now(),
            118_000,
        );
        assert!(h.silent("c") && h.silent("a") && !h.silent("b"));
        // A wall clock behind the kubelets' changes nothing.
        let mut h = Heartbeats::default();
        h.update(
            &beats(&[("b", 107_000), ("c", 102_000)]),
            Instant::now(),
            50_000,
        );
        assert!(!h.silent("c"));
    }

    #[test]
    fn when_every_heartbeat_is_old_none_is_silent() {
        // An apiserver outage stopped every renewal: all equally old, and
        // still none silent as time passes with no renewal at all.
        let t0 = Instant::now();
        let mut h = Heartbeats::default();
        let old = beats(&[("a", 1_000), ("b", 2_000), ("c", 3_000)]);
        h.update(&old, t0, 0);
        assert!(["a", "b", "c"].iter().all(|n| !h.silent(n)));
        h.update(&old, t0 + Duration::from_secs(60), 0);
        assert!(["a", "b", "c"].iter().all(|n| !h.silent(n)));
    }

    #[test]
    fn a_node_whose_lease_was_not_read_is_not_silent() {
        assert!(!read(&[("a", 100_000)]).silent("b"));
        assert!(!Heartbeats::default().silent("a"));
    }

    #[test]
    fn the_interval_follows_the_lease_duration() {
        // A 120-s lease is renewed every 30 s: 20 s behind is on time.
        let mut b = beats(&[("a", 100_000), ("c", 80_000)]);
        if let Some(c) = b.get_mut("c") {
            c.duration_s = 120;
        }
        let mut h = Heartbeats::default();
        h.update(&b, Instant::now(), 0);
        assert!(!h.silent("c"));
    }
}
