//! `barelb-speaker bgp`: peer with routers and announce prefixes until
//! SIGTERM. `--announce-file` is re-read on SIGHUP, so a lab or a script
//! can change what is announced without restarting the sessions.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use super::Shutdown;
use std::time::Duration;

use anyhow::{Context, bail};
use barelb_speaker::bfd::driver::{Bfd, PeerSpec};
use barelb_speaker::bfd::session::Config as BfdConfig;
use barelb_speaker::bgp::config;
use barelb_speaker::bgp::fsm::State;
use barelb_speaker::bgp::routes::{self, RouteAttrs, Table};
use barelb_speaker::bgp::session::{self, PeerConfig};
use barelb_speaker::bgp::transport::{self, Dial};
use barelb_speaker::metrics::Metrics;
use ipnet::IpNet;
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct BgpArgs {
    /// Router address to peer with (repeat for several sessions).
    #[arg(long = "peer", required = true)]
    peers: Vec<IpAddr>,
    /// The router's AS: once for all peers, or once per --peer in order.
    #[arg(long = "peer-asn", required = true)]
    peer_asns: Vec<u32>,
    /// Our AS.
    #[arg(long)]
    my_asn: u32,
    #[arg(long, default_value_t = 179)]
    peer_port: u16,
    /// Local address to connect from (default: the kernel's choice).
    #[arg(long)]
    source: Option<IpAddr>,
    /// BGP identifier (default: the source address, else this host's first
    /// non-loopback IPv4 address).
    #[arg(long)]
    router_id: Option<Ipv4Addr>,
    /// Proposed hold time in seconds: 0 (no keepalives) or at least 3.
    #[arg(long, default_value_t = 90)]
    hold_time: u16,
    /// First reconnect delay in seconds (doubles per failure, up to 60 s).
    #[arg(long, default_value_t = 5.0)]
    connect_retry: f64,
    /// eBGP multihop: TTL of our packets (default 1 for eBGP, 64 for iBGP).
    #[arg(long)]
    ebgp_multihop: Option<u8>,
    /// File holding the TCP-MD5 password (e.g. a mounted Secret key).
    /// The BARELB_BGP_PASSWORD environment variable is used when unset.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Advertise graceful restart with this restart time (seconds). On
    /// SIGTERM the sessions then close without Cease, so the routers keep
    /// our routes for that long while a restarted speaker comes back
    /// (unless --graceful-shutdown asks for a stop).
    #[arg(long)]
    graceful_restart: Option<u16>,
    /// On SIGTERM, first re-advertise every route with the
    /// GRACEFUL_SHUTDOWN community (RFC 8326) and wait this many seconds
    /// for routers to move traffic away, then close with Cease.
    #[arg(long)]
    graceful_shutdown: Option<f64>,
    /// Run BFD with every peer (single hop; multihop with --ebgp-multihop):
    /// a BFD session going Down closes the BGP session at once.
    #[arg(long)]
    bfd: bool,
    /// BFD: desired minimum transmit and required minimum receive
    /// intervals (ms), and the detection multiplier.
    #[arg(long, default_value_t = 300)]
    bfd_min_tx_ms: u64,
    #[arg(long, default_value_t = 300)]
    bfd_min_rx_ms: u64,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
    bfd_multiplier: u8,
    /// A prefix or address to announce (repeatable). Addresses become /32
    /// or /128, or their aggregate with --aggregation-length(-v6).
    #[arg(long = "announce")]
    announce: Vec<String>,
    /// More announcements, one per line; re-read on SIGHUP.
    #[arg(long)]
    announce_file: Option<PathBuf>,
    #[arg(long)]
    aggregation_length: Option<u8>,
    #[arg(long)]
    aggregation_length_v6: Option<u8>,
    /// Community on every announcement: ASN:VALUE or a well-known name (repeatable).
    #[arg(long = "community")]
    communities: Vec<String>,
    /// Large community A:B:C (repeatable).
    #[arg(long = "large-community")]
    large_communities: Vec<String>,
    /// LOCAL_PREF (sent on iBGP sessions only; default 100 there).
    #[arg(long)]
    local_pref: Option<u32>,
    #[arg(long)]
    med: Option<u32>,
    /// Next hop to send instead of this end's address (repeat for v4 and v6).
    #[arg(long = "next-hop")]
    next_hops: Vec<IpAddr>,
}

/// Everything the standalone mode announces, with one set of attributes.
struct Announcements {
    fixed: Vec<IpNet>,
    file: Option<PathBuf>,
    agg: (Option<u8>, Option<u8>),
    attrs: RouteAttrs,
}

impl Announcements {
    /// The table to advertise; a bad file keeps `previous` (nothing is lost).
    fn table(&self, previous: Option<&Table>) -> anyhow::Result<Table> {
        let mut nets: BTreeSet<IpNet> = self.fixed.iter().copied().collect();
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path);
            let parsed = text
                .map_err(|e| e.to_string())
                .and_then(|t| config::announcement_file(&t, self.agg.0, self.agg.1));
            match (parsed, previous) {
                (Ok(list), _) => nets.extend(list),
                (Err(e), Some(prev)) => {
                    tracing::error!(file = %path.display(), error = %e, "announce file not applied; keeping the previous announcements");
                    return Ok(prev.clone());
                }
                (Err(e), None) => bail!("--announce-file {}: {e}", path.display()),
            }
        }
        Ok(nets.into_iter().map(|n| (n, self.attrs.clone())).collect())
    }
}

fn router_id(a: &BgpArgs) -> anyhow::Result<Ipv4Addr> {
    if let Some(id) = a.router_id {
        return Ok(id);
    }
    session::default_router_id(a.source)
        .context("no IPv4 address on this host to use as BGP identifier: pass --router-id")
}

