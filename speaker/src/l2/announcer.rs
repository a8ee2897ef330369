//! Answers ARP requests and Neighbor Solicitations for owned addresses on
//! one interface, and announces each address when it is acquired
//! (gratuitous ARP / unsolicited NA, repeated). Never answers for an
//! address it does not own.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::socket::{PacketSocket, PacketType};
use super::{Frame, arp, ndp};
use crate::metrics::L2Metrics;

/// How take-overs are announced.
#[derive(Clone, Copy, Debug)]
pub struct AnnounceConfig {
    /// Announcements sent per acquired address (the first at once).
    pub count: u32,
    /// Gap between repeats.
    pub interval: Duration,
    /// Re-announce every owned address this often, for switches that age
    /// out their MAC tables. None: never.
    pub refresh: Option<Duration>,
    /// After those, go on announcing an acquired address every
    /// `linger_interval` until this long after it was acquired: a node cut
    /// off when the address moved here and healed since still answers for
    /// it, and hears no one else claim it unless someone announces — with
    /// no control stream yet, it yields on the first announcement it hears.
    /// Zero: no lingering.
    pub linger: Duration,
    pub linger_interval: Duration,
}

/// How long after the `sent`-th announcement (counting from 0) of an
/// address acquired `elapsed` ago the next one goes out; None: no more.
pub fn next_announcement(cfg: &AnnounceConfig, sent: u32, elapsed: Duration) -> Option<Duration> {
    if sent + 1 < cfg.count {
        return Some(cfg.interval);
    }
    let gap = cfg.linger_interval.max(Duration::from_millis(100));
    (elapsed + gap <= cfg.linger).then_some(gap)
}

/// One announcement due: the address, how many went before it, and when
/// the address was acquired (a later acquisition or a kick starts a new
/// sequence and ends this one).
#[derive(Clone, Copy, Debug)]
struct Due {
    ip: IpAddr,
    sent: u32,
    since: tokio::time::Instant,
}

/// Counters, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub replies: u64,
    pub gratuitous: u64,
    pub malformed: u64,
    /// Frames in which another MAC claimed an address this node owns.
    pub conflicts: u64,
}

/// Errors that mean the interface is down or gone for now, not that the
/// socket is broken.
fn link_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETDOWN) | Some(libc::ENXIO) | Some(libc::ENODEV) | Some(libc::ENETUNREACH)
    )
}

/// Sends a frame; a down link drops it (announcements repeat anyway).
async fn send(sock: &PacketSocket, frame: &[u8]) -> std::io::Result<()> {
    match sock.send(frame).await {
        Err(e) if link_gone(&e) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Where another host's claim on an owned address is reported: (address,
/// that host's MAC). The agent's yield rule listens here.
pub type Conflicts = tokio::sync::mpsc::UnboundedSender<(IpAddr, String)>;

/// Addresses to take over without announcing them (the operator's
/// `L2Announcement.quiet`): on acquisition they are answered, not announced.
pub type Quiet = Arc<std::sync::Mutex<BTreeSet<IpAddr>>>;

/// This announcer's share of `barelb_l2_addresses`, taken back when it
/// ends (however it ends).
struct Held<'a> {
    metrics: &'a L2Metrics,
    count: i64,
}

impl Held<'_> {
    fn set(&mut self, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.metrics.addresses.inc_by(count - self.count);
        self.count = count;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.metrics.addresses.dec_by(self.count);
    }
}

