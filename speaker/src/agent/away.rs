//! What a speaker with no live stream does while it waits on a
//! connection attempt or on the operator's first answer.

use std::net::IpAddr;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::l2::L2;
use super::{Recent, standby, yield_recent};

/// Takes over what the prober found silent (only while away).
pub(super) fn take_over(
    l2: &mut L2,
    ips: &std::collections::BTreeSet<IpAddr>,
    link: &standby::Link,
) {
    if let Err(e) = l2.take_over(ips) {
        tracing::warn!(error = %e, "taking standby addresses over");
    }
    link.publish(true, l2);
}

/// What a speaker with no live stream goes on doing while a connection
/// attempt is pending: taking over for silent owners (standby) and giving
/// up addresses another host claims (the yield rule). A healed node hears
/// the new owner's lingering announcements during its reconnect, so it
/// must yield then, not after.
pub(super) struct Away<'a> {
    pub l2: &'a mut L2,
    pub link: &'a mut standby::Link,
    pub conflicts: &'a mut mpsc::UnboundedReceiver<(IpAddr, String)>,
    pub recent: &'a mut Recent,
}

impl Away<'_> {
    fn conflict(&mut self, addr: IpAddr, mac: String) {
        self.recent.insert(addr, (Instant::now(), mac));
        yield_recent(self.l2, self.recent);
    }
}

/// Awaits `fut` (a connection attempt: seconds when an operator address
/// does not answer) while away.
pub(super) async fn meanwhile<T>(fut: impl Future<Output = T>, away: &mut Away<'_>) -> T {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            Some(ips) = away.link.takeovers.recv() => take_over(away.l2, &ips, away.link),
            Some((addr, mac)) = away.conflicts.recv() => away.conflict(addr, mac),
        }
    }
}

/// Awaits the Session call, whose Hello already went out naming what this
/// node holds. A take-over that comes due meanwhile is held back — made
/// now, the new leader would not know this node holds it: if the stream
/// comes up the operator decides (as for any take-over not yet made), if
/// the call fails it is made then. Yielding goes on.
pub(super) async fn opening<T, E>(
    fut: impl Future<Output = Result<T, E>>,
    away: &mut Away<'_>,
) -> Result<T, E> {
    tokio::pin!(fut);
    let mut held = std::collections::BTreeSet::new();
    let result = loop {
        tokio::select! {
            r = &mut fut => break r,
            Some(ips) = away.link.takeovers.recv() => held.extend(ips),
            Some((addr, mac)) = away.conflicts.recv() => away.conflict(addr, mac),
        }
    };
    if result.is_err() && !held.is_empty() {
        take_over(away.l2, &held, away.link);
    }
    result
}
