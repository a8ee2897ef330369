//! `kubectl barelb status`: pools, policies, peers and speakers on one
//! screen, from the status the operator writes (no second opinion).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use barelb_api::conditions;
use serde::Serialize;

use crate::cluster::Cluster;

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The leading operator's Pod, or why its view could not be read (the
    /// speakers' streams and links are then unknown).
    pub leader: String,
    pub pools: Vec<Row>,
    pub policies: Vec<Row>,
    pub peers: Vec<Row>,
    pub speakers: Vec<Row>,
}

/// One line of a section: its name and columns.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub columns: BTreeMap<&'static str, String>,
    /// The columns' order on screen.
    #[serde(skip)]
    pub order: Vec<&'static str>,
}

fn ready(conds: Option<&Vec<barelb_api::Condition>>) -> String {
    conds
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| {
            if c.status == "True" {
                "True".to_string()
            } else {
                format!("{} ({})", c.status, c.message)
            }
        })
        .unwrap_or_else(|| "Unknown".into())
}

fn row(name: &str, columns: &[(&'static str, String)]) -> Row {
    Row {
        name: name.to_string(),
        columns: columns.iter().cloned().collect(),
        order: columns.iter().map(|(k, _)| *k).collect(),
    }
}

pub fn status(c: &Cluster) -> Status {
    let pools = c
        .pools
        .iter()
        .map(|p| {
            let st = p.status.clone().unwrap_or_default();
            row(
                &p.metadata.name.clone().unwrap_or_default(),
                &[
                    ("mode", format!("{:?}", p.spec.announce.mode)),
                    ("in use", st.usage.unwrap_or_else(|| "-".into())),
                    ("ready", ready(st.conditions.as_ref())),
                ],
            )
        })
        .collect();
    let policies = c
        .policies
        .iter()
        .map(|p| {
            let st = p.status.clone().unwrap_or_default();
            row(
                &p.metadata.name.clone().unwrap_or_default(),
                &[
                    ("rules", st.rule_count.map_or("-".into(), |n| n.to_string())),
                    (
                        "pools",
                        st.pools_selected.map_or("-".into(), |n| n.to_string()),
                    ),
                    ("ready", ready(st.conditions.as_ref())),
                ],
            )
        })
        .collect();
    let peers = c
        .peers
        .iter()
        .map(|p| {
            let st = p.status.clone().unwrap_or_default();
            row(
                &p.metadata.name.clone().unwrap_or_default(),
                &[
                    (
                        "router",
                        format!("{} AS{}", p.spec.peer_address, p.spec.peer_asn),
                    ),
                    ("established", st.established.unwrap_or_else(|| "-".into())),
                    ("ready", ready(st.conditions.as_ref())),
                ],
            )
        })
        .collect();
    let mut held: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for svc in c.index.services.values() {
        let announced = svc
            .condition(conditions::ANNOUNCED)
            .filter(|x| x.status == "True");
        if let Some(a) = announced {
            for node in barelb_operator::status::announced::nodes_in(&a.message) {
                for ip in &svc.ingress {
                    held.entry(node.clone()).or_default().push(ip.to_string());
                }
            }
        }
    }
    let mut nodes: Vec<_> = c.index.nodes.iter().collect();
    nodes.sort_by(|a, b| a.0.cmp(b.0));
    let speakers = nodes
        .into_iter()
        .map(|(name, n)| {
            let addrs = held.get(name).cloned().unwrap_or_default();
            let (speaker, link, planned) = speaker_state(c, name);
            row(
                name,
                &[
                    ("node ready", n.ready.to_string()),
                    ("speaker", speaker),
                    ("link", link),
                    ("planned", planned),
                    ("addresses", addrs.len().to_string()),
                    ("held", addrs.join(",")),
                ],
            )
        })
        .collect();
    Status {
        leader: match &c.leader {
            Ok(l) => l.pod.clone(),
            Err(why) => format!("unknown: {why}"),
        },
        pools,
        policies,
        peers,
        speakers,
    }
}

/// `node`'s speaker: its stream (the leader's word, else its Pod's
/// readiness), its link, and the addresses the leader's plan gives it.
fn speaker_state(c: &Cluster, node: &str) -> (String, String, String) {
    let pod = match c.speakers.get(node) {
        Some(true) => "Pod Ready",
        Some(false) => "Pod not Ready",
        None => "no speaker Pod",
    };
    match &c.leader {
        Ok(l) => match l.streams.get(node) {
            Some(s) => (
                "connected".into(),
                if s.link_up { "up" } else { "down" }.into(),
                s.addresses.to_string(),
            ),
            None => (format!("not connected ({pod})"), "-".into(), "-".into()),
        },
        Err(_) => (format!("unknown ({pod})"), "?".into(), "?".into()),
    }
}

/// `s` for people: one table per section.
pub fn text(s: &Status) -> String {
    let mut out = format!("LEADER  {}\n\n", s.leader);
    for (title, rows) in [
        ("ADDRESS POOLS", &s.pools),
        ("POLICIES", &s.policies),
        ("BGP PEERS", &s.peers),
        ("SPEAKERS", &s.speakers),
    ] {
        let _ = writeln!(out, "{title}");
        if rows.is_empty() {
            let _ = writeln!(out, "  (none)\n");
            continue;
        }
        let keys = &rows[0].order;
        let width = |k: &str| {
            rows.iter()
                .map(|r| r.columns.get(k).map_or(0, |v| v.chars().count()))
                .chain([k.len()])
                .max()
                .unwrap_or(0)
        };
        let name_width = rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let widths: Vec<usize> = keys.iter().map(|k| width(k)).collect();
        let mut line = format!("  {:<name_width$}", "NAME");
        for (k, w) in keys.iter().zip(&widths) {
            line += &format!("  {:<w$}", k.to_uppercase());
        }
        let _ = writeln!(out, "{}", line.trim_end());
        for r in rows {
            let mut line = format!("  {:<name_width$}", r.name);
            for (k, w) in keys.iter().zip(&widths) {
                line += &format!("  {:<w$}", r.columns.get(k).map_or("", String::as_str));
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out.push('\n');
    }
    out
}
