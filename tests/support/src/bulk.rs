//! Services by the thousand, through kube-rs, for the benchmarks: made
//! CONCURRENCY at a time, watched until addressed (one list, then a watch),
//! their addresses read, and process figures (RSS, CPU) of what serves them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

/// Requests in flight, like a controller's client.
pub const CONCURRENCY: usize = 32;

/// The label a benchmark's Services carry: the prefix of their names.
pub const BENCH_LABEL: &str = "barelb-bench";

/// Runs `f(i)` for every `i` in `0..n`, CONCURRENCY at a time; the first
/// error, once all have run.
pub async fn each<F, Fut>(n: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    futures::stream::iter(0..n)
        .map(f)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<anyhow::Result<()>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}

/// What a benchmark Service asks for.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// `spec.loadBalancerClass` (None: the cluster's default implementation).
    pub class: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.selector` as `app=VALUE` (None: no endpoints).
    pub app: Option<String>,
    /// Left out of kube-proxy (the `service-proxy-name` label): rows that
    /// measure a controller need no data path, and programming thousands of
    /// Services' rules on every node would share the cores with it.
    pub unproxied: bool,
}

/// Creates Services `PREFIX-0` … `PREFIX-(n-1)`, labelled `BENCH_LABEL=PREFIX`.
pub async fn create(api: &Api<Service>, prefix: &str, n: usize, spec: &Spec) -> anyhow::Result<()> {
    each(n, |i| async move {
        create_one(api, &format!("{prefix}-{i}"), prefix, spec).await
    })
    .await
}

/// Creates one Service `name` labelled `BENCH_LABEL=prefix`.
pub async fn create_one(
    api: &Api<Service>,
    name: &str,
    prefix: &str,
    spec: &Spec,
) -> anyhow::Result<()> {
    let mut s = json!({
        "metadata": {"name": name, "labels": {BENCH_LABEL: prefix}, "annotations": spec.annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8080}],
                 "allocateLoadBalancerNodePorts": false},
    });
    if let Some(class) = &spec.class {
        s["spec"]["loadBalancerClass"] = json!(class);
    }
    if let Some(app) = &spec.app {
        s["spec"]["selector"] = json!({"app": app});
    }
    if spec.unproxied {
        s["metadata"]["labels"]["service.kubernetes.io/service-proxy-name"] = json!("none");
    }
    api.create(&PostParams::default(), &serde_json::from_value(s)?)
        .await?;
    Ok(())
}

/// Deletes Services `PREFIX-0` … `PREFIX-(n-1)`.
pub async fn delete(api: &Api<Service>, prefix: &str, n: usize) -> anyhow::Result<()> {
    each(n, |i| async move {
        api.delete(&format!("{prefix}-{i}"), &DeleteParams::default())
            .await?;
        Ok(())
    })
    .await
}

/// Patches `PREFIX-i`'s status with an address, as an allocator writes it:
/// the plain client the benchmarks set a controller beside.
pub async fn patch_status(api: &Api<Service>, prefix: &str, i: usize) -> anyhow::Result<()> {
    let name = format!("{prefix}-{i}");
    let pp = PatchParams::apply("bench-raw").force();
    let ip = format!("198.19.{}.{}", i / 250, i % 250 + 1);
    let st = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                    "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}});
    api.patch_status(&name, &pp, &Patch::Apply(st)).await?;
    Ok(())
}

/// Times a plain client patching the status of `PREFIX-0…n-1`.
pub async fn plain_patches(api: &Api<Service>, prefix: &str, n: usize) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    each(n, |i| async move { patch_status(api, prefix, i).await }).await?;
    Ok(t0.elapsed())
}

/// Waits (≤ `within`) until `n` Services labelled `BENCH_LABEL=prefix` have
/// an ingress address.
pub async fn wait_allocated(
    api: &Api<Service>,
    prefix: &str,
    n: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let config = watcher::Config::default().labels(&format!("{BENCH_LABEL}={prefix}"));
    let done = |s: &Service| ingress(s).is_some();
    let name = |s: &Service| s.metadata.name.clone();
    wait_for(api, config, n, within, name, done)
        .await
        .map_err(|e| anyhow::anyhow!("{prefix}-* Services allocated: {e}"))
}

/// Waits until `n` Services named `prefix-*` in the namespace of `api` have
/// a ready endpoint in an EndpointSlice (the endpointslice controller
/// writes them at kube-controller-manager's client rate).
pub async fn wait_endpoints(
    api: &Api<EndpointSlice>,
    prefix: &str,
    n: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let named = format!("{prefix}-");
    let service = |s: &EndpointSlice| {
        let name = s
            .metadata
            .labels
            .as_ref()?
            .get("kubernetes.io/service-name")?;
        name.starts_with(&named).then(|| name.clone())
    };
    let ready = |s: &EndpointSlice| {
        s.endpoints
            .iter()
            .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
    };
    wait_for(api, watcher::Config::default(), n, within, service, ready)
        .await
        .map_err(|e| anyhow::anyhow!("{prefix}-* Services with a ready endpoint: {e}"))
}

/// Watches `api` until `n` distinct keys (`key` of an object; None: not
/// counted) have an object for which `done` holds. One list and then a
/// watch: polling lists of thousands of objects would load the apiserver
/// (and this process, on the same cores) far more than the controller
/// being measured.
async fn wait_for<K>(
    api: &Api<K>,
    config: watcher::Config,
    n: usize,
    within: Duration,
    key: impl Fn(&K) -> Option<String>,
    done: impl Fn(&K) -> bool,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let stream = watcher(api.clone(), config);
    let mut stream = std::pin::pin!(stream);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let deadline = tokio::time::sleep(within);
    let mut deadline = std::pin::pin!(deadline);
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            () = &mut deadline => bail!("{} of {n} within {within:?}", seen.len()),
        };
        let Some(ev) = ev else {
            bail!("the watch ended");
        };
        match ev? {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                if let Some(k) = key(&o) {
                    if done(&o) {
                        seen.insert(k);
                    } else {
                        seen.remove(&k);
                    }
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(k) = key(&o) {
                    seen.remove(&k);
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
        if seen.len() >= n {
            return Ok(());
        }
    }
}

/// The Service's first ingress address.
pub fn ingress(s: &Service) -> Option<String> {
    s.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .ip
        .clone()
}

/// Name → first ingress address of every Service labelled `BENCH_LABEL=prefix`
/// (those without one are left out).
pub async fn addresses(
    api: &Api<Service>,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let lp = ListParams::default().labels(&format!("{BENCH_LABEL}={prefix}"));
    Ok(api
        .list(&lp)
        .await?
        .items
        .iter()
        .filter_map(|s| Some((s.metadata.name.clone()?, ingress(s)?)))
        .collect())
}

/// PIDs of the processes whose comm is `comm`.
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
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
