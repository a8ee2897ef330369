//! The prober behind `l2::standby`: while the agent has no stream, it
//! sends the ARP probes the decision asks for, on the interface each
//! address would be announced on, reports to it what the LAN says, and
//! hands the agent the addresses to take over. Sockets are opened only
//! while away and closed once a stream is up again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::l2::L2;
use crate::l2::socket::{PacketSocket, PacketType};
use crate::l2::standby::{Standing, Watch};
use crate::l2::{Frame, Mac, arp, ndp};
use crate::net::iface;

/// What the prober needs from the agent.
#[derive(Clone, Debug, Default, PartialEq)]
struct View {
    away: bool,
    standbys: Arc<BTreeMap<IpAddr, Standing>>,
}

/// The agent's end: tells the prober whether the stream is up and what
/// this node stands by for; takes the addresses to take over.
#[derive(Debug)]
pub struct Link {
    view: watch::Sender<View>,
    pub takeovers: mpsc::UnboundedReceiver<BTreeSet<IpAddr>>,
}

impl Link {
    /// Starts the prober (`default_interfaces`: the speaker's
    /// `--interface`s, for addresses whose pool names none).
    pub fn start(default_interfaces: Vec<String>) -> Self {
        let (view, rx) = watch::channel(View::default());
        let (tx, takeovers) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, tx, default_interfaces));
        Link { view, takeovers }
    }

    /// Publishes the stream's state and `l2`'s standby set.
    pub fn publish(&self, away: bool, l2: &L2) {
        self.view.send_if_modified(|v| {
            let changed = v.away != away || *v.standbys != *l2.standbys();
            if changed {
                v.away = away;
                v.standbys = Arc::new(l2.standbys().clone());
            }
            changed
        });
    }
}

/// What a listener heard.
enum Heard {
    /// Another host said it has this address (an ARP packet's sender,
    /// a Neighbor Advertisement's target).
    Claim(IpAddr),
    /// Any other frame from another host.
    Lan,
}

/// A probing socket and the task listening on it.
struct Probe {
    sock: Arc<PacketSocket>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

async fn run(
    mut view: watch::Receiver<View>,
    takeovers: mpsc::UnboundedSender<BTreeSet<IpAddr>>,
    default_interfaces: Vec<String>,
) {
    let mut watch = Watch::default();
    let (heard_tx, mut heard) = mpsc::channel::<Heard>(1024);
    let mut probes: BTreeMap<String, Probe> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(h) = heard.recv() => {
                let v = view.borrow();
                match h {
                    Heard::Claim(ip) => watch.answered(&ip, &v.standbys, Instant::now()),
                    Heard::Lan => watch.heard_lan(Instant::now()),
                }
                continue;
            }
            changed = view.changed() => if changed.is_err() { return },
        }
        let v = view.borrow().clone();
        if !v.away || v.standbys.is_empty() {
            if watch.is_away() {
                watch.connected();
                probes.clear();
            }
            continue;
        }
        let now = Instant::now();
        watch.away(now);
        let due = watch.probes(&v.standbys, now);
        // One read of the interfaces per round, not one per probe; none
        // sent when they cannot be read.
        let addrs = if due.is_empty() {
            None
        } else {
            iface::addresses().ok()
        };
        for ip in due {
            let Some(addrs) = addrs.as_deref() else { break };
            let named = v.standbys.get(&ip).map(|s| s.interfaces.as_slice());
            let Some(p) = probe_for(
                &mut probes,
                &ip,
                named,
                &default_interfaces,
                addrs,
                &heard_tx,
            ) else {
                continue;
            };
            if let Err(e) = p.sock.send(&probe(ip, p.sock.mac)).await {
                tracing::debug!(address = %ip, error = %e, "standby probe not sent");
            }
        }
        let taken = watch.takeovers(&v.standbys, now);
        if !taken.is_empty() {
            let owners: BTreeSet<&str> = taken
                .iter()
                .filter_map(|ip| v.standbys.get(ip).map(|s| s.owner.as_str()))
                .collect();
            tracing::warn!(addresses = taken.len(), owners = ?owners, "the operator is unreachable and these owners answer nothing on the LAN while other hosts do: taking their addresses over as their standby");
            let _ = takeovers.send(taken);
        }
    }
}

