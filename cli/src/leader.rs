//! What only the leading operator knows — which speakers hold a control
//! stream, whether their links are up, how many addresses the plan gives
//! each — read from its metrics endpoint through the apiserver's Pod proxy.
//! The leader is the holder of the `barelb-operator` Lease.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

/// The Lease the operator replicas elect their leader with.
const LEASE: &str = "barelb-operator";

/// One connected speaker, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub link_up: bool,
    pub addresses: u64,
}

/// The leader and the speakers connected to it, by node.
#[derive(Clone, Debug)]
pub struct LeaderView {
    pub pod: String,
    pub streams: BTreeMap<String, Stream>,
}

/// Reads the leader's view, or says in one line why it could not.
pub async fn read(client: &kube::Client, ns: &str) -> Result<LeaderView, String> {
    let lease = Api::<Lease>::namespaced(client.clone(), ns)
        .get(LEASE)
        .await
        .map_err(|e| format!("read Lease {ns}/{LEASE}: {e}"))?;
    let pod = lease
        .spec
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("Lease {ns}/{LEASE} has no holder: no operator leads"))?;
    let spec = Api::<Pod>::namespaced(client.clone(), ns)
        .get(&pod)
        .await
        .map_err(|e| format!("read the leader's Pod {ns}/{pod}: {e}"))?
        .spec
        .unwrap_or_default();
    let port = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("metrics"))
        .map(|p| p.container_port)
        .ok_or_else(|| format!("the leader's Pod {ns}/{pod} has no port named metrics"))?;
    let path = format!("/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy/metrics");
    let request = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("GET {path} (needs get on pods/proxy): {e}"))?;
    Ok(LeaderView {
        pod,
        streams: streams_in(&text),
    })
}

/// The speakers in a metrics exposition: a node is connected iff the
/// leader exports `barelb_control_speaker_link_up` for it.
pub fn streams_in(text: &str) -> BTreeMap<String, Stream> {
    let mut link = BTreeMap::new();
    let mut held = BTreeMap::new();
    for line in text.lines() {
        if let Some((node, v)) = sample(line, "barelb_control_speaker_link_up") {
            link.insert(node, v != 0.0);
        } else if let Some((node, v)) = sample(line, "barelb_control_speaker_addresses") {
            held.insert(node, v);
        }
    }
    link.into_iter()
        .map(|(node, link_up)| {
            // A gauge of whole addresses; the cast only drops a ".0".
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let addresses = held.get(&node).copied().unwrap_or(0.0).max(0.0) as u64;
            (node, Stream { link_up, addresses })
        })
        .collect()
}

/// `NAME{node="N"} VALUE` → (N, VALUE).
fn sample(line: &str, name: &str) -> Option<(String, f64)> {
    let rest = line.strip_prefix(name)?.strip_prefix("{node=\"")?;
    let (node, rest) = rest.split_once("\"}")?;
    let value = rest.trim().parse().ok()?;
    Some((node.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_read_from_the_leaders_exposition() {
        let text = "\
# HELP barelb_control_speaker_link_up Per connected speaker.
# TYPE barelb_control_speaker_link_up gauge
barelb_control_speaker_link_up{node=\"n1\"} 1
barelb_control_speaker_link_up{node=\"n2\"} 0
barelb_control_speaker_addresses{node=\"n1\"} 7
barelb_control_speaker_addresses{node=\"n2\"} 0
barelb_control_speaker_addresses{node=\"gone\"} 3
barelb_control_speakers_connected 2
";
        let s = streams_in(text);
        assert_eq!(
            s.into_iter().collect::<Vec<_>>(),
            vec![
                (
                    "n1".to_string(),
                    Stream {
                        link_up: true,
                        addresses: 7
                    }
                ),
                (
                    "n2".to_string(),
                    Stream {
                        link_up: false,
                        addresses: 0
                    }
                ),
            ]
        );
    }
}
