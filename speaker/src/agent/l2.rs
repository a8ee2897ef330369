//! The layer-2 part of what the operator assigned: the set of owned
//! addresses, spread over one announcer task per interface (started when an
//! interface first gets an address). Conflicts seen by any announcer come
//! out of one channel, for the yield rule.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::l2::announcer::{self, AnnounceConfig};
use crate::l2::socket::PacketSocket;
use crate::l2::standby::Standing;
use crate::metrics::L2Metrics;
use crate::net::iface;

#[derive(Debug)]
struct Announcer {
    owned: watch::Sender<BTreeSet<IpAddr>>,
    kick: mpsc::UnboundedSender<IpAddr>,
    task: tokio::task::JoinHandle<std::io::Result<announcer::Counters>>,
}

/// Announcers by interface, and who owns what.
#[derive(Debug)]
pub struct L2 {
    cfg: AnnounceConfig,
    metrics: Arc<L2Metrics>,
    /// Interfaces to use when the operator names none (from the command line).
    default_interfaces: Vec<String>,
    /// Address → the interfaces the operator named for it.
    owned: BTreeMap<IpAddr, Vec<String>>,
    running: BTreeMap<String, Announcer>,
    conflicts_tx: mpsc::UnboundedSender<(IpAddr, String)>,
    /// Owned addresses taken over quietly, not yet acquired by an announcer.
    quiet: announcer::Quiet,
    /// Addresses of other nodes it stands by for (`l2::standby`).
    standbys: BTreeMap<IpAddr, Standing>,
}

impl L2 {
    pub fn new(
        cfg: AnnounceConfig,
        metrics: Arc<L2Metrics>,
        default_interfaces: Vec<String>,
    ) -> (Self, mpsc::UnboundedReceiver<(IpAddr, String)>) {
        let (conflicts_tx, rx) = mpsc::unbounded_channel();
        (
            L2 {
                cfg,
                metrics,
                default_interfaces,
                owned: BTreeMap::new(),
                running: BTreeMap::new(),
                conflicts_tx,
                quiet: announcer::Quiet::default(),
                standbys: BTreeMap::new(),
            },
            rx,
        )
    }

    /// Owns `ip`; `quiet`: answer requests for it without announcing it.
    pub fn set(&mut self, ip: IpAddr, interfaces: Vec<String>, quiet: bool) {
        let mut q = self.quiet.lock().unwrap_or_else(|p| p.into_inner());
        if quiet && !self.owned.contains_key(&ip) {
            q.insert(ip);
        } else {
            q.remove(&ip);
        }
        drop(q);
        self.standbys.remove(&ip);
        self.owned.insert(ip, interfaces);
    }

    /// Stands by for `ip` (owned by another node).
    pub fn set_standby(&mut self, ip: IpAddr, standing: Standing) {
        if !self.owned.contains_key(&ip) {
            self.standbys.insert(ip, standing);
        }
    }

    pub fn remove_standby(&mut self, ip: &IpAddr) {
        self.standbys.remove(ip);
    }

    pub fn clear_standbys(&mut self) {
        self.standbys.clear();
    }

    /// The addresses it stands by for.
    pub fn standbys(&self) -> &BTreeMap<IpAddr, Standing> {
        &self.standbys
    }

    /// Owns what it stood by for among `ips`, announcing it (the owner
    /// is silent: clients must move), and applies.
    pub fn take_over(&mut self, ips: &BTreeSet<IpAddr>) -> Result<(), String> {
        for ip in ips {
            if let Some(s) = self.standbys.remove(ip) {
                self.set(*ip, s.interfaces, false);
                self.metrics.standby_takeovers.inc();
            }
        }
        self.apply()
    }

    /// The interfaces it uses when the operator names none.
    pub fn default_interfaces(&self) -> &[String] {
        &self.default_interfaces
    }

    pub fn remove(&mut self, ip: &IpAddr) -> bool {
        self.owned.remove(ip).is_some()
    }

