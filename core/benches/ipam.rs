//! IPAM micro-benchmark: ns per allocate (and allocations/s) on an IPv4 /16
//! and an IPv6 /64 pool at several fill levels, with the free space
//! fragmented the way random releases leave it.
//!
//!     cargo bench -p barelb-core --bench ipam
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test code: failing loudly is the point

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use barelb_core::ipam::{Family, IpRange, PoolIpam};

/// A tiny deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Fills `pool` to `held` addresses, then frees a random half of a larger
/// set so the free space is fragmented.
fn fill(pool: &mut PoolIpam, family: Family, held: u64, rng: &mut Rng) -> Vec<IpAddr> {
    let take = if held == 0 {
        0
    } else {
        (held * 2).min(u64::try_from(pool.total(family)).unwrap_or(u64::MAX))
    };
    let mut got: Vec<IpAddr> = (0..take).filter_map(|_| pool.allocate(family)).collect();
    while got.len() as u64 > held {
        let i = (rng.next() % got.len() as u64) as usize;
        let ip = got.swap_remove(i);
        pool.release(&ip);
    }
    got
}

/// A smoke run (scripts/test) checks the benchmark works, in a debug build.
fn smoke() -> bool {
    std::env::var_os("BARELB_BENCH_SMOKE").is_some_and(|v| v == "1")
}

fn bench(label: &str, entry: &str, family: Family, held: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut pool = PoolIpam::new(
        vec![IpRange::parse(entry).unwrap_or_else(|e| panic!("{e}"))],
        false,
    );
    let _held = fill(&mut pool, family, held, &mut rng);
    let fragments = pool.fragments();
    let batch =
        512u64.min(u64::try_from(pool.total(family) - pool.allocated(family)).unwrap_or(512));
    let rounds = if smoke() { 20 } else { 2_000u64 };
    let mut timed = std::time::Duration::ZERO;
    let mut n = 0u64;
    for _ in 0..rounds {
        let start = Instant::now();
        let got: Vec<IpAddr> = (0..batch)
            .filter_map(|_| black_box(pool.allocate(family)))
            .collect();
        timed += start.elapsed();
        n += got.len() as u64;
        for ip in &got {
            pool.release(ip);
        }
    }
    let ns = timed.as_nanos() as f64 / n as f64;
    println!(
        "{label:<28} held={held:<8} free-intervals={fragments:<7} {ns:>7.1} ns/allocate {:>12.0} allocations/s",
        1e9 / ns
    );
}

fn main() {
    // cargo bench passes --bench; nothing to parse.
    let v4_total = if smoke() { 1_024 } else { 65_536u64 };
    for (pct, held) in [(0, 0), (50, v4_total / 2), (99, v4_total * 99 / 100)] {
        bench(
            &format!("IPv4 /16 at {pct}%"),
            "10.20.0.0/16",
            Family::V4,
            held,
        );
    }
    // A /64 cannot be filled; these are the same absolute counts.
    let many = if smoke() { 10_000 } else { 1_000_000 };
    for held in [0, v4_total / 2, many] {
        bench("IPv6 /64", "2001:db8:99::/64", Family::V6, held);
    }
}
