//! The tokio shell around a speaker's BFD sessions: one task owns every
//! [`Session`], their sender sockets and the timers; one receiver per port
//! and family feeds it datagrams. It demultiplexes (Your Discriminator, or
//! the source address for a first packet), applies the checks that need
//! the network (TTL 255 on single hop, RFC 5881 §5; the source address),
//! and publishes each session's state on a `watch` channel, which the BGP
//! session of the same peer follows.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::codec::{self, State};
use super::session::{Config, Output, Session};
use super::socket::{self, Datagram, MULTIHOP_PORT, Receiver, SINGLE_HOP_PORT};
use crate::metrics::{BfdMetrics, ChangeLabels, DiscardLabels, PeerLabels};

/// One BFD peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    pub address: IpAddr,
    /// Source address; None: the kernel's choice.
    pub local: Option<IpAddr>,
    /// RFC 5883 (port 4784, any TTL) rather than RFC 5881.
    pub multihop: bool,
    pub config: Config,
}

enum Command {
    Add(PeerSpec, watch::Sender<State>),
    Remove(IpAddr),
}

/// The handle of the BFD task; the task ends when every handle is gone.
#[derive(Clone, Debug)]
pub struct Bfd {
    commands: mpsc::UnboundedSender<Command>,
}

impl Bfd {
    pub fn spawn(metrics: Arc<BfdMetrics>) -> Bfd {
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, metrics));
        Bfd { commands }
    }

    /// Starts (or reconfigures) the session with `spec.address`; its state
    /// follows on the returned channel.
    pub fn add(&self, spec: PeerSpec) -> watch::Receiver<State> {
        let (tx, rx) = watch::channel(State::Down);
        // The task ends only when every handle is dropped: it is running.
        let _ = self.commands.send(Command::Add(spec, tx));
        rx
    }

    /// Ends the session with `peer`, telling it AdminDown first.
    pub fn remove(&self, peer: IpAddr) {
        let _ = self.commands.send(Command::Remove(peer));
    }
}

struct Entry {
    spec: PeerSpec,
    session: Session,
    sock: UdpSocket,
    state: watch::Sender<State>,
    label: PeerLabels,
}

struct Task {
    sessions: BTreeMap<IpAddr, Entry>,
    /// Receivers started, by (IPv6, multihop).
    listening: BTreeSet<(bool, bool)>,
    datagrams: mpsc::Sender<(Datagram, bool)>,
    metrics: Arc<BfdMetrics>,
    next_discr: u32,
    rand: u32,
}

