//! barelb-speaker: announces the addresses assigned to this node over ARP/NDP
//! (BGP to come). It never talks to the kube-apiserver.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use barelb_speaker::l2::announcer::{self, AnnounceConfig};
use barelb_speaker::l2::socket::PacketSocket;
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
        /// Interface to answer on.
        #[arg(long)]
        interface: String,
        /// An address to own (repeat for more; IPv4 or IPv6).
        #[arg(long = "address", required = true)]
        addresses: Vec<IpAddr>,
        /// Gratuitous ARP / unsolicited NA rounds sent on acquiring an address.
        #[arg(long, default_value_t = 3)]
        announce_count: u32,
        /// Milliseconds between those rounds.
        #[arg(long, default_value_t = 500)]
        announce_interval_ms: u64,
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
            interface,
            addresses,
            announce_count,
            announce_interval_ms,
        } => {
            let sock = PacketSocket::open(&interface)
                .with_context(|| format!("open a raw socket on {interface} (needs CAP_NET_RAW)"))?;
            tracing::info!(interface, mac = %sock.mac, addresses = ?addresses, "announcing");
            let (tx, rx) = watch::channel(addresses.into_iter().collect::<BTreeSet<_>>());
            let cfg = AnnounceConfig {
                count: announce_count.max(1),
                interval: Duration::from_millis(announce_interval_ms),
            };
            let task = tokio::spawn(announcer::run(sock, rx, cfg));
            shutdown_signal().await;
            drop(tx);
            let counters = task.await.context("announcer task")??;
            tracing::info!(?counters, "stopped");
            Ok(())
        }
    }
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
