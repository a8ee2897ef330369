//! `scripts/e2e-upstream [l2|bgp]`: Kubernetes' own LoadBalancer e2e specs
//! (`[Feature:LoadBalancer]` of test/e2e/network, the lab's v1.34.4) against
//! the lab cluster with barelb installed by its Helm chart and one
//! auto-assign AddressPool, as a platform team would set it up for
//! class-less Services: on the lab LAN in layer 2, or (`bgp`) announced to a
//! BIRD router on the LAN that the client routes through.
//!
//! `e2e.test` runs in a namespace on the LAN the addresses are announced on,
//! at 198.51.100.10 — outside the nodes' /16, as the source-address specs
//! require of a client (`tests/lib/e2e.sh`, `e2e_client_up`). Specs listed for the mode in `tests/e2e-upstream/not-applicable.txt`
//! are skipped (each with the reason taken from its code); nothing else is.
//! Prints every spec's outcome and the counts; fails unless every spec run
//! passed. `BARELB_E2E_FOCUS` (a regex) picks other specs; in a smoke run
//! (`BARELB_BENCH_SMOKE=1`, how `scripts/test` runs it) only [`SMOKE`].
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)] // a test-tooling binary

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use barelb_testsupport::cluster::cluster;
use barelb_testsupport::install::*;
use barelb_testsupport::repo_root;

/// The specs `scripts/test` runs (a few minutes): the cleanup finalizer,
/// and externalTrafficPolicy Local's source address and health-check node
/// port, from outside and from Pods.
const SMOKE: &str = r"\[Feature:LoadBalancer\].*cleanup finalizer|ExternalTrafficPolicy: Local \[Feature:LoadBalancer\].*(should work for type=LoadBalancer|should work from pods)";

/// Layer 2: addresses on the LAN, answered by one node each.
const L2_POOL: &str = "apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {name: e2e-upstream}\n\
                       spec: {addresses: [198.19.0.230-198.19.0.239], announce: {mode: L2}}\n";

/// BGP: addresses off the LAN, announced to a BIRD router on it
/// ([`ROUTER_HOST`], ECMP over the nodes), which the client routes through.
const BGP_RANGE: &str = "10.202.0.0/28";
const ROUTER_HOST: u8 = 4;
const ROUTER_ASN: u32 = 64501;
const NODE_ASN: u32 = 64500;

