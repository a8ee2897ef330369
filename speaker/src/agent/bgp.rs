//! The BGP part of what the operator assigned: one session per BGPPeer the
//! node's routes use, each fed the table of routes meant for it. A peer
//! whose settings change gets a new session; a peer no route uses any more
//! is closed with Cease. A peer with `bfd` also gets a BFD session, which
//! the BGP session follows.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use barelb_control::v1::{BgpPeer, BgpRoute, BgpSession};
use tokio::sync::watch;

use crate::bfd::driver::{Bfd, PeerSpec};
use crate::bfd::session::Config as BfdConfig;
use crate::bgp::config;
use crate::bgp::fsm::State;
use crate::bgp::routes::{self, RouteAttrs, Table, prefix_for};
use crate::bgp::session::{self, PeerConfig};
use crate::bgp::transport::Dial;
use crate::metrics::{BfdMetrics, BgpMetrics};

#[derive(Debug)]
struct Running {
    cfg: BgpPeer,
    table: watch::Sender<Arc<Table>>,
    stop: watch::Sender<bool>,
    state: watch::Receiver<State>,
}

/// Sessions by BGPPeer name, and the routes to announce.
#[derive(Debug)]
pub struct Bgp {
    metrics: Arc<BgpMetrics>,
    bfd_metrics: Arc<BfdMetrics>,
    /// The BFD task, started with the first peer that asks for BFD.
    bfd: Option<Bfd>,
    wanted: BTreeMap<String, BgpPeer>,
    routes: BTreeMap<String, BgpRoute>,
    running: BTreeMap<String, Running>,
}

/// A BGPPeer from the operator as a session's configuration, or why it
/// cannot be one (also the control-message fuzz target's entry point).
pub fn peer_config(p: &BgpPeer) -> Result<PeerConfig, String> {
    let addr: IpAddr = p
        .address
        .parse()
        .map_err(|_| format!("peer {}: bad address {:?}", p.name, p.address))?;
    let source: Option<IpAddr> = if p.source_address.is_empty() {
        None
    } else {
        Some(
            p.source_address
                .parse()
                .map_err(|_| format!("peer {}: bad source address", p.name))?,
        )
    };
    let router_id = session::default_router_id(source).ok_or_else(|| {
        format!(
            "peer {}: this node has no IPv4 address for a BGP identifier",
            p.name
        )
    })?;
    let multihop = u8::try_from(p.ebgp_multihop).ok().filter(|h| *h > 0);
    Ok(PeerConfig {
        dial: Dial {
            peer: SocketAddr::new(addr, u16::try_from(p.port).unwrap_or(179)),
            source,
            ttl: PeerConfig::default_ttl(p.my_asn, p.peer_asn, multihop),
            password: (!p.password.is_empty()).then(|| p.password.clone()),
        },
        my_asn: p.my_asn,
        peer_asn: p.peer_asn,
        router_id,
        hold_time: u16::try_from(p.hold_time).unwrap_or(90),
        keepalive: (p.keepalive_ms > 0).then(|| Duration::from_millis(u64::from(p.keepalive_ms))),
        connect_retry: Duration::from_millis(u64::from(p.connect_retry_ms.max(100))),
        graceful_restart: u16::try_from(p.graceful_restart).ok().filter(|t| *t > 0),
        next_hop_v4: None,
        next_hop_v6: None,
    })
}

/// The table of `routes` for `peer`, each route that cannot be announced
/// noted in `errors` (also the control-message fuzz target's entry point).
pub fn route_table<'a>(
    routes: impl IntoIterator<Item = &'a BgpRoute>,
    peer: &str,
    errors: &mut Vec<String>,
) -> Table {
    let mut t = Table::new();
    for r in routes {
        if !r.peers.iter().any(|p| p == peer) {
            continue;
        }
        let Ok(ip) = r.ip.parse::<IpAddr>() else {
            errors.push(format!("bad route address {:?}", r.ip));
            continue;
        };
        let agg = r.aggregation_length.and_then(|l| u8::try_from(l).ok());
        let Some(prefix) = prefix_for(ip, agg) else {
            errors.push(format!("aggregation length does not fit {ip}"));
            continue;
        };
        let communities: Result<Vec<u32>, String> =
            r.communities.iter().map(|c| config::community(c)).collect();
        let large: Result<Vec<(u32, u32, u32)>, String> = r
            .large_communities
            .iter()
            .map(|c| config::large_community(c))
            .collect();
        match (communities, large) {
            (Ok(communities), Ok(large_communities)) => {
                t.insert(
                    prefix,
                    RouteAttrs {
                        communities,
                        large_communities,
                        local_pref: r.local_pref,
                        med: None,
                    },
                );
            }
            (Err(e), _) | (_, Err(e)) => errors.push(format!("route {ip}: {e}")),
        }
    }
    t
}

impl Bgp {
    pub fn new(metrics: Arc<BgpMetrics>, bfd_metrics: Arc<BfdMetrics>) -> Self {
        Bgp {
            metrics,
            bfd_metrics,
            bfd: None,
            wanted: BTreeMap::new(),
            routes: BTreeMap::new(),
            running: BTreeMap::new(),
        }
    }