/// The socket on the interface `ip` would be announced on, opened now if
/// need be (its listener reporting to `heard`).
fn probe_for<'a>(
    probes: &'a mut BTreeMap<String, Probe>,
    ip: &IpAddr,
    named: Option<&[String]>,
    default_interfaces: &[String],
    addrs: &[iface::IfAddr],
    heard: &mpsc::Sender<Heard>,
) -> Option<&'a Probe> {
    let explicit = match named {
        Some(n) if !n.is_empty() => n,
        _ => default_interfaces,
    };
    let name = iface::choose(ip, explicit, addrs, iface::default_route(ip).as_deref())?;
    if !probes.contains_key(&name) {
        match PacketSocket::open(&name) {
            Ok(sock) => {
                let sock = Arc::new(sock);
                let listener = tokio::spawn(listen(sock.clone(), heard.clone()));
                probes.insert(name.clone(), Probe { sock, listener });
            }
            Err(e) => {
                tracing::warn!(interface = %name, error = %e, "standby: cannot open a raw socket");
                return None;
            }
        }
    }
    probes.get(&name)
}

/// A probe for `target`: for IPv4 an ARP probe (RFC 5227: sender address
/// 0.0.0.0, so no host's cache learns from it; the owner answers it like
/// any request), for IPv6 `ndp::probe`.
fn probe(target: IpAddr, mac: Mac) -> Vec<u8> {
    match target {
        IpAddr::V4(target) => arp::frame(
            Mac::BROADCAST,
            mac,
            &arp::ArpPacket {
                op: arp::OP_REQUEST,
                sender_mac: mac,
                sender_ip: Ipv4Addr::UNSPECIFIED,
                target_mac: Mac::ZERO,
                target_ip: target,
            },
        ),
        IpAddr::V6(target) => ndp::probe(target, mac),
    }
}

/// Reports claims (ARP senders, advertised targets) and, at most every
/// 100 ms, other frames from other hosts.
async fn listen(sock: Arc<PacketSocket>, heard: mpsc::Sender<Heard>) {
    let mut buf = vec![0u8; 65536];
    let mut lan_told: Option<Instant> = None;
    loop {
        let (n, kind) = match sock.recv(&mut buf).await {
            Ok(r) => r,
            Err(_) => {
                // The link is down or the socket broken: nothing is heard.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if kind == PacketType::Outgoing {
            continue;
        }
        let Some(frame) = buf.get(..n) else { continue };
        let said = match Frame::parse(frame) {
            Ok(Frame::Arp(a)) if a.sender_mac != sock.mac && !a.sender_ip.is_unspecified() => {
                Heard::Claim(IpAddr::V4(a.sender_ip))
            }
            Ok(Frame::NeighborAdvert(na)) if na.eth_src != sock.mac => {
                Heard::Claim(IpAddr::V6(na.target))
            }
            _ if lan_told.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) => continue,
            _ => {
                lan_told = Some(Instant::now());
                Heard::Lan
            }
        };
        if heard.try_send(said).is_err() && heard.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_asks_for_the_address_from_no_address() {
        let me = Mac([2, 0, 0, 0, 0, 1]);
        let f = probe(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), me);
        let Ok(Frame::Arp(a)) = Frame::parse(&f) else {
            panic!("not ARP")
        };
        assert_eq!(a.op, arp::OP_REQUEST);
        assert_eq!(a.sender_mac, me);
        assert!(a.sender_ip.is_unspecified());
        assert_eq!(a.target_ip, Ipv4Addr::new(198, 51, 100, 7));
        // The owner's answer comes back to the prober.
        let answer = arp::reply(&a, Mac([2, 0, 0, 0, 0, 2]));
        let Ok(Frame::Arp(r)) = Frame::parse(&answer) else {
            panic!("not ARP")
        };
        assert_eq!((r.op, r.target_mac), (arp::OP_REPLY, me));
        assert_eq!(r.sender_ip, Ipv4Addr::new(198, 51, 100, 7));
    }
}
