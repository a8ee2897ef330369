//! barelb-speaker: announces the addresses the operator assigns to this node
//! over ARP/NDP or BGP. It never talks to the kube-apiserver.

use clap::Parser;

/// barelb-speaker
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!("barelb-speaker has no announcers yet (see the L2 and BGP issues)")
}
