//! What the lab benchmarks share: the operator process, its RSS and CPU,
//! kubectl, and waiting for Services to get addresses.
#![allow(dead_code, unused_imports)] // each benchmark uses its own part

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;
use barelb_testsupport::bulk;
pub use barelb_testsupport::bulk::{BENCH_LABEL, cpu_seconds, rss_kib};
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;

/// The benchmark's two numeric arguments, each defaulting when absent.
pub fn two_counts(defaults: (usize, usize)) -> (usize, usize) {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    (
        args.first().copied().unwrap_or(defaults.0),
        args.get(1).copied().unwrap_or(defaults.1),
    )
}

/// A benchmarked operator process, killed on drop.
pub struct Operator(pub Child);

impl Operator {
    /// Stops it the way a rollout does (SIGTERM: it hands its Lease over,
    /// so the next operator leads at once), killing it after 5 s.
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run_kubectl(lab: &barelb_testsupport::lab::Lab, args: &[&str]) -> anyhow::Result<()> {
    let out = lab.kubectl(args);
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Waits (≤ 10 min) until `n` Services labelled `BENCH_LABEL=prefix` have
/// an address.
pub async fn wait_allocated(api: &Api<Service>, prefix: &str, n: usize) -> anyhow::Result<()> {
    bulk::wait_allocated(api, prefix, n, Duration::from_secs(600)).await
}