async fn run(mut commands: mpsc::UnboundedReceiver<Command>, metrics: Arc<BfdMetrics>) {
    let (datagrams, mut received) = mpsc::channel(1024);
    // Discriminators and jitter need only differ between runs, not be
    // secret: the clock seeds both.
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() | 1);
    let mut t = Task {
        sessions: BTreeMap::new(),
        listening: BTreeSet::new(),
        datagrams,
        metrics,
        next_discr: seed,
        rand: seed,
    };
    loop {
        let next = t.sessions.values().map(|e| e.session.next_deadline()).min();
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => {
                    t.remove_all().await;
                    return;
                }
                Some(Command::Add(spec, state)) => t.add(spec, state).await,
                Some(Command::Remove(peer)) => t.remove(peer).await,
            },
            Some((dg, multihop)) = received.recv() => t.receive(&dg, multihop).await,
            () = sleep_until(next) => t.tick().await,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn add(&mut self, spec: PeerSpec, state: watch::Sender<State>) {
        if let Some(e) = self.sessions.get_mut(&spec.address)
            && e.spec.local == spec.local
            && e.spec.multihop == spec.multihop
        {
            e.session.set_config(spec.config, Instant::now());
            e.spec = spec;
            state.send_replace(e.session.state());
            e.state = state;
            return;
        }
        self.remove(spec.address).await;
        self.listen(spec.address.is_ipv6(), spec.multihop);
        let label = PeerLabels {
            peer: spec.address.to_string(),
        };
        let sock = match socket::sender(spec.local, spec.address) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(peer = %spec.address, error = %e, "BFD: no socket to send from; the session stays Down");
                return;
            }
        };
        let discr = self.discriminator();
        let session = Session::new(spec.config, discr, Instant::now());
        self.metrics.state.get_or_create(&label).set(1);
        tracing::info!(peer = %spec.address, discriminator = discr, multihop = spec.multihop, "BFD session started");
        self.sessions.insert(
            spec.address,
            Entry {
                spec,
                session,
                sock,
                state,
                label,
            },
        );
    }

    async fn remove(&mut self, peer: IpAddr) {
        if let Some(mut e) = self.sessions.remove(&peer) {
            let now = Instant::now();
            let mut out = e.session.set_admin_down(true, now);
            out.extend(e.session.tick(now, 0));
            out_to(&mut e, out, &self.metrics).await;
            self.metrics.state.remove(&e.label);
            self.metrics.detect_time.remove(&e.label);
        }
    }

    async fn remove_all(&mut self) {
        let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
        for p in peers {
            self.remove(p).await;
        }
    }

    /// A non-zero discriminator no session has.
    fn discriminator(&mut self) -> u32 {
        loop {
            self.next_discr = self.next_discr.wrapping_add(1);
            let d = self.next_discr;
            if d != 0 && self.sessions.values().all(|e| e.session.local_discr() != d) {
                return d;
            }
        }
    }

    /// Starts the receiver for a family and port once.
    fn listen(&mut self, v6: bool, multihop: bool) {
        if self.listening.contains(&(v6, multihop)) {
            return;
        }
        let port = if multihop {
            MULTIHOP_PORT
        } else {
            SINGLE_HOP_PORT
        };
        match Receiver::bind(port, v6) {
            Ok(r) => {
                self.listening.insert((v6, multihop));
                let tx = self.datagrams.clone();
                tokio::spawn(async move {
                    loop {
                        match r.recv().await {
                            Ok(dg) => {
                                if tx.send((dg, multihop)).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(port, error = %e, "BFD: receive failed"),
                        }
                    }
                });
            }
            Err(e) => {
                tracing::error!(port, v6, error = %e, "BFD: cannot listen; sessions on this port stay Down")
            }
        }
    }

    fn discard(&self, reason: &str, from: SocketAddr) {
        tracing::debug!(%from, reason, "BFD packet discarded");
        self.metrics
            .discarded
            .get_or_create(&DiscardLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    async fn receive(&mut self, dg: &Datagram, multihop: bool) {
        let c = match codec::decode(&dg.bytes) {
            Ok(c) => c,
            Err(e) => return self.discard(e.reason(), dg.from),
        };
        // RFC 5881 §5: single-hop packets arrive with TTL 255 or not at all.
        if !multihop && dg.ttl != Some(255) {
            return self.discard("ttl", dg.from);
        }
        let key = if c.your_discr != 0 {
            self.sessions
                .iter()
                .find(|(_, e)| e.session.local_discr() == c.your_discr)
                .map(|(k, _)| *k)
        } else {
            Some(dg.from.ip())
        };
        let Some(e) = key.and_then(|k| self.sessions.get_mut(&k)) else {
            let reason = if c.your_discr != 0 {
                "unknown_discriminator"
            } else {
                "unknown_peer"
            };
            return self.discard(reason, dg.from);
        };
        if e.spec.address != dg.from.ip() || e.spec.multihop != multihop {
            return self.discard("wrong_source", dg.from);
        }
        match e.session.receive(&c, Instant::now()) {
            Ok(out) => {
                // The remote's intervals arrive with every packet (a Poll
                // Sequence changes them while Up).
                let detect = e.session.negotiated().1;
                self.metrics
                    .detect_time
                    .get_or_create(&e.label)
                    .set(detect.as_secs_f64());
                out_to(e, out, &self.metrics).await;
            }
            Err(d) => self.discard(d.reason(), dg.from),
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        for e in self.sessions.values_mut() {
            if e.session.next_deadline() > now {
                continue;
            }
            // xorshift: jitter only.
            self.rand ^= self.rand << 13;
            self.rand ^= self.rand >> 17;
            self.rand ^= self.rand << 5;
            let out = e.session.tick(now, self.rand);
            out_to(e, out, &self.metrics).await;
        }
    }
}

/// Carries out a session's outputs: packets to its peer, state changes to
/// its channel, metrics and log.
async fn out_to(e: &mut Entry, out: Vec<Output>, metrics: &BfdMetrics) {
    let port = if e.spec.multihop {
        MULTIHOP_PORT
    } else {
        SINGLE_HOP_PORT
    };
    let to = SocketAddr::new(e.spec.address, port);
    for o in out {
        match o {
            Output::Send(c) => {
                if let Err(err) = e.sock.send_to(&codec::encode(&c), to).await {
                    tracing::debug!(peer = %e.spec.address, error = %err, "BFD send failed");
                }
            }
            Output::Changed { from, to, diag } => {
                let state = to;
                e.state.send_replace(state);
                metrics.state.get_or_create(&e.label).set(match state {
                    State::AdminDown => 0,
                    State::Down => 1,
                    State::Init => 2,
                    State::Up => 3,
                });
                metrics
                    .changes
                    .get_or_create(&ChangeLabels {
                        peer: e.label.peer.clone(),
                        to: state.as_str().to_string(),
                        cause: diag.as_str().to_string(),
                    })
                    .inc();
                let (tx, detect) = e.session.negotiated();
                let (peer, from, cause) = (e.spec.address, from.as_str(), diag.as_str());
                match state {
                    State::Up => tracing::info!(%peer, ?tx, ?detect, "BFD session Up"),
                    State::Init => tracing::info!(%peer, from, "BFD session Init"),
                    State::Down | State::AdminDown => {
                        tracing::warn!(%peer, from, to = state.as_str(), cause, "BFD session down");
                    }
                }
            }
        }
    }
}
