//! `kubectl barelb status`: pools, policies, peers and speakers on one
//! screen, from the status the operator writes (no second opinion).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use barelb_api::conditions;
use serde::Serialize;

use crate::cluster::Cluster;

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub pools: Vec<Row>,
    pub policies: Vec<Row>,
    pub peers: Vec<Row>,
    pub speakers: Vec<Row>,
}

/// One line of a section: its name and columns, in order.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub columns: BTreeMap<&'static str, String>,
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
    }
}

/// The nodes an Announced condition names (the operator writes "announced
/// by node N over ARP/NDP" or "announced by nodes A, B over BGP").
fn announcers(message: &str) -> Vec<String> {
    let Some(rest) = message
        .strip_prefix("announced by nodes ")
        .or_else(|| message.strip_prefix("announced by node "))
    else {
        return Vec::new();
    };
    let list = rest.split(" over ").next().unwrap_or(rest);
    list.split(", ").map(str::to_string).collect()
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
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|x| x.type_ == conditions::ANNOUNCED && x.status == "True")
            });
        if let Some(a) = announced {
            for node in announcers(&a.message) {
                for ip in barelb_core::request::ingress_ips(svc) {
                    held.entry(node.clone()).or_default().push(ip.to_string());
                }
            }
        }
    }
    let speakers = c
        .index
        .nodes
        .iter()
        .map(|(name, n)| {
            let addrs = held.get(name).cloned().unwrap_or_default();
            row(
                name,
                &[
                    ("node ready", n.ready.to_string()),
                    (
                        "speaker",
                        match c.speakers.get(name) {
                            Some(true) => "connected (Pod Ready)".into(),
                            Some(false) => "not connected (Pod not Ready)".into(),
                            None => "no speaker Pod".into(),
                        },
                    ),
                    ("addresses", addrs.len().to_string()),
                    ("held", addrs.join(",")),
                ],
            )
        })
        .collect();
    Status {
        pools,
        policies,
        peers,
        speakers,
    }
}

/// `s` for people: one table per section.
pub fn text(s: &Status) -> String {
    let mut out = String::new();
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
        let keys: Vec<&'static str> = rows[0].columns.keys().copied().collect();
        let _ = write!(out, "  {:<28}", "NAME");
        for k in &keys {
            let _ = write!(out, " {:<28}", k.to_uppercase());
        }
        out.push('\n');
        for r in rows {
            let _ = write!(out, "  {:<28}", r.name);
            for k in &keys {
                let _ = write!(out, " {:<28}", r.columns.get(k).map_or("", String::as_str));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcing_nodes_are_read_from_the_operators_message() {
        assert_eq!(
            announcers("announced by node node-2 over ARP/NDP"),
            ["node-2"]
        );
        assert_eq!(
            announcers("announced by nodes node-1, node-3 over BGP"),
            ["node-1", "node-3"]
        );
        assert!(announcers("not announced: no eligible node").is_empty());
    }
}