fn bgp_objects() -> String {
    format!(
        "apiVersion: barelb.io/v1alpha1\nkind: BGPPeer\nmetadata: {{name: e2e-upstream-router}}\n\
         spec: {{peerAddress: 198.19.0.{ROUTER_HOST}, peerASN: {ROUTER_ASN}, myASN: {NODE_ASN}, \
         holdTime: 9s, connectRetryTime: 1s}}\n---\n\
         apiVersion: barelb.io/v1alpha1\nkind: AddressPool\nmetadata: {{name: e2e-upstream}}\n\
         spec: {{addresses: [{BGP_RANGE}], announce: {{mode: BGP}}}}\n"
    )
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "l2".into());
    assert!(["l2", "bgp"].contains(&mode.as_str()), "modes: l2, bgp");
    // In the outside client's namespace (scripts/e2e-upstream makes it).
    let netns =
        std::env::var("BARELB_E2E_NETNS").expect("BARELB_E2E_NETNS: run scripts/e2e-upstream");
    let root = repo_root();
    let e2e = root.join("target/e2e");
    let c = cluster("e2e-upstream");
    let started = Instant::now();
    let installed = install_with_helm(&c);
    let _router = if mode == "bgp" {
        let router = c.router(ROUTER_HOST, ROUTER_ASN, NODE_ASN);
        apply(&c, &bgp_objects());
        route_through(&netns, &router);
        Some(router)
    } else {
        apply(&c, L2_POOL);
        None
    };
    eprintln!(
        "e2e-upstream: barelb installed in {} s",
        started.elapsed().as_secs()
    );

    let smoke = std::env::var("BARELB_BENCH_SMOKE").as_deref() == Ok("1");
    let focus = std::env::var("BARELB_E2E_FOCUS").unwrap_or_else(|_| {
        if smoke {
            SMOKE.into()
        } else {
            r"\[Feature:LoadBalancer\]".into()
        }
    });
    let skip = skip_regex(&root.join("tests/e2e-upstream/not-applicable.txt"), &mode);
    let report = e2e.join(format!("report-{mode}"));
    let _ = std::fs::remove_dir_all(&report);
    std::fs::create_dir_all(&report).unwrap();
    let log = std::fs::File::create(report.join("e2e.log")).unwrap();
    let kubeconfig = &c.lab.kubeconfig;
    let ran = Instant::now();
    let status = Command::new("ip")
        .args(["netns", "exec", &netns])
        .arg(e2e.join("network.test"))
        .args([
            &format!("--kubeconfig={}", kubeconfig.display()),
            "--provider=local",
            &format!("--kubectl-path={}", e2e.join("bin/kubectl").display()),
            "--disable-log-dump",
            // Not auto-detected (-1) for the specs that need several nodes.
            &format!("--num-nodes={}", c.nodes),
            &format!("--ginkgo.focus={focus}"),
            &format!("--ginkgo.skip={skip}"),
            &format!(
                "--ginkgo.json-report={}",
                report.join("report.json").display()
            ),
            &format!(
                "--ginkgo.junit-report={}",
                report.join("junit.xml").display()
            ),
            "--ginkgo.timeout=3h",
            "--ginkgo.v",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("run target/e2e/network.test (scripts/e2e-upstream builds it)");
    let outcomes = outcomes(&report.join("report.json"));
    println!("| spec | outcome | seconds |");
    println!("|---|---|---|");
    for o in &outcomes {
        println!("| {} | {} | {} |", o.name, o.state, o.seconds);
    }
    let count = |s: &str| outcomes.iter().filter(|o| o.state == s).count();
    // A spec that skips itself ("Requires at least 2 nodes") fails the run:
    // only the not-applicable list may skip one.
    let ok = |o: &&Outcome| ["passed", "not run"].contains(&o.state.as_str());
    let failed = outcomes.iter().filter(|o| !ok(o)).count();
    println!(
        "\ne2e-upstream ({mode}, Kubernetes v1.34.4, {} nodes): {} passed, {failed} failed, {} of them skipped by the spec itself, {} not run (not applicable or not in focus), in {} s; report and log in {}",
        c.nodes,
        count("passed"),
        count("skipped"),
        count("not run"),
        ran.elapsed().as_secs(),
        report.display()
    );
    for o in outcomes.iter().filter(|o| !ok(o)) {
        println!("FAILED: {}\n  {}", o.name, o.failure);
    }
    drop(installed);
    assert!(
        outcomes.iter().any(|o| o.state == "passed"),
        "no spec passed (focus {focus:?}); see {}",
        report.join("e2e.log").display()
    );
    if failed > 0 || !status.success() {
        panic!("e2e-upstream: {failed} spec(s) failed (e2e.test exit {status})");
    }
}

/// The client reaches the BGP range through the router; the router sends
/// what is for the client's subnet out on the LAN, as the nodes do. Its
/// ECMP hashes source and destination addresses (Linux's default, and
/// per-destination load sharing as routers commonly do).
fn route_through(client_ns: &str, router: &barelb_testsupport::cluster::LanRouter) {
    for (ns, args) in [
        (
            client_ns,
            vec!["route", "replace", BGP_RANGE, "via", &router.ip],
        ),
        (
            router.ns.as_str(),
            vec!["route", "replace", "198.51.100.0/24", "dev", "eth0"],
        ),
    ] {
        let out = Command::new("ip")
            .arg("-n")
            .arg(ns)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip -n {ns} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

struct Outcome {
    name: String,
    state: String,
    seconds: u64,
    failure: String,
}

/// The specs (`It`s) of Ginkgo's JSON report.
fn outcomes(path: &Path) -> Vec<Outcome> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (did e2e.test start?)", path.display()));
    let suites: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for suite in suites.as_array().into_iter().flatten() {
        for spec in suite["SpecReports"].as_array().into_iter().flatten() {
            if spec["LeafNodeType"] != "It" {
                continue;
            }
            let mut name: Vec<&str> = spec["ContainerHierarchyTexts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str())
                .collect();
            name.push(spec["LeafNodeText"].as_str().unwrap_or(""));
            let name = name.join(" ");
            // The binary holds the whole network suite: only its
            // LoadBalancer specs are the subject.
            if !name.contains("[Feature:LoadBalancer]") {
                continue;
            }
            let mut state = spec["State"].as_str().unwrap_or("?").to_string();
            if state == "skipped" && spec["RunTime"].as_u64() == Some(0) {
                // Filtered out by focus or the not-applicable list, never started.
                state = "not run".into();
            }
            out.push(Outcome {
                name,
                state,
                seconds: spec["RunTime"].as_u64().unwrap_or(0) / 1_000_000_000,
                failure: spec["Failure"]["Message"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            });
        }
    }
    out
}

/// The Ginkgo skip regex of the specs listed not applicable in `mode`
/// (`MODE | spec text | reason` per line; `#` comments).
fn skip_regex(list: &Path, mode: &str) -> String {
    let text = std::fs::read_to_string(list).unwrap();
    let specs: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split('|').map(str::trim);
            let (m, spec, reason) = (f.next()?, f.next()?, f.next()?);
            assert!(!reason.is_empty(), "{}: no reason in {l:?}", list.display());
            (m == mode).then(|| escape(spec))
        })
        .collect();
    if specs.is_empty() {
        // Matches no spec name.
        return "^$".into();
    }
    format!("({})", specs.join("|"))
}

fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}
