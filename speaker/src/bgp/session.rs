//! The tokio shell around one BGP session: it owns the TCP connection and
//! the timers, feeds the [`Fsm`] and carries out its actions. Once the
//! session is Established it advertises the desired [`Table`] (a `watch`
//! channel, so a burst of changes collapses into one diff) and keeps the
//! peer in step; after any re-establishment it advertises everything again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::codec::{self, Capability, Handling, Message, Open};
use super::fsm::{self, Action, Event, Fsm, State, Timer};
use super::routes::{self, AdjRibOut, SessionView, Table};
use super::transport::{self, Dial};
use crate::bfd::codec::State as BfdState;
use crate::metrics::{BgpMetrics, FamilyLabels, NotificationLabels, PeerLabels};
use crate::net::iface;

/// One peer, as configured.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub dial: Dial,
    pub my_asn: u32,
    pub peer_asn: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time (s): 0, or ≥ 3.
    pub hold_time: u16,
    /// Keepalive interval; None: a third of the negotiated hold time.
    pub keepalive: Option<Duration>,
    /// First retry delay; doubles per failure up to [`MAX_BACKOFF`].
    pub connect_retry: Duration,
    /// Advertise graceful restart (RFC 4724) with this restart time (s).
    pub graceful_restart: Option<u16>,
    /// Next hops to send; `None`: this end's address on the session for its
    /// family, and an address of the other family on the same interface.
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
}

impl PeerConfig {
    fn fsm(&self) -> fsm::Config {
        let mut capabilities = vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(self.my_asn),
        ];
        if let Some(time) = self.graceful_restart {
            // Restarting: a session task starts with the process (or a new
            // peer), so its first OPEN follows a restart (a later reconnect
            // of the same task says so too; harmless to a helper). The
            // forwarding state survives a speaker restart: the node's
            // kube-proxy keeps carrying the traffic routers send it.
            capabilities.push(Capability::GracefulRestart {
                restarting: true,
                time,
                families: vec![(1, 1, true), (2, 1, true)],
            });
        }
        fsm::Config {
            my_asn: self.my_asn,
            peer_asn: self.peer_asn,
            router_id: u32::from(self.router_id),
            hold_time: self.hold_time,
            keepalive: self.keepalive,
            connect_retry: self.connect_retry,
            capabilities,
        }
    }

    /// TTL to send with: 1 for directly connected eBGP, the multihop count
    /// when set, 64 on iBGP.
    pub fn default_ttl(my_asn: u32, peer_asn: u32, ebgp_multihop: Option<u8>) -> u32 {
        match ebgp_multihop {
            Some(hops) => u32::from(hops.max(1)),
            None if my_asn == peer_asn => 64,
            None => 1,
        }
    }
}

/// The BGP identifier to use: the source address if it is IPv4, else this
/// host's first non-loopback IPv4 address.
pub fn default_router_id(source: Option<IpAddr>) -> Option<Ipv4Addr> {
    if let Some(IpAddr::V4(src)) = source {
        return Some(src);
    }
    iface::addresses().ok()?.iter().find_map(|i| match i.addr {
        IpAddr::V4(v4) if !v4.is_loopback() => Some(v4),
        _ => None,
    })
}

/// Longest wait between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A write the peer does not take within this long drops the connection
/// (the hold timer cannot fire while a write is stuck).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn state_number(s: State) -> i64 {
    match s {
        State::Idle => 1,
        State::Connect => 2,
        State::Active => 3,
        State::OpenSent => 4,
        State::OpenConfirm => 5,
        State::Established => 6,
    }
}

/// Connection-retry delay after `failures` consecutive failures, before
/// jitter: doubling from `base` up to [`MAX_BACKOFF`].
fn backoff(base: Duration, failures: u32) -> Duration {
    let base = base.max(Duration::from_millis(100));
    base.saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(MAX_BACKOFF.max(base))
}