    pub fn clear(&mut self) {
        self.wanted.clear();
        self.routes.clear();
    }

    pub fn set_peer(&mut self, p: BgpPeer) {
        self.wanted.insert(p.name.clone(), p);
    }

    pub fn remove_peer(&mut self, name: &str) {
        self.wanted.remove(name);
    }

    pub fn set_route(&mut self, r: BgpRoute) {
        self.routes.insert(r.ip.clone(), r);
    }

    pub fn remove_route(&mut self, ip: &str) {
        self.routes.remove(ip);
    }

    /// A leaving speaker's BGP: peers that negotiated graceful restart keep
    /// our routes (the sessions close without Cease on exit, the routers
    /// keep forwarding to this node, and the next speaker re-announces the
    /// same paths: no ECMP change at all); every other peer has its routes
    /// re-advertised with GRACEFUL_SHUTDOWN (RFC 8326) now, so routers that
    /// honour it move traffic to other nodes' paths during the drain,
    /// before the session closes (Cease withdraws the rest).
    ///
    /// A peer with BFD as well is treated as one without graceful restart:
    /// our BFD session falls silent when this speaker exits, and a router
    /// drops a path whose BFD is down (unless told to take it as a restart,
    /// which would also keep a dead node's path for the restart time).
    pub fn leave(&mut self) {
        for (name, r) in &self.running {
            if r.cfg.graceful_restart > 0 && r.cfg.bfd.is_none() {
                tracing::info!(peer = %name, "keeping routes for the next speaker (graceful restart)");
            } else {
                tracing::info!(peer = %name, "graceful shutdown: routes marked GRACEFUL_SHUTDOWN for the drain");
                let marked = routes::graceful_shutdown(&r.table.borrow());
                r.table.send_replace(Arc::new(marked));
            }
        }
    }

    /// Every session's state, for the operator's reports (sorted by peer).
    pub fn sessions(&self) -> Vec<BgpSession> {
        let mut out: Vec<BgpSession> = self
            .running
            .iter()
            .map(|(n, r)| BgpSession {
                peer: n.clone(),
                state: r.state.borrow().name().to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.peer.cmp(&b.peer));
        out
    }

    fn table_for(&self, peer: &str, errors: &mut Vec<String>) -> Table {
        route_table(self.routes.values(), peer, errors)
    }

    /// The BFD session for a peer that asks for one (its state, which the
    /// BGP session follows).
    fn bfd_for(
        &mut self,
        p: &BgpPeer,
        cfg: &PeerConfig,
    ) -> Option<watch::Receiver<crate::bfd::codec::State>> {
        let b = p.bfd.as_ref()?;
        let metrics = self.bfd_metrics.clone();
        let bfd = self.bfd.get_or_insert_with(|| Bfd::spawn(metrics));
        tracing::info!(peer = %p.name, min_rx_ms = b.min_rx_ms, min_tx_ms = b.min_tx_ms, multiplier = b.multiplier, "starting BFD");
        Some(bfd.add(PeerSpec {
            address: cfg.dial.peer.ip(),
            local: cfg.dial.source,
            multihop: p.ebgp_multihop > 1,
            config: BfdConfig {
                min_rx: Duration::from_millis(u64::from(b.min_rx_ms)),
                min_tx: Duration::from_millis(u64::from(b.min_tx_ms)),
                multiplier: u8::try_from(b.multiplier).unwrap_or(3).max(1),
            },
        }))
    }

    /// Starts, restarts and stops sessions and pushes each its table;
    /// returns what could not be done, in one line.
    pub fn apply(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(n, r)| self.wanted.get(*n) != Some(&r.cfg))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            if let Some(r) = self.running.remove(&name) {
                tracing::info!(peer = %name, "closing BGP session");
                r.stop.send_replace(true);
                if let (Some(bfd), Some(_), Ok(addr)) =
                    (&self.bfd, &r.cfg.bfd, r.cfg.address.parse::<IpAddr>())
                {
                    bfd.remove(addr);
                }
            }
        }
        let names: Vec<String> = self.wanted.keys().cloned().collect();
        for name in names {
            let table = Arc::new(self.table_for(&name, &mut errors));
            if let Some(r) = self.running.get(&name) {
                r.table.send_if_modified(|t| {
                    if **t == *table {
                        false
                    } else {
                        *t = table.clone();
                        true
                    }
                });
                continue;
            }
            let Some(p) = self.wanted.get(&name).cloned() else {
                continue;
            };
            match peer_config(&p) {
                Ok(cfg) => {
                    tracing::info!(peer = %name, address = %p.address, "opening BGP session");
                    let (table_tx, table_rx) = watch::channel(table);
                    let (stop_tx, stop_rx) = watch::channel(false);
                    let (state_tx, state_rx) = watch::channel(State::Idle);
                    let bfd = self.bfd_for(&p, &cfg);
                    tokio::spawn(session::run(
                        cfg,
                        table_rx,
                        self.metrics.clone(),
                        stop_rx,
                        state_tx,
                        bfd,
                    ));
                    self.running.insert(
                        name,
                        Running {
                            cfg: p,
                            table: table_tx,
                            stop: stop_tx,
                            state: state_rx,
                        },
                    );
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
