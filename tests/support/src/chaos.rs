//! What the `scripts/chaos-*` runs on the lab cluster share: barelb's
//! operator read from its own metrics, the control plane stopped and
//! started, and who answers ARP for an address, captured on the LAN.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::capture::Capture;
use crate::cluster::Cluster;
use crate::install::NS;

/// The operator's Pods (`kubectl get pods -l …`), as JSON objects; None
/// while kubectl cannot list them.
pub fn operator_pods(c: &Cluster) -> Option<Vec<serde_json::Value>> {
    let out = c.lab.kubectl(&[
        "-n",
        NS,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=barelb-operator",
        "-o",
        "json",
    ]);
    if !out.status.success() {
        return None;
    }
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    list["items"].as_array().cloned()
}

/// Now, in seconds since the epoch (tshark's and the poller's clock).
pub fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The metrics of every operator Pod (scraped from the host, which reaches
/// Pod addresses), or None while any cannot be read.
pub fn operator_metrics(c: &Cluster) -> Option<Vec<String>> {
    operator_pods(c)?
        .iter()
        // A Pod not yet given an address has no metrics to read yet.
        .filter_map(|pod| pod["status"]["podIP"].as_str())
        .map(|ip| {
            let url = format!("http://{ip}:9464/metrics");
            let out = Command::new("curl")
                .args(["-sf", "--max-time", "2", &url])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).to_string())
        })
        .collect()
}

/// The value of the first series of metric `name` (labels ignored).
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until one operator leads with every node's speaker connected;
/// returns how long that took. Panics after `within`.
pub fn wait_driving(c: &Cluster, within: Duration) -> Duration {
    wait_leading_with(c, c.nodes, within)
}