struct Driver {
    cfg: PeerConfig,
    label: PeerLabels,
    metrics: Arc<BgpMetrics>,
    fsm: Fsm,
    stream: Option<TcpStream>,
    rbuf: Vec<u8>,
    timers: [Option<Instant>; 3],
    failures: u32,
    adj: AdjRibOut,
    view: Option<SessionView>,
    state_tx: watch::Sender<State>,
}

fn slot(t: Timer) -> usize {
    match t {
        Timer::ConnectRetry => 0,
        Timer::Hold => 1,
        Timer::Keepalive => 2,
    }
}

const TIMERS: [Timer; 3] = [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive];

/// Runs the session until `stop` turns true (then sends Cease and returns)
/// or its sender is dropped (then just closes the connection).
/// `state` follows the FSM for whoever reports it.
/// With `bfd`, the BFD session to the same peer: when it leaves Up, this
/// session goes down at once (RFC 5882 §4.3), not at the hold timer.
pub async fn run(
    cfg: PeerConfig,
    mut routes: watch::Receiver<Arc<Table>>,
    metrics: Arc<BgpMetrics>,
    mut stop: watch::Receiver<bool>,
    state: watch::Sender<State>,
    mut bfd: Option<watch::Receiver<BfdState>>,
) {
    let label = BgpMetrics::peer(&cfg.dial.peer.ip().to_string());
    let mut d = Driver {
        fsm: Fsm::new(cfg.fsm()),
        cfg,
        label,
        metrics,
        stream: None,
        rbuf: Vec::with_capacity(8192),
        timers: [None; 3],
        failures: 0,
        adj: AdjRibOut::default(),
        view: None,
        state_tx: state,
    };
    let mut events = vec![Event::Start];
    let mut stopping = false;
    let mut routes_open = true;
    let mut bfd_up = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        for ev in std::mem::take(&mut events) {
            d.handle(ev, &routes, &mut stop, &mut events).await;
        }
        if !events.is_empty() {
            continue;
        }
        if stopping && d.fsm.state() == State::Idle {
            return;
        }
        if *stop.borrow() && !stopping {
            stopping = true;
            events.push(Event::Stop);
            continue;
        }
        let next = d
            .timers
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|at| (at, i)))
            .min();
        tokio::select! {
            r = read(d.stream.as_mut(), &mut chunk) => match r {
                Ok(0) => events.push(Event::TcpFailed),
                Ok(n) => {
                    d.rbuf.extend_from_slice(&chunk[..n]);
                    d.decode(&mut events);
                }
                Err(e) => {
                    tracing::warn!(peer = %d.label.peer, error = %e, "connection failed");
                    events.push(Event::TcpFailed);
                }
            },
            () = sleep_until(next.map(|(at, _)| at)) => {
                if let Some((_, i)) = next {
                    d.timers[i] = None;
                    events.push(Event::Expired(TIMERS[i]));
                }
            }
            r = bfd_changed(bfd.as_mut()) => match r {
                Some(now) => {
                    if bfd_up && now != BfdState::Up {
                        tracing::warn!(peer = %d.label.peer, bfd = now.as_str(), "BFD session down: closing the BGP session");
                        events.push(Event::BfdDown);
                    }
                    bfd_up = now == BfdState::Up;
                }
                // The BFD task is gone (the speaker is exiting).
                None => bfd = None,
            },
            r = routes.changed(), if routes_open && d.view.is_some() => {
                if r.is_err() {
                    routes_open = false;
                } else {
                    let table = routes.borrow_and_update().clone();
                    d.advertise(&table, &mut events).await;
                }
            }
            r = stop.changed(), if !stopping => {
                if r.is_err() {
                    // Abandoned (the speaker is exiting): the connection just
                    // closes, with no Cease, so a graceful-restart peer keeps
                    // our routes until the next speaker re-announces them.
                    return;
                }
                if *stop.borrow() {
                    stopping = true;
                    events.push(Event::Stop);
                }
            }
        }
    }
}

