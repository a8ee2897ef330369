//! `barelb-speaker l2`: answer ARP/NDP for the given addresses until SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::Shutdown;
use std::time::Duration;

use anyhow::Context;
use barelb_speaker::l2::announcer::{self, AnnounceConfig};
use barelb_speaker::l2::socket::PacketSocket;
use barelb_speaker::metrics::{InterfaceLabels, L2Metrics, Metrics};
use barelb_speaker::net::iface;
use barelb_speaker::net::link::LinkMonitor;
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct L2Args {
    /// Interface to answer on (repeat to allow several). Default: for each
    /// address, the interface whose subnet holds it, else the one with the
    /// default route; never loopback or container veths unless named.
    #[arg(long = "interface")]
    interfaces: Vec<String>,
    /// An address to own (repeat for more; IPv4 or IPv6).
    #[arg(long = "address", required = true)]
    addresses: Vec<IpAddr>,
    /// Gratuitous ARP / unsolicited NA rounds sent on acquiring an address.
    #[arg(long, default_value_t = 3)]
    announce_count: u32,
    /// Milliseconds between those rounds.
    #[arg(long, default_value_t = 500)]
    announce_interval_ms: u64,
    /// Re-announce every owned address this often (ms), for switches that
    /// age out MAC tables. Default: never.
    #[arg(long)]
    refresh_interval_ms: Option<u64>,
}

pub async fn run(a: L2Args, metrics: Arc<Metrics>, shutdown: Shutdown) -> anyhow::Result<()> {
    let ifaddrs = iface::addresses().context("list interface addresses")?;
    let mut by_interface: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    for addr in a.addresses {
        let route = iface::default_route(&addr);
        let Some(chosen) = iface::choose(&addr, &a.interfaces, &ifaddrs, route.as_deref()) else {
            anyhow::bail!("no interface to announce {addr} on: name one with --interface");
        };
        by_interface.entry(chosen).or_default().insert(addr);
    }
    let cfg = AnnounceConfig {
        count: a.announce_count.max(1),
        interval: Duration::from_millis(a.announce_interval_ms),
        refresh: a.refresh_interval_ms.map(Duration::from_millis),
        // Addresses given on the command line move nowhere.
        linger: Duration::ZERO,
        linger_interval: Duration::from_secs(1),
    };
    let mut running = Vec::new();
    for (interface, owned) in by_interface {
        let sock = PacketSocket::open(&interface)
            .with_context(|| format!("open a raw socket on {interface} (needs CAP_NET_RAW)"))?;
        tracing::info!(interface, mac = %sock.mac, addresses = ?owned, "announcing");
        spawn_link_watch(&interface, sock.ifindex, metrics.l2.clone())?;
        let (tx, rx) = watch::channel(owned);
        running.push((
            tx,
            tokio::spawn(announcer::run(
                sock,
                rx,
                cfg,
                metrics.l2.clone(),
                None,
                None,
                None,
            )),
        ));
    }
    shutdown.wait().await;
    for (tx, task) in running {
        drop(tx);
        let counters = task.await.context("announcer task")??;
        tracing::info!(?counters, "stopped");
    }
    Ok(())
}

/// Logs and counts carrier changes on the announcing interface.
fn spawn_link_watch(interface: &str, ifindex: i32, metrics: Arc<L2Metrics>) -> anyhow::Result<()> {
    let monitor = LinkMonitor::open(ifindex).context("subscribe to netlink link events")?;
    let labels = InterfaceLabels {
        interface: interface.to_string(),
    };
    let carrier = iface::carrier(interface);
    metrics
        .link_up
        .get_or_create(&labels)
        .set(i64::from(carrier));
    let interface = interface.to_string();
    tokio::spawn(async move {
        let mut up = carrier;
        loop {
            match monitor.next().await {
                Ok(now) if now != up => {
                    up = now;
                    metrics.link_up.get_or_create(&labels).set(i64::from(up));
                    metrics.carrier_changes.get_or_create(&labels).inc();
                    if up {
                        tracing::info!(interface, "carrier regained");
                    } else {
                        tracing::warn!(
                            interface,
                            "carrier lost: this node cannot deliver its addresses"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "link monitor stopped");
                    return;
                }
            }
        }
    });
    Ok(())
}