/// Waits until one operator leads with `speakers` speakers connected;
/// returns how long that took. Panics after `within`.
pub fn wait_leading_with(c: &Cluster, speakers: usize, within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let driving = operator_metrics(c).is_some_and(|all| {
            all.iter().any(|m| {
                metric_value(m, "barelb_leader") == Some(1.0)
                    && metric_value(m, "barelb_control_speakers_connected") == Some(speakers as f64)
            })
        });
        if driving {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "no operator led with {speakers} speakers connected within {within:?}",
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One ARP packet seen on the LAN.
#[derive(Clone, Debug, PartialEq)]
pub struct ArpPacket {
    /// Seconds since the epoch.
    pub at: f64,
    /// 1 request, 2 reply.
    pub opcode: u8,
    pub sender_mac: String,
    pub sender_ip: String,
    pub target_ip: String,
}

/// Every ARP packet on the cluster's LAN bridge (tshark in the LAN
/// namespace), while a client asks for each watched address every 100 ms
/// by broadcast, so that every node claiming one answers. Stopped by PID on
/// [`ArpCapture::stop`] or drop.
#[derive(Debug)]
pub struct ArpCapture {
    tshark: Option<Capture>,
    /// Set to stop the asking thread.
    stop: Arc<AtomicBool>,
    asker: Option<std::thread::JoinHandle<()>>,
}

impl ArpCapture {
    /// Captures on `lan_ns`'s `br0` while `client_ns` asks for each of `vips`.
    pub fn start(lan_ns: &str, client_ns: &str, vips: &[String]) -> ArpCapture {
        let fields = [
            "frame.time_epoch",
            "arp.opcode",
            "arp.src.hw_mac",
            "arp.src.proto_ipv4",
            "arp.dst.proto_ipv4",
        ];
        let tshark = Capture::start(lan_ns, "br0", "arp", &fields).expect("start tshark");
        let stop = Arc::new(AtomicBool::new(false));
        let asker = std::thread::spawn({
            let (stop, ns, vips) = (Arc::clone(&stop), client_ns.to_string(), vips.to_vec());
            move || ask_every_100ms(&stop, &ns, &vips)
        });
        ArpCapture {
            tshark: Some(tshark),
            stop,
            asker: Some(asker),
        }
    }

    /// Stops both and returns what was captured.
    pub fn stop(mut self) -> Vec<ArpPacket> {
        self.stop_asking();
        let rows = self.tshark.take().map(Capture::stop).unwrap_or_default();
        rows.iter().filter_map(|r| parse_arp_row(r)).collect()
    }

    fn stop_asking(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.asker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ArpCapture {
    fn drop(&mut self) {
        self.stop_asking(); // the Capture stops itself when dropped
    }
}

/// One broadcast ARP request for each of `vips` from `ns` every 100 ms
/// until `stop` (iputils arping takes whole seconds only, so one arping per
/// request, each waiting at most a second; finished ones are reaped as it
/// goes).
fn ask_every_100ms(stop: &AtomicBool, ns: &str, vips: &[String]) {
    let mut running: Vec<Child> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for vip in vips {
            if let Ok(child) = Command::new("ip")
                .args(["netns", "exec", ns, "arping", "-b", "-c", "1", "-w", "1"])
                .args(["-I", "eth0", vip])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                running.push(child);
            }
        }
        running.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        std::thread::sleep(Duration::from_millis(100));
    }
    for mut c in running {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Prints (stderr) what the speakers and operators logged about streams,
/// conflicts, yields and moves, with the kubelet's timestamps: a failed run
/// shows its own timeline.
pub fn dump_logs(c: &Cluster) {
    const KEYWORDS: [&str; 10] = [
        "conflict", "yield", "stream", "claim", "moved", "quiet", "announc", "answer", "acquired",
        "released",
    ];
    for app in ["barelb-speaker", "barelb-operator"] {
        let label = format!("app.kubernetes.io/name={app}");
        let logs = c.lab.kubectl(&[
            "-n",
            NS,
            "logs",
            "-l",
            &label,
            "--prefix",
            "--timestamps",
            "--tail=-1",
            "--max-log-requests=20",
        ]);
        for l in String::from_utf8_lossy(&logs.stdout).lines() {
            if KEYWORDS.iter().any(|k| l.contains(k)) {
                eprintln!("{l}");
            }
        }
    }
}

/// Inserts (`-I`) or deletes (`-D`) one iptables rule — its chain, match
/// and target — in a node's namespace.
pub fn node_iptables<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(ns: &str, op: &str, rule: &[S]) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "iptables", op])
        .args(rule)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iptables {op} {rule:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The MAC address of `eth0` in namespace `ns` (lower case, as tshark
/// prints it).
pub fn mac_of(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "eth0"])
        .output()
        .expect("ip link show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["address"].as_str().unwrap_or_default().to_lowercase()
}

fn parse_arp_row(f: &[String]) -> Option<ArpPacket> {
    if f.len() != 5 {
        return None;
    }
    Some(ArpPacket {
        at: f[0].parse().ok()?,
        opcode: f[1].parse().ok()?,
        sender_mac: f[2].to_lowercase(),
        sender_ip: f[3].to_string(),
        target_ip: f[4].to_string(),
    })
}

/// Who answered for `vip` in each round (from one request of `asker`'s to
/// the next): the distinct MACs of replies and announcements for it.
pub fn answer_rounds(
    packets: &[ArpPacket],
    vip: &str,
    asker: &str,
) -> Vec<(f64, BTreeSet<String>)> {
    let mut rounds: Vec<(f64, BTreeSet<String>)> = Vec::new();
    for p in packets {
        if p.opcode == 1 && p.target_ip == vip && p.sender_mac == asker {
            rounds.push((p.at, BTreeSet::new()));
        } else if p.sender_ip == vip
            && let Some((_, macs)) = rounds.last_mut()
        {
            macs.insert(p.sender_mac.clone());
        }
    }
    rounds
}

/// The longest run of consecutive rounds in which two or more MACs answered
/// for the address, in seconds (from the first such round's request to the
/// first round after the run), and how many rounds had two or more.
pub fn longest_double_answer(rounds: &[(f64, BTreeSet<String>)]) -> (f64, usize) {
    let mut longest = 0.0f64;
    let mut doubled = 0;
    let mut run_start: Option<f64> = None;
    for (at, macs) in rounds {
        if macs.len() > 1 {
            doubled += 1;
            run_start.get_or_insert(*at);
        } else if let Some(start) = run_start.take() {
            longest = longest.max(at - start);
        }
    }
    if let (Some(start), Some((last, _))) = (run_start, rounds.last()) {
        longest = longest.max(last - start);
    }
    (longest, doubled)
}

/// One announcement interval of the speaker (`--announce-interval-ms`).
const ANNOUNCE_INTERVAL: Duration = Duration::from_millis(500);
/// A double answer is measured in whole 100-ms rounds (from the first
/// doubled round's request to the next clean one's), which can overstate it
/// by a round and land a hair past a round's edge: 10 ms of slack for the
/// latter, none for the former.
const ROUND_SLACK: f64 = 0.010;

/// Whether two nodes answering for `seconds` (from [`longest_double_answer`])
/// is longer than one announcement interval: the bound every chaos run holds.
pub fn longer_than_one_interval(seconds: f64) -> bool {
    seconds > ANNOUNCE_INTERVAL.as_secs_f64() + ROUND_SLACK
}

/// Consecutive rounds a MAC must answer alone to count as the owner: while
/// two answer, a reply that lands after the next request is counted in the
/// next round, so one lone round proves nothing.
const SETTLED_ROUNDS: usize = 3;

/// The MACs that answered for the address, in the order they took over:
/// a MAC that answers alone for [`SETTLED_ROUNDS`] rounds in a row is the
/// owner; each change of owner starts a new entry.
pub fn owners(rounds: &[(f64, BTreeSet<String>)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(&String, usize)> = None;
    for (_, macs) in rounds {
        let sole = (macs.len() == 1).then(|| macs.iter().next()).flatten();
        run = match (sole, run) {
            (Some(mac), Some((prev, n))) if prev == mac => Some((mac, n + 1)),
            (Some(mac), _) => Some((mac, 1)),
            (None, _) => None,
        };
        if let Some((mac, n)) = run
            && n >= SETTLED_ROUNDS
            && out.last() != Some(mac)
        {
            out.push(mac.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(at: f64, opcode: u8, mac: &str, sip: &str, tip: &str) -> ArpPacket {
        ArpPacket {
            at,
            opcode,
            sender_mac: mac.into(),
            sender_ip: sip.into(),
            target_ip: tip.into(),
        }
    }

    #[test]
    fn rounds_double_answers_and_owners() {
        let (vip, c) = ("198.19.0.230", "cc");
        let ask = |at| pkt(at, 1, c, "198.19.0.104", vip);
        let packets = vec![
            ask(0.0),
            pkt(0.01, 2, "aa", vip, "198.19.0.104"),
            ask(0.1),
            pkt(0.11, 2, "aa", vip, "198.19.0.104"),
            // bb takes over (gratuitous), aa still answers: two rounds doubled.
            pkt(0.15, 1, "bb", vip, vip),
            ask(0.2),
            pkt(0.21, 2, "aa", vip, "198.19.0.104"),
            pkt(0.22, 2, "bb", vip, "198.19.0.104"),
            ask(0.3),
            pkt(0.31, 2, "bb", vip, "198.19.0.104"),
            // Another address's packets are not counted.
            pkt(0.32, 2, "dd", "198.19.0.231", "198.19.0.104"),
            ask(0.4),
            pkt(0.41, 2, "bb", vip, "198.19.0.104"),
        ];
        let rounds = answer_rounds(&packets, vip, c);
        assert_eq!(rounds.len(), 5);
        let (longest, doubled) = longest_double_answer(&rounds);
        assert_eq!(doubled, 2);
        assert!((longest - 0.2).abs() < 1e-9, "{longest}");
        // Neither answered alone for three rounds in a row here.
        assert!(owners(&rounds).is_empty());
        // A lone round amid double answers is no change of owner.
        let settled =
            |mac: &str, n: usize| std::iter::repeat_n((0.0, BTreeSet::from([mac.to_string()])), n);
        let both = (0.0, BTreeSet::from(["aa".to_string(), "bb".to_string()]));
        let mut seq: Vec<_> = settled("aa", 5).collect();
        seq.extend([both.clone()]);
        seq.extend(settled("bb", 1));
        seq.extend([both]);
        seq.extend(settled("aa", 1));
        seq.extend(settled("bb", 4));
        assert_eq!(owners(&seq), ["aa", "bb"]);
        assert_eq!(
            parse_arp_row(
                &"1764840000.123,2,AA:bb:cc:00:00:01,198.19.0.230,198.19.0.104"
                    .split(',')
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            ),
            Some(pkt(
                1_764_840_000.123,
                2,
                "aa:bb:cc:00:00:01",
                vip,
                "198.19.0.104"
            ))
        );
    }
}
