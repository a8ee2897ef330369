//! `scripts/chaos-partition [ROUNDS] [SECONDS]`: barelb installed with Helm
//! on the 3-node lab cluster, an L2 Service polled every 10 ms by a client
//! on the LAN. Each round cuts the node announcing it from the control plane
//! — the apiserver and every operator Pod — but not from the LAN, for
//! SECONDS (60; 15 in a smoke run), then heals the cut. tshark on the LAN
//! bridge records every ARP packet while the client asks for the address by
//! broadcast every 100 ms, so every node that claims it answers.
//!
//! Per round it prints how often the answering node changed during the cut
//! (once: the operator moves the address, the cut speaker yields to the new
//! owner's announcement) and after healing (as often as the Service's
//! Announced condition says the plan moved it), the longest time two nodes
//! answered at once (at most one announcement interval, 500 ms), and the
//! requests lost. Fails on any of those out of bounds.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)] // a chaos binary

use std::time::{Duration, Instant};

use barelb_testsupport::chaos::{
    ArpCapture, answer_rounds, dump_logs, longer_than_one_interval, longest_double_answer, mac_of,
    node_iptables, operator_pods, owners, unix_seconds, wait_driving,
};
use barelb_testsupport::cluster::{Cluster, Fault, cluster, node_index};
use barelb_testsupport::install::*;

/// The node (`node-I`'s I) the Service's Announced condition names.
fn announcer(c: &Cluster, ns: &str) -> Option<usize> {
    let msg = announced(c, ns, "web");
    let word = msg.split_whitespace().find(|w| w.starts_with("node-"))?;
    word.trim_start_matches("node-")
        .trim_end_matches(|ch: char| !ch.is_ascii_digit())
        .parse()
        .ok()
}