fn password(a: &BgpArgs) -> anyhow::Result<Option<Vec<u8>>> {
    let raw = match &a.password_file {
        Some(f) => {
            std::fs::read(f).with_context(|| format!("read --password-file {}", f.display()))?
        }
        None => match std::env::var_os("BARELB_BGP_PASSWORD") {
            Some(v) => v.into_encoded_bytes(),
            None => return Ok(None),
        },
    };
    let p = config::password(&raw).map_err(anyhow::Error::msg)?;
    if !transport::md5_supported() {
        bail!("a TCP-MD5 password is set but this kernel has no TCP_MD5SIG support");
    }
    Ok(Some(p))
}

pub async fn run(a: BgpArgs, metrics: Arc<Metrics>, shutdown: Shutdown) -> anyhow::Result<()> {
    if a.hold_time == 1 || a.hold_time == 2 {
        bail!(
            "--hold-time {} is not allowed: use 0 or at least 3",
            a.hold_time
        );
    }
    let asns = match a.peer_asns.len() {
        1 => vec![a.peer_asns[0]; a.peers.len()],
        n if n == a.peers.len() => a.peer_asns.clone(),
        n => bail!(
            "{n} --peer-asn values for {} peers: give one, or one per --peer",
            a.peers.len()
        ),
    };
    let attrs = RouteAttrs {
        communities: a
            .communities
            .iter()
            .map(|c| config::community(c))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        large_communities: a
            .large_communities
            .iter()
            .map(|c| config::large_community(c))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        local_pref: a.local_pref,
        med: a.med,
    };
    let agg = (a.aggregation_length, a.aggregation_length_v6);
    let ann = Announcements {
        fixed: a
            .announce
            .iter()
            .map(|s| config::announcement(s, agg.0, agg.1))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        file: a.announce_file.clone(),
        agg,
        attrs,
    };
    let table = ann.table(None)?;
    let router_id = router_id(&a)?;
    let password = password(&a)?;
    let next_hop_v4 = a.next_hops.iter().find_map(|ip| match ip {
        IpAddr::V4(v) => Some(*v),
        IpAddr::V6(_) => None,
    });
    let next_hop_v6: Option<Ipv6Addr> = a.next_hops.iter().find_map(|ip| match ip {
        IpAddr::V6(v) => Some(*v),
        IpAddr::V4(_) => None,
    });
    tracing::info!(%router_id, prefixes = table.len(), peers = ?a.peers, "starting BGP");
    let (routes_tx, routes_rx) = watch::channel(Arc::new(table));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let bfd = a.bfd.then(|| Bfd::spawn(metrics.bfd.clone()));
    for (peer, peer_asn) in a.peers.iter().zip(asns) {
        let cfg = PeerConfig {
            dial: Dial {
                peer: SocketAddr::new(*peer, a.peer_port),
                source: a.source,
                ttl: PeerConfig::default_ttl(a.my_asn, peer_asn, a.ebgp_multihop),
                password: password.clone(),
            },
            my_asn: a.my_asn,
            peer_asn,
            router_id,
            hold_time: a.hold_time,
            keepalive: None,
            connect_retry: Duration::try_from_secs_f64(a.connect_retry)
                .context("--connect-retry must be a positive number of seconds")?,
            graceful_restart: a.graceful_restart,
            next_hop_v4,
            next_hop_v6,
        };
        let (state_tx, _) = watch::channel(State::Idle);
        let bfd_state = bfd.as_ref().map(|b| {
            b.add(PeerSpec {
                address: *peer,
                local: a.source,
                multihop: a.ebgp_multihop.is_some_and(|ttl| ttl > 1),
                config: BfdConfig {
                    min_tx: Duration::from_millis(a.bfd_min_tx_ms),
                    min_rx: Duration::from_millis(a.bfd_min_rx_ms),
                    multiplier: a.bfd_multiplier,
                },
            })
        });
        tasks.push(tokio::spawn(session::run(
            cfg,
            routes_rx.clone(),
            metrics.bgp.clone(),
            stop_rx.clone(),
            state_tx,
            bfd_state,
        )));
    }
    drop(routes_rx);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("install the SIGHUP handler")?;
    let shutdown = shutdown.wait();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = hup.recv() => {
                let prev = routes_tx.borrow().clone();
                let next = ann.table(Some(&prev))?;
                tracing::info!(prefixes = next.len(), "announcements reloaded");
                routes_tx.send_replace(Arc::new(next));
            }
        }
    }
    match (a.graceful_shutdown, a.graceful_restart) {
        (Some(drain), _) => {
            let drain = Duration::try_from_secs_f64(drain)
                .context("--graceful-shutdown must be a positive number of seconds")?;
            let marked = routes::graceful_shutdown(&routes_tx.borrow());
            tracing::info!(
                ?drain,
                "stopping: routes marked GRACEFUL_SHUTDOWN, draining"
            );
            routes_tx.send_replace(Arc::new(marked));
            tokio::time::sleep(drain).await;
        }
        (None, Some(_)) => {
            // Abandoned sessions close without Cease: the routers keep our
            // routes (stale) until we are back or the restart time ends.
            tracing::info!("restarting: closing sessions without Cease (graceful restart)");
            drop(stop_tx);
            drop(tasks);
            return Ok(());
        }
        (None, None) => {}
    }
    tracing::info!("stopping: closing sessions with Cease");
    stop_tx.send_replace(true);
    for t in tasks {
        if tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .is_err()
        {
            tracing::warn!("a session did not close within 5 s");
        }
    }
    Ok(())
}
