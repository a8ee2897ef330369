//! `scripts/bench-tracing [N]`: what tracing costs the operator and the
//! speakers. barelb installed with Helm on the 3-node lab cluster, N
//! IPv6 Services (default 300) allocated and announced; the operator
//! replicas' and the speakers' CPU seconds and RSS read from /proc once
//! every Service is announced. Twice, each on a fresh install: tracing off,
//! then every trace sampled and exported over OTLP to a real Jaeger.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)] // a benchmark binary

use std::time::{Duration, Instant};

use barelb_testsupport::bulk;
use barelb_testsupport::cluster::{Cluster, cluster, cluster_dir};
use barelb_testsupport::install::*;
use barelb_testsupport::jaeger::Jaeger;
use barelb_testsupport::unique_name;

/// Summed CPU seconds and RSS (MiB) of every process named `comm`.
fn usage(comm: &str) -> (usize, f64, f64) {
    let pids = bulk::pids_named(comm);
    let cpu = pids.iter().map(|p| bulk::cpu_seconds(*p)).sum();
    let rss = pids.iter().map(|p| bulk::rss_kib(*p) as f64 / 1024.0).sum();
    (pids.len(), cpu, rss)
}

/// N IPv6 Services of the workload's backend from a /112 pool of the lab
/// LAN's prefix; waits until every one is announced. Returns the time and
/// the pool (delete it after the workload's namespace).
fn services(c: &Cluster, w: &Workload, n: usize) -> (Duration, String) {
    let pool = format!("{}-many", w.ns);
    apply(
        c,
        &format!(
            "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: {pool}}}\n\
             spec: {{addresses: [\"2001:db8:19:0:1::/112\"], autoAssign: false, announce: {{mode: L2}}}}\n"
        ),
    );
    // Claims on it are admitted once the operator has seen it.
    wait_status(c, "addresspool", &pool, "Ready", |st| {
        st["conditions"][0]["status"] == "True"
    });
    std::thread::sleep(Duration::from_secs(1));
    let mut yaml = String::new();
    for i in 0..n {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: many-{i}, namespace: {ns}, annotations: {{barelb.io/pool: {pool}}}}}\n\
             spec: {{type: LoadBalancer, ipFamilies: [IPv6], allocateLoadBalancerNodePorts: false, selector: {{app: backend}}, ports: [{{port: 80, targetPort: 8080}}]}}\n",
            ns = w.ns
        );
    }
    let started = Instant::now();
    apply(c, &yaml);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = c.json(&["-n", &w.ns, "get", "services"]);
        let announced = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("many-"))
            })
            .filter(|s| {
                s["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "barelb.io/Announced" && c["status"] == "True")
            })
            .count();
        if announced == n {
            return (started.elapsed(), pool);
        }
        assert!(Instant::now() < deadline, "{announced} of {n} announced");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() {
    let (smoke, n) = barelb_testsupport::bench_args(300);
    let c = cluster("bench_tracing");
    load_images_built(if smoke { &["--debug"] } else { &[] });
    let jaeger = Jaeger::start(
        cluster_dir().join(unique_name("jaeger")),
        "198.19.0.1".parse().unwrap(),
    );
    let endpoint = format!("tracing.otlpEndpoint={}", jaeger.otlp);
    let mut rows = Vec::new();
    for (mode, sets) in [("off", vec![]), ("on", vec![endpoint.as_str()])] {
        let installed = install_with_helm_sets(&c, &sets);
        let w = workload(&c, false);
        let (took, pool) = services(&c, &w, n);
        // The last spans' export, then the counters.
        std::thread::sleep(Duration::from_secs(6));
        let speakers = usage("barelb-speaker");
        let operators = usage("barelb-operator");
        assert_eq!(speakers.0, c.nodes, "speaker processes");
        rows.push((mode, took, speakers, operators));
        drop(w);
        let _ = c
            .lab
            .kubectl(&["delete", "addresspool", &pool, "--timeout=60s"]);
        drop(installed);
    }
    if jaeger.find("barelb-speaker", "announce", &[]).is_empty() {
        panic!(
            "tracing on, yet Jaeger holds no speaker span: {}",
            jaeger.log_tail()
        );
    }
    println!(
        "{:<8} {:>12} {:>16} {:>16} {:>16} {:>16}",
        "tracing",
        "announced s",
        "speakers CPU s",
        "speakers RSS MiB",
        "operators CPU s",
        "operators RSS MiB"
    );
    for (mode, took, s, o) in &rows {
        println!(
            "{mode:<8} {:>12.2} {:>16.2} {:>16.1} {:>16.2} {:>16.1}",
            took.as_secs_f64(),
            s.1,
            s.2,
            o.1,
            o.2
        );
    }
    let (off, on) = (&rows[0], &rows[1]);
    println!(
        "N={n} Services, {} nodes: on/off speakers CPU {:.2}, RSS {:.2}; operators CPU {:.2}, RSS {:.2}",
        c.nodes,
        on.2.1 / off.2.1,
        on.2.2 / off.2.2,
        on.3.1 / off.3.1,
        on.3.2 / off.3.2
    );
}
