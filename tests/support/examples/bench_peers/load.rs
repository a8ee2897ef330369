//! What each implementation asks of the apiserver, from the apiserver's
//! own audit log (the lab cluster records, at Metadata level, only the
//! requests of barelb's and MetalLB's ServiceAccounts): watches each
//! speaker holds, and the requests it makes per minute while idle and
//! while N Services are created and announced. Per speaker = per source
//! address (speakers run on the host network, one per node).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use barelb_testsupport::cluster::cluster_dir;
use barelb_testsupport::peers::Peer;

/// The audit log the lab's apiserver writes (tests/kube-lab serve.go).
fn audit_log() -> PathBuf {
    cluster_dir().join("state/audit.log")
}

/// A place in the audit log: requests after it are counted.
pub fn mark() -> u64 {
    std::fs::metadata(audit_log()).map_or(0, |m| m.len())
}

/// One speaker's requests in a window: watches opened and closed, other
/// requests by verb and resource.
#[derive(Debug, Default, Clone)]
pub struct Requests {
    pub watches_opened: usize,
    pub watches_closed: usize,
    pub by_verb: BTreeMap<String, usize>,
}

impl Requests {
    /// Requests other than watches.
    pub fn calls(&self) -> usize {
        self.by_verb.values().sum()
    }
}

/// The speakers' requests between two marks, per source address.
pub fn speaker_requests(peer: Peer, from: u64, to: u64) -> BTreeMap<String, Requests> {
    let user = match peer {
        Peer::Barelb => "system:serviceaccount:barelb-system:barelb-speaker",
        Peer::MetalLb => "system:serviceaccount:metallb-system:speaker",
    };
    let mut per_source: BTreeMap<String, Requests> = BTreeMap::new();
    for ev in events(from, to) {
        if ev["user"]["username"] != user {
            continue;
        }
        let source = ev["sourceIPs"][0].as_str().unwrap_or("?").to_string();
        let r = per_source.entry(source).or_default();
        let verb = ev["verb"].as_str().unwrap_or("?");
        let resource = ev["objectRef"]["resource"].as_str().unwrap_or("?");
        match (verb, ev["stage"].as_str()) {
            ("watch", Some("ResponseStarted")) => r.watches_opened += 1,
            ("watch", Some("ResponseComplete" | "Panic")) => r.watches_closed += 1,
            (_, Some("ResponseComplete" | "Panic")) => {
                *r.by_verb.entry(format!("{verb} {resource}")).or_default() += 1;
            }
            _ => {}
        }
    }
    per_source
}

/// The audit events (JSON lines) between two byte offsets.
fn events(from: u64, to: u64) -> Vec<serde_json::Value> {
    let Ok(mut f) = std::fs::File::open(audit_log()) else {
        return Vec::new();
    };
    let mut text = String::new();
    if f.seek(SeekFrom::Start(from)).is_err() {
        return Vec::new();
    }
    let _ = f.take(to.saturating_sub(from)).read_to_string(&mut text);
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The figures of one implementation's speakers.
#[derive(Debug, Default, Clone)]
pub struct Load {
    /// Speakers seen (source addresses).
    pub speakers: usize,
    /// Watches held per speaker at the end (opened − closed since install).
    pub watches: f64,
    /// Requests (watches excluded) per speaker per minute, idle.
    pub idle_per_min: f64,
    /// Requests (watches opened included) per speaker while N Services
    /// were created and announced.
    pub busy: f64,
    /// … by verb and resource, all speakers together.
    pub busy_by_verb: BTreeMap<String, usize>,
}

/// Sums `windows` (since install; idle; busy) into per-speaker figures.
pub fn load(
    since_install: &BTreeMap<String, Requests>,
    idle: &BTreeMap<String, Requests>,
    idle_minutes: f64,
    busy: &BTreeMap<String, Requests>,
    speakers: usize,
) -> Load {
    let per = |total: usize| total as f64 / speakers.max(1) as f64;
    let held: usize = since_install
        .values()
        .map(|r| r.watches_opened.saturating_sub(r.watches_closed))
        .sum();
    Load {
        speakers: since_install.len(),
        watches: per(held),
        idle_per_min: per(idle.values().map(Requests::calls).sum()) / idle_minutes,
        busy: per(busy.values().map(|r| r.calls() + r.watches_opened).sum()),
        busy_by_verb: busy.values().fold(BTreeMap::new(), |mut all, r| {
            for (verb, n) in &r.by_verb {
                *all.entry(verb.clone()).or_default() += n;
            }
            all
        }),
    }
}
