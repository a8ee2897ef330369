//! What the lab benchmarks share: the operator process, its RSS and CPU,
//! kubectl, and waiting for Services to get addresses.
#![allow(dead_code)] // each benchmark uses its own part

use std::collections::BTreeSet;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::watcher;

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

/// Resident set size of `pid` in KiB (0 if gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time `pid` has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on Linux (sysconf(_SC_CLK_TCK)).
    (ticks(11) + ticks(12)) / 100.0
}

pub fn run_kubectl(lab: &barelb_testsupport::lab::Lab, args: &[&str]) -> anyhow::Result<()> {
    let out = lab.kubectl(args);
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Waits (≤ 10 min) until `n` Services named `PREFIX-…` have an address.
/// The label a benchmark's Services carry: the prefix of their names.
pub const BENCH_LABEL: &str = "barelb-bench";

/// Waits until `n` Services labelled `BENCH_LABEL=prefix` have an ingress
/// address. One list and then a watch: polling lists of thousands of
/// Services would load the apiserver (and this process, on the same cores)
/// far more than the operator being measured.
pub async fn wait_allocated(api: &Api<Service>, prefix: &str, n: usize) -> anyhow::Result<()> {
    let config = watcher::Config::default().labels(&format!("{BENCH_LABEL}={prefix}"));
    let stream = watcher(api.clone(), config);
    let mut stream = std::pin::pin!(stream);
    let mut done: BTreeSet<String> = BTreeSet::new();
    let deadline = tokio::time::sleep(Duration::from_secs(600));
    let mut deadline = std::pin::pin!(deadline);
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            () = &mut deadline => bail!("{} of {n} {prefix}-* Services allocated", done.len()),
        };
        let Some(ev) = ev else {
            bail!("the watch of {prefix}-* Services ended");
        };
        match ev? {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                if has_ingress(&s) {
                    done.insert(name);
                } else {
                    done.remove(&name);
                }
            }
            watcher::Event::Delete(s) => {
                done.remove(s.metadata.name.as_deref().unwrap_or(""));
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
        if done.len() >= n {
            return Ok(());
        }
    }
}

fn has_ingress(s: &Service) -> bool {
    s.status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}
