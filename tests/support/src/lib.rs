//! Test support shared by barelb's integration tests.
//!
//! - [`argocd`]: a real Argo CD (controller, repo-server) against the lab,
//!   with pool repos served by `git daemon` on loopback.
//! - [`chaos`]: what the `scripts/chaos-*` runs share (operator metrics,
//!   control-plane outages, ARP answers captured on the LAN).
//! - [`hollow`]: hollow nodes — Node objects kept Ready by the harness,
//!   whose speaker Pods it runs as processes on the LAN (50-speaker rows).
//! - [`jaeger`]: a real Jaeger receiving OTLP, its traces read back.
//! - [`lab`]: the real kube-apiserver started by `tests/lab up` — find it,
//!   run the version-matched kubectl against it, get a client. A test that
//!   needs the lab fails (never skips) when the lab is not up.
//! - [`netlab`]: throwaway network-namespace topologies (a bridge in a "lan"
//!   namespace, host namespaces on it) with unique names and cleanup on drop.
//! - [`routers`]: BIRD, FRR bgpd and GoBGP in a lab namespace, their RIBs read back.
//! - [`trend`]: whether a figure sampled over a soak grows (slope, quarter medians).
//! - [`unique_name`]: names that do not collide between parallel tests.

// Test support: failing loudly (panicking) is how a test reports a problem.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod argocd;
pub mod bulk;
pub mod capture;
pub mod chaos;
pub mod cluster;
pub mod hollow;
pub mod install;
pub mod jaeger;
pub mod lab;
pub mod neigh;
pub mod netlab;
pub mod observability;
pub mod peers;
pub mod routers;
pub mod trend;

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether a bench runs as a smoke test (`BARELB_BENCH_SMOKE=1`: smallest
/// sizes, debug build), and its first argument as a count, else `default`.
pub fn bench_args(default: usize) -> (bool, usize) {
    let smoke = std::env::var("BARELB_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default);
    (smoke, n)
}

/// A DNS-label-safe name, unique across parallel tests and test processes:
/// `PREFIX-<pid>-<counter>-<nanos>`.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{:x}-{n:x}-{:x}",
        std::process::id(),
        nanos % 0xfffff
    )
}

/// The last `n` lines of the log file at `path` (empty when unreadable),
/// for a failing test's message.
pub fn log_tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The path of a workspace binary, built on first use (`cargo build --bin`).
/// Integration tests of one package use another package's binaries this way
/// (Cargo's `CARGO_BIN_EXE_*` only covers the package's own).
pub fn binary(name: &str) -> std::path::PathBuf {
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<std::collections::BTreeSet<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut done = built.lock().unwrap_or_else(|p| p.into_inner());
    if !done.contains(name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(repo_root())
            .args(["build", "-q", "--bin", name])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
        done.insert(name.to_string());
    }
    repo_root().join("target/debug").join(name)
}

/// The repository's top directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The crate names in `package`'s normal (non-dev, non-build) dependency
/// graph, read from `cargo tree` offline: how a test proves a crate holds
/// no Kubernetes client, runtime or RPC.
pub fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "tree",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        names.len() > 10,
        "implausibly small tree for {package}: {names:?}"
    );
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_names_differ_and_are_dns_labels() {
        let a = super::unique_name("pool");
        let b = super::unique_name("pool");
        assert_ne!(a, b);
        assert!(a.len() <= 63);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
