//! barelb-operator: allocates LoadBalancer addresses, enforces pool policies,
//! plans announcements and drives the speakers.

use clap::Parser;

/// barelb-operator
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!("barelb-operator has no controllers yet (see the allocation issue)")
}
