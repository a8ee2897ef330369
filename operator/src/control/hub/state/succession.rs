//! Two speakers for one node: a restart overlapping its predecessor, or a
//! DaemonSet update with surge. The later-started keeps the node's stream;
//! the other is told it is superseded and stops announcing (left alone, a
//! leaving predecessor whose stream was replaced kept answering for
//! addresses the operator had already moved elsewhere) — once the later one
//! has applied its plan, so that someone on the node always answers.

use tonic::Status;

use super::Outbox;

/// Whether a speaker that started at `newcomer_ms` takes the node's stream
/// from one that started at `current_ms` (ms since the epoch; 0: a speaker
/// too old to say). A tie is the same process reconnecting; an unknown
/// start goes to the newcomer, as before start times were sent.
pub fn newcomer_wins(current_ms: u64, newcomer_ms: u64) -> bool {
    current_ms == 0 || newcomer_ms == 0 || newcomer_ms >= current_ms
}

/// The status that ends the losing stream: ABORTED, beginning with
/// [`barelb_control::SUPERSEDED`] (what speakers look for).
pub fn superseded(node: &str) -> Status {
    Status::aborted(format!(
        "{}: a later-started speaker serves node {node}; stop announcing",
        barelb_control::SUPERSEDED
    ))
}

/// Ends the streams of `predecessors` (speakers of `node` replaced by a
/// later-started one that has now applied its plan).
pub fn tell_superseded(node: &str, predecessors: Vec<Outbox>) {
    for tx in predecessors {
        // A full outbox belongs to a stream about to end anyway.
        let _ = tx.try_send(Err(superseded(node)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_later_start_wins_and_unknown_starts_go_to_the_newcomer() {
        assert!(newcomer_wins(1_000, 2_000));
        assert!(
            newcomer_wins(1_000, 1_000),
            "a reconnect of the same process"
        );
        assert!(!newcomer_wins(2_000, 1_000), "an older process comes back");
        assert!(newcomer_wins(0, 1_000));
        assert!(newcomer_wins(2_000, 0));
        let s = superseded("n1");
        assert_eq!(s.code(), tonic::Code::Aborted);
        assert!(s.message().starts_with(barelb_control::SUPERSEDED));
    }
}