async fn read(stream: Option<&mut TcpStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    match stream {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}

/// The BFD state after its next change; None once its sender is gone.
async fn bfd_changed(rx: Option<&mut watch::Receiver<BfdState>>) -> Option<BfdState> {
    match rx {
        Some(r) => {
            r.changed().await.ok()?;
            Some(*r.borrow_and_update())
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    /// Splits complete messages off the read buffer into events. A decode
    /// error ends the batch: the FSM answers it and drops the connection.
    fn decode(&mut self, events: &mut Vec<Event>) {
        let mut used = 0;
        loop {
            match codec::decode_framed(&self.rbuf[used..]) {
                Ok(Some((Ok(msg), n))) => {
                    used += n;
                    if matches!(msg, Message::Update(_)) {
                        self.metrics
                            .updates_received
                            .get_or_create(&self.label)
                            .inc();
                    }
                    events.push(Event::Received(msg));
                }
                // A malformed message the session survives (RFC 7606): the
                // stream goes on after it.
                Ok(Some((Err(e), n))) if e.handling() != Handling::SessionReset => {
                    used += n;
                    events.push(Event::Malformed(e));
                }
                Ok(None) => break,
                Ok(Some((Err(e), _))) | Err(e) => {
                    events.push(Event::Malformed(e));
                    self.rbuf.clear();
                    return;
                }
            }
        }
        self.rbuf.drain(..used);
    }

    async fn handle(
        &mut self,
        ev: Event,
        routes: &watch::Receiver<Arc<Table>>,
        stop: &mut watch::Receiver<bool>,
        events: &mut Vec<Event>,
    ) {
        let refresh = matches!(ev, Event::Received(Message::RouteRefresh(_)));
        if let Event::Received(Message::Notification(n)) = &ev {
            self.count_notification("received", n.code);
            tracing::warn!(
                peer = %self.label.peer,
                code = n.code,
                subcode = n.subcode,
                reason = %notification_text(n),
                "peer sent NOTIFICATION"
            );
        }
        if let Event::Malformed(e) = &ev
            && (e.handling() == Handling::SessionReset || self.fsm.state() != State::Established)
        {
            let n = e.notification();
            tracing::error!(
                peer = %self.label.peer, error = %e, code = n.code, subcode = n.subcode,
                "peer sent a malformed message; answering with NOTIFICATION and reconnecting"
            );
        }
        for action in self.fsm.handle(ev) {
            self.act(action, routes, stop, events).await;
        }
        if refresh && self.fsm.state() == State::Established {
            // The peer asked for everything again (RFC 2918).
            self.adj.clear();
            let table = routes.borrow().clone();
            self.advertise(&table, events).await;
        }
        let s = self.fsm.state();
        self.state_tx.send_replace(s);
        self.metrics
            .session_state
            .get_or_create(&self.label)
            .set(state_number(s));
        self.metrics
            .session_up
            .get_or_create(&self.label)
            .set(i64::from(s == State::Established));
    }

    async fn act(
        &mut self,
        action: Action,
        routes: &watch::Receiver<Arc<Table>>,
        stop: &mut watch::Receiver<bool>,
        events: &mut Vec<Event>,
    ) {
        match action {
            Action::Connect => {
                let timeout = self.cfg.connect_retry.max(Duration::from_secs(3));
                let dial = self.cfg.dial.clone();
                tokio::select! {
                    r = transport::connect(&dial, timeout) => match r {
                        Ok(s) => {
                            tracing::info!(peer = %self.label.peer, local = ?s.local_addr().ok(), "connected");
                            self.stream = Some(s);
                            self.rbuf.clear();
                            events.push(Event::TcpConnected);
                        }
                        Err(e) => {
                            tracing::info!(peer = %self.label.peer, error = %e, "connect failed");
                            events.push(Event::TcpFailed);
                        }
                    },
                    _ = stop.changed() => events.push(Event::TcpFailed),
                }
            }
            Action::Send(msg) => {
                if let Message::Notification(n) = &msg {
                    self.count_notification("sent", n.code);
                }
                self.send(&[msg], events).await;
            }
            Action::Close => {
                if let Some(mut s) = self.stream.take() {
                    let _ = s.shutdown().await;
                }
            }
            Action::Arm(t, d) => {
                let d = if t == Timer::ConnectRetry {
                    self.failures = self.failures.saturating_add(1);
                    // Up to 10 % jitter, so many speakers do not dial a
                    // restarted router in lockstep.
                    barelb_runtime::jittered(backoff(d, self.failures), 0.1)
                } else {
                    d
                };
                self.timers[slot(t)] = Some(Instant::now() + d);
            }
            Action::Disarm(t) => self.timers[slot(t)] = None,
            Action::Up { hold_time, peer } => {
                self.failures = 0;
                self.metrics.established.get_or_create(&self.label).inc();
                let view = self.view_for(&peer);
                tracing::info!(
                    peer = %self.label.peer, peer_as = peer.asn, hold_time,
                    ipv4 = view.ipv4, ipv6 = view.ipv6,
                    next_hop_v4 = ?view.next_hop_v4, next_hop_v6 = ?view.next_hop_v6,
                    "session established"
                );
                self.adj.clear();
                self.view = Some(view.clone());
                let table = routes.borrow().clone();
                self.advertise(&table, events).await;
                let gr = peer
                    .capabilities
                    .iter()
                    .any(|c| matches!(c, Capability::GracefulRestart { .. }));
                if gr {
                    self.send(&routes::end_of_rib(&view), events).await;
                }
            }
            Action::Discarded(e) => {
                self.metrics
                    .updates_malformed
                    .get_or_create(&self.label)
                    .inc();
                tracing::warn!(
                    peer = %self.label.peer, error = %e,
                    "peer sent a malformed UPDATE; treated as withdraw (RFC 7606): session and announcements kept"
                );
            }
            Action::Down(why) => {
                if self.view.take().is_some() {
                    tracing::warn!(peer = %self.label.peer, reason = %why, "session down");
                } else {
                    tracing::info!(peer = %self.label.peer, reason = %why, "session attempt failed");
                }
                self.adj.clear();
                self.set_prefix_gauges();
            }
        }
    }

    /// Brings the peer in step with `table`.
    async fn advertise(&mut self, table: &Table, events: &mut Vec<Event>) {
        let Some(view) = &self.view else {
            return;
        };
        let msgs = self.adj.sync(table, view);
        if msgs.is_empty() {
            return;
        }
        self.send(&msgs, events).await;
        self.set_prefix_gauges();
    }

    fn set_prefix_gauges(&self) {
        let (v4, v6) = self.adj.counts();
        for (family, n) in [("ipv4", v4), ("ipv6", v6)] {
            self.metrics
                .prefixes_advertised
                .get_or_create(&FamilyLabels {
                    peer: self.label.peer.clone(),
                    family: family.into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Writes `msgs` in one go; a failed or stuck write drops the connection.
    async fn send(&mut self, msgs: &[Message], events: &mut Vec<Event>) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let mut wire = Vec::new();
        let mut updates = 0u64;
        for m in msgs {
            wire.extend_from_slice(&codec::encode(m));
            updates += u64::from(matches!(m, Message::Update(_)));
        }
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&wire)).await {
            Ok(Ok(())) => {
                self.metrics
                    .updates_sent
                    .get_or_create(&self.label)
                    .inc_by(updates);
            }
            Ok(Err(e)) => {
                tracing::warn!(peer = %self.label.peer, error = %e, "write failed");
                self.stream = None;
                events.push(Event::TcpFailed);
            }
            Err(_) => {
                tracing::warn!(peer = %self.label.peer, "peer stopped reading; dropping the connection");
                self.stream = None;
                events.push(Event::TcpFailed);
            }
        }
    }

    fn count_notification(&self, direction: &str, code: u8) {
        self.metrics
            .notifications
            .get_or_create(&NotificationLabels {
                peer: self.label.peer.clone(),
                direction: direction.into(),
                code: code.to_string(),
            })
            .inc();
    }

    /// Families and next hops for the session just established.
    fn view_for(&self, peer: &Open) -> SessionView {
        let local = self.stream.as_ref().and_then(|s| s.local_addr().ok());
        let (nh4, nh6) = next_hops(local, &self.cfg);
        let mp: Vec<(u16, u8)> = peer
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol { afi, safi } => Some((*afi, *safi)),
                _ => None,
            })
            .collect();
        SessionView {
            my_asn: self.cfg.my_asn,
            ibgp: self.cfg.my_asn == self.cfg.peer_asn,
            next_hop_v4: nh4,
            next_hop_v6: nh6,
            // No multiprotocol capability at all means IPv4 unicast only (RFC 4760 §8).
            ipv4: mp.is_empty() || mp.contains(&(1, 1)),
            ipv6: mp.contains(&(2, 1)),
        }
    }
}

/// Next hops: configured ones win; otherwise this end of the session for its
/// family and a global address of the other family on the same interface.
fn next_hops(local: Option<SocketAddr>, cfg: &PeerConfig) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let local = local.map(|a| a.ip());
    let ifaddrs = iface::addresses().unwrap_or_default();
    let interface = local.and_then(|l| {
        ifaddrs
            .iter()
            .find(|a| a.addr == l)
            .map(|a| a.interface.clone())
    });
    let same_if = |want_v6: bool| -> Option<IpAddr> {
        let interface = interface.as_ref()?;
        ifaddrs
            .iter()
            .filter(|a| &a.interface == interface && a.addr.is_ipv6() == want_v6)
            .map(|a| a.addr)
            .find(|a| match a {
                IpAddr::V6(v6) => !v6.is_unicast_link_local() && !v6.is_loopback(),
                IpAddr::V4(v4) => !v4.is_loopback(),
            })
    };
    let v4 = cfg.next_hop_v4.or_else(|| match local {
        Some(IpAddr::V4(a)) => Some(a),
        _ => match same_if(false) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        },
    });
    let v6 = cfg.next_hop_v6.or_else(|| match local {
        Some(IpAddr::V6(a)) if !a.is_unicast_link_local() => Some(a),
        _ => match same_if(true) {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        },
    });
    (v4, v6)
}

