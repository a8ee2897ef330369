//! barelb-speaker: announces the addresses assigned to this node over ARP/NDP
//! (BGP to come). It never talks to the kube-apiserver.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use barelb_speaker::l2::announcer::{self, AnnounceConfig};
use barelb_speaker::l2::iface;
use barelb_speaker::l2::link::LinkMonitor;
use barelb_speaker::l2::socket::PacketSocket;
use barelb_speaker::metrics::{InterfaceLabels, L2Metrics};
use clap::{Parser, Subcommand};
use tokio::sync::watch;

/// barelb-speaker — ARP/NDP announcements for barelb.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Standalone layer 2: answer ARP/NDP for ADDRESSes on INTERFACE until SIGTERM.
    L2 {
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
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9465).
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Args::parse().mode {
        Mode::L2 {
            interfaces,
            addresses,
            announce_count,
            announce_interval_ms,
            refresh_interval_ms,
            metrics_addr,
        } => {
            let metrics = L2Metrics::new();
            if let Some(addr) = metrics_addr {
                let m = metrics.clone();
                tokio::spawn(async move {
                    if let Err(e) = barelb_speaker::metrics::serve(addr, m).await {
                        tracing::error!(error = %e, "metrics endpoint stopped");
                    }
                });
            }
            let ifaddrs = iface::addresses().context("list interface addresses")?;
            let mut by_interface: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
            for a in addresses {
                let route = iface::default_route(&a);
                let Some(chosen) = iface::choose(&a, &interfaces, &ifaddrs, route.as_deref())
                else {
                    anyhow::bail!("no interface to announce {a} on: name one with --interface");
                };
                by_interface.entry(chosen).or_default().insert(a);
            }
            let cfg = AnnounceConfig {
                count: announce_count.max(1),
                interval: Duration::from_millis(announce_interval_ms),
                refresh: refresh_interval_ms.map(Duration::from_millis),
            };
            let mut running = Vec::new();
            for (interface, owned) in by_interface {
                let sock = PacketSocket::open(&interface).with_context(|| {
                    format!("open a raw socket on {interface} (needs CAP_NET_RAW)")
                })?;
                tracing::info!(interface, mac = %sock.mac, addresses = ?owned, "announcing");
                spawn_link_watch(&interface, sock.ifindex, metrics.clone())?;
                let (tx, rx) = watch::channel(owned);
                running.push((
                    tx,
                    tokio::spawn(announcer::run(sock, rx, cfg, metrics.clone())),
                ));
            }
            shutdown_signal().await;
            for (tx, task) in running {
                drop(tx);
                let counters = task.await.context("announcer task")??;
                tracing::info!(?counters, "stopped");
            }
            Ok(())
        }
    }
}

/// Logs and counts carrier changes on the announcing interface.
fn spawn_link_watch(
    interface: &str,
    ifindex: i32,
    metrics: std::sync::Arc<L2Metrics>,
) -> anyhow::Result<()> {
    let monitor = LinkMonitor::open(ifindex).context("subscribe to netlink link events")?;
    let labels = InterfaceLabels {
        interface: interface.to_string(),
    };
    let carrier = std::fs::read_to_string(format!("/sys/class/net/{interface}/carrier"))
        .map(|c| c.trim() == "1")
        .unwrap_or(true);
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

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