fn wait_announcer(c: &Cluster, ns: &str, other_than: usize, within: Duration) -> usize {
    let t = Instant::now();
    loop {
        if let Some(n) = announcer(c, ns).filter(|n| *n != other_than) {
            return n;
        }
        assert!(
            t.elapsed() < within,
            "web still announced by node-{other_than} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each operator Pod's address and node.
fn operator_ips(c: &Cluster) -> Vec<(String, String)> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    operator_pods(c)
        .expect("list the operator Pods")
        .iter()
        .map(|p| (text(&p["status"]["podIP"]), text(&p["spec"]["nodeName"])))
        .collect()
}

/// No operator Pod on node `i` (cordoned, its operator Pods deleted and
/// replaced elsewhere): the cut must separate its speaker from the operator,
/// not the operator from the apiserver.
fn keep_operators_off(c: &Cluster, i: usize) {
    let node = format!("node-{i}");
    ok(c.lab.kubectl(&["cordon", &node]), "kubectl cordon");
    for _ in 0..2 {
        let on = operator_ips(c).into_iter().any(|(_, n)| n == node);
        if !on {
            break;
        }
        let sel = format!("spec.nodeName={node}");
        ok(
            c.lab.kubectl(&[
                "-n",
                NS,
                "delete",
                "pod",
                "-l",
                "app.kubernetes.io/name=barelb-operator",
                "--field-selector",
                &sel,
            ]),
            "kubectl delete pod",
        );
        wait_ready(c, 2);
    }
    ok(c.lab.kubectl(&["uncordon", &node]), "kubectl uncordon");
}

/// Node `i` cut from the apiserver (`tests/lab node I partition`) and from
/// the operator Pods' addresses, both ways, until dropped.
struct Cut {
    ns: String,
    rules: Vec<Vec<String>>,
    _partition: barelb_testsupport::cluster::Injected,
}

impl Cut {
    fn new(c: &Cluster, i: usize) -> Cut {
        let partition = c.inject(i, Fault::Partition);
        let ns = c.node_ns(i);
        let mut rules = Vec::new();
        for (ip, _) in operator_ips(c) {
            for (chain, dir) in [
                ("INPUT", "-s"),
                ("OUTPUT", "-d"),
                ("FORWARD", "-s"),
                ("FORWARD", "-d"),
            ] {
                rules.push(vec![
                    chain.into(),
                    dir.into(),
                    ip.clone(),
                    "-j".into(),
                    "DROP".into(),
                ]);
            }
        }
        for r in &rules {
            node_iptables(&ns, "-I", r);
        }
        Cut {
            ns,
            rules,
            _partition: partition,
        }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for r in &self.rules {
            node_iptables(&self.ns, "-D", r);
        }
    }
}

fn main() {
    let smoke = std::env::var("BARELB_BENCH_SMOKE").is_ok_and(|v| v == "1");
    let arg = |n: usize| std::env::args().nth(n).and_then(|a| a.parse::<u64>().ok());
    let rounds = arg(1).unwrap_or(if smoke { 1 } else { 3 });
    let cut_for = Duration::from_secs(arg(2).unwrap_or(if smoke { 15 } else { 60 }));
    let c = cluster("chaos_partition");
    load_images_built(if smoke { &["--debug"] } else { &[] });
    let installed = install_with_helm(&c);
    let w = workload(&c, false);
    let client = c.client(106);
    let vip = address(&c, &w.ns, "web");
    let url = format!("http://{vip}/");
    answers(&client, &url);
    wait_driving(&c, Duration::from_secs(60));
    let asker = mac_of(&client.ns);
    println!(
        "{:>5} {:>8} {:>7} {:>10} {:>10} {:>12} {:>11} {:>10} {:>10}",
        "round",
        "cut node",
        "seconds",
        "moves cut",
        "moves heal",
        "plan moves",
        "2 answer ms cut/heal",
        "lost",
        "gap ms"
    );
    let mut failed = Vec::new();
    for round in 1..=rounds {
        let owner = announcer(&c, &w.ns).expect("web is announced");
        keep_operators_off(&c, owner);
        wait_driving(&c, Duration::from_secs(60));
        let leader = leader_pod(&c).as_ref().and_then(node_index);
        let capture = ArpCapture::start("lc-lan", &client.ns, std::slice::from_ref(&vip));
        let poller = client.poll(std::slice::from_ref(&url), 10);
        std::thread::sleep(Duration::from_secs(2));
        let cut = Cut::new(&c, owner);
        let moved_to = wait_announcer(&c, &w.ns, owner, Duration::from_secs(60));
        std::thread::sleep(cut_for);
        let healed_at = unix_seconds();
        drop(cut);
        // The speaker reconnects and the Node turns Ready again: the plan may
        // move the address back (more than once); every change is counted.
        let mut plan_moves = 0;
        let mut last = Some(moved_to);
        let sampling = Instant::now();
        while sampling.elapsed() < Duration::from_secs(25) {
            let now = announcer(&c, &w.ns);
            if now.is_some() && now != last {
                plan_moves += 1;
                last = now;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        wait_driving(&c, Duration::from_secs(120));
        let p = poller.stop();
        let packets = capture.stop();
        let rounds_seen = answer_rounds(&packets, &vip, &asker);
        let (cut_rounds, heal_rounds): (Vec<_>, Vec<_>) = rounds_seen
            .iter()
            .cloned()
            .partition(|(at, _)| *at < healed_at);
        let moves_cut = owners(&cut_rounds).len().saturating_sub(1);
        // The first owner after healing is the cut round's last one.
        let mut heal_seq = owners(&cut_rounds)
            .last()
            .cloned()
            .into_iter()
            .collect::<Vec<_>>();
        heal_seq.extend(owners(&heal_rounds));
        heal_seq.dedup();
        let moves_heal = heal_seq.len().saturating_sub(1);
        let (double_cut, _) = longest_double_answer(&cut_rounds);
        for (at, macs) in rounds_seen.iter().filter(|(_, m)| m.len() > 1) {
            eprintln!("round {round}: two answered at {at:.3}: {macs:?}");
        }
        let (double_heal, _) = longest_double_answer(&heal_rounds);
        println!(
            "{round:>5} {:>8} {:>7} {moves_cut:>10} {moves_heal:>10} {plan_moves:>12} {:>5.0}/{:<5.0} {:>4}/{:<5} {:>10}{}",
            format!("node-{owner}"),
            cut_for.as_secs(),
            double_cut * 1000.0,
            double_heal * 1000.0,
            p[0].failed,
            p[0].requests,
            p[0].longest_gap_ms,
            if leader == Some(owner) {
                "  (leader's node)"
            } else {
                ""
            }
        );
        if rounds_seen.len() < 10 {
            failed.push(format!(
                "round {round}: only {} ARP rounds captured",
                rounds_seen.len()
            ));
        }
        if moves_cut != 1 {
            failed.push(format!(
                "round {round}: the answering node changed {moves_cut} times during the cut"
            ));
        }
        if moves_heal != plan_moves {
            failed.push(format!(
                "round {round}: {moves_heal} changes after healing, the plan made {plan_moves}"
            ));
        }
        for (phase, double) in [("cut", double_cut), ("healing", double_heal)] {
            if longer_than_one_interval(double) {
                failed.push(format!(
                    "round {round}: two nodes answered for {double:.3} s around the {phase} (longer than one announcement interval)"
                ));
            }
        }
    }
    if !failed.is_empty() || std::env::var("BARELB_CHAOS_LOGS").is_ok() {
        dump_logs(&c);
    }
    drop(w);
    drop(installed);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
