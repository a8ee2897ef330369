//! barelb-speaker: announces the addresses assigned to this node over
//! ARP/NDP or BGP. It never talks to the kube-apiserver.

mod cmd;

use std::net::SocketAddr;

use barelb_speaker::metrics::Metrics;
use clap::{Parser, Subcommand};

/// barelb-speaker — ARP/NDP and BGP announcements for barelb.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9465).
    #[arg(long, global = true)]
    metrics_addr: Option<SocketAddr>,
    /// Log format: text, or json (one object per line).
    #[arg(long, global = true, env = "BARELB_LOG_FORMAT", default_value = "text")]
    log_format: barelb_runtime::LogFormat,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Standalone layer 2: answer ARP/NDP for ADDRESSes on INTERFACE until SIGTERM.
    L2(cmd::l2::L2Args),
    /// Standalone BGP: peer with routers and announce prefixes until SIGTERM
    /// (then close each session with a Cease NOTIFICATION).
    Bgp(cmd::bgp::BgpArgs),
    /// Under the operator: announce what it assigns over the control channel.
    Run(cmd::run::RunArgs),
}

fn main() -> std::process::ExitCode {
    barelb_runtime::exit("barelb-speaker", run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    barelb_runtime::traced(args.log_format, "barelb-speaker", serve(args)).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // Before anything else, so a SIGTERM during start-up is an orderly stop.
    let shutdown = barelb_runtime::Shutdown::install()?;
    let metrics = Metrics::new();
    // Standalone modes are ready at once; `run` is once the operator spoke.
    if !matches!(args.mode, Mode::Run(_)) {
        metrics
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(addr) = args.metrics_addr {
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = barelb_speaker::metrics::serve(addr, m).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        });
    }
    match args.mode {
        Mode::L2(a) => cmd::l2::run(a, metrics, shutdown).await,
        Mode::Bgp(a) => cmd::bgp::run(a, metrics, shutdown).await,
        Mode::Run(a) => cmd::run::run(a, metrics, shutdown).await,
    }
}