/// Runs until `owned` is closed. An address sent on `kick` is announced
/// again (if owned). The set in `owned` is the addresses this
/// node answers for; a change takes effect at once, and newly acquired
/// addresses are announced.
pub async fn run(
    sock: PacketSocket,
    mut owned: watch::Receiver<BTreeSet<IpAddr>>,
    cfg: AnnounceConfig,
    metrics: Arc<L2Metrics>,
    conflicts: Option<Conflicts>,
    mut kick: Option<tokio::sync::mpsc::UnboundedReceiver<IpAddr>>,
    quiet: Option<Quiet>,
) -> std::io::Result<Counters> {
    let mut counters = Counters::default();
    let mut current: BTreeSet<IpAddr> = BTreeSet::new();
    let mut held = Held {
        metrics: &metrics,
        count: 0,
    };
    let mut buf = vec![0u8; 65536];
    let (ann_tx, mut ann_rx) = tokio::sync::mpsc::unbounded_channel::<Due>();
    // When each address's current announcement sequence started.
    let mut sequences: std::collections::BTreeMap<IpAddr, tokio::time::Instant> =
        std::collections::BTreeMap::new();
    let start = |ip: IpAddr, sequences: &mut std::collections::BTreeMap<_, _>| {
        let since = tokio::time::Instant::now();
        sequences.insert(ip, since);
        Due { ip, sent: 0, since }
    };
    let mut changed = true;
    let mut refresh = cfg
        .refresh
        .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    loop {
        if changed {
            let next = owned.borrow_and_update().clone();
            for ip in next.difference(&current) {
                let hushed = quiet
                    .as_ref()
                    .is_some_and(|q| q.lock().unwrap_or_else(|p| p.into_inner()).remove(ip));
                if hushed {
                    tracing::info!(address = %ip, mac = %sock.mac, "acquired quietly: answering requests, not announcing (the previous owner still forwards)");
                    continue;
                }
                tracing::info!(address = %ip, mac = %sock.mac, "acquired: announcing");
                let _ = ann_tx.send(start(*ip, &mut sequences));
            }
            for ip in current.difference(&next) {
                tracing::info!(address = %ip, "released: no longer answering");
                metrics.forget(ip);
                sequences.remove(ip);
            }
            held.set(next.len());
            current = next;
            changed = false;
        }
        tokio::select! {
            res = owned.changed() => {
                if res.is_err() {
                    return Ok(counters);
                }
                changed = true;
            }
            _ = async { match refresh.as_mut() { Some(r) => { r.tick().await; } None => std::future::pending::<()>().await } } => {
                for ip in &current {
                    for f in announcement(*ip, sock.mac) {
                        send(&sock, &f).await?;
                        counters.gratuitous += 1;
                        metrics.gratuitous.get_or_create(&L2Metrics::addr(ip)).inc();
                    }
                }
            }
            Some(ip) = async {
                match kick.as_mut() {
                    Some(k) => k.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                // Announce an address we already own again, at once and
                // repeated (it was just re-assigned to us: caches may point
                // elsewhere).
                if current.contains(&ip) {
                    let _ = ann_tx.send(start(ip, &mut sequences));
                }
            }
            Some(due) = ann_rx.recv() => {
                // Announce only what is still owned, in its latest sequence:
                // a release stops repeats, a new sequence replaces the old.
                if current.contains(&due.ip) && sequences.get(&due.ip) == Some(&due.since) {
                    for f in announcement(due.ip, sock.mac) {
                        send(&sock, &f).await?;
                        counters.gratuitous += 1;
                        metrics.gratuitous.get_or_create(&L2Metrics::addr(&due.ip)).inc();
                    }
                    if let Some(gap) = next_announcement(&cfg, due.sent, due.since.elapsed()) {
                        let tx = ann_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(gap).await;
                            let _ = tx.send(Due { sent: due.sent + 1, ..due });
                        });
                    }
                }
            }
            res = sock.recv(&mut buf) => {
                let (n, kind) = match res {
                    Ok(r) => r,
                    // The link is down (a flap, or a cable pulled): keep the
                    // socket and the owned set, and wait for it to return.
                    Err(e) if link_gone(&e) => {
                        tracing::warn!(error = %e, "interface down; waiting for it to return");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if kind == PacketType::Outgoing {
                    continue;
                }
                let frame = Frame::parse(&buf[..n]);
                if let Some((ip, other)) = claim_by_other(&frame, &current, sock.mac) {
                    counters.conflicts += 1;
                    metrics.conflicts.get_or_create(&L2Metrics::addr(&ip)).inc();
                    tracing::warn!(address = %ip, other_mac = %other, "another host claims an address this node announces");
                    if let Some(tx) = &conflicts {
                        let _ = tx.send((ip, other.to_string()));
                    }
                }
                let reply = match frame {
                    Ok(Frame::Arp(a)) if a.op == arp::OP_REQUEST && current.contains(&IpAddr::V4(a.target_ip)) => {
                        // A gratuitous ARP of our own address by someone else is a claim, not a question.
                        (a.sender_ip != a.target_ip).then(|| (IpAddr::V4(a.target_ip), arp::reply(&a, sock.mac)))
                    }
                    Ok(Frame::NeighborSolicit(ns)) if current.contains(&IpAddr::V6(ns.target)) => {
                        Some((IpAddr::V6(ns.target), ndp::answer(&ns, sock.mac)))
                    }
                    Ok(_) => None,
                    Err(e) => {
                        counters.malformed += 1;
                        metrics.malformed.inc();
                        tracing::trace!(error = %e, "ignoring a frame");
                        None
                    }
                };
                if let Some((ip, f)) = reply {
                    counters.requests += 1;
                    metrics.requests.get_or_create(&L2Metrics::addr(&ip)).inc();
                    send(&sock, &f).await?;
                    counters.replies += 1;
                    metrics.replies.get_or_create(&L2Metrics::addr(&ip)).inc();
                }
            }
        }
    }
}

/// An ARP packet or Neighbor Advertisement in which a MAC other than ours
/// says it has an address we own: the input of the yield rule.
fn claim_by_other(
    frame: &Result<Frame, super::FrameError>,
    owned: &BTreeSet<IpAddr>,
    me: super::Mac,
) -> Option<(IpAddr, super::Mac)> {
    match frame {
        Ok(Frame::Arp(a)) if a.sender_mac != me && owned.contains(&IpAddr::V4(a.sender_ip)) => {
            Some((IpAddr::V4(a.sender_ip), a.sender_mac))
        }
        Ok(Frame::NeighborAdvert(na)) if owned.contains(&IpAddr::V6(na.target)) => {
            let mac = na.target_mac.unwrap_or(na.eth_src);
            (mac != me).then_some((IpAddr::V6(na.target), mac))
        }
        _ => None,
    }
}

fn announcement(ip: IpAddr, mac: super::Mac) -> Vec<Vec<u8>> {
    match ip {
        IpAddr::V4(v4) => arp::gratuitous(v4, mac).to_vec(),
        IpAddr::V6(v6) => vec![ndp::unsolicited(v6, mac)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(linger: u64) -> AnnounceConfig {
        AnnounceConfig {
            count: 3,
            interval: Duration::from_millis(500),
            refresh: None,
            linger: Duration::from_secs(linger),
            linger_interval: Duration::from_secs(1),
        }
    }

    /// The announcement times of one acquisition, in ms.
    fn schedule(cfg: &AnnounceConfig) -> Vec<u64> {
        let (mut at, mut sent, mut out) = (Duration::ZERO, 0, vec![0]);
        while let Some(gap) = next_announcement(cfg, sent, at) {
            at += gap;
            sent += 1;
            out.push(at.as_millis() as u64);
        }
        out
    }

    #[test]
    fn three_quick_rounds_then_one_a_second_until_the_linger_ends() {
        assert_eq!(schedule(&cfg(0)), [0, 500, 1000]);
        assert_eq!(schedule(&cfg(5)), [0, 500, 1000, 2000, 3000, 4000, 5000]);
        let thirty = schedule(&cfg(30));
        assert_eq!((thirty.len(), thirty.last()), (32, Some(&30_000)));
    }
}