/// A NOTIFICATION in words; Cease with a shutdown message (RFC 9003) shows it.
fn notification_text(n: &codec::Notification) -> String {
    let name = match n.code {
        1 => "message header error",
        2 => "OPEN message error",
        3 => "UPDATE message error",
        4 => "hold timer expired",
        5 => "finite state machine error",
        6 => "cease",
        _ => "unknown error",
    };
    if n.code == 6
        && matches!(n.subcode, 2 | 4)
        && let Some((&len, rest)) = n.data.split_first()
    {
        let text = rest.get(..usize::from(len)).unwrap_or(rest);
        return format!("{name}: \"{}\"", String::from_utf8_lossy(text));
    }
    format!("{name} (subcode {})", n.subcode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 3), Duration::from_secs(4));
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
    }

    #[test]
    fn ttl_is_one_for_direct_ebgp_and_the_hop_count_for_multihop() {
        assert_eq!(PeerConfig::default_ttl(64500, 64501, None), 1);
        assert_eq!(PeerConfig::default_ttl(64500, 64501, Some(4)), 4);
        assert_eq!(PeerConfig::default_ttl(64500, 64500, None), 64);
    }

    #[test]
    fn cease_shows_the_shutdown_message() {
        let mut data = vec![11];
        data.extend_from_slice(b"maintenance");
        let n = codec::Notification {
            code: 6,
            subcode: 2,
            data,
        };
        assert_eq!(notification_text(&n), "cease: \"maintenance\"");
        let n = codec::Notification {
            code: 3,
            subcode: 1,
            data: vec![],
        };
        assert_eq!(notification_text(&n), "UPDATE message error (subcode 1)");
    }
}