    pub fn clear(&mut self) {
        self.owned.clear();
    }

    /// The addresses it owns now.
    pub fn owned(&self) -> Vec<IpAddr> {
        self.owned.keys().copied().collect()
    }

    /// Whether it owns nothing (a leaving speaker is done).
    pub fn is_empty(&self) -> bool {
        self.owned.is_empty()
    }

    /// Pushes the owned set to the announcers; returns what could not be
    /// placed (no interface for it), in one line.
    pub fn apply(&mut self) -> Result<(), String> {
        let ifaddrs = iface::addresses().map_err(|e| format!("list interfaces: {e}"))?;
        let mut by_if: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        let mut errors = Vec::new();
        for (ip, named) in &self.owned {
            let explicit = if named.is_empty() {
                &self.default_interfaces
            } else {
                named
            };
            let route = iface::default_route(ip);
            match iface::choose(ip, explicit, &ifaddrs, route.as_deref()) {
                Some(i) => {
                    by_if.entry(i).or_default().insert(*ip);
                }
                None => errors.push(format!("no interface for {ip}")),
            }
        }
        // An announcer that stopped (its socket failed) is replaced.
        self.running.retain(|name, a| {
            let alive = !a.task.is_finished();
            if !alive {
                tracing::warn!(interface = %name, "announcer stopped; reopening");
            }
            alive
        });
        // Interfaces that lost everything get an empty set (the task keeps
        // its socket, ready for the next address).
        for (name, a) in &self.running {
            if !by_if.contains_key(name) {
                a.owned.send_replace(BTreeSet::new());
            }
        }
        for (name, set) in by_if {
            if let Some(a) = self.running.get(&name) {
                a.owned.send_replace(set);
                continue;
            }
            match PacketSocket::open(&name) {
                Ok(sock) => {
                    let (tx, rx) = watch::channel(set);
                    let (kick, kick_rx) = mpsc::unbounded_channel();
                    let task = tokio::spawn(announcer::run(
                        sock,
                        rx,
                        self.cfg,
                        self.metrics.clone(),
                        Some(self.conflicts_tx.clone()),
                        Some(kick_rx),
                        Some(self.quiet.clone()),
                    ));
                    self.running.insert(
                        name,
                        Announcer {
                            owned: tx,
                            kick,
                            task,
                        },
                    );
                }
                Err(e) => errors.push(format!("open a raw socket on {name}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Announces `ip` again now (it is owned and was just (re)assigned).
    pub fn kick(&self, ip: &IpAddr) {
        for a in self.running.values() {
            if a.owned.borrow().contains(ip) {
                let _ = a.kick.send(*ip);
            }
        }
    }

    /// Interfaces with an announcer.
    pub fn interfaces(&self) -> Vec<String> {
        self.running.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only addresses stood by for are taken, and each one taken is counted
    /// (`barelb_l2_standby_takeovers_total`) — whether or not the announcer
    /// can start (here it cannot: no such interface).
    #[test]
    fn take_overs_are_counted() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = L2Metrics::register(&mut registry);
        let cfg = AnnounceConfig {
            count: 1,
            interval: std::time::Duration::from_millis(500),
            refresh: None,
            linger: std::time::Duration::ZERO,
            linger_interval: std::time::Duration::from_secs(1),
        };
        let (mut l2, _conflicts) = L2::new(cfg, metrics.clone(), vec![]);
        let standing = Standing {
            owner: "node-a".into(),
            interfaces: vec!["barelb-none0".into()],
        };
        let (a, b): (IpAddr, IpAddr) = (
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        l2.set_standby(a, standing);
        let _ = l2.take_over(&BTreeSet::from([a, b]));
        assert_eq!(metrics.standby_takeovers.get(), 1);
        assert_eq!(l2.owned(), vec![a]);
        assert!(l2.standbys().is_empty());
    }
}
